"""The Ray engine on a cluster of two nodes: Ray's own test cluster (``ray.cluster_utils.Cluster``)
starts a head and a worker node (one raylet and object store each, 1 CPU each) on this machine.

The driver joins it by address, as against a real cluster. OUT is on the one local disk, which
every node sees at the same path (a real cluster needs a shared file system for that).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.ray_engine import run_filter_ray
from poisonguard.pipelines.runner import run_filter
from tests.conftest import DEMO_CORPUS
from tests.pipelines.test_ray_engine import _compare_runs, _tricky_corpus

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.slow

NODE = {"num_cpus": 1, "object_store_memory": 150 * 2**20}


@pytest.fixture
def two_nodes() -> Iterator[Any]:
    # The run must join the cluster by its address, not a Ray left initialised in this process.
    if ray.is_initialized():
        ray.shutdown()
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_two_node_cluster_gives_the_local_outcomes(
    two_nodes: Any, tmp_path: Path, fast_config: PipelineConfig
) -> None:
    inputs = [str(DEMO_CORPUS), str(_tricky_corpus(tmp_path / "tricky.jsonl"))]
    assert fast_config.dedup.enabled
    run_filter(inputs, tmp_path / "local", fast_config, show_progress=False)
    report = run_filter_ray(
        inputs, tmp_path / "ray", fast_config, address=two_nodes.address, show_progress=False
    )
    assert not ray.is_initialized()  # the run joined the cluster by address and left it
    # Outcome, reasons and duplicate_of of every document, shards and report: the local run's.
    _compare_runs(tmp_path / "local", tmp_path / "ray")
    assert report["counts"]["duplicate"] >= 10 and report["ray_cpus"] == 2
    # The scoring tasks ran on both nodes (the report counts the chunks each node scored).
    nodes = {two_nodes.head_node.node_id, *(n.node_id for n in two_nodes.worker_nodes)}
    assert len(nodes) == 2
    assert set(report["ray_nodes"]) == nodes and all(c >= 1 for c in report["ray_nodes"].values())
    rows = fast_config.run.batch_rows
    assert sum(report["ray_nodes"].values()) == -(-report["counts"]["in"] // rows)  # each chunk once
