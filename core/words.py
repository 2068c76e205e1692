"""Content words: the words long enough to carry a page's topic.

One rule for the detectors that measure how a text reuses its words (the suspicion score's local
repeat, the coherence detector's reuse and type ratio): a word of ``CONTENT_CHARS`` characters or
more. Shorter words (articles, pronouns, most function words) recur in any text and say little.
Each detector splits the text into words its own way; this rule only chooses among them.
"""

from __future__ import annotations

from collections.abc import Iterable

CONTENT_CHARS = 5


def is_content_word(word: str) -> bool:
    return len(word) >= CONTENT_CHARS


def content_words(words: Iterable[str]) -> list[str]:
    """The content words of ``words``, in order (repeats kept)."""
    return [w for w in words if is_content_word(w)]
