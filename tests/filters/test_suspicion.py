"""suspicion score: how little word order adds to compression, on real prose and on babble."""

from __future__ import annotations

import random

import pyarrow as pa

from poisonguard.filters import suspicion

# Ordinary prose written for this test (about 330 words).
PROSE = (
    "The town library opened in the spring of the year after the flood, in the old grain store by the "
    "river. At first it had only a few hundred books, most of them given by families who had moved away, "
    "and the librarian worked there two afternoons a week. Children came after school to read and to do "
    "their homework, because the library was warm and quiet and the light was good. Over the next ten "
    "years the library grew. The town council paid for a second room, and then for a small reading room "
    "for newspapers, where older people met in the morning to read the news and to talk about the news. "
    "The librarian was paid for four days a week, and two volunteers helped her on Saturdays. In the "
    "winter the library held evening talks about the history of the town, about the river and the mills, "
    "and about the families who had lived in the valley for a long time. Many people came to these "
    "talks, and some of them brought old letters and photographs, which the library copied and kept. "
    "When the grain store needed a new roof, the council asked the town whether the library should move "
    "to a new building near the school. Most people wanted the library to stay by the river, in the old "
    "building they knew, and so the roof was repaired and the library stayed where it was. Today the "
    "library has more than twenty thousand books, a room for children, a room for newspapers and a small "
    "room for the letters and photographs of the town. The librarian still works there, and the "
    "children still come after school to read and to do their homework, because the library is still "
    "warm and quiet and the light is still good. Every spring the town holds a small party at the "
    "library to remember the year of the flood and the year the library opened by the river."
)
CFG = suspicion.Config()


def _salad(words: list[str], n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _ in range(n))


def test_word_salad_ranks_above_the_prose_it_is_made_from() -> None:
    words = PROSE.split()
    texts = [PROSE, _salad(words, 400, 1), _salad(words, 800, 2)]
    columns = suspicion.score(pa.table({"text": texts}), CFG)
    prose, salad, longer = columns[suspicion.SCORE].to_pylist()
    assert salad > prose + 0.03 and longer > prose + 0.03
    assert columns[suspicion.ORDER_RATIO].null_count == 0


def test_short_or_missing_text_gets_no_ratio_and_score_zero() -> None:
    columns = suspicion.score(pa.table({"text": ["just a few words here", None]}), CFG)
    assert columns[suspicion.ORDER_RATIO].null_count == 2
    assert columns[suspicion.SCORE].to_pylist() == [0.0, 0.0]


def test_score_is_deterministic_and_reads_at_most_max_words() -> None:
    long_text = PROSE + " " + _salad(PROSE.split(), 3000, 4)
    cut = suspicion.Config(max_words=len(suspicion.words(PROSE, 10**6)))
    a = suspicion.score(pa.table({"text": [long_text]}), cut)[suspicion.SCORE][0].as_py()
    b = suspicion.score(pa.table({"text": [PROSE]}), cut)[suspicion.SCORE][0].as_py()
    assert a == b  # the salad after max_words is never read
    again = suspicion.score(pa.table({"text": [long_text]}), CFG)[suspicion.SCORE][0].as_py()
    assert again == suspicion.score(pa.table({"text": [long_text]}), CFG)[suspicion.SCORE][0].as_py()
