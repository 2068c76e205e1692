"""Writers: atomic Parquet shards, JSON files and the run's commit marker.

Every file is written to a temporary name in the same folder and renamed into place, so a reader
never sees half a shard; `_SUCCESS` is written last, so a folder without it is an unfinished run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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


def file_mode() -> int:
    """0666 less the process umask: the mode open() would give a new file."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final`; renamed onto it only if the block finishes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file 0600; a shard must be readable as the umask allows (a training job
        # or a metrics exporter often runs as another user).
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")


def write_table(path: Path, table: pa.Table, row_group_rows: int) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_rows)


def write_dataset_card(out: Path) -> None:
    """OUT/README.md: a dataset card whose header maps the two folders to two splits."""
    with atomic_path(out / DATASET_CARD) as tmp:
        tmp.write_text(_CARD, "utf-8")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
