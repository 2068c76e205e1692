"""The local engine: the stages of pipelines/stages.py scheduled on this machine.

Scoring runs in ``run.workers`` processes with a bounded look-ahead; dedup is one index over all
chunks in input order; the language model and the decisions run chunk by chunk in this process.
Scoring and the LM are checkpointed per chunk (OUT/_work/), so ``--resume`` skips finished chunks.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.core.schema import DOCUMENT_SCHEMA
from poisonguard.filters import dedup, injection, perplexity, trigger_mining
from poisonguard.filters.dedup_prior import NightIndex
from poisonguard.pipelines import cascade, lm_workers, stages
from poisonguard.pipelines.commit import commit_output
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.readers import read_documents
from poisonguard.pipelines.shard_output import Output, output_schema
from poisonguard.pipelines.stages import ContextDetector, Duplicates, Run


def run_filter(
    inputs: list[str],
    out: Path,
    cfg: PipelineConfig,
    *,
    overwrite: bool = False,
    resume: bool = False,
    use_lm: bool | None = None,
    show_progress: bool | str = True,
    extra_report: dict[str, Any] | None = None,
    lm_scorer: Any = None,
    dedup_index: dedup.DedupIndex | NightIndex | None = None,
    context_detectors: tuple[ContextDetector, ...] = (),
) -> dict[str, Any]:
    """Filter `inputs` into `out`; returns the report (also written to OUT/report.json).

    `dedup_index` may hold documents of earlier runs (nightly), so that tonight's near-copies of
    them are duplicates; `context_detectors` add cross-document signals (see ContextDetector).
    """
    cfg = stages.probe_config(cfg, use_lm)
    miner = trigger_mining.TriggerMiner(cfg.trigger_mining) if cfg.trigger_mining.enabled else None
    if miner is not None:  # a corpus pass: counted in the scoring workers, merged in input order
        context_detectors = (*context_detectors, miner)
    run = stages.setup_run(
        inputs, out, cfg, overwrite=overwrite, resume=resume, use_lm=use_lm, show_progress=show_progress
    )
    if run.finished is not None:  # killed inside its commit: finished now
        return run.finished
    # trigger mining's counting runs with the scoring (in the workers) unless chunks are resumed
    mined_in_scoring = _timed(run, "stage:cheap", lambda: _score(run, cfg, miner))
    chunk_files = stages.chunk_paths(run.scored_dir)
    docs_in = sum(pq.ParquetFile(p).metadata.num_rows for p in chunk_files)
    observers = tuple(d for d in context_detectors if not (mined_in_scoring and d is miner))
    duplicates = _timed(
        run, "stage:dedup", lambda: _dedup(run, chunk_files, docs_in, cfg, dedup_index, observers)
    )
    scorer: list[Any] = [lm_scorer]  # the model, loaded on first need and kept for trigger mining
    lm_rows = _timed(run, "stage:lm", lambda: _language_model(run, chunk_files, duplicates, cfg, scorer))
    # the LM check of the mined candidates (ONION); a caller's own scorer without `window_nll` (the
    # API's `lm_scorer`) cannot do it, and the miner then keeps its stricter no-LM rule
    if (
        miner is not None
        and run.use_lm
        and (scorer[0] is None or hasattr(_plain_scorer(scorer, cfg), "window_nll"))
    ):
        model = functools.partial(_plain_scorer, scorer, cfg)
        _timed(run, "stage:trigger_lm", lambda: miner.confirm_from_chunks(chunk_files, model))
    start = time.perf_counter()
    output = Output(out, output_schema(chunk_files, context_detectors), cfg)
    parts = _chunk_parts(chunk_files, duplicates)

    def decide(i: int, quarantined: set[str]) -> pa.Table:
        scored, lm_part = pq.read_table(chunk_files[i]), stages.read_lm_part(run, chunk_files[i])
        return stages.decide_chunk(scored, parts[i], lm_part, cfg, quarantined, context_detectors)

    quarantined_ids: set[str] = set()
    if context_detectors:  # only their claim ranks keep a copy after its duplicates (stages.judged_rows)
        keys = [p.keys if p.keys is not None else _ids(f) for p, f in zip(parts, chunk_files, strict=True)]
        quarantined_ids = stages.quarantined_ahead(
            [(k, p.duplicate_of) for k, p in zip(keys, parts, strict=True)], lambda i: decide(i, set())
        )
    task = run.progress.start("write", total=docs_in, unit="docs")
    for i, part in enumerate(parts):
        output.write(decide(i, quarantined_ids))
        run.progress.advance(task, None, len(part.eligible))
    run.progress.finish(task)
    run.timings["stage:write"] = time.perf_counter() - start
    extra = {"duplicate_ids": duplicates.row_keys_report, **(extra_report or {})}
    if miner is not None:
        extra["triggers_mined"] = miner.report()
    return commit_output(run, cfg, output, lm_rows=lm_rows, extra_report=extra)


def _chunk_parts(chunk_files: list[Path], duplicates: Duplicates) -> list[Duplicates]:
    """Stage 3's result cut into the chunks' rows."""
    parts = []
    offset = 0
    for path in chunk_files:
        rows = pq.ParquetFile(path).metadata.num_rows
        parts.append(duplicates.slice(offset, rows))
        offset += rows
    return parts


def _ids(path: Path) -> list[str]:
    return [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]


def _timed(run: Run, name: str, step: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = step()
    run.timings[name] = time.perf_counter() - start
    return result


ScoreTask = tuple[pa.Table, PipelineConfig, str, int | None]
ScoreResult = tuple[int, dict[str, float], trigger_mining.Partial | None]


def _score_task(args: ScoreTask) -> ScoreResult:
    """Score one chunk into its work file; with `first_doc` (its first document's number), also
    trigger mining's counts of it, so that they are made in the workers, not in the one process
    that merges them."""
    docs, cfg, target, first_doc = args
    table, timings = stages.score_chunk_file(docs, cfg, Path(target))
    if first_doc is None:
        return docs.num_rows, timings, None
    start = time.perf_counter()
    partial = trigger_mining.table_partial(table, first_doc, cfg.trigger_mining)
    timings["trigger_mining_counts"] = time.perf_counter() - start
    return docs.num_rows, timings, partial


def _score(run: Run, cfg: PipelineConfig, miner: trigger_mining.TriggerMiner | None = None) -> bool:
    """Scoring, in `run.workers` processes; chunks finished by an interrupted run are skipped.
    `miner` is fed every chunk's counts in input order, unless an interrupted run left scored chunks
    (then it observes them all in the dedup stage, as before); whether it was fed."""
    task = run.progress.start("scoring", total=run.input_bytes, unit="B")
    feed = miner is not None and not stages.chunk_paths(run.scored_dir)

    def chunks() -> Iterator[ScoreTask]:
        first_doc = 0
        for chunk_no, docs in enumerate(read_documents(run.paths, cfg.run.batch_rows, run.state)):
            target = run.scored_dir / stages.chunk_name(chunk_no)
            if target.exists():
                run.progress.advance(task, run.state.bytes_done, docs.num_rows)
                continue
            yield docs, cfg, str(target), first_doc if feed else None
            first_doc += docs.num_rows

    def done(result: ScoreResult) -> None:  # called in input order
        rows, timings, partial = result
        run.add_timings(timings)
        if miner is not None and partial is not None:
            miner.merge(partial)
        run.progress.advance(task, run.state.bytes_done, rows)

    if cfg.run.workers == 1:
        for args in chunks():
            done(_score_task(args))
    else:
        with _worker_pool(cfg) as pool:
            window: deque[Any] = deque()
            for args in chunks():
                window.append(pool.apply_async(_score_task, (args,)))
                # Bounded look-ahead: the reader never runs far ahead of the workers.
                while len(window) >= 2 * cfg.run.workers:
                    done(window.popleft().get())
            while window:
                done(window.popleft().get())
            pool.close()
            pool.join()  # the workers have exited before the run goes on: none is left behind
    run.progress.finish(task)
    return feed


def _worker_pool(cfg: PipelineConfig) -> Any:
    """Processes for scoring. Forked where the platform can (Linux), after the detectors' models are
    loaded here once, so the workers share those pages instead of each starting Python and loading
    them again (spawn, the fallback elsewhere). The injection probe's LM is loaded here too (the
    warm-up page has no window it reads), and each worker runs torch on one thread, as the LM
    workers do, so N workers use N cores."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn").Pool(cfg.run.workers)
    warm = pa.Table.from_pylist(
        [{"id": "warm-up", "text": "Loads the detectors' models once."}], DOCUMENT_SCHEMA
    )
    stages.score_cheap(warm, cfg)
    probe = injection.usable_probe(cfg.injection) if cfg.injection.enabled else None
    if probe is None:
        return multiprocessing.get_context("fork").Pool(cfg.run.workers)
    injection.probe_hidden(["Loads the probe's language model once."], probe)
    return multiprocessing.get_context("fork").Pool(cfg.run.workers, initializer=lm_workers.one_torch_thread)


def _dedup(
    run: Run,
    chunk_files: list[Path],
    docs_in: int,
    cfg: PipelineConfig,
    dedup_index: dedup.DedupIndex | NightIndex | None,
    context_detectors: tuple[ContextDetector, ...],
) -> Duplicates:
    """One index over every chunk in input order (plus the documents of earlier runs)."""
    ids: list[str] = []
    eligible: list[bool] = []
    index: dedup.DedupIndex | NightIndex | None = None
    if cfg.dedup.enabled:
        index = dedup_index if dedup_index is not None else dedup.DedupIndex(cfg.dedup)
    row_keys = stages.RowKeys(index.is_prior if index is not None else None)
    campaigns = stages.campaign_index(cfg)
    task = run.progress.start("dedup", total=docs_in, unit="docs")
    if index is not None:  # once a night: each lookup reads the id tables of the earlier nights
        index.prefetch_ids(stages.chunk_ids(chunk_files))
    for path in chunk_files:
        table = pq.read_table(path)
        run.progress.advance(task, None, table.num_rows)
        if campaigns is not None:
            campaigns.add_table(table)
        for detector in context_detectors:
            detector.observe(table)
        eligible.extend(stages.eligible_rows(table, cfg))
        keys = row_keys.add(table.column("id").to_pylist())
        ids.extend(keys)
        if index is not None:
            stages.add_to_index(index, table, keys)
    result = Duplicates.none(eligible)
    if index is not None:
        assign = index.assign()
        clusters = assign.column("dedup_cluster_id").to_pylist()
        judged, ranks = stages.judged_rows(context_detectors, range(len(ids)), clusters)
        eligible = [e and not j for e, j in zip(eligible, judged, strict=True)]
        result = stages.resolve_duplicates(assign, ids, eligible, cfg, index.is_prior, ranks)
        result.assign = stages.user_columns(result.assign) if result.assign is not None else None
    result.keys = ids
    result.row_keys_report = row_keys.report()
    if campaigns is not None:
        result.assign = stages.join_columns(result.assign, campaigns.assign())
    run.progress.finish(task)
    return result


def _language_model(
    run: Run, chunk_files: list[Path], duplicates: Duplicates, cfg: PipelineConfig, scorer: list[Any]
) -> int:
    """The LM on the undecided documents, chunk by chunk; the model is loaded on first need."""
    if not run.use_lm:
        return 0
    routes = _lm_routes(chunk_files, duplicates.undecided(), cfg)
    task = run.progress.start("language model", total=sum(len(r) for r in routes), unit="docs")

    def get_scorer() -> Any:
        if scorer[0] is None:
            scorer[0] = _new_lm_scorer(cfg)
        return scorer[0]

    scored_rows = 0
    shown = stages.LMProgress(run.progress, task)
    try:
        for path, picked in zip(chunk_files, routes, strict=True):
            target = run.lm_dir / path.name
            if target.exists():  # scored by the interrupted run: its rows still count
                scored_rows += stages.scored_rows(target)
                run.progress.advance(task, None, len(picked))
                continue
            table = pq.read_table(path, columns=stages.lm_input_columns(cfg, pq.read_schema(path).names))
            scored_rows += stages.lm_chunk_file(table, picked, get_scorer, cfg, target, shown)
    finally:
        if isinstance(scorer[0], lm_workers.ForkedScorer):
            scorer[0].close()
    run.progress.finish(task)
    return scored_rows


def _plain_scorer(scorer: list[Any], cfg: PipelineConfig) -> Any:
    """The model in this process (trigger mining's few windows need no worker processes)."""
    if scorer[0] is None:
        scorer[0] = perplexity.PerplexityScorer(cfg.perplexity)
    return scorer[0].scorer if isinstance(scorer[0], lm_workers.ForkedScorer) else scorer[0]


def _new_lm_scorer(cfg: PipelineConfig) -> Any:
    """The model, loaded here; with `run.workers` > 1 on a CPU, shared by that many forked
    single-threaded workers (pipelines/lm_workers.py)."""
    lm = perplexity.PerplexityScorer(cfg.perplexity)
    if cfg.run.workers <= 1 or lm.device != "cpu" or not lm_workers.can_fork():
        return lm
    return lm_workers.ForkedScorer(lm, cfg.run.workers)


def _lm_routes(chunk_files: list[Path], undecided: list[bool], cfg: PipelineConfig) -> list[list[int]]:
    """Per scored chunk, the rows the LM scores (pipelines/cascade.py chooses them)."""
    routes = []
    offset = 0
    for path in chunk_files:
        names = pq.read_schema(path).names
        wanted = ("id", *cascade.route_columns(cfg))
        table = pq.read_table(path, columns=[c for c in wanted if c in names])
        routes.append(cascade.lm_rows(table, cfg, undecided[offset : offset + table.num_rows]))
        offset += table.num_rows
    return routes


# ---------------------------------------------------------------------------------------------
# In memory (benchmarks, tests): the same stages over one table


def score_documents(
    docs: pa.Table,
    cfg: PipelineConfig,
    use_lm: bool = False,
    lm_scorer: Any = None,
    on_stage: Callable[[str, float], None] | None = None,
) -> pa.Table:
    """Documents (DOCUMENT_SCHEMA columns; missing optional ones become nulls) -> decided table.
    `lm_scorer` replaces the LM stage's scorer only: the injection probe, where it is on, reads the
    default LM it was fitted on (see :func:`stages.probe_config`)."""
    for f in DOCUMENT_SCHEMA:
        if f.name not in docs.column_names:
            docs = docs.append_column(f.name, pa.nulls(docs.num_rows, f.type))
    docs = docs.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
    cfg = stages.probe_config(cfg, use_lm)

    def stage(name: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = step()
        if on_stage:
            on_stage(name, time.perf_counter() - start)
        return result

    table, _ = stage("cheap", lambda: stages.score_cheap(docs, cfg))
    duplicates = Duplicates.none(stages.eligible_rows(table, cfg))

    def dedup_one_table() -> Duplicates:
        index = dedup.DedupIndex(cfg.dedup)
        stages.add_to_index(index, table)
        ids = table.column("id").to_pylist()
        return stages.resolve_duplicates(index.assign(), ids, duplicates.eligible, cfg)

    if cfg.dedup.enabled:
        duplicates = stage("dedup", dedup_one_table)
    campaigns = stages.campaign_index(cfg)
    if campaigns is not None:
        campaigns.add_table(table)
        duplicates.assign = stages.join_columns(duplicates.assign, campaigns.assign())
    lm_part = None
    if use_lm and cfg.perplexity.enabled:

        def lm() -> pa.Table:
            scorer = lm_scorer or perplexity.PerplexityScorer(cfg.perplexity)
            undecided = duplicates.undecided()
            step = cfg.run.batch_rows  # routed per chunk of batch_rows, as the engines do
            picked = [
                first + i
                for first in range(0, table.num_rows, step)
                for i in cascade.lm_rows(table.slice(first, step), cfg, undecided[first : first + step])
            ]
            return pa.table(stages.lm_columns(table, picked, scorer, cfg)) if picked else None

        lm_part = stage("lm", lm)
    return stages.decide_chunk(table, duplicates, lm_part, cfg, set())
