"""cloaking detector: turns the crawler's cloaking probe and tarpit guard results into reasons.

Crawled documents (crawler.raw.raw_to_documents) carry ``cloaking_similarity`` (crawler view vs a
browser view), ``cloaking_baseline`` (browser view vs a second browser view) and
``crawl_tarpit_host``. Other inputs lack these columns; their signals are null and never flag.

Signals: ``cloaking_similarity``, ``cloaking_baseline``, ``cloaking_drop`` (baseline minus
similarity: how much further the crawler's view is from the browser's than the page drifts by
itself), ``cloaking_tarpit_host``.
Reasons: ``cloaking:crawler_view_differs`` (THREATS.md P-CLOAK) and ``crawl:tarpit_host`` (P-TARPIT).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    max_similarity_drop: float = Field(
        0.3,
        gt=0,
        le=1,
        description="flag when the crawler view's similarity is this far below the two browser views'",
    )
    flag_tarpit_hosts: bool = Field(True, description="quarantine pages of hosts the tarpit guard dropped")


def _column(batch: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    if name in batch.column_names:
        return pc.cast(batch.column(name), typ).combine_chunks()
    return pa.nulls(batch.num_rows, typ)


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    sim = _column(batch, "cloaking_similarity", pa.float32())
    base = _column(batch, "cloaking_baseline", pa.float32())
    # A probe without a usable second browser view compares against 1.0 (a page that never changes).
    drop = pc.subtract(pc.fill_null(base, 1.0), sim)
    tarpit = _column(batch, "crawl_tarpit_host", pa.bool_())
    return {
        "cloaking_similarity": sim,
        "cloaking_baseline": base,
        "cloaking_drop": pc.cast(drop, pa.float32()),
        "cloaking_tarpit_host": tarpit,
    }


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    n = signals.num_rows
    if not cfg.enabled:
        return [[] for _ in range(n)]
    sims = _column(signals, "cloaking_similarity", pa.float32()).to_pylist()
    drops = _column(signals, "cloaking_drop", pa.float32()).to_pylist()
    tarpit = _column(signals, "cloaking_tarpit_host", pa.bool_()).to_pylist()
    reasons: list[list[str]] = []
    for sim, drop, trap in zip(sims, drops, tarpit, strict=True):
        row: list[str] = []
        if sim is not None and drop is not None and drop >= cfg.max_similarity_drop:
            row.append("cloaking:crawler_view_differs")
        if trap and cfg.flag_tarpit_hosts:
            row.append("crawl:tarpit_host")
        reasons.append(row)
    return reasons
