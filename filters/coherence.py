"""coherence detector: long-range coherence of prose, without a language model (docs/THREATS.md P-BABBLE-X).

Markov babble (tarpits such as Nepenthes and iocaine, trained on whatever corpus their operator gives
them) is locally fluent: every few words could come from a real text. What it lacks is a subject: a
real page keeps coming back to its topic words and its people, and it closes what it opens. These
signals measure that on the document alone, so they do not depend on the chain's training corpus:

``coherence_topic_reuse``
    Content words (5+ letters, lower-cased) in four equal parts of the document: the share of each
    part's content words that occur in another part, averaged. Real pages reuse their topic words
    (median ~0.3 on the clean base); babble from a large corpus seldom does (~0.08).
``coherence_far_reuse``
    The same between the first and the last quarter only (topic kept to the end).
``coherence_type_ratio``
    Distinct content words / content words (babble draws from a whole corpus: closer to 1).
``coherence_entity_reuse``
    Capitalised words not at a sentence start (names, places): the share that occur twice or more.
    Null with fewer than `min_entities`.
``coherence_quote_imbalance``
    Share of paragraphs with an odd number of straight double quotes (a chain opens quotes it does
    not close).
``coherence_alnum_mix_share``
    Share of whitespace tokens (punctuation stripped) that mix letters and digits (``a8f3k2``): a few
    in code and release notes (versions, hashes), most of a page of random alphanumeric tokens.
``coherence_content_words``
    Content words counted (the others are null below `min_content_words`: too short to judge).

Only documents written with spaces between words are measured (the content-word rule means little
for Chinese or Japanese). The detector only measures by default (``action: off``): on its own it
separates babble from clean prose far less well than the combiner that uses it (filters/combiner.py,
bench/RESULTS.md); ``action: quarantine`` applies the single-signal threshold below.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.filters.contract import DetectorConfig, Signal, Spec

PREFIX = "coherence_"
PARTS = 4
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_SENTENCE_END = re.compile(r"[.!?:]['\")\]”’»]*$")
_STRIP = "\"'()[]«»“”‘’*_,;:"
_PARAGRAPHS = re.compile(r"\n\s*\n")
_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")


class Config(DetectorConfig):
    action: Literal["off", "quarantine"] = Field(
        default="off", description="off: measure only (the combiner uses the signals)"
    )
    min_content_words: int = Field(default=40, ge=8, description="fewer content words: no signals")
    min_entities: int = Field(default=5, ge=2, description="fewer capitalised words: no entity reuse")
    max_chars: int = Field(default=20_000, ge=1000, description="only the first this many characters")
    max_topic_reuse: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="action quarantine: topic reuse below this -> coherence:no_topic",
    )


def _entities(text: str) -> list[str]:
    out = []
    sentence_start = True
    for raw in text.split():
        core = raw.strip(_STRIP)
        if not sentence_start and len(core) >= 3 and core.isalpha() and core[0].isupper():
            out.append(core)
        sentence_start = bool(_SENTENCE_END.search(raw))
    return out


def measure(text: str, cfg: Config) -> dict[str, Any]:
    """The signals of one document (see the module doc); nulls where it is too short to judge."""
    text = text[: cfg.max_chars]
    content = [w.lower() for w in _WORD.findall(text) if len(w) >= 5]
    out: dict[str, Any] = {"content_words": len(content)}
    tokens = [t.strip(_STRIP + ".!?") for t in text.split()]
    tokens = [t for t in tokens if t]
    if len(tokens) >= cfg.min_content_words:
        mixed = sum(1 for t in tokens if _DIGIT.search(t) and _LETTER.search(t))
        out["alnum_mix_share"] = mixed / len(tokens)
    if len(content) < cfg.min_content_words:
        return out
    n = len(content)
    parts = [content[i * n // PARTS : (i + 1) * n // PARTS] for i in range(PARTS)]
    sets = [set(p) for p in parts]
    reuse = []
    for i, part in enumerate(parts):
        others = set().union(*(sets[j] for j in range(PARTS) if j != i))
        reuse.append(sum(w in others for w in part) / len(part))
    out["topic_reuse"] = float(np.mean(reuse))
    far = [w in sets[0] for w in parts[-1]] + [w in sets[-1] for w in parts[0]]
    out["far_reuse"] = float(np.mean(far))
    out["type_ratio"] = len(set(content)) / n
    ents = _entities(text)
    if len(ents) >= cfg.min_entities:
        counts = Counter(ents)
        out["entity_reuse"] = sum(c for c in counts.values() if c >= 2) / len(ents)
    paras = [p for p in _PARAGRAPHS.split(text) if p.strip()]
    out["quote_imbalance"] = float(np.mean([p.count('"') % 2 for p in paras])) if paras else 0.0
    return out


_COLUMNS = {
    "topic_reuse": pa.float32(),
    "far_reuse": pa.float32(),
    "type_ratio": pa.float32(),
    "entity_reuse": pa.float32(),
    "quote_imbalance": pa.float32(),
    "alnum_mix_share": pa.float32(),
    "content_words": pa.int32(),
}
SIGNAL_COLUMNS = tuple(PREFIX + name for name in _COLUMNS)


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    rows = [measure(t if isinstance(t, str) else "", cfg) for t in batch.column("text").to_pylist()]
    return {PREFIX + name: pa.array([r.get(name) for r in rows], typ) for name, typ in _COLUMNS.items()}


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    n = signals.num_rows
    col = PREFIX + "topic_reuse"
    if cfg.action == "off" or col not in signals.column_names:
        return [[] for _ in range(n)]
    return [
        ["coherence:no_topic"] if v is not None and v < cfg.max_topic_reuse else []
        for v in signals.column(col).to_pylist()
    ]


DECLARED_SIGNALS = tuple(
    Signal(col, knob="max_topic_reuse", direction="below") if col.endswith("topic_reuse") else Signal(col)
    for col in SIGNAL_COLUMNS
)
DETECTOR = Spec(
    name="coherence", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
