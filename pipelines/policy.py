"""Policy: signal columns -> one outcome per document, with reasons.

Detectors only measure; each detector's `flag` (and optional `filter_reasons`) turns its own columns
into reasons using the thresholds in its config section, and this module combines them for the
detectors of filters/registry.py. Because it reads signal columns only, a finished run can be
re-decided with other thresholds without scoring again.

Precedence, so that every document gets exactly one outcome:
quarantined (any quarantine reason) > filtered (opt-in non-security rules) > duplicate > kept.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from poisonguard.core.schema import DUPLICATE, FILTERED, KEPT, QUARANTINED
from poisonguard.filters import combiner, registry
from poisonguard.filters.contract import Detector, DetectorConfig, Stage
from poisonguard.pipelines.config import PipelineConfig

COPY_OF_QUARANTINED = "dedup:copy_of_quarantined"
EMPTY = "policy:empty"

Reasons = list[list[str]]


def section(cfg: PipelineConfig, detector: Detector) -> DetectorConfig:
    """The detector's section of the config (named after it)."""
    found: DetectorConfig = getattr(cfg, detector.name)
    return found


def _measured(table: pa.Table, detector: Detector) -> bool:
    names = set(table.column_names)
    return any(s.column in names for s in detector.signals)


def stage_reasons(table: pa.Table, cfg: PipelineConfig, stage: Stage) -> tuple[Reasons, Reasons]:
    """(quarantine reasons, filter reasons) per row from the columns of one stage's detectors; a
    detector that is off or whose columns are absent (not measured) says nothing."""
    n = table.num_rows
    quarantine: Reasons = [[] for _ in range(n)]
    filtered: Reasons = [[] for _ in range(n)]
    for detector in registry.in_stage(stage):
        dcfg = section(cfg, detector)
        if not dcfg.enabled or not _measured(table, detector):
            continue
        for row, reasons in enumerate(detector.flag(table, dcfg)):
            quarantine[row].extend(reasons)
        if detector.filter_reasons is not None:
            for row, reasons in enumerate(detector.filter_reasons(table, dcfg)):
                filtered[row].extend(reasons)
    return quarantine, filtered


def too_short(table: pa.Table, cfg: PipelineConfig) -> Reasons:
    """``policy:too_short(N<MIN)`` for documents under ``policy.min_chars`` characters (0: off)."""
    n = table.num_rows
    if cfg.policy.min_chars <= 0:
        return [[] for _ in range(n)]
    lengths = pc.utf8_length(table.column("text")).to_pylist()
    return [
        [f"policy:too_short({length}<{cfg.policy.min_chars})"] if (length or 0) < cfg.policy.min_chars else []
        for length in lengths
    ]


def empty_texts(table: pa.Table, cfg: PipelineConfig) -> Reasons:
    """``policy:empty`` for empty or whitespace-only texts (``policy.drop_empty``)."""
    if not cfg.policy.drop_empty:
        return [[] for _ in range(table.num_rows)]
    trimmed = pc.utf8_length(pc.utf8_trim_whitespace(table.column("text"))).to_pylist()
    return [[] if length else [EMPTY] for length in trimmed]


def cheap_reasons(table: pa.Table, cfg: PipelineConfig) -> tuple[Reasons, Reasons]:
    """(quarantine reasons, filter reasons) per row from the cheap detectors, ``drop_empty`` and
    ``min_chars``."""
    quarantine, filtered = stage_reasons(table, cfg, "cheap")
    for row, reasons in enumerate(empty_texts(table, cfg)):
        filtered[row].extend(reasons)
    for row, reasons in enumerate(too_short(table, cfg)):
        filtered[row].extend(reasons)
    return quarantine, filtered


def lm_reasons(table: pa.Table, cfg: PipelineConfig) -> Reasons:
    """Quarantine reasons of the language model; rows it did not score carry nulls and get none."""
    return stage_reasons(table, cfg, "lm")[0]


def all_reasons(table: pa.Table, cfg: PipelineConfig) -> tuple[Reasons, Reasons]:
    """(quarantine reasons, filter reasons) per row from every stage's detectors."""
    quarantine, filtered = cheap_reasons(table, cfg)
    for stage in ("corpus", "lm"):
        more_q, more_f = stage_reasons(table, cfg, stage)
        for row in range(table.num_rows):
            quarantine[row].extend(more_q[row])
            filtered[row].extend(more_f[row])
    for row, reasons in enumerate(combiner_reasons(table, cfg)):
        quarantine[row].extend(reasons)
    return quarantine, filtered


def combiner_reasons(table: pa.Table, cfg: PipelineConfig) -> Reasons:
    """Weak signals that add up (filters/combiner.py): reads whatever signal columns the row has."""
    if not cfg.combiner.enabled:
        return [[] for _ in range(table.num_rows)]
    return combiner.flag(table, cfg.combiner)


def decide(
    quarantine: Reasons,
    filtered: Reasons,
    duplicate_of: list[str | None],
    duplicate_kind: list[str | None],
) -> tuple[list[str], Reasons]:
    """Outcome and reasons per row; reasons are never empty for quarantined or filtered rows."""
    outcomes: list[str] = []
    reasons: Reasons = []
    for q, f, dup, kind in zip(quarantine, filtered, duplicate_of, duplicate_kind, strict=True):
        if q:
            outcomes.append(QUARANTINED)
            reasons.append(sorted(set(q)) + sorted(set(f)))
        elif f:
            outcomes.append(FILTERED)
            reasons.append(sorted(set(f)))
        elif dup is not None:
            outcomes.append(DUPLICATE)
            reasons.append([f"dedup:{kind or 'near_duplicate'}"])
        else:
            outcomes.append(KEPT)
            reasons.append([])
    return outcomes, reasons
