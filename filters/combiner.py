"""combiner: weak signals add up (issue 13 item 6).

Each detector decides alone against its own threshold, so a document that is suspicious on several
counts but over no single line passes. The combiner is a logistic model over signal columns: each
column is standardised (``(value - center) / scale``, clipped to +-`clip`), multiplied by its weight,
and the sum plus `bias` is the document's log-odds of being poison. A document whose log-odds reach
`threshold` is quarantined as ``combiner:weak_signals(<the two columns that pushed most>)``.

There are three models, each with its own terms, bias and threshold, fitted separately: ``cheap``
(coherence and language columns: babble) and ``tokens`` (pages of random tokens: hashes, keys, the
issue's alphanumeric salad) decide for every document, and ``lm`` (coherence columns plus the language
model's: context gain, sentence-level NLL signals) adds its verdict for the documents the LM scored
(the cascade routed them to it; `lm_column` has a value). A document is quarantined when any model
reaches its threshold; the reason names the two columns that pushed the deciding model most.
The lm model was fitted on English text only, so it judges only the languages in `lm_languages`.

It stays auditable: :func:`contributions` gives every column's share of the log-odds, and
``poisonguard explain`` prints them and which model decided. A missing column or a null value
contributes nothing (its standardised value is 0). The weights and centres are fitted by
``bench/fit_combiner.py`` by the cross-source protocol (fit on the chains of some genres, test on a
genre never fitted; bench/RESULTS.md says on what data and with what held-out figures) and shipped in
configs/default.yaml.
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


class Model(BaseModel):
    """One fitted logistic model: its terms, bias and quarantine threshold."""

    model_config = ConfigDict(extra="forbid")
    bias: float = Field(default=0.0, description="log-odds with every signal at its centre")
    threshold: float = Field(default=0.0, description="log-odds at or above this -> combiner:weak_signals")
    terms: list[Term] = Field(default_factory=list, description="the fitted columns")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    clip: float = Field(default=4.0, gt=0, description="standardised values are clipped to +-clip")
    min_signals: int = Field(
        default=2, ge=1, description="at least this many terms must have a value (no verdict from one)"
    )
    lm_column: str = Field(
        default="perplexity_mean_nll", description="rows with a value in this column use the lm model"
    )
    lm_languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="the lm model judges only documents whose language_lang is one of these (it was "
        "fitted on English text; the LM's losses differ by language); empty: every language",
    )
    cheap: Model = Field(default_factory=Model, description="every document: babble (coherence columns)")
    tokens: Model = Field(
        default_factory=Model, description="every document: pages of random tokens (non-words, hashes)"
    )
    lm: Model = Field(default_factory=Model, description="documents the LM scored")


def term_columns(models: list[Model]) -> set[str]:
    """Every column these models read."""
    return {t.column for m in models for t in m.terms}


def _value(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def models_for(row: dict[str, Any], cfg: Config) -> list[tuple[str, Model]]:
    """The models that judge this row: the cheap and tokens ones, and the lm one when the row has an LM
    score (each only if it has terms)."""
    out = [(name, m) for name, m in (("cheap", cfg.cheap), ("tokens", cfg.tokens)) if m.terms]
    language_ok = not cfg.lm_languages or row.get("language_lang") in cfg.lm_languages
    if cfg.lm.terms and language_ok and _value(row.get(cfg.lm_column)) is not None:
        out.append(("lm", cfg.lm))
    return out


def contributions(row: dict[str, Any], model: Model, clip: float) -> dict[str, float]:
    """Column -> weight x standardised value for the columns the row has a value for."""
    out = {}
    for term in model.terms:
        v = _value(row.get(term.column))
        if v is None:
            continue
        z = max(-clip, min(clip, (v - term.center) / term.scale))
        out[term.column] = term.weight * z
    return out


def log_odds(row: dict[str, Any], model: Model, cfg: Config) -> tuple[float | None, dict[str, float]]:
    """(log-odds under `model`, or None when fewer than `min_signals` of its terms have a value,
    contributions)."""
    parts = contributions(row, model, cfg.clip)
    if len(parts) < cfg.min_signals:
        return None, parts
    return model.bias + sum(parts.values()), parts


def lm_could_reach(row: dict[str, Any], cfg: Config, unknown: tuple[str, ...]) -> bool:
    """Could the lm model quarantine this row for some values of the `unknown` columns (each at most
    clip standard units from its centre)? A term whose column the row lacks (not there yet when the
    LM runs) counts as unknown too. The LM stage measures its context gain only where this (or its
    own incoherent rule) says it can change a verdict: elsewhere the verdict is the same whatever the
    gain, so leaving it out changes no outcome (filters/perplexity.py `context_gain_every`)."""
    if not cfg.enabled or all(name != "lm" for name, _ in models_for(row, cfg)):
        return False
    known = {k: v for k, v in row.items() if k not in unknown}
    parts = contributions(known, cfg.lm, cfg.clip)
    free = [t for t in cfg.lm.terms if t.column in unknown or t.column not in row]
    if not free or len(parts) + len(free) < cfg.min_signals:
        return False
    return cfg.lm.bias + sum(parts.values()) + sum(cfg.clip * abs(t.weight) for t in free) >= cfg.lm.threshold


def verdicts(row: dict[str, Any], cfg: Config) -> list[tuple[str, Model, float | None, dict[str, float]]]:
    """(model name, model, log-odds, contributions) of every model that judges the row."""
    return [(name, model, *log_odds(row, model, cfg)) for name, model in models_for(row, cfg)]


def decision(row: dict[str, Any], cfg: Config) -> tuple[str, float, dict[str, float]] | None:
    """(model name, log-odds minus its threshold, contributions) of the model that judges the row with
    the largest margin (>= 0: quarantined); None when no model has enough signals. What `flag` decides
    by and what `explain` prints as the verdict."""
    gaps = [(name, v - m.threshold, parts) for name, m, v, parts in verdicts(row, cfg) if v is not None]
    return max(gaps, key=lambda g: g[1]) if gaps else None


def _rows(signals: pa.Table, cfg: Config) -> list[dict[str, Any]]:
    wanted = term_columns([cfg.cheap, cfg.tokens, cfg.lm]) | {cfg.lm_column, "language_lang"}
    cols = {c: signals.column(c).to_pylist() for c in wanted if c in signals.column_names}
    return [{name: values[i] for name, values in cols.items()} for i in range(signals.num_rows)]


def score(signals: pa.Table, cfg: Config) -> list[float | None]:
    """The cheap model's log-odds per row (None where too few signals): what the LM cascade ranks by
    (filters/suspicion.py), before any LM column exists."""
    return [log_odds(row, cfg.cheap, cfg)[0] for row in _rows(signals, cfg)]


def reason_for(parts: dict[str, float]) -> str:
    top = sorted(parts, key=lambda c: -parts[c])[:2]
    return f"{REASON}({','.join(top)})"


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    if not cfg.enabled or not (cfg.cheap.terms or cfg.tokens.terms or cfg.lm.terms):
        return [[] for _ in range(signals.num_rows)]
    out: list[list[str]] = []
    for row in _rows(signals, cfg):
        best = decision(row, cfg)
        out.append([reason_for(best[2])] if best is not None and best[1] >= 0 else [])
    return out


def explain_lines(row: dict[str, Any], cfg: Config) -> list[str]:
    """The combiner's view of one document for `poisonguard explain`: the verdict (the deciding model and
    its margin), then per model its log-odds against its threshold and each column's push."""
    best = decision(row, cfg)
    if best is None:
        lines = ["  verdict: no model has enough signals"]
    else:
        outcome = "quarantine" if best[1] >= 0 else "keep"
        lines = [f"  verdict: {outcome} (model {best[0]}, log-odds minus threshold {best[1]:+.2f})"]
    for name, model, value, parts in verdicts(row, cfg):
        head = "-" if value is None else f"{value:+.2f}"
        which = "with the LM columns" if name == "lm" else "cheap columns"
        lines.append(
            f"  model {name} ({which}): log-odds {head} "
            f"(quarantine at >= {model.threshold:+.2f}; bias {model.bias:+.2f})"
        )
        for col in sorted(parts, key=lambda c: -abs(parts[c])):
            lines.append(f"    {col.ljust(34)} {parts[col]:+.2f}  (value {_value(row.get(col)):.4g})")
    return lines
