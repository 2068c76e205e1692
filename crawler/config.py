"""Crawl settings: every knob the Scrapy crawl, the tarpit guard and the cloaking probe read.

Defaults are polite (robots.txt obeyed, AutoThrottle on, two requests at a time per host, an honest
user agent) and bounded (depth, page and time limits, per-host budgets), because a crawl that feeds a
training corpus must not be trapped by a tarpit or hammer a small site. configs/default.yaml repeats
every default with a comment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_USER_AGENT = "poisonguard/0.1 (+https://pypi.org/project/poisonguard/; training-data hygiene crawler)"
# A current desktop Chrome string: what the cloaking probe sends to see the page a person sees.
DEFAULT_BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


class CrawlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # --- politeness and Scrapy limits ---
    user_agent: str = Field(DEFAULT_USER_AGENT, description="honest user agent; must name poisonguard")
    obey_robots: bool = Field(True, description="obey robots.txt (ROBOTSTXT_OBEY)")
    autothrottle: bool = Field(True, description="AutoThrottle: adapt the delay to the server's latency")
    autothrottle_start_delay_s: float = Field(0.5, ge=0)
    autothrottle_max_delay_s: float = Field(30.0, ge=0)
    autothrottle_target_concurrency: float = Field(2.0, gt=0)
    download_delay_s: float = Field(0.0, ge=0, description="minimum delay between requests to one host")
    concurrent_requests: int = Field(16, ge=1, description="requests in flight in total")
    concurrent_requests_per_host: int = Field(2, ge=1, description="requests in flight per host")
    download_maxsize_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger bodies are dropped")
    ttlb_limit_s: float = Field(
        20.0,
        gt=0,
        description="time to last byte: a response slower than this is cancelled "
        "(Scrapy's DOWNLOAD_TIMEOUT covers the connection and the whole body)",
    )
    retry_times: int = Field(1, ge=0, description="retries of a failed request (a tarpit wastes each one)")
    depth_limit: int = Field(8, ge=0, description="link depth from the seeds; 0 = no limit")
    max_pages: int = Field(10_000, ge=0, description="stop the crawl after this many responses; 0 = none")
    max_time_s: float = Field(3600.0, ge=0, description="stop the crawl after this long; 0 = no limit")
    follow: Literal["seed_hosts", "none"] = Field(
        "seed_hosts", description="follow links within the seeds' hosts (plus allowed_domains), or not at all"
    )
    allowed_domains: list[str] = Field(
        default_factory=list, description="more domains (and their subdomains) whose links are followed"
    )
    # --- raw shards ---
    raw_shard_rows: int = Field(1000, ge=1, description="rows per OUT/raw/ shard")
    raw_flush_s: float = Field(
        30.0,
        gt=0,
        description="write the rows fetched so far at least this often (a killed crawl keeps them)",
    )
    # --- tarpit guard (docs/THREATS.md P-TARPIT) ---
    host_max_pages: int = Field(2000, ge=1, description="per-host page budget")
    host_max_bytes: int = Field(200 * 1024 * 1024, ge=1, description="per-host byte budget")
    host_max_slow: int = Field(
        5, ge=1, description="responses over ttlb_limit_s before a region (path prefix) is stopped"
    )
    tarpit_min_pages: int = Field(
        8, ge=1, description="tarpit-like pages seen before a region can be stopped"
    )
    tarpit_page_share: float = Field(
        0.6, gt=0, le=1, description="share of a region's pages that must look tarpit-like to stop it"
    )
    tarpit_mark_min_pages: int = Field(
        3,
        ge=1,
        description="pages a region below the host's root needs, most of them tarpit-like, for its "
        "tarpit-like pages to be marked at the end of the crawl though the region was never stopped",
    )
    tarpit_deep_link_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a page is tarpit-like when this share of its links goes deeper under its own path "
        "to random-looking slugs",
    )
    tarpit_region_segments: int = Field(
        3,
        ge=0,
        description="path segments a tarpit region can span: verdicts apply to the shortest prefix "
        "(/, /a/, /a/b/, ...) whose pages look tarpit-like, not to the whole host",
    )
    tarpit_max_chain: int = Field(
        2,
        ge=1,
        description="tarpit-like pages in a row on a link path after which links are no longer followed",
    )
    tarpit_follow_links: int = Field(
        1,
        ge=0,
        description="links followed at most from a tarpit-like page (a tarpit links to many; each link "
        "followed costs a request that the region's verdict, coming after the drip delays, rarely saves)",
    )
    tarpit_slow_page_s: float = Field(
        5.0, gt=0, description="a page whose headers came this much later than the host's usual page ..."
    )
    tarpit_slow_factor: float = Field(
        3.0,
        ge=1,
        description="... and took this many times the median of the host's recent pages is drip-slow "
        "(a host slow everywhere is not; a loaded crawler's lag delays all pages alike)",
    )
    tarpit_max_coherence: float = Field(
        0.08,
        ge=0,
        le=1,
        description="pages whose topic coherence (crawler/suspicion.py) is below this count as babble",
    )
    # --- cloaking probe (docs/THREATS.md P-CLOAK) ---
    cloaking_sample_rate: float = Field(
        0.01, ge=0, le=1, description="share of pages per host fetched again with a browser user agent"
    )
    cloaking_probe_seeds: bool = Field(True, description="always probe the seed pages (the front doors)")
    cloaking_max_probes_per_host: int = Field(100, ge=0, description="probe at most this many pages per host")
    cloaking_probe_detectors: list[str] = Field(
        default_factory=lambda: ["hidden_text"],
        description="poisonguard.filters detectors whose flag on a page always triggers a probe",
    )
    cloaking_probe_share: float = Field(
        0.14,
        ge=0,
        le=1,
        description="probe budget per batch of a host's pages: this share of them, spent first on the "
        "pages probed for a reason (seed, a detector, the sample), the rest on the most suspicious of "
        "the batch (crawler/suspicion.py; tarpit-like pages the tarpit did not claim rank a little higher)",
    )
    cloaking_rank_batch: int = Field(
        200,
        ge=1,
        le=2000,
        description="pages of a host ranked together (the last, partial batch when the crawl idles); "
        "each host's batch holds its pages' text in memory",
    )
    cloaking_probe_instructions: bool = Field(
        True, description="rank pages whose visible text has instruction phrasing addressed to a model higher"
    )
    coherence_min_pages: int = Field(
        8, ge=1, description="pages of a host seen before its word statistics judge coherence"
    )
    cloaking_confirm_similarity: float = Field(
        0.9,
        ge=0,
        le=1,
        description="a second browser fetch (the page's own churn) only when the first is less similar "
        "than this to the crawler's view",
    )
    browser_user_agent: str = Field(DEFAULT_BROWSER_USER_AGENT, description="user agent of the probe fetches")
    shingle_words: int = Field(3, ge=1, description="word shingle size for the view comparison")
    cloaking_window_words: int = Field(
        20, ge=5, description="window of the view comparison: the crawler view's worst window counts"
    )
    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("user_agent")
    @classmethod
    def _honest_user_agent(cls, value: str) -> str:
        if "poisonguard" not in value.lower():
            raise ValueError("the crawler's user agent must name poisonguard (site owners can then block it)")
        return value

    @field_validator("cloaking_probe_detectors")
    @classmethod
    def _known_detectors(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"not a detector module name: {name!r}")
        return value

    def scrapy_settings(self) -> dict[str, Any]:
        """The Scrapy settings profile this config stands for (without pipelines and paths)."""
        return {
            "USER_AGENT": self.user_agent,
            "ROBOTSTXT_OBEY": self.obey_robots,
            # Robots rules are read for our own agent also for the probe fetches, which send a browser UA.
            "ROBOTSTXT_USER_AGENT": self.user_agent,
            "AUTOTHROTTLE_ENABLED": self.autothrottle,
            "AUTOTHROTTLE_START_DELAY": self.autothrottle_start_delay_s,
            "AUTOTHROTTLE_MAX_DELAY": self.autothrottle_max_delay_s,
            "AUTOTHROTTLE_TARGET_CONCURRENCY": self.autothrottle_target_concurrency,
            "DOWNLOAD_DELAY": self.download_delay_s,
            "DOWNLOAD_DELAY_JITTER": 0.5,  # ±50% around download_delay_s, as browsers are irregular too
            "CONCURRENT_REQUESTS": self.concurrent_requests,
            "CONCURRENT_REQUESTS_PER_DOMAIN": self.concurrent_requests_per_host,
            "DOWNLOAD_MAXSIZE": self.download_maxsize_bytes,
            "DOWNLOAD_WARNSIZE": max(self.download_maxsize_bytes // 2, 1),
            "DOWNLOAD_TIMEOUT": self.ttlb_limit_s,
            "RETRY_TIMES": self.retry_times,
            "DEPTH_LIMIT": self.depth_limit,
            "CLOSESPIDER_PAGECOUNT": self.max_pages,
            "CLOSESPIDER_TIMEOUT": self.max_time_s,
            "COOKIES_ENABLED": False,
            "TELNETCONSOLE_ENABLED": False,
            "REMOTE_CONTROL_ENABLED": False,
            "HTTPCACHE_ENABLED": False,
            # Non-2xx responses reach the spider so that they are recorded in raw/ and the stats.
            "HTTPERROR_ALLOW_ALL": True,
            "REDIRECT_ENABLED": True,
            "LOG_LEVEL": self.log_level,
            # Breadth-first: a deep chain (a labyrinth) cannot starve the rest of the site.
            "DEPTH_PRIORITY": 1,
            "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
            "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        }
