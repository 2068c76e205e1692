"""The LM in forked workers: rows dealt out and put back in order, progress, no worker left behind."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pyarrow as pa
import pytest

from poisonguard.pipelines import lm_workers

pytestmark = pytest.mark.skipif(not lm_workers.can_fork(), reason="needs fork")


class _TextScorer:
    """A stand-in with the real scorer's shape: signals that depend on each text alone, and the pid
    that scored it (so the test sees where the work ran)."""

    def score(self, batch: pa.Table, on_pass: object = None) -> dict[str, pa.Array]:
        texts = batch.column("text").to_pylist()
        return {
            "perplexity_mean_nll": pa.array([float(len(t)) for t in texts], pa.float32()),
            "perplexity_scored_tokens": pa.array([len(t.split()) for t in texts], pa.int32()),
            "pid": pa.array([os.getpid()] * len(texts), pa.int64()),
        }


def test_forked_scorer_keeps_row_order_reports_tokens_and_leaves_no_worker() -> None:
    texts = [" ".join(["w"] * (i % 7 + 1)) + "x" * i for i in range(9)]
    batch = pa.table({"id": [str(i) for i in range(9)], "text": texts})
    forked = lm_workers.ForkedScorer(_TextScorer(), workers=2)
    tokens: list[int] = []
    try:
        got = forked.score(batch, on_pass=tokens.append)
        alone = _TextScorer().score(batch)
        assert got["perplexity_mean_nll"].to_pylist() == alone["perplexity_mean_nll"].to_pylist()
        assert tokens == [sum(alone["perplexity_scored_tokens"].to_pylist())]
        assert os.getpid() not in set(got["pid"].to_pylist())  # the workers scored, the parent did not
        one = forked.score(batch.slice(0, 1))  # a single row is scored here, not in a worker
        assert one["pid"].to_pylist() == [os.getpid()]
    finally:
        forked.close()
    assert multiprocessing.active_children() == []


class _DyingScorer(_TextScorer):
    """Kills its own process when it scores in a worker (what an out-of-memory kill does)."""

    def __init__(self) -> None:
        self.parent = os.getpid()

    def score(self, batch: pa.Table, on_pass: object = None) -> dict[str, pa.Array]:
        if os.getpid() != self.parent and "die" in batch.column("text").to_pylist():
            os.kill(os.getpid(), signal.SIGKILL)
        return super().score(batch, on_pass)


def test_a_worker_killed_mid_batch_is_an_error_not_a_hang() -> None:
    batch = pa.table({"id": ["0", "1", "2", "3"], "text": ["a", "die", "c", "d"]})
    forked = lm_workers.ForkedScorer(_DyingScorer(), workers=2)
    try:
        with pytest.raises(lm_workers.LMWorkerError, match="worker process died"):
            forked.score(batch)
    finally:
        forked.close()
    assert multiprocessing.active_children() == []


class _RuleScorer(_TextScorer):
    """Says per row what the context-gain rule it was handed answered (-1: no rule)."""

    def score(self, batch: pa.Table, on_pass: object = None, gain_rule: object = None) -> dict[str, pa.Array]:
        out = super().score(batch)
        asked = [-1 if gain_rule is None else int(gain_rule(row)) for row in batch.to_pylist()]  # type: ignore[operator]
        return {**out, "asked": pa.array(asked, pa.int64())}


def _odd_id(row: dict[str, object]) -> bool:
    return int(str(row["id"])) % 2 == 1


def test_forked_scorer_hands_the_gain_rule_to_its_workers() -> None:
    batch = pa.table({"id": [str(i) for i in range(6)], "text": [f"t{i}" for i in range(6)]})
    forked = lm_workers.ForkedScorer(_RuleScorer(), workers=2)
    try:
        assert forked.score(batch, gain_rule=_odd_id)["asked"].to_pylist() == [0, 1, 0, 1, 0, 1]
        assert forked.score(batch)["asked"].to_pylist() == [-1] * 6
        assert forked.score(batch.slice(1, 1), gain_rule=_odd_id)["asked"].to_pylist() == [1]
    finally:
        forked.close()
    assert multiprocessing.active_children() == []
