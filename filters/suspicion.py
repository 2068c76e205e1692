"""suspicion score: a cheap guess, for every document, of whether the language model would flag it.

The LM stage (filters/perplexity.py) costs about a second per document on two CPU cores; this score
costs well under a millisecond. It ranks documents so that the LM scores only the most suspicious
share (`perplexity.route: suspicious`, `perplexity.budget`; the choice itself is
pipelines/cascade.py). It only measures: it never quarantines anything.

What the LM finds in documents the cheap detectors leave undecided is word-level babble: word salad
(P-SUDO-adapt/unigram) and Markov babble (P-SUDO-adapt/markov, P-TARPIT), flagged as
`perplexity:babble` or `perplexity:incoherent`. Both are made of real words in an order that carries
little structure. Real text repeats phrases, so the words in their order compress better than the
same words shuffled; babble compresses about as well either way. That ratio is the score:

``suspicion_order_ratio``  zlib size of the document's words (lower case, one space apart, the first
                           `max_words`) in their order / zlib size of the same words shuffled with a
                           fixed seed. Real text about 0.9, babble close to 1. Null under `min_words`
                           words: too short for zlib to see phrases (and for the LM's incoherence
                           rule, which needs 128 scored tokens).
``suspicion_score``        the order ratio; 0 where it is null (never preferred by the budget).

Nothing is fitted: no model, no threshold. The budget turns the score into a choice per chunk at run
time, so the score needs no calibration on any source. Other signals were measured and left out
(bench/RESULTS.md "cascade"): a word bigram model's pointwise mutual information (trained on
Wikipedia), the compression ratio of the text itself, and the language detector's confidence and
mixed share each ranked ordinary pages of other languages and scripts above babble, and taking the
largest of several ranks routed fewer of the documents the LM flags than the order ratio alone.
"""

from __future__ import annotations

import random
import re
import zlib

import pyarrow as pa
from pydantic import Field

from poisonguard.filters.contract import DetectorConfig, Signal, Spec

PREFIX = "suspicion_"
SCORE = PREFIX + "score"
ORDER_RATIO = PREFIX + "order_ratio"
_WORD = re.compile(r"\w+")
SIGNAL_SCHEMA = pa.schema([(ORDER_RATIO, pa.float32()), (SCORE, pa.float32())])


class Config(DetectorConfig):
    """Knobs of the suspicion score (section `suspicion:`; the routing knobs are `perplexity.route`
    and `perplexity.budget`)."""

    max_words: int = Field(1500, ge=16, description="words per document the score reads")
    min_words: int = Field(150, ge=10, description="documents with fewer words get no order ratio")


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


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Detector contract: suspicion_order_ratio and suspicion_score for every row (reads ``text``)."""
    ratios = [
        order_ratio(words(t or "", cfg.max_words), cfg.min_words) for t in batch.column("text").to_pylist()
    ]
    return {
        ORDER_RATIO: pa.array(ratios, pa.float32()),
        SCORE: pa.array([r if r is not None else 0.0 for r in ratios], pa.float32()),
    }


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """No reasons: the score only routes documents to the LM (pipelines/cascade.py)."""
    return [[] for _ in range(signals.num_rows)]


DECLARED_SIGNALS = (Signal(ORDER_RATIO), Signal(SCORE))
DETECTOR = Spec(
    name="suspicion", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
