"""The crawler under faults: a killed parent, a resumed budget, hostile sitemaps (issue #15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from poisonguard.crawler.config import CrawlConfig
from poisonguard.crawler.raw import KIND_PAGE, fetched_by_host, read_raw
from poisonguard.crawler.run import run_crawl, sitemap_urls

sys.path.insert(0, str(Path(__file__).parent))
import servers  # noqa: E402 (test helper next to this file)

FAST = {"autothrottle": False, "retry_times": 0, "ttlb_limit_s": 3.0, "host_max_slow": 2, "max_time_s": 120}
NO_PROBES = {"cloaking_sample_rate": 0.0, "cloaking_probe_detectors": [], "cloaking_probe_seeds": False}


def _urlset(urls: list[str]) -> bytes:
    items = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</urlset>'.encode()


def _index(locs: list[str]) -> bytes:
    items = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in locs)
    return (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{items}</sitemapindex>"
    ).encode()


@pytest.mark.timeout(60)
def test_sitemap_index_follows_only_http_sitemaps_on_its_own_host(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)  # reading it would block for ever
    local = tmp_path / "local.xml"
    local.write_bytes(_urlset(["http://local.example/secret"]))
    holder: dict[str, str] = {}

    def route(h: BaseHTTPRequestHandler) -> None:
        base = holder["base"]
        if h.path == "/index.xml":
            locs = [
                str(fifo),
                str(local),
                f"file://{local}",
                "http://other.example/s.xml",
                f"{base}/pages.xml",
            ]
            servers.send(h, 200, _index(locs), "application/xml")
        elif h.path == "/pages.xml":
            servers.send(h, 200, _urlset([f"{base}/a", "http://elsewhere.example/b"]), "application/xml")
        else:
            servers.send(h, 404, b"")

    with servers.TestServer(route) as site:
        holder["base"] = site.base
        got = sitemap_urls(site.base + "/index.xml")
    assert got == [site.base + "/a"]


def _pages_route(h: BaseHTTPRequestHandler) -> None:
    """An endless site: every page links to ten more; a PDF and an image among them."""
    path = h.path.split("?", 1)[0]
    if path == "/robots.txt":
        servers.send(h, 200, b"User-agent: *\n", "text/plain")
    elif path.startswith("/doc-"):  # no .pdf suffix: Scrapy's link extractor skips those
        servers.send(h, 200, b"%PDF-1.4 not really", "application/pdf")
    elif path.startswith("/pic-"):
        servers.send(h, 200, b"\x89PNG\r\n\x1a\n", "image/png")
    else:
        n = int(path.strip("/").split("-")[-1] or 0) if path != "/" else 0
        links = "".join(f'<a href="/p-{n * 10 + i}">page {n * 10 + i}</a>' for i in range(1, 11))
        links = f'<a href="/doc-{n}">pdf</a><a href="/pic-{n}">png</a>' + links
        servers.send(h, 200, servers.page(f"Page {n}", links).encode())


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_killed_crawl_takes_its_child_along_and_resume_keeps_the_page_budget(tmp_path: Path) -> None:
    with servers.TestServer(_pages_route) as site:
        cfg = CrawlConfig(
            **FAST, **NO_PROBES, max_pages=40, concurrent_requests=4, download_delay_s=0.05, raw_flush_s=0.2
        )
        cfg = cfg.model_copy(update={"raw_shard_rows": 5})
        script = (
            "import sys; from pathlib import Path; from poisonguard.crawler.run import run_crawl; "
            "from poisonguard.crawler.config import CrawlConfig; "
            "run_crawl([sys.argv[1]], Path(sys.argv[2]), CrawlConfig.model_validate_json(sys.argv[3]))"
        )
        parent = subprocess.Popen(
            [sys.executable, "-c", script, site.base + "/", str(tmp_path), cfg.model_dump_json()]
        )
        deadline = time.time() + 60
        while (
            time.time() < deadline
            and sum(h["pages"] for h in fetched_by_host(tmp_path / "raw").values()) < 10
        ):
            time.sleep(0.2)
        children = _children(parent.pid)
        assert children, "the crawl's child process did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        time.sleep(2)
        assert not any(_alive(c) for c in children), "the Scrapy child outlived its killed parent"
        before = sum(h["pages"] for h in fetched_by_host(tmp_path / "raw").values())
        assert 0 < before < cfg.max_pages
        stats = run_crawl([site.base + "/"], tmp_path, cfg, resume=True)
    raw = read_raw(tmp_path / "raw")
    pages = [k for k in raw.column("kind").to_pylist() if k == KIND_PAGE]
    # The lost queue was rebuilt and the budget holds, give or take the responses in flight when
    # Scrapy closes the spider (at most concurrent_requests; the same for a crawl never killed).
    assert before < len(pages) <= cfg.max_pages + cfg.concurrent_requests
    assert stats["resumed"] and stats["finish_reason"] == "closespider_pagecount"
    stored = [
        u
        for u, k in zip(raw.column("final_url").to_pylist(), raw.column("kind").to_pylist(), strict=True)
        if k == KIND_PAGE
    ]
    again = sorted({u for u in stored if stored.count(u) > 1})
    assert not again, again  # nothing stored before the kill was fetched again


@pytest.mark.slow
def test_non_html_pages_are_counted_as_skipped(tmp_path: Path) -> None:
    with servers.TestServer(_pages_route) as site:
        cfg = CrawlConfig(**FAST, **NO_PROBES, max_pages=12, concurrent_requests_per_host=1)
        stats = run_crawl([site.base + "/"], tmp_path, cfg)
    raw = read_raw(tmp_path / "raw")
    types = [t or "" for t in raw.column("content_type").to_pylist()]
    not_html = sum(1 for t in types if "html" not in t)
    assert not_html >= 1 and stats["skipped_not_html"] == not_html
