"""What a detector is: the contract every module in filters/ fulfils, and its registry entry.

A detector only measures (``score``) and turns its own signal columns into reasons (``flag``,
optionally ``filter_reasons``); the policy combines the reasons of all detectors. Each detector
declares every signal column it writes, with the config knob that decides on it, so the config,
the policy and the report all derive from the same declaration (docs/DETECTORS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

# Where a detector runs in the pipeline:
#   cheap   on every document, in the scoring stage, from the document alone;
#   corpus  across all documents (dedup: clusters), resolved after scoring;
#   lm      the language model, only on documents still undecided after the others.
Stage = Literal["cheap", "corpus", "lm"]
# "above": values at or above the knob's value are flagged; "below": values below it.
Direction = Literal["above", "below"]

ScoreFn = Callable[[pa.Table, Any], dict[str, pa.Array]]
ReasonsFn = Callable[[pa.Table, Any], list[list[str]]]
# Given the whole pipeline config once it is valid: raises ValueError, naming the key, for what one
# section cannot say alone (a file it names that cannot be used, a knob that needs another detector).
ConfigCheckFn = Callable[[Any], None]


class DetectorConfig(BaseModel):
    """Base of every detector's config section: unknown keys are errors; ``enabled`` switches the
    detector off (no columns, no reasons)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


@dataclass(frozen=True)
class Signal:
    """One signal column: ``knob`` is the key in the detector's config section whose value decides
    on it (``a.b`` reaches into a mapping, e.g. ``max_top_ngram_char_frac.2``), None when no single
    threshold does; ``direction`` says which side of the knob's value is flagged."""

    column: str
    knob: str | None = None
    direction: Direction = "above"


class Detector(Protocol):
    """The contract (see the module docstring); :class:`Spec` is the usual way to fulfil it."""

    @property
    def name(self) -> str: ...
    @property
    def stage(self) -> Stage: ...
    @property
    def config(self) -> type[DetectorConfig]: ...
    @property
    def signals(self) -> tuple[Signal, ...]: ...
    @property
    def score(self) -> ScoreFn: ...
    @property
    def flag(self) -> ReasonsFn: ...
    @property
    def filter_reasons(self) -> ReasonsFn | None: ...
    @property
    def check_config(self) -> ConfigCheckFn | None: ...


@dataclass(frozen=True)
class Spec:
    """A detector's registry entry. ``name`` is also its config section and the prefix of its
    signal columns; ``filter_reasons`` (opt-in, non-security rules: ``filtered``) and
    ``check_config`` (run when the config is loaded, before any work) may be None."""

    name: str
    stage: Stage
    config: type[DetectorConfig]
    signals: tuple[Signal, ...]
    score: ScoreFn
    flag: ReasonsFn
    filter_reasons: ReasonsFn | None = None
    check_config: ConfigCheckFn | None = None

    def __post_init__(self) -> None:
        for signal in self.signals:
            if not signal.column.startswith(f"{self.name}_"):
                raise ValueError(f"detector {self.name}: signal {signal.column} must start with {self.name}_")
            if signal.knob is not None and signal.knob.split(".")[0] not in self.config.model_fields:
                raise ValueError(
                    f"detector {self.name}: {signal.column}'s knob {signal.knob} is not in Config"
                )


def knob_value(section: dict[str, Any], knob: str) -> Any:
    """The value at ``knob`` (``a.b`` for a mapping entry) in a config section as plain data (a
    manifest's JSON or ``model_dump``), or None when it is not there."""
    value: Any = section
    for part in knob.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part, value.get(int(part)) if part.isdigit() else None)
    return value
