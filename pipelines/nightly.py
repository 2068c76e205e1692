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
import json
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from poisonguard.core import minhash
from poisonguard.core.files import sha256_file, write_json
from poisonguard.core.schema import OUTCOMES
from poisonguard.filters import dedup_prior
from poisonguard.filters import drift as drift_detector
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.engines import Engine, EngineError, engine_for
from poisonguard.pipelines.locks import LockHeld, hold_lock
from poisonguard.pipelines.nightly_config import (
    NightlyConfig,
    NightlyError,
    NightlyLocked,
    NightlyUsageError,
    config_hash,
    minhash_settings,
    parse_date,
    pipeline_config,
    resolve_path,
)
from poisonguard.pipelines.nightly_history import load_index, read_outcomes, write_index
from poisonguard.pipelines.nightly_metrics import METRICS_FILE, write_metrics
from poisonguard.pipelines.readers import InputError, expand_inputs
from poisonguard.pipelines.stages import OUTPUT_FILES, OutputError
from poisonguard.pipelines.state import DONE, InputFile, StateError, StateStore
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
        resolved = str(resolve_path(pattern, base))
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
        seeds = load_seeds(
            src.seeds, resolve_path(src.seeds_file, base) if src.seeds_file else None, src.sitemap
        )
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
# The run


_FORMER_SNAPSHOT = re.compile(r"\d{4}-\d{2}-\d{2}\.npz")


def _gc_index_files(store: StateStore, index_root: Path) -> None:
    """Keep the index states the latest run left and started from (a --force redo needs the
    latter); remove the rest, an interrupted night's files included."""
    latest = store.latest_done()
    if latest is None or not index_root.exists():
        return
    keep = [n for n in (latest.get("index_file"), latest.get("base_index")) if n]
    manifests = [Path(n).stem + ".json" if n.endswith(".npz") else n for n in keep]
    try:
        dedup_prior.collect_garbage(index_root, manifests)
        for path in index_root.glob("*.npz"):  # snapshots of the former in-memory format ({date}.npz)
            if path.name not in keep and _FORMER_SNAPSHOT.fullmatch(path.name):
                path.unlink()
    except Exception as exc:  # the night is committed: a failed clean-up is retried by the next run
        log.warning("index clean-up in %s failed (the next run retries it): %s", index_root, exc)


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
    root = (out if out is not None else resolve_path(cfg.output, base)).resolve()
    state_path = (
        state
        if state is not None
        else (resolve_path(cfg.state, base) if cfg.state else root / "state.sqlite")
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

    @property
    def index_root(self) -> Path:
        """The on-disk dedup index of earlier nights: ``dedup.index_dir``, else beside the state."""
        configured = self.pcfg.dedup.index_dir
        return resolve_path(configured, self.base) if configured else self.store.index_dir

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
        try:
            return self._run_filter(plan, base_index, detector, nightly_info)
        except (InputError, OutputError) as exc:
            raise NightlyError(f"filter: {exc}") from exc

    def _run_filter(
        self,
        plan: list[InputFile],
        base_index: str | None,
        detector: drift_detector.DriftDetector,
        nightly_info: dict[str, Any],
    ) -> dict[str, Any]:
        index = load_index(self.index_root, base_index, self.pcfg)
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
            kwargs["dedup_index"] = load_index(self.index_root, base_index, self.pcfg)
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
            # A name of its own: a killed night's manifest is never the one the ledger names.
            index_file = f"{self.day}-{secrets.token_hex(4)}.json"
            write_index(self.index_root, base_index, kept, self.pcfg, index_file)
            log.info("index: %s", self.index_root / index_file)
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
        _gc_index_files(self.store, self.index_root)
        return {"date": self.day, "status": "done", "counts": counts, "out": self.out_dir, "report": report}


def _drift(
    cfg: NightlyConfig, pcfg: PipelineConfig, store: StateStore, day: str
) -> drift_detector.DriftDetector:
    return drift_detector.DriftDetector(cfg.drift, pcfg.dedup, lambda urls: store.versions(urls, before=day))


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
