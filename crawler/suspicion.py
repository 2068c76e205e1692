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
``title_support``
    How much of the title's rare words the paragraphs use (a swapped body keeps the title).
``paragraph_fit``
    How well the page's least fitting paragraph fits the rest of it (a spliced-in paragraph does not).
``borrowed`` (SiteShingles)
    The share of the page's word 4-grams found on a few other pages of the host: text made from the
    site's own pages reuses their word sequences.
``instruction``
    The hidden-text detector's instruction rule (a model addressed, an override, agent-only requests)
    applied to the visible text; on visible text a hit is a reason to look twice, not a verdict.
"""

from __future__ import annotations

import math
import re
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


def title_support(text: str, title: str | None, vocab: SiteVocabulary) -> float | None:
    """idf-weighted share of the title's content words that the page's paragraphs use, 0..1.

    A page is about its title: its paragraphs repeat the title's rare words. Paragraphs swapped for text
    drawn from elsewhere (babble, a spliced article) keep the title and lose that support.
    """
    title_words = set(content_words(title or ""))
    body = {w for block in _blocks(text) for w in content_words(block)}
    if not title_words or len(body) < MIN_WORDS // 2:
        return None
    total = sum(vocab.idf(w) for w in title_words)
    if total <= 0:
        return None
    return sum(vocab.idf(w) for w in title_words & body) / total


Signals = tuple[float | None, ...]


def rank_suspicion(batch: list[Signals]) -> list[float]:
    """Per page, 0..1: how far down its host's batch it ranks on its most unusual signal (low = odd).

    Each signal is ranked within the batch (lowest value first, so every signal is oriented with low
    = odd); a page's suspicion is the largest of
    its per-signal rank fractions, so a page odd on any one signal comes first. Relative to the batch,
    hence to the site: no threshold that holds on one site and not on another.
    """
    n = len(batch)
    out = [0.0] * n
    if not n:
        return out
    for i in range(len(batch[0])):
        known = sorted((s[i], j) for j, s in enumerate(batch) if s[i] is not None)
        for rank, (_, j) in enumerate(known):
            out[j] = max(out[j], 1.0 - rank / n)
    return out


_SHINGLE_WORDS = 4


@dataclass
class SiteShingles:
    """In how many of a host's pages each (sampled) paragraph shingle was seen.

    Text made from the site's own pages (a Markov chain trained on them, sentences spliced together)
    reuses their word sequences; a real page's paragraphs are mostly its own, and its boilerplate is on
    most pages. ``borrowed`` is the share of a page's shingles seen on a few other pages of the host,
    but not on so many that they are boilerplate. Shingles are sampled by hash (1 in ``sample``) to
    bound memory.
    """

    sample: int = 4
    pages: int = 0
    counts: dict[int, int] = field(default_factory=dict)

    def shingles(self, text: str) -> frozenset[int]:
        out = set()
        for block in _blocks(text):
            words = block.lower().split()
            for i in range(len(words) - _SHINGLE_WORDS + 1):
                h = zlib.crc32(" ".join(words[i : i + _SHINGLE_WORDS]).encode("utf-8"))
                if h % self.sample == 0:
                    out.add(h)
        return frozenset(out)

    def add(self, shingles: frozenset[int]) -> None:
        self.pages += 1
        for h in shingles:
            self.counts[h] = self.counts.get(h, 0) + 1

    def borrowed(self, shingles: frozenset[int], boilerplate_share: float = 0.2) -> float | None:
        """Share of an added page's shingles also on 1.. (boilerplate_share x pages) other pages."""
        if len(shingles) < 8 or self.pages < 10:
            return None
        cap = max(2, int(boilerplate_share * self.pages))
        hits = sum(1 for h in shingles if 1 <= self.counts.get(h, 1) - 1 <= cap)
        return hits / len(shingles)


def paragraph_fit(text: str, vocab: SiteVocabulary) -> float | None:
    """How well the page's least fitting paragraph fits the rest of the page, 0..1 (low = an odd one).

    Per paragraph, the idf-weighted share of its content words that the page's other paragraphs use;
    the lowest of these. A paragraph spliced into a page (an injected instruction, an advert) talks
    about something else than the page around it.
    """
    sets = [set(content_words(b)) for b in _blocks(text)]
    sets = [s for s in sets if len(s) >= 5]
    if len(sets) < 3:
        return None
    lowest = 1.0
    for i, words in enumerate(sets):
        rest = set().union(*sets[:i], *sets[i + 1 :])
        total = sum(vocab.idf(w) for w in words)
        if total > 0:
            lowest = min(lowest, sum(vocab.idf(w) for w in words & rest) / total)
    return lowest
