"""unicode detector: characters used to smuggle or disguise text (docs/THREATS.md P-UNI).

Counted per document:

- tag characters U+E0000-E007F (invisible; U+E0020-E007E spell ASCII: "ASCII smuggling"), except
  the emoji subdivision flags (black flag U+1F3F4, 2-6 tag letters/digits, cancel tag U+E007F);
- bidi controls: the overrides LRO/RLO (U+202D, U+202E) always (Trojan Source, CVE-2021-42574);
  embeddings (U+202A-202C) and isolates (U+2066-2069) only in documents without right-to-left
  letters; the marks LRM/RLM/ALM (U+200E, U+200F, U+061C) only inside a word of such a document.
  Arabic, Persian and Hebrew pages use them legitimately, also next to embedded Latin words
  (measured on the Debian handbook: 12% of the Arabic pages carry RLM before English names, some
  with no Arabic letter on the page; a Persian one a PDF);
- zero-width characters inside words (U+200B-200D, U+2060, U+FEFF other than a leading BOM), except
  ZWNJ/ZWJ next to letters of scripts that need them (Arabic/Persian, Indic, Southeast Asian) and
  ZWSP between letters of scripts written without spaces (Thai, Lao, Khmer, Myanmar, Tibetan, CJK).
  Emoji ZWJ sequences are never "inside a word" (emoji are not word characters);
- C0 control characters other than tab, newline and carriage return, and DEL (``control_chars``);
  C1 controls U+0080-009F apart (``c1_controls``): they are nearly always cp1252 text decoded as
  Latin-1 (U+0092 for an apostrophe, seen in the UDHR translations), so they do not flag by default;
- private-use and unassigned code points (unassigned by this Python's Unicode database; the emoji
  blocks U+1F000-1FAFF are left out because newer emoji may be unknown to it);
- variation selectors beyond the first after a character (a legitimate sequence has one; long runs
  encode bytes, the "emoji smuggling" trick);
- mixed-script words whose confusable skeleton (UTS #39, via ``confusable-homoglyphs``) is an ASCII
  word: Latin letters mixed with Cyrillic/Greek/... look-alikes, such as ``pаypаl`` with Cyrillic
  ``а``. To keep Russian keyboard-layout slips and scientific notation (``μm``, ``NF-κB``, ``λmax``)
  out, Latin letters must be at least half of the word and a Greek letter only counts between Latin
  letters.

Speed: a per-character Python loop is far too slow, so a lookup table over all code points, applied
to the text's code points with numpy, finds the candidate characters (most documents have none) and
the non-Latin look-alikes that touch a Latin letter; only those positions are examined in Python.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.core.batching import byte_groups
from poisonguard.core.normalize import confusable_map, fold_char, script_alias
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("kind", pa.string())])

KINDS = (
    "tag_chars",
    "bidi_controls",
    "zero_width_in_words",
    "control_chars",
    "c1_controls",
    "private_use",
    "variation_selectors",
    "confusable_words",
)


class Config(DetectorConfig):
    """Thresholds: a document is flagged ``unicode:<kind>`` when its count reaches ``<kind>_min``;
    ``null`` never flags that kind (the count is still recorded)."""

    tag_chars_min: int | None = Field(1, ge=1)
    bidi_controls_min: int | None = Field(1, ge=1)
    zero_width_in_words_min: int | None = Field(2, ge=1)
    control_chars_min: int | None = Field(1, ge=1)
    c1_controls_min: int | None = Field(None, ge=1)
    private_use_min: int | None = Field(None, ge=1)
    variation_selectors_min: int | None = Field(2, ge=1)
    confusable_words_min: int | None = Field(2, ge=1)
    max_spans: int = Field(64, ge=0, description="spans kept per document for the report")
    max_payload_chars: int = Field(4096, ge=0, description="decoded tag payload kept per document")


class Finding(NamedTuple):
    kind: str
    start: int
    end: int


class UnicodeReport(NamedTuple):
    counts: dict[str, int]
    spans: list[Finding]  # merged, in text order
    tag_payload: str | None


# --- character classes -----------------------------------------------------------------------

_TAG = (0xE0000, 0xE007F)
_BIDI_OVERRIDES = frozenset([0x202D, 0x202E])
_BIDI_IN_RTL = frozenset([0x202A, 0x202B, 0x202C, *range(0x2066, 0x206A)])
_BIDI_MARKS = frozenset([0x200E, 0x200F, 0x061C])
_ZERO_WIDTH = frozenset([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF])
_VARIATION = frozenset([*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])
_ALLOWED_CONTROLS = frozenset([0x09, 0x0A, 0x0D])
_EMOJI_BLOCKS = (0x1F000, 0x1FAFF)

# Right-to-left scripts: Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic, Arabic extended,
# presentation forms, and the RTL historic scripts of plane 1.
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff]")
# Scripts whose orthography uses ZWNJ/ZWJ inside words.
_JOINER_SCRIPTS = (
    (0x0600, 0x08FF),  # Arabic (Persian, Urdu, Kurdish ZWNJ), Syriac, Thaana, NKo
    (0x0900, 0x0DFF),  # Devanagari ... Sinhala
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x18AF),  # Khmer, Mongolian
    (0x1900, 0x1CFF),  # Limbu ... Ol Chiki, Balinese, Javanese-era Brahmic blocks
    (0xA800, 0xABFF),  # Syloti Nagri ... Meetei Mayek
    (0xFB50, 0xFDFF),  # Arabic presentation forms
    (0xFE70, 0xFEFC),
    (0x11000, 0x11FFF),  # Brahmi, Kaithi, Sharada, Grantha ...
)
# Scripts written without spaces, where ZWSP marks word boundaries.
_NO_SPACE_SCRIPTS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),  # CJK
    (0xAC00, 0xD7AF),  # Hangul
    (0x20000, 0x2FFFF),
)


def _in(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


class _Tables(NamedTuple):
    candidate: np.ndarray  # bool[0x110000]: a character worth a closer look
    look_alike: np.ndarray  # bool[0x110000]: non-Latin letter with an ASCII look-alike
    greek: frozenset[str]


@functools.cache
def _tables() -> _Tables:
    """Lookup tables over all code points, built once per process (a fraction of a second)."""
    cand = np.zeros(0x110000, dtype=bool)
    cand[_TAG[0] : _TAG[1] + 1] = True
    for cp in (*_BIDI_OVERRIDES, *_BIDI_IN_RTL, *_BIDI_MARKS, *_ZERO_WIDTH, *_VARIATION):
        cand[cp] = True
    for cp in (*range(0x20), *range(0x7F, 0xA0)):
        cand[cp] = cp not in _ALLOWED_CONTROLS
    cand[0xE000:0xF900] = True  # private use, BMP
    cand[0xF0000:0x110000] = True  # private use planes 15-16
    cand[0x40000:0xE0000] = True  # planes 4-13: unassigned
    category = unicodedata.category
    for lo, hi in ((0x0000, 0xD7FF), (0xE000, 0x3FFFF), (0xE0080, 0xEFFFF)):
        unassigned = [cp for cp in range(lo, hi + 1) if category(chr(cp)) == "Cn"]
        cand[np.array(unassigned, dtype=np.int64)] = True
    # possibly newer emoji than this Python knows; variation selectors are judged one by one
    cand[_EMOJI_BLOCKS[0] : _EMOJI_BLOCKS[1] + 1] = False
    cand[0xE0100:0xE01F0] = True
    # Non-Latin letters with an ASCII look-alike (Cyrillic а, Greek ο ...); Latin ones (ɪ, ı) are
    # not mixed-script and are left to the trigger normaliser.
    look = np.zeros(0x110000, dtype=bool)
    greek: set[str] = set()
    for ch, target in confusable_map().items():
        if ch.isalpha() and target.isalpha():
            script = script_alias(ch)
            if script not in ("LATIN", "COMMON", "INHERITED"):
                look[ord(ch)] = True
                if script == "GREEK":
                    greek.add(ch)
    return _Tables(cand, look, frozenset(greek))


def _code_points(text: str) -> np.ndarray:
    try:
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:  # lone surrogates
        return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive positions grouped into half-open runs."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) > 1)
    starts = np.concatenate(([positions[0]], positions[breaks + 1])).tolist()
    ends = (np.concatenate((positions[breaks], [positions[-1]])) + 1).tolist()
    return list(zip(starts, ends, strict=True))


# --- per-character decisions -----------------------------------------------------------------


def _is_word_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LMN"


def _invisible(ch: str) -> bool:
    cp = ord(ch)
    return cp in _ZERO_WIDTH or cp in _BIDI_MARKS or cp in _VARIATION


class _Neighbours:
    """The nearest visible characters on each side of an invisible one (zero-width, bidi mark,
    variation selector). The run last measured is kept: every character of a run has the same
    neighbours, so a run of n costs n steps, not n * n."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.run = (0, 0)  # [start, end) of the invisible run last measured

    def around(self, i: int) -> tuple[str, str]:
        text = self.text
        if not self.run[0] <= i < self.run[1]:
            start, end = i, i + 1
            while start > 0 and _invisible(text[start - 1]):
                start -= 1
            while end < len(text) and _invisible(text[end]):
                end += 1
            self.run = (start, end)
        start, end = self.run
        return (text[start - 1] if start else "", text[end] if end < len(text) else "")


def _zero_width_in_word(text: str, i: int, neighbours: _Neighbours) -> bool:
    cp = ord(text[i])
    if cp == 0xFEFF and i == 0:
        return False  # byte-order mark
    before, after = neighbours.around(i)
    if not before or not after or not (_is_word_char(before) and _is_word_char(after)):
        return False
    b, a = ord(before), ord(after)
    if cp in (0x200C, 0x200D) and (_in(b, _JOINER_SCRIPTS) or _in(a, _JOINER_SCRIPTS)):
        return False  # Persian ZWNJ, Indic conjunct control
    if cp == 0x200B and _in(b, _NO_SPACE_SCRIPTS) and _in(a, _NO_SPACE_SCRIPTS):
        return False  # word separator in Thai, Khmer, Japanese ...
    return True


def _emoji_flag_tags(text: str, start: int, end: int) -> bool:
    """text[start:end] is the tag run of an emoji subdivision flag (England, Scotland, Wales ...)."""
    if start == 0 or text[start - 1] != "\U0001f3f4" or text[end - 1] != "\U000e007f":
        return False
    inner = text[start : end - 1]
    return 2 <= len(inner) <= 6 and all(
        0xE0030 <= ord(c) <= 0xE0039 or 0xE0061 <= ord(c) <= 0xE007A for c in inner
    )


def _char_kind(text: str, i: int, has_rtl: Callable[[], bool], neighbours: _Neighbours) -> str | None:
    cp = ord(text[i])
    if cp in _BIDI_OVERRIDES:
        return "bidi_controls"
    if cp in _BIDI_IN_RTL:
        return None if has_rtl() else "bidi_controls"
    if cp in _BIDI_MARKS:
        # LRM/RLM/ALM cannot reorder letters; outside RTL text they matter only inside a word, where
        # they split it like a zero-width character (the Arabic handbook's English pages keep RLMs
        # before headings)
        if has_rtl():
            return None
        before, after = neighbours.around(i)
        inside = bool(before and after) and _is_word_char(before) and _is_word_char(after)
        return "bidi_controls" if inside else None
    if cp in _ZERO_WIDTH:
        return "zero_width_in_words" if _zero_width_in_word(text, i, neighbours) else None
    if cp <= 0x7F:
        return "control_chars"
    if cp < 0xA0:
        return "c1_controls"
    if cp in _VARIATION:
        prev = text[i - 1] if i > 0 else ""
        return "variation_selectors" if prev and ord(prev) in _VARIATION else None
    return "private_use"


def _word_at(text: str, i: int) -> tuple[int, int]:
    start = i
    while start > 0 and _is_word_char(text[start - 1]):
        start -= 1
    end = i + 1
    while end < len(text) and _is_word_char(text[end]):
        end += 1
    return start, end


def _confusable_word(word: str, greek: frozenset[str]) -> bool:
    letters = [c for c in word if c.isalpha()]
    scripts = [script_alias(c) for c in letters]
    latin = sum(1 for s in scripts if s == "LATIN")
    foreign = [k for k, s in enumerate(scripts) if s not in ("LATIN", "COMMON", "INHERITED")]
    if not latin or not foreign or 2 * latin < len(letters):
        return False
    for k in foreign:
        if letters[k] in greek and not (
            any(s == "LATIN" for s in scripts[:k]) and any(s == "LATIN" for s in scripts[k + 1 :])
        ):
            return False  # Greek letters at a word's edge are notation: μm, λmax, κB
    skeleton = "".join(fold_char(c) for c in word)
    return skeleton.isascii() and skeleton.isalpha()


def _candidates(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of candidate characters, and of look-alike letters touching a Latin letter."""
    tables = _tables()
    cps = _code_points(text)
    cand = np.flatnonzero(tables.candidate[cps])
    look = tables.look_alike[cps]
    if not look.any():
        return cand, np.flatnonzero(look)
    folded = cps | 0x20
    latin = (folded >= 0x61) & (folded <= 0x7A)
    beside = np.zeros(len(cps), dtype=bool)
    beside[1:] |= latin[:-1]
    beside[:-1] |= latin[1:]
    return cand, np.flatnonzero(look & beside)


def _findings(text: str, cand: np.ndarray | None = None, look: np.ndarray | None = None) -> Iterator[Finding]:
    if not text:
        return
    if cand is None or look is None:
        cand, look = _candidates(text)
    has_rtl = functools.cache(lambda: _RTL.search(text) is not None)
    neighbours = _Neighbours(text)
    for i, end in _runs(cand):
        while i < end:
            cp = ord(text[i])
            if _TAG[0] <= cp <= _TAG[1]:
                j = i
                while j < end and _TAG[0] <= ord(text[j]) <= _TAG[1]:
                    j += 1
                if not _emoji_flag_tags(text, i, j):
                    yield Finding("tag_chars", i, j)
                i = j
                continue
            kind = _char_kind(text, i, has_rtl, neighbours)
            if kind is not None:
                yield Finding(kind, i, i + 1)
            i += 1
    last_word = -1
    greek = _tables().greek
    for i in look.tolist():
        if i < last_word:
            continue
        start, end = _word_at(text, i)
        last_word = end
        if _confusable_word(text[start:end], greek):
            yield Finding("confusable_words", start, end)


def scan(text: str, max_spans: int = 64, max_payload_chars: int = 4096) -> UnicodeReport:
    """Counts per kind, merged spans (at most ``max_spans``) and the decoded tag payload of one text."""
    return _report(text, _findings(text), max_spans, max_payload_chars)


_GROUP_CHARS = 1 << 20


def _alone(text: str) -> bool:
    return len(text) >= _GROUP_CHARS


def scan_many(texts: list[str], max_spans: int = 64, max_payload_chars: int = 4096) -> list[UnicodeReport]:
    """``scan`` of each text; short texts are looked up together (joined by newlines, which are never
    candidates), so the per-call cost of the vectorised lookup is paid once per group."""
    reports: list[UnicodeReport | None] = [None] * len(texts)

    def scan_group(group: list[int]) -> None:
        starts = np.cumsum([0] + [len(texts[i]) + 1 for i in group[:-1]])
        cand, look = _candidates("\n".join(texts[i] for i in group))
        cand_doc = np.searchsorted(starts, cand, side="right") - 1
        look_doc = np.searchsorted(starts, look, side="right") - 1
        busy = set(cand_doc.tolist()) | set(look_doc.tolist())
        for k, i in enumerate(group):
            if k not in busy:
                reports[i] = _report(texts[i], iter(()), max_spans, max_payload_chars)
                continue
            base = int(starts[k])
            found = _findings(texts[i], cand[cand_doc == k] - base, look[look_doc == k] - base)
            reports[i] = _report(texts[i], found, max_spans, max_payload_chars)

    for i, text in enumerate(texts):
        if _alone(text):
            reports[i] = scan(text, max_spans, max_payload_chars)
    for group in byte_groups(texts, _GROUP_CHARS, _alone):
        scan_group(group)
    return [r if r is not None else scan("") for r in reports]


def _report(text: str, findings: Iterator[Finding], max_spans: int, max_payload_chars: int) -> UnicodeReport:
    counts = dict.fromkeys(KINDS, 0)
    spans: list[Finding] = []
    payload: list[str] = []
    for f in sorted(findings, key=lambda f: (f.start, f.end)):
        if f.kind == "confusable_words":
            counts[f.kind] += 1
        else:
            counts[f.kind] += f.end - f.start
        if f.kind == "tag_chars":
            run = text[f.start : f.end]
            decoded = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
            if decoded:
                payload.append(decoded)
        if spans and spans[-1].kind == f.kind and spans[-1].end == f.start and f.kind != "confusable_words":
            spans[-1] = Finding(f.kind, spans[-1].start, f.end)
        else:
            spans.append(f)
    tag_payload = "\n".join(payload)[:max_payload_chars] if payload else None
    return UnicodeReport(counts, spans[:max_spans], tag_payload)


# --- detector contract -----------------------------------------------------------------------


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    texts = batch.column("text").to_pylist()
    counts: dict[str, list[int]] = {k: [] for k in KINDS}
    spans: list[list[dict[str, object]]] = []
    payloads: list[str | None] = []
    for report in scan_many([t or "" for t in texts], cfg.max_spans, cfg.max_payload_chars):
        for k in KINDS:
            counts[k].append(report.counts[k])
        spans.append([{"start": s.start, "end": s.end, "kind": s.kind} for s in report.spans])
        payloads.append(report.tag_payload)
    columns: dict[str, pa.Array] = {f"unicode_{k}": pa.array(v, pa.int32()) for k, v in counts.items()}
    columns["unicode_spans"] = pa.array(spans, pa.list_(SPAN))
    columns["unicode_tag_payload"] = pa.array(payloads, pa.string())
    return columns


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    reasons: list[list[str]] = [[] for _ in range(signals.num_rows)]
    for kind in KINDS:
        threshold = getattr(cfg, f"{kind}_min")
        column = f"unicode_{kind}"
        if threshold is None or column not in signals.column_names:
            continue
        for row, value in enumerate(signals.column(column).to_pylist()):
            if value is not None and value >= threshold:
                reasons[row].append(f"unicode:{kind}")
    return reasons


DECLARED_SIGNALS = (
    *(Signal(f"unicode_{kind}", f"{kind}_min") for kind in KINDS),
    Signal("unicode_spans"),
    Signal("unicode_tag_payload"),
)

DETECTOR = Spec(
    name="unicode", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
