"""The docs match the code: every shard column is in docs/COLUMNS.md, reasons read detector:detail,
references to the design and threat catalogue point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from poisonguard.filters import drift
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.runner import run_filter
from poisonguard.pipelines.shard_schema import shard_schema
from tests.conftest import DEMO_CORPUS, REPO
from tests.pipelines.test_cli import poisonguard

DETECTORS = (
    "unicode",
    "triggers",
    "injection",
    "repetition",
    "language",
    "hidden_text",
    "cloaking",
    "coherence",
    "combiner",
    "dedup",
    "campaign",
    "perplexity",
    "drift",
    "policy",
)
REASON = re.compile(rf"^({'|'.join(DETECTORS)}):[a-z0-9_]+(\(.+\))?$")


def documented_columns() -> set[str]:
    text = (REPO / "docs" / "COLUMNS.md").read_text("utf-8")
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.MULTILINE))


def test_every_shard_column_is_documented() -> None:
    columns = shard_schema(context_fields=list(drift.SIGNAL_SCHEMA)).names
    missing = [c for c in columns if c not in documented_columns()]
    assert not missing, f"columns missing from docs/COLUMNS.md: {missing}"
    stale = documented_columns() - set(columns)
    assert not stale, f"docs/COLUMNS.md lists columns no shard has: {sorted(stale)}"


def test_every_reason_reads_detector_detail(tmp_path: Path, fast_config: PipelineConfig) -> None:
    run_filter([str(DEMO_CORPUS)], tmp_path / "out", fast_config, show_progress=False)
    reasons = {
        r for rs in pq.read_table(tmp_path / "out" / "quarantine").column("reasons").to_pylist() for r in rs
    }
    assert len({r.split(":")[0] for r in reasons}) >= 4  # the demo corpus exercises several detectors
    bad = [r for r in reasons if not REASON.match(r)]
    assert not bad, bad


@pytest.mark.parametrize("name", ["DESIGN.md", "THREATS.md"])
def test_design_and_threat_references_point_into_docs(name: str) -> None:
    assert (REPO / "docs" / name).exists()
    pattern = re.compile(rf"(?<![/\w]){re.escape(name)}")
    offenders = []
    for folder in ("core", "crawler", "filters", "pipelines", "configs", "bench", "tests"):
        for path in (REPO / folder).rglob("*"):
            if path == Path(__file__) or path.suffix not in (".py", ".yaml"):
                continue
            if pattern.search(path.read_text("utf-8")):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"{name} referenced without docs/: {offenders}"


def test_threat_ids_used_in_code_are_in_the_catalogue() -> None:
    catalogue = (REPO / "docs" / "THREATS.md").read_text("utf-8")
    used: set[str] = set()
    for folder in ("core", "crawler", "filters", "pipelines", "configs"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".yaml"):
                used.update(re.findall(r"\bP-[A-Z]+(?:-[A-Za-z]+)?\b", path.read_text("utf-8")))
    assert used and all(f"| {t} |" in catalogue or f" {t} " in catalogue for t in used), used


def test_version_option() -> None:
    from poisonguard.pipelines import __version__

    result = poisonguard("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"poisonguard {__version__}"
