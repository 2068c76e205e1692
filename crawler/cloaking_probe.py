"""Cloaking probe (docs/THREATS.md P-CLOAK): compare what a crawler is served with what a browser is served.

Tools such as iocaine and django-llm-poison answer AI crawlers' user agents with other text. For the
pages where a probe pays (seeds, pages with a suspicious signal, see crawler/suspicion.py, and a
sample), the spider fetches the page again with a mainstream browser user agent. ``similarity`` is
``view_similarity`` between the crawler's view and that browser view: the share of the crawler
view's word shingles that the browser view has, in its worst window (an injected paragraph counts, not
only a swapped page). When it is below ``cloaking_confirm_similarity``, a second browser fetch gives
``baseline``, the same measure between the two browser views, i.e. how much the page changes by
itself (rotating ads, timestamps, CSRF tokens). Documents carry the ratio of the two
(``relative_similarity``), and filters/cloaking.py flags pages whose crawler view is far less similar
than the page's own churn.
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


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(text)]


def view_similarity(crawler: str, browser: str, shingle_words: int = 3, window: int = 20) -> float:
    """How much of the crawler's view the browser's view contains, in the crawler view's worst window.

    The crawler view is cut into windows of ``window`` words (step window/4); each window scores the
    share of its word shingles found anywhere in the browser view; the result is the lowest score. A
    whole page swapped scores ~0, one injected paragraph of ~30 words ~0.2, whereas a Jaccard over the
    whole page would stay near 1 for the paragraph on a long page. Text only the browser sees (a cookie
    banner, a login box) does not lower it: what matters is what the crawler was fed. 1.0 for a crawler
    view without words.
    """
    cw, bw = _words(crawler), _words(browser)
    if not cw:
        return 1.0
    k = max(1, min(shingle_words, len(cw)))
    present = {tuple(bw[i : i + k]) for i in range(len(bw) - k + 1)}
    hits = [tuple(cw[i : i + k]) in present for i in range(len(cw) - k + 1)]
    size = min(window, len(hits))
    step = max(1, size // 4)
    starts = list(range(0, len(hits) - size + 1, step))
    if starts[-1] != len(hits) - size:
        starts.append(len(hits) - size)  # the tail window, so that a paragraph at the end counts whole
    return min(sum(hits[s : s + size]) / size for s in starts)


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
