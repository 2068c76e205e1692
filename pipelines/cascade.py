"""The LM cascade: which of a chunk's undecided documents the language model scores.

One pure function, shared by the local and the Ray engine (both call it per chunk of
`run.batch_rows` documents, and chunk N holds the same documents in both), so the two route alike.
With `perplexity.route: all` every undecided document goes to the LM. With `suspicious` (the
default) at most `ceil(perplexity.budget x chunk rows)` of them do: those ranked highest by
`suspicion.route_score` (how seldom the document reuses its content words nearby, against real
text of its length, and for long documents the combiner's log-odds; filters/suspicion.py), ties in
input order. The budget is a share of all the
chunk's documents, so the LM's cost per document in is bounded whatever the cheap stages decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyarrow as pa

from poisonguard.filters import suspicion
from poisonguard.filters.suspicion import SCORE
from poisonguard.pipelines.config import PipelineConfig


def route_columns(cfg: PipelineConfig) -> tuple[str, ...]:
    """The columns :func:`lm_rows` reads besides the documents."""
    return (*suspicion.ROUTE_COLUMNS, *(t.column for t in cfg.combiner.cheap.terms))


def lm_rows(table: pa.Table, cfg: PipelineConfig, undecided: Sequence[bool]) -> list[int]:
    """Row positions (ascending) of `table` that go to the LM; `undecided[i]` says row i is neither
    quarantined, filtered nor a duplicate after the cheap stages and dedup."""
    picked = [i for i, u in enumerate(undecided) if u]
    if cfg.perplexity.route == "all":
        return picked
    limit = math.ceil(cfg.perplexity.budget * table.num_rows)
    if len(picked) <= limit:
        return picked
    if SCORE not in table.column_names:
        raise ValueError(f"perplexity.route 'suspicious' needs the {SCORE} column (suspicion.enabled)")
    scores = suspicion.route_score(table, cfg.suspicion, cfg.combiner)
    chosen = sorted(picked, key=lambda i: (-scores[i], i))[:limit]
    return sorted(chosen)
