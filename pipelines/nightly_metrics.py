"""ROOT/metrics.prom, a Prometheus textfile for node_exporter's textfile collector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poisonguard.core.files import atomic_path
from poisonguard.core.schema import OUTCOMES
from poisonguard.pipelines.state import StateStore

METRICS_FILE = "metrics.prom"


# ---------------------------------------------------------------------------------------------
# Metrics


def write_metrics(root: Path, store: StateStore, last_attempt: dict[str, Any]) -> Path:
    """ROOT/metrics.prom for node_exporter's textfile collector (written atomically)."""
    lines: list[str] = []

    def metric(name: str, help_text: str, samples: list[tuple[str, float]], kind: str = "gauge") -> None:
        lines.append(f"# HELP poisonguard_nightly_{name} {help_text}")
        lines.append(f"# TYPE poisonguard_nightly_{name} {kind}")
        lines.extend(f"poisonguard_nightly_{name}{labels} {value:.17g}" for labels, value in samples)

    metric("last_run_timestamp_seconds", "Unix time the last run ended.", [("", last_attempt["time"])])
    metric(
        "last_run_success",
        "1 if the last run succeeded (or found its date done), else 0.",
        [("", 1.0 if last_attempt["ok"] else 0.0)],
    )
    done = store.latest_done()
    if done is not None:
        counts = done["counts"] or {}
        metric(
            "last_success_timestamp_seconds",
            "Unix time the last successful run finished.",
            [("", float(done["finished"]))],
        )
        metric(
            "last_success_date",
            "Logical date of the last successful run, as YYYYMMDD.",
            [("", float(done["date"].replace("-", "")))],
        )
        metric(
            "duration_seconds",
            "Wall time of the last successful run.",
            [("", float(done["duration_s"] or 0))],
        )
        metric("docs_in", "Documents read by the last successful run.", [("", float(counts.get("in", 0)))])
        metric(
            "docs_out",
            "Documents by outcome in the last successful run.",
            [(f'{{outcome="{o}"}}', float(counts.get(o, 0))) for o in (*OUTCOMES, "unreadable")],
        )
        metric(
            "input_files",
            "Input files consumed by the last successful run.",
            [("", float(counts.get("input_files", 0)))],
        )
        metric(
            "drift_pages",
            "Pages compared with their last version / drifted, last successful run.",
            [
                ('{kind="compared"}', float(counts.get("drift_compared", 0))),
                ('{kind="changed"}', float(counts.get("drift_changed", 0))),
            ],
        )
    path = root / METRICS_FILE
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", "utf-8")
    return path
