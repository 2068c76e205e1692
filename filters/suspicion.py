"""suspicion score: a cheap guess, for every document, of whether the language model would flag it.

The LM stage (filters/perplexity.py) costs about a second per document on two CPU cores; this score
costs well under a millisecond. It ranks documents so that the LM scores only the most suspicious
share (`perplexity.route: suspicious`, `perplexity.budget`; the choice itself is
pipelines/cascade.py). It only measures: it never quarantines anything.

What the LM finds in documents the cheap detectors leave undecided is word-level babble: word salad
(P-SUDO-adapt/unigram) and Markov babble (P-SUDO-adapt/markov, P-TARPIT), flagged as
`perplexity:babble` or `perplexity:incoherent`. Both are made of real words in an order that carries
little structure. Real text repeats phrases, so the words in their order compress better than the
same words shuffled; babble compresses about as well either way. How much better depends on length
(a longer text has more phrases to repeat), so the ratio is compared with real text of the same
length:

``suspicion_words``        words read (lower case, at most `max_words`).
``suspicion_order_ratio``  zlib size of those words (one space apart) in their order / zlib size of
                           the same words shuffled with a fixed seed. Real text 0.9-0.97, babble close
                           to 1. Null under `min_words` words: too short for zlib to see phrases (and
                           for the LM's incoherence rule, which needs 128 scored tokens).
``suspicion_order_z``      (order ratio - real text's median at that length) / real text's spread at
                           that length (ORDER_CURVE, fitted on one clean source, bench/fit_suspicion.py).
``suspicion_score``        the order z; NULL_SCORE where it is null (routed last).

:func:`route_score`, what the cascade ranks by, adds the combiner (filters/combiner.py, cheap
coherence signals fitted on other babble): for documents of `combiner_min_words` words or more it is
the larger of the order z and the combiner's log-odds standardised the same way (`combiner_center`,
`combiner_scale`, fitted on the same clean source). Below that length the combiner ranks short news
pages with a boilerplate header above babble. Other signals were measured and left out
(bench/RESULTS.md "cascade"): a word bigram model's pointwise mutual information (trained on
Wikipedia), the compression ratio of the text itself, and the language detector's confidence each
ranked ordinary pages of other languages and scripts above babble.

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

from poisonguard.filters import combiner
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

PREFIX = "suspicion_"
SCORE = PREFIX + "score"
WORDS = PREFIX + "words"
ORDER_RATIO = PREFIX + "order_ratio"
ORDER_Z = PREFIX + "order_z"
NULL_SCORE = -10.0  # the score of a document too short to judge: routed after every other
_WORD = re.compile(r"\w+")
SIGNAL_SCHEMA = pa.schema(
    [(WORDS, pa.int32()), (ORDER_RATIO, pa.float32()), (ORDER_Z, pa.float32()), (SCORE, pa.float32())]
)
# Real text's order ratio by length: (words, median, robust spread) of the Debian handbook's documents
# (9 languages) cut to that many words; printed by bench/fit_suspicion.py. Interpolated on log words.
ORDER_CURVE = (
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
    min_words: int = Field(150, ge=10, description="documents with fewer words get no order ratio")
    combiner_min_words: int = Field(
        400, ge=0, description="documents with at least this many words are also ranked by the combiner"
    )
    combiner_center: float = Field(-4.3810, description="clean documents' median combiner log-odds")
    combiner_scale: float = Field(2.5509, gt=0, description="clean documents' spread of combiner log-odds")


def words(text: str, limit: int) -> list[str]:
    """The first `limit` words of `text`, lower case."""
    out: list[str] = []
    for m in _WORD.finditer(text.lower()):
        out.append(m.group())
        if len(out) >= limit:
            break
    return out


def order_ratio(tokens: list[str], min_words: int) -> float | None:
    """zlib size of the words in their order / zlib size of the same words shuffled (fixed seed)."""
    if len(tokens) < min_words:
        return None
    shuffled = list(tokens)
    random.Random(0).shuffle(shuffled)
    ordered = zlib.compress(" ".join(tokens).encode("utf-8", "surrogatepass"), 6)
    mixed = zlib.compress(" ".join(shuffled).encode("utf-8", "surrogatepass"), 6)
    return len(ordered) / len(mixed)


def order_z(ratio: float | None, n_words: int) -> float | None:
    """How far above real text of the same length the order ratio is, in real text's spreads."""
    if ratio is None:
        return None
    at = math.log(min(max(n_words, ORDER_CURVE[0][0]), ORDER_CURVE[-1][0]))
    grid = [math.log(n) for n, _, _ in ORDER_CURVE]
    median = float(np.interp(at, grid, [m for _, m, _ in ORDER_CURVE]))
    spread = float(np.interp(at, grid, [s for _, _, s in ORDER_CURVE]))
    return (ratio - median) / spread


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Detector contract: the suspicion columns for every row (reads ``text``)."""
    counts, ratios, zs = [], [], []
    for text in batch.column("text").to_pylist():
        tokens = words(text or "", cfg.max_words)
        ratio = order_ratio(tokens, cfg.min_words)
        counts.append(len(tokens))
        ratios.append(ratio)
        zs.append(order_z(ratio, len(tokens)))
    return {
        WORDS: pa.array(counts, pa.int32()),
        ORDER_RATIO: pa.array(ratios, pa.float32()),
        ORDER_Z: pa.array(zs, pa.float32()),
        SCORE: pa.array([z if z is not None else NULL_SCORE for z in zs], pa.float32()),
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


DECLARED_SIGNALS = (Signal(WORDS), Signal(ORDER_RATIO), Signal(ORDER_Z), Signal(SCORE))
DETECTOR = Spec(
    name="suspicion", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
