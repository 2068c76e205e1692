"""The dedup index of earlier nights on disk: memory that does not grow with history.

The in-memory :class:`~poisonguard.filters.dedup.DedupIndex` holds every earlier document's
signature (128 x 4 bytes) and re-buckets all of them every night. Here the documents of earlier
nights live in a folder of immutable *segments*, one per night, and a night reads only what its own
documents point at:

* **band tables**: per segment and LSH band, the band keys of the segment's candidate documents,
  sorted, with a small fence file (the first key of every :data:`BLOCK` keys) and a **key filter**
  (a blocked Bloom filter, 16 bits a key, about 0.1% false positives). Tonight's band keys go
  through the filter first (one 64-byte block read per key, mapped), and only the fence blocks
  that can hold a key the filter lets through are read, in groups of at most ``cache_mb`` (the
  bound on what a lookup holds in memory). Most of tonight's keys are in no earlier segment, so a
  segment costs about its filter, not its table (:data:`IO` counts the bytes).
* **signatures** (``num_perm`` x 4 bytes a document) are read only for the members of an LSH bucket
  that also holds a document of tonight, to verify the candidate pair.
* **content keys** (exact duplicates) and **id hashes** are sorted tables looked up the same way.
* **components**: the clusters that earlier documents form among themselves (rare: each night
  keeps one document per cluster), as a spanning forest whose edges carry the (band, band key) of
  the LSH bucket that found them. Replaying those edges in bucket order reproduces the order in
  which ``DedupIndex.assign`` joins clusters, so the result is the same column for column.

A *manifest* (JSON) names the segments and the component file of one state of the index. A night
writes its segment and component file under new names, then the manifest (atomically, after the
files are synced); the nightly ledger's commit is what makes it the current one. A killed night
leaves at most files no manifest names, which the next commit's clean-up removes.

Exactness (why this equals ``DedupIndex.assign`` with every earlier document added as prior):
earlier documents rank first, and :func:`~poisonguard.filters.dedup.verify_bucket` treats members in
rank order, each compared only with earlier ones, so a bucket's edges among earlier documents do not
depend on tonight's members. Clusters are therefore the components of (earlier edges + tonight's
edges); the similarity a member is given depends on whether its bucket was skipped (all members
already joined), which the replay decides with the forest edges of earlier buckets only.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from poisonguard.core import minhash
from poisonguard.filters import dedup

# 1: no key filters, 4,096-key fence blocks; 2: domains as codes into a per-segment list of names
# (held in memory, growing with the distinct domains of the history). Both upgraded in place.
FORMAT = 3
FORMATS = (1, 2, 3)
BLOCK = 256  # keys per fence block of a sorted table (3 KB of keys and rows: one read per hit)
OLD_BLOCK = 4096  # format 1's
DEFAULT_CACHE_MB = 64
EXACT_BAND = -1  # the "band" of an exact-duplicate edge: before every LSH band
BLOOM_BITS_PER_KEY = 16  # about 0.1% false positives with 11 probes in 512-bit blocks
BLOOM_PROBES = 11
PAGE = 4096  # bytes: the unit in which mapped reads are counted

# A bucket that holds one of tonight's documents: band, band key, member ranks (ascending),
# verified edges (pairs of ranks) and the highest similarity each member was compared at.
Bucket = tuple[int, int, np.ndarray, np.ndarray, np.ndarray]


class PriorIndexError(ValueError):
    """The index on disk is missing, incomplete or was built with other settings."""


# ---------------------------------------------------------------------------------------------
# Files


@dataclass
class IoCount:
    """Bytes this process read from index files: plain reads, and mapped reads counted as the
    distinct 4 KB pages they touch (what a cold page cache would fetch)."""

    bytes_read: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)  # "filters", "fences", "tables", "documents"

    def add(self, path: Path, nbytes: int) -> None:
        kind = {".bloom": "filters", ".fence": "fences", ".keys": "tables", ".rows": "tables"}
        name = kind.get(path.suffix, "documents")
        self.bytes_read += nbytes
        self.by_kind[name] = self.by_kind.get(name, 0) + nbytes

    def pages(self, path: Path, byte_offsets: np.ndarray, file_size: int) -> None:
        if len(byte_offsets):
            touched = len(np.unique(byte_offsets // PAGE))
            self.add(path, min(touched * PAGE, max(file_size, PAGE)))

    def reset(self) -> None:
        self.bytes_read = 0
        self.by_kind = {}


IO = IoCount()  # the benchmark reads and resets it


def release_free_heap() -> None:
    """Hand the heap pages the process has freed back to the system (glibc's ``malloc_trim``; a
    no-op elsewhere). A night allocates and frees arrays of hundreds of MB whose sizes vary with its
    matches; glibc keeps such freed heap for reuse, so a process that runs night after night would
    otherwise keep the largest night's heap and let fragmentation add to it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_raw(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.ascontiguousarray(arr).tofile(fh)
        fh.flush()
        os.fsync(fh.fileno())


def _tmp_beside(path: Path) -> Path:
    """The temporary name an atomic write of ``path`` uses (collect_garbage knows its form)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _write_raw_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = _tmp_beside(path)
    _write_raw(tmp, arr)
    os.replace(tmp, path)


def _read_raw(path: Path, dtype: Any, start: int, count: int) -> np.ndarray:
    """``count`` items of ``dtype`` from item ``start`` (one read; nothing mapped)."""
    size = np.dtype(dtype).itemsize
    with open(path, "rb") as fh:
        out = np.fromfile(fh, dtype=dtype, count=count, offset=start * size)
    IO.add(path, out.nbytes)
    return out


def _gather_raw(path: Path, dtype: Any, rows: np.ndarray, width: int = 1) -> np.ndarray:
    """Rows ``rows`` (sorted or not, repeats allowed) of a raw array of ``width`` items per row, read
    with one plain read per run of consecutive rows: only the bytes read enter the process (a
    mapping would also map the pages around each one it touches, which for rows scattered over a
    large segment is most of the file)."""
    if not len(rows):
        return np.zeros((0, width) if width > 1 else 0, dtype=dtype)
    rows = np.asarray(rows, np.int64)
    uniq = np.unique(rows)
    cut = np.flatnonzero(np.diff(uniq) != 1) + 1
    starts, counts = uniq[np.r_[0, cut]], np.diff(np.r_[0, cut, len(uniq)])
    row_bytes = width * np.dtype(dtype).itemsize
    buf = np.empty((len(uniq), width), dtype=dtype)
    with open(path, "rb", buffering=0) as fh:
        done = 0
        for start, count in zip(starts.tolist(), counts.tolist(), strict=True):
            fh.seek(start * row_bytes)
            _read_exactly(fh, buf[done : done + count].data.cast("B"), path)
            done += count
    IO.pages(path, uniq * row_bytes, path.stat().st_size)
    out = buf[np.searchsorted(uniq, rows)]
    return out if width > 1 else out.reshape(-1)


def _read_exactly(fh: Any, view: memoryview, path: Path) -> None:
    """Fill ``view`` from ``fh`` (one read returns at most about 2 GiB on Linux, so loop)."""
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            raise PriorIndexError(f"{path}: dedup index file shorter than its rows (truncated?)")
        got += n


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = _tmp_beside(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------
# Key filters: a blocked Bloom filter per sorted table (one 64-byte block per key, 16 bits a key)


@dataclass
class KeyMasks:
    """Query keys prepared for key filters of any size: the high 32 bits of each key (they choose
    its block) and the 512-bit mask of its BLOOM_PROBES bits in the block (the same in every
    filter, so computed once for all segments). Double hashing on a remix of the key: the keys are
    hashes already, the remix keeps the block and the bits independent."""

    high: np.ndarray  # uint64
    masks: np.ndarray  # (n, 8) uint64

    @classmethod
    def of(cls, keys: np.ndarray) -> KeyMasks:
        keys = np.asarray(keys, np.uint64)
        mixed = minhash._fmix64(keys ^ np.uint64(0x9E3779B97F4A7C15)).astype(np.int64) & 0x3FFFF
        step = (mixed >> 9) | 1  # odd: the probes of a key are distinct bits of its 512
        masks = np.zeros((len(keys), 8), np.uint64)
        rows = np.arange(len(keys))
        for i in range(BLOOM_PROBES):
            bit = ((mixed & 511) + i * step) & 511
            masks[rows, bit >> 6] |= np.left_shift(np.uint64(1), (bit & 63).astype(np.uint64))
        return cls(keys >> np.uint64(32), masks)

    def blocks(self, n_blocks: int) -> np.ndarray:
        return ((self.high * np.uint64(n_blocks)) >> np.uint64(32)).astype(np.int64)


def bloom_blocks(n_keys: int) -> int:
    return max(1, -(-n_keys * BLOOM_BITS_PER_KEY // 512))


def bloom_add(words: np.ndarray, keys: np.ndarray) -> None:
    """Set the bits of ``keys`` in a filter (uint64 words, 8 a block)."""
    table = words.reshape(-1, 8)
    km = KeyMasks.of(keys)
    np.bitwise_or.at(table, km.blocks(len(table)), km.masks)


def bloom_build(keys: np.ndarray) -> np.ndarray:
    """The filter of ``keys`` as uint64 words, 8 (512 bits) per block."""
    words = np.zeros(bloom_blocks(len(keys)) * 8, np.uint64)
    bloom_add(words, keys)
    return words


def _spans(sorted_at: np.ndarray, width: int) -> list[tuple[int, int]]:
    """Index ranges [lo, hi) of an ascending array, each covering less than ``width`` of its values."""
    out, lo = [], 0
    while lo < len(sorted_at):
        hi = int(np.searchsorted(sorted_at, sorted_at[lo] + width, "left"))
        out.append((lo, hi))
        lo = hi
    return out


def bloom_check(path: Path, query: KeyMasks, cache_bytes: int = DEFAULT_CACHE_MB << 20) -> np.ndarray:
    """Per query key: whether the filter at ``path`` may hold it (False: it surely does not). Only
    the blocks of the queried keys are read, through mappings of at most ``cache_bytes`` of the
    filter at a time (each closed before the next: a filter larger than the cache is never resident
    whole, whatever the history)."""
    file_size = path.stat().st_size
    n_blocks = file_size // 64
    block = query.blocks(n_blocks)
    order = np.argsort(block, kind="stable")  # ascending already when the keys are
    sblock = block[order]
    IO.pages(path, block * 64, file_size)
    words = np.empty((len(block), 8), np.uint64)
    for lo, hi in _spans(sblock, max(1, cache_bytes // 64)):
        first = int(sblock[lo])
        span = int(sblock[hi - 1]) - first + 1
        mm = np.memmap(path, dtype=np.uint64, mode="r", offset=first * 64, shape=(span * 8,))
        try:
            words[order[lo:hi]] = mm.reshape(span, 8)[sblock[lo:hi] - first]
        finally:
            del mm
    return np.all((words & query.masks) == query.masks, axis=1)


# ---------------------------------------------------------------------------------------------
# Sorted tables: uint64 keys with a uint32 payload (a row of the segment), looked up in blocks


def write_table(folder: Path, name: str, keys: np.ndarray, rows: np.ndarray) -> None:
    """Sort by (key, row) and write ``name.keys``, ``name.rows``, ``name.fence`` and the key
    filter ``name.bloom``."""
    order = np.lexsort((rows, keys))
    skeys = np.ascontiguousarray(keys[order], dtype=np.uint64)
    _write_raw(folder / f"{name}.keys", skeys)
    _write_raw(folder / f"{name}.rows", np.ascontiguousarray(rows[order], dtype=np.uint32))
    _write_raw(folder / f"{name}.fence", skeys[::BLOCK])
    _write_raw(folder / f"{name}.bloom", bloom_build(skeys))


def _fence_blocks(path: Path, query: np.ndarray, cache_bytes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per query: the first and last fence block that can hold it (equal keys may run over a
    block boundary), and the number of blocks. The fence is mapped, not read whole, and searched
    a group of queries at a time under a fresh mapping: a binary search touches at most 64 pages a
    query, so the pages resident at once stay under ``cache_bytes`` however long the fence."""
    size = path.stat().st_size
    first = np.zeros(len(query), np.int64)
    last = np.zeros(len(query), np.int64)
    group = max(1, cache_bytes // (64 * PAGE))
    for g in range(0, len(query) if size else 0, group):
        fence = np.memmap(path, dtype=np.uint64, mode="r")
        try:
            part = query[g : g + group]
            first[g : g + group] = np.maximum(np.searchsorted(fence, part, "left") - 1, 0)
            last[g : g + group] = np.maximum(np.searchsorted(fence, part, "right") - 1, 0)
        finally:
            del fence
    IO.pages(path, np.concatenate([first, last]) * 8, size)
    return first, last, size // 8


def _table_keys(folder: Path, name: str) -> int:
    """The number of keys of a sorted table, after checking its files agree: a truncated table or
    key filter would otherwise make lookups silently miss copies. A filter is sized for at least
    the table's keys (a merged one for the expired keys too), in whole 512-bit blocks."""
    n_keys = (folder / f"{name}.keys").stat().st_size // 8
    rows = (folder / f"{name}.rows").stat().st_size
    bloom = folder / f"{name}.bloom"
    bloom_size = bloom.stat().st_size if bloom.exists() else None
    if rows != n_keys * 4 or (
        bloom_size is not None and (bloom_size % 64 or bloom_size < bloom_blocks(n_keys) * 64)
    ):
        raise PriorIndexError(f"{folder / name}: dedup index table files disagree in size (truncated?)")
    return n_keys


def probe_table(
    folder: Path,
    name: str,
    query: np.ndarray,
    cache_rows: int,
    block: int = BLOCK,
    use_filter: bool = True,
    masks: KeyMasks | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every (query position, row) with ``table key == query[position]``; ``query`` sorted.

    With ``use_filter``, the table's key filter first drops the queries it surely does not hold
    (``masks``: the queries' :class:`KeyMasks`, when the caller probes several tables with them);
    then only the fence blocks (``block`` keys) that can hold a remaining key are read, in groups
    of at most ``cache_rows`` keys."""
    positions = np.arange(len(query))
    n_keys = _table_keys(folder, name)
    bloom = folder / f"{name}.bloom"
    cache_bytes = cache_rows * 12  # a key and a row
    if use_filter and len(query) and bloom.exists():
        positions = np.flatnonzero(bloom_check(bloom, masks or KeyMasks.of(query), cache_bytes))
        query = query[positions]
    if not n_keys or not len(query):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first, last, _ = _fence_blocks(folder / f"{name}.fence", query, cache_bytes)
    needed = _block_union(first, last)
    max_blocks = max(1, cache_rows // block)
    out_q: list[np.ndarray] = []
    out_r: list[np.ndarray] = []
    # Needed blocks in groups of at most max_blocks (the memory bound), each read in one gather.
    for g in range(0, len(needed), max_blocks):
        group = needed[g : g + max_blocks]
        lo_q = int(np.searchsorted(last, group[0], "left"))
        hi_q = int(np.searchsorted(first, group[-1], "right"))
        found = _probe_blocks(folder, name, query[lo_q:hi_q], group, block, n_keys)
        out_q.append(found[0] + lo_q)
        out_r.append(found[1])
    qpos, rows = np.concatenate(out_q), np.concatenate(out_r)
    # A query whose equal keys straddle two groups appears in both: keep one copy of each pair.
    pairs = np.unique(np.stack([qpos, rows]), axis=1)
    return positions[pairs[0]], pairs[1]


def _block_union(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The blocks of the ranges ``first[i]..last[i]``, ascending, each once (sized by the queries,
    never by the table)."""
    span = last - first + 1
    ends = np.cumsum(span)
    within = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - span, span)
    return np.unique(np.repeat(first, span) + within)


def _probe_blocks(
    folder: Path, name: str, query: np.ndarray, blocks: np.ndarray, block: int, n_keys: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (query position, row) pairs found in the given fence blocks (ascending) of a table."""
    at = (blocks[:, None] * block + np.arange(block)[None, :]).reshape(-1)
    at = at[at < n_keys]  # the last block may be short
    keys = _gather_raw(folder / f"{name}.keys", np.uint64, at)  # sorted: blocks ascending
    left = np.searchsorted(keys, query, "left")
    count = np.searchsorted(keys, query, "right") - left
    hit = np.flatnonzero(count)
    if not len(hit):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    reps = count[hit]
    pos = np.repeat(left[hit] - np.cumsum(reps) + reps, reps) + np.arange(int(reps.sum()))
    rows = _gather_raw(folder / f"{name}.rows", np.uint32, at[pos])
    return np.repeat(hit, reps).astype(np.int64), rows.astype(np.int64)


def id_hashes(ids: Sequence[str]) -> np.ndarray:
    return np.array(
        [int.from_bytes(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest(), "little") for i in ids],
        dtype=np.uint64,
    )


# ---------------------------------------------------------------------------------------------
# Segments


@dataclass(frozen=True)
class Segment:
    """One night's documents: ranks ``start .. start + n - 1`` of the index."""

    folder: Path
    start: int
    n: int
    block: int = BLOCK  # keys per fence block of its tables
    nights: tuple[tuple[str, int], ...] = ()  # (night, documents) in rank order; merged segments hold several

    def sigs(self, rows: np.ndarray, num_perm: int, dtype: Any) -> np.ndarray:
        return _gather_raw(self.folder / "sigs", dtype, rows, num_perm)

    def ids(self, rows: np.ndarray) -> list[str]:
        if not len(rows):
            return []
        bounds = _gather_raw(self.folder / "id_offsets", np.int64, np.stack([rows, rows + 1], 1).reshape(-1))
        out: list[str] = []
        with open(self.folder / "ids", "rb") as fh:
            for a, b in bounds.reshape(-1, 2).tolist():
                fh.seek(a)
                out.append(fh.read(b - a).decode("utf-8"))
        return out

    def domain_hashes(self, rows: np.ndarray) -> np.ndarray:
        return _gather_raw(self.folder / "domain_hash", np.uint64, rows)


def _segment_meta(folder: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((folder / "meta.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise PriorIndexError(f"{folder}: dedup index segment unreadable or incomplete: {exc}") from exc
    if not (
        isinstance(meta, dict)
        and isinstance(meta.get("n"), int)
        and isinstance(meta.get("start"), int)
        and (meta.get("format") == FORMAT or isinstance(meta.get("domain_names"), list))
    ):
        raise PriorIndexError(f"{folder}: dedup index segment meta.json lacks its count or domain names")
    return meta


def table_names(bands: int) -> list[str]:
    return ["idhash", "ckey"] + [f"band{b:03d}" for b in range(bands)]


def domain_hashes(domains: Sequence[str | None]) -> np.ndarray:
    """A 64-bit hash per registrable domain (0: none). The index keeps these, not the names: a
    cluster's domain count only needs to tell domains apart, and a list of names would grow with
    every domain the history ever saw."""
    out = np.zeros(len(domains), np.uint64)
    for i, d in enumerate(domains):
        if d is not None:
            h = int.from_bytes(hashlib.blake2b(d.encode("utf-8"), digest_size=8).digest(), "little")
            out[i] = h or 1
    return out


def _upgrade_segment(folder: Path, meta: dict[str, Any], bands: int) -> dict[str, Any]:
    """An older segment is brought to this format in place: a format-1 segment (no key filters)
    gets them (one sequential read of each key table; its 4,096-key fence blocks stay, a merge
    rewrites them), and the domain codes of formats 1 and 2 become domain hashes. Each new file is
    written under a temporary name and renamed, ``meta.json`` last (a crash leaves the old format,
    upgraded again at the next open; older readers ignore the new files)."""
    upgraded = dict(meta)
    if meta["format"] == 1:
        for name in table_names(bands):
            keys = np.fromfile(folder / f"{name}.keys", dtype=np.uint64)
            _write_raw_atomic(folder / f"{name}.bloom", bloom_build(keys))
        upgraded |= {"block": OLD_BLOCK, "nights": [[folder.name, int(meta["n"])]]}
    lut = np.append(domain_hashes([str(d) for d in meta["domain_names"]]), np.uint64(0))  # -1: none
    _write_domain_hashes(folder, lut, int(meta["n"]))
    _fsync_dir(folder)
    upgraded.pop("domain_names")
    upgraded["format"] = FORMAT
    _write_json_atomic(folder / "meta.json", upgraded)
    # missing_ok: another process that opened the same old index may have upgraded it first
    (folder / "domains").unlink(missing_ok=True)
    return upgraded


UPGRADE_CHUNK = 1 << 20  # documents per read when domain codes become hashes (12 MB in memory)


def _write_domain_hashes(folder: Path, lut: np.ndarray, n: int) -> None:
    """The old ``domains`` codes of a segment's ``n`` documents, written as hashes (``lut``, the
    hash of each code) a chunk at a time, so the upgrade's memory does not grow with the segment."""
    path = folder / "domain_hash"
    tmp = _tmp_beside(path)
    with open(tmp, "wb") as out:
        for r0 in range(0, n, UPGRADE_CHUNK):
            # the file's size was checked when the segment was opened (_check_sizes)
            codes = _read_raw(folder / "domains", np.int32, r0, min(UPGRADE_CHUNK, n - r0))
            lut[codes].tofile(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Tonight's documents and the replay shared by the local and the Ray engine


@dataclass
class Docs:
    """Documents in rank order: tonight's (or the kept ones being appended)."""

    ids: list[str]
    domains: list[str | None]
    keys: np.ndarray  # (n, 2) uint64; (0, 0): no key
    sigs: np.ndarray  # (n, num_perm)

    @classmethod
    def build(
        cls, ids: list[str], urls: Sequence[str | None], keys: Sequence[bytes], sigs: np.ndarray
    ) -> Docs:
        arr = np.zeros((len(ids), 2), dtype=np.uint64)
        for i, key in enumerate(keys):
            if key:
                arr[i] = np.frombuffer(key, dtype=np.uint64)
        return cls(list(ids), [dedup.registrable_domain(u) for u in urls], arr, sigs)

    @classmethod
    def from_entries(cls, entries: dedup.IndexEntries) -> Docs:
        """The documents of an in-memory index's ``entries()``, in its order."""
        return cls(
            entries.ids.to_pylist(),
            [entries.domain_names[c] if c >= 0 else None for c in entries.domains.tolist()],
            entries.keys,
            entries.sigs,
        )


def earlier_touched(n_prior: int, leaders: np.ndarray, buckets: list[Bucket]) -> np.ndarray:
    """The earlier documents (ranks below ``n_prior``) a night's exact copies and buckets touch."""
    parts = [leaders[leaders < n_prior]] + [b[2][b[2] < n_prior] for b in buckets]
    return np.unique(np.concatenate(parts))


def exact_pairs(keys: np.ndarray, offset: int, prior_leader: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(copies, their leader) as ranks for documents ranked ``offset + i`` with content ``keys``;
    ``prior_leader``: the earlier document holding each key (-1: none). A leader is the earliest
    document with the key, as in ``DedupIndex.assign``."""
    has = np.flatnonzero((keys[:, 0] != 0) | (keys[:, 1] != 0))
    if not len(has):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    srt = has[np.lexsort((has, keys[has, 1], keys[has, 0]))]
    k = keys[srt]
    new_group = np.ones(len(srt), dtype=bool)
    new_group[1:] = (k[1:, 0] != k[:-1, 0]) | (k[1:, 1] != k[:-1, 1])
    first = srt[np.maximum.accumulate(np.where(new_group, np.arange(len(srt)), 0))]
    leader = np.where(prior_leader[first] >= 0, prior_leader[first], first + offset)
    ranks = srt + offset
    copy = ranks != leader
    return ranks[copy], leader[copy]


@dataclass
class Replay:
    """Union-find over the ranks that take part in a night's clustering (union by smallest rank)."""

    nodes: np.ndarray  # sorted ranks
    roots: np.ndarray  # per node: the smallest rank of its cluster
    max_sim: np.ndarray  # per node
    joins: np.ndarray  # (m, 4): the edges that joined two clusters, in order (a, b, band, key bits)


Verify = Callable[[int], tuple[np.ndarray, np.ndarray]]  # bucket number -> (pairs of ranks, best)


def _stamp(key: int) -> int:
    """A band key (uint64) as the int64 with the same bits (the forest's storage)."""
    return int(np.array([key], np.uint64).view(np.int64)[0])


def replay(
    extra_nodes: np.ndarray,
    copies: np.ndarray,
    leaders: np.ndarray,
    buckets: list[Bucket],
    forest: np.ndarray,
    verify: Verify | None = None,
) -> Replay:
    """Clusters as ``DedupIndex.assign`` forms them: exact copies first, then the buckets in (band,
    band key) order, a bucket skipped when its members are already one cluster; the earlier nights'
    forest edges (rows of a, b, band, key) are applied in the same order, after a bucket of tonight
    with the same band and key. ``verify``: verifies bucket ``i`` when it is reached and not skipped
    (then its pairs and best in ``buckets`` are not used); else the buckets come verified."""
    parts = [extra_nodes, copies, leaders, forest[:, 0], forest[:, 1]] + [b[2] for b in buckets]
    nodes = np.unique(np.concatenate([np.asarray(p, np.int64) for p in parts]))
    n = len(nodes)
    uf = dedup.UnionFind(n)
    max_sim = np.zeros(n, dtype=np.float64)
    joins: list[tuple[int, int, int, int]] = []

    def join(a: int, b: int, band: int, stamp: int) -> None:
        ra, rb = uf.find(a), uf.find(b)
        if ra != rb:
            uf.union(ra, rb)
            joins.append((int(nodes[a]), int(nodes[b]), band, stamp))

    ci, cl = np.searchsorted(nodes, copies), np.searchsorted(nodes, leaders)
    max_sim[ci] = 1.0
    max_sim[cl] = 1.0
    for a, b in zip(cl.tolist(), ci.tolist(), strict=True):
        join(a, b, EXACT_BAND, 0)
    exact = forest[:, 2] == EXACT_BAND
    fa, fb = np.searchsorted(nodes, forest[:, 0]), np.searchsorted(nodes, forest[:, 1])
    for a, b in zip(fa[exact].tolist(), fb[exact].tolist(), strict=True):
        join(a, b, EXACT_BAND, 0)
    # Events in (band, key, kind) order: kind 0 a bucket of tonight, 1 an earlier forest edge.
    lsh = np.flatnonzero(~exact)
    events = [(b[0], b[1], 0, i) for i, b in enumerate(buckets)]
    fkeys = forest[:, 3].astype(np.int64).view(np.uint64)
    events += [(int(forest[j, 2]), int(fkeys[j]), 1, int(j)) for j in lsh.tolist()]
    events.sort()
    for band, key, kind, i in events:
        if kind == 1:
            join(int(fa[i]), int(fb[i]), band, int(forest[i, 3]))
            continue
        members = buckets[i][2]
        local = np.searchsorted(nodes, members)
        ms = local.tolist()
        root0 = uf.find(ms[0])
        if all(uf.find(j) == root0 for j in ms[1:]):
            continue
        pairs, best = verify(i) if verify is not None else (buckets[i][3], buckets[i][4])
        np.maximum.at(max_sim, local, best)
        stamp = _stamp(key)
        for a, b in np.searchsorted(nodes, pairs).reshape(-1, 2).tolist():
            join(a, b, band, stamp)
    roots = nodes[np.fromiter((uf.find(i) for i in range(n)), dtype=np.int64, count=n)]
    joined = np.array(joins, dtype=np.int64).reshape(-1, 4)
    return Replay(nodes, roots, max_sim, joined)


# ---------------------------------------------------------------------------------------------
# The index


class PriorIndex:
    """One state of the on-disk index (a manifest), read only; :meth:`append` writes the next.

    ``root``: the index folder; ``manifest``: a manifest file name in it, or None for an empty index.
    """

    def __init__(
        self,
        root: Path,
        manifest: str | None,
        cfg: dedup.Config,
        cache_mb: int = DEFAULT_CACHE_MB,
        use_filter: bool = True,
    ) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.cfg = cfg
        self.bands, self.rows = dedup.lsh_params(cfg)
        self.dtype = minhash.signature_dtype(cfg.scheme)
        self.empty = self.dtype(minhash.empty_value(cfg.scheme))
        self.cache_rows = max(BLOCK, cache_mb * (1 << 20) // 12)
        self.cache_mb = cache_mb
        self.use_filter = use_filter  # False: every table is probed without its key filter (benchmark)
        self.first = 0  # the lowest rank still looked up (retention moves it up)
        self.end = 0  # one past the highest rank: tonight's documents rank from here
        self.segments: list[Segment] = []
        self.comps_file: str | None = None
        self._comp_members = np.zeros(0, np.int64)
        self._comp_of = np.zeros(0, np.int64)
        self._forest = np.zeros((0, 4), np.int64)  # a, b, band, key (as int64 bits); sorted by comp
        self._forest_comp = np.zeros(0, np.int64)
        if manifest is not None:
            self._open(self.root / manifest)

    # -- reading ------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {
            "scheme": self.cfg.scheme,
            "num_perm": self.cfg.num_perm,
            "seed": self.cfg.seed,
            "shingle_words": self.cfg.shingle_words,
            "min_words": self.cfg.min_words,
            "bands": self.bands,
            "rows": self.rows,
            # The stored forest edges were verified with these two: another value needs new edges.
            "threshold": self.cfg.threshold,
            "max_bucket_exemplars": self.cfg.max_bucket_exemplars,
        }

    def _open(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise PriorIndexError(f"{path}: cannot read dedup index manifest: {exc}") from exc
        if not (
            isinstance(data, dict)
            and isinstance(data.get("segments"), list)
            and isinstance(data.get("n"), int)
        ):
            raise PriorIndexError(f"{path}: dedup index manifest lacks its segment list or document count")
        if data.get("format", 1) not in FORMATS:
            raise PriorIndexError(
                f"{path}: dedup index format {data.get('format')!r} is newer than this version"
            )
        unrecorded = self._check_settings(path, data.get("settings", {}))
        self.end = data["n"]
        self.first = int(data.get("first", 0))
        start: int | None = None
        for name in data["segments"]:
            folder = self.root / "segments" / name
            meta = _segment_meta(folder)
            start = meta["start"] if start is None else start  # retention: the first may start lower
            if meta["start"] != start or meta.get("format") not in FORMATS:
                raise PriorIndexError(f"{folder}: segment does not continue the index at rank {start}")
            n = int(meta["n"])
            self._check_sizes(folder, n, meta["format"])
            if meta["format"] != FORMAT:
                meta = _upgrade_segment(folder, meta, self.bands)
            nights = tuple((str(a), int(b)) for a, b in meta.get("nights", [[name, n]]))
            if sum(c for _, c in nights) != n:
                raise PriorIndexError(f"{folder}: segment's nights do not add up to its {n} documents")
            block = int(meta.get("block", OLD_BLOCK))
            self.segments.append(Segment(folder, start, n, block, nights))
            start += n
        if start is not None and (start != self.end or self.segments[0].start > self.first):
            raise PriorIndexError(
                f"{path}: manifest counts ranks {self.first}-{self.end}, segments end at {start}"
            )
        self.comps_file = data.get("comps")
        if self.comps_file:
            try:
                with np.load(self.root / "comps" / self.comps_file, allow_pickle=False) as comps:
                    self._comp_members, self._comp_of = comps["members"], comps["comp"]
                    self._forest, self._forest_comp = comps["forest"], comps["forest_comp"]
            except (OSError, ValueError, KeyError) as exc:
                raise PriorIndexError(
                    f"{self.comps_file}: cannot read dedup index components: {exc}"
                ) from exc
        if unrecorded:
            self._record_settings(path, data, unrecorded)

    # Settings that only the stored forest depends on (its edges were verified with them).
    _FOREST_SETTINGS = ("threshold", "max_bucket_exemplars")

    def _check_settings(self, path: Path, got: dict[str, Any]) -> list[str]:
        """Refuse an index built with other settings. Returns the forest's settings that an index
        written before they were recorded lacks (it is upgraded once its forest is known)."""
        want = self.settings()
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        unrecorded = [k for k in self._FOREST_SETTINGS if k in diff and k not in got]
        for k in unrecorded:
            del diff[k]
        if diff:
            detail = ", ".join(f"{k}: index {a!r}, config {b!r}" for k, (a, b) in diff.items())
            raise PriorIndexError(f"{path}: dedup index built with other settings ({detail}); rebuild it")
        return unrecorded

    def _record_settings(self, path: Path, data: dict[str, Any], unrecorded: list[str]) -> None:
        """An index written before ``threshold`` and ``max_bucket_exemplars`` were recorded: nothing
        in it depends on them unless earlier documents form clusters among themselves (the forest).
        Without a forest the current values are recorded in its manifest (in place, atomically);
        with one, the index is refused, as its edges were verified with values nobody knows."""
        if len(self._forest):
            raise PriorIndexError(
                f"{path}: dedup index written before {' and '.join(unrecorded)} were recorded, holding "
                f"clusters verified with unknown values of them; rebuild it"
            )
        settings = {**data.get("settings", {}), **{k: self.settings()[k] for k in unrecorded}}
        _write_json_atomic(path, {**data, "settings": settings})

    def _check_sizes(self, folder: Path, n: int, fmt: int) -> None:
        """A segment whose files are not all there at their full size is refused (never half-read)."""
        expect = {"sigs": n * self.cfg.num_perm * np.dtype(self.dtype).itemsize, "id_offsets": (n + 1) * 8}
        expect |= {"domain_hash": n * 8} if fmt == FORMAT else {"domains": n * 4}
        for name, size in expect.items():
            path = folder / name
            if not path.exists() or path.stat().st_size != size:
                raise PriorIndexError(f"{path}: dedup index segment file missing or truncated")

    def __len__(self) -> int:
        """One past the highest rank (tonight's documents rank from here); ranks below
        :attr:`first` are no longer looked up (retention)."""
        return self.end

    @property
    def documents(self) -> int:
        """Documents still looked up."""
        return self.end - self.first

    def _by_segment(self, ranks: np.ndarray) -> list[tuple[Segment, np.ndarray, np.ndarray]]:
        """(segment, positions in ``ranks``, rows in the segment) for each segment holding some."""
        starts = np.array([s.start for s in self.segments], np.int64)
        seg_of = np.searchsorted(starts, ranks, "right") - 1
        out = []
        for si in np.unique(seg_of).tolist():
            pos = np.flatnonzero(seg_of == si)
            out.append((self.segments[si], pos, ranks[pos] - self.segments[si].start))
        return out

    def sigs(self, ranks: np.ndarray) -> np.ndarray:
        out = np.zeros((len(ranks), self.cfg.num_perm), dtype=self.dtype)
        for seg, pos, rows in self._by_segment(ranks):
            out[pos] = seg.sigs(rows, self.cfg.num_perm, self.dtype)
        return out

    def ids(self, ranks: np.ndarray) -> list[str]:
        out: list[str] = [""] * len(ranks)
        for seg, pos, rows in self._by_segment(ranks):
            for p, v in zip(pos.tolist(), seg.ids(rows), strict=True):
                out[p] = v
        return out

    def domain_hashes(self, ranks: np.ndarray) -> np.ndarray:
        """The :func:`domain_hashes` of the documents' registrable domains (0: none)."""
        out = np.zeros(len(ranks), np.uint64)
        for seg, pos, rows in self._by_segment(ranks):
            out[pos] = seg.domain_hashes(rows)
        return out

    def _probe(
        self, seg: Segment, table: str, query: np.ndarray, masks: KeyMasks | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return probe_table(seg.folder, table, query, self.cache_rows, seg.block, self.use_filter, masks)

    def _masks(self, query: np.ndarray) -> KeyMasks | None:
        return KeyMasks.of(query) if self.use_filter and self.segments else None

    def band_members(self, band: int, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, rank) of every earlier candidate document whose key in ``band`` equals
        ``query[position]`` (``query`` sorted, unique); ranks ascending within a position."""
        qs, rs = [], []
        masks = self._masks(query)
        for seg in self.segments:
            q, r = self._probe(seg, f"band{band:03d}", query, masks)
            qs.append(q)
            rs.append(r + seg.start)
        if not qs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        q, r = np.concatenate(qs), np.concatenate(rs)
        live = r >= self.first
        q, r = q[live], r[live]
        order = np.lexsort((r, q))
        return q[order], r[order]

    def exact_leaders(self, keys: np.ndarray) -> np.ndarray:
        """Per content key, the earliest earlier document holding it (-1: none, or no key)."""
        out = np.full(len(keys), -1, np.int64)
        has = np.flatnonzero((keys[:, 0] != 0) | (keys[:, 1] != 0))
        if not len(has) or not self.segments:
            return out
        uniq, inv = np.unique(keys[has, 0], return_inverse=True)
        found: dict[tuple[int, int], int] = {}
        masks = self._masks(uniq)
        for seg in self.segments:
            q, rows = self._probe(seg, "ckey", uniq, masks)
            live = rows + seg.start >= self.first
            q, rows = q[live], rows[live]
            hi = _gather_raw(seg.folder / "ckey_hi", np.uint64, rows)
            for qi, row, k1 in zip(q.tolist(), rows.tolist(), hi.tolist(), strict=True):
                found.setdefault((qi, k1), seg.start + row)  # segments in rank order: first is earliest
        if found:
            for j, qi in zip(has.tolist(), inv.tolist(), strict=True):
                out[j] = found.get((qi, int(keys[j, 1])), -1)
        return out

    def known_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` that documents of earlier nights have."""
        if not ids or not self.segments:
            return set()
        hashes = id_hashes(ids)
        uniq = np.unique(hashes)
        found: set[str] = set()
        masks = self._masks(uniq)
        for seg in self.segments:
            _, rows = self._probe(seg, "idhash", uniq, masks)
            rows = rows[rows + seg.start >= self.first]
            if len(rows):
                found.update(seg.ids(rows))
        return found & set(ids)

    def components(self, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(component of each rank: its smallest rank, forest edges of those components)."""
        comp = ranks.astype(np.int64, copy=True)
        if len(self._comp_members) and len(ranks):
            pos = np.clip(np.searchsorted(self._comp_members, ranks), 0, len(self._comp_members) - 1)
            hit = self._comp_members[pos] == ranks
            comp[hit] = self._comp_of[pos[hit]]
        wanted = np.unique(comp)
        lo = np.searchsorted(self._forest_comp, wanted, "left")
        hi = np.searchsorted(self._forest_comp, wanted, "right")
        spans = [np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
        rows = np.concatenate(spans or [np.zeros(0, np.int64)])
        return comp, self._forest[rows.astype(np.int64)]

    # -- buckets ------------------------------------------------------------------------------

    def buckets(self, docs: Docs, offset: int, cand: np.ndarray) -> tuple[list[Bucket], Verify]:
        """The LSH buckets (two or more members) that hold one of ``docs`` (ranked ``offset + i``;
        ``cand``: the ones that take part in LSH), with every earlier candidate member, and the
        function that verifies one of them (the signatures of the earlier members are read once,
        here; a bucket is verified only if the replay reaches it unjoined)."""
        cidx = np.flatnonzero(cand)
        out: list[Bucket] = []
        none = np.zeros((0, 2), np.int64)
        if len(cidx):
            csigs = docs.sigs[cidx]
            for band in range(self.bands):
                bkeys = dedup._band_keys(csigs, band, self.rows)
                uniq, inv = np.unique(bkeys, return_inverse=True)
                qpos, pranks = self.band_members(band, uniq)
                n_new = np.bincount(inv, minlength=len(uniq))
                n_old = np.bincount(qpos, minlength=len(uniq))
                multi = np.flatnonzero(n_new + n_old >= 2)
                new_order = np.argsort(inv, kind="stable")
                new_start = np.concatenate(([0], np.cumsum(n_new)))
                old_start = np.concatenate(([0], np.cumsum(n_old)))
                for u in multi.tolist():
                    olds = pranks[old_start[u] : old_start[u + 1]]
                    news = cidx[new_order[new_start[u] : new_start[u + 1]]] + offset
                    out.append((band, int(uniq[u]), np.concatenate([olds, news]), none, none))
        old_ranks = np.unique(np.concatenate([b[2][b[2] < offset] for b in out] or [np.zeros(0, np.int64)]))
        old_sigs = self.sigs(old_ranks)
        need = int(np.ceil(self.cfg.threshold * self.cfg.num_perm - 1e-9))

        def verify(i: int) -> tuple[np.ndarray, np.ndarray]:
            members = out[i][2]
            old = members < offset
            sigs = np.concatenate(
                [old_sigs[np.searchsorted(old_ranks, members[old])], docs.sigs[members[~old] - offset]]
            )
            edges, best = dedup.verify_bucket(sigs, need, self.cfg.max_bucket_exemplars)
            return members[np.array(edges, dtype=np.int64).reshape(-1, 2)], best

        return out, verify

    # -- tonight ------------------------------------------------------------------------------

    def assign(self, docs: Docs, legal_notices: np.ndarray | None = None) -> tuple[pa.Table, set[str]]:
        """``DedupIndex.assign``'s columns for ``docs`` (tonight's documents, in order) against
        this index, and the ids of earlier documents that name one of their clusters."""
        n_prior, n = len(self), len(docs.ids)
        copies, leaders = exact_pairs(docs.keys, n_prior, self.exact_leaders(docs.keys))
        short = np.all(docs.sigs == self.empty, axis=1) if n else np.zeros(0, bool)
        cand = ~short
        cand[copies - n_prior] = False
        buckets, verify = self.buckets(docs, n_prior, cand)
        _, forest = self.components(earlier_touched(n_prior, leaders, buckets))
        tonight = np.arange(n_prior, n_prior + n, dtype=np.int64)
        rep = replay(tonight, copies, leaders, buckets, forest, verify)
        old = rep.nodes < n_prior
        old_ranks = rep.nodes[old]
        old_ids = dict(zip(old_ranks.tolist(), self.ids(old_ranks), strict=True))
        doms = np.concatenate([self.domain_hashes(old_ranks), domain_hashes(docs.domains)])
        size = np.unique(rep.roots, return_inverse=True, return_counts=True)
        members = size[2][size[1]]
        pairs = {(r, d) for r, d in zip(rep.roots.tolist(), doms.tolist(), strict=True) if d}
        n_dom: dict[int, int] = {}
        for r, _ in pairs:
            n_dom[r] = n_dom.get(r, 0) + 1

        def name(rank: int) -> str:
            return old_ids[rank] if rank < n_prior else docs.ids[rank - n_prior]

        new = slice(len(old_ranks), None)
        roots = rep.roots[new].tolist()
        exact_of: list[str | None] = [None] * n
        for c, lead in zip(copies.tolist(), leaders.tolist(), strict=True):
            exact_of[c - n_prior] = name(lead)
        table = pa.table(
            {
                "dedup_cluster_id": pa.array([name(r) for r in roots], pa.string()),
                "dedup_cluster_size": pa.array(members[new], pa.int64()),
                "dedup_cluster_domains": pa.array([n_dom.get(r, 0) for r in roots], pa.int64()),
                "dedup_exact_of": pa.array(exact_of, pa.string()),
                "dedup_max_similarity": pa.array(np.round(rep.max_sim[new], 6), pa.float64()),
                "dedup_short": pa.array(short, pa.bool_()),
                "dedup_legal": pa.array(
                    np.zeros(n, bool) if legal_notices is None else legal_notices, pa.bool_()
                ),
            },
            schema=dedup.SIGNAL_SCHEMA,
        )
        return table, {old_ids[r] for r in set(roots) if r < n_prior}

    # -- writing ------------------------------------------------------------------------------

    def append(self, docs: Docs, manifest: str) -> PriorIndex:
        """Write ``docs`` (the documents a night kept, in order) as a new segment and the state
        after it as ``manifest``; return that state. Files are synced before the manifest names
        them, and nothing this index's own manifest names is changed."""
        n_prior, n = len(self), len(docs.ids)
        (self.root / "segments").mkdir(parents=True, exist_ok=True)
        (self.root / "comps").mkdir(parents=True, exist_ok=True)
        stem = Path(manifest).stem
        seg_name = f"{stem}-{secrets.token_hex(4)}"
        tmp = self.root / "segments" / f".{seg_name}.tmp"
        tmp.mkdir()
        try:
            copies, leaders, cand = self._write_segment(tmp, docs, n_prior, stem)
            comps_name = self._write_components(stem, docs, copies, leaders, cand)
            os.replace(tmp, self.root / "segments" / seg_name)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        _fsync_dir(self.root / "segments")
        return self._commit(
            manifest, [s.folder.name for s in self.segments] + [seg_name], comps_name, n_prior + n
        )

    def _commit(
        self, manifest: str, segments: list[str], comps: str | None, end: int, first: int | None = None
    ) -> PriorIndex:
        """Write the manifest of a state (its files already synced) and open it."""
        data = {
            "format": FORMAT,
            "settings": self.settings(),
            "first": self.first if first is None else first,
            "n": end,
            "segments": segments,
            "comps": comps,
        }
        _write_json_atomic(self.root / manifest, data)
        return PriorIndex(self.root, manifest, self.cfg, self.cache_mb, self.use_filter)

    def _write_segment(
        self, folder: Path, docs: Docs, n_prior: int, night: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(docs.ids)
        sigs = np.ascontiguousarray(docs.sigs, dtype=self.dtype).reshape(n, self.cfg.num_perm)
        copies, leaders = exact_pairs(docs.keys, n_prior, self.exact_leaders(docs.keys))
        short = np.all(sigs == self.empty, axis=1) if n else np.zeros(0, bool)
        cand = ~short
        cand[copies - n_prior] = False
        _write_raw(folder / "sigs", sigs)
        blobs = [i.encode("utf-8") for i in docs.ids]
        _write_raw(folder / "ids", np.frombuffer(b"".join(blobs), dtype=np.uint8))
        _write_raw(
            folder / "id_offsets", np.concatenate(([0], np.cumsum([len(b) for b in blobs]))).astype(np.int64)
        )
        rows = np.arange(n, dtype=np.uint32)
        write_table(folder, "idhash", id_hashes(docs.ids), rows)
        _write_raw(folder / "domain_hash", domain_hashes(docs.domains))
        # Content keys of the documents that are the first holder of their key.
        has = (docs.keys[:, 0] != 0) | (docs.keys[:, 1] != 0)
        first = has.copy()
        first[copies - n_prior] = False
        write_table(folder, "ckey", docs.keys[first, 0], rows[first])
        _write_raw(folder / "ckey_hi", docs.keys[:, 1])  # by row: verifies a hit on the first half
        cidx = np.flatnonzero(cand)
        for band in range(self.bands):
            write_table(folder, f"band{band:03d}", dedup._band_keys(sigs[cidx], band, self.rows), rows[cidx])
        meta = {
            "format": FORMAT,
            "start": n_prior,
            "n": n,
            "block": BLOCK,
            "nights": [[night, n]],
        }
        _write_json_atomic(folder / "meta.json", meta)  # synced before a manifest names the folder
        return copies, leaders, cand

    def _write_components(
        self, stem: str, docs: Docs, copies: np.ndarray, leaders: np.ndarray, cand: np.ndarray
    ) -> str | None:
        """The spanning forest after the new segment: the old forest of every cluster the new
        documents touch, replayed with their exact copies and buckets in (band, key) order; the
        edges that join two clusters are the new forest of those clusters (Kruskal, with the
        bucket order as the weight, so that any prefix of the order has the same components)."""
        n_prior = len(self)
        buckets, verify = self.buckets(docs, n_prior, cand)
        comp, old = self.components(earlier_touched(n_prior, leaders, buckets))
        rep = replay(np.zeros(0, np.int64), copies, leaders, buckets, old, verify)
        forest = rep.joins
        if not len(forest):
            return self.comps_file
        affected = np.unique(comp)
        keep_m = ~np.isin(self._comp_of, affected)
        keep_f = ~np.isin(self._forest_comp, affected)
        nodes = np.unique(forest[:, :2])
        roots = rep.roots[np.searchsorted(rep.nodes, nodes)]
        fcomp = rep.roots[np.searchsorted(rep.nodes, forest[:, 0])]
        members = np.concatenate([self._comp_members[keep_m], nodes])
        comp_of = np.concatenate([self._comp_of[keep_m], roots])
        mo = np.argsort(members, kind="stable")
        forest_all = np.concatenate([self._forest[keep_f], forest])
        fcomp_all = np.concatenate([self._forest_comp[keep_f], fcomp])
        fo = np.argsort(fcomp_all, kind="stable")
        return self._save_components(stem, members[mo], comp_of[mo], forest_all[fo], fcomp_all[fo])

    def _save_components(
        self, stem: str, members: np.ndarray, comp_of: np.ndarray, forest: np.ndarray, fcomp: np.ndarray
    ) -> str:
        name = f"{stem}-{secrets.token_hex(4)}.npz"
        target = self.root / "comps" / name
        tmp = target.with_name(f".{name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, members=members, comp=comp_of, forest=forest, forest_comp=fcomp)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        return name

    # -- upkeep: retention and merging segments -----------------------------------------------

    def night_ranks(self) -> list[tuple[str, int, int]]:
        """(night, first rank, documents) of every night still looked up, oldest first."""
        out = []
        for seg in self.segments:
            start = seg.start
            for night, n in seg.nights:
                if start + n > self.first or (
                    n == 0 and start >= self.first
                ):  # a night that kept none counts
                    out.append((night, start, n))
                start += n
        return out

    def expire(self, keep_nights: int, manifest: str) -> PriorIndex:
        """Retention: the state without the documents of all but the newest ``keep_nights`` nights
        (0: keep every night), written as ``manifest``. Ranks do not change: the expired ones are
        no longer looked up, segments wholly below the new first rank leave the manifest, and a
        merged segment that holds both sheds its expired rows when it is next merged."""
        nights = self.night_ranks()
        if keep_nights <= 0 or len(nights) <= keep_nights:
            return self
        first = nights[-keep_nights][1]
        names = [s.folder.name for s in self.segments if s.start + s.n > first or s.start >= first]
        comps = self._expire_components(Path(manifest).stem, first)
        return self._commit(manifest, names, comps, self.end, first)

    def _expire_components(self, stem: str, first: int) -> str | None:
        """The forest without the edges of expired documents, and the clusters its remaining edges
        form (a cluster that only an expired document held together falls apart)."""
        keep_f = (self._forest[:, 0] >= first) & (self._forest[:, 1] >= first)
        if keep_f.all():
            return self.comps_file
        forest = self._forest[keep_f]
        if not len(forest):
            return None
        members = np.unique(forest[:, :2])
        uf = dedup.UnionFind(len(members))
        for a, b in np.searchsorted(members, forest[:, :2]).tolist():
            ra, rb = uf.find(a), uf.find(b)
            if ra != rb:
                uf.union(ra, rb)
        comp_of = members[[uf.find(i) for i in range(len(members))]]
        fcomp = comp_of[np.searchsorted(members, forest[:, 0])]
        fo = np.argsort(fcomp, kind="stable")
        return self._save_components(stem, members, comp_of, forest[fo], fcomp[fo])

    def compact(self, max_segments: int, manifest: str) -> PriorIndex:
        """While there are more than ``max_segments`` segments (0: never), merge the newest ones
        into one, written as ``manifest``: the newest two, and older ones while the merged run holds
        at least as many documents as the segment before it (as a binary counter carries: a document
        is rewritten a few times in all, 2.7 on average over 365 nights at a limit of 8)."""
        state = self
        while 0 < max_segments < len(state.segments):
            live = [s.start + s.n - max(s.start, state.first) for s in state.segments]
            lo = merge_start(live)
            merged = state._merge(state.segments[lo:], Path(manifest).stem)
            names = [s.folder.name for s in state.segments[:lo]] + [merged]
            state = state._commit(manifest, names, state.comps_file, state.end)
        release_free_heap()  # the last step of a night's commit
        return state

    def _merge(self, segments: list[Segment], stem: str) -> str:
        """One segment with the live documents of ``segments`` (consecutive), written under a
        temporary name and renamed into place once synced: a crash leaves the old segments, which
        every manifest still names, and a temporary folder the next clean-up removes."""
        name = f"{stem}-{secrets.token_hex(4)}"
        tmp = self.root / "segments" / f".{name}.tmp"
        tmp.mkdir()
        try:
            _write_merged(tmp, segments, max(self.first, segments[0].start), self)
            os.replace(tmp, self.root / "segments" / name)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        _fsync_dir(self.root / "segments")
        return name


# ---------------------------------------------------------------------------------------------
# Merging segments (memory bounded by the index's read cache)


def merge_start(live: Sequence[int]) -> int:
    """The first of the segments (``live``: their live documents, oldest first; two or more) that
    :meth:`PriorIndex.compact` merges: the newest two, and older ones while the merged run holds at
    least as many documents as the segment before it."""
    lo, total = len(live) - 2, live[-1] + live[-2]
    while lo > 0 and total >= live[lo - 1]:
        lo -= 1
        total += live[lo]
    return lo


def segment_sizes(nights: Sequence[int], max_segments: int) -> list[int]:
    """The documents of each segment that :meth:`PriorIndex.compact` leaves after appending nights
    of ``nights`` documents one by one (no retention): the layout, without writing it."""
    sizes: list[int] = []
    for n in nights:
        sizes.append(n)
        while 0 < max_segments < len(sizes):
            lo = merge_start(sizes)
            sizes[lo:] = [sum(sizes[lo:])]
    return sizes


def _copy_rows(out: Any, path: Path, dtype: Any, width: int, rows: tuple[int, int], chunk: int) -> None:
    """Rows ``rows[0]`` to ``rows[1]`` (``width`` items each) of a raw file, appended to ``out``."""
    for r0 in range(rows[0], rows[1], chunk):
        r1 = min(r0 + chunk, rows[1])
        _read_raw(path, dtype, r0 * width, (r1 - r0) * width).tofile(out)


def _write_merged(folder: Path, segments: list[Segment], first: int, index: PriorIndex) -> None:
    """The files of one segment holding the documents of ``segments`` from rank ``first`` on."""
    width = index.cfg.num_perm
    chunk = max(1, index.cache_mb * (1 << 20) // (width * np.dtype(index.dtype).itemsize))
    nights: list[list[Any]] = []
    with ExitStack() as stack:
        out = {
            f: stack.enter_context(open(folder / f, "wb"))
            for f in ("sigs", "ckey_hi", "domain_hash", "ids", "id_offsets")
        }
        np.zeros(1, np.int64).tofile(out["id_offsets"])
        id_bytes = 0
        for seg in segments:
            skip = max(0, first - seg.start)
            _copy_rows(out["sigs"], seg.folder / "sigs", index.dtype, width, (skip, seg.n), chunk)
            _copy_rows(out["ckey_hi"], seg.folder / "ckey_hi", np.uint64, 1, (skip, seg.n), chunk)
            _copy_rows(out["domain_hash"], seg.folder / "domain_hash", np.uint64, 1, (skip, seg.n), chunk)
            for r0 in range(skip, seg.n, chunk):
                offsets = _read_raw(seg.folder / "id_offsets", np.int64, r0, min(chunk, seg.n - r0) + 1)
                _read_raw(
                    seg.folder / "ids", np.uint8, int(offsets[0]), int(offsets[-1] - offsets[0])
                ).tofile(out["ids"])
                (offsets[1:] - offsets[0] + id_bytes).tofile(out["id_offsets"])
                id_bytes += int(offsets[-1] - offsets[0])
            start = seg.start
            for night, n in seg.nights:
                if start >= first:
                    nights.append([night, n])
                start += n
        for fh in out.values():
            fh.flush()
            os.fsync(fh.fileno())
    for table in table_names(index.bands):
        _merge_table(folder, table, segments, first, index.cache_rows)
    n = segments[-1].start + segments[-1].n - first
    meta = {
        "format": FORMAT,
        "start": first,
        "n": n,
        "block": BLOCK,
        "nights": nights,
    }
    _write_json_atomic(folder / "meta.json", meta)


def _key_span(path: Path, edges: list[np.uint64], part: int) -> tuple[int, int]:
    """Positions of the keys of range ``part`` (between ``edges``) in a sorted key file."""
    n = path.stat().st_size // 8
    if not n:
        return 0, 0
    mm = np.memmap(path, dtype=np.uint64, mode="r")
    try:
        lo = int(np.searchsorted(mm, edges[part - 1])) if part else 0
        hi = int(np.searchsorted(mm, edges[part])) if part < len(edges) else n
        return lo, hi
    finally:
        del mm


def _merge_table(folder: Path, name: str, segments: list[Segment], first: int, cache_rows: int) -> None:
    """The sorted table ``name`` of the merged segment (rows from rank ``first``), with its fence and
    key filter, built one key range at a time: the keys are hashes, so each of the equal ranges of
    the uint64 space holds about ``cache_rows`` of them."""
    total = sum((s.folder / f"{name}.keys").stat().st_size // 8 for s in segments)
    parts = max(1, -(-total // cache_rows))
    edges = [np.uint64((p << 64) // parts) for p in range(1, parts)]
    written = 0
    with (
        open(folder / f"{name}.keys", "wb") as k_out,
        open(folder / f"{name}.rows", "wb") as r_out,
        open(folder / f"{name}.fence", "wb") as f_out,
        open(folder / f"{name}.bloom", "wb") as b_out,
    ):
        bloom = _BloomWriter(b_out, bloom_blocks(total))  # sized for every key, the expired ones too
        for p in range(parts):
            ks, rs = [], []
            for seg in segments:
                lo, hi = _key_span(seg.folder / f"{name}.keys", edges, p)
                rows = _read_raw(seg.folder / f"{name}.rows", np.uint32, lo, hi - lo).astype(np.int64)
                live = rows + seg.start >= first
                ks.append(_read_raw(seg.folder / f"{name}.keys", np.uint64, lo, hi - lo)[live])
                rs.append(rows[live] + seg.start - first)
            keys = np.concatenate(ks) if ks else np.zeros(0, np.uint64)
            rows = np.concatenate(rs) if rs else np.zeros(0, np.int64)
            order = np.lexsort((rows, keys))
            keys, rows = keys[order], rows[order]
            keys.tofile(k_out)
            rows.astype(np.uint32).tofile(r_out)
            keys[(-written) % BLOCK :: BLOCK].tofile(f_out)
            bloom.add(keys)
            written += len(keys)
        bloom.close()
        for fh in (k_out, r_out, f_out, b_out):
            fh.flush()
            os.fsync(fh.fileno())


class _BloomWriter:
    """A key filter written in key order. A key's filter block comes from its high bits, so
    ascending keys fill ascending blocks: only the blocks of the keys being added are in memory."""

    def __init__(self, out: Any, n_blocks: int) -> None:
        self.out, self.n_blocks = out, n_blocks
        self.done = 0  # blocks written
        self.pending = np.zeros((0, 8), np.uint64)  # blocks from `done` on

    def add(self, keys: np.ndarray) -> None:
        """Add ``keys`` (ascending, none smaller than a key added before)."""
        if not len(keys):
            return
        km = KeyMasks.of(keys)
        blocks = km.blocks(self.n_blocks) - self.done
        last = int(blocks[-1])
        if last >= len(self.pending):
            grow = np.zeros((last + 1 - len(self.pending), 8), np.uint64)
            self.pending = np.concatenate([self.pending, grow])
        np.bitwise_or.at(self.pending, blocks, km.masks)
        self.pending[:last].tofile(self.out)  # complete: later keys fall in block `last` or after
        self.pending = self.pending[last:].copy()
        self.done += last

    def close(self) -> None:
        rest = np.zeros((self.n_blocks - self.done - len(self.pending), 8), np.uint64)
        np.concatenate([self.pending, rest]).tofile(self.out)


# ---------------------------------------------------------------------------------------------
# Clean-up


def referenced(root: Path, manifests: Sequence[str]) -> set[str]:
    """Segment folders and component files the given manifests name."""
    names: set[str] = set()
    for m in manifests:
        path = root / m
        if not path.exists():
            continue
        data = json.loads(path.read_text("utf-8"))
        names.update(data["segments"])
        if data.get("comps"):
            names.add(data["comps"])
    return names


# The names this module gives (``-`` and 8 hex digits from secrets.token_hex(4)): the folder is
# the user's choice (dedup.index_dir), so nothing else in it is removed.
# Each: the finished name, or the temporary one it has while it is written.
_OWN_TMP = re.compile(r"\..+\.json\.[0-9a-f]{8}\.tmp")  # _tmp_beside of a manifest (top level)
_OWN_SEGMENT = re.compile(r"[^.].*-[0-9a-f]{8}|\..+-[0-9a-f]{8}\.tmp")  # folders in segments/
_OWN_COMPS = re.compile(r"[^.].*-[0-9a-f]{8}\.npz|\..+-[0-9a-f]{8}\.npz\.tmp")  # files in comps/
# an in-place upgrade's temporary files inside a kept segment (_tmp_beside)
_OWN_SEGMENT_TMP = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def _is_manifest(path: Path) -> bool:
    """A manifest this module wrote (its names are the caller's, so its content tells)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") in FORMATS and isinstance(data.get("segments"), list)


def collect_garbage(root: Path, keep_manifests: Sequence[str]) -> int:
    """Remove manifests, segments and component files not named by ``keep_manifests`` (those of an
    interrupted night included); returns how many entries were removed. Only what this module
    wrote is removed: a file of another name or content in the folder stays."""
    if not root.exists():
        return 0
    keep = referenced(root, keep_manifests)
    removed = 0
    for path in root.iterdir():
        if path.name in keep_manifests or not path.is_file():
            continue
        if _OWN_TMP.fullmatch(path.name) or (path.suffix == ".json" and _is_manifest(path)):
            path.unlink()
            removed += 1
    for folder, pattern, is_dir in (("segments", _OWN_SEGMENT, True), ("comps", _OWN_COMPS, False)):
        for path in (root / folder).iterdir() if (root / folder).is_dir() else []:
            if path.name in keep and is_dir:
                removed += _remove_upgrade_leftovers(path)
            if path.name in keep or not pattern.fullmatch(path.name) or path.is_dir() != is_dir:
                continue
            if is_dir:
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed


def _remove_upgrade_leftovers(segment: Path) -> int:
    """Temporary files an in-place upgrade killed mid-write left inside a kept segment."""
    leftovers = [p for p in segment.iterdir() if p.is_file() and _OWN_SEGMENT_TMP.fullmatch(p.name)]
    for path in leftovers:
        path.unlink()
    return len(leftovers)


# ---------------------------------------------------------------------------------------------
# The runner's view: DedupIndex's interface over tonight's documents and a PriorIndex


class NightIndex:
    """What the runner feeds and asks (``add``, ``assign``, ``is_prior``) like a ``DedupIndex`` that
    was loaded with the earlier documents: tonight's documents are held (compactly, as the
    in-memory index holds them), the earlier ones stay on disk."""

    def __init__(self, prior: PriorIndex) -> None:
        self.prior = prior
        self.cfg = prior.cfg
        self._tonight = dedup.DedupIndex(prior.cfg)
        self._prior_ids: set[str] = set()

    def __len__(self) -> int:
        """Documents of earlier nights still looked up plus tonight's added so far (as a loaded
        DedupIndex counts)."""
        return self.prior.documents + len(self._tonight)

    def prefetch_ids(self, ids: list[str]) -> None:
        """Look ``ids`` up among the earlier documents' ids, so that :meth:`is_prior` answers them."""
        self._prior_ids |= self.prior.known_ids(ids)

    def add(
        self,
        ids: list[str],
        urls: Sequence[str | None],
        keys: Sequence[bytes],
        sigs: np.ndarray,
        prior: bool = False,
        legal_notices: Sequence[bool] | None = None,
    ) -> None:
        if prior:
            raise ValueError("NightIndex.add: documents of earlier nights are added with PriorIndex.append")
        self._tonight.add(ids, urls, keys, sigs, legal_notices=legal_notices)

    def is_prior(self, doc_id: str) -> bool:
        return doc_id in self._prior_ids

    def assign(self) -> pa.Table:
        docs = Docs.from_entries(self._tonight.entries())
        table, prior_roots = self.prior.assign(docs, self._tonight.legal_notices())
        self._prior_ids |= prior_roots
        release_free_heap()
        return table
