"""dedup detector: exact and near-duplicate clusters over the whole input, and coordinated campaigns.

One text near-copied across many registrable domains is the signature of content farms, "LLM
grooming" networks and persistent pre-training poisoning (docs/THREATS.md P-FARM, P-SENT). The same
clusters give the benign de-duplication: the runner keeps one member of a benign cluster and marks
the others ``duplicate``.

Pipeline: :func:`signatures` and :func:`content_keys` run per batch (pure, in workers); the runner
feeds them to one :class:`DedupIndex` in input order and calls :meth:`DedupIndex.assign` once.

* Exact duplicates share a content key (BLAKE2b of the normalised word sequence) and are joined to
  their earliest copy before any MinHash work.
* Near duplicates: MinHash LSH (bands x rows chosen by datasketch's optimiser for the threshold)
  proposes candidate pairs; a pair becomes an edge only if its estimated Jaccard similarity over all
  ``num_perm`` values reaches the threshold, and clusters are the connected components of those
  edges. A chance collision in one band therefore never joins two unrelated groups.
* Documents with fewer than ``min_words`` words are too short for a meaningful similarity ("404 Not
  Found" is the same on every site): they take part in the exact check only and are never a
  campaign.
* Legal notices (licences, privacy policies, terms of use: core/legal.py and the config's `legal`
  section, shared with the campaign detector) are copied verbatim by thousands of unrelated sites.
  The scoring stage marks them per document (``dedup_legal``); they are de-duplicated like any
  other text (one copy kept, the rest ``duplicate``) but never quarantined as a campaign. A
  campaign written as a legal notice therefore passes this rule (docs/DETECTORS.md).
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import datasketch
import numpy as np
import pyarrow as pa
from datasketch import LeanMinHash, MinHashLSH
from publicsuffixlist import PublicSuffixList
from pydantic import Field, model_validator

from poisonguard.core import legal, minhash
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

CAMPAIGN_REASON = "dedup:campaign"
INDEX_FORMAT = 1

SIGNAL_SCHEMA = pa.schema(
    [
        ("dedup_cluster_id", pa.string()),
        ("dedup_cluster_size", pa.int64()),
        ("dedup_cluster_domains", pa.int64()),
        ("dedup_exact_of", pa.string()),
        ("dedup_max_similarity", pa.float64()),
        ("dedup_short", pa.bool_()),
        ("dedup_legal", pa.bool_()),
    ]
)


class Config(DetectorConfig):
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="estimated Jaccard for a near-duplicate edge")
    num_perm: int = Field(128, ge=2, le=4096, description="MinHash permutations")
    shingle_words: int = Field(5, ge=1, description="words per shingle")
    seed: int = Field(1, ge=0, description="seed of the MinHash permutations")
    scheme: Literal["affine32", "affine64", "legacy"] = Field("affine32", description="datasketch scheme")
    bands: int | None = Field(None, ge=2, description="LSH bands; default from the threshold")
    rows: int | None = Field(None, ge=1, description="LSH rows per band; set together with bands")
    false_negative_weight: float = Field(0.5, ge=0.0, le=1.0, description="datasketch optimiser weight")
    min_words: int = Field(20, ge=0, description="shorter documents: exact check only, never a campaign")
    campaign_min_domains: int = Field(10, ge=2, description="a cluster on this many domains is a campaign")
    max_bucket_exemplars: int = Field(32, ge=1, description="bound on checks per LSH bucket member")
    index_dir: str | None = Field(
        None, description="nightly: folder of the on-disk index of earlier nights; None = beside the state"
    )
    index_cache_mb: int = Field(
        64, ge=1, le=65536, description="nightly: most MB of index filters and tables mapped or read at once"
    )
    index_max_segments: int = Field(
        8, ge=0, le=1000, description="nightly: more segments than this are merged at commit; 0 = never"
    )
    index_keep_nights: int = Field(
        0, ge=0, description="nightly: look up only the documents of the newest N nights; 0 = all"
    )

    @model_validator(mode="after")
    def _bands_and_rows(self) -> Config:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("dedup.bands and dedup.rows must be set together (or both left out)")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"dedup.bands * dedup.rows = {self.bands * self.rows} exceeds num_perm {self.num_perm}"
            )
        return self


@lru_cache(maxsize=64)
def _optimal_params(threshold: float, num_perm: int, fn_weight: float) -> tuple[int, int]:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(1.0 - fn_weight, fn_weight))
    return int(lsh.b), int(lsh.r)


def lsh_params(cfg: Config) -> tuple[int, int]:
    """(bands, rows): the configured ones, or datasketch's optimum for the threshold."""
    if cfg.bands is not None and cfg.rows is not None:
        return cfg.bands, cfg.rows
    return _optimal_params(cfg.threshold, cfg.num_perm, cfg.false_negative_weight)


def manifest_entry(cfg: Config) -> dict[str, Any]:
    """What a run's manifest should record so that its sketches can be reused or recomputed."""
    bands, rows = lsh_params(cfg)
    return {
        "scheme": cfg.scheme,
        "num_perm": cfg.num_perm,
        "seed": cfg.seed,
        "shingle_words": cfg.shingle_words,
        "shingle_hash": "poly64-fmix64" + ("" if cfg.scheme == "affine64" else "-low32"),
        "threshold": cfg.threshold,
        "bands": bands,
        "rows": rows,
        "datasketch": datasketch.__version__,
    }


# ---------------------------------------------------------------------------------------------
# Per batch (pure)


def signatures(texts: list[str], cfg: Config) -> np.ndarray:
    """MinHash signatures, shape (len(texts), num_perm); equal to datasketch's (see minhash.py).
    Documents under ``min_words`` words get the empty sketch."""
    return minhash.signatures_bulk(
        texts, cfg.num_perm, cfg.shingle_words, cfg.seed, cfg.scheme, min_words=cfg.min_words
    )


def content_keys(texts: list[str]) -> list[bytes]:
    """Exact-duplicate key: BLAKE2b-128 of the normalised text (lower case, words joined by one
    space, invisible characters removed); ``b""`` for a text without words."""
    return [
        hashlib.blake2b(norm, digest_size=16).digest() if norm else b""
        for norm in minhash.normalised_texts(texts)
    ]


# ---------------------------------------------------------------------------------------------
# Domains


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped with the package; nothing is fetched


@lru_cache(maxsize=200_000)
def _domain_of_host(host: str) -> str:
    host = host.rstrip(".")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return _psl().privatesuffix(host) or host


def registrable_domain(url: str | None) -> str | None:
    """The registrable domain of ``url`` (``www.news.example.co.uk`` -> ``example.co.uk``); an IP
    address stands for itself; None for a missing or host-less URL."""
    if not url:
        return None
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None
    if not host or any(ch.isspace() for ch in host):
        return None
    return _domain_of_host(host)


# ---------------------------------------------------------------------------------------------
# The index


def verify_bucket(
    sigs: np.ndarray, need: int, max_exemplars: int
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Verified edges (pairs of positions) and the highest similarity each member was compared at,
    for the members of one LSH bucket in rank order.

    Each member is compared with a few exemplars of the bucket (the first member, then every member
    that matched none before it), not with every other member: tight clusters cost one comparison
    per member, and ``max_exemplars`` bounds the rest. The edges are returned rather than applied,
    so that the Ray engine can replay them in the local engine's order.
    """
    num_perm = sigs.shape[1]
    best = np.zeros(len(sigs), dtype=np.float64)
    equal = np.count_nonzero(sigs[1:] == sigs[0], axis=1)
    sims = equal / num_perm
    np.maximum.at(best, np.arange(1, len(sigs)), sims)
    best[0] = max(best[0], float(sims.max()))
    edges: list[tuple[int, int]] = []
    exemplars = [0]
    for j, eq in enumerate(equal.tolist(), start=1):
        if eq >= need:
            edges.append((0, j))
            continue
        if len(exemplars) == 1:
            exemplars.append(j)
            continue
        ex = np.array(exemplars[1:])
        eqs = np.count_nonzero(sigs[ex] == sigs[j], axis=1)
        s = eqs / num_perm
        np.maximum.at(best, ex, s)
        best[j] = max(best[j], float(s.max()))
        hit = eqs >= need
        edges.extend((e, j) for e in ex[hit].tolist())
        if not hit.any() and len(exemplars) < max_exemplars:
            exemplars.append(j)
    return edges, best


class UnionFind:
    """Union by smallest index, so every root is its component's earliest document."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra < rb:
            self.parent[rb] = ra
        elif rb < ra:
            self.parent[ra] = rb


def _band_keys(sig: np.ndarray, band: int, rows: int) -> np.ndarray:
    """A 64-bit key per row for one band (collisions only add candidates, which are verified)."""
    h = np.full(len(sig), (0x9E3779B97F4A7C15 * (band + 1)) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
    # The band's columns copied once, one contiguous row per permutation (a column of a wide
    # signature array is a strided read per document).
    cols = np.ascontiguousarray(sig[:, band * rows : (band + 1) * rows].T, dtype=np.uint64)
    for col in cols:
        h = h * np.uint64(0x100000001B3) + col
    return minhash._fmix64(h)


@dataclass(frozen=True)
class IndexEntries:
    """The state of a :class:`DedupIndex`, one row per document in the order added."""

    ids: pa.Array  # string
    sigs: np.ndarray  # (n, num_perm), the scheme's signature dtype
    keys: np.ndarray  # (n, 2) uint64 content keys; (0, 0): no key (a text without words)
    domains: np.ndarray  # int32 code into domain_names; -1: no domain
    domain_names: list[str]
    prior: np.ndarray  # bool: added as a document of an earlier run


class DedupIndex:
    """Compact state of every document seen (no text): id, domain, content key, signature.

    State per document is its signature (``num_perm`` x 4 bytes for "affine32"), a 16-byte key, a
    domain code and the id; LSH band keys are computed at :meth:`assign` and not kept.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.bands, self.rows = lsh_params(cfg)
        self._dtype = minhash.signature_dtype(cfg.scheme)
        self._empty = self._dtype(minhash.empty_value(cfg.scheme))
        self._ids: list[pa.Array] = []
        self._sigs: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._domains: list[np.ndarray] = []
        self._prior: list[np.ndarray] = []
        self._legal: list[np.ndarray] = []
        self._domain_codes: dict[str, int] = {}
        self._prior_ids: set[str] | None = None
        self._n = 0

    # -- input ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    def add(
        self,
        ids: list[str],
        urls: Sequence[str | None],
        keys: Sequence[bytes],
        sigs: np.ndarray,
        prior: bool = False,
        legal_notices: Sequence[bool] | None = None,
    ) -> None:
        """``legal_notices``: core/legal.py's flags of the documents (None: none is a legal notice)."""
        n = len(ids)
        if len(urls) != n or len(keys) != n or len(sigs) != n:
            raise ValueError(
                f"DedupIndex.add: {n} ids but {len(urls)} urls, {len(keys)} keys, {len(sigs)} signatures"
            )
        if legal_notices is not None and len(legal_notices) != n:
            raise ValueError(f"DedupIndex.add: {n} ids but {len(legal_notices)} legal-notice flags")
        sigs = np.asarray(sigs)
        if n and (sigs.ndim != 2 or sigs.shape[1] != self.cfg.num_perm):
            raise ValueError(
                f"DedupIndex.add: signatures of shape {sigs.shape}, expected ({n}, {self.cfg.num_perm}); "
                "were they computed with another dedup config?"
            )
        if n and sigs.dtype != self._dtype:
            if sigs.dtype.kind != "u" or (sigs.size and int(sigs.max()) > int(self._empty)):
                raise ValueError(f"DedupIndex.add: signature values do not fit scheme {self.cfg.scheme!r}")
        self._sigs.append(np.ascontiguousarray(sigs.reshape(n, self.cfg.num_perm), dtype=self._dtype))
        key_arr = np.zeros((n, 2), dtype=np.uint64)
        for i, key in enumerate(keys):
            if key:
                if len(key) != 16:
                    raise ValueError(f"DedupIndex.add: content key of {len(key)} bytes, expected 16")
                key_arr[i] = np.frombuffer(key, dtype=np.uint64)
        self._keys.append(key_arr)
        codes = np.full(n, -1, dtype=np.int32)
        for i, url in enumerate(urls):
            domain = registrable_domain(url)
            if domain is not None:
                codes[i] = self._domain_codes.setdefault(domain, len(self._domain_codes))
        self._domains.append(codes)
        self._ids.append(pa.array(ids, pa.string()))
        self._prior.append(np.full(n, prior, dtype=bool))
        self._legal.append(np.zeros(n, bool) if legal_notices is None else np.asarray(legal_notices, bool))
        self._prior_ids = None
        self._n += n

    def prefetch_ids(self, ids: list[str]) -> None:
        """Nothing to do: every id is in memory (the on-disk index of earlier nights looks them up)."""

    def is_prior(self, doc_id: str) -> bool:
        """Whether ``doc_id`` was added as a document of an earlier run."""
        if self._prior_ids is None:
            self._prior_ids = set()
            for ids, prior in zip(self._ids, self._prior, strict=True):
                if prior.any():
                    self._prior_ids.update(ids.filter(pa.array(prior)).to_pylist())
        return doc_id in self._prior_ids

    def state_bytes(self) -> int:
        """Bytes held for the documents (arrays and ids; not Python object overhead)."""
        groups: list[list[np.ndarray]] = [self._sigs, self._keys, self._domains, self._prior]
        return sum(a.nbytes for group in groups for a in group) + sum(a.nbytes for a in self._ids)

    def lean_minhash(self, position: int) -> LeanMinHash:
        """The datasketch LeanMinHash of the document added at ``position`` (for datasketch's LSH
        classes and storage backends)."""
        sig = self._concat_sigs()[position]
        return LeanMinHash(seed=self.cfg.seed, hashvalues=sig, scheme=self.cfg.scheme)

    def entries(self) -> IndexEntries:
        """Every document's arrays, in the order added (read-only views of the index's state): what
        a distributed dedup ships to its workers to treat documents of earlier runs like its own."""
        ids, sigs, keys, domains, prior = self._concat()
        names = sorted(self._domain_codes, key=self._domain_codes.__getitem__)
        return IndexEntries(ids, sigs, keys, domains, names, prior)

    def legal_notices(self) -> np.ndarray:
        """The legal-notice flags of the documents added with ``prior=False``, in the order added
        (the rows of :meth:`assign`)."""
        if not self._legal:
            return np.zeros(0, bool)
        self._legal = [np.concatenate(self._legal)]
        _, _, _, _, prior = self._concat()
        return self._legal[0][~prior]

    def _concat_sigs(self) -> np.ndarray:
        if len(self._sigs) > 1:
            self._sigs = [np.concatenate(self._sigs)]
        return self._sigs[0] if self._sigs else np.zeros((0, self.cfg.num_perm), dtype=self._dtype)

    def _concat(self) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        sigs = self._concat_sigs()
        if not self._ids:
            empty = pa.array([], pa.string())
            return empty, sigs, np.zeros((0, 2), np.uint64), np.zeros(0, np.int32), np.zeros(0, bool)
        self._ids = [pa.concat_arrays(self._ids)] if len(self._ids) > 1 else self._ids
        self._keys = [np.concatenate(self._keys)]
        self._domains = [np.concatenate(self._domains)]
        self._prior = [np.concatenate(self._prior)]
        return self._ids[0], sigs, self._keys[0], self._domains[0], self._prior[0]

    # -- clustering -------------------------------------------------------------------------------

    def assign(self) -> pa.Table:
        """Cluster columns (SIGNAL_SCHEMA) for every document added with ``prior=False``, in the
        order they were added. Documents of earlier runs rank before all others, so a cluster that
        holds one is named after (the earliest of) them."""
        ids, sigs, keys, domains, prior = self._concat()
        n = len(prior)
        # Rank order: prior documents first, each group in insertion order.
        order = np.concatenate([np.flatnonzero(prior), np.flatnonzero(~prior)]).astype(np.int64)
        sigs, keys, domains = sigs[order], keys[order], domains[order]
        ids = ids.take(pa.array(order))
        n_prior = int(prior.sum())
        uf = UnionFind(n)
        max_sim = np.zeros(n, dtype=np.float64)
        exact_of = np.full(n, -1, dtype=np.int64)
        has_key = (keys[:, 0] != 0) | (keys[:, 1] != 0)
        short = np.all(sigs == self._empty, axis=1) if n else np.zeros(0, bool)

        # Exact duplicates: same key -> joined to the earliest copy.
        keyed = np.flatnonzero(has_key)
        if len(keyed):
            srt = keyed[np.lexsort((keyed, keys[keyed, 1], keys[keyed, 0]))]
            k = keys[srt]
            new_group = np.ones(len(srt), dtype=bool)
            new_group[1:] = (k[1:, 0] != k[:-1, 0]) | (k[1:, 1] != k[:-1, 1])
            leader = srt[np.maximum.accumulate(np.where(new_group, np.arange(len(srt)), 0))]
            dup = ~new_group
            exact_of[srt[dup]] = leader[dup]
            max_sim[srt[dup]] = 1.0
            max_sim[leader[dup]] = 1.0
            for j, lead in zip(srt[dup].tolist(), leader[dup].tolist(), strict=True):
                uf.union(lead, j)

        # Near duplicates among the remaining (first copies with a non-empty sketch).
        cand = np.flatnonzero(~short & (exact_of < 0))
        need = math.ceil(self.cfg.threshold * self.cfg.num_perm - 1e-9)
        if len(cand) > 1:
            cand_sigs = sigs[cand]
            for band in range(self.bands):
                bkeys = _band_keys(cand_sigs, band, self.rows)
                srt = np.argsort(bkeys, kind="stable")
                sk = bkeys[srt]
                bounds = np.flatnonzero(np.diff(sk)) + 1
                starts = np.concatenate(([0], bounds))
                ends = np.concatenate((bounds, [len(sk)]))
                multi = np.flatnonzero(ends - starts >= 2)
                for s, e in zip(starts[multi].tolist(), ends[multi].tolist(), strict=True):
                    self._verify_bucket(cand[srt[s:e]], sigs, need, uf, max_sim)

        roots = np.fromiter((uf.find(i) for i in range(n)), dtype=np.int64, count=n)
        size = np.bincount(roots, minlength=n)[roots] if n else np.zeros(0, np.int64)
        with_domain = domains >= 0
        pairs = np.unique(np.stack([roots[with_domain], domains[with_domain].astype(np.int64)]), axis=1)
        n_domains = np.bincount(pairs[0], minlength=n)[roots] if n else np.zeros(0, np.int64)

        rows = np.arange(n_prior, n)
        exact = exact_of[rows]
        exact_ids = ids.take(pa.array(np.where(exact >= 0, exact, 0)))
        exact_col = pa.array(
            [x if e >= 0 else None for x, e in zip(exact_ids.to_pylist(), exact.tolist(), strict=True)],
            pa.string(),
        )
        return pa.table(
            {
                "dedup_cluster_id": ids.take(pa.array(roots[rows])),
                "dedup_cluster_size": pa.array(size[rows], pa.int64()),
                "dedup_cluster_domains": pa.array(n_domains[rows], pa.int64()),
                "dedup_exact_of": exact_col,
                "dedup_max_similarity": pa.array(np.round(max_sim[rows], 6), pa.float64()),
                "dedup_short": pa.array(short[rows], pa.bool_()),
                "dedup_legal": pa.array(self.legal_notices(), pa.bool_()),
            },
            schema=SIGNAL_SCHEMA,
        )

    def _verify_bucket(
        self, members: np.ndarray, sigs: np.ndarray, need: int, uf: UnionFind, max_sim: np.ndarray
    ) -> None:
        """Join bucket members whose estimated similarity reaches the threshold (see verify_bucket)."""
        ms = members.tolist()
        root0 = uf.find(ms[0])
        if all(uf.find(j) == root0 for j in ms[1:]):
            return  # already one cluster (joined in an earlier band)
        edges, best = verify_bucket(sigs[members], need, self.cfg.max_bucket_exemplars)
        np.maximum.at(max_sim, members, best)
        for a, b in edges:
            uf.union(ms[a], ms[b])

    # -- persistence ------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "scheme": self.cfg.scheme,
            "num_perm": self.cfg.num_perm,
            "seed": self.cfg.seed,
            "shingle_words": self.cfg.shingle_words,
            "min_words": self.cfg.min_words,
        }

    def save(self, path: str | os.PathLike[str], keep: Collection[str] | None = None) -> None:
        """Write the index (atomically). ``keep``: only these ids among the non-prior documents
        (the ones the run kept); documents of earlier runs are always kept."""
        ids, sigs, keys, domains, prior = self._concat()
        select = prior.copy()
        if keep is None:
            select[:] = True
        else:
            wanted = set(keep)
            select |= np.fromiter((i in wanted for i in ids.to_pylist()), dtype=bool, count=len(ids))
        rows = np.flatnonzero(select)
        names = sorted(self._domain_codes, key=self._domain_codes.__getitem__)
        id_bytes = [s.encode("utf-8") for s in ids.take(pa.array(rows)).to_pylist()]
        dom_bytes = [s.encode("utf-8") for s in names]
        buf = io.BytesIO()
        np.savez(
            buf,
            settings=np.frombuffer(json.dumps(self._settings()).encode(), dtype=np.uint8),
            sigs=sigs[rows],
            keys=keys[rows],
            domains=domains[rows],
            ids=np.frombuffer(b"".join(id_bytes), dtype=np.uint8),
            id_lengths=np.array([len(b) for b in id_bytes], dtype=np.int64),
            domain_names=np.frombuffer(b"".join(dom_bytes), dtype=np.uint8),
            domain_lengths=np.array([len(b) for b in dom_bytes], dtype=np.int64),
        )
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str], cfg: Config) -> DedupIndex:
        """An index whose documents are all ``prior`` (documents of earlier runs)."""
        try:
            data = np.load(Path(path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read dedup index: {exc}") from exc
        with data:
            settings = json.loads(bytes(data["settings"]).decode())
            index = cls(cfg)
            want = index._settings()
            diff = {k: (settings.get(k), v) for k, v in want.items() if settings.get(k) != v}
            if diff:
                detail = ", ".join(f"{k}: index {a!r}, config {b!r}" for k, (a, b) in diff.items())
                raise ValueError(f"{path}: dedup index built with other settings ({detail}); rebuild it")
            ids = _split(bytes(data["ids"]), data["id_lengths"])
            names = _split(bytes(data["domain_names"]), data["domain_lengths"])
            domains = data["domains"]
            n = len(ids)
            index._domain_codes = {name: i for i, name in enumerate(names)}
            index._sigs.append(np.asarray(data["sigs"], dtype=index._dtype).reshape(n, cfg.num_perm))
            index._keys.append(np.asarray(data["keys"], dtype=np.uint64).reshape(n, 2))
            index._domains.append(np.asarray(domains, dtype=np.int32))
            index._ids.append(pa.array(ids, pa.string()))
            index._prior.append(np.ones(n, dtype=bool))
            index._legal.append(np.zeros(n, dtype=bool))  # documents of earlier runs are never flagged
            index._n = n
        return index


def _split(blob: bytes, lengths: np.ndarray) -> list[str]:
    out: list[str] = []
    pos = 0
    for length in lengths.tolist():
        out.append(blob[pos : pos + length].decode("utf-8"))
        pos += length
    return out


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Clusters within `batch` alone. The pipelines cluster across the whole input instead: they add
    every chunk to one :class:`DedupIndex` (or shuffle band keys on Ray) and assign once."""
    texts = [t or "" for t in batch.column("text").to_pylist()]
    index = DedupIndex(cfg)
    index.add(
        batch.column("id").to_pylist(),
        batch.column("url").to_pylist() if "url" in batch.column_names else [None] * batch.num_rows,
        content_keys(texts),
        signatures(texts, cfg),
        # Standalone: the shipped legal settings (the pipelines pass the config's `legal` section).
        legal_notices=legal.flags(texts, legal.Config()),
    )
    assign = index.assign()
    return {name: assign.column(name).combine_chunks() for name in assign.column_names}


# ---------------------------------------------------------------------------------------------
# Decision


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """``dedup:campaign(N domains)`` for every member of a cluster spread over at least
    ``campaign_min_domains`` registrable domains (short documents and legal notices excepted: they
    stay ordinary duplicates)."""
    if not cfg.enabled or "dedup_cluster_domains" not in signals.column_names:
        return [[] for _ in range(signals.num_rows)]
    domains = signals.column("dedup_cluster_domains").to_pylist()
    exempt = [False] * signals.num_rows
    for name in ("dedup_short", "dedup_legal"):
        if name in signals.column_names:
            exempt = [e or bool(v) for e, v in zip(exempt, signals.column(name).to_pylist(), strict=True)]
    out: list[list[str]] = []
    for d, s in zip(domains, exempt, strict=True):
        if d is not None and d >= cfg.campaign_min_domains and not s:
            out.append([f"{CAMPAIGN_REASON}({d} domains)"])
        else:
            out.append([])
    return out


DECLARED_SIGNALS = (
    Signal("dedup_cluster_id"),
    Signal("dedup_cluster_size"),
    Signal("dedup_cluster_domains", "campaign_min_domains"),
    Signal("dedup_exact_of"),
    Signal("dedup_max_similarity", "threshold"),
    Signal("dedup_short"),
    Signal("dedup_legal"),
)

DETECTOR = Spec(name="dedup", stage="corpus", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag)
