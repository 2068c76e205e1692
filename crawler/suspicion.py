"""Cheap page signals the crawler computes on every page: where a cloaking probe pays, what is babble.

A re-fetch with a browser user agent costs a request, so the spider probes a page when something about
it is suspicious rather than only at random (docs/THREATS.md P-CLOAK), and the tarpit guard needs a babble
signal that generated text made from the site's own pages cannot dodge (P-TARPIT). The signals:

``coherence``
    Topic self-similarity: the idf-weighted overlap of the content words of the page's first and
    second half, with idf from the pages of the same host seen so far. A page about one subject reuses
    its subject's words (``os.path``: path, pathname, directory) in both halves; text drawn from a
    Markov chain trained on a whole site, or any generator not conditioned on a topic, shares only the
    site's common words, which the idf weights down. Independent of the chain's order and corpus.
``scattered`` (SiteShingles)
    The share of the page's word 4-grams found on other pages of the host beyond the two pages it
    shares most with. Text made from the site's own pages (a Markov chain trained on them, sentences
    spliced together) borrows short runs from many pages; a real page that repeats others (an index,
    a "what's new" page, a shared section) repeats one or two of them at length.
``injection_fit``
    Over the page's paragraphs, the largest injection-classifier probability (filters/injection.py,
    fitted on other collections) times the square of how little the paragraph fits the rest of the
    page (1 - its idf-weighted share of words the other paragraphs use): an instruction spliced
    into a page is both phrased like one and about something else than the page around it. A page
    of fewer than 3 paragraphs has no "rest" to misfit: its signal is the classifier's probability
    on the whole page. The first 20,000 characters are scored (it runs inside the crawl's reactor).
``instruction``
    The hidden-text detector's instruction rule (a model addressed, an override, agent-only requests)
    applied to the visible text; on visible text a hit adds a little to the page's rank (one robust
    z-score, crawler/spider.py), no more: on the Python docs one page in ten has such phrasing.

How the probes are chosen (crawler/spider.py): per host, a budget of ``cloaking_probe_share`` of the
pages of each batch (``cloaking_rank_batch`` pages, or what is left when the crawl idles), spent first
on pages probed for a reason (seeds, a crawl-time detector's flag, the sample), the rest on the pages
that stand out most on ``scattered`` or ``injection_fit`` (:func:`rank_outliers`). A tarpit-like page
that the tarpit did not claim by then (a real page cloaked as babble, or a real index page: genindex
and contents pages look tarpit-like too) ranks one robust z-score higher, as does instruction phrasing.
The signals are computed when the batch is ranked, against every page of the host fetched by then.
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
import zlib
from collections import Counter
from dataclasses import dataclass, field

_CONTENT_WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)
# Frequent English function words of four letters or more; shorter ones are dropped by length already.
_STOP = frozenset(
    "this that with from have which will when their there these those been were into than then they "
    "them your more also such only other some what about would could should each must most many much "
    "very just over under after before where while here does done being both same used using".split()
)
MIN_WORDS = 80  # content words a page needs before its coherence means anything


def content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _CONTENT_WORD.findall(text)) if w not in _STOP]


@dataclass
class SiteVocabulary:
    """Document frequencies of content words over the pages of one host seen so far."""

    docs: int = 0
    df: Counter[str] = field(default_factory=Counter)

    def add(self, words: list[str]) -> None:
        self.docs += 1
        self.df.update(set(words))

    def idf(self, word: str) -> float:
        return math.log((self.docs + 1) / (self.df.get(word, 0) + 0.5))


def coherence(words: list[str], vocab: SiteVocabulary, min_docs: int) -> float | None:
    """idf-weighted overlap of the two halves' content words, 0..1; None when there is too little to say."""
    if len(words) < MIN_WORDS or vocab.docs < min_docs:
        return None
    mid = len(words) // 2
    first, second = set(words[:mid]), set(words[mid:])
    weight = {w: vocab.idf(w) for w in first | second}
    smaller = min(sum(weight[w] for w in first), sum(weight[w] for w in second))
    if smaller <= 0:
        return None
    return sum(weight[w] for w in first & second) / smaller


def instruction(text: str, max_chars: int = 20_000) -> str | None:
    """The phrase of the hidden-text instruction rule found in the visible text, if any."""
    from poisonguard.filters.hidden_text import instruction_phrase

    return instruction_phrase(text[:max_chars])


def _blocks(text: str, min_words: int = 10) -> list[str]:
    """The text's paragraphs: blocks between blank lines with at least ``min_words`` words (not menus)."""
    return [b for b in text.split("\n\n") if len(b.split()) >= min_words]


Signals = tuple[float | None, ...]


MIN_SPREAD = 0.01  # floor of a signal's spread in a batch (a batch where nearly all pages score 0)


def rank_outliers(batch: list[Signals]) -> list[float]:
    """Per page: how far it stands out on its most unusual signal, in robust z-scores over the batch.

    Each signal (high = odd) is centred on the batch median and scaled by the median absolute
    deviation; a page's score is the largest of its scores, so a page far out on any one signal comes
    first, and a signal on which no page stands out (every page scattered a little) takes no probes
    from one on which a few pages stand far out. Relative to the batch, hence to the site: no
    threshold that holds on one site and not on another.
    """
    out = [0.0] * len(batch)
    if not batch:
        return out
    for i in range(len(batch[0])):
        column = [s[i] for s in batch]
        known = [v for v in column if v is not None]
        if not known:
            continue
        med = statistics.median(known)
        spread = max(MIN_SPREAD, statistics.median(abs(v - med) for v in known))
        for j, value in enumerate(column):
            if value is not None:
                out[j] = max(out[j], (value - med) / spread)
    return out


_SHINGLE_WORDS = 4


@dataclass
class SiteShingles:
    """On which of a host's pages each (sampled) paragraph shingle was seen.

    Text made from the site's own pages (a Markov chain trained on them, sentences spliced together)
    reuses their word sequences, a few words from each of many pages; a real page's paragraphs are
    mostly its own, and its boilerplate is on most pages. Shingles are sampled by hash (1 in
    ``sample``) to bound memory.
    """

    sample: int = 4
    pages: int = 0
    where: dict[int, list[int]] = field(default_factory=dict)  # shingle -> pages that have it (by number)

    def shingles(self, text: str) -> frozenset[int]:
        out = set()
        for block in _blocks(text):
            words = block.lower().split()
            for i in range(len(words) - _SHINGLE_WORDS + 1):
                h = zlib.crc32(" ".join(words[i : i + _SHINGLE_WORDS]).encode("utf-8"))
                if h % self.sample == 0:
                    out.add(h)
        return frozenset(out)

    def add(self, shingles: frozenset[int]) -> int:
        """Count an added page's shingles; return the page's number on this host."""
        page = self.pages
        self.pages += 1
        for h in shingles:
            self.where.setdefault(h, []).append(page)
        return page

    def scattered(
        self, shingles: frozenset[int], page: int, sources: int = 2, boilerplate_share: float = 0.2
    ) -> float | None:
        """Share of an added page's shingles on other pages of the host, beyond its ``sources`` main ones.

        0 for a page whose text is its own or copied from one or two pages; high for text stitched
        together from runs of many pages. None for fewer than 8 shingles or a host of under 10 pages.
        """
        if len(shingles) < 8 or self.pages < 10:
            return None
        found: Counter[int] = Counter()
        borrowed = 0
        cap = max(2, int(boilerplate_share * self.pages))  # on more pages than this: boilerplate
        for h in shingles:
            having = self.where.get(h, [])  # ascending page numbers (add appends in order)
            at = bisect.bisect_left(having, page)
            own = at < len(having) and having[at] == page
            # Count first, list only the few: boilerplate (on most pages) costs O(log pages), not O(pages).
            if 0 < len(having) - own <= cap:
                borrowed += 1
                found.update(p for p in having if p != page)
        main = sum(n for _, n in found.most_common(sources))
        return max(0, borrowed - main) / len(shingles)


def paragraph_fits(text: str, vocab: SiteVocabulary) -> list[tuple[str, float]]:
    """(paragraph, fit) for each paragraph of at least 5 content words, when there are 3 or more.

    fit: the idf-weighted share of the paragraph's content words that the page's other paragraphs
    use, 0..1. A paragraph spliced into a page (an injected instruction, an advert) talks about
    something else than the page around it and fits it little.
    """
    blocks = [(b, set(content_words(b))) for b in _blocks(text)]
    blocks = [(b, w) for b, w in blocks if len(w) >= 5]
    if len(blocks) < 3:
        return []
    paragraphs_using: Counter[str] = Counter()
    for _, words in blocks:
        paragraphs_using.update(words)
    out = []
    for block, words in blocks:
        total = sum(vocab.idf(w) for w in words)
        if total > 0:  # a word some other paragraph uses: in 2 or more paragraphs, this one included
            shared = sum(vocab.idf(w) for w in words if paragraphs_using[w] >= 2)
            out.append((block, shared / total))
    return out


INJECTION_FIT_POWER = 2  # chosen on the Python docs (2 and 3 tie); bench/RESULTS.md crawl-hostile says how


def injection_fit(text: str, vocab: SiteVocabulary, max_chars: int = 20_000) -> float | None:
    """max over paragraphs of P(injection) x (1 - fit)^2, 0..1; on a page of fewer than 3 paragraphs,
    P(injection) of the whole page; None for a page without text. Scores the first ``max_chars``."""
    from poisonguard.filters import injection

    text = text[:max_chars]
    if not text.strip():
        return None
    model = injection.load_model()
    fits = paragraph_fits(text, vocab)
    if not fits:  # too few paragraphs to judge one against the rest: the page as a whole
        return injection.score_text(text, model)[0]
    return max(injection.score_text(b, model)[0] * max(0.0, 1.0 - f) ** INJECTION_FIT_POWER for b, f in fits)
