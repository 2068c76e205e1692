"""Run a crawl: seeds in, OUT/raw/ shards and crawl stats out, Scrapy in a child process.

Twisted's reactor cannot be restarted in a process, so every crawl runs in a fresh Python process
(``python -m poisonguard.crawler.run JOB.json``) through ``AsyncCrawlerProcess``. The child writes
one JSON line per progress update on stdout, Scrapy's log to OUT/raw/_crawl.log and, when the crawl
ends, its stats to OUT/raw/_crawl_stats.json. Files under OUT/raw/ whose names start with ``_`` are
the crawl's bookkeeping (the JOBDIR for ``--resume`` is OUT/raw/_job/); shards are ``part-*.parquet``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from poisonguard.crawler.cloaking_probe import relative_similarity
from poisonguard.crawler.config import CrawlConfig
from poisonguard.crawler.raw import fetched_by_host

STATS_FILE = "_crawl_stats.json"
LOG_FILE = "_crawl.log"
JOB_DIR = "_job"
# Finish reasons of a crawl that ended as planned (Scrapy's own names).
OK_FINISH = {"finished", "closespider_pagecount", "closespider_timeout", "closespider_itemcount"}
MAX_SITEMAPS = 50  # sitemap indexes may nest; a bounded walk keeps a hostile index from looping
MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemaps.org limit for one (uncompressed) file
PR_SET_PDEATHSIG = 1  # prctl(2)


class CrawlError(RuntimeError):
    """A crawl that failed, fetched nothing or ended on an error; ``stats`` holds what is known."""

    def __init__(self, message: str, stats: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.stats = stats or {}


# --- seeds -----------------------------------------------------------------------------------------


def _check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{where}: not an http(s) URL: {url!r}")
    return url


def _read_sitemap(location: str, user_agent: str) -> bytes:
    if urlsplit(location).scheme in ("http", "https"):
        req = urllib.request.Request(location, headers={"User-Agent": user_agent})
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (http(s) checked above)
            data = resp.read(MAX_SITEMAP_BYTES + 1)
    else:
        path = Path(location)
        if not path.is_file():  # a FIFO or device would block or never end
            raise ValueError("not a regular file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_SITEMAP_BYTES + 1)
    if data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            data = gz.read(MAX_SITEMAP_BYTES + 1)
    if len(data) > MAX_SITEMAP_BYTES:
        raise ValueError(f"{location}: sitemap larger than {MAX_SITEMAP_BYTES} bytes")
    return data


def sitemap_urls(location: str, user_agent: str | None = None) -> list[str]:
    """Page URLs of a sitemap (URL or file), following sitemap indexes up to MAX_SITEMAPS files."""
    from scrapy.utils.sitemap import Sitemap

    agent = user_agent or CrawlConfig().user_agent
    todo: list[str] = [location]
    seen: set[str] = set()
    pages: list[str] = []
    while todo and len(seen) < MAX_SITEMAPS:
        loc = todo.pop(0)
        if loc in seen:
            continue
        seen.add(loc)
        try:
            body = _read_sitemap(loc, agent)
            sitemap = Sitemap(body)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{loc}: cannot read sitemap: {exc}") from exc
        locs = [entry["loc"] for entry in sitemap if entry.get("loc")]
        if sitemap.type == "sitemapindex":
            # Only http(s) sitemaps on the index's own site: an index never makes us read a local
            # file (a FIFO would hang the crawl) or another site's URLs.
            todo.extend(u for u in locs if _same_site(u, loc))
        else:
            pages.extend(_check_url(u, loc) for u in locs if _same_site(u, loc))
    return pages


def _same_site(url: str, sitemap: str) -> bool:
    """An http(s) URL on the sitemap's host (any http(s) URL for a sitemap read from a local file)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    origin = urlsplit(sitemap)
    if origin.scheme not in ("http", "https"):
        return True
    return parts.hostname == origin.hostname


def load_seeds(args: list[str], seeds_file: Path | None, sitemap: str | None) -> list[str]:
    """Seed URLs from the command line, a file (one URL a line, ``#`` comments) and a sitemap, in order,
    without repeats; a bad URL raises ValueError naming the file and line."""
    seeds = [_check_url(u, "command line") for u in args]
    if seeds_file is not None:
        try:
            lines = Path(seeds_file).read_text("utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"{seeds_file}: cannot read seeds file: {exc.strerror or exc}") from exc
        for number, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                seeds.append(_check_url(line, f"{seeds_file}:{number}"))
    if sitemap:
        seeds.extend(sitemap_urls(sitemap))
    return list(dict.fromkeys(seeds))


# --- parent side -----------------------------------------------------------------------------------


def run_crawl(
    seeds: list[str],
    out_dir: Path,
    cfg: CrawlConfig,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Crawl ``seeds`` into ``out_dir``/raw/ in a child process; returns the crawl stats.

    Raises CrawlError (with the stats known so far) when the child fails, when the crawl fetched no
    2xx page, or when it ended for another reason than the planned ones (OK_FINISH).
    """
    if not seeds:
        raise CrawlError("no seed URLs to crawl")
    raw_dir = Path(out_dir) / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    has_shards = any(raw_dir.glob("part-*.parquet"))
    if has_shards and not resume:
        raise CrawlError(f"{raw_dir} already holds a crawl; use --resume to continue it or another --out")
    if not resume:
        shutil.rmtree(raw_dir / JOB_DIR, ignore_errors=True)
    (raw_dir / STATS_FILE).unlink(missing_ok=True)
    # A resumed crawl spends what is left of its budgets: pages stored by the earlier part count.
    prior = fetched_by_host(raw_dir) if resume else {}
    done = sum(h["pages"] for h in prior.values())
    if cfg.max_pages and done >= cfg.max_pages:
        return _stats_from_raw(raw_dir, prior)
    job = {
        "seeds": list(seeds),
        "raw_dir": str(raw_dir),
        "cfg": cfg.model_dump(mode="json"),
        "resume": resume,
        "pages_done": done,
        "prior_hosts": prior,
        "parent_pid": os.getpid(),
    }
    job_path = raw_dir / "_job.json"
    job_path.write_text(json.dumps(job), "utf-8")
    cmd = [sys.executable, "-m", "poisonguard.crawler.run", str(job_path)]
    with open(raw_dir / "_child.err", "wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=_die_with_parent(os.getpid())
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if progress is not None and line.startswith("{"):
                try:
                    progress(json.loads(line))
                except json.JSONDecodeError:
                    pass
        rc = proc.wait()
    stats: dict[str, Any] = {}
    if (raw_dir / STATS_FILE).exists():
        stats = json.loads((raw_dir / STATS_FILE).read_text("utf-8"))
    if rc != 0:
        tail = (raw_dir / "_child.err").read_text("utf-8", errors="replace")[-2000:]
        raise CrawlError(f"crawl process exited with status {rc}; see {raw_dir / LOG_FILE}\n{tail}", stats)
    if not stats:
        raise CrawlError(f"crawl process wrote no stats ({raw_dir / STATS_FILE}); see {raw_dir / LOG_FILE}")
    if stats.get("finish_reason") not in OK_FINISH:
        raise CrawlError(f"crawl ended on {stats.get('finish_reason')!r}; see {raw_dir / LOG_FILE}", stats)
    if not stats.get("pages_2xx"):
        raise CrawlError("the crawl fetched no page (no 2xx response); check the seeds and robots.txt", stats)
    return stats


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """For Popen: the child gets SIGKILL when this process dies, however it dies (Linux), so a killed
    crawl never leaves Scrapy writing into OUT/raw behind it."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def _stats_from_raw(raw_dir: Path, prior: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Stats of a crawl whose page budget the stored pages already spend (nothing left to fetch)."""
    return {
        "finish_reason": "closespider_pagecount",
        "pages": sum(h["pages"] for h in prior.values()),
        "pages_2xx": sum(h["ok"] for h in prior.values()),
        "bytes": sum(h["bytes"] for h in prior.values()),
        "resumed": True,
        "note": "the stored pages already spend crawl.max_pages; nothing was fetched",
        "raw_shards": len(list(raw_dir.glob("part-*.parquet"))),
    }


# --- child side ------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def summarize(scrapy_stats: dict[str, Any], spider: Any, min_relative: float) -> dict[str, Any]:
    """The crawl stats run_crawl returns, from Scrapy's stats and the spider's guard and probes."""
    errors: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for key, value in scrapy_stats.items():
        if key.startswith("downloader/exception_type_count/") and not key.endswith("IgnoreRequest"):
            errors[key.rsplit("/", 1)[1].rsplit(".", 1)[-1]] = value
        elif key.startswith("spider_exceptions/"):
            errors["spider:" + key.split("/", 1)[1]] = value
        elif key.startswith("downloader/response_status_count/"):
            statuses[key.rsplit("/", 1)[1]] = value
    hosts = spider.guard.budget_report()
    probes = {
        url: {
            "similarity": round(s, 4),
            "baseline": None if b is None else round(b, 4),
            "why": spider.probe_why.get(url),
        }
        for url, (s, b) in spider.probe_results.items()
    }
    return {
        "finish_reason": scrapy_stats.get("finish_reason"),
        "pages": sum(h["pages"] for h in hosts.values()),
        "pages_2xx": sum(h["ok"] for h in hosts.values()),
        "bytes": sum(h["bytes"] for h in hosts.values()),
        "http_status_note": "http_status counts every response this run, cloaking probes included",
        "responses_this_run": scrapy_stats.get("response_received_count", 0),
        "bytes_this_run": scrapy_stats.get("downloader/response_bytes", 0),
        "http_status": statuses,
        "errors": errors,
        "robots_forbidden": scrapy_stats.get("robotstxt/forbidden", 0),
        "dropped_stopped_host": scrapy_stats.get("poisonguard/dropped_stopped_host", 0),
        "skipped_not_html": scrapy_stats.get("poisonguard/skipped_not_html", 0),
        "raw_rows": scrapy_stats.get("poisonguard/raw_rows", 0),
        "elapsed_s": scrapy_stats.get("elapsed_time_seconds"),
        "start_time": scrapy_stats.get("start_time"),
        "finish_time": scrapy_stats.get("finish_time"),
        "hosts": hosts,
        "tarpit_hosts": spider.guard.tarpit_hosts(),
        "tarpit_regions": spider.guard.tarpit_regions(),
        "tarpit_pages": len(spider.guard.tarpit_pages()),
        "cloaking_probes": {
            "probed": len(probes),
            "failed": spider.probe_failures,
            "views_differ": sorted(
                u
                for u, (sim, base) in spider.probe_results.items()
                if (relative_similarity(sim, base) or 0.0) < min_relative
            ),
            "results": probes,
            "ranks": getattr(spider, "rank_log", {}),
        },
    }


def _child(job_path: Path) -> int:
    from scrapy.crawler import AsyncCrawlerProcess

    from poisonguard.crawler.raw import apply_crawl_results
    from poisonguard.crawler.spider import (
        GuardedDownloadHandler,
        PoisonguardSpider,
        RawPipeline,
        TarpitMiddleware,
    )
    from poisonguard.filters.cloaking import Config as CloakingFilterConfig

    job = json.loads(job_path.read_text("utf-8"))
    cfg = CrawlConfig.model_validate(job["cfg"])
    raw_dir = Path(job["raw_dir"])
    settings = cfg.scrapy_settings()
    settings.update(
        {
            "ITEM_PIPELINES": {f"{RawPipeline.__module__}.{RawPipeline.__name__}": 300},
            "DOWNLOADER_MIDDLEWARES": {f"{TarpitMiddleware.__module__}.{TarpitMiddleware.__name__}": 50},
            # The guard is asked again when a queued request is sent (a region stopped meanwhile).
            "DOWNLOAD_HANDLERS": {
                scheme: f"{GuardedDownloadHandler.__module__}.{GuardedDownloadHandler.__name__}"
                for scheme in ("http", "https")
            },
            "JOBDIR": str(raw_dir / JOB_DIR),
            "LOG_FILE": str(raw_dir / LOG_FILE),
            "LOG_FILE_APPEND": True,
            "POISONGUARD_RAW_DIR": str(raw_dir),
            "POISONGUARD_SHARD_ROWS": cfg.raw_shard_rows,
            "POISONGUARD_FLUSH_S": cfg.raw_flush_s,
        }
    )
    if cfg.max_pages:  # what the earlier part of a resumed crawl left of the budget
        settings["CLOSESPIDER_PAGECOUNT"] = max(cfg.max_pages - int(job.get("pages_done", 0)), 1)

    def emit(update: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(update) + "\n")
        sys.stdout.flush()

    process = AsyncCrawlerProcess(settings)
    crawler = process.create_crawler(PoisonguardSpider)
    process.crawl(crawler, seeds=job["seeds"], cfg=cfg, on_progress=emit, prior_hosts=job.get("prior_hosts"))
    process.start()
    spider = crawler.spider
    if not isinstance(spider, PoisonguardSpider) or crawler.stats is None:
        return 1
    stats = summarize(crawler.stats.get_stats(), spider, CloakingFilterConfig().min_relative_similarity)
    stats["resumed"] = bool(job.get("resume"))
    stats["raw_rows_updated"] = apply_crawl_results(
        raw_dir, spider.guard.tarpit_hosts(), spider.probe_results, spider.guard.tarpit_pages()
    )
    stats["raw_shards"] = len(list(raw_dir.glob("part-*.parquet")))
    tmp = raw_dir / (STATS_FILE + ".tmp")
    tmp.write_text(json.dumps(_jsonable(stats), indent=1, sort_keys=True), "utf-8")
    tmp.replace(raw_dir / STATS_FILE)
    spider._progress(force=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write(
            "usage: python -m poisonguard.crawler.run JOB.json (run_crawl writes the job file)\n"
        )
        sys.exit(2)
    sys.exit(_child(Path(sys.argv[1])))
