"""What the report reads: OUT/report.json, the run's config (manifest.json) with each signal's
threshold, and one pass over the shards for what report.json does not hold (score values per
outcome, evidence samples, cluster sizes)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.core.schema import DECISION_FIELDS, DOCUMENT_COLUMNS
from poisonguard.filters import registry
from poisonguard.filters.contract import knob_value

MAX_SAMPLES_PER_REASON = 5


MAX_REASONS_WITH_SAMPLES = 30


MAX_VALUES_PER_SIGNAL = 200_000  # per outcome; enough for a histogram, bounded memory on huge runs


NOT_SIGNALS = frozenset(DOCUMENT_COLUMNS) | {name for name, _ in DECISION_FIELDS}


# Signal columns that are ids or positions, not scores: never plotted as distributions.
NOT_SCORES = ("dedup_cluster_id", "_start", "_end", "_char", "_of")


# ---------------------------------------------------------------------------------------------
# Reading OUT


def shard_paths(out: Path, kind: str) -> list[Path]:
    """OUT/<kind>/part-*.parquet in name order (kind: clean or quarantine)."""
    return sorted((out / kind).glob("part-*.parquet"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}:1: expected a JSON object")
    return data


def run_config(out: Path) -> dict[str, Any]:
    """The full validated config of the run (manifest.json), else the defaults.

    The defaults are a fallback for a page written before manifest.json exists; they are the run's
    thresholds unless the run changed them.
    """
    config = read_json(out / "manifest.json").get("config")
    if isinstance(config, dict):
        return config
    from poisonguard.pipelines.config import load_config

    return load_config().model_dump(mode="json")


def reason_key(reason: str) -> str:
    """`detector:detail(extra)` -> `detector:detail`, as report.json's `reasons` counts them."""
    return reason.split("(")[0]


# ---------------------------------------------------------------------------------------------
# Thresholds: each signal column's knob, as its detector declares it (filters/registry.py)


def threshold_for(column: str, config: dict[str, Any]) -> tuple[str, float] | None:
    """The value in the run's config of the knob that decides on `column`, as (direction, value):
    direction ``above`` when larger values are flagged, ``below`` when smaller ones are. None for a
    column no detector declares a knob for, or whose knob is off (null)."""
    found = registry.signal_of(column)
    if found is None or found[1].knob is None:
        return None
    detector, signal = found
    section = config.get(detector.name)
    value = knob_value(section, signal.knob) if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return signal.direction, float(value)


# ---------------------------------------------------------------------------------------------
# One pass over the shards for what report.json does not hold


@dataclass
class Sample:
    reason: str
    row: dict[str, Any]


@dataclass
class ShardFacts:
    """Collected from the shards: values per signal, cluster sizes, samples per reason."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # column -> outcome -> values
    cluster_docs_by_size: Counter[int] = field(default_factory=Counter)
    cluster_urls: dict[str, list[str]] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    numeric_columns: list[str] = field(default_factory=list)
    signal_columns: list[str] = field(default_factory=list)


def _is_numeric(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_boolean(t)


def _score_columns(schema: pa.Schema) -> list[str]:
    return [
        f.name
        for f in schema
        if f.name not in NOT_SIGNALS
        and not f.name.startswith("_")
        and _is_numeric(f.type)
        and not any(f.name.endswith(s) or f.name == s for s in NOT_SCORES)
    ]


def _collect_values(
    facts: ShardFacts,
    paths: list[Path],
    outcome_of: Callable[[pa.RecordBatch], list[str]],
    wanted_clusters: set[str],
) -> None:
    for path in paths:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        cols = [c for c in facts.numeric_columns if c in names]
        extra = [c for c in ("dedup_cluster_id", "dedup_cluster_size", "url", "outcome") if c in names]
        if not cols and not extra:
            continue
        for batch in pf.iter_batches(columns=sorted(set(cols + extra)), batch_size=65_536):
            outcomes = outcome_of(batch)
            for col in cols:
                per = facts.values.setdefault(col, {})
                for value, outcome in zip(batch.column(col).to_pylist(), outcomes, strict=True):
                    if value is None or (isinstance(value, float) and not math.isfinite(value)):
                        continue
                    bucket = per.setdefault(outcome, [])
                    if len(bucket) < MAX_VALUES_PER_SIGNAL:
                        bucket.append(float(value))
            if "dedup_cluster_size" in extra:
                facts.cluster_docs_by_size.update(
                    s for s in batch.column("dedup_cluster_size").to_pylist() if s is not None and s >= 2
                )
            if wanted_clusters and "dedup_cluster_id" in extra and "url" in extra:
                for cid, url in zip(
                    batch.column("dedup_cluster_id").to_pylist(), batch.column("url").to_pylist(), strict=True
                ):
                    if cid in wanted_clusters and url:
                        urls = facts.cluster_urls.setdefault(cid, [])
                        if len(urls) < 5:
                            urls.append(url)


def _collect_samples(facts: ShardFacts, paths: list[Path], reasons: list[str]) -> None:
    """Up to MAX_SAMPLES_PER_REASON dropped documents per reason, in shard order.

    Reads only the `reasons` column of each row group, and the full rows only of row groups that
    hold a document still wanted, so a huge quarantine costs little.
    """
    room = {r: MAX_SAMPLES_PER_REASON for r in reasons}
    for path in paths:
        if not any(room.values()):
            return
        pf = pq.ParquetFile(path)
        if "reasons" not in pf.schema_arrow.names:
            continue
        for group in range(pf.num_row_groups):
            if not any(room.values()):
                return
            row_reasons = pf.read_row_group(group, columns=["reasons"]).column("reasons").to_pylist()
            picked: dict[int, list[str]] = {}
            for i, rs in enumerate(row_reasons):
                for key in dict.fromkeys(reason_key(r) for r in rs or ()):
                    if room.get(key):
                        room[key] -= 1
                        picked.setdefault(i, []).append(key)
            if not picked:
                continue
            rows = pf.read_row_group(group).take(pa.array(sorted(picked))).to_pylist()
            for i, row in zip(sorted(picked), rows, strict=True):
                for key in picked[i]:
                    facts.samples.setdefault(key, []).append(Sample(key, row))


def collect(out: Path, report: dict[str, Any]) -> ShardFacts:
    facts = ShardFacts()
    clean, quarantine = shard_paths(out, "clean"), shard_paths(out, "quarantine")
    schemas = [pq.read_schema(p) for p in (clean[:1] + quarantine[:1])]
    seen: dict[str, None] = {}
    for schema in schemas:
        for f in schema:
            if f.name not in NOT_SIGNALS and not f.name.startswith("_"):
                seen.setdefault(f.name, None)
        for name in _score_columns(schema):
            if name not in facts.numeric_columns:
                facts.numeric_columns.append(name)
    facts.signal_columns = list(seen)
    largest = [c for c in (report.get("largest_clusters") or [])[:10] if isinstance(c, dict)]
    wanted = {str(c.get("cluster_id")) for c in largest}
    _collect_values(facts, clean, lambda b: ["kept"] * b.num_rows, wanted)
    _collect_values(facts, quarantine, lambda b: [str(o) for o in b.column("outcome").to_pylist()], wanted)
    reasons = [str(r) for r in (report.get("reasons") or {})][:MAX_REASONS_WITH_SAMPLES]
    _collect_samples(facts, quarantine, reasons)
    return facts
