"""One content-word rule for the detectors that measure word reuse (suspicion, coherence)."""

from __future__ import annotations

from poisonguard.core.words import CONTENT_CHARS, content_words, is_content_word
from poisonguard.filters import coherence, suspicion


def test_a_content_word_has_five_characters_or_more() -> None:
    assert CONTENT_CHARS == 5
    assert content_words(["the", "house", "was", "large", "house", "bird"]) == ["house", "large", "house"]
    assert is_content_word("world") and not is_content_word("four")


def test_both_detectors_count_the_same_content_words() -> None:
    # 30 distinct five-letter words, each used twice in a row, among short words that never count.
    longs = [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}xy" for i in range(30)]
    tokens = [w for long in longs for w in ("an", long, "of", long)]
    assert suspicion.local_repeat(tokens, min_words=10) == 0.5  # the second use of each repeats
    text = " ".join(tokens)
    measured = coherence.measure(text, coherence.Config(min_content_words=8))
    assert measured["content_words"] == 60
    assert measured["type_ratio"] == 0.5
