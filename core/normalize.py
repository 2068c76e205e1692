"""Text normalisation for matching phrases that an attacker tried to disguise.

``normalize_for_matching(text)`` returns a folded copy of ``text`` and a map from every position of
the folded copy back into ``text``, so a phrase found in the folded copy can be highlighted in the
original. The folding, per character:

1. invisible characters are removed: zero-width characters, bidi controls, tag characters
   (U+E0000-E007F), variation selectors, soft hyphen, Hangul fillers, C0/C1 controls, and the generic
   combining diacritics (U+0300-036F and friends, so ``e`` + U+0301 and Zalgo text fold to ``e``);
2. NFKC (full-width, mathematical alphanumerics, ligatures, ``…`` -> ``...``);
3. Latin letters lose their accents (``é`` -> ``e``), so ``précédentes`` and ``precedentes`` meet;
4. confusables are folded to ASCII with the UTS #39 data of ``confusable-homoglyphs`` (Cyrillic ``а``,
   Greek ``ο``, small-capital ``ɪ`` ...);
5. casefold, and every run of whitespace becomes one space.

The work is done per code point, so it differs from full NFKC only for rare compositions across
characters (conjoining Hangul jamo, a few two-part Indic vowels), which do not matter for matching.

Speed: a per-character Python loop would be far too slow, so the per-character results are computed
once per process into a ``str.translate`` table for the characters that map to exactly one character,
and one compiled regex finds the rare characters whose output has another length (deleted invisibles,
expansions, whitespace runs). Only those runs are handled in Python.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload

import numpy as np
from confusable_homoglyphs import categories as _categories
from confusable_homoglyphs import confusables as _confusables

# Leetspeak: digits and symbols written for the letters they look like ("1gn0r3", "@ll"), as a
# translate table (one character each way, so positions stay).
LEET = str.maketrans("0134578@$", "oieastbas")
# Characters that render as nothing (or nearly) and are used to split or hide words.
_INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul fillers (render blank)
    (0x17B4, 0x17B5),  # Khmer inherent vowels (invisible)
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),  # ZWSP, ZWNJ, ZWJ, LRM, RLM
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates, deprecated format chars
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # BOM / zero-width no-break space
    (0xFFA0, 0xFFA0),  # half-width Hangul filler
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0xE0000, 0xE007F),  # tag characters ("ASCII smuggling")
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
# Combining marks that decorate any script (Latin accents, Zalgo stacks); script-specific marks such
# as Devanagari vowel signs are kept because they carry letters.
_GENERIC_MARK_RANGES: tuple[tuple[int, int], ...] = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)
# Code points whose folding is precomputed; everything above (CJK extension planes 3+, private use
# planes) is left to casefold, which leaves it unchanged.
_TABLE_RANGES: tuple[tuple[int, int], ...] = ((0x0000, 0x2FFFF), (0xE0000, 0xE01EF))


def _pick_ascii(ch: str, candidates: list[str]) -> str | None:
    """The ASCII look-alike of ``ch`` among its UTS #39 homoglyphs, preferring letters of ch's case."""
    ascii_alnum = [c for c in candidates if c.isascii() and c.isalnum()]
    if not ascii_alnum:
        return None
    upper = ch != ch.casefold()
    ascii_alnum.sort(key=lambda c: (not c.isalpha(), c.isupper() != upper, len(c), c))
    return ascii_alnum[0]


@functools.cache
def confusable_map() -> dict[str, str]:
    """Non-ASCII character -> its ASCII look-alike (UTS #39 confusables, via confusable-homoglyphs)."""
    folded: dict[str, str] = {}
    for ch, entries in _confusables.confusables_data.items():
        if len(ch) != 1 or ch.isascii():
            continue
        target = _pick_ascii(ch, [e["c"] for e in entries])
        if target is not None:
            folded[ch] = target
    return folded


def script_alias(ch: str) -> str:
    """The script of one character as confusable-homoglyphs names it (LATIN, CYRILLIC, COMMON ...)."""
    return str(_categories.alias(ch))


_INVISIBLE = frozenset(cp for lo, hi in _INVISIBLE_RANGES for cp in range(lo, hi + 1))
_GENERIC_MARKS = frozenset(cp for lo, hi in _GENERIC_MARK_RANGES for cp in range(lo, hi + 1))


def fold_char(ch: str) -> str:
    """The folding of one character (the reference definition; the tables are built from it)."""
    cp = ord(ch)
    if cp in _INVISIBLE or cp in _GENERIC_MARKS:
        return ""
    if ch.isspace():
        return " "
    if cp < 0x20 or 0x7F <= cp <= 0x9F:
        return ""
    s = unicodedata.normalize("NFKD", ch)
    s = "".join(c for c in s if ord(c) not in _GENERIC_MARKS and ord(c) not in _INVISIBLE)
    # recompose what NFKD split apart for other reasons (Hangul syllables, Indic nukta forms)
    s = unicodedata.normalize("NFC", s)
    conf = confusable_map()
    s = "".join(conf.get(c, c) for c in s).casefold()
    return " " if s.isspace() else s


class _Tables(NamedTuple):
    fold: np.ndarray  # uint32[_LUT_SIZE]: code point -> its one-character folding (casefold included)
    flags: np.ndarray  # uint8[_LUT_SIZE]: _DELETED | _EXPANDED | _SPACE
    other: dict[str, str]  # the foldings of the expanded characters


_DELETED = 1  # folds to nothing
_EXPANDED = 2  # folds to two or more characters
_SPACE = 4  # folds to exactly one space (runs of these collapse)


_LUT_SIZE = 0x30000  # code points at or above fold to themselves, except the plane-14 invisibles
_PLANE14_INVISIBLE = (0xE0000, 0xE01EF)


@functools.cache
def _tables() -> _Tables:
    fold = np.arange(_LUT_SIZE, dtype=np.uint32)
    flags = np.zeros(_LUT_SIZE, dtype=np.uint8)
    other: dict[str, str] = {}
    conf = confusable_map()
    for cp in range(_LUT_SIZE):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # lone surrogates fold to themselves
        ch = chr(cp)
        if (
            cp >= 0xA0
            and cp not in _INVISIBLE
            and cp not in _GENERIC_MARKS
            and ch not in conf
            and not ch.isspace()
            and unicodedata.is_normalized("NFKD", ch)
        ):
            folded = ch.casefold()  # nothing to fold but the case (cheap check for most code points)
        else:
            folded = fold_char(ch)
        if len(folded) == 1:
            fold[cp] = ord(folded)
            if folded == " ":
                flags[cp] = _SPACE
        elif not folded:
            flags[cp] = _DELETED
        else:
            flags[cp] = _EXPANDED
            other[ch] = folded
    return _Tables(fold, flags, other)


class OffsetMap(Sequence[int]):
    """Positions in the normalised text -> positions in the original text.

    ``offsets[i]`` is the index in the original text of the character that produced normalised
    character ``i``; ``offsets[len(normalised)]`` is ``len(original)``. ``span(start, end)`` maps a
    half-open match back to the half-open original span that covers it.
    """

    __slots__ = ("_origin", "_norm_len", "_orig_len")

    def __init__(self, origin: np.ndarray | None, norm_len: int, orig_len: int) -> None:
        self._origin = origin  # None: identity
        self._norm_len = norm_len
        self._orig_len = orig_len

    def __len__(self) -> int:
        return self._norm_len + 1

    def _at(self, i: int) -> int:
        if i < 0:
            i += self._norm_len + 1
        if not 0 <= i <= self._norm_len:
            raise IndexError(f"offset {i} outside 0..{self._norm_len}")
        if i == self._norm_len:
            return self._orig_len
        return i if self._origin is None else int(self._origin[i])

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> list[int]: ...
    def __getitem__(self, i: int | slice) -> int | list[int]:
        if isinstance(i, slice):
            return [self._at(j) for j in range(*i.indices(len(self)))]
        return self._at(i)

    def __iter__(self) -> Iterator[int]:
        return (self._at(i) for i in range(len(self)))

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original (start, end) of the normalised span [start, end)."""
        if end <= start:
            o = self._at(start)
            return o, o
        return self._at(start), self._at(end - 1) + 1

    @property
    def is_identity(self) -> bool:
        return self._origin is None


class Normalized(NamedTuple):
    text: str
    offsets: OffsetMap


def normalize_for_matching(text: str) -> Normalized:
    """Fold ``text`` for phrase matching; see the module docstring. Unpacks as ``(text, offsets)``."""
    tables = _tables()
    n = len(text)
    if n == 0:
        return Normalized("", OffsetMap(None, 0, 0))
    # Vectorised over the code points: 1:1 foldings by table lookup; deletions, whitespace collapse
    # and expansions by masks. Only expanded characters (rare: ligatures, "…", "™") touch Python.
    try:  # the strict codecs are much faster than surrogatepass; lone surrogates are rare
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if int(cps.max()) < _LUT_SIZE:
        mapped = tables.fold[cps]
        flags = tables.flags[cps]
    else:
        inside = cps < _LUT_SIZE
        idx = np.where(inside, cps, 0)
        mapped = np.where(inside, tables.fold[idx], cps)
        flags = np.where(inside, tables.flags[idx], 0).astype(np.uint8)
        flags[(cps >= _PLANE14_INVISIBLE[0]) & (cps <= _PLANE14_INVISIBLE[1])] = _DELETED
    dele = (flags & _DELETED).astype(bool)
    ws = (flags & _SPACE).astype(bool)
    kept = np.flatnonzero(~dele) if dele.any() else None
    ws_k = ws if kept is None else ws[kept]
    drop = np.zeros(ws_k.shape[0], dtype=bool)
    drop[1:] = ws_k[1:] & ws_k[:-1]  # a space right after a kept space
    if drop.any():
        kept = np.flatnonzero(~drop) if kept is None else kept[~drop]
    exp = (flags & _EXPANDED).astype(bool)
    if not exp.any():
        if kept is None:
            return Normalized(_decode(mapped), OffsetMap(None, n, n))
        return Normalized(_decode(mapped[kept]), OffsetMap(kept, len(kept), n))
    # Expansions: each kept position emits `count` characters; expanded ones take theirs from
    # `other`, written into their slots of the output array.
    if kept is None:
        kept = np.arange(n)
    exp_k = exp[kept]
    exp_pos = kept[exp_k]
    outs = [tables.other[text[p]] for p in exp_pos.tolist()]
    counts = np.ones(kept.shape[0], dtype=np.int64)
    lengths = np.fromiter((len(o) for o in outs), dtype=np.int64, count=len(outs))
    counts[exp_k] = lengths
    origin = np.repeat(kept, counts)
    out = np.repeat(mapped[kept], counts)
    first = (np.cumsum(counts) - counts)[exp_k]  # output slot of each expansion's first character
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    slots = np.repeat(first, lengths) + within
    out[slots] = np.frombuffer("".join(outs).encode("utf-32-le"), dtype=np.uint32)
    return Normalized(_decode(out), OffsetMap(origin, len(origin), n))


def _decode(code_points: np.ndarray) -> str:
    data = code_points.astype("<u4", copy=False).tobytes()
    try:
        return data.decode("utf-32-le")
    except UnicodeDecodeError:  # lone surrogates pass through unchanged
        return data.decode("utf-32-le", "surrogatepass")


def _normalize_slow(text: str) -> Normalized:
    """Reference implementation, one character at a time (tests compare the fast path with it).

    A character that folds to exactly one space is dropped when the last character kept also did;
    deleted characters do not count, expansions count as not-a-space.
    """
    out: list[str] = []
    origin: list[int] = []
    last_space = False
    for i, ch in enumerate(text):
        folded = fold_char(ch)
        if not folded:
            continue
        if folded == " ":
            if last_space:
                continue
            last_space = True
        else:
            last_space = False
        for o in folded:
            out.append(o)
            origin.append(i)
    return Normalized("".join(out), OffsetMap(np.array(origin, dtype=np.int64), len(out), len(text)))
