"""The language model in `run.workers` forked processes that share one loaded model.

On a CPU a 135M model's matrices are small: two processes on one thread each keep two cores busier
than one process on two threads, whose threads wait for each other at every operation (and for any
other job on a shared machine). The model is loaded once, in the parent, before the fork, and has
not run yet: the workers share its weights (copy-on-write pages) instead of each holding a copy.
Each worker runs one thread: a process forked after OpenMP has run (the parent may have scored a
one-document batch) hangs at its first parallel operation with two threads (measured with torch
2.13's GNU OpenMP), and runs fine with one. Each batch is dealt out to the workers
document by document in turn and put back in order; a document's signals do not depend on which
other documents it is scored with (tests/filters/test_perplexity.py). A worker that dies (an
out-of-memory kill) makes the batch fail with LMWorkerError instead of waiting for it forever.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pyarrow as pa

from poisonguard.pipelines import stages

_SCORER: Any = None  # the parent's scorer, inherited by the forked workers


class LMWorkerError(RuntimeError):
    """A forked LM worker died while scoring (killed, most often for memory)."""


def one_torch_thread() -> None:
    """A forked worker's torch runs on one thread (its siblings take the other cores)."""
    import torch

    torch.set_num_threads(1)


def _score_part(args: tuple[pa.Table, Any]) -> dict[str, pa.Array]:
    part, gain_rule = args
    return dict(stages.call_scorer(_SCORER, part, {"gain_rule": gain_rule}))


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class ForkedScorer:
    """An LM scorer (``score(batch, on_pass)``) that spreads each batch over forked workers."""

    def __init__(self, scorer: Any, workers: int) -> None:
        self.scorer = scorer
        self.workers = workers
        self._pool: Any = None

    def _ensure_pool(self) -> Any:
        global _SCORER
        if self._pool is None:
            _SCORER = self.scorer
            # An executor, not multiprocessing.Pool: its futures fail when a worker dies, where
            # Pool.map waits for the lost result forever.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("fork"), initializer=one_torch_thread
            )
        return self._pool

    def score(
        self, batch: pa.Table, on_pass: Callable[[int], None] | None = None, gain_rule: Any = None
    ) -> dict[str, pa.Array]:
        n = batch.num_rows
        if n < 2:
            scored = dict(stages.call_scorer(self.scorer, batch, {"gain_rule": gain_rule}))
            _report_tokens(scored, on_pass)
            return scored
        parts = [list(range(w, n, self.workers)) for w in range(self.workers)]
        parts = [p for p in parts if p]
        try:
            jobs = [(batch.take(pa.array(p)), gain_rule) for p in parts]
            results = list(self._ensure_pool().map(_score_part, jobs))
        except BrokenProcessPool as exc:
            self.close()  # the executor has already stopped the other workers
            raise LMWorkerError(
                f"a language-model worker process died while scoring {n} documents (killed, most often "
                f"for memory); lower run.workers or the batch size and run again"
            ) from exc
        order = [i for p in parts for i in p]
        back = pa.array(sorted(range(n), key=lambda k: order[k]))  # position of each row in `order`
        merged = {name: pa.concat_arrays([r[name] for r in results]).take(back) for name in results[0]}
        _report_tokens(merged, on_pass)
        return merged

    def close(self) -> None:
        """Stop the workers and wait for them: none is left behind."""
        global _SCORER
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        _SCORER = None


def _report_tokens(scored: dict[str, pa.Array], on_pass: Callable[[int], None] | None) -> None:
    """Progress: the tokens scored (the workers cannot call back into this process)."""
    column = scored.get("perplexity_scored_tokens")
    if on_pass is not None and column is not None:
        on_pass(int(sum(v for v in column.to_pylist() if v is not None)))
