"""Stage 7, writing: decided chunks, in input order, into the clean and quarantine shards of OUT,
counted for the report as they pass (the commit, pipelines/commit.py, then writes the report).
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from poisonguard.core.schema import DOCUMENT_SCHEMA, KEPT
from poisonguard.core.urls import host_of
from poisonguard.filters import perplexity
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.shard_schema import shard_schema
from poisonguard.pipelines.stages import ContextDetector
from poisonguard.pipelines.writers import ShardWriter


@dataclass
class Tally:
    """What the report counts while the decisions stream past."""

    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    hosts: dict[str, Counter[str]] = field(default_factory=dict)
    languages: Counter[str] = field(default_factory=Counter)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, table: pa.Table) -> None:
        outcomes = table.column("outcome").to_pylist()
        self.outcomes.update(outcomes)
        for reasons in table.column("reasons").to_pylist():
            self.reasons.update(r.split("(")[0] for r in reasons)
        for url, outcome in zip(table.column("url").to_pylist(), outcomes, strict=True):
            host = host_of(url)
            if host:
                self.hosts.setdefault(host, Counter())[outcome] += 1
        if "language_lang" in table.column_names:
            self.languages.update(str(x) for x in table.column("language_lang").to_pylist())
        if "dedup_cluster_size" in table.column_names:
            self._add_clusters(table, outcomes)

    def _add_clusters(self, table: pa.Table, outcomes: list[str]) -> None:
        sizes = table.column("dedup_cluster_size").to_pylist()
        cids = table.column("dedup_cluster_id").to_pylist()
        domains = table.column("dedup_cluster_domains").to_pylist()
        for cid, size, dom, outcome in zip(cids, sizes, domains, outcomes, strict=True):
            if cid is None or (size or 0) < 2:
                continue
            entry = self.clusters.setdefault(
                cid, {"cluster_id": cid, "size": size, "domains": dom, "outcomes": Counter()}
            )
            entry["outcomes"][outcome] += 1


def output_schema(chunk_files: list[Path], context_detectors: tuple[ContextDetector, ...]) -> pa.Schema:
    """The one schema of every clean and quarantine shard (pipelines/shard_schema.py), keeping any
    column the scored chunks hold beyond the fixed list."""
    produced = pa.unify_schemas(
        [pq.read_schema(p) for p in chunk_files] or [DOCUMENT_SCHEMA], promote_options="permissive"
    )
    return shard_schema(produced, [f for d in context_detectors for f in d.schema])


class Output:
    """The clean and quarantine shard writers, the tally and the LM rows kept for trigger mining."""

    def __init__(self, out: Path, schema: pa.Schema, cfg: PipelineConfig) -> None:
        for name in ("clean", "quarantine"):
            if (out / name).exists():
                shutil.rmtree(out / name)  # left by an interrupted run: always rewritten whole
        self.clean = ShardWriter(out / "clean", schema, cfg.run.shard_rows, cfg.run.row_group_rows)
        self.dropped = ShardWriter(out / "quarantine", schema, cfg.run.shard_rows, cfg.run.row_group_rows)
        self.tally = Tally()
        self.lm_signals: list[pa.Table] = []
        self.docs = 0

    def write(self, table: pa.Table) -> None:
        """Count one decided chunk, keep its LM rows, and write it to its shards."""
        self.tally.add(table)
        self.docs += table.num_rows
        lm_names = [c for c in perplexity.SIGNAL_COLUMNS if c in table.column_names]
        if "perplexity_trigger_candidate" in lm_names:
            keep = [c for c in ("id", "url", "outcome", *lm_names) if c in table.column_names]
            self.lm_signals.append(table.select(keep).filter(pc.is_valid(table.column(lm_names[0]))))
        is_kept = pc.equal(table.column("outcome"), KEPT)
        self.clean.write(table.filter(is_kept))
        self.dropped.write(table.filter(pc.invert(is_kept)))

    def close(self) -> dict[str, list[dict[str, Any]]]:
        return {"clean": self.clean.close(), "quarantine": self.dropped.close()}
