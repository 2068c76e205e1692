"""URL helpers: which host a URL belongs to.

Two notions, on purpose: the crawler's politeness budgets are per ``host:port`` (two servers on one
machine are two sites), while reports and detectors group documents by host name alone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def host_of(url: Any) -> str | None:
    """Lower-case host name of a URL (no port); None for a missing, host-less or malformed URL."""
    if not isinstance(url, str) or not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def host_port_of(url: str) -> str:
    """``host[:port]`` of a URL, lower-case: the unit of the crawler's per-host budgets."""
    return urlsplit(url).netloc.lower()
