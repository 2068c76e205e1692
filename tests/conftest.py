"""Shared fixtures: small corpora written by the tests themselves."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poisonguard.pipelines.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent
DEMO_CORPUS = REPO / "examples" / "corpus" / "demo.jsonl"


@contextlib.contextmanager
def local_ray(**extra: Any) -> Iterator[None]:
    """A local Ray for one test module: 2 CPUs, a small object store, no dashboard; `extra` goes to
    ``ray.init`` (e.g. ``num_gpus``)."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
        ignore_reinit_error=True,
        **extra,
    )
    try:
        yield
    finally:
        ray.shutdown()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


@pytest.fixture
def fast_config() -> PipelineConfig:
    """Every detector but the language model (which has its own tests)."""
    return load_config(overrides={"perplexity": {"enabled": False}, "run": {"batch_rows": 7}})
