"""Shared fixtures: small corpora written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poisonguard.pipelines.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent
DEMO_CORPUS = REPO / "examples" / "corpus" / "demo.jsonl"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


@pytest.fixture
def fast_config() -> PipelineConfig:
    """Every detector but the language model (which has its own tests)."""
    return load_config(overrides={"perplexity": {"enabled": False}, "run": {"batch_rows": 7}})
