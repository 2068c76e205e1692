"""The dedup index of earlier nights on disk: memory that does not grow with history.

The in-memory :class:`~poisonguard.filters.dedup.DedupIndex` holds every earlier document's
signature (128 x 4 bytes) and re-buckets all of them every night. Here the documents of earlier
nights live in a folder of immutable *segments*, one per night, and a night reads only what its own
documents point at:

* **band tables**: per segment and LSH band, the band keys of the segment's candidate documents,
  sorted, with a small fence file (the first key of every :data:`BLOCK` keys). Tonight's band keys
  are looked up block by block; only blocks that hold a looked-up key are read, in runs of at most
  ``cache_mb`` (the bound on what a lookup holds in memory).
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

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from poisonguard.core import minhash
from poisonguard.filters import dedup

FORMAT = 1
BLOCK = 4096  # keys per fence block of a sorted table
DEFAULT_CACHE_MB = 64
EXACT_BAND = -1  # the "band" of an exact-duplicate edge: before every LSH band

# A bucket that holds one of tonight's documents: band, band key, member ranks (ascending),
# verified edges (pairs of ranks) and the highest similarity each member was compared at.
Bucket = tuple[int, int, np.ndarray, np.ndarray, np.ndarray]


class PriorIndexError(ValueError):
    """The index on disk is missing, incomplete or was built with other settings."""


# ---------------------------------------------------------------------------------------------
# Files


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


def _read_raw(path: Path, dtype: Any, start: int, count: int) -> np.ndarray:
    """``count`` items of ``dtype`` from item ``start`` (one read; nothing mapped)."""
    size = np.dtype(dtype).itemsize
    with open(path, "rb") as fh:
        return np.fromfile(fh, dtype=dtype, count=count, offset=start * size)


def _gather_raw(path: Path, dtype: Any, rows: np.ndarray, width: int = 1) -> np.ndarray:
    """Rows ``rows`` (sorted or not) of a raw array of ``width`` items per row, read through a
    mapping that is closed again (its pages leave the process)."""
    if not len(rows):
        return np.zeros((0, width) if width > 1 else 0, dtype=dtype)
    mm = np.memmap(path, dtype=dtype, mode="r")
    try:
        view = mm.reshape(-1, width) if width > 1 else mm
        return np.array(view[rows])
    finally:
        del mm


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------
# Sorted tables: uint64 keys with a uint32 payload (a row of the segment), looked up in blocks


def write_table(folder: Path, name: str, keys: np.ndarray, rows: np.ndarray) -> None:
    """Sort by (key, row) and write ``name.keys``, ``name.rows`` and ``name.fence``."""
    order = np.lexsort((rows, keys))
    skeys = np.ascontiguousarray(keys[order], dtype=np.uint64)
    _write_raw(folder / f"{name}.keys", skeys)
    _write_raw(folder / f"{name}.rows", np.ascontiguousarray(rows[order], dtype=np.uint32))
    _write_raw(folder / f"{name}.fence", skeys[::BLOCK])


def probe_table(folder: Path, name: str, query: np.ndarray, cache_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (query position, row) with ``table key == query[position]``; ``query`` sorted.

    Only blocks that can hold a queried key are read, as runs of consecutive blocks of at most
    ``cache_rows`` keys."""
    fence = np.fromfile(folder / f"{name}.fence", dtype=np.uint64)
    n_keys = (folder / f"{name}.keys").stat().st_size // 8
    if not len(fence) or not len(query):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Blocks [first, last] of each query: equal keys may run over a block boundary.
    first = np.maximum(np.searchsorted(fence, query, "left") - 1, 0)
    last = np.maximum(np.searchsorted(fence, query, "right") - 1, 0)
    mark = np.zeros(len(fence) + 1, np.int64)
    np.add.at(mark, first, 1)
    np.add.at(mark, last + 1, -1)
    needed = np.flatnonzero(np.cumsum(mark)[:-1] > 0)
    max_blocks = max(1, cache_rows // BLOCK)
    # Runs of consecutive needed blocks, cut at max_blocks.
    breaks = np.flatnonzero(np.diff(needed) != 1) + 1
    out_q: list[np.ndarray] = []
    out_r: list[np.ndarray] = []
    for run in np.split(needed, breaks):
        for s in range(0, len(run), max_blocks):
            b0, b1 = int(run[s]), int(run[min(s + max_blocks, len(run)) - 1]) + 1
            lo_q = int(np.searchsorted(last, b0, "left"))
            hi_q = int(np.searchsorted(first, b1 - 1, "right"))
            if lo_q >= hi_q:
                continue
            start, stop = b0 * BLOCK, min(b1 * BLOCK, n_keys)
            keys = _read_raw(folder / f"{name}.keys", np.uint64, start, stop - start)
            q = query[lo_q:hi_q]
            left = np.searchsorted(keys, q, "left")
            right = np.searchsorted(keys, q, "right")
            count = right - left
            hit = np.flatnonzero(count)
            if not len(hit):
                continue
            reps = count[hit]
            pos = np.repeat(left[hit] - np.cumsum(reps) + reps, reps) + np.arange(int(reps.sum()))
            rows = _read_raw(folder / f"{name}.rows", np.uint32, start, stop - start)
            out_q.append(np.repeat(hit + lo_q, reps).astype(np.int64))
            out_r.append(rows[pos].astype(np.int64))
    if not out_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    qpos, rows = np.concatenate(out_q), np.concatenate(out_r)
    # A query whose equal keys straddle two runs appears in both: keep one copy of each pair.
    pairs = np.unique(np.stack([qpos, rows]), axis=1)
    return pairs[0], pairs[1]


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
    domain_names: list[str]

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

    def domains(self, rows: np.ndarray) -> list[str | None]:
        codes = _gather_raw(self.folder / "domains", np.int32, rows)
        return [self.domain_names[c] if c >= 0 else None for c in codes.tolist()]


def _segment_meta(folder: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((folder / "meta.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise PriorIndexError(f"{folder}: dedup index segment unreadable or incomplete: {exc}") from exc
    if not (
        isinstance(meta, dict)
        and isinstance(meta.get("n"), int)
        and isinstance(meta.get("domain_names"), list)
    ):
        raise PriorIndexError(f"{folder}: dedup index segment meta.json lacks its count or domain names")
    return meta


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
        self, root: Path, manifest: str | None, cfg: dedup.Config, cache_mb: int = DEFAULT_CACHE_MB
    ) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.cfg = cfg
        self.bands, self.rows = dedup.lsh_params(cfg)
        self.dtype = minhash.signature_dtype(cfg.scheme)
        self.empty = self.dtype(minhash.empty_value(cfg.scheme))
        self.cache_rows = max(BLOCK, cache_mb * (1 << 20) // 12)
        self.cache_mb = cache_mb
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
            "format": FORMAT,
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
        want = self.settings()
        got = data.get("settings", {})
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: index {a!r}, config {b!r}" for k, (a, b) in diff.items())
            raise PriorIndexError(f"{path}: dedup index built with other settings ({detail}); rebuild it")
        start = 0
        for name in data["segments"]:
            folder = self.root / "segments" / name
            meta = _segment_meta(folder)
            if meta.get("start") != start or meta.get("format") != FORMAT:
                raise PriorIndexError(f"{folder}: segment does not continue the index at rank {start}")
            self._check_sizes(folder, int(meta["n"]))
            self.segments.append(Segment(folder, start, int(meta["n"]), list(meta["domain_names"])))
            start += int(meta["n"])
        if start != data["n"]:
            raise PriorIndexError(f"{path}: manifest counts {data['n']} documents, segments {start}")
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

    def _check_sizes(self, folder: Path, n: int) -> None:
        """A segment whose files are not all there at their full size is refused (never half-read)."""
        expect = {"sigs": n * self.cfg.num_perm * np.dtype(self.dtype).itemsize, "domains": n * 4}
        expect["id_offsets"] = (n + 1) * 8
        for name, size in expect.items():
            path = folder / name
            if not path.exists() or path.stat().st_size != size:
                raise PriorIndexError(f"{path}: dedup index segment file missing or truncated")

    def __len__(self) -> int:
        return sum(s.n for s in self.segments)

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

    def domains(self, ranks: np.ndarray) -> list[str | None]:
        out: list[str | None] = [None] * len(ranks)
        for seg, pos, rows in self._by_segment(ranks):
            for p, v in zip(pos.tolist(), seg.domains(rows), strict=True):
                out[p] = v
        return out

    def band_members(self, band: int, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, rank) of every earlier candidate document whose key in ``band`` equals
        ``query[position]`` (``query`` sorted, unique); ranks ascending within a position."""
        qs, rs = [], []
        for seg in self.segments:
            q, r = probe_table(seg.folder, f"band{band:03d}", query, self.cache_rows)
            qs.append(q)
            rs.append(r + seg.start)
        if not qs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        q, r = np.concatenate(qs), np.concatenate(rs)
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
        for seg in self.segments:
            q, rows = probe_table(seg.folder, "ckey", uniq, self.cache_rows)
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
        for seg in self.segments:
            q, rows = probe_table(seg.folder, "idhash", uniq, self.cache_rows)
            if len(q):
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

    def assign(self, docs: Docs) -> tuple[pa.Table, set[str]]:
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
        doms = np.array(self.domains(old_ranks) + docs.domains, dtype=object)
        size = np.unique(rep.roots, return_inverse=True, return_counts=True)
        members = size[2][size[1]]
        pairs = {(r, d) for r, d in zip(rep.roots.tolist(), doms.tolist(), strict=True) if d is not None}
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
            copies, leaders, cand = self._write_segment(tmp, docs, n_prior)
            comps_name = self._write_components(stem, docs, copies, leaders, cand)
            os.replace(tmp, self.root / "segments" / seg_name)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        _fsync_dir(self.root / "segments")
        data = {
            "format": FORMAT,
            "settings": self.settings(),
            "n": n_prior + n,
            "segments": [s.folder.name for s in self.segments] + [seg_name],
            "comps": comps_name,
        }
        _write_json_atomic(self.root / manifest, data)
        return PriorIndex(self.root, manifest, self.cfg, self.cache_mb)

    def _write_segment(
        self, folder: Path, docs: Docs, n_prior: int
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
        names: dict[str, int] = {}
        codes = np.array(
            [names.setdefault(d, len(names)) if d is not None else -1 for d in docs.domains], np.int32
        )
        _write_raw(folder / "domains", codes)
        # Content keys of the documents that are the first holder of their key.
        has = (docs.keys[:, 0] != 0) | (docs.keys[:, 1] != 0)
        first = has.copy()
        first[copies - n_prior] = False
        write_table(folder, "ckey", docs.keys[first, 0], rows[first])
        _write_raw(folder / "ckey_hi", docs.keys[:, 1])  # by row: verifies a hit on the first half
        cidx = np.flatnonzero(cand)
        for band in range(self.bands):
            write_table(folder, f"band{band:03d}", dedup._band_keys(sigs[cidx], band, self.rows), rows[cidx])
        meta = {"format": FORMAT, "start": n_prior, "n": n, "domain_names": list(names)}
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
        name = f"{stem}-{secrets.token_hex(4)}.npz"
        target = self.root / "comps" / name
        tmp = target.with_name(f".{name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh, members=members[mo], comp=comp_of[mo], forest=forest_all[fo], forest_comp=fcomp_all[fo]
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        return name


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
_OWN_TMP = re.compile(r"\..+\.json\.[0-9a-f]{8}\.tmp")  # _write_json_atomic's (top level)
_OWN_SEGMENT = re.compile(r"[^.].*-[0-9a-f]{8}|\..+-[0-9a-f]{8}\.tmp")  # folders in segments/
_OWN_COMPS = re.compile(r"[^.].*-[0-9a-f]{8}\.npz|\..+-[0-9a-f]{8}\.npz\.tmp")  # files in comps/


def _is_manifest(path: Path) -> bool:
    """A manifest this module wrote (its names are the caller's, so its content tells)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("segments"), list)


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
            if path.name in keep or not pattern.fullmatch(path.name) or path.is_dir() != is_dir:
                continue
            if is_dir:
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed


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
        """Documents of earlier nights plus tonight's added so far (as a loaded DedupIndex counts)."""
        return len(self.prior) + len(self._tonight)

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
    ) -> None:
        if prior:
            raise ValueError("NightIndex.add: documents of earlier nights are added with PriorIndex.append")
        self._tonight.add(ids, urls, keys, sigs)

    def is_prior(self, doc_id: str) -> bool:
        return doc_id in self._prior_ids

    def assign(self) -> pa.Table:
        docs = Docs.from_entries(self._tonight.entries())
        table, prior_roots = self.prior.assign(docs)
        self._prior_ids |= prior_roots
        return table
