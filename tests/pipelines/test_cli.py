"""The installed `poisonguard` command, run as a user would run it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_CORPUS


def poisonguard(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("poisonguard", path=str(Path(sys.executable).parent))
    assert exe, "the console script `poisonguard` is not installed"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_explains_every_filter_option() -> None:
    result = poisonguard("filter", "--help")
    assert result.returncode == 0
    for option in ("--out", "--config", "--workers", "--lm", "--no-lm", "--overwrite", "--resume"):
        assert option in result.stdout


def test_filter_then_summary_and_exit_codes(tmp_path: Path) -> None:
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("perplexity:\n  enabled: false\n")
    out = tmp_path / "out"
    result = poisonguard("filter", str(DEMO_CORPUS), "--out", str(out), "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "quarantined" in result.stdout and str(out / "report.html") in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["in"] == 35

    again = poisonguard("filter", str(DEMO_CORPUS), "--out", str(out), "--config", str(cfg))
    assert again.returncode == 2 and "--overwrite" in again.stderr

    missing = poisonguard("filter", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "o2"))
    assert missing.returncode == 2
    assert "absent.jsonl: no such file or directory" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  workerz: 3\n")
    result = poisonguard("filter", str(DEMO_CORPUS), "--out", str(tmp_path / "o3"), "--config", str(bad))
    assert result.returncode == 2 and "run.workerz" in result.stderr

    usage = poisonguard("filter", str(DEMO_CORPUS))
    assert usage.returncode == 2


@pytest.mark.slow
def test_nightly_on_ray_commits_its_output(tmp_path: Path) -> None:
    """`nightly --engine ray` with a local Ray started for the run: exit 0, the date committed."""
    conf = tmp_path / "nightly.yaml"
    conf.write_text("output: out\nuse_lm: false\npipeline: {perplexity: {enabled: false}}\n")
    args = ("nightly", "--config", str(conf), "--input", str(DEMO_CORPUS), "--date", "2025-03-01")
    result = poisonguard(*args, "--engine", "ray")
    assert result.returncode == 0, result.stderr
    assert "ray engine" in result.stderr and "commit: 2025-03-01 recorded" in result.stderr
    out = tmp_path / "out" / "2025-03-01"
    report = json.loads((out / "report.json").read_text())
    assert report["engine"] == "ray" and report["command"] == "nightly" and report["counts"]["in"] == 35
    assert (out / "_SUCCESS").exists() and not (out / "_work").exists()
    with sqlite3.connect(tmp_path / "out" / "state.sqlite") as db:
        assert db.execute("SELECT status FROM runs WHERE date = '2025-03-01'").fetchone() == ("done",)
    assert poisonguard(*args, "--engine", "ray").stdout.startswith("nightly 2025-03-01: already done")
    bad = poisonguard(*args, "--engine", "spark")
    assert bad.returncode == 2 and "--engine must be local or ray" in bad.stderr
    assert poisonguard(*args, "--ray-address", "auto").returncode == 2  # needs --engine ray


def test_a_bad_engine_fails_before_any_work(tmp_path: Path) -> None:
    """The engine is chosen once and checked first: nothing is crawled, read or written."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body><p>a page</p></body></html>")

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = f"http://127.0.0.1:{server.server_address[1]}/"
        crawl = poisonguard("crawl", site, "--out", str(tmp_path / "crawl"), "--engine", "spark")
        assert crawl.returncode == 2 and "--engine must be local or ray" in crawl.stderr
        assert hits == [] and not (tmp_path / "crawl").exists()
        filtered = poisonguard(
            "filter", str(DEMO_CORPUS), "--out", str(tmp_path / "f"), "--ray-address", "auto"
        )
        assert filtered.returncode == 2 and "--ray-address needs --engine ray" in filtered.stderr
        assert not (tmp_path / "f").exists()
    finally:
        server.shutdown()
