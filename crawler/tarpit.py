"""Tarpit guard (docs/THREATS.md P-TARPIT): per-host budgets and signals that stop following a host.

Tarpits and labyrinths (Nepenthes, iocaine, Cloudflare AI Labyrinth) serve endless generated pages
whose links point ever deeper into one path, often with random slugs, filled with Markov babble,
sometimes drip-fed. The guard keeps, per host (host[:port]): pages, bytes, download time, responses
that hit the time-to-last-byte limit, and how many pages looked tarpit-like. A host is stopped (no
more of its links are followed, queued requests to it are dropped) when it spends its page or byte
budget, when too many of its responses are too slow, or when enough of its pages look tarpit-like.
Only the signal-based stops mark a host as a tarpit (its pages then carry ``cloaking:tarpit_host``);
a large honest site that merely spends its budget is not accused.
"""

from __future__ import annotations

import math
import re
from collections import Counter
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
    probes: int = 0  # pages sent to the cloaking probe (two browser fetches each)
    stopped: str | None = None  # why the guard stopped following the host
    tarpit: bool = False  # stopped on a tarpit signal (not only a budget)


@dataclass
class PageSignal:
    deep_share: float
    links: int
    babble: float | None
    tarpit_like: bool


@dataclass
class TarpitGuard:
    cfg: CrawlConfig
    hosts: dict[str, HostStats] = field(default_factory=dict)

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

    def allows(self, url: str) -> bool:
        return self.host(url).stopped is None

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

    def record_failure(self, url: str, slow: bool) -> HostStats:
        stats = self.host(url)
        stats.errors += 1
        if slow:
            stats.slow += 1
            stats.seconds += self.cfg.ttlb_limit_s
            if stats.slow >= self.cfg.host_max_slow:
                self._stop(
                    stats,
                    f"slow responses: {stats.slow} over the {self.cfg.ttlb_limit_s:g} s "
                    "time-to-last-byte limit",
                    tarpit=True,
                )
        return stats

    def record_page(self, url: str, links: list[str], text: str) -> PageSignal:
        """Signals of one HTML page; updates the host and stops it when its pages look like a tarpit."""
        stats = self.host(url)
        share, n = deep_random_share(url, links)
        babble = babble_score(text)
        deep = n >= 3 and share >= self.cfg.tarpit_deep_link_share
        babbly = babble is not None and babble >= 0.5
        stats.deep_link_pages += deep
        stats.babble_pages += babbly
        stats.tarpit_like += deep or babbly
        if (
            stats.stopped is None
            and stats.tarpit_like >= self.cfg.tarpit_min_pages
            and stats.tarpit_like >= self.cfg.tarpit_page_share * stats.pages
        ):
            why = []
            if stats.deep_link_pages:
                why.append(f"random deep links on {stats.deep_link_pages}/{stats.pages} pages")
            if stats.babble_pages:
                why.append(f"babble text on {stats.babble_pages}/{stats.pages} pages")
            self._stop(stats, "tarpit: " + "; ".join(why), tarpit=True)
        return PageSignal(share, n, babble, deep or babbly)

    def tarpit_hosts(self) -> dict[str, str]:
        return {h: s.stopped or "" for h, s in self.hosts.items() if s.tarpit}

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
            report[name] = row
        return report

    def state(self) -> dict[str, Any]:
        return {name: asdict(s) for name, s in self.hosts.items()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.hosts = {name: HostStats(**values) for name, values in state.items()}
