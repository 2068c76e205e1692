"""`poisonguard nightly`: incremental, crash-safe filtering of what arrived since the last run.

A run is identified by its logical date (default: today, UTC) and writes ``ROOT/<date>/`` in the
layout of ``filter``. Steps, each logged on one line:

1. lock      ``ROOT/.lock`` and ``<state>.lock`` (the state store's own lock, wherever it lives),
             non-blocking: a second run on the same root or the same state store exits 75.
2. ledger    a finished date is not run again (``--force`` redoes it; only the latest date can be
             redone, since later runs were built on it); dates must not go backwards.
3. plan      crawl the configured seeds into ``ROOT/_crawl/<date>/`` (once), then list input files
             that no finished run consumed (by sha256; path, size and mtime spare re-reading). The
             plan is stored in the ledger, so a rerun after a crash works on the same files.
4. filter    ``run_filter`` with the dedup index of earlier runs (near-copies of documents kept
             before are ``duplicate``) and the drift detector (per-URL history, docs/THREATS.md P-SPLIT);
             ``engine="ray"``: ``run_filter_ray`` instead, with the same outcomes (docs/RAY.md).
             Every other step runs here, as with the local engine.
5. history   from the finished shards: per-URL sha256 and MinHash, the kept documents' signatures.
6. index     the new dedup index snapshot, written under its own name.
7. commit    ledger row, consumed files, URL history and index pointer in one SQLite transaction.
8. metrics   ``ROOT/metrics.prom`` (Prometheus textfile collector).

Crash safety: the state changes only at step 7, after ``ROOT/<date>/_SUCCESS`` exists; the output
of a date is a function of its planned inputs and the state before it, so a rerun after a kill at
any point redoes what is missing and ends with the same output as an uninterrupted run.

``run_nightly(..., hook=...)`` calls the hook at each named point (``CRASH_POINTS``); the tests
pass one that kills the run with SIGKILL there, to check the claim above.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poisonguard.core import minhash
from poisonguard.core.files import atomic_path, sha256_file, write_json
from poisonguard.core.schema import OUTCOMES, QUARANTINED
from poisonguard.filters import dedup
from poisonguard.filters import drift as drift_detector
from poisonguard.pipelines.config import ConfigError, PipelineConfig, load_config, load_yaml
from poisonguard.pipelines.engines import Engine, EngineError, engine_for
from poisonguard.pipelines.locks import LockHeld, hold_lock
from poisonguard.pipelines.readers import InputError, expand_inputs
from poisonguard.pipelines.stages import OUTPUT_FILES, OutputError
from poisonguard.pipelines.state import DONE, InputFile, StateError, StateStore, UrlVersion
from poisonguard.pipelines.writers import SUCCESS

log = logging.getLogger("poisonguard.nightly")

CRASH_POINTS = (
    "after_plan",
    "during_filter",
    "during_write",
    "after_filter",
    "after_index",
    "before_commit",
    "after_commit",
)
CRAWL_DIR = "_crawl"
LOCK_FILE = ".lock"
METRICS_FILE = "metrics.prom"
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SIG_BATCH = 2000  # texts per signature batch when reading the finished shards


class NightlyError(RuntimeError):
    """A run that cannot go on; ``code`` is the exit code (1 failed, 2 usage, 75 try later)."""

    code = 1


class NightlyUsageError(NightlyError):
    code = 2


class NightlyLocked(NightlyError):
    code = 75


# ---------------------------------------------------------------------------------------------
# Config (configs/nightly.yaml)


class CrawlSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[str] = Field(default_factory=list, description="seed URLs crawled every run")
    seeds_file: str | None = Field(default=None, description="a file with one seed URL a line")
    sitemap: str | None = Field(default=None, description="a sitemap (URL or file) whose pages are seeds")


class Sources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str] = Field(default_factory=list, description="files, folders or globs; new files are read")
    crawl: CrawlSource = CrawlSource()


class NightlyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: Sources = Sources()
    output: str = Field(
        default="nightly-out", description="ROOT: one folder per date, metrics.prom, the lock"
    )
    state: str | None = Field(default=None, description="SQLite state store; default ROOT/state.sqlite")
    pipeline: str | dict[str, Any] | None = Field(
        default=None, description="the filter config: a file path, or sections inline (as in default.yaml)"
    )
    use_lm: bool = Field(default=True, description="run the language-model stage")
    drift: drift_detector.Config = drift_detector.Config()


def load_nightly_config(path: str | Path | None) -> tuple[NightlyConfig, Path]:
    """The validated nightly config and the folder its relative paths are resolved against."""
    if path is None:
        return NightlyConfig(), Path.cwd()
    p = Path(path)
    try:
        data = load_yaml(p.read_text("utf-8"))
    except OSError as exc:
        raise NightlyUsageError(f"{p}: cannot read nightly config: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise NightlyUsageError(f"{p}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NightlyUsageError(f"{p}: the top level must be a mapping")
    try:
        cfg = NightlyConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise NightlyUsageError(f"{p}: invalid nightly config: {problems}") from exc
    return cfg, p.resolve().parent


def pipeline_config(cfg: NightlyConfig, base: Path) -> PipelineConfig:
    try:
        if isinstance(cfg.pipeline, str):
            return load_config(_resolve(cfg.pipeline, base))
        return load_config(None, cfg.pipeline or {})
    except ConfigError as exc:
        raise NightlyUsageError(str(exc)) from exc


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def config_hash(pcfg: PipelineConfig, cfg: NightlyConfig) -> str:
    scoring = pcfg.model_dump(mode="json", exclude={"run": {"workers"}})
    blob = json.dumps(
        {"pipeline": scoring, "drift": cfg.drift.model_dump(mode="json"), "lm": cfg.use_lm}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def minhash_settings(pcfg: PipelineConfig) -> dict[str, Any]:
    d = pcfg.dedup
    return {
        "scheme": d.scheme,
        "num_perm": d.num_perm,
        "seed": d.seed,
        "shingle_words": d.shingle_words,
        "min_words": d.min_words,
    }


def parse_date(value: str | None) -> str:
    if value is None:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        if not DATE_RE.match(value):
            raise ValueError
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise NightlyUsageError(f"--date {value!r}: expected a date as YYYY-MM-DD") from None


# ---------------------------------------------------------------------------------------------
# Lock and test hook


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """An exclusive, non-blocking flock (pipelines/locks.py); NightlyLocked while another run holds it."""
    with ExitStack() as stack:
        try:
            stack.enter_context(hold_lock(path, "nightly run"))
        except LockHeld as exc:
            raise NightlyLocked(str(exc)) from None
        yield


Hook = Callable[[str], None]  # called with each of CRASH_POINTS as the run passes it


def _no_hook(point: str) -> None:
    return None


class _HookProbe:
    """A context detector that only calls the hook inside the filter (dedup and write stages)."""

    name = "hook_probe"
    schema = pa.schema([])

    def __init__(self, hook: Hook) -> None:
        self.hook = hook

    def observe(self, table: pa.Table) -> None:
        self.hook("during_filter")

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        self.hook("during_write")
        return {}

    def flag(self, table: pa.Table, reasons: list[list[str]]) -> list[list[str]]:
        return [[] for _ in range(table.num_rows)]


# ---------------------------------------------------------------------------------------------
# Plan


def _under(path: Path, root: Path) -> bool:
    return root in path.resolve().parents


def plan_inputs(patterns: list[str], base: Path, root: Path, store: StateStore, date: str) -> list[InputFile]:
    """Input files no finished run (other than ``date`` itself) consumed, in a stable order."""
    found: list[Path] = []
    for pattern in patterns:
        resolved = str(_resolve(pattern, base))
        try:
            found.extend(expand_inputs([resolved]))
        except InputError as exc:  # nothing arrived for this source tonight
            log.info("plan: %s", exc)
    planned: list[InputFile] = []
    seen: set[str] = set()
    skipped = 0
    for path in found:
        if _under(path, root) and not _under(path, root / CRAWL_DIR):
            continue  # our own output is never input (our crawls are)
        real = str(path.resolve())
        st = path.stat()
        sha = store.known_sha(real, st.st_size, st.st_mtime, exclude_date=date)
        if sha is None:
            sha = sha256_file(path)
        if sha in seen or store.consumed_sha(sha, exclude_date=date) is not None:
            skipped += 1
            continue
        seen.add(sha)
        planned.append(InputFile(real, st.st_size, st.st_mtime, sha))
    log.info("plan: %d new input files, %d already consumed", len(planned), skipped)
    return planned


def _plan_still_valid(inputs: list[dict[str, Any]]) -> bool:
    for f in inputs:
        p = Path(f["path"])
        if not p.is_file():
            return False
        st = p.stat()
        if st.st_size != f["size"] or st.st_mtime != f["mtime"]:
            return False
    return True


def crawl_inputs(
    cfg: NightlyConfig, pcfg: PipelineConfig, base: Path, root: Path, date: str, engine: Engine
) -> list[Path]:
    """Crawl the configured seeds into ROOT/_crawl/<date>/ (once per date) with the engine; its raw
    shards (with Ray: ``run.workers`` Scrapy processes, one per group of hosts, same place)."""
    src = cfg.sources.crawl
    if not (src.seeds or src.seeds_file or src.sitemap):
        return []
    from poisonguard.crawler.run import STATS_FILE, CrawlError, load_seeds

    crawl_dir = root / CRAWL_DIR / date
    raw = crawl_dir / "raw"
    if (raw / STATS_FILE).exists():
        log.info("crawl: %s already finished for this date", raw)
        return sorted(raw.glob("part-*.parquet"))
    try:
        seeds = load_seeds(src.seeds, _resolve(src.seeds_file, base) if src.seeds_file else None, src.sitemap)
    except (OSError, ValueError) as exc:
        raise NightlyUsageError(f"crawl seeds: {exc}") from exc
    resume = engine.crawl_started(raw)
    log.info(
        "crawl: %d seeds into %s (%s engine)%s", len(seeds), raw, engine.name, " (resuming)" if resume else ""
    )
    try:
        stats = engine.crawl(seeds, crawl_dir, pcfg, resume=resume)
    except CrawlError as exc:
        raise NightlyError(f"crawl failed: {exc}") from exc
    log.info("crawl: %s pages, finish reason %s", stats.get("pages"), stats.get("finish_reason"))
    return sorted(raw.glob("part-*.parquet"))


# ---------------------------------------------------------------------------------------------
# After the filter: history and index from the finished shards


def read_outcomes(out: Path, pcfg: PipelineConfig) -> tuple[list[UrlVersion], dict[str, Any]]:
    """Per-URL versions of tonight's documents and the kept documents' dedup entries."""
    limit = pcfg.run.max_text_chars
    dtype = minhash.signature_dtype(pcfg.dedup.scheme)
    best: dict[str, tuple[tuple[int, str, int], UrlVersion]] = {}
    kept: dict[str, list[Any]] = {"ids": [], "urls": [], "keys": [], "sigs": []}
    for folder in ("clean", "quarantine"):
        for shard in sorted((out / folder).glob("part-*.parquet")):
            pf = pq.ParquetFile(shard)
            cols = ["id", "text", "url", "source", "record"] + (["outcome"] if folder == "quarantine" else [])
            for batch in pf.iter_batches(batch_size=SIG_BATCH, columns=cols):
                table = pa.Table.from_batches([batch])
                ids = table.column("id").to_pylist()
                urls = table.column("url").to_pylist()
                texts = [t if len(t) <= limit else t[:limit] for t in table.column("text").to_pylist()]
                outcomes = (
                    table.column("outcome").to_pylist() if folder == "quarantine" else ["kept"] * len(ids)
                )
                sources = table.column("source").to_pylist()
                records = table.column("record").to_pylist()
                sigs = np.asarray(dedup.signatures(texts, pcfg.dedup)).astype(dtype, copy=False)
                for i, url in enumerate(urls):
                    if not url:
                        continue
                    accepted = outcomes[i] != QUARANTINED
                    # One version per URL and night: an accepted one, else the last in input order.
                    rank = (int(accepted), sources[i] or "", records[i] if records[i] is not None else -1)
                    current = best.get(url)
                    if current is None or rank > current[0]:
                        sha = drift_detector.text_sha256(texts[i])
                        best[url] = (rank, UrlVersion(url, sha, sigs[i], accepted))
                if folder == "clean":
                    kept["ids"].extend(ids)
                    kept["urls"].extend(urls)
                    kept["keys"].extend(dedup.content_keys(texts))
                    kept["sigs"].append(sigs)
    versions = [best[u][1] for u in sorted(best)]
    return versions, kept


def write_index(base_index: Path | None, kept: dict[str, Any], pcfg: PipelineConfig, target: Path) -> None:
    index = dedup.DedupIndex.load(base_index, pcfg.dedup) if base_index else dedup.DedupIndex(pcfg.dedup)
    if kept["ids"]:
        sigs = np.concatenate(kept["sigs"])
        index.add(kept["ids"], kept["urls"], kept["keys"], sigs, prior=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    index.save(target)


# ---------------------------------------------------------------------------------------------
# Metrics


def write_metrics(root: Path, store: StateStore, last_attempt: dict[str, Any]) -> Path:
    """ROOT/metrics.prom for node_exporter's textfile collector (written atomically)."""
    lines: list[str] = []

    def metric(name: str, help_text: str, samples: list[tuple[str, float]], kind: str = "gauge") -> None:
        lines.append(f"# HELP poisonguard_nightly_{name} {help_text}")
        lines.append(f"# TYPE poisonguard_nightly_{name} {kind}")
        lines.extend(f"poisonguard_nightly_{name}{labels} {value:.17g}" for labels, value in samples)

    metric("last_run_timestamp_seconds", "Unix time the last run ended.", [("", last_attempt["time"])])
    metric(
        "last_run_success",
        "1 if the last run succeeded (or found its date done), else 0.",
        [("", 1.0 if last_attempt["ok"] else 0.0)],
    )
    done = store.latest_done()
    if done is not None:
        counts = done["counts"] or {}
        metric(
            "last_success_timestamp_seconds",
            "Unix time the last successful run finished.",
            [("", float(done["finished"]))],
        )
        metric(
            "last_success_date",
            "Logical date of the last successful run, as YYYYMMDD.",
            [("", float(done["date"].replace("-", "")))],
        )
        metric(
            "duration_seconds",
            "Wall time of the last successful run.",
            [("", float(done["duration_s"] or 0))],
        )
        metric("docs_in", "Documents read by the last successful run.", [("", float(counts.get("in", 0)))])
        metric(
            "docs_out",
            "Documents by outcome in the last successful run.",
            [(f'{{outcome="{o}"}}', float(counts.get(o, 0))) for o in (*OUTCOMES, "unreadable")],
        )
        metric(
            "input_files",
            "Input files consumed by the last successful run.",
            [("", float(counts.get("input_files", 0)))],
        )
        metric(
            "drift_pages",
            "Pages compared with their last version / drifted, last successful run.",
            [
                ('{kind="compared"}', float(counts.get("drift_compared", 0))),
                ('{kind="changed"}', float(counts.get("drift_changed", 0))),
            ],
        )
    path = root / METRICS_FILE
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", "utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The run


def _gc_index_files(store: StateStore) -> None:
    """Keep the snapshots the latest run left and started from (a --force redo needs the latter)."""
    latest = store.latest_done()
    if latest is None or not store.index_dir.exists():
        return
    keep = {latest.get("index_file"), latest.get("base_index")}
    for path in store.index_dir.glob("*.npz"):
        if path.name not in keep:
            path.unlink()


def run_nightly(
    cfg: NightlyConfig,
    *,
    base: Path,
    date: str | None = None,
    inputs: list[str] | None = None,
    out: Path | None = None,
    state: Path | None = None,
    force: bool = False,
    use_lm: bool | None = None,
    show_progress: bool | str = False,
    lm_scorer: Any = None,
    engine: Engine | str = "local",
    ray_address: str | None = None,
    hook: Hook | None = None,
) -> dict[str, Any]:
    """One nightly run; returns ``{"date", "status": "done"|"skipped", "counts", "out", "report"}``.

    ``inputs``/``out``/``state`` override the config's sources, output root and state path.
    ``engine``: where the crawl and filter steps run (pipelines/engines.py; a name, ``local`` or
    ``ray``, with ``ray_address``); the outcomes, the state and the output are the same.
    ``lm_scorer`` (tests) is for the local engine only; ``hook`` (tests) is called at each of
    CRASH_POINTS. Raises NightlyError (``.code`` = exit code) for anything that stops the run.
    """
    day = parse_date(date)
    try:
        chosen = engine if isinstance(engine, Engine) else engine_for(engine, ray_address)
    except EngineError as exc:
        raise NightlyUsageError(str(exc)) from None
    if chosen.is_ray and lm_scorer is not None:
        raise NightlyUsageError(
            "lm_scorer is for the local engine; the Ray engine loads the model in its actors"
        )
    root = (out if out is not None else _resolve(cfg.output, base)).resolve()
    state_path = (
        state if state is not None else (_resolve(cfg.state, base) if cfg.state else root / "state.sqlite")
    ).resolve()
    if use_lm is not None:
        cfg = cfg.model_copy(update={"use_lm": use_lm})
    pcfg = pipeline_config(cfg, base)
    patterns = list(inputs) if inputs is not None else list(cfg.sources.inputs)
    started = time.time()
    with ExitStack() as stack:
        stack.enter_context(run_lock(root / LOCK_FILE))
        # The state store has its own lock, whatever root it is used with: two roots sharing one
        # store would otherwise consume the same input on two dates.
        stack.enter_context(run_lock(state_path.with_name(state_path.name + ".lock")))
        log.info("nightly %s: lock held; root %s, state %s", day, root, state_path)
        try:
            store = StateStore(state_path, minhash.signature_dtype(pcfg.dedup.scheme))
            store.check_settings(minhash_settings(pcfg))
        except StateError as exc:
            raise NightlyUsageError(str(exc)) from exc
        stack.callback(store.close)
        night = _Night(
            cfg, pcfg, store, base, root, day, force, show_progress, lm_scorer, chosen, hook or _no_hook
        )
        try:
            result = night.run(patterns)
        except Exception as exc:
            # Only the ledger row's status changes: the planned inputs stay for the next try.
            store.mark_failed(day, f"{type(exc).__name__}: {exc}")
            write_metrics(root, store, {"time": time.time(), "ok": False})
            log.error("nightly %s: failed after %.1f s: %s", day, time.time() - started, exc)
            raise
        write_metrics(root, store, {"time": time.time(), "ok": True})
        log.info(
            "nightly %s: %s in %.1f s; metrics %s",
            day,
            result["status"],
            time.time() - started,
            root / METRICS_FILE,
        )
        return result


@dataclass
class _Night:
    """One date's run, with the lock held: ledger, plan, filter, history, index, commit."""

    cfg: NightlyConfig
    pcfg: PipelineConfig
    store: StateStore
    base: Path
    root: Path
    day: str
    force: bool
    show_progress: bool | str
    lm_scorer: Any
    engine: Engine
    hook: Hook

    @property
    def out_dir(self) -> Path:
        return self.root / self.day

    def run(self, patterns: list[str]) -> dict[str, Any]:
        existing = self.store.run(self.day)
        skipped = self._check_ledger(existing)
        if skipped is not None:
            return skipped
        chash = config_hash(self.pcfg, self.cfg)
        base_run = self.store.latest_done(before=self.day)
        base_index = base_run["index_file"] if base_run else None
        plan = self._plan(existing, patterns)
        reuse = (
            existing is not None
            and not self.force
            and existing["config_hash"] == chash
            and [f.as_dict() for f in plan] == existing["inputs"]
            and (self.out_dir / SUCCESS).exists()
        )
        self.store.begin_run(self.day, chash, plan, base_index)
        self.hook("after_plan")
        nightly_info: dict[str, Any] = {
            "date": self.day,
            "input_files": [f.path for f in plan],
            "base_run": base_run["date"] if base_run else None,
        }
        report = self._filter(plan, reuse, base_index, nightly_info)
        self.hook("after_filter")
        return self._record(plan, report, base_index)

    def _check_ledger(self, existing: dict[str, Any] | None) -> dict[str, Any] | None:
        """The result of a date already done (nothing to do), or None to go on."""
        if existing is not None and existing["status"] == DONE and not self.force:
            finished = dt.datetime.fromtimestamp(existing["finished"], dt.timezone.utc)
            log.info(
                "ledger: %s already done (finished %s); nothing to do (--force redoes it)",
                self.day,
                finished.isoformat(timespec="seconds"),
            )
            return {
                "date": self.day,
                "status": "skipped",
                "counts": existing["counts"],
                "out": self.out_dir,
                "report": None,
            }
        latest = self.store.latest_done()
        if latest is not None and latest["date"] > self.day:
            raise NightlyUsageError(
                f"--date {self.day}: a later date ({latest['date']}) is already done; later runs "
                "were built on the earlier ones, so dates cannot go back"
            )
        return None

    def _plan(self, existing: dict[str, Any] | None, patterns: list[str]) -> list[InputFile]:
        crawled = crawl_inputs(self.cfg, self.pcfg, self.base, self.root, self.day, self.engine)
        if (
            existing is not None
            and existing["status"] != DONE
            and not self.force
            and existing["inputs"]
            and _plan_still_valid(existing["inputs"])
        ):
            log.info(
                "plan: resuming the unfinished run of %s with its %d planned files",
                self.day,
                len(existing["inputs"]),
            )
            return [InputFile(**f) for f in existing["inputs"]]
        return plan_inputs(patterns + [str(p) for p in crawled], self.base, self.root, self.store, self.day)

    def _filter(
        self, plan: list[InputFile], reuse: bool, base_index: str | None, nightly_info: dict[str, Any]
    ) -> dict[str, Any]:
        detector = _drift(self.cfg, self.pcfg, self.store, self.day)
        nightly_info["drift"] = detector.summary
        if not plan:
            log.info("filter: nothing new for %s", self.day)
            return _empty_output(self.out_dir, nightly_info)
        if reuse:
            log.info(
                "filter: %s holds this date's finished output (interrupted before commit); reusing it",
                self.out_dir,
            )
            report: dict[str, Any] = json.loads((self.out_dir / "report.json").read_text("utf-8"))
            return report
        index_path = self.store.index_dir / base_index if base_index else None
        try:
            return self._run_filter(plan, index_path, detector, nightly_info)
        except (InputError, OutputError) as exc:
            raise NightlyError(f"filter: {exc}") from exc

    def _run_filter(
        self,
        plan: list[InputFile],
        index_path: Path | None,
        detector: drift_detector.DriftDetector,
        nightly_info: dict[str, Any],
    ) -> dict[str, Any]:
        index = _load_index(index_path, self.pcfg)
        probes: tuple[Any, ...] = (_HookProbe(self.hook),) if self.hook is not _no_hook else ()
        unfinished = (self.out_dir / "_work").exists() and not (self.out_dir / SUCCESS).exists()
        log.info(
            "filter: %d files into %s (%s; %s engine; dedup index of %d earlier documents)",
            len(plan),
            self.out_dir,
            "resuming" if unfinished else "fresh",
            self.engine.name,
            len(index) if index is not None else 0,
        )
        kwargs: dict[str, Any] = {
            "use_lm": self.cfg.use_lm,
            "show_progress": self.show_progress,
            "extra_report": {"command": "nightly", "nightly": nightly_info},
            "dedup_index": index,
            "context_detectors": (*probes, detector),
        }
        if not self.engine.is_ray:
            kwargs["lm_scorer"] = self.lm_scorer
        paths = [f.path for f in plan]
        try:
            return self.engine.filter(
                paths, self.out_dir, self.pcfg, overwrite=not unfinished, resume=unfinished, **kwargs
            )
        except OutputError as exc:
            if not unfinished:
                raise
            # The unfinished run there used other inputs or settings: start this date over.
            log.info("filter: cannot resume (%s); starting over", exc)
            kwargs["dedup_index"] = _load_index(index_path, self.pcfg)
            detector = _drift(self.cfg, self.pcfg, self.store, self.day)
            nightly_info["drift"] = detector.summary
            kwargs["context_detectors"] = (*probes, detector)
            return self.engine.filter(paths, self.out_dir, self.pcfg, overwrite=True, **kwargs)

    def _record(
        self, plan: list[InputFile], report: dict[str, Any], base_index: str | None
    ) -> dict[str, Any]:
        """History and index from the finished shards, then the commit."""
        counts = dict(report["counts"])
        log.info("filter: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        versions, kept = read_outcomes(self.out_dir, self.pcfg)
        log.info("history: %d URLs, %d kept documents for the dedup index", len(versions), len(kept["ids"]))
        index_file: str | None = base_index
        if self.pcfg.dedup.enabled:
            index_file = f"{self.day}.npz"
            base = self.store.index_dir / base_index if base_index else None
            write_index(base, kept, self.pcfg, self.store.index_dir / index_file)
            log.info("index: %s", self.store.index_dir / index_file)
        self.hook("after_index")
        summary = report.get("nightly", {}).get("drift") or {}
        counts.update(
            {
                "input_files": len(plan),
                "urls": len(versions),
                "drift_compared": summary.get("compared", 0),
                "drift_changed": summary.get("changed", 0),
            }
        )
        self.store.commit_run(
            self.day,
            inputs=plan,
            versions=versions,
            counts=counts,
            index_file=index_file,
            settings=minhash_settings(self.pcfg),
            before_commit=lambda: self.hook("before_commit"),
        )
        log.info("commit: %s recorded (%d files consumed, %d URLs)", self.day, len(plan), len(versions))
        self.hook("after_commit")
        _gc_index_files(self.store)
        return {"date": self.day, "status": "done", "counts": counts, "out": self.out_dir, "report": report}


def _drift(
    cfg: NightlyConfig, pcfg: PipelineConfig, store: StateStore, day: str
) -> drift_detector.DriftDetector:
    return drift_detector.DriftDetector(cfg.drift, pcfg.dedup, lambda urls: store.versions(urls, before=day))


def _load_index(path: Path | None, pcfg: PipelineConfig) -> dedup.DedupIndex | None:
    """The dedup index of earlier runs (None when dedup is off)."""
    if not pcfg.dedup.enabled:
        return None
    return dedup.DedupIndex.load(path, pcfg.dedup) if path else dedup.DedupIndex(pcfg.dedup)


def _empty_output(out_dir: Path, nightly_info: dict[str, Any]) -> dict[str, Any]:
    """A night with no new input still leaves a finished folder, so the date reads as done."""
    for name in OUTPUT_FILES:  # a --force redo may find an earlier output of this date
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for name in ("clean", "quarantine"):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    counts = {o: 0 for o in OUTCOMES}
    counts.update({"unreadable": 0, "in": 0})
    report = {"command": "nightly", "inputs": [], "counts": counts, "reasons": {}, "nightly": nightly_info}
    write_json(out_dir / "report.json", report)
    (out_dir / SUCCESS).write_text("")
    return report
