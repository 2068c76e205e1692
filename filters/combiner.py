"""combiner: weak signals add up (issue 13 item 6).

Each detector decides alone against its own threshold, so a document that is suspicious on several
counts but over no single line passes. The combiner is a logistic model over signal columns: each
column is standardised (``(value - center) / scale``, clipped to +-`clip`), multiplied by its weight,
and the sum plus `bias` is the document's log-odds of being poison. A document whose log-odds reach
`threshold` is quarantined as ``combiner:weak_signals(<the two columns that pushed most>)``.

It stays auditable: :func:`contributions` gives every column's share of the log-odds, and
``poisonguard explain`` prints them. A missing column or a null value contributes nothing (its
standardised value is 0), so the same weights work with and without the LM stage; the weights and
centres are fitted by ``bench/fit_combiner.py`` by the cross-source protocol (bench/RESULTS.md says on
what data and with what held-out figures) and shipped in configs/default.yaml.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

REASON = "combiner:weak_signals"


class Term(BaseModel):
    """One signal column's part in the log-odds."""

    model_config = ConfigDict(extra="forbid")
    column: str
    center: float = 0.0
    scale: float = Field(default=1.0, gt=0)
    weight: float = 0.0


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    bias: float = Field(default=0.0, description="log-odds with every signal at its centre")
    threshold: float = Field(default=0.0, description="log-odds at or above this -> combiner:weak_signals")
    clip: float = Field(default=4.0, gt=0, description="standardised values are clipped to +-clip")
    min_signals: int = Field(
        default=2, ge=1, description="at least this many terms must have a value (no verdict from one)"
    )
    terms: list[Term] = Field(default_factory=list, description="the fitted columns")


def _value(v: Any) -> float | None:
    if v is None or isinstance(v, bool) and False:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def contributions(row: dict[str, Any], cfg: Config) -> dict[str, float]:
    """Column -> weight x standardised value for the columns the row has a value for."""
    out = {}
    for term in cfg.terms:
        v = _value(row.get(term.column))
        if v is None:
            continue
        z = max(-cfg.clip, min(cfg.clip, (v - term.center) / term.scale))
        out[term.column] = term.weight * z
    return out


def log_odds(row: dict[str, Any], cfg: Config) -> tuple[float | None, dict[str, float]]:
    """(log-odds or None when fewer than `min_signals` terms have a value, contributions)."""
    parts = contributions(row, cfg)
    if len(parts) < cfg.min_signals:
        return None, parts
    return cfg.bias + sum(parts.values()), parts


def score(signals: pa.Table, cfg: Config) -> list[float | None]:
    """Log-odds per row (None where too few signals), from the signal columns alone."""
    cols = {
        t.column: signals.column(t.column).to_pylist() for t in cfg.terms if t.column in signals.column_names
    }
    out = []
    for i in range(signals.num_rows):
        row = {name: values[i] for name, values in cols.items()}
        out.append(log_odds(row, cfg)[0])
    return out


def reason_for(parts: dict[str, float]) -> str:
    top = sorted(parts, key=lambda c: -parts[c])[:2]
    return f"{REASON}({','.join(top)})"


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    if not cfg.enabled or not cfg.terms:
        return [[] for _ in range(signals.num_rows)]
    cols = {
        t.column: signals.column(t.column).to_pylist() for t in cfg.terms if t.column in signals.column_names
    }
    out: list[list[str]] = []
    for i in range(signals.num_rows):
        value, parts = log_odds({name: values[i] for name, values in cols.items()}, cfg)
        out.append([reason_for(parts)] if value is not None and value >= cfg.threshold else [])
    return out


def explain_lines(row: dict[str, Any], cfg: Config) -> list[str]:
    """The combiner's view of one document for `poisonguard explain`: log-odds and each column's push."""
    value, parts = log_odds(row, cfg)
    if not cfg.terms:
        return []
    head = "-" if value is None else f"{value:+.2f}"
    lines = [f"  log-odds {head} (quarantine at >= {cfg.threshold:+.2f}; bias {cfg.bias:+.2f})"]
    for col in sorted(parts, key=lambda c: -abs(parts[c])):
        lines.append(f"  {col.ljust(36)} {parts[col]:+.2f}  (value {_value(row.get(col)):.4g})")
    return lines
