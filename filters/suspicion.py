"""suspicion score: a cheap guess, for every document, of whether the language model would flag it.

The LM stage (filters/perplexity.py) costs about a second per document on two CPU cores; this score
costs well under a millisecond. It ranks documents so that the LM scores only the most suspicious
share (`perplexity.route: suspicious`, `perplexity.budget`; the choice itself is
pipelines/cascade.py). It only measures: it never quarantines anything.

What the LM finds in documents the cheap detectors leave undecided is word-level babble: word salad
(P-SUDO-adapt/unigram) and Markov babble (P-SUDO-adapt/markov, P-TARPIT), flagged as
`perplexity:babble` or `perplexity:incoherent` (a long context barely helps the LM predict the
text). Both lack what a real page has at every point: a subject. A real text names its subject's
words again within a few sentences ("tarot ... the tarot ... tarot games"); babble drawn from a
whole corpus seldom does, even where every few words of it read fluently. And real text repeats
phrases, so its words in their order compress better than the same words shuffled; a salad of a few
words repeats them by chance, but compresses as well in any order. Both signals depend on length (a
longer text has more to repeat), so each is compared with real text of the same length:

``suspicion_words``         words read (lower case, at most `max_words`).
``suspicion_local_repeat``  the share of content words (core/words.py: 5 characters or more) that
                            already occurred among the `REPEAT_WINDOW` words before them (the
                            handbook's median 0.13-0.17; P-BABBLE-X chains' 0.02-0.03).
                            Null under `min_words` words: too few to count (the LM's incoherence
                            rule needs 128 scored tokens, about 100 words); null too under
                            `MIN_CONTENT_WORDS` content words (languages of short words, such as
                            Korean, have few: the score is then the order z alone).
``suspicion_repeat_z``      (real text's median at that length - local repeat) / real text's spread
                            at that length (REPEAT_CURVE): high = less reuse than real text.
``suspicion_order_ratio``   zlib size of the words (one space apart) in their order / zlib size of the
                            same words shuffled with a fixed seed. Real text 0.9-0.97, salad ~1.
``suspicion_order_z``       (order ratio - real text's median at that length) / its spread
                            (ORDER_CURVE).
``suspicion_score``         the repeat z; for a document that reuses its words nearby at least as
                            often as the median real text (repeat z <= 0), the order z where larger
                            (:func:`combined`). NULL_SCORE where null (routed last).

:func:`route_score`, what the cascade ranks by, adds the combiner (filters/combiner.py, cheap
coherence signals fitted on other babble): for documents of `combiner_min_words` words or more it is
the larger of the score and the combiner's log-odds standardised the same way (`combiner_center`,
`combiner_scale`, fitted on the same clean source); it lifts long Markov babble over a small corpus,
which copies long phrases and so reuses words nearby like real text. Below that length the combiner
ranks short news pages with a boilerplate header above babble.

All constants are fitted on one clean source, the Debian handbook (bench/fit_suspicion.py). The
local repeat does most of the work: on two poisonbench samples the route ranks every babble page the
LM flags above the top 10% of the whole clean base (bench/RESULTS.md "cascade"), where the order
ratio with the combiner lost up to 8 points of P-TARPIT (pages stitched from several short
articles have order ratios like babble's). The order z speaks only where the local repeat is at or
above real text's median: a salad of a few words repeats them nearby by chance, but compresses as
well in any order; letting it speak everywhere lifts those stitched pages above babble again. Other
signals were measured and left out (bench/RESULTS.md "cascade"): a word bigram model's pointwise
mutual information (trained on Wikipedia), the compression ratio of the text itself, and the
language detector's confidence (each ranked ordinary pages of other languages and scripts above
babble).

The budget turns the ranking into a choice per chunk at run time, so no threshold is needed.
"""

from __future__ import annotations

import math
import random
import re
import zlib

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.core.words import is_content_word
from poisonguard.filters import combiner
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

PREFIX = "suspicion_"
SCORE = PREFIX + "score"
WORDS = PREFIX + "words"
LOCAL_REPEAT = PREFIX + "local_repeat"
REPEAT_Z = PREFIX + "repeat_z"
ORDER_RATIO = PREFIX + "order_ratio"
ORDER_Z = PREFIX + "order_z"
NULL_SCORE = -10.0  # the score of a document too short to judge: routed after every other
REPEAT_WINDOW = 50  # words looked back for an earlier use (a paragraph or so)
# Fewer content words than this say nothing about reuse: a language of short words (Korean: 2-4
# syllables) would read as "never reuses a word", babble's mark, and crowd babble out of the budget.
MIN_CONTENT_WORDS = 20
_WORD = re.compile(r"\w+")
SIGNAL_SCHEMA = pa.schema(
    [(WORDS, pa.int32())] + [(c, pa.float32()) for c in (LOCAL_REPEAT, REPEAT_Z, ORDER_RATIO, ORDER_Z, SCORE)]
)
Curve = tuple[tuple[int, float, float], ...]
# Real text's local repeat by length: (words, median, robust spread) of the Debian handbook's documents
# (9 languages) cut to that many words; printed by bench/fit_suspicion.py. Interpolated on log words.
REPEAT_CURVE: Curve = (
    (100, 0.1311, 0.0782),
    (150, 0.1408, 0.0715),
    (200, 0.1547, 0.0672),
    (300, 0.1613, 0.0681),
    (450, 0.1618, 0.0634),
    (700, 0.1661, 0.0596),
    (1000, 0.1658, 0.0528),
    (1500, 0.1748, 0.0405),
)
# Real text's order ratio by length, the same way.
ORDER_CURVE: Curve = (
    (100, 0.9806, 0.0145),
    (150, 0.9745, 0.0135),
    (200, 0.9699, 0.0141),
    (300, 0.9617, 0.0164),
    (450, 0.9520, 0.0196),
    (700, 0.9401, 0.0199),
    (1000, 0.9290, 0.0221),
    (1500, 0.9169, 0.0242),
)


class Config(DetectorConfig):
    """Knobs of the suspicion score (section `suspicion:`; the routing knobs are `perplexity.route`
    and `perplexity.budget`)."""

    max_words: int = Field(1500, ge=16, description="words per document the score reads")
    min_words: int = Field(100, ge=10, description="documents with fewer words get no score")
    combiner_min_words: int = Field(
        400, ge=0, description="documents with at least this many words are also ranked by the combiner"
    )
    combiner_center: float = Field(-2.7344, description="clean documents' median combiner log-odds")
    combiner_scale: float = Field(1.3197, gt=0, description="clean documents' spread of combiner log-odds")


def words(text: str, limit: int) -> list[str]:
    """The first `limit` words of `text`, lower case."""
    out: list[str] = []
    for m in _WORD.finditer(text.lower()):
        out.append(m.group())
        if len(out) >= limit:
            break
    return out


def local_repeat(tokens: list[str], min_words: int) -> float | None:
    """Share of content words that occurred among the REPEAT_WINDOW words before them."""
    if len(tokens) < min_words:
        return None
    last: dict[str, int] = {}
    content = repeats = 0
    for i, word in enumerate(tokens):
        if not is_content_word(word):
            continue
        content += 1
        seen = last.get(word)
        if seen is not None and i - seen <= REPEAT_WINDOW:
            repeats += 1
        last[word] = i
    return repeats / content if content >= MIN_CONTENT_WORDS else None


def order_ratio(tokens: list[str], min_words: int) -> float | None:
    """zlib size of the words in their order / zlib size of the same words shuffled (fixed seed)."""
    if len(tokens) < min_words:
        return None
    shuffled = list(tokens)
    random.Random(0).shuffle(shuffled)
    ordered = zlib.compress(" ".join(tokens).encode("utf-8", "surrogatepass"), 6)
    mixed = zlib.compress(" ".join(shuffled).encode("utf-8", "surrogatepass"), 6)
    return len(ordered) / len(mixed)


def repeat_z(share: float | None, n_words: int) -> float | None:
    """How far below real text of the same length the local repeat is, in real text's spreads."""
    return None if share is None else -_standardised(share, n_words, REPEAT_CURVE)


def order_z(ratio: float | None, n_words: int) -> float | None:
    """How far above real text of the same length the order ratio is, in real text's spreads."""
    return None if ratio is None else _standardised(ratio, n_words, ORDER_CURVE)


def _standardised(value: float, n_words: int, curve: Curve) -> float:
    at = math.log(min(max(n_words, curve[0][0]), curve[-1][0]))
    grid = [math.log(n) for n, _, _ in curve]
    median = float(np.interp(at, grid, [m for _, m, _ in curve]))
    spread = float(np.interp(at, grid, [s for _, _, s in curve]))
    return (value - median) / spread


def combined(share_z: float | None, ratio_z: float | None) -> float:
    """suspicion_score: the repeat z; where the document reuses its words nearby at least as often as
    the median real text (repeat z <= 0), the order z if larger: that reuse may be chance (a salad of
    a few words) rather than a subject. The order z alone where the repeat z is null but the order z
    is not (too few content words); NULL_SCORE where the order z is null (under min_words)."""
    if ratio_z is None:
        return NULL_SCORE
    if share_z is None:
        return ratio_z
    return share_z if share_z > 0 else max(share_z, ratio_z)


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Detector contract: the suspicion columns for every row (reads ``text``)."""
    counts, shares, ratios, share_zs, ratio_zs = [], [], [], [], []
    for text in batch.column("text").to_pylist():
        tokens = words(text or "", cfg.max_words)
        counts.append(len(tokens))
        shares.append(local_repeat(tokens, cfg.min_words))
        ratios.append(order_ratio(tokens, cfg.min_words))
        share_zs.append(repeat_z(shares[-1], len(tokens)))
        ratio_zs.append(order_z(ratios[-1], len(tokens)))
    scores = [combined(a, b) for a, b in zip(share_zs, ratio_zs, strict=True)]
    return {
        WORDS: pa.array(counts, pa.int32()),
        LOCAL_REPEAT: pa.array(shares, pa.float32()),
        REPEAT_Z: pa.array(share_zs, pa.float32()),
        ORDER_RATIO: pa.array(ratios, pa.float32()),
        ORDER_Z: pa.array(ratio_zs, pa.float32()),
        SCORE: pa.array(scores, pa.float32()),
    }


ROUTE_COLUMNS = (SCORE, WORDS)  # with the combiner's term columns: what route_score reads


def route_score(table: pa.Table, cfg: Config, combiner_cfg: combiner.Config) -> np.ndarray:
    """What the LM cascade ranks by: suspicion_score, or, for documents of `combiner_min_words` words
    or more, the combiner's standardised log-odds where that is larger."""
    base = np.nan_to_num(
        table.column(SCORE).to_numpy(zero_copy_only=False).astype(np.float64), nan=NULL_SCORE
    )
    # Routing comes before the LM: the combiner's cheap model (no LM columns yet).
    if not combiner_cfg.cheap.terms or WORDS not in table.column_names:
        return base
    counts = np.nan_to_num(table.column(WORDS).to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    odds = np.array(
        [np.nan if v is None else v for v in combiner.score(table, combiner_cfg)], dtype=np.float64
    )
    z = (odds - cfg.combiner_center) / cfg.combiner_scale
    return np.where((counts >= cfg.combiner_min_words) & ~np.isnan(z), np.fmax(base, z), base)


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """No reasons: the score only routes documents to the LM (pipelines/cascade.py)."""
    return [[] for _ in range(signals.num_rows)]


DECLARED_SIGNALS = tuple(Signal(c) for c in SIGNAL_SCHEMA.names)
DETECTOR = Spec(
    name="suspicion", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
