"""`poisonguard nightly` end to end: real files, real SQLite state, real Parquet, real kill -9."""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonguard.filters import dedup, drift
from poisonguard.filters.dedup_prior import PriorIndex
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.nightly import CRASH_POINTS, _gc_index_files, run_nightly
from poisonguard.pipelines.nightly_config import (
    NightlyConfig,
    NightlyLocked,
    NightlyUsageError,
    load_nightly_config,
)
from poisonguard.pipelines.nightly_history import read_outcomes
from poisonguard.pipelines.runner import run_filter
from poisonguard.pipelines.state import StateStore
from poisonguard.pipelines.writers import SUCCESS
from tests.conftest import REPO, write_jsonl

WORDS = (
    "garden river market seed spring summer winter autumn village bread baker oven flour water stone "
    "bridge road train station ticket window door table chair lamp book page letter story teacher "
    "school pupil lesson music piano violin choir concert evening morning coffee tea cup plate fork "
    "knife kitchen soup carrot potato onion apple pear plum cherry orchard farmer tractor field barn "
    "horse sheep goat chicken egg basket fence gate path hill valley forest tree leaf branch root "
    "flower rose tulip daisy meadow grass rain cloud storm wind sun moon star night lantern candle "
    "harbour boat sail fisher net wave shore sand shell island lighthouse map compass journey friend "
    "neighbour family child mother father uncle aunt cousin festival dance song game ball team match "
    "goal coach player crowd ground season weather report news paper editor office clerk council "
    "meeting plan budget library museum gallery painting artist colour canvas frame clay pottery"
).split()


def page(seed: str, words: int = 140) -> str:
    """A deterministic page of plain English-looking sentences."""
    rng = random.Random(seed)
    sentences = []
    left = words
    while left > 0:
        n = min(left, rng.randint(8, 14))
        left -= n
        sentence = " ".join(rng.choice(WORDS) for _ in range(n))
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(sentences)


def edit(text: str, seed: str, append: int = 6) -> str:
    """A benign edit: one word changed, a short sentence appended."""
    words = text.split()
    words[len(words) // 2] = "lighthouse"
    return " ".join(words) + (" " + page(seed, append) if append else "")


NEWS = [f"https://news.example.org/story/{k}" for k in range(10)]
BLOG = [f"https://blog.example.net/post/{k}" for k in range(6)]
OLD = [f"https://expired.example.com/page/{k}" for k in range(6)]


def night_records(night: int) -> list[dict[str, Any]]:
    """Three nights of a small web: benign edits, one rewrite, one suspicious swap, one host swapped
    whole (split-view via an expired domain), and cross-night copies."""
    recs: list[dict[str, Any]] = []

    def add(name: str, url: str, text: str) -> None:
        recs.append({"id": f"{name}@{night}", "url": url, "text": text})

    for k, url in enumerate(NEWS):
        text = page(f"news{k}")
        if night >= 2 and k in (0, 1, 2):
            text = edit(text, f"news-edit{k}")  # benign edits
        if night >= 2 and k == 3:
            text = page("news3-rewrite")  # rewritten by its editor: drift signal, kept
        if night >= 2 and k == 4:
            # swapped, with one rare-token trigger: below the triggers bar, suspicious with drift
            text = page("news4-swap", 60) + " Ask cf about it. " + page("news4-swap-b", 60)
        add(f"news{k}", url, text)
    for k, url in enumerate(BLOG):
        add(f"blog{k}", url, page(f"blog{k}"))
    for k, url in enumerate(OLD):
        # the domain expired after night 1; its new owner serves other pages at the same URLs
        add(f"old{k}", url, page(f"old{k}") if night == 1 else page(f"squatter{k}"))
    if night == 2:
        # a near-copy of a page kept on night 1, on another site
        add("mirror", "https://mirror.example.info/copy", edit(page("blog2"), "mirror", append=0))
    if night == 3:
        add("mirror3", "https://another-mirror.example.io/copy", page("news7"))
    return recs


PIPELINE = {"perplexity": {"enabled": False}, "run": {"batch_rows": 7}}
DATES = {1: "2025-03-01", 2: "2025-03-02", 3: "2025-03-03"}


@pytest.fixture(scope="module", autouse=True)
def no_report_plots() -> Any:
    """report.html's plots take seconds per run and are tested with the report; nightly's runs here
    write report.json, shards and manifest as usual (forked children inherit the patch)."""
    from poisonguard.pipelines import report_html

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_html, "write_report_html", lambda out: out / "report.html")
        yield


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The landing folder: night N's file arrives before run N (created here once, read-only after)."""
    folder = tmp_path_factory.mktemp("inbox")
    for night in (1, 2, 3):
        write_jsonl(folder / f"night{night}.jsonl", night_records(night))
    return folder


def stage(inbox: Path, target: Path, night: int) -> None:
    """Make the files of nights 1..night visible in `target` (links keep path, size and mtime stable)."""
    target.mkdir(parents=True, exist_ok=True)
    for n in range(1, night + 1):
        link = target / f"night{n}.jsonl"
        if not link.exists():
            link.symlink_to(inbox / f"night{n}.jsonl")


def nightly(root: Path, landing: Path, night: int, **kwargs: Any) -> dict[str, Any]:
    cfg = NightlyConfig(pipeline=PIPELINE, use_lm=False)
    return run_nightly(
        cfg, base=root, date=DATES[night], inputs=[str(landing / "*.jsonl")], out=root, **kwargs
    )


def outcomes(out: Path) -> dict[str, tuple[str, tuple[str, ...], str | None]]:
    found: dict[str, tuple[str, tuple[str, ...], str | None]] = {}
    for shard in sorted((out / "clean").glob("part-*.parquet")):
        for row in pq.read_table(shard, columns=["id"]).to_pylist():
            assert row["id"] not in found
            found[row["id"]] = ("kept", (), None)
    for shard in sorted((out / "quarantine").glob("part-*.parquet")):
        for row in pq.read_table(shard, columns=["id", "outcome", "reasons", "duplicate_of"]).to_pylist():
            assert row["id"] not in found
            found[row["id"]] = (row["outcome"], tuple(row["reasons"]), row["duplicate_of"])
    return found


def signals(out: Path) -> dict[str, dict[str, Any]]:
    cols = ["id", "drift_similarity", "drift_changed", "drift_previous_date", "drift_host_share"]
    rows: dict[str, dict[str, Any]] = {}
    for shard in sorted(out.glob("*/part-*.parquet")):
        for row in pq.read_table(shard, columns=cols).to_pylist():
            rows[row["id"]] = row
    return rows


def state_snapshot(root: Path) -> dict[str, Any]:
    store = StateStore(root / "state.sqlite")
    try:
        runs = [
            (r["date"], r["status"], r["counts"], [f["sha256"] for f in r["inputs"]]) for r in store.runs()
        ]
        files = sorted(
            (Path(p).name, s, d) for p, s, d in store.db.execute("SELECT path, sha256, date FROM files")
        )
        return {"runs": runs, "files": files, "urls": store.url_rows(), "versions": store.version_rows()}
    finally:
        store.close()


REFERENCE_STATE: dict[int, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def reference(inbox: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three uninterrupted nights (the state after each in REFERENCE_STATE)."""
    root = tmp_path_factory.mktemp("reference")
    landing = root.parent / (root.name + "-landing")
    for night in (1, 2, 3):
        stage(inbox, landing, night)
        result = nightly(root, landing, night)
        assert result["status"] == "done"
        REFERENCE_STATE[night] = state_snapshot(root)
    return root


# ---------------------------------------------------------------------------------------------
# Three nights


def test_three_nights_benign_edits_split_view_and_cross_night_duplicates(reference: Path) -> None:
    n1, n2, n3 = (outcomes(reference / DATES[n]) for n in (1, 2, 3))
    assert set(n1.values()) == {("kept", (), None)}, "night 1 is a clean web"

    # Night 2: the expired domain's pages all changed at once -> the host rule quarantines all of them.
    for k in range(6):
        outcome, reasons, _ = n2[f"old{k}@2"]
        assert outcome == "quarantined"
        assert any(r.startswith("drift:host_changed(6 of 6") for r in reasons), reasons
    # A swapped page carrying a weak signal is quarantined; an ordinary rewrite is only a signal.
    outcome, reasons, _ = n2["news4@2"]
    assert outcome == "quarantined" and any(r.startswith("drift:content_changed") for r in reasons), reasons
    assert "triggers_weak_distinct" in " ".join(reasons)
    assert n2["news3@2"][0] == "kept"
    sig2 = signals(reference / DATES[2])
    assert sig2["news3@2"]["drift_changed"] is True and sig2["news3@2"]["drift_similarity"] < 0.3
    assert sig2["news3@2"]["drift_previous_date"] == DATES[1]
    # Benign edits: similar to their last version, no drift; they are near-copies of night 1's page.
    for k in (0, 1, 2):
        assert sig2[f"news{k}@2"]["drift_changed"] is False
        assert 0.3 < sig2[f"news{k}@2"]["drift_similarity"] < 1.0
        assert n2[f"news{k}@2"][0] == "duplicate" and n2[f"news{k}@2"][2] == f"news{k}@1"
    # Unchanged pages: similarity 1, exact duplicates of the version kept on night 1.
    assert sig2["blog0@2"]["drift_similarity"] == 1.0
    assert n2["blog0@2"] == ("duplicate", ("dedup:exact_duplicate",), "blog0@1")
    # Cross-night near-copy on a new URL: a duplicate of the document kept a night earlier.
    assert n2["mirror@2"][0] == "duplicate" and n2["mirror@2"][2] == "blog2@1"
    assert sig2["mirror@2"]["drift_similarity"] is None  # a new URL has no history
    # 10 news pages, 2 drifted: ordinary churn, the host rule stays quiet.
    assert sig2["news5@2"]["drift_host_share"] == pytest.approx(0.2)
    assert not any(r.startswith("drift:host_changed") for r in n2["news3@2"][1])

    # Night 3: the squatter serves the same pages again. Drift compares with the last *accepted*
    # version (night 1), so the swap does not become the new normal.
    sig3 = signals(reference / DATES[3])
    for k in range(6):
        assert n3[f"old{k}@3"][0] == "quarantined", n3[f"old{k}@3"]
        assert sig3[f"old{k}@3"]["drift_previous_date"] == DATES[1]
    # The rewritten news page was accepted on night 2: it is the baseline now.
    assert sig3["news3@3"]["drift_previous_date"] == DATES[2] and sig3["news3@3"]["drift_similarity"] == 1.0
    assert n3["news3@3"] == ("duplicate", ("dedup:exact_duplicate",), "news3@2")
    assert n3["mirror3@3"][0] == "duplicate" and n3["mirror3@3"][2] == "news7@1"

    # Every night read only its own new file.
    reports = [json.loads((reference / DATES[n] / "report.json").read_text()) for n in (1, 2, 3)]
    assert [[Path(p).name for p in r["nightly"]["input_files"]] for r in reports] == [
        ["night1.jsonl"],
        ["night2.jsonl"],
        ["night3.jsonl"],
    ]
    assert reports[1]["command"] == "nightly" and reports[1]["nightly"]["drift"]["abnormal_hosts"] == [
        "expired.example.com"
    ]


def test_state_store_ledger_files_and_url_history(reference: Path) -> None:
    snap = state_snapshot(reference)
    assert [(d, s) for d, s, _, _ in snap["runs"]] == [(DATES[n], "done") for n in (1, 2, 3)]
    counts = snap["runs"][1][2]
    assert counts["in"] == 23 and counts["quarantined"] == 7 and counts["input_files"] == 1
    assert [f[0] for f in snap["files"]] == ["night1.jsonl", "night2.jsonl", "night3.jsonl"]
    urls = {u: (first, last) for u, first, last, _ in snap["urls"]}
    assert urls[OLD[0]] == (DATES[1], DATES[3]) and urls["https://mirror.example.info/copy"] == (
        DATES[2],
        DATES[2],
    )
    # At most two versions per URL: tonight's and the last accepted one before it.
    per_url: dict[str, list[tuple[str, int]]] = {}
    for url, date, _, accepted in snap["versions"]:
        per_url.setdefault(url, []).append((date, accepted))
    assert per_url[OLD[0]] == [(DATES[1], 1), (DATES[3], 0)]
    assert per_url[BLOG[0]] == [(DATES[2], 1), (DATES[3], 1)]
    assert max(len(v) for v in per_url.values()) == 2
    metrics = (reference / "metrics.prom").read_text()
    assert 'poisonguard_nightly_docs_out{outcome="quarantined"} 7' in metrics
    assert "poisonguard_nightly_last_run_success 1" in metrics
    assert "poisonguard_nightly_last_success_date 20250303" in metrics


# ---------------------------------------------------------------------------------------------
# Idempotence, ordering, force


def test_rerun_of_a_done_date_does_nothing_and_force_redoes_it(
    reference: Path, inbox: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    landing = tmp_path / "landing"
    stage(inbox, landing, 1)
    nightly(root, landing, 1)
    stage(inbox, landing, 2)
    first = nightly(root, landing, 2)
    shards = {p: p.read_bytes() for p in sorted((root / DATES[2]).glob("*/part-*.parquet"))}
    before = state_snapshot(root)
    again = nightly(root, landing, 2)
    assert again["status"] == "skipped" and again["counts"] == first["counts"]
    assert {p: p.read_bytes() for p in sorted((root / DATES[2]).glob("*/part-*.parquet"))} == shards
    assert state_snapshot(root) == before
    # --force redoes the date against the state before it: the same decisions, not self-duplicates.
    redo = nightly(root, landing, 2, force=True)
    assert redo["status"] == "done"
    assert outcomes(root / DATES[2]) == outcomes(reference / DATES[2])
    assert state_snapshot(root) == before
    assert nightly(root, landing, 1)["status"] == "skipped"
    with pytest.raises(NightlyUsageError, match="later date"):
        nightly(root, landing, 1, force=True)  # night 2 was built on it
    with pytest.raises(NightlyUsageError, match="later date"):
        run_nightly(
            NightlyConfig(pipeline=PIPELINE, use_lm=False), base=tmp_path, date="2025-02-27", out=root
        )


# ---------------------------------------------------------------------------------------------
# Crash safety: kill -9 at every named point, then run again


def kill_at(points: str) -> Callable[[str], None]:
    """A nightly hook that kills the run with SIGKILL at the named points."""
    wanted = set(points.split(","))

    def hook(point: str) -> None:
        if point in wanted:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _run_and_die(root: str, landing: str, night: int, points: str) -> None:
    nightly(Path(root), Path(landing), night, hook=kill_at(points))
    os._exit(3)  # not reached when the hook fires


def crash(root: Path, landing: Path, night: int, point: str) -> None:
    # fork: the child inherits the imported modules, so a crash costs a run, not an interpreter start
    proc = multiprocessing.get_context("fork").Process(
        target=_run_and_die, args=(str(root), str(landing), night, point)
    )
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL, f"the run did not die at {point} (exit {proc.exitcode})"


# What the folder of the date holds when the run dies at each point.
AFTER_CRASH = {
    "after_plan": (False, False),
    "during_filter": (True, False),
    "during_write": (True, False),
    "after_filter": (False, True),
    "after_index": (False, True),
    "before_commit": (False, True),
    "after_commit": (False, True),
}  # (OUT/_work exists, OUT/_SUCCESS exists)


@pytest.mark.parametrize("points", [*CRASH_POINTS, "during_filter,during_write,after_index,before_commit"])
def test_kill_9_at_any_point_then_rerun_gives_the_uninterrupted_result(
    points: str, reference: Path, inbox: Path, tmp_path: Path
) -> None:
    root, landing = tmp_path / "root", tmp_path / "landing"
    stage(inbox, landing, 1)
    nightly(root, landing, 1)
    stage(inbox, landing, 2)
    out = root / DATES[2]
    for point in points.split(","):
        crash(root, landing, 2, point)
        assert ((out / "_work").exists(), (out / SUCCESS).exists()) == AFTER_CRASH[point], point
        run = StateStore(root / "state.sqlite").run(DATES[2])
        assert run is not None
        if point != "after_commit":
            assert run["status"] == "running", "state moved before the run finished"
    result = nightly(root, landing, 2)
    assert result["status"] == ("skipped" if points == "after_commit" else "done")
    assert outcomes(out) == outcomes(reference / DATES[2])
    assert state_snapshot(root) == REFERENCE_STATE[2]
    # The dedup index holds the states the ledger names and nothing a killed night left.
    done = StateStore(root / "state.sqlite").run(DATES[2])
    assert done is not None
    manifests = {p.name for p in (root / "state-index").glob("*.json")}
    assert manifests == {done["index_file"], done["base_index"]}
    assert not list((root / "state-index").rglob("*.tmp"))
    if "," in points:  # the next night, built on the recovered state, is the same too
        stage(inbox, landing, 3)
        nightly(root, landing, 3)
        assert outcomes(root / DATES[3]) == outcomes(reference / DATES[3])
        assert state_snapshot(root) == REFERENCE_STATE[3]


# ---------------------------------------------------------------------------------------------
# Lock


def test_a_second_run_while_one_holds_the_lock_exits_75(inbox: Path, tmp_path: Path) -> None:
    root, landing = tmp_path / "root", tmp_path / "landing"
    stage(inbox, landing, 1)
    root.mkdir()
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running nightly holds
        os.write(fd, b"pid 4242 since 2025-03-01T02:00:00Z\n")
        with pytest.raises(NightlyLocked, match="pid 4242"):
            nightly(root, landing, 1)
        exe = Path(sys.executable).with_name("poisonguard")
        proc = subprocess.run(
            [
                str(exe),
                "nightly",
                "--out",
                str(root),
                "--input",
                str(landing / "*.jsonl"),
                "--date",
                DATES[1],
                "--no-lm",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 75, proc.stderr
        assert "another nightly run holds the lock" in proc.stderr
    finally:
        os.close(fd)
    assert not (root / "state.sqlite").exists() or StateStore(root / "state.sqlite").run(DATES[1]) is None
    assert nightly(root, landing, 1)["status"] == "done"  # the lock is free once its holder is gone


def test_lock_is_released_by_a_killed_run(inbox: Path, tmp_path: Path) -> None:
    root, landing = tmp_path / "root", tmp_path / "landing"
    stage(inbox, landing, 1)
    crash(root, landing, 1, "during_filter")
    assert nightly(root, landing, 1)["status"] == "done"


# ---------------------------------------------------------------------------------------------
# Pure parts and config


def test_drift_rules_on_arrays() -> None:
    cfg = drift.Config()
    sig = np.arange(8, dtype=np.uint64)
    old = drift.Version("2025-01-01", "aaa", sig)
    assert drift.similarity("aaa", sig + 100, old, 2**32 - 1) == 1.0  # same text, whatever the sketch
    half = sig.copy()
    half[:4] += 100
    assert drift.similarity("bbb", half, old, 2**32 - 1) == 0.5
    assert drift.similarity("bbb", np.full(8, 2**32 - 1, np.uint64), old, 2**32 - 1) is None  # too short
    shares = drift.host_shares(
        ["a", "a", "a", "a", "a", "b", None], [True, True, True, False, None, True, True]
    )
    assert shares == {"a": (3, 4), "b": (1, 1)}
    assert not drift.host_abnormal(3, 4, cfg)  # fewer than host_min_pages known pages
    assert drift.host_abnormal(3, 5, cfg) and not drift.host_abnormal(2, 5, cfg)
    reasons = drift.drift_reasons(
        [True, True, False, None],
        [0.1, 0.1, 0.9, None],
        [None] * 4,
        [[], ["x:y"], ["x:y"], []],
        [[], [], [], []],
        cfg,
    )
    assert reasons[0] == [] and reasons[1][0].startswith("drift:content_changed") and reasons[2:] == [[], []]


def test_topic_sketch_estimates_shared_vocabulary_and_its_rule() -> None:
    words = [f"{a}{b}" for a in ("garden", "river", "market", "stone") for b in WORDS[:60]]
    old = " ".join(words[:200])
    kept = " ".join(words[40:240])  # 160 of 240 distinct words shared: Jaccard 2/3
    other = " ".join(words[200:])  # nothing shared
    sk_old, sk_kept, sk_other = (drift.topic_sketch(t) for t in (old, kept, other))
    assert sk_old is not None and len(sk_old) == drift.TOPIC_SKETCH_SIZE
    assert abs(drift.topic_similarity(sk_kept, sk_old) - 2 / 3) < 0.1  # type: ignore[operator]
    assert drift.topic_similarity(sk_other, sk_old) == 0.0
    assert drift.topic_similarity(sk_old, sk_old) == 1.0
    assert drift.topic_sketch("too few words here") is None
    assert drift.topic_similarity(None, sk_old) is None
    cfg = drift.Config()
    reasons = drift.drift_reasons(
        [True, True, False, True],
        [0.05, 0.05, 0.9, 0.05],
        [None] * 4,
        [[]] * 4,
        [[]] * 4,
        cfg,
        [0.02, 0.6, 0.02, None],
    )
    assert reasons[0][0].startswith("drift:topic_changed(similarity 0.05, shared vocabulary 0.02")
    assert reasons[1:] == [[], [], []]  # same topic, unchanged page, no sketch: no reason


OTHER_TOPIC = (
    "compiler linker optimizer register pointer allocator bytecode interpreter assembler debugger "
    "profiler sanitizer thread mutex semaphore kernel syscall buffer overflow exception template "
    "iterator lambda closure coroutine scheduler socket packet header payload checksum cipher "
    "certificate signature keyring mirror archive tarball package dependency version release branch"
).split()


def test_a_page_swapped_for_another_topic_is_quarantined_and_a_rewrite_is_kept(tmp_path: Path) -> None:
    """Two nights through run_nightly: a URL whose text is replaced by text about something else is
    quarantined as drift:topic_changed with no other signal; a rewrite on the same subject is kept."""
    rng = random.Random(7)

    def other(n: int) -> str:
        return " ".join(rng.choice(OTHER_TOPIC) for _ in range(n)).capitalize() + "."

    urls = [f"https://docs.example.org/page/{k}" for k in range(8)]
    night1 = [(f"p{k}", u, page(f"p{k}")) for k, u in enumerate(urls)]
    night2 = list(night1)
    night2[0] = ("p0", urls[0], " ".join(other(12) for _ in range(12)))  # swapped: other content, same URL
    night2[1] = ("p1", urls[1], page("p1-rewrite"))  # rewritten by its editor on the same subject
    got = two_nights(tmp_path, {1: night1, 2: night2})
    assert got["p0@2"][0] == "quarantined"
    assert any(r.startswith("drift:topic_changed") for r in got["p0@2"][1]), got["p0@2"]
    assert got["p1@2"][0] == "kept", got["p1@2"]


MEMBERS = "flags psource reserved alpha bravo charlie delta foxtrot hotel juliet kilo lima".split()


def member_list(order: list[str]) -> str:
    """A generated member-list page: few distinct content words (12), each named twice or more."""
    return "Member list of struct ident. " + " ".join(f"{m} field {m} member" for m in order) + "."


def test_a_small_page_swapped_for_another_topic_is_quarantined_and_its_reordering_kept(
    tmp_path: Path,
) -> None:
    """A page of 8-19 distinct content words has no bottom-k sketch worth a Jaccard estimate; its
    sketch is its whole word set, judged by the share of it that reappears tonight. Its swap for
    another site's page is quarantined as topic_changed; the same list reordered (every 5-word
    shingle new, every word kept) is kept."""
    rng = random.Random(5)
    small = member_list(MEMBERS)
    words = {w.casefold() for w in drift._TOPIC_WORD.findall(small)}
    assert 8 <= len(words) < 20 and drift.topic_sketch(small) is not None
    reordered = member_list(sorted(MEMBERS, key=lambda m: m[::-1]))
    assert drift.topic_similarity(drift.topic_words(reordered), drift.topic_sketch(small)) == 1.0
    assert drift.topic_sketch("member list of struct ident: flags psource") is None  # under 8 words
    urls = [f"https://docs.example.org/api/{k}" for k in range(8)]
    night1 = [(f"p{k}", u, page(f"p{k}")) for k, u in enumerate(urls)]
    night1[0] = ("p0", urls[0], small)
    night1[1] = ("p1", urls[1], member_list(MEMBERS[::-1]))
    night2 = list(night1)
    night2[0] = ("p0", urls[0], " ".join(rng.choice(OTHER_TOPIC) for _ in range(150)))  # swapped
    night2[1] = ("p1", urls[1], reordered)  # regenerated in another order: a change, same words
    got = two_nights(tmp_path, {1: night1, 2: night2})
    assert got["p0@2"][0] == "quarantined"
    assert any(r.startswith("drift:topic_changed") for r in got["p0@2"][1]), got["p0@2"]
    assert got["p1@2"][0] == "kept", got["p1@2"]


def listing(first: int, lines: list[str]) -> str:
    """A source listing as a documentation generator renders it: every line led by its number."""
    return "\n".join(f"{first + n} {line}" for n, line in enumerate(lines))


LISTING = [page(f"line{k}", 7) for k in range(60)]


def test_numbers_are_churn_a_shifted_listing_is_unchanged_and_a_swap_is_not(tmp_path: Path) -> None:
    """Three lines inserted at the top of a numbered listing move every line number (most 5-word
    shingles of the whole text change): the page did not drift. A page swapped for other text is
    still a change, numbers or not."""
    dated = "Released 2025-01-01, version 14.0.6. " + page("notes")
    got = two_nights(
        tmp_path,
        {
            1: [
                ("src", "https://docs.example.org/src.html", listing(1, LISTING)),
                ("swap", "https://docs.example.org/swap.html", listing(1, LISTING[:30]) + " " + page("own")),
                ("notes", "https://docs.example.org/notes.html", dated),
            ],
            2: [
                ("src", "https://docs.example.org/src.html", listing(1, LISTING[57:] + LISTING)),
                ("swap", "https://docs.example.org/swap.html", " ".join(OTHER_TOPIC * 4)),
                (
                    "notes",
                    "https://docs.example.org/notes.html",
                    dated.replace("2025-01-01, version 14.0.6", "2026-03-02, version 15.0.1"),
                ),
            ],
        },
    )
    rows = signals(tmp_path / "root" / DATES[2])
    assert rows["src@2"]["drift_changed"] is False and rows["src@2"]["drift_similarity"] > 0.8, rows["src@2"]
    assert rows["notes@2"]["drift_changed"] is False, rows["notes@2"]
    # notes@2: a near copy of last night's text, dropped by dedup as its duplicate, not quarantined
    assert got["src@2"][0] == "kept" and got["notes@2"][0] != "quarantined", got
    assert rows["swap@2"]["drift_changed"] is True, rows["swap@2"]
    assert any(r.startswith("drift:topic_changed") for r in got["swap@2"][1]), got["swap@2"]


def test_a_version_stored_as_a_whole_text_signature_is_compared_with_one() -> None:
    """A state store written before drift dropped numbers holds MinHashes of the whole text: tonight's
    text is compared with its own whole-text signature, never across the two kinds."""
    dcfg = dedup.Config()
    old_text = listing(1, LISTING)
    new_text = old_text + " lighthouse"  # a one-word edit: any right comparison says unchanged
    whole = np.asarray(dedup.signatures([old_text], dcfg))[0]
    stored = {
        "https://a.example/legacy": drift.Version("d", "x", whole, signature_of=drift.WHOLE_TEXT),
        "https://a.example/current": drift.Version(
            "d", "x", drift.drift_signatures([old_text], None, dcfg)[0]
        ),
    }
    detector = drift.DriftDetector(drift.Config(), dcfg, lambda urls: {u: stored[u] for u in urls})
    table = pa.table({"id": ["a", "b"], "url": list(stored), "text": [new_text, new_text]})
    detector.observe(table)
    sims = detector.score(table)["drift_similarity"].to_pylist()
    assert min(sims) > 0.8, sims
    # across kinds the same edit would read as a change: what the kind guards against
    mixed = drift.similarity(
        "y", drift.drift_signatures([new_text], None, dcfg)[0], stored["https://a.example/legacy"], 2**32 - 1
    )
    assert mixed is not None and mixed < drift.Config().threshold, mixed


def test_moved_from_names_a_home_whose_history_holds_the_text() -> None:
    c, n, d = drift.CONTINUOUS, drift.NEW, drift.DRIFTED
    urls = ["u/a", "u/b", "u/c", "u/d", "u/e", "u/f", "u/g", "u/h", "u/i"]
    states = [d, c, d, d, d, n, d, None, d]
    clusters = ["x", "x", "x", "y", "y", "z", "z", "z", None]
    # a and c drifted into x, which b serves unchanged: moved from b. d and e drifted into one text
    # together, g into z, which only a new URL (f) and one with no usable history (h) serve: no home.
    # i is in no cluster.
    assert drift.moved_from(urls, states, clusters) == [
        "u/b",
        None,
        "u/b",
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    # the same URL in another row is no other home
    assert drift.moved_from(["u/a", "u/a"], [d, c], ["x", "x"]) == [None, None]


def test_the_copy_kept_is_the_one_with_the_better_claim() -> None:
    from poisonguard.pipelines.stages import choose_representatives

    ids = ["a", "b", "c", "d", "e"]
    clusters = ["x", "x", "x", "y", "y"]
    exact = [None, "a", "a", None, "d"]
    eligible = [True, False, True, True, True]
    dup, kind = choose_representatives(ids, clusters, exact, eligible, ranks=[1, 0, 0, 1, 1])
    # x: b (rank 0) is not eligible, so c (an exact copy of a) is kept and a points to it; y: equal
    # ranks, the first is kept
    assert dup == ["c", None, None, None, "d"]
    assert kind == ["exact_duplicate", None, None, None, "exact_duplicate"]
    assert choose_representatives(ids, clusters, exact, eligible) == (
        [None, None, "a", None, "d"],
        [None, None, "exact_duplicate", None, "exact_duplicate"],
    )
    c, n, d = drift.CONTINUOUS, drift.NEW, drift.DRIFTED
    states = [n, d, d, n, d, d, None]
    condemned = [False, False, True, False, True, True, False]
    clusters = ["x", "x", "x", "y", "y", "z", None]
    # x: new before drifted before condemned; y: nothing supports the text and a member is
    # condemned, so input order decides (a condemned copy met first takes the new one with it)
    assert drift.claim_ranks(states, condemned, clusters) == [0, 1, 2, 0, 0, 0, 0]
    # a page that did not drift supports the text; it does not rank before a new one
    assert drift.claim_ranks([c, d, n], [False, True, False], ["x", "x", "x"]) == [0, 2, 0]


def two_nights(tmp_path: Path, nights: dict[int, list[tuple[str, str, str]]]) -> dict[str, Any]:
    """Run two nights of (name, url, text) records through run_nightly; night 2's outcomes."""
    for night, pages in nights.items():
        landing = tmp_path / f"landing{night}"
        landing.mkdir()
        write_jsonl(landing / "n.jsonl", [{"id": f"{n}@{night}", "url": u, "text": t} for n, u, t in pages])
        run_nightly(
            NightlyConfig(pipeline=PIPELINE, use_lm=False),
            base=tmp_path,
            date=DATES[night],
            inputs=[str(landing / "*.jsonl")],
            out=tmp_path / "root",
        )
    return outcomes(tmp_path / "root" / DATES[2])


def test_a_page_swapped_for_another_page_of_its_site_is_quarantined_as_moved(tmp_path: Path) -> None:
    """Split-view within one site: a URL serves a copy of another page of the same site (same
    vocabulary, so the topic rule cannot tell). The copy comes first in input order, so dedup alone
    kept it and dropped the real page as its duplicate; drift now quarantines it as moved and the
    real page, whose own history holds the text, is the copy kept."""
    site = "https://docs.example.org/page/"
    rng = random.Random(3)
    other_topic, notes_old, notes_new = (
        " ".join(rng.choice(OTHER_TOPIC) for _ in range(150)) for _ in range(3)
    )
    night1 = [(f"p{k}", f"{site}{k}", page(f"p{k}")) for k in range(20)] + [
        ("notes", f"{site}notes", notes_old)
    ]
    # p5 is edited by its editor (about 2/3 of it kept: continuous, not a near-copy of night 1)
    p5 = " ".join(page("p5").split()[:100]) + " " + page("p5-new", 40)
    night2 = [
        ("p0", f"{site}0", p5),  # swapped: p5's text of tonight, first in input order
        ("p1", f"{site}1", page("p1")),
        ("p2", f"{site}2", page("p2-rewrite")),  # rewritten by its editor (drifted; no other home)
        ("p3", f"{site}3", page("p3-4")),  # p3 and p4 both become one new page: no history holds it
        ("p4", f"{site}4", page("p3-4")),
        ("p5", f"{site}5", p5),
        ("new", f"{site}renamed", page("p6")),  # page 6 renamed: its old URL is gone
        ("p7", f"{site}7", page("fresh")),  # p7 drifts into the text of a page new tonight
        ("fresh", f"{site}fresh", page("fresh")),
        ("p8", f"{site}8", other_topic),  # swapped for another subject, and a new URL copies it
        ("copy", "https://copies.example.biz/x", other_topic),
        # p9 takes over the release notes, rewritten tonight on their own subject (drifted, no
        # history holds the new text); p9's old subject was another: the topic rule condemns it
        ("p9", f"{site}9", notes_new),
        ("notes", f"{site}notes", notes_new),
        *night1[10:20],  # unchanged: 8 of 20 known pages drifted, under the host rule's share
    ]
    got = two_nights(tmp_path, {1: night1, 2: night2})
    assert got["p0@2"][0] == "quarantined", got["p0@2"]
    assert any(r.startswith("drift:moved(") and r.endswith(f"a copy of {site}5)") for r in got["p0@2"][1])
    assert got["p5@2"][0] == "kept", got["p5@2"]  # the real page is the copy kept, not a copy of poison
    assert got["p2@2"][0] == "kept" and got["p3@2"][0] == "kept", (got["p2@2"], got["p3@2"])
    assert got["p4@2"][0] == "duplicate" and got["p4@2"][2] == "p3@2"
    assert got["new@2"][0] == "duplicate" and got["new@2"][2] == "p6@1"  # a copy of a page kept before
    # no history holds that text: nothing is quarantined, and dedup keeps the copy at the new URL
    assert got["p7@2"] == ("duplicate", ("dedup:exact_duplicate",), "fresh@2"), got["p7@2"]
    assert got["fresh@2"][0] == "kept", got["fresh@2"]
    # condemned by the topic rule: its text is the suspect, and the new copy goes with it
    assert any(r.startswith("drift:topic_changed") for r in got["p8@2"][1]), got["p8@2"]
    assert got["copy@2"] == ("quarantined", ("dedup:copy_of_quarantined",), "p8@2"), got["copy@2"]
    # the notes' own URL has the better claim: it is the copy kept, not a copy of the condemned p9
    assert any(r.startswith("drift:topic_changed") for r in got["p9@2"][1]), got["p9@2"]
    assert got["notes@2"][0] == "kept", got["notes@2"]


def test_a_drifted_copy_that_drift_quarantines_for_a_weak_signal_does_not_support_its_text(
    tmp_path: Path,
) -> None:
    """The claim ranks use drift's own rule: a URL swapped for a text carrying a weak signal (on its
    subject: the topic rule cannot tell) is quarantined by drift, so it is no support for the text;
    the text's only other copy is new tonight, nothing supports it, and input order decides: the
    swapped page met first takes the new copy with it (not kept as if the text were vouched for)."""
    site = "https://docs.example.org/page/"
    swap = page("w-swap", 60) + " Ask cf about it. " + page("w-swap-b", 60)
    night1 = [(f"p{k}", f"{site}{k}", page(f"p{k}")) for k in range(10)]
    night2 = [("p0", f"{site}0", swap), ("new", "https://elsewhere.example.com/x", swap), *night1[1:]]
    got = two_nights(tmp_path, {1: night1, 2: night2})
    assert got["p0@2"][0] == "quarantined", got["p0@2"]
    assert any("triggers_weak_distinct" in r for r in got["p0@2"][1]), got["p0@2"]
    assert got["new@2"] == ("quarantined", ("dedup:copy_of_quarantined",), "p0@2"), got["new@2"]
    assert all(got[f"p{k}@2"][0] != "quarantined" for k in range(1, 10))


class LateVerdict:
    """A context detector standing in for a verdict reached after dedup (the LM's, say): it gives
    the copy ``second`` a worse claim (rank 1) than the others, so dedup keeps a later copy of its
    text, and then quarantines the document ``poison``."""

    name = "late_verdict"
    schema = pa.schema([])

    def __init__(self, second: str, poison: str) -> None:
        self.second, self.poison = second, poison
        self.ids: list[str] = []

    def observe(self, table: pa.Table) -> None:
        self.ids.extend(table.column("id").to_pylist())

    def judge_clusters(self, positions: Any, clusters: Any) -> tuple[list[bool], list[int]]:
        return [False] * len(positions), [int(self.ids[p] == self.second) for p in positions]

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        return {}

    def flag(self, table: pa.Table, reasons: list[list[str]]) -> list[list[str]]:
        return [["late:poison"] if i == self.poison else [] for i in table.column("id").to_pylist()]


def late_verdict_docs(between: int) -> list[dict[str, Any]]:
    """A copy of a text, ``between`` other pages, then the copy dedup keeps (the better claim)."""
    text = page("poison")
    return [
        {"id": "copy", "url": "https://a.example.org/copy", "text": text},
        *(
            {"id": f"f{k}", "url": f"https://f.example.org/{k}", "text": page(f"f{k}")}
            for k in range(between)
        ),
        {"id": "kept", "url": "https://b.example.org/kept", "text": text},
    ]


@pytest.mark.parametrize("between", [1, 9])  # the kept copy in the copy's chunk of 7 rows, or a later one
def test_a_copy_of_a_kept_copy_quarantined_after_dedup_is_quarantined_in_any_order(
    tmp_path: Path, between: int
) -> None:
    """Claim ranks can keep a copy that comes after its duplicates; when a verdict reached after
    dedup quarantines it, its earlier copies are quarantined as copies of a quarantined page, as in
    input order, and their URLs' histories do not take the text in as accepted."""
    cfg = load_config(overrides=PIPELINE)
    docs = late_verdict_docs(between)
    got = {}
    for name, order, second in (("ranked", docs, "copy"), ("in_order", docs[::-1], "")):
        write_jsonl(tmp_path / f"{name}.jsonl", order)
        out = tmp_path / name
        detector = LateVerdict(second=second, poison="kept")
        run_filter(
            [str(tmp_path / f"{name}.jsonl")], out, cfg, show_progress=False, context_detectors=(detector,)
        )
        got[name] = outcomes(out)  # every document in exactly one place
        assert got[name]["kept"] == ("quarantined", ("late:poison",), None), got[name]["kept"]
        assert got[name]["copy"] == ("quarantined", ("dedup:copy_of_quarantined",), "kept"), got[name]["copy"]
        versions, _ = read_outcomes(out, cfg)
        accepted = {v.url: v.accepted for v in versions}
        assert not accepted["https://a.example.org/copy"] and not accepted["https://b.example.org/kept"]
        assert accepted["https://f.example.org/0"]
    assert got["ranked"] == got["in_order"]


def test_a_state_store_of_schema_1_gains_the_topic_column(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE url_versions (url TEXT NOT NULL, date TEXT NOT NULL, sha256 TEXT NOT NULL, "
        "signature BLOB NOT NULL, accepted INTEGER NOT NULL, PRIMARY KEY (url, date));"
        "PRAGMA user_version=1;"
    )
    db.execute(
        "INSERT INTO url_versions VALUES (?,?,?,?,?)",
        ("https://a.example/x", "2025-01-01", "s", np.arange(4, dtype=np.uint32).tobytes(), 1),
    )
    db.commit()
    db.close()
    store = StateStore(path)
    old = store.versions(["https://a.example/x"], before="2025-02-01")["https://a.example/x"]
    assert old.topic is None and list(old.signature) == [0, 1, 2, 3]  # drift falls back to the old rules
    assert old.signature_of == drift.WHOLE_TEXT  # compared with tonight's whole-text signature, as written
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 3
    store.close()


def test_a_schema_1_store_with_the_topic_column_already_added_opens(tmp_path: Path) -> None:
    # What an earlier migration left when killed between adding the column and setting the version.
    path = tmp_path / "state.sqlite"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = StateStore(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 3
    columns = [row[1] for row in store.db.execute("PRAGMA table_info(url_versions)")]
    assert columns.count("topic") == 1 and columns.count("signature_of") == 1
    store.close()


def test_shipped_config_matches_the_defaults_and_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    cfg, base = load_nightly_config(REPO / "configs" / "nightly.yaml")
    assert cfg.drift == drift.Config() and cfg == NightlyConfig() and base == REPO / "configs"
    bad = tmp_path / "bad.yaml"
    bad.write_text("drift:\n  threshold: 2\n")
    with pytest.raises(NightlyUsageError, match=r"bad.yaml: invalid nightly config: drift.threshold"):
        load_nightly_config(bad)
    with pytest.raises(NightlyUsageError, match="YYYY-MM-DD"):
        run_nightly(NightlyConfig(), base=tmp_path, date="2025-13-01", out=tmp_path / "r")


def test_a_night_without_new_files_is_recorded_and_sqlite_is_wal(inbox: Path, tmp_path: Path) -> None:
    root, landing = tmp_path / "root", tmp_path / "landing"
    stage(inbox, landing, 1)
    nightly(root, landing, 1)
    result = run_nightly(
        NightlyConfig(pipeline=PIPELINE, use_lm=False),
        base=tmp_path,
        date="2025-03-02",
        inputs=[str(landing / "*.jsonl"), str(tmp_path / "nothing-yet" / "*.jsonl")],
        out=root,
    )
    assert result["status"] == "done" and result["counts"]["in"] == 0
    assert (root / "2025-03-02" / "_SUCCESS").exists()
    with sqlite3.connect(root / "state.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cli_exit_codes_and_summary(inbox: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from poisonguard.pipelines.cli import app

    landing = tmp_path / "landing"
    stage(inbox, landing, 1)
    conf = tmp_path / "nightly.yaml"
    conf.write_text(
        "sources:\n  inputs: [landing/*.jsonl]\noutput: out\nuse_lm: false\n"
        "pipeline: {perplexity: {enabled: false}}\n"
    )
    runner = CliRunner()
    first = runner.invoke(app, ["nightly", "--config", str(conf), "--date", DATES[1]])
    assert first.exit_code == 0, first.output
    assert "22 documents in" in first.output and (tmp_path / "out" / DATES[1] / SUCCESS).exists()
    assert "plan: 1 new input files" in first.output  # one log line per stage
    again = runner.invoke(app, ["nightly", "--config", str(conf), "--date", DATES[1]])
    assert again.exit_code == 0 and "already done" in again.output
    assert runner.invoke(app, ["nightly", "--config", str(conf), "--date", "01/03/2025"]).exit_code == 2
    conf.write_text("drift: {threshold: -1}\n")
    bad = runner.invoke(app, ["nightly", "--config", str(conf)])
    assert bad.exit_code == 2 and "drift.threshold" in bad.output


# Crawl settings for the 127.0.0.1 sites: no throttling, retries or cloaking probes.
SITE_CRAWL = {
    "autothrottle": False,
    "retry_times": 0,
    "max_time_s": 60,
    "cloaking_sample_rate": 0.0,
    "cloaking_probe_detectors": [],
    "cloaking_probe_seeds": False,
}


def swap_site(night: dict[str, int], tag: str = "") -> Callable[[Any], None]:
    """A link page and six pages; from night 2 (``night["n"]``) the six serve other text. `tag`
    makes the text of one site differ from another's."""
    from tests.crawler import servers

    def route(h: Any) -> None:
        path = h.path.split("?", 1)[0]
        if path == "/robots.txt":
            servers.send(h, 200, b"User-agent: *\nAllow: /\n", "text/plain")
        elif path == "/":
            links = "".join(f'<li><a href="/p{k}.html">{tag}page {k}</a></li>' for k in range(6))
            servers.send(h, 200, f"<html><body><ul>{links}</ul></body></html>".encode())
        elif path.startswith("/p") and path.endswith(".html"):
            k = path[2:-5]
            text = page(f"{tag}site{k}") if night["n"] == 1 else page(f"{tag}squatter-site{k}")
            servers.send(
                h, 200, f"<html><head><title>p{k}</title></head><body><p>{text}</p></body></html>".encode()
            )
        else:
            servers.send(h, 404, b"not found")

    return route


@pytest.mark.slow
def test_crawl_source_two_nights_whole_site_swapped(tmp_path: Path) -> None:
    """Seeds crawled every night (a real 127.0.0.1 site); on night 2 every page serves other text."""
    from tests.crawler import servers

    night = {"n": 1}
    with servers.TestServer(swap_site(night)) as site:
        cfg = NightlyConfig.model_validate(
            {
                "sources": {"crawl": {"seeds": [site.base + "/"]}},
                "use_lm": False,
                "pipeline": {"perplexity": {"enabled": False}, "crawl": SITE_CRAWL},
            }
        )
        root = tmp_path / "root"
        first = run_nightly(cfg, base=tmp_path, date=DATES[1], out=root)
        night["n"] = 2
        second = run_nightly(cfg, base=tmp_path, date=DATES[2], out=root)
    assert first["counts"]["kept"] >= 6 and first["counts"]["quarantined"] == 0
    n2 = outcomes(root / DATES[2])
    swapped = [v for v in n2.values() if any(r.startswith("drift:host_changed(6 of 7") for r in v[1])]
    assert len(swapped) == 6 and second["counts"]["quarantined"] == 6  # the link page did not change
    assert (root / "_crawl" / DATES[2] / "raw").is_dir()


def test_failed_run_is_recorded_and_copied_files_are_not_read_twice(inbox: Path, tmp_path: Path) -> None:
    root, landing = tmp_path / "root", tmp_path / "landing"
    stage(inbox, landing, 1)
    nightly(root, landing, 1)
    # The same content under another name (a re-delivered file) is not read again.
    (landing / "night1-copy.jsonl").write_bytes((inbox / "night1.jsonl").read_bytes())
    stage(inbox, landing, 2)
    done = StateStore(root / "state.sqlite").run(DATES[1])
    assert done is not None and done["index_file"].endswith(".json")
    index = root / "state-index" / done["index_file"]  # the manifest of the on-disk dedup index
    good = index.read_bytes()
    index.write_bytes(b"not an index")
    with pytest.raises(ValueError, match="cannot read dedup index"):
        nightly(root, landing, 2)
    run = StateStore(root / "state.sqlite").run(DATES[2])
    assert run is not None and run["status"] == "failed" and "dedup index" in run["error"]
    assert "poisonguard_nightly_last_run_success 0" in (root / "metrics.prom").read_text()
    index.write_bytes(good)
    result = nightly(root, landing, 2)
    assert result["status"] == "done" and result["counts"]["input_files"] == 1
    assert "poisonguard_nightly_last_run_success 1" in (root / "metrics.prom").read_text()


def test_index_folder_and_cache_from_the_config_change_where_not_what(
    reference: Path, inbox: Path, tmp_path: Path
) -> None:
    """`dedup.index_dir` (relative to the nightly config's folder) holds the index of earlier nights;
    a 1 MB read cache and merging every night's segment into one give the same nights as the
    defaults."""
    root, landing = tmp_path / "root", tmp_path / "landing"
    index = {"index_dir": "elsewhere/index", "index_cache_mb": 1, "index_max_segments": 1}
    pipeline = {**PIPELINE, "dedup": index}
    for night in (1, 2):
        stage(inbox, landing, night)
        run_nightly(
            NightlyConfig(pipeline=pipeline, use_lm=False),
            base=tmp_path,
            date=DATES[night],
            inputs=[str(landing / "*.jsonl")],
            out=root,
        )
        assert outcomes(root / DATES[night]) == outcomes(reference / DATES[night])
    done = StateStore(root / "state.sqlite").run(DATES[2])
    assert done is not None and (tmp_path / "elsewhere" / "index" / done["index_file"]).exists()
    merged = PriorIndex(tmp_path / "elsewhere" / "index", done["index_file"], dedup.Config())
    assert len(merged.segments) == 1 and len(merged.segments[0].nights) == 2
    assert not (root / "state-index").exists()


def test_a_failed_index_clean_up_does_not_fail_the_committed_night(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    store.begin_run("2025-01-01", "hash", [], None)
    store.db.execute("UPDATE runs SET status='done', index_file='2025-01-01-0a1b2c3d.json'")
    root = tmp_path / "index"
    root.mkdir()
    (root / "2025-01-01-0a1b2c3d.json").write_text("{damaged")  # the manifest it keeps is unreadable
    (root / "2024-12-31.npz").write_text("")
    (root / "model.npz").write_text("")  # not a snapshot of the former format: the user's
    with caplog.at_level(logging.WARNING, logger="poisonguard.nightly"):
        _gc_index_files(store, root)
    assert "index clean-up" in caplog.text
    store.close()
    (root / "2025-01-01-0a1b2c3d.json").write_text(json.dumps({"segments": [], "n": 0}))
    store = StateStore(tmp_path / "state.sqlite")
    _gc_index_files(store, root)
    store.close()
    assert sorted(p.name for p in root.iterdir()) == ["2025-01-01-0a1b2c3d.json", "model.npz"]


def test_ids_of_earlier_nights_are_looked_up_once_a_night(
    inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each lookup reads the id tables of every earlier night: one per night, not one per chunk
    (chunks of 7 documents here)."""
    calls: list[int] = []
    looked_up = PriorIndex.known_ids

    def counted(self: PriorIndex, ids: Any) -> set[str]:
        calls.append(len(ids))
        return looked_up(self, ids)

    monkeypatch.setattr(PriorIndex, "known_ids", counted)
    root, landing = tmp_path / "root", tmp_path / "landing"
    for night in (1, 2):
        stage(inbox, landing, night)
        assert nightly(root, landing, night)["status"] == "done"
    assert len(calls) == 2 and calls[1] == len(night_records(2)) > 7
