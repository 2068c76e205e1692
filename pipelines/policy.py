"""Policy: signal columns -> one outcome per document, with reasons.

Detectors only measure; each detector's `flag` turns its own columns into reasons using the
thresholds in the config, and this module combines them. Because it reads signal columns only, a
finished run can be re-decided with other thresholds without scoring again.

Precedence, so that every document gets exactly one outcome:
quarantined (any quarantine reason) > filtered (opt-in non-security rules) > duplicate > kept.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from poisonguard.core.schema import DUPLICATE, FILTERED, KEPT, QUARANTINED
from poisonguard.filters import (
    campaign,
    cloaking,
    dedup,
    hidden_text,
    injection,
    language,
    perplexity,
    repetition,
    triggers,
    unicode,
)
from poisonguard.pipelines.config import PipelineConfig

# Detectors that run on every document, cheapest first. Each is a module following the contract in
# poisonguard/filters/__init__.py; its config section has the same name.
CHEAP_DETECTORS: tuple[tuple[str, ModuleType], ...] = (
    ("unicode", unicode),
    ("triggers", triggers),
    ("injection", injection),  # after triggers: it reads their phrase columns
    ("repetition", repetition),
    ("language", language),
    ("hidden_text", hidden_text),
    ("cloaking", cloaking),
)

COPY_OF_QUARANTINED = "dedup:copy_of_quarantined"
EMPTY = "policy:empty"


def detector_config(cfg: PipelineConfig, name: str) -> Any:
    return getattr(cfg, name)


def _has_signals(table: pa.Table, name: str) -> bool:
    prefix = f"{name}_"
    return any(col.startswith(prefix) for col in table.column_names)


def cheap_reasons(table: pa.Table, cfg: PipelineConfig) -> tuple[list[list[str]], list[list[str]]]:
    """(quarantine reasons, filter reasons) per row from the cheap detectors' columns."""
    n = table.num_rows
    quarantine: list[list[str]] = [[] for _ in range(n)]
    filtered: list[list[str]] = [[] for _ in range(n)]
    for name, module in CHEAP_DETECTORS:
        dcfg = detector_config(cfg, name)
        if not getattr(dcfg, "enabled", True) or not _has_signals(table, name):
            continue
        for row, reasons in enumerate(module.flag(table, dcfg)):
            quarantine[row].extend(reasons)
        if hasattr(module, "filter_reasons"):
            for row, reasons in enumerate(module.filter_reasons(table, dcfg)):
                filtered[row].extend(reasons)
    if cfg.policy.drop_empty:
        trimmed = pc.utf8_length(pc.utf8_trim_whitespace(table.column("text"))).to_pylist()
        for row, length in enumerate(trimmed):
            if not length:
                filtered[row].append(EMPTY)
    if cfg.policy.min_chars > 0:
        lengths = pc.utf8_length(table.column("text")).to_pylist()
        for row, length in enumerate(lengths):
            if (length or 0) < cfg.policy.min_chars:
                filtered[row].append(f"policy:too_short({length}<{cfg.policy.min_chars})")
    return quarantine, filtered


def campaign_reasons(table: pa.Table, cfg: PipelineConfig) -> list[list[str]]:
    """Coordinated campaigns: near-copies on many domains (dedup) and spun copies (campaign)."""
    out: list[list[str]] = [[] for _ in range(table.num_rows)]
    if cfg.dedup.enabled and _has_signals(table, "dedup"):
        out = dedup.flag(table, cfg.dedup)
    if cfg.campaign.enabled and _has_signals(table, "campaign"):
        for row, reasons in enumerate(campaign.flag(table, cfg.campaign)):
            out[row].extend(reasons)
    return out


def lm_reasons(table: pa.Table, cfg: PipelineConfig) -> list[list[str]]:
    """Perplexity reasons; rows that were not scored carry nulls and get none."""
    if not cfg.perplexity.enabled or not _has_signals(table, "perplexity"):
        return [[] for _ in range(table.num_rows)]
    return perplexity.flag(table, cfg.perplexity)


def decide(
    quarantine: list[list[str]],
    filtered: list[list[str]],
    duplicate_of: list[str | None],
    duplicate_kind: list[str | None],
) -> tuple[list[str], list[list[str]]]:
    """Outcome and reasons per row; reasons are never empty for quarantined or filtered rows."""
    outcomes: list[str] = []
    reasons: list[list[str]] = []
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
