"""Tarpit guard (docs/THREATS.md P-TARPIT): per-host budgets, per-region tarpit verdicts.

Tarpits and labyrinths (Nepenthes, iocaine, Cloudflare AI Labyrinth) serve endless generated pages
whose links point ever deeper into one path, often with random slugs, filled with babble, sometimes
drip-fed; they are also planted inside real sites, under one path. A page is tarpit-like when most
of its links go deeper to random-looking slugs, when its text is babble (word salad, or incoherent
text: crawler/suspicion.py), or when it came seconds later than the host's usual page (a drip delay).

Budgets (pages, bytes) stop following a host and accuse nobody. Tarpit verdicts apply to a region:
the shortest path prefix (/, /a/, /a/b/) whose pages are mostly tarpit-like or whose requests mostly
time out; links into a stopped region are dropped, and only a region at the root makes the whole host
a tarpit. A tarpit that shares its prefix with real pages is bounded by the link chain: a tarpit-like
page reached through a tarpit-like page has none of its links followed, and a tarpit-like page only a
few. At the end of the crawl the pages of the tarpit are marked (``cloaking:tarpit_host``): tarpit-like
pages in a stopped region, in a tarpit-like chain, or in a mostly tarpit-like region below the root that
the chain limits kept under the stop count; the real pages of the same host are kept.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from poisonguard.core.urls import host_port_of
from poisonguard.crawler.config import CrawlConfig

_VOWELS = set("aeiouyAEIOUY")
_TOKEN_SPLIT = re.compile(r"[-_.~+%]+")
_WORD = re.compile(r"\w+", re.UNICODE)
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{5,}")  # lower case: acronyms (HTTPS) pass
_HEX = re.compile(r"^[0-9a-f]{12,}$")


def random_looking(token: str) -> bool:
    """True for slug tokens that read like machine output ("Ez3ZCy", "xkqwtrp", "a9f3c2"), not words.

    Heuristics, each seen in tarpit generators: letters mixed with digits inside the token, case
    changes inside a lower/upper run, no vowel in a long token, a long consonant run, long hex.
    Plain words, numbers, dates and version strings pass.
    """
    if len(token) < 5:
        return False
    if token.isdigit():
        return False
    if _HEX.match(token) and any(c.isalpha() for c in token):
        return True
    letters = [c for c in token if c.isalpha()]
    digits = sum(c.isdigit() for c in token)
    if letters and digits and not re.fullmatch(r"[A-Za-z]+\d{1,4}|\d{1,4}[A-Za-z]{1,3}", token):
        return True
    # Case flips after the first character (CamelCase words have few; random strings have many).
    flips = sum(
        1
        for a, b in zip(token[1:], token[2:], strict=False)
        if a.isalpha() and b.isalpha() and a.isupper() != b.isupper()
    )
    if flips >= 3:
        return True
    if letters and not any(c in _VOWELS for c in letters):
        return True
    return bool(_CONSONANT_RUN.search(token))


def random_slug(path: str) -> bool:
    """Whether the last non-empty segment of a URL path looks generated."""
    segments = [s for s in path.split("/") if s]
    if not segments:
        return False
    last = segments[-1].rsplit(".", 1)[0] if "." in segments[-1] else segments[-1]
    return any(random_looking(t) for t in _TOKEN_SPLIT.split(last) if t)


def _directory(path: str) -> str:
    return path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"


def deep_random_share(page_url: str, links: list[str]) -> tuple[float, int]:
    """(share of same-host links that lead below the page's own path to a random-looking slug, n links)."""
    page = urlsplit(page_url)
    base = _directory(page.path or "/")
    same = [urlsplit(u) for u in links]
    same = [u for u in same if u.netloc.lower() == page.netloc.lower()]
    if not same:
        return 0.0, 0
    deep = sum(1 for u in same if u.path.startswith(base) and len(u.path) > len(base) and random_slug(u.path))
    return deep / len(same), len(same)


def babble_score(text: str) -> float | None:
    """How babble-like a page's visible text is, 0..1; None when the text is too short to say.

    Two language-agnostic signs, the larger wins: the share of word tokens that look machine-made
    (random strings), and how far the ten most frequent words fall short of covering ~20% of the
    words, as they do in natural text of any language (Zipf's law; word salad drawn evenly from a
    vocabulary has no such head). Markov babble built from real text keeps the head and passes:
    it is the perplexity detector's job (docs/THREATS.md, perplexity band).
    """
    words = [w for w in _WORD.findall(text) if not w.isdigit()]  # numbers (tables, dates) are not words
    if len(words) < 120:
        return None
    gib = sum(1 for w in words if random_looking(w)) / len(words)
    counts = Counter(w.lower() for w in words)
    top10 = sum(c for _, c in counts.most_common(10)) / len(words)
    flat = max(0.0, min(1.0, (0.20 - top10) / 0.12))
    return max(gib / 0.3 if gib < 0.3 else 1.0, flat)


def region_prefixes(url: str, max_segments: int) -> list[str]:
    """The directory prefixes of a URL's path, shortest first: "/a/b/c.html" -> ["/", "/a/", "/a/b/"]."""
    path = urlsplit(url).path or "/"
    directory = _directory(path)
    segments = [s for s in directory.split("/") if s][:max_segments]
    return ["/"] + ["/" + "/".join(segments[: i + 1]) + "/" for i in range(len(segments))]


LATENCY_WINDOW = 256  # recent pages per host whose median latency is the host's usual one
MIN_LATENCIES = 5  # pages of a host fetched before a page can be judged drip-slow


@dataclass
class HostStats:
    pages: int = 0  # crawler fetches (any status); cloaking probe fetches are not pages
    ok: int = 0  # of which 2xx
    bytes: int = 0  # crawler and probe bodies
    seconds: float = 0.0  # download time (latency) spent on the host
    slow: int = 0  # responses cancelled at the time-to-last-byte limit
    errors: int = 0
    tarpit_like: int = 0
    deep_link_pages: int = 0
    babble_pages: int = 0
    slow_pages: int = 0  # pages served far slower than the host's usual pages (a drip delay)
    probes: int = 0  # pages sent to the cloaking probe (browser fetches)
    stopped: str | None = None  # why the guard stopped following the host
    tarpit: bool = False  # the whole host behaves like a tarpit (its root region was stopped on a signal)


@dataclass
class RegionStats:
    """One path prefix of one host ("/", "/gen/", "/gen/x/"): the unit of the tarpit verdict."""

    pages: int = 0
    tarpit_like: int = 0
    slow: int = 0  # requests into the region cancelled at the time-to-last-byte limit
    stopped: str | None = None  # why: a region is stopped only on tarpit signals


@dataclass
class PageSignal:
    deep_share: float
    links: int
    babble: float | None
    tarpit_like: bool
    slow: bool = False
    chain: int = 0  # tarpit-like pages on the link path to this one, itself included


@dataclass
class PageRecord:
    """What the guard remembers of a fetched page to mark it at the end of the crawl."""

    tarpit_like: bool
    parent_tarpit_like: bool
    tarpit_children: int = 0


@dataclass
class TarpitGuard:
    """Per-host budgets and per-region tarpit verdicts.

    Budgets (pages, bytes) apply to a host and accuse nobody. Tarpit verdicts apply to the region of
    the link graph that behaves like one: the shortest path prefix whose pages are mostly tarpit-like
    (or whose requests mostly time out), so that a generated section under /gen/ is stopped while the
    real pages of the same host are kept. A tarpit that shares its prefix with real pages is bounded
    by the link chain instead: a tarpit-like page reached through a tarpit-like page has none of its
    links followed, and a tarpit-like page has at most ``tarpit_follow_links`` of them followed.
    """

    cfg: CrawlConfig
    hosts: dict[str, HostStats] = field(default_factory=dict)
    regions: dict[str, RegionStats] = field(default_factory=dict)  # "host/prefix/" -> stats
    pages: dict[str, PageRecord] = field(default_factory=dict)  # url -> record
    _latencies: dict[str, deque[float]] = field(default_factory=dict)  # host -> recent page latencies

    def host(self, url_or_host: str) -> HostStats:
        key = host_port_of(url_or_host) if "/" in url_or_host else url_or_host.lower()
        stats = self.hosts.get(key)
        if stats is None:
            stats = self.hosts[key] = HostStats()
        return stats

    def seed_hosts(self, fetched: dict[str, dict[str, int]]) -> None:
        """Count pages fetched by an earlier, killed part of this crawl against the host budgets."""
        for host, seen in fetched.items():
            stats = self.host(host)
            stats.pages += seen.get("pages", 0)
            stats.ok += seen.get("ok", 0)
            stats.bytes += seen.get("bytes", 0)
            self._check_budgets(stats)

    def _regions(self, url: str) -> list[tuple[str, RegionStats]]:
        """(prefix, stats) of every region the URL falls in, shortest prefix first."""
        host = host_port_of(url)
        out = []
        for prefix in region_prefixes(url, self.cfg.tarpit_region_segments):
            stats = self.regions.get(host + prefix)
            if stats is None:
                stats = self.regions[host + prefix] = RegionStats()
            out.append((prefix, stats))
        return out

    def stopped_region(self, url: str) -> str | None:
        """The stopped region (host + prefix) a URL falls in, if any."""
        host = host_port_of(url)
        for prefix in region_prefixes(url, self.cfg.tarpit_region_segments):
            region = self.regions.get(host + prefix)
            if region is not None and region.stopped is not None:
                return host + prefix
        return None

    def allows(self, url: str) -> bool:
        return self.host(url).stopped is None and self.stopped_region(url) is None

    def why_stopped(self, url: str) -> str:
        region = self.stopped_region(url)
        if region is not None:
            return f"region {region}: {self.regions[region].stopped}"
        return self.host(url).stopped or ""

    def _stop(self, stats: HostStats, why: str, tarpit: bool) -> None:
        if stats.stopped is None:
            stats.stopped = why
            stats.tarpit = tarpit

    def record_response(self, url: str, status: int, nbytes: int, seconds: float) -> HostStats:
        stats = self.host(url)
        stats.pages += 1
        stats.ok += 200 <= status < 300
        stats.bytes += nbytes
        stats.seconds += seconds
        for _, region in self._regions(url):
            region.pages += 1
        self._check_budgets(stats)
        return stats

    def record_probe_fetch(self, url: str, nbytes: int, seconds: float) -> None:
        stats = self.host(url)
        stats.bytes += nbytes
        stats.seconds += seconds
        self._check_budgets(stats)

    def _check_budgets(self, stats: HostStats) -> None:
        if stats.pages >= self.cfg.host_max_pages:
            self._stop(stats, f"page budget: {stats.pages} pages", tarpit=False)
        elif stats.bytes >= self.cfg.host_max_bytes:
            self._stop(stats, f"byte budget: {stats.bytes} bytes", tarpit=False)

    def _verdict(self, url: str, why: str, count: str) -> None:
        """Stop the shortest prefix of ``url`` whose ``count`` share says tarpit; the root stops the host."""
        for prefix, region in self._regions(url):
            if region.stopped is not None:
                return
            hits = getattr(region, count)
            total = region.pages + (region.slow if count == "slow" else 0)
            minimum = self.cfg.host_max_slow if count == "slow" else self.cfg.tarpit_min_pages
            if hits >= minimum and hits >= self.cfg.tarpit_page_share * max(total, 1):
                region.stopped = why.format(hits=hits, total=total)
                if prefix == "/":  # the whole host behaves like a tarpit
                    self._stop(self.host(url), "tarpit: " + region.stopped, tarpit=True)
                return

    def record_failure(self, url: str, slow: bool) -> HostStats:
        stats = self.host(url)
        stats.errors += 1
        if slow:
            stats.slow += 1
            stats.seconds += self.cfg.ttlb_limit_s
            for _, region in self._regions(url):
                region.slow += 1
            self._verdict(
                url,
                "slow responses: {hits}/{total} over the "
                f"{self.cfg.ttlb_limit_s:g} s time-to-last-byte limit",
                "slow",
            )
        return stats

    def _slow_page(self, url: str, seconds: float) -> bool:
        # Far slower than this host's usual page: a drip delay. A host that is slow everywhere is not.
        # The median of its recent pages, so that the tarpit's own slow pages do not raise the bar. A drip
        # adds a fixed delay, and a loaded crawler adds its own lag to every page alike: the difference
        # carries the verdict (with a ratio of 8 alone, a 6 s drip no longer counts once every page of
        # the host takes 0.75 s).
        recent = self._latencies.setdefault(host_port_of(url), deque(maxlen=LATENCY_WINDOW))
        usual = statistics.median(recent) if len(recent) >= MIN_LATENCIES else None
        recent.append(seconds)
        if usual is None:
            return False  # too few pages yet to know what is usual for this host
        later = seconds - usual >= self.cfg.tarpit_slow_page_s
        return later and seconds >= self.cfg.tarpit_slow_factor * usual

    def record_page(
        self,
        url: str,
        links: list[str],
        text: str,
        seconds: float = 0.0,
        parent_chain: int = 0,
        incoherent: bool = False,
    ) -> PageSignal:
        """Signals of one HTML page; updates its host and regions and stops a region that looks like a tarpit.

        ``parent_chain`` is the chain of the page that linked here; ``incoherent`` a babble signal the
        caller computed (crawler.suspicion).
        """
        stats = self.host(url)
        share, n = deep_random_share(url, links)
        babble = babble_score(text)
        deep = n >= 3 and share >= self.cfg.tarpit_deep_link_share
        babbly = (babble is not None and babble >= 0.5) or incoherent
        slow = self._slow_page(url, seconds)
        like = deep or babbly or slow
        stats.deep_link_pages += deep
        stats.babble_pages += babbly
        stats.slow_pages += slow
        stats.tarpit_like += like
        self.pages[url] = PageRecord(like, parent_chain > 0)
        if like:
            for _, region in self._regions(url):
                region.tarpit_like += 1
            why = []
            if stats.deep_link_pages:
                why.append("random deep links")
            if stats.babble_pages:
                why.append("babble text")
            if stats.slow_pages:
                why.append("drip-slow pages")
            self._verdict(url, "tarpit-like pages {hits}/{total}: " + ", ".join(why), "tarpit_like")
        return PageSignal(share, n, babble, like, slow, parent_chain + 1 if like else 0)

    def record_child(self, parent_url: str | None, child_like: bool) -> None:
        parent = self.pages.get(parent_url or "")
        if parent is not None and child_like:
            parent.tarpit_children += 1

    def follow_limit(self, signal: PageSignal, url: str | None = None) -> int | None:
        """How many of a page's links to follow: all (None), a few, or none (deep in a tarpit-like chain).

        A page whose own signals missed (``url`` given) still gets the few-links limit when it lies in a
        region (below the host's root) of at least ``tarpit_min_pages`` pages, most of them tarpit-like:
        one generated page that happens to pass must not open all of its links into the tarpit.
        """
        if not signal.tarpit_like:
            if url and self._in_tarpit_like_region(url, self.cfg.tarpit_min_pages):
                return self.cfg.tarpit_follow_links
            return None
        if signal.chain >= self.cfg.tarpit_max_chain:
            return 0
        return self.cfg.tarpit_follow_links

    def _in_tarpit_like_region(self, url: str, min_pages: int) -> bool:
        """Whether a region below the root holds ``min_pages`` pages or more, most of them tarpit-like."""
        host = host_port_of(url)
        for prefix in region_prefixes(url, self.cfg.tarpit_region_segments)[1:]:
            region = self.regions.get(host + prefix)
            # A minimum count: early in a crawl, 2 odd pages of 3 under a prefix must not limit every
            # real page of it.
            if region is not None and region.pages >= min_pages:
                if region.tarpit_like >= self.cfg.tarpit_page_share * region.pages:
                    return True
        return False

    def tarpit_hosts(self) -> dict[str, str]:
        return {h: s.stopped or "" for h, s in self.hosts.items() if s.tarpit}

    def tarpit_regions(self) -> dict[str, str]:
        return {k: r.stopped for k, r in sorted(self.regions.items()) if r.stopped is not None}

    def tarpit_pages(self) -> list[str]:
        """Pages to mark: tarpit-like ones in a stopped or tarpit-like region, or in a tarpit-like chain.

        A tarpit-like page is marked when its region was stopped, when it was reached through a tarpit-like
        page, when two of the pages it led to were tarpit-like (the entry of a tarpit), or when it lies in a
        region below the host's root of ``tarpit_mark_min_pages`` pages or more, most of them tarpit-like:
        the chain limits can keep a tarpit region under the ``tarpit_min_pages`` that stop it (a tarpit-like
        page on the way in has one link followed), and its pages must not be kept for that. Any page of a
        stopped region reached through a tarpit-like page is marked too. A real page reached through real
        pages is never marked unless the whole host is a tarpit or its own region looks like one.
        """
        marked = []
        for url, page in self.pages.items():
            in_stopped = self.stopped_region(url) is not None
            chained = page.parent_tarpit_like or page.tarpit_children >= 2
            if page.tarpit_like and (
                in_stopped or chained or self._in_tarpit_like_region(url, self.cfg.tarpit_mark_min_pages)
            ):
                marked.append(url)
            elif in_stopped and page.parent_tarpit_like:
                marked.append(url)  # inside the region, reached from the tarpit: its page too
        return marked

    def budget_report(self) -> dict[str, dict[str, Any]]:
        """Per host: its counters plus the share of the crawl's pages, bytes and download time it took."""
        total_pages = sum(s.pages for s in self.hosts.values()) or 1
        total_bytes = sum(s.bytes for s in self.hosts.values()) or 1
        total_seconds = sum(s.seconds for s in self.hosts.values()) or 1.0
        report = {}
        for name, s in sorted(self.hosts.items()):
            row = asdict(s)
            row["share_pages"] = round(s.pages / total_pages, 4)
            row["share_bytes"] = round(s.bytes / total_bytes, 4)
            row["share_time"] = round(s.seconds / total_seconds, 4) if math.isfinite(s.seconds) else None
            row["seconds"] = round(s.seconds, 3)
            row["tarpit_regions"] = {
                key[len(name) :]: r.stopped
                for key, r in self.regions.items()
                if r.stopped is not None and key.startswith(name + "/")
            }
            report[name] = row
        return report

    def state(self) -> dict[str, Any]:
        return {
            "hosts": {name: asdict(s) for name, s in self.hosts.items()},
            "regions": {name: asdict(s) for name, s in self.regions.items()},
            "pages": {url: asdict(p) for url, p in self.pages.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.hosts = {name: HostStats(**values) for name, values in state.get("hosts", {}).items()}
        self.regions = {name: RegionStats(**values) for name, values in state.get("regions", {}).items()}
        self.pages = {url: PageRecord(**values) for url, values in state.get("pages", {}).items()}
