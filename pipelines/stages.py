"""The stages of a run, written once; the local engine (runner.py) and the Ray engine (ray_engine.py)
only schedule them.

Every stage works on fixed chunks of ``run.batch_rows`` documents (chunk N is the same documents in
every run and in both engines) and leaves its result in OUT/_work/, so ``--resume`` skips what is
done and the final output equals an uninterrupted run's:

1. setup      inputs, OUT checked and claimed, the run's fingerprint       (:func:`setup_run`)
2. scoring    cheap detectors + MinHash signature and content key          -> _work/scored/chunk-N
3. dedup      clusters over all chunks, then the representative of each    (:func:`choose_representatives`)
4. LM         the language model on documents still undecided (scatter)   -> _work/lm/chunk-N
5. decision   signals -> outcome, reasons, duplicate_of per document       (:func:`finalize_chunk`)
6. assembly   a chunk's scored, dedup, LM and context columns in one table (:func:`assemble_chunk`)
7. writing    shards (shard_output.py), then report, manifest, _SUCCESS (commit.py)
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.core import legal, minhash
from poisonguard.core.files import sha256_file, write_table
from poisonguard.core.schema import KEPT, QUARANTINED
from poisonguard.filters import campaign, combiner, dedup, perplexity, registry
from poisonguard.pipelines import policy
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.fields import FieldMap
from poisonguard.pipelines.progress import Progress
from poisonguard.pipelines.readers import ReadState, expand_inputs, total_bytes
from poisonguard.pipelines.writers import DATASET_CARD, SUCCESS

WORK = "_work"
SIG_COLUMN = "_dedup_signature"
KEY_COLUMN = "_dedup_key"
LEGAL_COLUMN = "_dedup_legal"  # core/legal.py's flags: a legal notice is a duplicate, never a campaign
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

    `observe` sees every scored chunk in input order (stage 3, signal columns and the internal
    `_dedup_signature` included); `score` then adds `schema`'s columns to each chunk and `flag`
    gives quarantine reasons, knowing the reasons the other detectors gave (stage 5). A detector may
    also have `judge_clusters(positions, clusters) -> (list[bool], list[int])`: rows it quarantines
    and each row's rank as its cluster's kept copy (see :func:`judged_rows`).
    """

    name: str
    schema: pa.Schema

    def observe(self, table: pa.Table) -> None: ...

    def score(self, table: pa.Table) -> dict[str, pa.Array]: ...

    def flag(self, table: pa.Table, reasons: list[list[str]]) -> list[list[str]]: ...


class OutputError(ValueError):
    """OUT cannot be used as asked (finished run without --overwrite, not writable...): usage error."""


# ---------------------------------------------------------------------------------------------
# 1. Setup


@dataclass
class Run:
    """One run's inputs, folders and running totals, shared by the stages."""

    out: Path
    paths: list[Path]
    use_lm: bool
    progress: Progress
    state: ReadState
    input_bytes: int
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # input files a folder held that were not read
    finished: dict[str, Any] | None = None  # the report of a run found committed on --resume

    @property
    def work(self) -> Path:
        return self.out / WORK

    @property
    def scored_dir(self) -> Path:
        return self.work / "scored"

    @property
    def lm_dir(self) -> Path:
        return self.work / "lm"

    def add_timings(self, found: dict[str, float]) -> None:
        for name, seconds in found.items():
            self.timings[name] = self.timings.get(name, 0.0) + seconds


def setup_run(
    inputs: list[str],
    out: Path,
    cfg: PipelineConfig,
    *,
    overwrite: bool,
    resume: bool,
    use_lm: bool | None,
    show_progress: bool | str,
    work_dirs: tuple[str, ...] = ("scored", "lm"),
) -> Run:
    """Expand the inputs, check and claim OUT (see :func:`prepare_out`), make the work folders."""
    use_lm = cfg.perplexity.enabled if use_lm is None else (use_lm and cfg.perplexity.enabled)
    skipped: list[str] = []
    paths = expand_inputs(inputs, skipped)
    check_out_outside_inputs(inputs, paths, out)
    fingerprint = _fingerprint(paths, cfg, use_lm)
    run = Run(
        out=out,
        paths=paths,
        use_lm=use_lm,
        progress=Progress(enabled=show_progress),
        state=ReadState(fields=FieldMap.from_config(cfg.input), max_record_bytes=cfg.run.max_record_bytes),
        input_bytes=total_bytes(paths),
        skipped=skipped,
    )
    if resume:
        run.finished = finish_interrupted_commit(out, fingerprint)
        if run.finished is not None:
            return run
    prepare_out(out, overwrite, resume, fingerprint)
    for sub in work_dirs:
        (out / WORK / sub).mkdir(parents=True, exist_ok=True)
    (out / WORK / "fingerprint").write_text(fingerprint)
    return run


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
    if overwrite:
        clear_outputs(out)
    elif finished:
        raise OutputError(f"{out}: holds a finished run; pass --overwrite to replace it")
    elif (out / WORK).exists():
        _check_resumable(out, resume, fingerprint)
    elif (out / "clean").exists() or (out / "quarantine").exists():
        raise OutputError(f"{out}: holds shards of an earlier run; pass --overwrite to replace them")


def _check_resumable(out: Path, resume: bool, fingerprint: str) -> None:
    if not resume:
        raise OutputError(f"{out}: holds an unfinished run; pass --resume to continue it or --overwrite")
    marker = out / WORK / "fingerprint"
    if marker.exists() and marker.read_text().strip() != fingerprint:
        raise OutputError(
            f"{out}: the unfinished run there used other inputs or another config; "
            "resume it with the same ones, or pass --overwrite"
        )


def clear_outputs(out: Path) -> None:
    """Remove every file a run writes into OUT (nothing else there)."""
    for name in OUTPUT_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def chunk_name(chunk_no: int) -> str:
    return f"chunk-{chunk_no:05d}.parquet"


def chunk_no(path: Path) -> int:
    return int(path.stem.split("-")[1])


def chunk_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("chunk-*.parquet"))


def chunk_ids(paths: list[Path]) -> list[str]:
    """The ids of every document in the chunks, in order (only the id column is read)."""
    return [i for p in paths for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


# ---------------------------------------------------------------------------------------------
# 2. Scoring (pure function over one chunk; runs in worker processes or Ray tasks)


def probe_config(cfg: PipelineConfig, use_lm: bool | None) -> PipelineConfig:
    """The config the cheap stage runs with, on every engine: the injection detector's hidden-state
    probe reads the default LM, so it is off in a run without the LM (--no-lm, perplexity disabled;
    `use_lm` None: as `perplexity.enabled` says) and in a run whose LM is another model (its hidden
    states are not what the probe was fitted on)."""
    use_lm = cfg.perplexity.enabled if use_lm is None else use_lm
    if not cfg.injection.probe or (use_lm and cfg.perplexity.enabled and not cfg.perplexity.model):
        return cfg
    return cfg.model_copy(update={"injection": cfg.injection.model_copy(update={"probe": False})})


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
    for detector in registry.in_stage("cheap"):
        section = policy.section(cfg, detector)
        if not section.enabled:
            continue
        start = time.perf_counter()
        for key, values in detector.score(view, section).items():
            columns[key] = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        timings[detector.name] = time.perf_counter() - start
    table = docs
    for key, values in columns.items():
        table = table.append_column(key, values)
    # One legal-notice test per document, read by both rules that count domains.
    legal_notices: list[bool] = []
    if cfg.dedup.enabled or cfg.campaign.enabled:
        start = time.perf_counter()
        legal_notices = legal.flags(texts, cfg.legal)
        timings["legal_notices"] = time.perf_counter() - start
    if cfg.dedup.enabled:
        start = time.perf_counter()
        sigs = np.asarray(dedup.signatures(texts, cfg.dedup))
        keys = dedup.content_keys(texts)
        width = sigs.shape[1] if sigs.ndim == 2 else 0
        flat = pa.array(sigs.astype(np.uint64, copy=False).reshape(-1), pa.uint64())
        table = table.append_column(SIG_COLUMN, pa.FixedSizeListArray.from_arrays(flat, width))
        table = table.append_column(KEY_COLUMN, pa.array(keys, pa.binary()))
        table = table.append_column(LEGAL_COLUMN, pa.array(legal_notices, pa.bool_()))
        timings["dedup_signatures"] = time.perf_counter() - start
    if cfg.campaign.enabled:
        start = time.perf_counter()
        for name, values in campaign.sketch_columns(texts, cfg.campaign, legal_notices).items():
            table = table.append_column(name, values)
        timings["campaign_sketches"] = time.perf_counter() - start
    return table, timings


def score_chunk_file(docs: pa.Table, cfg: PipelineConfig, target: Path) -> tuple[pa.Table, dict[str, float]]:
    """Score one chunk into its work file; (the scored table, the detectors' timings)."""
    table, timings = score_cheap(docs, cfg)
    write_table(target, table, cfg.run.row_group_rows)
    return table, timings


# ---------------------------------------------------------------------------------------------
# 3. Dedup resolution


def eligible_rows(table: pa.Table, cfg: PipelineConfig) -> list[bool]:
    """Rows no cheap detector drops: the only ones that may represent a cluster or see the LM."""
    quarantine, filtered = policy.cheap_reasons(table, cfg)
    return [not q and not f for q, f in zip(quarantine, filtered, strict=True)]


def signatures_of(table: pa.Table, cfg: dedup.Config) -> np.ndarray:
    """The MinHash signatures of a scored chunk, one row per document, in the scheme's dtype."""
    flat = table.column(SIG_COLUMN).combine_chunks().flatten()
    sigs = np.asarray(flat).reshape(table.num_rows, -1)
    return sigs.astype(minhash.signature_dtype(cfg.scheme), copy=False)


def add_to_index(index: dedup.DedupIndex, table: pa.Table, keys: list[str] | None = None) -> None:
    """Add one scored chunk (with its internal signature and key columns) to the dedup index."""
    sigs = np.asarray(table.column(SIG_COLUMN).combine_chunks().flatten()).reshape(table.num_rows, -1)
    index.add(
        keys if keys is not None else table.column("id").to_pylist(),
        table.column("url").to_pylist(),
        table.column(KEY_COLUMN).to_pylist(),
        sigs,
        legal_notices=legal_notices_of(table),
    )


def legal_notices_of(table: pa.Table) -> list[bool]:
    """The dedup legal-notice flags of a scored chunk (all False in a chunk scored without them)."""
    if LEGAL_COLUMN not in table.column_names:
        return [False] * table.num_rows
    return [bool(v) for v in table.column(LEGAL_COLUMN).to_pylist()]


def choose_representatives(
    ids: list[str],
    cluster_ids: list[str | None],
    exact_of: list[str | None],
    eligible: list[bool],
    is_prior: Callable[[str], bool] | None = None,
    ranks: list[int] | None = None,
) -> tuple[list[str | None], list[str | None]]:
    """(duplicate_of, duplicate kind) per row: the earliest eligible member of each cluster is kept;
    later eligible members point to it.

    Members that are quarantined or filtered anyway are never chosen, so a duplicate always points
    to a document that is not dropped for another reason (the LM may still drop it later). A cluster
    whose id is a document kept by an earlier run (nightly) already has its representative.
    With ``ranks`` (judged_rows), the eligible member of the lowest rank is kept, the earliest among
    equals; a member may then point to a representative after it in input order.
    """
    representative: dict[str, str] = {}
    leader_of: dict[str, str] = {}  # a representative chosen here that is an exact copy -> its first copy
    if ranks is not None:
        best: dict[str, int] = {}
        for i, (doc_id, cluster) in enumerate(zip(ids, cluster_ids, strict=True)):
            if not eligible[i] or cluster is None or ranks[i] >= best.get(cluster, ranks[i] + 1):
                continue
            if not (is_prior is not None and is_prior(cluster)):
                best[cluster], representative[cluster] = ranks[i], doc_id
                leader = exact_of[i]
                if leader is not None:
                    leader_of[doc_id] = leader
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
        elif rep != doc_id:
            duplicate_of[i] = rep
            # an exact copy either way round: this row copies an earlier one, or it is the first of
            # the exact copies and the representative (after it) is another
            exact = exact_of[i] is not None or leader_of.get(rep) == doc_id
            kind[i] = "exact_duplicate" if exact else "near_duplicate"
    return duplicate_of, kind


KEY_MARK = "\x00#"  # joins an id and its row number in a renamed key; ids holding NUL are renamed


def user_id(key: str) -> str:
    """The id a document came with, from its internal key (RowKeys)."""
    return key[: key.rindex(KEY_MARK)] if KEY_MARK in key else key


def user_ids(keys: list[str | None]) -> list[str | None]:
    return [user_id(k) if k is not None else None for k in keys]


def user_columns(assign: pa.Table) -> pa.Table:
    """The dedup cluster columns with internal keys turned back into the documents' ids."""
    for name in ("dedup_cluster_id", "dedup_exact_of"):
        if name in assign.column_names:
            column = pa.array(user_ids(assign.column(name).to_pylist()), pa.string())
            assign = assign.set_column(assign.schema.get_field_index(name), name, column)
    return assign


class RowKeys:
    """Internal keys for the documents of one run, given in input order: the document's id the first
    time it is seen, else the id with the row number (:func:`user_id` reverses it). Outcomes
    (representatives, copies of quarantined pages) are keyed by these, never by a user-supplied id
    alone, so two documents that share an id never share a fate. Both engines key rows this way."""

    def __init__(self, is_prior: Callable[[str], bool] | None = None) -> None:
        self._is_prior = is_prior  # an id of an earlier run's document (nightly) is renamed too
        self._seen: set[str] = set()
        self.duplicate_ids: Counter[str] = Counter()
        self._rows = 0

    def add(self, ids: list[str]) -> list[str]:
        keys: list[str] = []
        for doc_id in ids:
            self._rows += 1
            repeated = doc_id in self._seen
            if repeated:
                self.duplicate_ids[doc_id] += 1
            else:
                self._seen.add(doc_id)
            prior = self._is_prior is not None and self._is_prior(doc_id)
            # Row numbers are unique and a kept id holds no NUL, so no two keys are equal.
            renamed = repeated or prior or "\x00" in doc_id
            keys.append(f"{doc_id}{KEY_MARK}{self._rows}" if renamed else doc_id)
        return keys

    def report(self, limit: int = 20) -> dict[str, Any]:
        top = sorted(self.duplicate_ids.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return {
            "documents": sum(self.duplicate_ids.values()),
            "ids": len(self.duplicate_ids),
            "examples": [{"id": i, "extra_copies": n} for i, n in top],
        }


@dataclass
class Duplicates:
    """Stage 3's result for a span of documents: cluster columns (None without dedup), whether each
    document may still see the LM, and whom it duplicates."""

    assign: pa.Table | None
    eligible: list[bool]
    duplicate_of: list[str | None]
    kind: list[str | None]
    keys: list[str] | None = None  # the rows' RowKeys when ids may repeat (duplicate_of is in them)
    row_keys_report: dict[str, Any] = field(default_factory=dict)  # ids that several documents carry

    @classmethod
    def none(cls, eligible: list[bool]) -> Duplicates:
        n = len(eligible)
        return cls(None, eligible, [None] * n, [None] * n)

    def undecided(self) -> list[bool]:
        """Rows neither dropped by a cheap detector nor a duplicate: the LM's candidates, of which
        pipelines/cascade.py picks the ones it scores."""
        return [e and d is None for e, d in zip(self.eligible, self.duplicate_of, strict=True)]

    def slice(self, offset: int, rows: int) -> Duplicates:
        end = offset + rows
        return Duplicates(
            self.assign.slice(offset, rows) if self.assign is not None else None,
            self.eligible[offset:end],
            self.duplicate_of[offset:end],
            self.kind[offset:end],
            self.keys[offset:end] if self.keys is not None else None,
        )


def join_columns(left: pa.Table | None, right: pa.Table | None) -> pa.Table | None:
    """The columns of two tables of the same rows side by side (either may be None)."""
    if left is None or right is None:
        return left if right is None else right
    for name in right.column_names:
        left = left.append_column(name, right.column(name))
    return left


def campaign_index(cfg: PipelineConfig) -> campaign.CampaignIndex | None:
    """The index of spun campaigns (filters/campaign.py) over all chunks, when it is on; it takes
    each scored chunk's sketch columns in input order."""
    return campaign.CampaignIndex(cfg.campaign) if cfg.campaign.enabled else None


def judged_rows(
    detectors: Sequence[ContextDetector], positions: Sequence[int], clusters: list[str | None]
) -> tuple[list[bool], list[int]]:
    """(quarantined, rank) per row (``positions``: places in input order), given each row's dedup
    cluster, from the context detectors' optional ``judge_clusters`` (called once all chunks are
    observed; ranks of several detectors: the highest). A quarantined row is quarantined whatever
    the other detectors find, and is never its cluster's kept copy, so its fate does not fall on the
    copies that point to it; among the others, dedup keeps the copy of the lowest rank (see
    :func:`choose_representatives`). The nightly drift detector: a page that took over another URL's
    text leaves the copy at that URL as the one kept."""
    quarantined = [False] * len(positions)
    ranks = [0] * len(positions)
    for detector in detectors:
        judge = getattr(detector, "judge_clusters", None)
        if judge is not None:
            q, r = judge(positions, clusters)
            quarantined = [a or bool(b) for a, b in zip(quarantined, q, strict=True)]
            ranks = [max(a, int(b)) for a, b in zip(ranks, r, strict=True)]
    return quarantined, ranks


def resolve_duplicates(
    assign: pa.Table,
    ids: list[str],
    eligible: list[bool],
    cfg: PipelineConfig,
    is_prior: Any = None,
    ranks: list[int] | None = None,
) -> Duplicates:
    """Cluster columns -> representatives; members of a campaign never see the LM."""
    campaign = [bool(r) for r in dedup.flag(assign, cfg.dedup)]
    eligible = [e and not c for e, c in zip(eligible, campaign, strict=True)]
    duplicate_of, kind = choose_representatives(
        ids,
        assign.column("dedup_cluster_id").to_pylist(),
        assign.column("dedup_exact_of").to_pylist(),
        eligible,
        is_prior,
        ranks,
    )
    return Duplicates(assign, eligible, duplicate_of, kind)


# ---------------------------------------------------------------------------------------------
# 4. The language model, scattered back to full-length columns


class LMScorer(Protocol):
    def score(self, batch: pa.Table) -> dict[str, Any]: ...  # may take on_pass and gain_rule too


# Documents per scorer call: progress (documents, ETA) moves after each call. At 0.2-1 document/s on a
# busy 2-core machine 64 left the count and the ETA still for minutes; 16 still fill several forward
# passes of `perplexity.batch_tokens` (~600 tokens a document with the context-gain pass).
LM_PROGRESS_DOCS = 16


@dataclass
class LMProgress:
    """Where the LM stage reports: documents done (and so an ETA), scored tokens/s per pass."""

    progress: Progress
    task: Any


def _as_arrays(scores: dict[str, Any]) -> dict[str, pa.Array]:
    return {k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in scores.items()}


def gain_rule(cfg: PipelineConfig) -> tuple[perplexity.GainRule | None, list[str]]:
    """(the rule, the columns it reads besides the LM's): where, with `perplexity.context_gain_every`
    off, the LM measures the context gain outside its incoherent band: where the combiner's lm model
    could reach its threshold for some gain (filters/combiner.py `lm_could_reach`). None where the
    combiner cannot read the gain (off, no lm model): then only the band needs it."""
    p, c = cfg.perplexity, cfg.combiner
    if p.context_gain_every or not c.enabled or not c.lm.terms:
        return None, []
    reads = combiner.term_columns([c.lm]) | {"language_lang"}
    columns = sorted(col for col in reads if not col.startswith(perplexity.PREFIX))
    return functools.partial(combiner.lm_could_reach, cfg=c, unknown=perplexity.GAIN_COLUMNS), columns


def lm_input_columns(cfg: PipelineConfig, names: list[str]) -> list[str]:
    """The columns of a scored chunk (`names`) the LM stage reads: the document and what the gain
    rule reads (:func:`gain_rule`)."""
    reads = gain_rule(cfg)[1]
    return ["id", "text", "url", *(c for c in reads if c in names and c not in ("id", "text", "url"))]


def call_scorer(scorer: LMScorer, part: pa.Table, extra: dict[str, Any]) -> dict[str, Any]:
    """scorer.score with the keywords it takes (a stand-in scorer may take none)."""
    accepted = inspect.signature(scorer.score).parameters
    return scorer.score(part, **{k: v for k, v in extra.items() if k in accepted})


def score_lm(
    scorer: LMScorer,
    subset: pa.Table,
    shown: LMProgress | None = None,
    rule: perplexity.GainRule | None = None,
) -> dict[str, pa.Array]:
    """The LM's columns for `subset`: in one call, or, with progress shown, `LM_PROGRESS_DOCS`
    documents at a time (the scores do not depend on how documents are grouped). `rule`: see
    :func:`gain_rule`."""
    extra: dict[str, Any] = {} if rule is None else {"gain_rule": rule}
    if shown is None:
        return _as_arrays(call_scorer(scorer, subset, extra))
    started, tokens = time.perf_counter(), 0

    def on_pass(count: int) -> None:
        nonlocal tokens
        tokens += count
        rate = tokens / max(time.perf_counter() - started, 1e-9)
        shown.progress.update(shown.task, **{"scored tokens/s": f"{rate:,.0f}"})

    parts: list[dict[str, pa.Array]] = []
    for first in range(0, subset.num_rows, LM_PROGRESS_DOCS):
        part = subset.slice(first, LM_PROGRESS_DOCS)
        parts.append(_as_arrays(call_scorer(scorer, part, {**extra, "on_pass": on_pass})))
        shown.progress.advance(shown.task, None, part.num_rows)
    if not parts:
        return {}
    return {name: pa.concat_arrays([p[name] for p in parts]) for name in parts[0]}


def lm_columns(
    table: pa.Table, picked: list[int], scorer: LMScorer, cfg: PipelineConfig, shown: LMProgress | None = None
) -> dict[str, pa.Array]:
    """The LM's signal columns for the rows `picked` of `table`, null in every other row."""
    subset = table.select(lm_input_columns(cfg, table.column_names)).take(pa.array(picked))
    limit = cfg.run.max_text_chars
    texts = [t[:limit] for t in subset.column("text").to_pylist()]
    subset = subset.set_column(1, "text", pa.array(texts, pa.string()))
    full: dict[str, pa.Array] = {}
    for name, scored in score_lm(scorer, subset, shown, gain_rule(cfg)[0]).items():
        column: list[Any] = [None] * table.num_rows
        for pos, value in zip(picked, scored.to_pylist(), strict=True):
            column[pos] = value
        full[name] = pa.array(column, scored.type)
    return full


def lm_chunk_file(
    scored: pa.Table,
    picked: list[int],
    scorer: Callable[[], LMScorer],
    cfg: PipelineConfig,
    target: Path,
    shown: LMProgress | None = None,
) -> int:
    """Score one chunk's `picked` rows into its LM work file (a placeholder when there are none);
    `scorer` is called only when there is something to score. Returns the rows scored."""
    if not picked:
        placeholder = pa.table({"_empty": pa.nulls(scored.num_rows, pa.bool_())})
        write_table(target, placeholder, cfg.run.row_group_rows)
        return 0
    columns = lm_columns(scored, picked, scorer(), cfg, shown)
    write_table(target, pa.table(columns), cfg.run.row_group_rows)
    return len(picked)


# ---------------------------------------------------------------------------------------------
# 5. Decision


def finalize_chunk(
    table: pa.Table,
    cfg: PipelineConfig,
    duplicate_of: list[str | None],
    duplicate_kind: list[str | None],
    quarantined_ids: set[str],
    context_detectors: tuple[ContextDetector, ...] = (),
    row_keys: list[str] | None = None,
) -> pa.Table:
    """Signals -> outcome, reasons, duplicate_of for one chunk (`quarantined_ids` grows as it goes).

    `row_keys` are the rows' internal keys (RowKeys), in which `duplicate_of` and `quarantined_ids`
    are given; the `duplicate_of` column shows them as the documents' ids."""
    quarantine, filtered = policy.all_reasons(table, cfg)
    for detector in context_detectors:
        for row, reasons in enumerate(detector.flag(table, [list(q) for q in quarantine])):
            quarantine[row].extend(reasons)
    ids = row_keys if row_keys is not None else table.column("id").to_pylist()
    for row, rep in enumerate(duplicate_of):
        # A near-copy of a page that turned out to be poison is poison too. A representative before
        # its copy in input order was decided here or in an earlier chunk; one after it (claim ranks,
        # see choose_representatives) is in `quarantined_ids` from :func:`quarantined_ahead`.
        if rep is not None and rep in quarantined_ids:
            quarantine[row].append(policy.COPY_OF_QUARANTINED)
        if quarantine[row]:
            quarantined_ids.add(ids[row])
    outcomes, reasons = policy.decide(quarantine, filtered, duplicate_of, duplicate_kind)
    shown = user_ids(duplicate_of) if row_keys is not None else duplicate_of
    dup_column = [d if o != KEPT else None for d, o in zip(shown, outcomes, strict=True)]
    table = table.append_column("outcome", pa.array(outcomes, pa.string()))
    table = table.append_column("reasons", pa.array(reasons, pa.list_(pa.string())))
    return table.append_column("duplicate_of", pa.array(dup_column, pa.string()))


def representatives_after_copies(parts: Sequence[tuple[list[str], list[str | None]]]) -> set[str]:
    """The representatives that come after a copy pointing to them in input order (claim ranks can
    keep a later copy); ``parts``: per chunk in input order, (row keys, duplicate_of)."""
    seen: set[str] = set()
    ahead: set[str] = set()
    for keys, duplicate_of in parts:
        for key, rep in zip(keys, duplicate_of, strict=True):
            if rep is not None and rep not in seen:
                ahead.add(rep)
            seen.add(key)
    return ahead


def quarantined_ahead(
    parts: Sequence[tuple[list[str], list[str | None]]], decide: Callable[[int], pa.Table]
) -> set[str]:
    """Row keys of the representatives after one of their copies that are quarantined at decision
    time (the LM, the combiner, a context detector's flag): the decision loop starts from them, so
    their earlier copies are quarantined as copies of a quarantined page, as when the kept copy
    comes first, and never recorded as accepted (nightly history). ``decide(i)``: chunk i's
    decided table; only chunks holding such a representative are decided here (a representative's
    own outcome does not depend on the others')."""
    ahead = representatives_after_copies(parts)
    found: set[str] = set()
    for i, (keys, _) in enumerate(parts):
        if ahead.isdisjoint(keys):
            continue
        outcomes = decide(i).column("outcome").to_pylist()
        found.update(k for k, o in zip(keys, outcomes, strict=True) if k in ahead and o == QUARANTINED)
    return found


# ---------------------------------------------------------------------------------------------
# 6. Assembly of one chunk


def assemble_chunk(
    scored: pa.Table,
    assign: pa.Table | None,
    lm_part: pa.Table | None,
    context_detectors: tuple[ContextDetector, ...] = (),
) -> pa.Table:
    """A scored chunk with its dedup columns, its LM columns and its context detectors' columns;
    internal columns dropped. Columns a chunk lacks are added as nulls when it is written."""
    context_columns: dict[str, Any] = {}
    for detector in context_detectors:
        context_columns.update(detector.score(scored))
    table = scored.select([c for c in scored.column_names if not c.startswith("_")])
    for part in (p for p in (assign, lm_part) if p is not None):
        for name in part.column_names:
            if not name.startswith("_"):
                table = table.append_column(name, part.column(name))
    for detector in context_detectors:
        for f in detector.schema:
            table = table.append_column(f.name, pa.array(context_columns[f.name], f.type))
    return table


def read_lm_part(run: Run, chunk: Path) -> pa.Table | None:
    path = run.lm_dir / chunk.name
    return pq.read_table(path) if path.exists() else None


def decide_chunk(
    scored: pa.Table,
    duplicates: Duplicates,
    lm_part: pa.Table | None,
    cfg: PipelineConfig,
    quarantined_ids: set[str],
    context_detectors: tuple[ContextDetector, ...] = (),
) -> pa.Table:
    """Stages 6 and 5 for one chunk: assemble it, then decide."""
    table = assemble_chunk(scored, duplicates.assign, lm_part, context_detectors)
    return finalize_chunk(
        table,
        cfg,
        duplicates.duplicate_of,
        duplicates.kind,
        quarantined_ids,
        context_detectors,
        row_keys=duplicates.keys,
    )
