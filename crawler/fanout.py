"""The crawl fan-out on Ray: seeds partitioned by host, one Scrapy process per partition as a Ray
task, their raw shards linked into one crawl's folder and their stats merged (see docs/RAY.md)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from poisonguard.core.files import write_json
from poisonguard.core.ray_cluster import connected, wait_all
from poisonguard.core.urls import host_port_of
from poisonguard.crawler.raw import raw_shards
from poisonguard.crawler.run import STATS_FILE, CrawlError, run_crawl

PARTS_DIR = "_parts"  # under OUT/raw/; "_" keeps it out of the filter's inputs (bookkeeping)


def partition_seeds(seeds: Sequence[str], workers: int) -> list[list[str]]:
    """Seeds grouped by host (host:port), hosts spread over at most `workers` partitions, the busiest
    host first onto the least-loaded partition. A host is never split, so its politeness budgets
    (pages, time, delay, tarpit guard) stay in one Scrapy process."""
    by_host: dict[str, list[str]] = {}
    for seed in seeds:
        try:
            host = host_port_of(seed)
        except ValueError:
            host = seed
        by_host.setdefault(host, []).append(seed)
    parts: list[list[str]] = [[] for _ in range(max(1, workers))]
    for host in sorted(by_host, key=lambda h: (-len(by_host[h]), h)):
        target = min(range(len(parts)), key=lambda k: (len(parts[k]), k))
        parts[target].extend(by_host[host])
    return [p for p in parts if p]


def _crawl_part(seeds: list[str], out_dir: str, cfg: Any, resume: bool) -> tuple[dict[str, Any], str | None]:
    try:
        return run_crawl(seeds, Path(out_dir), cfg, resume=resume), None
    except CrawlError as exc:
        return exc.stats or {}, str(exc)


def merge_crawl_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One crawl's stats from the partitions' stats (hosts are disjoint, counts add up)."""
    merged: dict[str, Any] = {
        "finish_reason": "finished",
        "hosts": {},
        "http_status": {},
        "errors": {},
        "tarpit_hosts": [],
        "tarpit_regions": {},
        "cloaking_probes": {"probed": 0, "failed": 0, "views_differ": [], "results": {}},
    }
    summed = (
        "pages",
        "pages_2xx",
        "bytes",
        "responses_this_run",
        "bytes_this_run",
        "robots_forbidden",
        "dropped_stopped_host",
        "raw_rows",
        "tarpit_pages",
    )
    for key in summed:
        merged[key] = sum(int(p.get(key) or 0) for p in parts)
    for part in parts:
        if part.get("finish_reason") not in (None, "finished"):
            merged["finish_reason"] = part["finish_reason"]  # e.g. closespider_timeout in one process
        for key in ("http_status", "errors"):
            for name, value in (part.get(key) or {}).items():
                merged[key][name] = merged[key].get(name, 0) + value
        merged["hosts"].update(part.get("hosts") or {})
        merged["tarpit_hosts"].extend(part.get("tarpit_hosts") or [])
        merged["tarpit_regions"].update(part.get("tarpit_regions") or {})
        probes = part.get("cloaking_probes") or {}
        merged["cloaking_probes"]["probed"] += probes.get("probed", 0)
        merged["cloaking_probes"]["failed"] += probes.get("failed", 0)
        merged["cloaking_probes"]["views_differ"].extend(probes.get("views_differ") or [])
        merged["cloaking_probes"]["results"].update(probes.get("results") or {})
    merged["tarpit_hosts"] = sorted(merged["tarpit_hosts"])
    merged["cloaking_probes"]["views_differ"] = sorted(merged["cloaking_probes"]["views_differ"])
    times = [p for p in parts if p.get("start_time")]
    merged["start_time"] = min((p["start_time"] for p in times), default=None)
    merged["finish_time"] = max((p["finish_time"] for p in times if p.get("finish_time")), default=None)
    merged["elapsed_s"] = max((p.get("elapsed_s") or 0.0 for p in parts), default=None)
    if parts and "http_status_note" in parts[0]:
        merged["http_status_note"] = parts[0]["http_status_note"]
    return merged


def crawl_ray(
    seeds: list[str],
    out: Path,
    cfg: Any,
    workers: int,
    *,
    resume: bool = False,
    address: str | None = None,
) -> dict[str, Any]:
    """Crawl `seeds` with `workers` Scrapy processes run as Ray tasks, seeds partitioned by host.

    Partition k crawls into OUT/raw/_parts/part-k/ (its own raw shards, log and JOBDIR, so each
    resumes on its own); its shards are then linked into OUT/raw/ as one crawl's ``part-NNNNN``
    shards, in partition order, and the merged stats written to OUT/raw/_crawl_stats.json (only when
    every partition's process ran to its end, as run_crawl's child writes it).
    `cfg` is the crawl section (``PipelineConfig.crawl``). Raises CrawlError like run_crawl when the
    crawl as a whole fetched nothing or a process failed."""
    if not seeds:
        raise CrawlError("no seed URLs to crawl")
    raw_dir = Path(out) / "raw"
    if any(raw_dir.glob("part-*.parquet")) and not resume:
        raise CrawlError(f"{raw_dir} already holds a crawl; use --resume to continue it or another --out")
    parts = partition_seeds(seeds, workers)
    with connected(address, workers) as ray:
        task = ray.remote(num_cpus=1)(_crawl_part)
        refs = [
            task.remote(p, str(raw_dir / PARTS_DIR / f"part-{k:03d}"), cfg, resume)
            for k, p in enumerate(parts)
        ]
        results = wait_all(refs)
    failures = [(k, err, stats) for k, (stats, err) in enumerate(results) if err]
    hard = [(k, err) for k, err, stats in failures if stats.get("pages_2xx") or not stats]
    merged = merge_crawl_stats([stats for stats, _ in results])
    merged["partitions"] = [
        {"seeds": len(p), "hosts": sorted({urlsplit(s).netloc for s in p}), "error": err}
        for p, (_, err) in zip(parts, results, strict=True)
    ]
    for old in raw_dir.glob("part-*.parquet"):
        old.unlink()  # links from an earlier merge; the partitions hold the real shards
    n = 0
    for k in range(len(parts)):
        for shard in raw_shards(raw_dir / PARTS_DIR / f"part-{k:03d}" / "raw"):
            target = raw_dir / f"part-{n:05d}.parquet"
            try:
                os.link(shard, target)
            except OSError:
                shutil.copy2(shard, target)
            n += 1
    # As with run_crawl, the stats file says the crawl ran to its end: not written when a
    # partition's process died without its stats, so that a rerun (nightly) resumes the crawl.
    if all(stats for stats, _ in results):
        write_json(raw_dir / STATS_FILE, merged)
    if hard:
        raise CrawlError("; ".join(f"partition {k}: {err}" for k, err in hard), merged)
    if not merged["pages_2xx"]:
        raise CrawlError(
            "the crawl fetched no page (no 2xx response); check the seeds and robots.txt", merged
        )
    return merged
