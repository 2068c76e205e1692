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
    Share of paragraphs with an odd number of double quotation marks, straight or curly (a chain
    opens quotes it does not close).
``coherence_alnum_mix_share``
    Share of whitespace tokens (punctuation stripped) that mix letters and digits (``a8f3k2``): a few
    in code and release notes (versions, hashes), most of a page of random alphanumeric tokens.
``coherence_quote_errors``
    Double quotation marks out of order, per 1,000 characters: a closing mark with no quotation open,
    or an opening mark while one is open (except at a paragraph's start, where fiction reopens a
    quotation that runs on). A chain that walks in and out of its corpus's dialogue opens and closes
    quotations at random; real dialogue alternates. Which mark is which is read from the spaces and
    punctuation around it, and from a curly mark's glyph only where they do not tell (languages
    differ in which curly mark opens); escaped marks (``\\"``) and empty pairs (``href=""``) are
    skipped. One error per page is excused (a typo, or a passage that begins inside a quotation: it
    took a clean dialogue and a poem over the line; a chain leaves many).
``coherence_bracket_errors``
    Round brackets that do not match within their paragraph (a ``)`` with none open, a ``(`` never
    closed), per 1,000 characters; emoticons (``:-)``), list markers (``1)``, ``b)``) and what a
    cut at either end of the text would leave excused. A chain built on whitespace tokens cuts
    ``f(a, b)`` and asides in two; documentation and forum posts close what they open. A quoted
    bracket is a mention (``expected '('``), not counted. Only one
    close at the start and one open at the end are excused, so a one-paragraph page is judged too.
``coherence_sentence_length_cv``
    Spread of sentence lengths in words (standard deviation / mean; null under 5 sentences). A chain
    ends a sentence whenever it draws a token with a full stop, so its sentence lengths are close to
    geometric (spread near 1); writers' lengths vary less.
``coherence_long_word_reuse``
    Words of 8+ letters (rare in any language's running text: topic words, names, identifiers): the
    share of their occurrences that are of a word used twice or more (null under 15 such words). A
    page repeats its rare words; a chain draws them from its whole corpus.
``coherence_content_words``
    Content words counted (the others are null below `min_content_words`: too short to judge).

The quote and bracket signals skip the lines a reply quotes (``> ...``): the replier cut them anywhere.

Only documents written with spaces between words are measured (the content-word rule means little
for Chinese or Japanese): the quote, bracket and sentence signals need `min_content_words`
whitespace tokens, the reuse signals as many content words. The detector only measures by default
(``action: off``): on its own it separates babble from clean prose far less well than the combiner
that uses it (filters/combiner.py, bench/RESULTS.md); ``action: quarantine`` applies the
single-signal threshold below.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.core.words import content_words
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

PREFIX = "coherence_"
PARTS = 4
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_SENTENCE_END = re.compile(r"[.!?:]['\")\]”’»]*$")
_STRIP = "\"'()[]«»“”‘’*_,;:"
_PARAGRAPHS = re.compile(r"\n\s*\n")
_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
# the side of a mark is read from the spaces around it, not its glyph: Arabic text opens with ” and
# German with „, and both close with “
_QUOTE = re.compile(r'["“”„]')
_SMILEY_CLOSE = "\x00"
_BRACKET = re.compile(r"[()\x00]")
# emoticons, and a bracketed run of face parts such as (^_^): not asides
_EMOTICON = re.compile(r"(?<!\S)[:;=][-o^']?[()\[\]pPD]+|\([-^_o]{1,3}\)")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+")
# a mark opens after a space, an opening bracket, a dash or `=`/`:` (KEY="value"); it closes before a
# space, a closing bracket or a stop, comma or dash (Arabic and CJK ones included)
_OPENS_BEFORE = "=:"
_OPENS_AFTER_CATEGORIES = ("Ps", "Pi", "Pd")
_CLOSES_BEFORE = ".,;:!?…—–-،؛؟。，、；：！？"
_CLOSES_BEFORE_CATEGORIES = ("Pe", "Pf")
_CURLY_SIDE = {"“": "open", "„": "open", "”": "close"}
MIN_SENTENCES = 5
LONG_WORD = 8
MIN_LONG_WORDS = 15


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


def _quote_kinds(paragraph: str) -> list[str]:
    """'open' / 'close' for each double quotation mark whose side the spaces and punctuation around
    it tell; where they do not (both sides alike), a curly mark's glyph, else it is skipped."""
    kinds = []
    paragraph = paragraph.replace('""', "  ")  # an empty pair (href="") says nothing
    for m in _QUOTE.finditer(paragraph):
        at = m.start()
        before = paragraph[at - 1] if at else " "
        after = paragraph[at + 1] if at + 1 < len(paragraph) else " "
        if before == "\\":  # an escaped mark inside code: \"%r\"
            continue
        opens = before.isspace() or before in _OPENS_BEFORE
        opens = opens or unicodedata.category(before) in _OPENS_AFTER_CATEGORIES
        closes = after.isspace() or after in _CLOSES_BEFORE
        closes = closes or unicodedata.category(after) in _CLOSES_BEFORE_CATEGORIES
        if opens != closes:
            kinds.append("open" if opens else "close")
        elif m.group() in _CURLY_SIDE:  # unspaced scripts (Chinese “Latin 1”）): the glyph decides
            kinds.append(_CURLY_SIDE[m.group()])
    return kinds


def quote_errors(paragraphs: list[str]) -> int:
    """Quotation marks out of order: a close with none open, an open while one is open (not first)."""
    errors = 0
    for para in paragraphs:
        inside = False
        for k, kind in enumerate(_quote_kinds(para)):
            errors += (kind == "open" and inside and k > 0) or (kind == "close" and not inside)
            inside = kind == "open"
    return errors


def quote_imbalance(paragraphs: list[str]) -> float:
    """Share of paragraphs with an odd number of double quotation marks (a chain opens quotations it
    does not close). Unlike the errors, no odd paragraph is excused: chains over text with few
    quotations leave one, and excusing it cost 3-12 points of held-out recall (bench/RESULTS.md)."""
    if not paragraphs:
        return 0.0
    return float(np.mean([len(_QUOTE.findall(p.replace('""', ""))) % 2 for p in paragraphs]))


def _is_list_marker(before: str) -> bool:
    tail = before.rsplit(None, 1)[-1] if before.strip() else ""
    return len(tail) <= 3 and tail.isalnum()


def _smiley(m: re.Match[str]) -> str:
    face = m.group()
    return _SMILEY_CLOSE if face[0] in ":;=" and face.endswith(")") else " "


def _quoted(para: str, at: int) -> bool:
    """A bracket between quotation marks is named, not used: ``expected '('``."""
    return 0 < at < len(para) - 1 and para[at - 1] == para[at + 1] and para[at - 1] in "'\"`"


def bracket_errors(paragraphs: list[str]) -> int:
    """Round brackets unmatched within their paragraph. Excused: emoticons, ``1)`` list markers, and
    what a cut at either end of the text would leave: one close before any open in the first
    paragraph (the text began inside an aside), one open left at the end of the last (it ended
    inside one). Only one each: a cut leaves one aside open, a chain leaves many."""
    errors = 0
    last = len(paragraphs) - 1
    for k, para in enumerate(paragraphs):
        # a smiley may also close an aside "(like this :)": it closes one if one is open
        para = _EMOTICON.sub(_smiley, para)
        depth = 0
        opened = False  # any "(" so far in this paragraph
        for m in _BRACKET.finditer(para):
            if _quoted(para, m.start()):
                continue
            if m.group() == "(":
                depth += 1
                opened = True
            elif depth:
                depth -= 1
            elif m.group() == _SMILEY_CLOSE or _is_list_marker(para[: m.start()]):
                continue
            elif k == 0 and not opened:  # the text began inside an aside: one close is excused
                opened = True
            else:
                errors += 1
        errors += max(0, depth - 1) if k == last else depth
    return errors


def sentence_length_cv(text: str) -> float | None:
    """Standard deviation / mean of sentence lengths in words; None under MIN_SENTENCES sentences."""
    lengths = [len(s.split()) for s in _SENTENCE_SPLIT.split(" ".join(text.split())) if s.strip()]
    if len(lengths) < MIN_SENTENCES:
        return None
    return float(np.std(lengths) / np.mean(lengths))


def long_word_reuse(text: str) -> float | None:
    """Share of 8+-letter word occurrences whose word occurs twice or more; None under 15 of them."""
    words = [w.lower() for w in _WORD.findall(text) if len(w) >= LONG_WORD]
    if len(words) < MIN_LONG_WORDS:
        return None
    counts = Counter(words)
    return sum(c for c in counts.values() if c >= 2) / len(words)


def own_paragraphs(paragraphs: list[str]) -> list[str]:
    """The paragraphs without the lines a reply quotes (``> ...``): the replier cut them anywhere, so
    their quotation marks and brackets are left open by the cut, not by the writer. Only where the
    quoted lines are under half of the text (:data:`MAX_QUOTED_SHARE`): a reply quotes less than it
    writes, and a page quoted line by line (babble behind ``> ``) is judged whole."""
    lines = [ln for p in paragraphs for ln in p.split("\n")]
    quoted = sum(len(ln) for ln in lines if _reply_quote(ln))
    if quoted >= MAX_QUOTED_SHARE * max(1, sum(len(ln) for ln in lines)):
        return paragraphs
    kept = ["\n".join(ln for ln in p.split("\n") if not _reply_quote(ln)) for p in paragraphs]
    return [p for p in kept if p.strip()]


MAX_QUOTED_SHARE = 0.5


def _reply_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def _structure(text: str, own: list[str], tokens: int, min_tokens: int) -> dict[str, Any]:
    """The signals of sentence and bracket structure (per 1,000 characters where a rate); ``own``:
    the paragraphs without a reply's quoted lines (:func:`own_paragraphs`). One quotation mark out
    of order is excused: a typo, or a passage that begins inside a quotation (a chain leaves many)."""
    if tokens < min_tokens:
        return {}
    per_kchar = 1000 / max(1, len(text))
    out: dict[str, Any] = {
        "quote_errors": max(0, quote_errors(own) - 1) * per_kchar,
        "bracket_errors": bracket_errors(own) * per_kchar,
        "sentence_length_cv": sentence_length_cv(text),
        "long_word_reuse": long_word_reuse(text),
    }
    return {k: v for k, v in out.items() if v is not None}


def measure(text: str, cfg: Config) -> dict[str, Any]:
    """The signals of one document (see the module doc); nulls where it is too short to judge."""
    text = text[: cfg.max_chars]
    content = [w.lower() for w in content_words(_WORD.findall(text))]  # length before lower case
    out: dict[str, Any] = {"content_words": len(content)}
    tokens = [t.strip(_STRIP + ".!?") for t in text.split()]
    tokens = [t for t in tokens if t]
    own = own_paragraphs([p for p in _PARAGRAPHS.split(text) if p.strip()])
    if len(tokens) >= cfg.min_content_words:
        mixed = sum(1 for t in tokens if _DIGIT.search(t) and _LETTER.search(t))
        out["alnum_mix_share"] = mixed / len(tokens)
    out |= _structure(text, own, len(tokens), cfg.min_content_words)
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
    out["quote_imbalance"] = quote_imbalance(own)
    return out


_COLUMNS = {
    "topic_reuse": pa.float32(),
    "far_reuse": pa.float32(),
    "type_ratio": pa.float32(),
    "entity_reuse": pa.float32(),
    "quote_imbalance": pa.float32(),
    "alnum_mix_share": pa.float32(),
    "quote_errors": pa.float32(),
    "bracket_errors": pa.float32(),
    "sentence_length_cv": pa.float32(),
    "long_word_reuse": pa.float32(),
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
