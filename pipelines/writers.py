"""Writers of an output folder: Parquet shards, the dataset card and the run's commit marker.

Every file is written atomically (core/files.py); `_SUCCESS` is written last, so a folder without it
is an unfinished run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from poisonguard.core.files import atomic_path, sha256_file, write_table
from poisonguard.pipelines.shard_schema import conform

SUCCESS = "_SUCCESS"
DATASET_CARD = "README.md"

# Hugging Face `datasets` reads this header of OUT/README.md: `load_dataset(OUT)` then gives a
# `clean` and a `quarantine` split instead of one split mixing both (and skips `_SUCCESS`).
_CARD = """---
configs:
- config_name: default
  data_files:
  - split: clean
    path: clean/*.parquet
  - split: quarantine
    path: quarantine/*.parquet
---
# poisonguard output

`clean/` holds the kept documents, `quarantine/` every other document with its `outcome` and
`reasons`. Both have the same columns (see the poisonguard documentation, docs/COLUMNS.md).
`report.html` says what was dropped and why; `manifest.json` lists every shard with its sha256.
"""


def write_dataset_card(out: Path) -> None:
    """OUT/README.md: a dataset card whose header maps the two folders to two splits."""
    with atomic_path(out / DATASET_CARD) as tmp:
        tmp.write_text(_CARD, "utf-8")


class ShardWriter:
    """Appends tables and cuts them into `part-NNNNN.parquet` shards of `shard_rows` rows."""

    def __init__(self, folder: Path, schema: pa.Schema, shard_rows: int, row_group_rows: int) -> None:
        self.folder = folder
        self.schema = schema
        self.shard_rows = shard_rows
        self.row_group_rows = row_group_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.shards: list[dict[str, Any]] = []
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(conform(table, self.schema))
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.shard_rows:
            self._cut(self.shard_rows)

    def close(self) -> list[dict[str, Any]]:
        if self._pending_rows:
            self._cut(self._pending_rows)
        return self.shards

    def _cut(self, rows: int) -> None:
        whole = pa.concat_tables(self._pending)
        shard, rest = whole.slice(0, rows), whole.slice(rows)
        path = self.folder / f"part-{len(self.shards):05d}.parquet"
        write_table(path, shard.combine_chunks(), self.row_group_rows)
        self.shards.append(
            {"path": f"{self.folder.name}/{path.name}", "rows": shard.num_rows, "sha256": sha256_file(path)}
        )
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
