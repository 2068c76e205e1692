"""Crawl speed: poisonguard's crawl against a bare Scrapy spider that only follows links.

The site is the Python 3.11 HTML documentation from the bench cache (`make bench-data`, Debian
python3.11-doc, ~530 pages) served by ``python3 -m http.server`` on 127.0.0.1. Both crawlers run in
their own process with the same Scrapy settings (poisonguard's profile with AutoThrottle off, so the
numbers measure the crawler, not the politeness delay); runs alternate and the best of ``--rounds``
is kept. Each crawl stops after ``--pages`` responses (the docs also link their .txt sources, so
the full site is ~1100 responses). CPU time is the crawl process's user+system time. The
poisonguard crawl includes its cloaking probes (two extra fetches per probed page), the tarpit
guard, the HTML pass per page and the raw shards. Last, the HTML pass alone
(crawler.html.extract) over the fetched pages.

    python -m bench.bench_crawl [--rounds 1] [--pages 400] [--per-host 8]

Prints a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from poisonguard.crawler.config import CrawlConfig


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_child(seed: str, cfg_json: str, out_json: str) -> None:
    """The baseline: the same settings, a spider whose parse only yields the page's links."""
    from scrapy import Request, Spider
    from scrapy.crawler import AsyncCrawlerProcess
    from scrapy.linkextractors import LinkExtractor

    cfg = CrawlConfig.model_validate_json(cfg_json)
    links = LinkExtractor()

    class BareSpider(Spider):
        name = "bare"
        allowed_domains = ["127.0.0.1"]

        async def start(self) -> Any:
            yield Request(seed, callback=self.parse)

        def parse(self, response: Any) -> Any:
            if hasattr(response, "text"):
                for link in links.extract_links(response):
                    yield Request(link.url, callback=self.parse)

    settings = cfg.scrapy_settings()
    settings["LOG_LEVEL"] = "WARNING"
    process = AsyncCrawlerProcess(settings)
    crawler = process.create_crawler(BareSpider)
    process.crawl(crawler)
    process.start()
    stats = crawler.stats.get_stats() if crawler.stats else {}
    Path(out_json).write_text(
        json.dumps(
            {"pages": stats.get("response_received_count", 0), "elapsed": stats.get("elapsed_time_seconds")}
        )
    )


def run_bare(seed: str, cfg: CrawlConfig) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bare.json"
        cpu, t = _cpu_children(), time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_crawl",
                "--bare-child",
                seed,
                cfg.model_dump_json(),
                str(out),
            ],
            check=True,
        )
        wall, cpu = time.perf_counter() - t, _cpu_children() - cpu
        data = json.loads(out.read_text())
    return {
        "pages": data["pages"],
        "wall": wall,
        "cpu": cpu,
        "crawl": data["elapsed"],
        "fetches": data["pages"],
    }


def run_poisonguard(seed: str, cfg: CrawlConfig, out: Path) -> dict[str, float]:
    from poisonguard.crawler.run import run_crawl

    cpu, t = _cpu_children(), time.perf_counter()
    stats = run_crawl([seed], out, cfg)
    wall, cpu = time.perf_counter() - t, _cpu_children() - cpu
    probes = stats["cloaking_probes"]["probed"]
    # robots.txt is a response too in the bare spider's count; keep the two counts comparable.
    return {
        "pages": stats["responses_this_run"],
        "wall": wall,
        "cpu": cpu,
        "crawl": stats["elapsed_s"],
        "fetches": stats["responses_this_run"],
        "probes": probes,
        "tarpit_hosts": len(stats["tarpit_hosts"]),
    }


def html_pass(out: Path) -> tuple[int, float]:
    from poisonguard.crawler.html import extract
    from poisonguard.crawler.raw import KIND_PAGE, is_html, read_raw

    raw = read_raw(out / "raw").to_pylist()
    pages = [
        r
        for r in raw
        if r["kind"] == KIND_PAGE and r["status"] == 200 and is_html(r["content_type"], r["html"])
    ]
    t = time.perf_counter()
    for r in pages:
        extract(r["html"], r["content_type"])
    return len(pages), time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pages", type=int, default=400, help="stop each crawl after this many responses")
    parser.add_argument("--per-host", type=int, default=8, help="concurrent requests per host, both crawlers")
    parser.add_argument("--bare-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        bare_child(*args.bare_child)
        return
    from bench.corpus import python_docs_dir

    # A SIGTERM (a timeout) unwinds through `finally`, so the http.server child is not left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    docs = python_docs_dir()
    n_html = sum(1 for _ in docs.rglob("*.html"))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(docs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):  # wait until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        seed = f"http://127.0.0.1:{port}/index.html"
        cfg = CrawlConfig(
            autothrottle=False,
            concurrent_requests_per_host=args.per_host,
            max_pages=args.pages,
            max_time_s=240,
            depth_limit=0,
            log_level="WARNING",
        )
        bare: list[dict[str, float]] = []
        pg: list[dict[str, float]] = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.rounds):
                bare.append(run_bare(seed, cfg))
                pg.append(run_poisonguard(seed, cfg, Path(tmp) / f"pg{i}"))
            n_pages, seconds = html_pass(Path(tmp) / "pg0")
    finally:
        server.terminate()
        server.wait()
    b = min(bare, key=lambda r: r["wall"])
    p = min(pg, key=lambda r: r["wall"])
    print(
        f"Site: Python 3.11 docs ({n_html} HTML files) via http.server on 127.0.0.1; "
        f"{args.per_host} requests per host, AutoThrottle off; best of {args.rounds} alternating rounds.\n"
    )
    print("| crawler | responses | wall s (process) | crawl s (Scrapy) | pages/s | CPU s | CPU ms/page |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in (("bare Scrapy spider (links only)", b), ("poisonguard crawl", p)):
        print(
            f"| {name} | {r['pages']:.0f} | {r['wall']:.1f} | {r['crawl']:.1f} | "
            f"{r['pages'] / r['wall']:.1f} | {r['cpu']:.1f} | {1000 * r['cpu'] / max(r['pages'], 1):.1f} |"
        )
    print(
        f"\npoisonguard / bare: wall {p['wall'] / b['wall']:.2f}x, CPU {p['cpu'] / b['cpu']:.2f}x "
        f"(goal <= 1.3x); poisonguard responses include {p['probes']:.0f} cloaking probes "
        f"(x2 fetches); tarpit hosts: {p['tarpit_hosts']:.0f}."
    )
    print("\n| HTML pass (crawler.html.extract) | pages | seconds | pages/s |")
    print("|---|---:|---:|---:|")
    print(f"| fetched 200 pages | {n_pages} | {seconds:.2f} | {n_pages / seconds:.0f} |")


if __name__ == "__main__":
    main()
