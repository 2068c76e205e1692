"""The Ray engine: the stages of pipelines/stages.py scheduled on a Ray cluster, with the same
outcome and reasons per document as the local engine (runner.py).

1. scoring: the driver reads the inputs with poisonguard's own readers (so the chunking, the ids and
   the unreadable list are the local engine's), puts each chunk in the object store, and Ray Data
   runs ``stages.score_chunk_file`` on it with ``map_batches`` (the same OUT/_work/scored/ files as
   the local engine, so ``--resume`` works).
2. dedup: the driver gives every document its row key in input order (stages.RowKeys, as the local
   engine does; the renamed ones go to OUT/_work/keys/), then two shuffles with Ray tasks
   (pipelines/ray_dedup.py); per chunk, the documents dedup touched are written to
   OUT/_work/dedup/. Context detectors (nightly's drift) observe every scored chunk on the driver,
   which holds their state. Trigger mining (filters/trigger_mining.py) counts each chunk in a Ray
   task; the driver merges the counts in input order, as the local engine does, and the mined
   tokens travel to the decision tasks.
3. the language model, in a Ray Data actor pool (one model load per actor; GPUs requested when the
   cluster has them and the perplexity config can place the model on one), only for undecided
   documents, checkpointed per chunk in OUT/_work/lm/.
4. decisions per chunk in Ray tasks -> OUT/_work/decided/; the driver streams the decided chunks in
   input order into the shards and commits. With context detectors the driver decides each chunk
   itself as it streams them (their ``score`` and ``flag`` need their driver-side state).

OUT must be on storage every node can read and write (one machine, NFS, a mounted bucket): the tasks
write the work files there. Inputs are read by the driver only.
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.core.files import write_table
from poisonguard.core.ray_cluster import cluster_cpus, connected, ray_module, wait_all
from poisonguard.filters import campaign, perplexity, trigger_mining
from poisonguard.filters.dedup_prior import NightIndex
from poisonguard.pipelines import cascade, policy, ray_dedup, stages
from poisonguard.pipelines.commit import commit_output
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.readers import read_documents
from poisonguard.pipelines.shard_output import Output, output_schema
from poisonguard.pipelines.stages import ContextDetector, Run

CHUNK_COLUMN = "_chunk"


def run_filter_ray(
    inputs: list[str],
    out: Path,
    cfg: PipelineConfig,
    *,
    address: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    use_lm: bool | None = None,
    show_progress: bool | str = True,
    extra_report: dict[str, Any] | None = None,
    lm_actors: int | None = None,
    dedup_index: NightIndex | None = None,
    context_detectors: tuple[ContextDetector, ...] = (),
) -> dict[str, Any]:
    """`runner.run_filter` on a Ray cluster: same OUT files, same outcome and reasons per document.

    `address`: the cluster to join (``auto``, ``ray://head:10001``...); without it the Ray already
    initialised in this process is used, or a local one with ``run.workers`` CPUs is started (and
    stopped at the end). `lm_actors`: language-model actors (default: one per GPU, else one).

    `dedup_index` and `context_detectors` mean what they mean to ``run_filter`` (nightly: the index
    of earlier runs, the drift detector). The index is only read, never added to. Context detectors
    run on the driver, which holds their state (nightly's SQLite history).
    """
    cfg = stages.probe_config(cfg, use_lm)  # as the local engine: same outcomes
    with connected(address, cfg.run.workers) as ray:
        ray.data.DataContext.get_current().enable_progress_bars = False
        run = stages.setup_run(
            inputs,
            out,
            cfg,
            overwrite=overwrite,
            resume=resume,
            use_lm=use_lm,
            show_progress=show_progress,
            work_dirs=("scored", "lm", "dedup", "decided"),
        )
        if run.finished is not None:  # killed inside its commit: finished now
            return run.finished
        cpus = cluster_cpus()
        start = time.perf_counter()
        scored_on = _score(run, cfg, cpus)
        run.timings["stage:cheap"] = time.perf_counter() - start
        chunks = _Chunks(stages.chunk_paths(run.scored_dir))
        start = time.perf_counter()
        touched, duplicate_ids = _dedup(run, chunks, cfg, dedup_index, context_detectors)
        miner = _mine_triggers(chunks, cfg, cpus)
        run.timings["stage:dedup"] = time.perf_counter() - start
        start = time.perf_counter()
        lm_rows = _language_model(run, chunks, cfg, lm_actors)
        if miner is not None and run.use_lm:  # the LM check of the mined candidates, on the driver
            miner.confirm_from_chunks(chunks.paths, lambda: perplexity.PerplexityScorer(cfg.perplexity))
        verdicts = _late_verdicts(chunks, run.work, touched, cfg) if not context_detectors else []
        run.timings["stage:lm"] = time.perf_counter() - start
        start = time.perf_counter()
        output = Output(out, output_schema(chunks.paths, context_detectors), cfg)
        mined = (miner.frozen(),) if miner is not None else ()
        _decide_and_write(run, chunks, cfg, verdicts, context_detectors, mined, output)
        run.timings["stage:write"] = time.perf_counter() - start
        extra = {
            "engine": "ray",
            "ray_cpus": cpus,
            "ray_nodes": dict(sorted(scored_on.items())),
            "duplicate_ids": duplicate_ids,
            **(extra_report or {}),
        }
        if miner is not None:
            extra["triggers_mined"] = miner.report()
        return commit_output(run, cfg, output, lm_rows=lm_rows, extra_report=extra)


class _Chunks:
    """The scored chunks of a run: paths, chunk numbers and the offset of each chunk's first row."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.numbers = [stages.chunk_no(p) for p in paths]
        rows = [pq.ParquetFile(p).metadata.num_rows for p in paths]
        self.offsets = [int(x) for x in np.concatenate(([0], np.cumsum(rows)[:-1]))] if rows else []

    def offset_of(self) -> dict[int, int]:
        return dict(zip(self.numbers, self.offsets, strict=True))


# ---------------------------------------------------------------------------------------------
# 1. Scoring with Ray Data


def _score_blocks(batch: pa.Table, cfg: PipelineConfig, scored_dir: str) -> pa.Table:
    """map_batches UDF: every chunk in the batch (normally exactly one) -> its scored work file."""
    chunks = batch.column(CHUNK_COLUMN).to_numpy()
    done: list[int] = []
    rows: list[int] = []
    timing_names: list[list[str]] = []
    timing_values: list[list[float]] = []
    for chunk_no in dict.fromkeys(chunks.tolist()):
        docs = batch.filter(pa.array(chunks == chunk_no)).drop_columns([CHUNK_COLUMN])
        _table, timings = stages.score_chunk_file(docs, cfg, Path(scored_dir) / stages.chunk_name(chunk_no))
        done.append(chunk_no)
        rows.append(docs.num_rows)
        timing_names.append(list(timings))
        timing_values.append(list(timings.values()))
    node = ray_module().get_runtime_context().get_node_id()
    return pa.table(
        {
            "chunk": pa.array(done, pa.int64()),
            "rows": pa.array(rows, pa.int64()),
            "node": pa.array([node] * len(done), pa.string()),
            "timing_names": timing_names,
            "timing_values": timing_values,
        }
    )


class _ScoreWindows:
    """Chunks put in the object store and scored a window at a time (bounded look-ahead)."""

    def __init__(self, run: Run, cfg: PipelineConfig, task: Any) -> None:
        self.run, self.cfg, self.task = run, cfg, task
        self.refs: list[Any] = []
        self.rows = 0
        self.expected: dict[int, int] = {}
        self.scored_on: dict[str, int] = {}  # Ray node id -> chunks it scored in this run

    def add(self, chunk_no: int, docs: pa.Table) -> None:
        self.expected[chunk_no] = docs.num_rows
        tagged = docs.append_column(CHUNK_COLUMN, pa.array(np.full(docs.num_rows, chunk_no, np.int64)))
        self.refs.append(ray_module().put(tagged))
        self.rows += docs.num_rows

    def flush(self) -> None:
        if self.refs:
            ds = (
                ray_module()
                .data.from_arrow_refs(self.refs)
                .map_batches(
                    _score_blocks,
                    batch_size=None,
                    batch_format="pyarrow",
                    zero_copy_batch=True,
                    fn_kwargs={"cfg": self.cfg, "scored_dir": str(self.run.scored_dir)},
                    num_cpus=1,
                )
            )
            for row in ds.take_all():
                self._done(row)
        self.run.progress.advance(self.task, self.run.state.bytes_done, self.rows)
        self.refs, self.rows = [], 0

    def _done(self, row: dict[str, Any]) -> None:
        chunk_no, rows = row["chunk"], row["rows"]
        if rows != self.expected[chunk_no]:
            raise RuntimeError(f"chunk {chunk_no}: scored {rows} rows, expected {self.expected[chunk_no]}")
        self.scored_on[row["node"]] = self.scored_on.get(row["node"], 0) + 1
        self.run.add_timings(dict(zip(row["timing_names"], row["timing_values"], strict=True)))


def _score(run: Run, cfg: PipelineConfig, cpus: int) -> dict[str, int]:
    """Scoring; returns how many chunks each Ray node scored."""
    task = run.progress.start("scoring (ray)", total=run.input_bytes, unit="B")
    windows = _ScoreWindows(run, cfg, task)
    for chunk_no, docs in enumerate(read_documents(run.paths, cfg.run.batch_rows, run.state)):
        if (run.scored_dir / stages.chunk_name(chunk_no)).exists():  # finished by an interrupted run
            run.progress.advance(task, run.state.bytes_done, docs.num_rows)
            continue
        windows.add(chunk_no, docs)
        # Bounded look-ahead: the driver never holds more than a few chunks per CPU in the store.
        if len(windows.refs) >= 4 * cpus:
            windows.flush()
    windows.flush()
    run.progress.finish(task)
    return windows.scored_on


# ---------------------------------------------------------------------------------------------
# 2. Dedup


def _dedup(
    run: Run,
    chunks: _Chunks,
    cfg: PipelineConfig,
    dedup_index: NightIndex | None,
    context_detectors: tuple[ContextDetector, ...],
) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """Distributed dedup; the overrides per chunk go to OUT/_work/dedup/. Returns, per chunk
    position, the ranks of the documents dedup touched, and the report of ids several documents
    carry."""
    for name in ("dedup", "keys"):
        shutil.rmtree(run.work / name, ignore_errors=True)
        (run.work / name).mkdir()
    # Row keys (the local engine's, given in input order) and context detectors on the driver: they
    # see every chunk in input order before anything is decided.
    is_prior = dedup_index.is_prior if dedup_index is not None and cfg.dedup.enabled else None
    row_keys = stages.RowKeys(is_prior)
    if is_prior is not None and dedup_index is not None:  # once a night: ids of earlier nights, on disk
        dedup_index.prefetch_ids(stages.chunk_ids(chunks.paths))
    for number, path in zip(chunks.numbers, chunks.paths, strict=True):
        table = pq.read_table(path, columns=None if context_detectors else ["id"])
        for detector in context_detectors:
            detector.observe(table)
        ids = table.column("id").to_pylist()
        ray_dedup.write_renamed_keys(run.work, number, ids, row_keys.add(ids), cfg.run.row_group_rows)
    touched: dict[int, np.ndarray] = {}
    if cfg.campaign.enabled and chunks.paths:
        _campaigns(run, chunks, cfg)
    if not cfg.dedup.enabled or not chunks.paths:
        return touched, row_keys.report()
    prior = dedup_index.prior if dedup_index is not None else None
    result = ray_dedup.distributed_dedup(
        chunks.paths,
        chunks.offsets,
        cfg,
        prior=prior,
        keys_dir=run.work / "keys",
        judge=functools.partial(stages.judged_rows, context_detectors),
    )
    for c, table in result.overrides.items():
        target = ray_dedup.overrides_path(run.work, chunks.numbers[c])
        write_table(target, table, cfg.run.row_group_rows)
        touched[c] = table.column("rank").to_numpy()
    run.timings["dedup:touched_docs"] = result.touched
    run.timings["dedup:buckets_verified"] = result.buckets
    return touched, row_keys.report()


def _mine_chunk(path: str, first_doc: int, cfg: trigger_mining.Config) -> trigger_mining.Partial:
    """Ray task: one scored chunk's trigger-mining statistics."""
    names = pq.read_schema(path).names
    # the page language (and how sure): a token is a word of some languages (trigger_mining)
    wanted = ("text", "url", trigger_mining.LANGUAGE_COLUMN, trigger_mining.CONFIDENCE_COLUMN)
    table = pq.read_table(path, columns=[c for c in wanted if c in names])
    return trigger_mining.table_partial(table, first_doc, cfg)


def _mine_triggers(chunks: _Chunks, cfg: PipelineConfig, cpus: int) -> trigger_mining.TriggerMiner | None:
    """The trigger-mining corpus pass (filters/trigger_mining.py): chunks counted in Ray tasks, merged
    on the driver in input order, as the local engine merges them (the same mined tokens)."""
    if not cfg.trigger_mining.enabled:
        return None
    miner = trigger_mining.TriggerMiner(cfg.trigger_mining)
    task = ray_module().remote(_mine_chunk)
    cfg_ref = ray_module().put(cfg.trigger_mining)
    pending = list(zip(chunks.paths, chunks.offsets, strict=True))
    window: list[Any] = []
    while pending or window:
        # Bounded look-ahead: a few chunks' statistics per CPU wait in the object store.
        while pending and len(window) < 2 * cpus:
            path, offset = pending.pop(0)
            window.append(task.remote(str(path), offset, cfg_ref))
        miner.merge(ray_module().get(window.pop(0)))
    return miner


def _campaign_path(work: Path, chunk_no: int) -> Path:
    return work / "campaign" / stages.chunk_name(chunk_no)


def _campaigns(run: Run, chunks: _Chunks, cfg: PipelineConfig) -> None:
    """Spun campaigns (filters/campaign.py) over every scored chunk, on the driver: one index of
    signatures and sketches (no text), its columns written per chunk for the decision tasks."""
    index = stages.campaign_index(cfg)
    assert index is not None
    columns = ["id", "url", campaign.SIG_COLUMN, campaign.SKETCH_COLUMN, campaign.BODY_SHARE_COLUMN]
    columns.append(campaign.OWNER_COLUMN)
    for path in chunks.paths:
        index.add_table(pq.read_table(path, columns=columns))
    found = index.assign()
    (run.work / "campaign").mkdir(exist_ok=True)
    for number, offset, path in zip(chunks.numbers, chunks.offsets, chunks.paths, strict=True):
        rows = pq.ParquetFile(path).metadata.num_rows
        write_table(_campaign_path(run.work, number), found.slice(offset, rows), cfg.run.row_group_rows)


# ---------------------------------------------------------------------------------------------
# 3. The language model in an actor pool


class LMActor:
    """Ray Data actor: loads the model once, scores the undecided documents of whole chunks."""

    def __init__(self, cfg: PipelineConfig, work: str, offsets: dict[int, int]) -> None:
        self.cfg = cfg
        self.work = Path(work)
        self.offsets = offsets
        self.scorer: Any = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        scored_rows = [self._chunk(int(chunk_no)) for chunk_no in batch.column("chunk").to_pylist()]
        return pa.table({"chunk": batch.column("chunk"), "lm_rows": pa.array(scored_rows, pa.int64())})

    def _scorer(self) -> Any:
        if self.scorer is None:
            self.scorer = perplexity.PerplexityScorer(self.cfg.perplexity)
        return self.scorer

    def _chunk(self, chunk_no: int) -> int:
        name = stages.chunk_name(chunk_no)
        scored = pq.read_table(self.work / "scored" / name)
        duplicates = ray_dedup.chunk_assignment(
            scored, self.offsets[chunk_no], ray_dedup.load_overrides(self.work, chunk_no), self.cfg
        )
        picked = cascade.lm_rows(scored, self.cfg, duplicates.undecided())
        return stages.lm_chunk_file(scored, picked, self._scorer, self.cfg, self.work / "lm" / name)


def lm_gpus(cfg: PipelineConfig) -> float:
    """GPUs per LM actor: one when the cluster has GPUs and `perplexity.device` is not cpu. Ray then
    shows the actor its GPU as cuda:0, which `device: auto` (or cuda) picks up."""
    has_gpu = ray_module().cluster_resources().get("GPU", 0) > 0
    return 1.0 if has_gpu and cfg.perplexity.device != "cpu" else 0.0


def _language_model(run: Run, chunks: _Chunks, cfg: PipelineConfig, lm_actors: int | None) -> int:
    if not run.use_lm or not chunks.paths:
        return 0
    todo = [
        n for n, p in zip(chunks.numbers, chunks.paths, strict=True) if not (run.lm_dir / p.name).exists()
    ]
    if not todo:
        return 0
    ray = ray_module()
    gpus = lm_gpus(cfg)
    actors = lm_actors or (max(1, int(ray.cluster_resources().get("GPU", 0))) if gpus else 1)
    ds = ray.data.from_items([{"chunk": c} for c in todo]).map_batches(
        LMActor,
        batch_size=1,
        batch_format="pyarrow",
        concurrency=actors,
        num_gpus=gpus,
        num_cpus=1,
        fn_constructor_kwargs={"cfg": cfg, "work": str(run.work), "offsets": chunks.offset_of()},
    )
    return sum(int(r["lm_rows"]) for r in ds.take_all())


def _quarantined_late(
    work: str, chunk_no: int, ranks: np.ndarray, offset: int, cfg: PipelineConfig
) -> list[str]:
    """Row keys among `ranks` that a decision-time detector quarantines: the language model, or the
    combiner (which reads every signal column, so it can only judge once the LM columns exist).
    Their copies follow them. Cheap verdicts need no pass: a cheaply dropped page never represents."""
    name = stages.chunk_name(chunk_no)
    rows = pa.array((ranks - offset).astype(np.int64))
    path = Path(work) / "scored" / name
    # Signal columns only: the text and the internal sketch columns are most of a chunk's bytes,
    # and neither the LM's flag nor the combiner reads them.
    columns = [c for c in pq.read_schema(path).names if c != "text" and not c.startswith("_")]
    scored = pq.read_table(path, columns=columns)
    lm_file = Path(work) / "lm" / name
    lm_part = pq.read_table(lm_file).take(rows) if lm_file.exists() else None
    table = stages.assemble_chunk(scored.take(rows), None, lm_part)
    late = policy.lm_reasons(table, cfg) if lm_part is not None else [[] for _ in range(len(rows))]
    for row, reasons in enumerate(policy.combiner_reasons(table, cfg)):
        late[row].extend(reasons)
    keys = ray_dedup.load_keys(Path(work), chunk_no, scored.select(["id"]))
    return [keys[r] for r, why in zip(rows.to_pylist(), late, strict=True) if why]


def _late_verdicts(
    chunks: _Chunks, work: Path, touched: dict[int, np.ndarray], cfg: PipelineConfig
) -> list[tuple[int, list[str]]]:
    """(chunk position, row keys quarantined at decision time) for the documents dedup touched: a
    copy of one of them decided in a later chunk follows it into quarantine, as in the local engine."""
    if not touched:
        return []
    verdict = ray_module().remote(_quarantined_late)
    refs = {
        c: verdict.remote(str(work), chunks.numbers[c], ranks, chunks.offsets[c], cfg)
        for c, ranks in touched.items()
    }
    return list(zip(refs, wait_all(list(refs.values())), strict=True))


# ---------------------------------------------------------------------------------------------
# 4. Decisions


def decided_table(
    chunk_no: int,
    offset: int,
    work: Path,
    cfg: PipelineConfig,
    quarantined: set[str],
    context_detectors: tuple[ContextDetector, ...] = (),
) -> pa.Table:
    """One chunk's decided table from its work files; `quarantined` (row keys) grows as it goes."""
    scored = pq.read_table(work / "scored" / stages.chunk_name(chunk_no))
    overrides = ray_dedup.load_overrides(work, chunk_no)
    keys = ray_dedup.load_keys(work, chunk_no, scored)
    duplicates = ray_dedup.chunk_assignment(scored, offset, overrides, cfg, keys)
    if cfg.campaign.enabled:
        found = pq.read_table(_campaign_path(work, chunk_no))
        duplicates.assign = stages.join_columns(duplicates.assign, found)
    lm_file = work / "lm" / stages.chunk_name(chunk_no)
    lm_part = pq.read_table(lm_file) if lm_file.exists() else None
    return stages.decide_chunk(scored, duplicates, lm_part, cfg, quarantined, context_detectors)


def _chunk_links(work: Path, chunk_no: int, offset: int, path: Path) -> tuple[list[str], list[str | None]]:
    """(row keys, duplicate_of) of one chunk, from its dedup overrides (stages.quarantined_ahead)."""
    keys = ray_dedup.load_keys(work, chunk_no, pq.read_table(path, columns=["id"]))
    duplicate_of: list[str | None] = [None] * len(keys)
    overrides = ray_dedup.load_overrides(work, chunk_no)
    if overrides is not None:
        rows = (overrides.column("rank").to_numpy() - offset).tolist()
        for row, rep in zip(rows, overrides.column("duplicate_of").to_pylist(), strict=True):
            duplicate_of[row] = rep
    return keys, duplicate_of


def _decide_task(
    chunk_no: int,
    offset: int,
    work: str,
    cfg: PipelineConfig,
    quarantined: list[str],
    mined: tuple[ContextDetector, ...],
) -> int:
    """Ray task: one chunk's decisions -> OUT/_work/decided/ (runs without context detectors but
    the mined triggers, which need no driver state)."""
    table = decided_table(chunk_no, offset, Path(work), cfg, set(quarantined), mined)
    target = Path(work) / "decided" / stages.chunk_name(chunk_no)
    write_table(target, table, cfg.run.row_group_rows)
    return table.num_rows


def _decide_and_write(
    run: Run,
    chunks: _Chunks,
    cfg: PipelineConfig,
    verdicts: list[tuple[int, list[str]]],
    context_detectors: tuple[ContextDetector, ...],
    mined: tuple[ContextDetector, ...],
    output: Output,
) -> None:
    """`mined`: the mined triggers, flagged after the context detectors (the local engine's order)."""
    if context_detectors:  # decided on the driver, in input order, as the local engine does
        detectors = (*context_detectors, *mined)
        places = list(zip(chunks.numbers, chunks.offsets, strict=True))
        links = [_chunk_links(run.work, n, o, p) for (n, o), p in zip(places, chunks.paths, strict=True)]
        quarantined_ids = stages.quarantined_ahead(
            links, lambda i: decided_table(*places[i], run.work, cfg, set(), detectors)
        )
        for number, offset in places:
            output.write(decided_table(number, offset, run.work, cfg, quarantined_ids, detectors))
        return
    decide = ray_module().remote(_decide_task)
    cfg_ref = ray_module().put(cfg)
    mined_ref = ray_module().put(mined)
    refs = []
    for pos, (number, offset) in enumerate(zip(chunks.numbers, chunks.offsets, strict=True)):
        # As in the local engine, a copy follows its quarantined original only when the original's
        # chunk was decided before the copy's.
        earlier = [i for c, ids in verdicts if c < pos for i in ids]
        refs.append(decide.remote(number, offset, str(run.work), cfg_ref, earlier, mined_ref))
    wait_all(refs)
    for path in chunks.paths:
        output.write(pq.read_table(run.work / "decided" / path.name))
