"""The Scrapy spider, its raw-shard item pipeline and the tarpit guard's downloader middleware.

The spider records every response as a raw row, follows links within the seeds' hosts, feeds each
HTML page to the tarpit guard, and re-fetches the pages where it pays with a browser user agent (the
cloaking probe: seeds, flagged pages, a sample and the most suspicious pages of each batch, within a
per-host budget; crawler/suspicion.py). It runs inside the crawl's own process (crawler/run.py),
never in the caller's.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from scrapy import Request, Spider, signals
from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, DownloadTimeoutError, IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.linkextractors import LinkExtractor
from twisted.internet.error import TCPTimedOutError, TimeoutError
from twisted.python.failure import Failure

from poisonguard.core.schema import DOCUMENT_SCHEMA
from poisonguard.core.urls import host_port_of
from poisonguard.crawler import cloaking_probe, suspicion
from poisonguard.crawler.config import CrawlConfig
from poisonguard.crawler.raw import KIND_PAGE, KIND_PROBE, RawShardWriter, _extract, is_html
from poisonguard.crawler.tarpit import PageSignal, TarpitGuard

logger = logging.getLogger(__name__)

SLOW_FAILURES = (DownloadTimeoutError, TimeoutError, TCPTimedOutError)
# Added to a page's rank (robust z-scores) where its visible text has instruction phrasing: a tie-breaker
# among pages that already stand out a little, not a reason (one page in ten on the Python docs has it).
INSTRUCTION_BONUS_Z = 1.0
# Added to the rank of the first tarpit-like page of a chain that the tarpit did not claim by the time its
# batch is ranked: a real page cloaked as babble is tarpit-like, but so are a real site's index pages
# (genindex, contents: lists of names, a flat word-frequency head), so it ranks rather than forces a probe.
TARPIT_LIKE_BONUS_Z = 1.0
# Ranked pages traced in the crawl's stats, at most: enough to trace any page of a site crawl, a
# bound on memory and on the stats file in a crawl of millions of pages (later batches go untraced).
RANK_LOG_MAX = 20_000
PROBE_PRIORITY = 100  # a probe runs soon after its page, while the page's own content is still current


class PoisonguardSpider(Spider):
    name = "poisonguard"

    def __init__(
        self,
        seeds: list[str],
        cfg: CrawlConfig,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        prior_hosts: dict[str, dict[str, int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cfg = cfg
        # Pages per host already in raw/ (a resumed crawl): budgets count them when the saved spider
        # state is missing, as after a kill -9.
        self.prior_hosts = prior_hosts or {}
        self.state_lost = False
        self.frontier: set[str] = set()  # stored and re-queued URLs when a killed crawl resumes
        self.seeds = list(seeds)
        self._seed_set = set(self.seeds)
        self.follow = cfg.follow != "none"
        if self.follow:
            # Hostnames, not host:port: OffsiteMiddleware matches hostnames (LinkExtractor's
            # allow_domains would compare host:port and miss links that spell the port differently).
            hosts = {urlsplit(u).hostname or "" for u in self.seeds} | set(cfg.allowed_domains)
            self.allowed_domains = sorted(h for h in hosts if h)
        self.guard = TarpitGuard(cfg)
        # url -> (similarity, baseline or None when one browser view agreed); kept in spider.state so a
        # resumed crawl keeps earlier probes.
        self.probe_results: dict[str, tuple[float, float | None]] = {}
        self.probe_why: dict[str, str] = {}  # url -> what made the spider probe it
        # url -> where it stood when its batch was ranked (rank, score, signals, slots): the crawl's stats
        # report it, so a cloaked page that was not probed can be traced to its rank (the first
        # RANK_LOG_MAX pages ranked; a resumed crawl starts the trace again)
        self.rank_log: dict[str, dict[str, Any]] = {}
        self.vocab: dict[str, suspicion.SiteVocabulary] = {}  # host -> word statistics
        # host -> pages not probed yet as (url, crawler text, its shingles, its number on the host);
        # the most suspicious of each batch are probed within the budget (ranked), the rest forgotten.
        self.batches: dict[str, list[tuple[str, str, frozenset[int], int]]] = {}
        self.site_shingles: dict[str, suspicion.SiteShingles] = {}  # host -> where each 4-gram was seen
        # host -> first tarpit-like pages of a chain in its batch: ranked with a bonus unless the tarpit
        # claims them by the time the batch is ranked
        self.held: dict[str, set[str]] = {}
        # host -> pages probed for a reason (seed, detector, sample, tarpit-like) since its
        # last ranking: they spend the same per-host budget as the ranked probes
        self.reason_probes: dict[str, int] = {}
        self.probe_failures = 0
        self.links = LinkExtractor()
        self.on_progress = on_progress
        self._last_progress = 0.0
        self.probe_detectors: list[ModuleType] = []
        for name in cfg.cloaking_probe_detectors:
            try:
                self.probe_detectors.append(importlib.import_module(f"poisonguard.filters.{name}"))
            except ImportError as exc:
                raise ValueError(
                    f"crawl.cloaking_probe_detectors: no detector module {name!r}: {exc}"
                ) from exc

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> PoisonguardSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._on_idle, signal=signals.spider_idle)
        return spider

    def _link_state(self) -> None:
        # With JOBDIR, the SpiderState extension loads self.state on spider_opened and pickles it when
        # the spider closes. Called from start(), i.e. after every spider_opened handler ran; the state
        # then holds live references, so it is pickled current whatever the close order.
        state = getattr(self, "state", None)
        has_guard = state is not None and isinstance(state.get("guard"), TarpitGuard)
        self.state_lost = bool(self.prior_hosts) and not has_guard
        if state is not None and has_guard:
            self.guard = state["guard"]
            self.guard.cfg = self.cfg
            self.probe_results = state.get("probes", {})
        else:
            self.guard.seed_hosts(self.prior_hosts)
        if state is None:
            return
        state["guard"] = self.guard
        state["probes"] = self.probe_results

    async def start(self) -> AsyncIterator[Any]:
        self._link_state()
        found: list[str] = []
        stored: set[str] = set()
        if self.state_lost:
            # The dupefilter's file may have lost its tail in the kill: stored pages and re-queued
            # links are kept out of the seeds and of later link-following here instead.
            found, stored = self._frontier_from_raw()
            self.frontier = set(found) | stored
        for url in self.seeds:
            # dont_filter=False: on --resume the seeds already fetched are skipped by the dupefilter.
            if url not in stored:
                yield Request(url, callback=self.parse, errback=self.failed)
        for url in found if self.follow else []:
            # The dupefilter has seen these (they were queued when the crawl was killed), so they
            # must bypass it; _frontier_from_raw already removed duplicates and stored pages.
            yield Request(url, callback=self.parse, errback=self.failed, dont_filter=True)

    def _frontier_from_raw(self) -> tuple[list[str], set[str]]:
        """(links of the stored pages that were never fetched, the URLs stored): the queue a kill -9
        lost (Scrapy saves its queue state only when the spider closes), and what not to fetch again."""
        from scrapy.http import HtmlResponse

        from poisonguard.crawler.raw import raw_shards

        shards = raw_shards(Path(self.settings.get("POISONGUARD_RAW_DIR")))
        fetched: set[str] = set()
        for shard in shards:
            urls = pq.read_table(shard, columns=["url", "final_url"])
            fetched.update(urls.column("url").to_pylist(), urls.column("final_url").to_pylist())
        frontier: dict[str, None] = {}
        columns = ["final_url", "status", "html", "content_type", "kind"]
        for shard in shards:  # one shard at a time: bodies are the bulk of raw/
            for r in pq.read_table(shard, columns=columns).to_pylist():
                if r["kind"] != KIND_PAGE or not 200 <= (r["status"] or 0) < 300 or not r["html"]:
                    continue
                if not is_html(r["content_type"], r["html"]) or not self.guard.allows(r["final_url"]):
                    continue
                response = HtmlResponse(r["final_url"], body=r["html"], encoding="utf-8")
                for link in self.links.extract_links(response):
                    if link.url not in fetched and self.guard.allows(link.url):
                        frontier[link.url] = None
        return list(frontier), fetched

    # --- pages --------------------------------------------------------------------------------

    def _row(self, response: Response, kind: str, user_agent: str) -> dict[str, Any]:
        body = response.body
        headers = {
            k.decode("latin-1").lower(): [v.decode("latin-1") for v in vs]
            for k, vs in response.headers.items()
        }
        ctype = response.headers.get(b"Content-Type")
        redirects = response.request.meta.get("redirect_urls") if response.request else None
        return {
            "url": redirects[0] if redirects else response.url,
            "final_url": response.url,
            "status": response.status,
            "headers": json.dumps(headers, ensure_ascii=False),
            "fetched_at": datetime.now(timezone.utc),
            "html_sha256": sha256(body).hexdigest(),
            "html": body,
            "user_agent": user_agent,
            "kind": kind,
            "depth": response.meta.get("depth", 0),
            "content_type": ctype.decode("latin-1") if ctype else None,
            "cloaking_similarity": None,
            "cloaking_baseline": None,
            "tarpit_host": False,
        }

    def parse(self, response: Response) -> Iterator[Any]:
        latency = response.meta.get("download_latency", 0.0)
        host = self.guard.record_response(response.url, response.status, len(response.body), latency)
        row = self._row(response, KIND_PAGE, self.cfg.user_agent)
        ctype = row["content_type"]
        if 200 <= response.status < 300 and not is_html(ctype, response.body):
            # kept in raw/ but never a document (PDF, images...): counted, so nothing goes unsaid
            self.crawler.stats.inc_value("poisonguard/skipped_not_html")
        if 200 <= response.status < 300 and is_html(ctype, response.body):
            text, spans, _, _ = _extract(response.body, ctype)
            links: list[str] = []
            if isinstance(response, TextResponse):
                links = [link.url for link in self.links.extract_links(response)]
            words = suspicion.content_words(text)
            vocab = self.vocab.setdefault(host_port_of(response.url), suspicion.SiteVocabulary())
            coherence = suspicion.coherence(words, vocab, self.cfg.coherence_min_pages)
            vocab.add(words)
            site = self.site_shingles.setdefault(host_port_of(response.url), suspicion.SiteShingles())
            shingles = site.shingles(text)
            page_no = site.add(shingles)
            signal = self.guard.record_page(
                response.url,
                links,
                text,
                seconds=latency,
                parent_chain=response.meta.get("pg_chain", 0),
                incoherent=coherence is not None and coherence < self.cfg.tarpit_max_coherence,
            )
            self.guard.record_child(response.meta.get("pg_parent"), signal.tarpit_like)
            if self.follow and self.guard.allows(response.url):
                yield from self._follow(response.url, links, signal)
            why = self._want_probe(response.url, text, spans, signal)
            if why == "hold":
                self.held.setdefault(host_port_of(response.url), set()).add(response.url)
            if why and why != "hold":
                yield self._start_probe(response.url, text, why)
            elif why != "" and host.probes < self.cfg.cloaking_max_probes_per_host:
                yield from self._rank(host_port_of(response.url), response.url, text, shingles, page_no)
        row["tarpit_host"] = host.tarpit
        yield row
        self._progress()

    def _follow(self, url: str, links: list[str], signal: PageSignal) -> Iterator[Request]:
        limit = self.guard.follow_limit(signal, url)
        for link in links if limit is None else links[:limit]:
            if link in self.frontier:
                continue  # stored, or re-queued, by a resume after a kill
            yield Request(
                link,
                callback=self.parse,
                errback=self.failed,
                meta={"pg_chain": signal.chain, "pg_parent": url},
            )

    def _want_probe(
        self, url: str, text: str, spans: list[tuple[str, str]], signal: PageSignal
    ) -> str | None:
        """Why the page is probed now ("": never; None: it joins its host's ranked batch).

        Now: seeds, pages a crawl-time detector flags, and a random sample. Instruction phrasing in the
        visible text is a ranking signal, not a reason: on some sites (the Python docs) one page in ten
        has it, and probing them all would leave nothing for the rest of the budget.
        "hold": the first tarpit-like page of a chain, ranked with its batch (a bonus) unless the tarpit
        claimed it by then.
        """
        stats = self.guard.host(url)
        if url in self.probe_results or stats.probes >= self.cfg.cloaking_max_probes_per_host:
            return ""
        if self.cfg.cloaking_probe_seeds and url in self._seed_set:
            return "seed"
        if signal.tarpit_like:
            # The first of a chain: a tarpit, or a real page cloaked as babble? Ranked with its batch; by
            # then the tarpit's own pages have usually shown what it is. Deeper ones: the tarpit's.
            first = signal.chain == 1 and self.guard.stopped_region(url) is None
            return "hold" if first else ""
        if self._flagged(url, text, spans):
            return "detector"
        if cloaking_probe.sampled(url, self.cfg.cloaking_sample_rate):
            return "sample"
        return None

    def _start_probe(self, url: str, text: str, why: str) -> Request:
        self.guard.host(url).probes += 1
        if why != "ranked":
            host = host_port_of(url)
            self.reason_probes[host] = self.reason_probes.get(host, 0) + 1
        self.probe_why[url] = why
        return self._probe_request(url, text, None)

    def _rank(
        self,
        host: str,
        url: str,
        text: str,
        shingles: frozenset[int] = frozenset(),
        page_no: int = -1,
        flush: bool = False,
    ) -> Iterator[Request]:
        """Add a page to its host's batch; when the batch is full (or flushed), probe its most suspicious."""
        batch = self.batches.setdefault(host, [])
        if url:
            batch.append((url, text, shingles, page_no))
        if len(batch) < self.cfg.cloaking_rank_batch and not flush:
            return
        held = self.held.pop(host, set())
        if held:  # a held page the tarpit claimed by now is the tarpit's, not a page to probe
            marked = set(self.guard.tarpit_pages())
            batch[:] = [entry for entry in batch if entry[0] not in marked]
        if not batch:
            return
        # The budget is a share of all the pages of this window; pages probed for a reason spent part of it.
        spent = self.reason_probes.pop(host, 0)
        slots = max(0, math.ceil(self.cfg.cloaking_probe_share * (len(batch) + spent)) - spent)
        # Judged now, against every page of the host fetched so far, not only the earlier ones: the
        # pages a babble page borrowed from, and the word statistics, are those of the whole site.
        site, vocab = self.site_shingles[host], self.vocab[host]
        signals = [
            (site.scattered(page_shingles, number), suspicion.injection_fit(page_text, vocab))
            for _, page_text, page_shingles, number in batch
        ]
        scores = suspicion.rank_outliers(signals)
        if self.cfg.cloaking_probe_instructions:
            for j, (_, page_text, _, _) in enumerate(batch):
                if suspicion.instruction(page_text):
                    scores[j] += INSTRUCTION_BONUS_Z
        for j, (page_url, _, _, _) in enumerate(batch):
            if page_url in held:  # tarpit-like, not claimed by the tarpit: a real page cloaked as babble?
                scores[j] += TARPIT_LIKE_BONUS_Z
        order = sorted(range(len(batch)), key=lambda j: -scores[j])
        for rank, j in enumerate(order):
            if len(self.rank_log) >= RANK_LOG_MAX:
                break
            self.rank_log[batch[j][0]] = {
                "rank": rank,
                "score": round(scores[j], 3),
                "signals": [None if v is None else round(v, 4) for v in signals[j]],
                "slots": slots,
                "batch": len(batch),
            }
        for page_url, page_text, _, _ in (batch[j] for j in order[:slots]):
            if self.guard.host(page_url).probes < self.cfg.cloaking_max_probes_per_host:
                yield self._start_probe(page_url, page_text, "tarpit_like" if page_url in held else "ranked")
        batch.clear()

    def _on_idle(self) -> None:
        """Nothing left to fetch: rank every host's last, partial batch and probe its most suspicious."""
        scheduled = 0
        for host in sorted(set(self.batches) | set(self.held)):
            for request in self._rank(host, "", "", flush=True):
                self.crawler.engine.crawl(request)
                scheduled += 1
        if scheduled:
            raise DontCloseSpider

    def _flagged(self, url: str, text: str, spans: list[tuple[str, str]]) -> bool:
        """Whether a crawl-time detector (default config) objects to the page: then it is always probed."""
        if not self.probe_detectors:
            return False
        doc = pa.Table.from_pylist(
            [
                {
                    "id": url,
                    "text": text,
                    "url": url,
                    "source": "crawl",
                    "record": 0,
                    "meta": None,
                    "hidden": [{"channel": c, "text": t} for c, t in spans],
                }
            ],
            schema=DOCUMENT_SCHEMA,
        )
        for module in self.probe_detectors:
            cfg = module.Config()
            columns = module.score(doc, cfg)
            signals_table = pa.table(columns) if columns else pa.table({"_": [None]})
            if any(module.flag(signals_table, cfg)):
                return True
        return False

    # --- cloaking probe -----------------------------------------------------------------------

    def _probe_request(self, url: str, crawler_text: str, first_browser_text: str | None) -> Request:
        return Request(
            url,
            headers={"User-Agent": self.cfg.browser_user_agent},
            dont_filter=True,
            priority=PROBE_PRIORITY,
            callback=self.probed,
            errback=self.probe_failed,
            cb_kwargs={
                "page_url": url,
                "crawler_text": crawler_text,
                "first_browser_text": first_browser_text,
            },
            meta={"pg_probe": True, "depth_reset": True},
        )

    def probed(
        self, response: Response, page_url: str, crawler_text: str, first_browser_text: str | None
    ) -> Iterator[Any]:
        self.guard.record_probe_fetch(
            response.url, len(response.body), response.meta.get("download_latency", 0.0)
        )
        row = self._row(response, KIND_PROBE, self.cfg.browser_user_agent)
        yield row
        text = ""
        if 200 <= response.status < 300 and is_html(row["content_type"], response.body):
            text = _extract(response.body, row["content_type"])[0]
        k, w = self.cfg.shingle_words, self.cfg.cloaking_window_words
        if first_browser_text is None:
            sim = cloaking_probe.view_similarity(crawler_text, text, k, w)
            if sim >= self.cfg.cloaking_confirm_similarity:
                self.probe_results[page_url] = (sim, None)  # the views agree: no churn to measure
            else:
                yield self._probe_request(page_url, crawler_text, text)
            return
        sim = cloaking_probe.view_similarity(crawler_text, first_browser_text, k, w)
        base = cloaking_probe.view_similarity(first_browser_text, text, k, w)
        self.probe_results[page_url] = (sim, base)

    def probe_failed(self, failure: Failure) -> None:
        self.probe_failures += 1
        request = getattr(failure, "request", None)
        logger.info("cloaking probe failed for %s: %s", getattr(request, "url", "?"), failure.value)

    # --- failures and progress ----------------------------------------------------------------

    def failed(self, failure: Failure) -> None:
        if failure.check(IgnoreRequest):
            return  # robots.txt, offsite, a stopped host: counted by their middlewares
        request = getattr(failure, "request", None)
        if request is not None:
            self.guard.record_failure(request.url, slow=bool(failure.check(*SLOW_FAILURES)))

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not force and now - self._last_progress < 1.0):
            return
        self._last_progress = now
        hosts = self.guard.hosts.values()
        self.on_progress(
            {
                "pages": sum(h.pages for h in hosts),
                "bytes": sum(h.bytes for h in hosts),
                "hosts": len(self.guard.hosts),
                "stopped_hosts": sum(1 for h in hosts if h.stopped),
                "probes": len(self.probe_results),
                "queue": self._queue_size(),
            }
        )

    def _queue_size(self) -> int | None:
        """Requests waiting in Scrapy's scheduler (None when the engine does not say)."""
        engine = getattr(getattr(self, "crawler", None), "engine", None)
        scheduler = getattr(engine, "scheduler", None)
        try:
            return len(scheduler) if scheduler is not None else None
        except TypeError:
            return None


class RawPipeline:
    """Item pipeline: raw rows -> OUT/raw/ shards, flushed by row count and by time."""

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.writer = RawShardWriter(
            Path(settings["POISONGUARD_RAW_DIR"]), settings.getint("POISONGUARD_SHARD_ROWS")
        )
        self.flush_s = settings.getfloat("POISONGUARD_FLUSH_S")
        self._last_flush = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RawPipeline:
        return cls(crawler)

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        self.writer.add(item)
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value("poisonguard/raw_rows")
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            self.writer.flush()
            self._last_flush = now
        return item

    def close_spider(self) -> None:
        self.writer.flush()


class TarpitMiddleware:
    """Downloader middleware: drops queued requests to hosts the tarpit guard has stopped."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TarpitMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        spider = self.crawler.spider
        if request.meta.get("pg_probe") or not isinstance(spider, PoisonguardSpider):
            return
        if not spider.guard.allows(request.url):
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("poisonguard/dropped_stopped_host")
            raise IgnoreRequest(
                f"tarpit guard stopped {host_port_of(request.url)}: {spider.guard.why_stopped(request.url)}"
            )


class GuardedDownloadHandler(HTTP11DownloadHandler):
    """HTTP(S) download handler that asks the tarpit guard again right before a request goes out.

    Scrapy hands up to CONCURRENT_REQUESTS requests to the downloader at once, through the downloader
    middlewares, where they wait in per-host queues; a region the guard stops meanwhile (a tarpit
    answering each request after a drip delay) would still get all of them. Checked here, at the
    moment of sending, they are dropped instead.
    """

    async def download_request(self, request: Request) -> Response:
        spider = self._crawler.spider
        if not request.meta.get("pg_probe") and isinstance(spider, PoisonguardSpider):
            if not spider.guard.allows(request.url):
                if self._crawler.stats is not None:
                    self._crawler.stats.inc_value("poisonguard/dropped_stopped_host")
                raise IgnoreRequest(
                    f"tarpit guard stopped {host_port_of(request.url)}: "
                    f"{spider.guard.why_stopped(request.url)}"
                )
        return await super().download_request(request)
