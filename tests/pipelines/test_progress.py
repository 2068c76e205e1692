"""Progress for people and for logs: log lines every interval, JSON lines, a bar, silence with -q."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from poisonguard.pipelines.progress import Progress, resolve_mode
from tests.conftest import DEMO_CORPUS
from tests.pipelines.test_cli import poisonguard
from tests.pipelines.test_report import demo_site  # noqa: F401 - a fixture

FAST = "perplexity:\n  enabled: false\nrun:\n  batch_rows: 5\n"


def test_modes_resolve_from_the_stream() -> None:
    assert resolve_mode(True, io.StringIO()) == "log"  # not a terminal
    assert resolve_mode(False) == "off" and resolve_mode("json") == "json"
    with pytest.raises(ValueError, match="progress mode"):
        resolve_mode("loud")


def test_log_mode_lines_carry_count_rate_share_and_eta() -> None:
    stream = io.StringIO()
    progress = Progress("log", interval_s=0.0, stream=stream)
    task = progress.start("scoring", total=1000, unit="B")
    progress.advance(task, 250, 40)
    progress.update(task, hosts=3)
    progress.finish(task)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("poisonguard scoring: started 0 docs, 0%, 0.0 docs/s")
    assert re.search(r"poisonguard scoring: 40 docs, 25%, [\d,.]+ docs/s, ETA \d+:\d\d$", lines[1])
    assert "hosts 3" in lines[2]
    assert re.search(r"scoring: done 40 docs, 100%", lines[-1])


def test_log_mode_waits_for_the_interval() -> None:
    stream = io.StringIO()
    progress = Progress("log", interval_s=3600, stream=stream)
    task = progress.start("dedup", total=100, unit="docs")
    for _ in range(50):
        progress.advance(task, None, 2)
    progress.finish(task)
    assert len(stream.getvalue().splitlines()) == 2  # started, done: nothing in between


def test_json_mode_is_one_object_a_line() -> None:
    stream = io.StringIO()
    progress = Progress("json", interval_s=0.0, stream=stream)
    task = progress.start("crawl", total=None, unit="pages")
    progress.update(task, items=12, hosts=2, queue=30)
    progress.finish(task)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["start", "progress", "done"]
    assert records[1]["pages"] == 12 and records[1]["hosts"] == 2 and records[1]["queue"] == 30
    assert records[1]["stage"] == "crawl" and "pages_per_s" in records[1]


def test_bar_mode_draws_a_bar_with_rate() -> None:
    stream = io.StringIO()
    progress = Progress("bar", stream=stream)
    task = progress.start("write", total=10, unit="docs")
    progress.advance(task, None, 10)
    progress.finish(task)
    assert "write" in stream.getvalue() and "docs/s" in stream.getvalue()


def test_off_mode_writes_nothing() -> None:
    stream = io.StringIO()
    progress = Progress(False, stream=stream)
    progress.advance(progress.start("x", 10), None, 5)
    assert stream.getvalue() == ""


def test_cli_logs_every_stage_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "fast.yaml").write_text(FAST)
    base = ["filter", str(DEMO_CORPUS), "--config", str(tmp_path / "fast.yaml")]
    text = poisonguard(*base, "--out", str(tmp_path / "o1"))
    assert text.returncode == 0, text.stderr
    for stage in ("scoring", "dedup", "write"):
        assert re.search(rf"poisonguard {stage}: done [\d,]+ docs", text.stderr), text.stderr

    as_json = poisonguard(*base, "--out", str(tmp_path / "o2"), "--log-format", "json")
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stderr.splitlines()]
    done = {r["stage"]: r for r in records if r["event"] == "done"}
    assert set(done) >= {"scoring", "dedup", "write"} and done["write"]["docs"] == 35

    quiet = poisonguard(*base, "--out", str(tmp_path / "o3"), "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


@pytest.mark.slow
def test_crawl_reports_pages_hosts_and_queue(demo_site: str, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "c.yaml").write_text(
        "crawl:\n  autothrottle: false\n  retry_times: 0\n  max_time_s: 60\nperplexity:\n  enabled: false\n"
    )
    args = ["crawl", demo_site, "--out", str(tmp_path / "out"), "--config", str(tmp_path / "c.yaml")]
    result = poisonguard(*args, "--no-lm", "--log-format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    crawl = [r for r in records if r["stage"] == "crawl"]
    assert crawl[-1]["event"] == "done" and crawl[-1]["pages"] >= 10
    assert crawl[-1]["hosts"] == 1 and "queue" in crawl[-1] and "pages_per_s" in crawl[-1]
