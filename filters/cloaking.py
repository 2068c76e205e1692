"""cloaking detector: turns the crawler's cloaking probe and tarpit guard results into reasons.

Crawled documents (crawler.raw.raw_to_documents) carry ``crawl_cloaking_similarity``: how similar
the page the crawler was served is to the page a browser was served, relative to how much the page changes
between two browser fetches (1.0 = the same up to the page's own churn; null unless the page was
probed), and ``crawl_tarpit_host``: the tarpit guard marked the page as part of a tarpit (a page of a
tarpit region of its site, or of a host that is a tarpit as a whole; crawler/tarpit.py). Other inputs
have nulls there and never flag.

Signals: ``cloaking_similarity``, ``cloaking_tarpit_host``.
Reasons: ``cloaking:crawler_view_differs`` (docs/THREATS.md P-CLOAK) and ``cloaking:tarpit_host`` (P-TARPIT).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from poisonguard.filters.contract import DetectorConfig, Signal, Spec


class Config(DetectorConfig):
    min_relative_similarity: float = Field(
        0.6,
        ge=0,
        le=1,
        description="flag a probed page whose crawler view keeps less than this share of the similarity "
        "two browser views have to each other",
    )
    flag_tarpit_hosts: bool = Field(True, description="quarantine the pages the tarpit guard marked")


def _column(batch: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    if name in batch.column_names:
        return pc.cast(batch.column(name), typ).combine_chunks()
    return pa.nulls(batch.num_rows, typ)


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    return {
        "cloaking_similarity": _column(batch, "crawl_cloaking_similarity", pa.float64()),
        "cloaking_tarpit_host": _column(batch, "crawl_tarpit_host", pa.bool_()),
    }


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    n = signals.num_rows
    if not cfg.enabled:
        return [[] for _ in range(n)]
    sims = _column(signals, "cloaking_similarity", pa.float64()).to_pylist()
    tarpit = _column(signals, "cloaking_tarpit_host", pa.bool_()).to_pylist()
    reasons: list[list[str]] = []
    for sim, trap in zip(sims, tarpit, strict=True):
        row: list[str] = []
        if sim is not None and sim < cfg.min_relative_similarity:
            row.append("cloaking:crawler_view_differs")
        if trap and cfg.flag_tarpit_hosts:
            row.append("cloaking:tarpit_host")
        reasons.append(row)
    return reasons


DECLARED_SIGNALS = (
    Signal("cloaking_similarity", "min_relative_similarity", "below"),
    Signal("cloaking_tarpit_host"),
)

DETECTOR = Spec(
    name="cloaking", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
