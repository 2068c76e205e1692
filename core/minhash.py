"""Vectorised MinHash signatures, identical to datasketch's.

datasketch's ``MinHash.update_batch`` calls the hash function once per shingle from Python, which
makes hashing the cost (about 5 MB/s of text on one core). Here a whole group of documents is
tokenised, shingled and hashed with numpy, and only the result goes through the permutation step
that datasketch applies. The signatures are bit-identical to ``datasketch.MinHash`` fed with
:func:`shingles` and :func:`hash_function` (same ``num_perm``, ``seed`` and ``scheme``), so
``LeanMinHash``, ``MinHashLSH`` and its storage backends accept them unchanged.

Tokens. The text is lower-cased; a *word* is a maximal run of ASCII letters, digits, ``_`` and
non-ASCII characters other than Unicode spacing and punctuation (U+0080-U+00BF, U+2000-U+206F,
U+3000-U+303F). Invisible format characters (soft hyphen, zero-width and bidi controls, BOM,
tag characters) are deleted first, so ``ig<ZWSP>nore`` and ``ignore`` give the same shingles.
A shingle is ``k`` consecutive words joined by one space, as UTF-8 bytes (word 5-grams by default,
as in Lee et al. 2022, arXiv:2107.06499, and FineWeb, arXiv:2406.17557). A document with fewer
than ``k`` words has one shingle (all its words); a document with no word has none (empty sketch).

Shingle hash. A polynomial hash of the shingle bytes modulo 2**64 (base :data:`BASE`, byte value
plus one as digit), finished with the 64-bit MurmurHash3 finaliser. Polynomial hashing lets the
hash of every shingle come from one prefix sum over the group's bytes, with no Python loop per
shingle. Its known weakness (Thue-Morse strings collide modulo 2**64) needs shingles thousands of
bytes long built for the purpose, and a collision only makes two documents look a bit more alike.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from datasketch import MinHash

from poisonguard.core.batching import byte_ranges

SCHEMES: tuple[str, ...] = ("affine32", "affine64", "legacy")

BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse modulo 2**64
_MASK64 = (1 << 64) - 1
_BASE_INV = pow(BASE, -1, 1 << 64)
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)

# Group size for the bulk path: numpy temporaries take about 60 bytes per input byte.
GROUP_BYTES = 1 << 20

# ---------------------------------------------------------------------------------------------
# Reference (pure Python) definitions: what the shingles and the hash *are*. Slow; used to feed
# datasketch in tests and benchmarks and to document the vectorised path below.
# ---------------------------------------------------------------------------------------------


def _is_dropped(cp: int) -> bool:
    return (
        cp == 0x00AD
        or 0x200B <= cp <= 0x200F
        or 0x202A <= cp <= 0x202E
        or 0x2060 <= cp <= 0x206F
        or cp == 0xFEFF
        or 0xE0000 <= cp <= 0xE007F
    )


def _is_word_char(cp: int) -> bool:
    if cp < 0x80:
        return chr(cp).isascii() and (chr(cp).isalnum() or cp == 0x5F)
    return not (0x80 <= cp <= 0xBF or 0x2000 <= cp <= 0x206F or 0x3000 <= cp <= 0x303F)


def words(text: str) -> list[str]:
    """The words of ``text`` as the signatures see them (reference implementation)."""
    out: list[str] = []
    cur: list[str] = []
    for ch in text.lower():
        cp = ord(ch)
        if _is_dropped(cp):
            continue
        if _is_word_char(cp):
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def shingles(text: str, k: int = 5) -> list[bytes]:
    """The shingles of ``text`` as UTF-8 bytes, in order (duplicates kept; MinHash ignores them)."""
    ws = [w.encode("utf-8", "surrogatepass") for w in words(text)]
    if not ws:
        return []
    if len(ws) < k:
        return [b" ".join(ws)]
    return [b" ".join(ws[i : i + k]) for i in range(len(ws) - k + 1)]


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def shingle_hash64(data: bytes) -> int:
    """64-bit hash of one shingle (reference implementation of the vectorised hash)."""
    h = 0
    power = 1
    for byte in data:
        h = (h + (byte + 1) * power) & _MASK64
        power = (power * BASE) & _MASK64
    return _fmix64_int(h)


def shingle_hash32(data: bytes) -> int:
    """32-bit hash of one shingle: the low half of :func:`shingle_hash64`."""
    return shingle_hash64(data) & 0xFFFFFFFF


def hash_function(scheme: str) -> Callable[[bytes], int]:
    """The ``hashfunc`` to give datasketch so that its MinHash equals :func:`signatures_bulk`."""
    _check_scheme(scheme)
    return shingle_hash64 if scheme == "affine64" else shingle_hash32


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown MinHash scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters ``(a, b)`` for these settings (taken from datasketch
    itself, so a change in its generator shows up as a failing identity test, not silent drift)."""
    _check_scheme(scheme)
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=scheme).permutations
    dtype = np.uint32 if scheme == "affine32" else np.uint64
    a_arr, b_arr = np.array(a, dtype=dtype), np.array(b, dtype=dtype)
    a_arr.setflags(write=False)
    b_arr.setflags(write=False)
    return a_arr, b_arr


def empty_value(scheme: str) -> int:
    """The value every slot of an empty sketch holds (datasketch's ``_max_hash`` per scheme)."""
    _check_scheme(scheme)
    return (1 << 64) - 1 if scheme == "affine64" else (1 << 32) - 1


def signature_dtype(scheme: str) -> type[np.unsignedinteger]:
    _check_scheme(scheme)
    return np.uint32 if scheme == "affine32" else np.uint64


# ---------------------------------------------------------------------------------------------
# Vectorised path
# ---------------------------------------------------------------------------------------------

# Byte classes for the UTF-8 bytes of lower-cased text: ASCII word bytes and every byte >= 0x80
# (multi-byte sequences for separators and dropped characters are found separately).
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[0x80:] = True
# Byte -> normalised byte: ASCII upper case to lower case, non-word ASCII bytes to a space, bytes
# >= 0x80 unchanged.
_FOLD_BYTE = np.where(_WORD_BYTE, np.arange(256), 0x20).astype(np.uint8)
_FOLD_BYTE[ord("A") : ord("Z") + 1] += 32


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _special_sequences(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (drop, separator) of the bytes of invisible characters and of non-ASCII spacing and
    punctuation (see the module docstring)."""
    lead = np.flatnonzero(arr >= 0xC2)  # lead bytes of multi-byte sequences are 0xC2..0xF4
    lead = lead[np.isin(arr[lead], (0xC2, 0xE2, 0xE3, 0xEF, 0xF3))]
    if not len(lead):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    padded = np.concatenate((arr, np.zeros(3, dtype=np.uint8)))
    b0 = arr[lead]
    b1 = padded[lead + 1].astype(np.int64)
    b2 = padded[lead + 2].astype(np.int64)
    cp3 = ((b0.astype(np.int64) & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
    two = b0 == 0xC2  # U+0080..U+00BF
    three = (b0 == 0xE2) | (b0 == 0xE3) | (b0 == 0xEF)
    sep2 = two & (b1 != 0xAD)
    drop2 = two & (b1 == 0xAD)
    punct = three & (((cp3 >= 0x2000) & (cp3 <= 0x206F)) | ((cp3 >= 0x3000) & (cp3 <= 0x303F)))
    invisible = three & (
        ((cp3 >= 0x200B) & (cp3 <= 0x200F))
        | ((cp3 >= 0x202A) & (cp3 <= 0x202E))
        | ((cp3 >= 0x2060) & (cp3 <= 0x206F))
        | (cp3 == 0xFEFF)
    )
    tag = (b0 == 0xF3) & (b1 == 0xA0) & (b2 <= 0x81)  # U+E0000..U+E007F
    sep3 = punct & ~invisible
    drop3 = invisible
    sep = np.concatenate([lead[sep2] + i for i in range(2)] + [lead[sep3] + i for i in range(3)])
    drop = np.concatenate(
        [lead[drop2] + i for i in range(2)]
        + [lead[drop3] + i for i in range(3)]
        + [lead[tag] + i for i in range(4)]
    )
    return drop, sep


_POWER_CACHE: dict[int, np.ndarray] = {}


def _powers(base: int, n: int) -> np.ndarray:
    """base**j mod 2**64 for j in [0, n) (the table for group-sized inputs is kept)."""
    cached = _POWER_CACHE.get(base)
    if cached is not None and len(cached) >= n:
        return cached[:n]
    out = np.full(n, np.uint64(base), dtype=np.uint64)
    if n:
        out[0] = 1
    out = np.cumprod(out, dtype=np.uint64)
    if n <= 2 * GROUP_BYTES + 2:
        out.setflags(write=False)
        _POWER_CACHE[base] = out
    return out


def _normalise_group(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The normalised text of a group of documents: their words joined by single spaces (one
    buffer for the whole group, documents one after the other, uint8), where each word starts and
    ends in it, and the index of each document's first word (plus the total, at the end)."""
    n_docs = len(texts)
    # str.lower() only where needed: ASCII upper case is folded below by the byte table.
    parts = [(t if t.isascii() else t.lower()).encode("utf-8", "surrogatepass") for t in texts]
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n_docs)
    buf = b"\n".join(parts)  # "\n" is not a word byte, so no word crosses documents
    del parts
    doc_start = np.zeros(n_docs, dtype=np.int64)
    if n_docs > 1:
        doc_start[1:] = np.cumsum(lengths[:-1] + 1)
    arr = np.frombuffer(buf, dtype=np.uint8)
    drop, sep = _special_sequences(arr)
    if len(sep) or len(drop):
        arr = arr.copy()
        arr[sep] = 0x20  # non-ASCII spacing and punctuation separate words, as a space does
    if len(drop):
        keep = np.ones(len(arr), dtype=bool)
        keep[drop] = False
        doc_start = np.concatenate(([0], np.cumsum(keep)))[doc_start]
        arr = arr[keep]
    # One table lookup lower-cases ASCII and turns every other non-word byte into a space, so a byte
    # is part of a word exactly when it is not a space; a word starts where a space (or the buffer
    # start) is followed by a word byte.
    low = _FOLD_BYTE.take(arr)
    word = low != 0x20
    start = word.copy()
    start[1:] &= ~word[:-1]
    starts = np.flatnonzero(start)
    # Joined by single spaces: keep the word bytes and the (space) byte just before every word but
    # the first.
    word[starts[1:] - 1] = True
    comp = low[word]
    del low, word, start
    spaces = np.flatnonzero(comp == 0x20)
    c_start = np.empty(len(starts), dtype=np.int64)
    c_end = np.empty(len(starts), dtype=np.int64)
    if len(starts):
        c_start[0] = 0
        c_start[1:] = spaces + 1
        c_end[:-1] = spaces
        c_end[-1] = len(comp)
    first_word = np.append(np.searchsorted(starts, doc_start), len(starts))
    return comp, c_start, c_end, first_word


# The runner asks for a chunk's signatures and then for its exact-duplicate keys, and both start from
# the same normalised groups: the last signatures_bulk call leaves them here (up to _MEMO_BYTES of
# normalised text) for normalised_texts. An entry holds the group's very text objects and is used
# only for those same objects, so it can never answer for other texts.
_MEMO_BYTES = 16 << 20


class _Normalised(NamedTuple):
    texts: tuple[str, ...]
    comp: np.ndarray
    first_word: np.ndarray
    c_start: np.ndarray
    c_end: np.ndarray


_memo: tuple[_Normalised, ...] = ()


def _remembered(index: int, texts: Sequence[str]) -> _Normalised | None:
    memo = _memo
    if index >= len(memo):
        return None
    entry = memo[index]
    if len(entry.texts) != len(texts) or not all(map(operator.is_, entry.texts, texts)):
        return None
    return entry


def normalised_texts(texts: Sequence[str]) -> list[bytes]:
    """Each text as the signatures see it: ``" ".join(words(text))`` as UTF-8 bytes."""
    global _memo
    out: list[bytes] = []
    for g, (lo, hi) in enumerate(byte_ranges(texts, GROUP_BYTES)):
        entry = _remembered(g, texts[lo:hi])
        if entry is not None:
            comp, first_word, c_start, c_end = entry.comp, entry.first_word, entry.c_start, entry.c_end
        else:
            comp, c_start, c_end, first_word = _normalise_group(texts[lo:hi])
        for d in range(hi - lo):
            fw, lw = int(first_word[d]), int(first_word[d + 1])
            out.append(comp[c_start[fw] : c_end[lw - 1]].tobytes() if lw > fw else b"")
    _memo = ()  # used once: do not hold the texts any longer
    return out


def _group_hashes(
    texts: Sequence[str],
    k: int,
    normalised: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shingle hashes of a group of documents: ``(hashes, shingle_counts, word_counts)``, the
    64-bit hash of every shingle (documents one after the other) and the number of shingles and of
    words of each document. ``normalised``: the group's :func:`_normalise_group`, if already made."""
    n_docs = len(texts)
    comp8, c_start, c_end, first_word = normalised or _normalise_group(texts)
    word_counts = np.diff(first_word).astype(np.int64)
    first_word = first_word[:-1]
    # Prefix sums of the polynomial hash; hash of comp[s:e] = (P[e] - P[s]) * BASE**-s.
    comp = comp8.astype(np.uint64)
    del comp8
    comp += np.uint64(1)
    comp *= _powers(BASE, len(comp))
    prefix = np.zeros(len(comp) + 1, dtype=np.uint64)
    np.cumsum(comp, dtype=np.uint64, out=prefix[1:])
    del comp
    inv = _powers(_BASE_INV, len(prefix))
    shingle_counts = np.where(word_counts >= k, word_counts - k + 1, (word_counts > 0).astype(np.int64))
    total = int(shingle_counts.sum())
    sh_first = np.repeat(first_word, shingle_counts)
    sh_offset = np.zeros(n_docs, dtype=np.int64)
    sh_offset[1:] = np.cumsum(shingle_counts)[:-1]
    sh_first += np.arange(total, dtype=np.int64) - np.repeat(sh_offset, shingle_counts)
    sh_last = np.minimum(sh_first + (k - 1), np.repeat(first_word + word_counts - 1, shingle_counts))
    s, e = c_start[sh_first], c_end[sh_last]
    hashes = _fmix64((prefix[e] - prefix[s]) * inv[s])
    return hashes, shingle_counts, word_counts


def _permute_min(hashes: np.ndarray, counts: np.ndarray, num_perm: int, seed: int, scheme: str) -> np.ndarray:
    """Apply datasketch's permutations to 64-bit shingle hashes; column-wise min per document."""
    a, b = permutations(num_perm, seed, scheme)
    dtype = signature_dtype(scheme)
    out = np.full((len(counts), num_perm), empty_value(scheme), dtype=dtype)
    nonempty = np.flatnonzero(counts > 0)
    if not len(nonempty):
        return out
    offsets = np.zeros(len(counts), dtype=np.int64)
    offsets[1:] = np.cumsum(counts)[:-1]
    offsets = offsets[nonempty]
    if scheme == "affine32":
        hv = _fmix32((hashes & _MAX32).astype(np.uint32))
    elif scheme == "affine64":
        hv = _fmix64(hashes)
    else:
        hv = hashes & _MAX32
    tmp = np.empty_like(hv)
    cols = np.empty((len(nonempty), num_perm), dtype=dtype)
    for j in range(num_perm):
        np.multiply(hv, a[j], out=tmp)
        tmp += b[j]
        if scheme == "legacy":
            tmp %= _MERSENNE
            tmp &= _MAX32
        cols[:, j] = np.minimum.reduceat(tmp, offsets)
    out[nonempty] = cols
    return out


def signatures_bulk(
    texts: Sequence[str],
    num_perm: int = 128,
    shingle_words: int = 5,
    seed: int = 1,
    scheme: str = "affine32",
    min_words: int = 0,
) -> np.ndarray:
    """MinHash signatures of ``texts``: shape (len(texts), num_perm), uint32 for "affine32" and
    uint64 otherwise. Row i equals ``MinHash(num_perm, seed, hashfunc=hash_function(scheme),
    scheme=scheme)`` updated with ``shingles(texts[i], shingle_words)``. Documents with fewer than
    ``min_words`` words get the empty sketch (every slot :func:`empty_value`)."""
    _check_scheme(scheme)
    if num_perm < 1:
        raise ValueError(f"num_perm must be positive, got {num_perm}")
    if shingle_words < 1:
        raise ValueError(f"shingle_words must be positive, got {shingle_words}")
    global _memo
    out = np.empty((len(texts), num_perm), dtype=signature_dtype(scheme))
    memo: list[_Normalised] = []
    kept = 0
    for lo, hi in byte_ranges(texts, GROUP_BYTES):
        group = texts[lo:hi]
        normalised = _normalise_group(group)
        kept += len(normalised[0])
        if kept <= _MEMO_BYTES:  # a prefix of the groups: entry g is group g
            for array in normalised:
                array.setflags(write=False)
            comp, c_start, c_end, first_word = normalised
            memo.append(_Normalised(tuple(group), comp, first_word, c_start, c_end))
        hashes, counts, word_counts = _group_hashes(group, shingle_words, normalised)
        if min_words > 0:
            short = word_counts < min_words
            if short.any():
                keep = np.repeat(~short, counts)
                hashes, counts = hashes[keep], np.where(short, 0, counts)
        out[lo:hi] = _permute_min(hashes, counts, num_perm, seed, scheme)
    _memo = tuple(memo)
    return out


def shingle_hashes(texts: Sequence[str], shingle_words: int) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of every shingle of ``texts`` (documents one after the other, duplicates
    kept) and the number of shingles of each document: what :func:`signatures_bulk` permutes, for
    detectors that need the shingles themselves (the campaign detector's sketches)."""
    parts: list[np.ndarray] = []
    counts = np.zeros(len(texts), dtype=np.int64)
    for lo, hi in byte_ranges(texts, GROUP_BYTES):
        hashes, group_counts, _ = _group_hashes(texts[lo:hi], shingle_words)
        parts.append(hashes)
        counts[lo:hi] = group_counts
    return (np.concatenate(parts) if parts else np.zeros(0, np.uint64)), counts


def signatures_from_hashes(
    hashes: np.ndarray, counts: np.ndarray, num_perm: int, seed: int, scheme: str = "affine32"
) -> np.ndarray:
    """MinHash signatures from :func:`shingle_hashes` output (a document with no shingle gets the
    empty sketch)."""
    _check_scheme(scheme)
    return _permute_min(hashes, counts, num_perm, seed, scheme)
