"""suspicion score: how seldom a document reuses its content words nearby, on real prose and on babble."""

from __future__ import annotations

import random

import pyarrow as pa

from poisonguard.filters import suspicion
from poisonguard.pipelines.config import load_config

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
    assert salad > prose + 0.5 and longer > prose + 0.5
    # a salad of this text's 170-odd words repeats them nearby by chance: the order ratio ranks it
    repeat_z, order_z = columns[suspicion.REPEAT_Z].to_pylist(), columns[suspicion.ORDER_Z].to_pylist()
    assert repeat_z[1] < repeat_z[0] and order_z[1] > order_z[0] + 0.5
    assert columns[suspicion.SCORE].to_pylist()[1] == order_z[1]


def test_babble_from_a_large_vocabulary_ranks_above_prose_by_its_local_repeat() -> None:
    # Markov-like babble: fluent pairs of words, but drawn from many texts, so no subject comes back.
    stems = ("north", "quiet", "stone", "river", "paper", "glass", "cloud", "field", "grain", "tower")
    vocabulary = [f"{a}{b}{c}" for a in stems for b in "aeiou" for c in "klmnprstvz"]  # 500 words
    rng = random.Random(3)
    babble = " ".join(f"the {rng.choice(vocabulary)} of {rng.choice(vocabulary)}" for _ in range(100))
    columns = suspicion.score(pa.table({"text": [PROSE, babble]}), CFG)
    prose, other = columns[suspicion.REPEAT_Z].to_pylist()
    assert other > prose + 1.0


def test_local_repeat_counts_content_words_seen_within_the_window() -> None:
    filler = [f"w{i:04d}" for i in range(200)]  # 5 characters, all distinct: no repeat
    assert suspicion.local_repeat(filler, 150) == 0.0
    near = list(filler)
    near[10] = near[10 + suspicion.REPEAT_WINDOW]  # seen again exactly REPEAT_WINDOW words later
    far = list(filler)
    far[10] = far[11 + suspicion.REPEAT_WINDOW]  # one word too far
    assert suspicion.local_repeat(near, 150) == 1 / 200
    assert suspicion.local_repeat(far, 150) == 0.0
    # short words (articles, pronouns) are not content words: repeating them changes nothing
    assert suspicion.local_repeat(["the", "of", "and"] * 60 + filler, 150) == 0.0
    assert suspicion.local_repeat(filler[:149], 150) is None
    assert suspicion.local_repeat(filler[:99], CFG.min_words) is None


def test_short_or_missing_text_gets_no_share_and_the_lowest_score() -> None:
    columns = suspicion.score(pa.table({"text": ["just a few words here", None]}), CFG)
    assert columns[suspicion.LOCAL_REPEAT].null_count == 2
    assert columns[suspicion.ORDER_RATIO].null_count == 2
    assert columns[suspicion.REPEAT_Z].null_count == 2
    assert columns[suspicion.WORDS].to_pylist() == [5, 0]
    assert columns[suspicion.SCORE].to_pylist() == [suspicion.NULL_SCORE] * 2


def test_the_same_share_is_more_suspicious_in_a_longer_document() -> None:
    # Real text reuses more of its words the longer it is, and varies less, so a share that is
    # ordinary for 100 words is below real text at 1,500; beyond the curve's ends the nearest point holds.
    short, long = suspicion.repeat_z(0.12, 100), suspicion.repeat_z(0.12, 1500)
    assert short is not None and long is not None and long > short + 0.8
    assert suspicion.repeat_z(0.12, 20) == short and suspicion.repeat_z(0.12, 10**6) == long
    assert suspicion.repeat_z(None, 500) is None
    # the order ratio the other way round: real text compresses better in order the longer it is
    assert (suspicion.order_z(0.97, 1500) or 0.0) > (suspicion.order_z(0.97, 100) or 0.0) + 1.5


def test_the_order_z_speaks_only_where_words_recur_at_least_as_often_as_in_real_text() -> None:
    assert suspicion.combined(1.5, 3.0) == 1.5  # few nearby repeats: the repeat z alone
    assert suspicion.combined(-0.5, 3.0) == 3.0  # many repeats but order adds nothing: a salad
    assert suspicion.combined(-0.5, -2.0) == -0.5
    assert suspicion.combined(1.0, None) == suspicion.NULL_SCORE  # under min_words
    assert suspicion.combined(None, 1.0) == 1.0  # too few content words: the order z alone


def test_a_language_of_short_words_is_judged_by_word_order_not_as_babble() -> None:
    # Korean words are 2-4 syllables: almost none is a content word by length. An encyclopedia
    # paragraph (written for this test) three times over: word order plainly helps, so it ranks as
    # real text, not above the babble its missing "content words" would otherwise make it look like.
    korean = (
        "서울은 한국의 수도이며 가장 큰 도시이다. 한강이 도시의 가운데를 흐르고 많은 다리가 강의 "
        "양쪽을 잇는다. 조선 시대부터 나라의 중심이었고 지금도 정치와 경제와 문화의 중심이다. 오래된 "
        "궁궐과 새 건물이 함께 있고 지하철이 도시 곳곳을 연결한다. 봄에는 꽃이 피고 가을에는 산이 "
        "붉게 물든다. 많은 사람이 일하러 오고 많은 학생이 공부하러 온다. "
    )
    text = " ".join([korean] * 3)
    cols = suspicion.score(pa.table({"text": [text]}), CFG)
    assert cols[suspicion.WORDS].to_pylist()[0] >= CFG.min_words
    assert cols[suspicion.LOCAL_REPEAT].to_pylist() == [None]
    order = cols[suspicion.ORDER_Z].to_pylist()[0]
    assert order is not None and cols[suspicion.SCORE].to_pylist() == [order] and order < 0


def test_route_score_adds_the_combiner_for_long_documents_only() -> None:
    combiner_cfg = load_config().combiner
    # No topic reuse, every content word new, quotes left open: high combiner log-odds.
    signals = {
        "coherence_topic_reuse": [0.0, 0.0, 0.0],
        "coherence_far_reuse": [0.0, 0.0, 0.0],
        "coherence_type_ratio": [1.0, 1.0, 1.0],
        "coherence_quote_imbalance": [0.5, 0.5, 0.5],
        "language_confidence": [0.9, 0.9, 0.9],
    }
    words = [CFG.combiner_min_words - 1, CFG.combiner_min_words, 50]
    table = pa.table(
        {
            suspicion.SCORE: pa.array([0.5, 0.5, None], pa.float32()),
            suspicion.WORDS: pa.array(words, pa.int32()),
            **signals,
        }
    )
    short, long, missing = suspicion.route_score(table, CFG, combiner_cfg)
    assert short == 0.5  # too short: the combiner is not asked
    assert long > 2.0  # the combiner's standardised log-odds, far above the score
    assert missing == suspicion.NULL_SCORE
    no_terms = combiner_cfg.cheap.model_copy(update={"terms": []})
    off = suspicion.route_score(table, CFG, combiner_cfg.model_copy(update={"cheap": no_terms}))
    assert list(off) == [0.5, 0.5, suspicion.NULL_SCORE]


def test_score_is_deterministic_and_reads_at_most_max_words() -> None:
    long_text = PROSE + " " + _salad(PROSE.split(), 3000, 4)
    cut = suspicion.Config(max_words=len(suspicion.words(PROSE, 10**6)))
    a = suspicion.score(pa.table({"text": [long_text]}), cut)[suspicion.SCORE][0].as_py()
    b = suspicion.score(pa.table({"text": [PROSE]}), cut)[suspicion.SCORE][0].as_py()
    assert a == b  # the salad after max_words is never read
    again = suspicion.score(pa.table({"text": [long_text]}), CFG)[suspicion.SCORE][0].as_py()
    assert again == suspicion.score(pa.table({"text": [long_text]}), CFG)[suspicion.SCORE][0].as_py()
