"""Every detector the pipeline runs, in the order it runs them (cheapest first within a stage).

The config (one section per detector), the policy (whose flags count) and the report (which
threshold belongs to which column) all read this list; adding a detector is one module in filters/
with a ``DETECTOR`` entry, one line here and one section in configs/default.yaml
(docs/DETECTORS.md).
"""

from __future__ import annotations

from poisonguard.filters import (
    campaign,
    cloaking,
    coherence,
    dedup,
    hidden_text,
    injection,
    language,
    perplexity,
    repetition,
    suspicion,
    triggers,
    unicode,
)
from poisonguard.filters.contract import Detector, Signal, Stage

DETECTORS: tuple[Detector, ...] = (
    unicode.DETECTOR,
    triggers.DETECTOR,
    injection.DETECTOR,  # after triggers: it reads their phrase columns
    repetition.DETECTOR,
    language.DETECTOR,
    hidden_text.DETECTOR,
    cloaking.DETECTOR,
    coherence.DETECTOR,  # measure only by default; the combiner reads its columns
    suspicion.DETECTOR,  # routes the LM (pipelines/cascade.py); never gives a reason
    dedup.DETECTOR,
    campaign.DETECTOR,
    perplexity.DETECTOR,
)


def _check(detectors: tuple[Detector, ...]) -> None:
    names = [d.name for d in detectors]
    if len(set(names)) != len(names):
        raise ValueError(f"two detectors share a name: {names}")
    for d in detectors:
        others = [o.name for o in detectors if o is not d and o.name.startswith(f"{d.name}_")]
        if others:  # a column `a_b_x` must say whether it is detector a's or a_b's
            raise ValueError(f"detector names {d.name} and {others} are ambiguous as column prefixes")


_check(DETECTORS)


def in_stage(stage: Stage) -> tuple[Detector, ...]:
    return tuple(d for d in DETECTORS if d.stage == stage)


def by_name(name: str) -> Detector:
    for d in DETECTORS:
        if d.name == name:
            return d
    raise KeyError(name)


def signal_of(column: str) -> tuple[Detector, Signal] | None:
    """The detector that writes `column` and its declaration, or None for other columns."""
    for d in DETECTORS:
        for s in d.signals:
            if s.column == column:
                return d, s
    return None
