"""Cloaking probe (docs/THREATS.md P-CLOAK): compare what a crawler is served with what a browser is served.

Tools such as iocaine and django-llm-poison answer AI crawlers' user agents with other text. For a
sample of pages per host, plus every page a crawl-time detector flagged, the spider fetches the page
twice more with a mainstream browser user agent. ``similarity`` is the MinHash estimate of the word
shingle Jaccard similarity between the crawler's view and the first browser view; ``baseline`` is
the same between the two browser views, i.e. how much the page changes by itself (rotating ads,
timestamps, CSRF tokens). Documents carry the ratio of the two (``relative_similarity``), and
filters/cloaking.py flags pages whose crawler view is far less similar than the page's own churn.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from datasketch import MinHash

_WORDS = re.compile(r"\w+", re.UNICODE)
_SEED = 1  # fixed: signatures of the three views must come from the same permutations


def shingles(text: str, size: int) -> set[bytes]:
    words = [w.lower() for w in _WORDS.findall(text)]
    if len(words) < size:
        return {" ".join(words).encode("utf-8")} if words else set()
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def signature(text: str, num_perm: int, shingle_words: int) -> MinHash | None:
    """MinHash of the text's word shingles; None for a text without words."""
    grams = shingles(text, shingle_words)
    if not grams:
        return None
    m = MinHash(num_perm=num_perm, seed=_SEED)
    m.update_batch(list(grams))  # vectorised over all shingles (docs/DESIGN.md: compute in bulk)
    return m


def similarity(a: str, b: str, num_perm: int = 128, shingle_words: int = 3) -> float:
    """Estimated Jaccard similarity of two texts' word shingles (1.0 for two texts without words)."""
    sa, sb = signature(a, num_perm, shingle_words), signature(b, num_perm, shingle_words)
    if sa is None and sb is None:
        return 1.0
    if sa is None or sb is None:
        return 0.0
    return float(np.mean(sa.hashvalues == sb.hashvalues))


def sampled(url: str, rate: float) -> bool:
    """Deterministic per-URL sample: the same URL is (or is not) probed in every run and on resume."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    h = int.from_bytes(hashlib.sha256(url.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < rate


MIN_BASELINE = 0.05  # below this the page is noise to a browser too, and a ratio says nothing


def relative_similarity(similarity: float | None, baseline: float | None) -> float | None:
    """similarity / baseline, capped at 1: 1.0 when the crawler sees what a browser sees, up to churn."""
    if similarity is None:
        return None
    if baseline is None:
        return min(1.0, similarity)
    if baseline < MIN_BASELINE:
        return 1.0
    return min(1.0, similarity / baseline)
