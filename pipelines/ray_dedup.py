"""Dedup on Ray, equal to the local engine's one index: two shuffles with Ray tasks, never gathering
the signatures on one node.

Exact content keys are shuffled so that equal keys meet; then the LSH band keys of the remaining
documents are shuffled with their signatures, and each reducer verifies the candidate pairs of its
buckets with the estimated-Jaccard check of ``DedupIndex``. The driver receives only the verified
edges and similarities of buckets with two or more members and computes the connected components
over those documents (the others are singletons). Nightly's on-disk index of earlier runs
(filters/dedup_prior.py) is not shuffled: the reducers look the keys of their key range up in
it, and the earlier documents they find join their groups and buckets, ranked first, as in
``DedupIndex.assign``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from poisonguard.core import minhash
from poisonguard.core.files import write_table
from poisonguard.core.ray_cluster import cluster_cpus, ray_module
from poisonguard.filters import dedup, dedup_prior
from poisonguard.filters.dedup_prior import Bucket, PriorIndex
from poisonguard.pipelines import stages
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.stages import Duplicates


def _split(table: pa.Table, part: np.ndarray, parts: int) -> list[pa.Table]:
    return [table.filter(pa.array(part == p)) for p in range(parts)]


def _key_range(keys: np.ndarray, parts: int) -> np.ndarray:
    """The partition of each uint64 key: ``parts`` contiguous key ranges, so that the reducer owning
    a range reads only that range of the index's sorted tables."""
    if parts == 1:
        return np.zeros(len(keys), np.uint64)
    return keys // np.uint64(-(-(1 << 64) // parts))


def _read_sigs(path: str, cfg: dedup.Config) -> np.ndarray:
    return stages.signatures_of(pq.read_table(path, columns=[stages.SIG_COLUMN]), cfg)


def _exact_map(source: str, offset: int, parts: int) -> list[pa.Table]:
    """Content keys of one chunk (a scored work file), partitioned by key range."""
    keys = pq.read_table(source, columns=[stages.KEY_COLUMN]).column(stages.KEY_COLUMN).to_pylist()
    arr = np.zeros((len(keys), 2), dtype=np.uint64)
    for i, key in enumerate(keys):
        if key:
            arr[i] = np.frombuffer(key, dtype=np.uint64)
    has = np.flatnonzero((arr[:, 0] != 0) | (arr[:, 1] != 0))
    table = pa.table({"k0": arr[has, 0], "k1": arr[has, 1], "rank": (has + offset).astype(np.int64)})
    return _split(table, _key_range(arr[has, 0], parts), parts)


def _exact_reduce(prior: PriorIndex | None, *tables: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(copies, their earliest copy) for every key held by two or more documents, as ranks. With
    ``prior`` (the on-disk index of earlier nights), the earlier document that first held each of
    this partition's keys joins its group (looked up here, in the partition's key range)."""
    t = pa.concat_tables(tables)
    k0, k1, rank = (t.column(c).to_numpy() for c in ("k0", "k1", "rank"))
    if prior is not None and len(prior) and len(rank):
        keys = np.unique(np.stack([k0, k1], 1), axis=0)
        leaders = prior.exact_leaders(keys)
        old = np.flatnonzero(leaders >= 0)
        k0, k1 = np.concatenate([k0, keys[old, 0]]), np.concatenate([k1, keys[old, 1]])
        rank = np.concatenate([rank, leaders[old]])
    srt = np.lexsort((rank, k1, k0))
    k0, k1, rank = k0[srt], k1[srt], rank[srt]
    new = np.ones(len(rank), dtype=bool)
    new[1:] = (k0[1:] != k0[:-1]) | (k1[1:] != k1[:-1])
    leader = rank[np.maximum.accumulate(np.where(new, np.arange(len(rank)), 0))]
    return rank[~new], leader[~new]


def _band_table(
    band: np.ndarray, keys: np.ndarray, rank: np.ndarray, sigs: np.ndarray, width: int
) -> pa.Table:
    dtype = pa.uint32() if sigs.dtype == np.uint32 else pa.uint64()
    return pa.table(
        {
            "band": pa.array(band.astype(np.int32)),
            "key": pa.array(keys, pa.uint64()),
            "rank": pa.array(rank.astype(np.int64)),
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1), dtype), width),
        }
    )


def _band_map(source: str, offset: int, copies: np.ndarray, cfg: dedup.Config, parts: int) -> list[pa.Table]:
    """One row per (band, candidate document) with its band key and signature, partitioned by key
    range, for one chunk (a scored work file)."""
    bands, rows = dedup.lsh_params(cfg)
    sigs = _read_sigs(source, cfg)
    n = len(sigs)
    rank = np.arange(offset, offset + n, dtype=np.int64)
    empty = minhash.empty_value(cfg.scheme)
    cand = ~np.all(sigs == empty, axis=1) & ~np.isin(rank, copies) if n else np.zeros(0, bool)
    csigs, crank = sigs[cand], rank[cand]
    width = sigs.shape[1] if sigs.ndim == 2 else cfg.num_perm
    # The index's own band keys (a private helper, reused so that buckets are exactly the local ones).
    keys = np.concatenate(
        [dedup._band_keys(csigs, b, rows) for b in range(bands)] or [np.zeros(0, np.uint64)]
    )
    table = _band_table(
        np.repeat(np.arange(bands), len(csigs)),
        keys,
        np.tile(crank, bands),
        np.tile(csigs, (bands, 1)),
        width,
    )
    return _split(table, _key_range(keys, parts), parts)


def _with_prior_members(t: pa.Table, prior: PriorIndex, cfg: dedup.Config) -> pa.Table:
    """This partition's band rows plus one for every earlier candidate document whose band key one of
    them has (its signature read from disk): the reducer then sees whole buckets."""
    band, key = t.column("band").to_numpy(), t.column("key").to_numpy()
    extra: list[pa.Table] = []
    for b in np.unique(band).tolist():
        uniq = np.unique(key[band == b])
        qpos, old = prior.band_members(b, uniq)
        if len(old):
            sigs = prior.sigs(old)
            extra.append(_band_table(np.full(len(old), b), uniq[qpos], old, sigs, cfg.num_perm))
    return pa.concat_tables([t, *[e.cast(t.schema) for e in extra]]) if extra else t


def _only_part(fn: Callable[..., list[pa.Table]], *args: Any) -> pa.Table:
    return fn(*args)[0]  # one partition: one object, not a list of one


def _map_all(fn: Callable[..., list[pa.Table]], calls: list[tuple[Any, ...]], parts: int) -> list[list[Any]]:
    """Run the map `fn` once per argument tuple as Ray tasks; per call, one object per partition."""
    ray = ray_module()
    if parts > 1:
        task = ray.remote(num_returns=parts)(fn)
        return [task.remote(*args) for args in calls]
    one = ray.remote(_only_part)
    return [[one.remote(fn, *args)] for args in calls]


def _band_reduce(cfg: dedup.Config, prior: PriorIndex | None, *tables: pa.Table) -> list[Bucket]:
    """Verify the buckets of this partition (with the earlier documents of their keys, when there is
    a ``prior`` index); only buckets with two or more members come back."""
    t = pa.concat_tables(tables)
    if prior is not None and len(prior) and t.num_rows:
        t = _with_prior_members(t, prior, cfg)
    if t.num_rows < 2:
        return []
    band, key, rank = (t.column(c).to_numpy() for c in ("band", "key", "rank"))
    srt = np.lexsort((rank, key, band))
    band, key, rank = band[srt], key[srt], rank[srt]
    bounds = np.flatnonzero((band[1:] != band[:-1]) | (key[1:] != key[:-1])) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(rank)]))
    multi = np.flatnonzero(ends - starts >= 2)
    if not len(multi):
        return []
    sig_col = t.column("sig").combine_chunks()
    sigs_all = np.asarray(sig_col.flatten()).reshape(t.num_rows, -1)
    need = int(np.ceil(cfg.threshold * cfg.num_perm - 1e-9))
    out: list[Bucket] = []
    for s, e in zip(starts[multi].tolist(), ends[multi].tolist(), strict=True):
        members = rank[s:e]
        edges, best = dedup.verify_bucket(sigs_all[srt[s:e]], need, cfg.max_bucket_exemplars)
        pairs = np.array([(members[a], members[b]) for a, b in edges], dtype=np.int64).reshape(-1, 2)
        out.append((int(band[s]), int(key[s]), members, pairs, best))
    return out


def _lookup(
    path: str, offset: int, ranks: np.ndarray, cfg: PipelineConfig, keys_file: str | None
) -> pa.Table:
    """Row key (as "id"), registrable domain (its hash), short sketch and cheap-detector eligibility
    of the given documents."""
    table = pq.read_table(path)
    eligible = stages.eligible_rows(table, cfg)
    rows = (ranks - offset).astype(np.int64)
    sigs = stages.signatures_of(table, cfg.dedup)
    short = np.all(sigs == minhash.empty_value(cfg.dedup.scheme), axis=1) if len(sigs) else np.zeros(0, bool)
    legal = stages.legal_notices_of(table)
    keys = with_renamed_keys(table.column("id").to_pylist(), _read_if_exists(keys_file))
    ids = [keys[r] for r in rows.tolist()]
    urls = table.column("url").take(pa.array(rows)).to_pylist()
    return pa.table(
        {
            "rank": pa.array(ranks, pa.int64()),
            "id": pa.array(ids, pa.string()),
            "domain_hash": pa.array(dedup_prior.domain_hashes([dedup.registrable_domain(u) for u in urls])),
            "short": pa.array(short[rows], pa.bool_()),
            "legal": pa.array([legal[r] for r in rows.tolist()], pa.bool_()),
            "eligible": pa.array([eligible[r] for r in rows.tolist()], pa.bool_()),
        }
    )


OVERRIDE_SCHEMA = pa.schema(
    [("rank", pa.int64())]
    + list(dedup.SIGNAL_SCHEMA)
    + [("duplicate_of", pa.string()), ("duplicate_kind", pa.string()), ("eligible", pa.bool_())]
)


@dataclass
class DedupResult:
    """Per-chunk overrides for the documents dedup touched (all others are singletons)."""

    overrides: dict[int, pa.Table] = field(default_factory=dict)
    touched: int = 0
    buckets: int = 0
    edges: int = 0


def _prior_lookup(prior: PriorIndex, ranks: np.ndarray, cfg: dedup.Config) -> pa.Table:
    """`_lookup`'s columns for documents of earlier nights (read from the on-disk index)."""
    short = np.all(prior.sigs(ranks) == minhash.empty_value(cfg.scheme), axis=1)
    return pa.table(
        {
            "rank": pa.array(ranks, pa.int64()),
            "id": pa.array(prior.ids(ranks), pa.string()),
            "domain_hash": pa.array(prior.domain_hashes(ranks)),
            "short": pa.array(short, pa.bool_()),
            "legal": pa.array(np.zeros(len(ranks), bool), pa.bool_()),  # not kept in the index
            "eligible": pa.array(np.zeros(len(ranks), bool), pa.bool_()),  # never chosen: not tonight's
        }
    )


def _prior_names(
    prior: PriorIndex | None, ids: list[str], first: int, clusters: list[str | None]
) -> Callable[[str], bool] | None:
    """``is_prior`` for the representative choice: the ids of earlier documents among the touched
    ones, and any cluster name that an earlier document has (as the in-memory index answers)."""
    if prior is None or not len(prior):
        return None
    names = set(ids[:first]) | prior.known_ids(sorted({c for c in clusters if c is not None}))
    return names.__contains__


def distributed_dedup(
    chunk_paths: list[Path],
    offsets: list[int],
    cfg: PipelineConfig,
    parts: int | None = None,
    prior: PriorIndex | None = None,
    keys_dir: Path | None = None,
    judge: Callable[[np.ndarray, list[str | None]], tuple[list[bool], list[int]]] | None = None,
) -> DedupResult:
    """Exact + near-duplicate clusters over all chunks, equal to ``DedupIndex.assign`` + the runner's
    representative choice, computed with two shuffles (see the module docstring).

    `prior`: the on-disk index of earlier nights (nightly), read only; its documents rank before
    tonight's, as in ``DedupIndex.assign``. It is not shuffled: keys are partitioned by key range,
    and each reducer looks the content keys and band keys of its range up in the index (reading
    only that range of its sorted tables) and adds the earlier documents it finds (band rows with
    their signatures read from disk), so a night reads the index once, not once per chunk. The clusters
    that earlier documents form among themselves come from the index's forest
    (filters/dedup_prior.py), replayed with tonight's buckets in the local index's order.

    `keys_dir`: the renamed row keys of each chunk (:func:`write_renamed_keys`, same file names);
    documents are then named by their row keys (stages.RowKeys), as in the local engine's index.

    `judge(positions, clusters)`: (the rows the context detectors quarantine whatever else is found,
    the rank of each row as its cluster's kept copy) (stages.judged_rows), given tonight's touched
    documents' places in input order and clusters, as in the local engine.

    Returns, per chunk, the rows of tonight's documents that share a content key or an LSH bucket
    with another document: their SIGNAL_SCHEMA columns, ``duplicate_of``/``duplicate_kind`` and
    eligibility for the language model. Every other document is its own cluster. Ranks in the
    returned rows count tonight's documents only (the chunk offsets' numbering)."""
    ray = ray_module()
    dcfg = cfg.dedup
    parts = parts or cluster_cpus()
    paths = [str(p) for p in chunk_paths]
    bounds = np.array(
        offsets + [offsets[-1] + pq.ParquetFile(chunk_paths[-1]).metadata.num_rows] if offsets else [0],
        dtype=np.int64,
    )
    n_prior = len(prior) if prior is not None else 0
    prior_ref = ray.put(prior) if n_prior else None
    # Global ranks: the earlier nights' documents first, then tonight's in input order.
    chunks: list[tuple[str, int]] = [(p, o + n_prior) for p, o in zip(paths, offsets, strict=True)]

    # Shuffle 1: content keys.
    mapped = _map_all(_exact_map, [(src, o, parts) for src, o in chunks], parts)
    reduce_exact = ray.remote(_exact_reduce)
    exact = ray.get([reduce_exact.remote(prior_ref, *[m[p] for m in mapped]) for p in range(parts)])
    del mapped
    copies = np.concatenate([c for c, _ in exact]) if exact else np.zeros(0, np.int64)
    leaders = np.concatenate([lead for _, lead in exact]) if exact else np.zeros(0, np.int64)

    # Shuffle 2: LSH band keys with signatures, buckets verified where they meet.
    copies_ref = ray.put(np.sort(copies))
    mapped = _map_all(_band_map, [(src, o, copies_ref, dcfg, parts) for src, o in chunks], parts)
    reduce_band = ray.remote(_band_reduce)
    buckets: list[Bucket] = [
        b
        for part in ray.get(
            [reduce_band.remote(dcfg, prior_ref, *[m[p] for m in mapped]) for p in range(parts)]
        )
        for b in part
    ]
    del mapped
    result = DedupResult(buckets=len(buckets), edges=sum(len(b[3]) for b in buckets))
    # The local index verifies buckets band by band, in band-key order; replaying them in that order
    # (with the earlier nights' forest edges of the clusters they touch) gives the same skipped
    # buckets (all members already joined), hence the same similarities.
    forest = np.zeros((0, 4), np.int64)
    if prior is not None and n_prior:
        forest = prior.components(dedup_prior.earlier_touched(n_prior, leaders, buckets))[1]
    rep = dedup_prior.replay(np.zeros(0, np.int64), copies, leaders, buckets, forest)
    touched, max_sim = rep.nodes, rep.max_sim
    n = len(touched)
    result.touched = n
    if not n:
        return result
    roots = np.searchsorted(touched, rep.roots)
    exact_of = np.full(n, -1, dtype=np.int64)
    exact_of[np.searchsorted(touched, copies)] = np.searchsorted(touched, leaders)

    # Ids, domains and eligibility of the touched documents, read where their chunks are (those of
    # the prior index: on the driver, from the index it holds).
    tonight = touched >= n_prior
    chunk_of = np.searchsorted(bounds, touched[tonight] - n_prior, side="right") - 1
    lookup = ray.remote(_lookup)
    cfg_ref = ray.put(cfg)
    refs = []
    for c in np.unique(chunk_of).tolist():
        keys_file = str(keys_dir / Path(paths[c]).name) if keys_dir is not None else None
        ranks = touched[tonight][chunk_of == c]
        refs.append(lookup.remote(paths[c], offsets[c] + n_prior, ranks, cfg_ref, keys_file))
    found = ray.get(refs)
    if prior is not None and not tonight.all():
        found.insert(0, _prior_lookup(prior, touched[~tonight], dcfg))
    info = pa.concat_tables(found)
    info = info.take(pc.sort_indices(info, [("rank", "ascending")]))
    ids = info.column("id").to_pylist()
    domains = info.column("domain_hash").to_numpy().view(np.int64)  # 0: no domain
    short = info.column("short").to_numpy(zero_copy_only=False)
    legal_notices = info.column("legal").to_numpy(zero_copy_only=False)

    size = np.bincount(roots, minlength=n)[roots]
    with_domain = domains != 0
    pairs_rd = np.unique(np.stack([roots[with_domain], domains[with_domain]]), axis=1)
    n_domains = np.bincount(pairs_rd[0], minlength=n)[roots]
    assign = pa.table(
        {
            "dedup_cluster_id": pa.array([ids[r] for r in roots.tolist()], pa.string()),
            "dedup_cluster_size": pa.array(size, pa.int64()),
            "dedup_cluster_domains": pa.array(n_domains, pa.int64()),
            "dedup_exact_of": pa.array([ids[e] if e >= 0 else None for e in exact_of.tolist()], pa.string()),
            "dedup_max_similarity": pa.array(np.round(max_sim, 6), pa.float64()),
            "dedup_short": pa.array(short, pa.bool_()),
            "dedup_legal": pa.array(legal_notices, pa.bool_()),
        },
        schema=dedup.SIGNAL_SCHEMA,
    )
    campaign = [bool(r) for r in dedup.flag(assign, dcfg)]
    eligible = [e and not c for e, c in zip(info.column("eligible").to_pylist(), campaign, strict=True)]
    # Only tonight's documents get rows, as in DedupIndex.assign; a cluster named after a document
    # of an earlier run keeps that one (the runner's rule). Documents outside `touched` are
    # singletons: they never change whom a cluster keeps.
    first = int(np.count_nonzero(~tonight))  # touched prior documents rank first
    assign = assign.slice(first)
    eligible = eligible[first:]
    ranks = None
    if judge is not None:
        judged, ranks = judge(touched[tonight] - n_prior, assign.column("dedup_cluster_id").to_pylist())
        eligible = [e and not j for e, j in zip(eligible, judged, strict=True)]
    duplicate_of, kind = stages.choose_representatives(
        ids[first:],
        assign.column("dedup_cluster_id").to_pylist(),
        assign.column("dedup_exact_of").to_pylist(),
        eligible,
        _prior_names(prior, ids, first, assign.column("dedup_cluster_id").to_pylist()),
        ranks,
    )
    full = pa.table(
        [
            pa.array(touched[tonight] - n_prior, pa.int64()),
            *assign.columns,
            pa.array(duplicate_of, pa.string()),
            pa.array(kind, pa.string()),
            pa.array(eligible, pa.bool_()),
        ],
        schema=OVERRIDE_SCHEMA,
    )
    for c in np.unique(chunk_of).tolist():
        result.overrides[c] = full.filter(pa.array(chunk_of == c))
    return result


def chunk_assignment(
    scored: pa.Table,
    offset: int,
    overrides: pa.Table | None,
    cfg: PipelineConfig,
    keys: list[str] | None = None,
) -> Duplicates:
    """Stage 3's result for one scored chunk: the columns of a singleton cluster for every document,
    replaced by the dedup overrides where there are some. With the chunk's row `keys` (the overrides
    then name documents by them), the cluster columns show the documents' ids again."""
    n = scored.num_rows
    result = Duplicates.none(stages.eligible_rows(scored, cfg))
    result.keys = keys
    if not cfg.dedup.enabled:
        return result
    ids = scored.column("id").to_pylist()
    sigs = stages.signatures_of(scored, cfg.dedup)
    short = np.all(sigs == minhash.empty_value(cfg.dedup.scheme), axis=1) if n else np.zeros(0, bool)
    cols: dict[str, list[Any]] = {
        "dedup_cluster_id": list(ids),
        "dedup_cluster_size": [1] * n,
        "dedup_cluster_domains": [
            int(dedup.registrable_domain(u) is not None) for u in scored.column("url").to_pylist()
        ],
        "dedup_exact_of": [None] * n,
        "dedup_max_similarity": [0.0] * n,
        "dedup_short": short.tolist(),
        "dedup_legal": stages.legal_notices_of(scored),
    }
    if overrides is not None and overrides.num_rows:
        _apply_overrides(result, cols, overrides, offset)
    result.assign = pa.table(
        {f.name: pa.array(cols[f.name], f.type) for f in dedup.SIGNAL_SCHEMA}, schema=dedup.SIGNAL_SCHEMA
    )
    if keys is not None:
        result.assign = stages.user_columns(result.assign)
    return result


def _apply_overrides(
    result: Duplicates, cols: dict[str, list[Any]], overrides: pa.Table, offset: int
) -> None:
    rows = (overrides.column("rank").to_numpy() - offset).tolist()
    for name in cols:
        for r, v in zip(rows, overrides.column(name).to_pylist(), strict=True):
            cols[name][r] = v
    for r, d, k, e in zip(
        rows,
        overrides.column("duplicate_of").to_pylist(),
        overrides.column("duplicate_kind").to_pylist(),
        overrides.column("eligible").to_pylist(),
        strict=True,
    ):
        result.duplicate_of[r], result.kind[r], result.eligible[r] = d, k, e


def overrides_path(work: Path, chunk_no: int) -> Path:
    return work / "dedup" / f"chunk-{chunk_no:05d}.parquet"


def load_overrides(work: Path, chunk_no: int) -> pa.Table | None:
    path = overrides_path(work, chunk_no)
    return pq.read_table(path) if path.exists() else None


def _read_if_exists(path: str | Path | None) -> pa.Table | None:
    return pq.read_table(path) if path is not None and Path(path).exists() else None


def keys_path(work: Path, chunk_no: int) -> Path:
    return work / "keys" / stages.chunk_name(chunk_no)


def write_renamed_keys(
    work: Path, chunk_no: int, ids: list[str], keys: list[str], row_group_rows: int
) -> None:
    """The rows of one chunk whose row key is not their id (stages.RowKeys), if any: the driver
    gives every document its key in input order, the tasks read them from here."""
    rows = [r for r, (i, k) in enumerate(zip(ids, keys, strict=True)) if i != k]
    if rows:
        renamed = pa.table({"row": pa.array(rows, pa.int64()), "key": [keys[r] for r in rows]})
        write_table(keys_path(work, chunk_no), renamed, row_group_rows)


def with_renamed_keys(ids: list[str], renamed: pa.Table | None) -> list[str]:
    keys = list(ids)
    if renamed is not None:
        rows, renamed_keys = renamed.column("row").to_pylist(), renamed.column("key").to_pylist()
        for row, key in zip(rows, renamed_keys, strict=True):
            keys[row] = key
    return keys


def load_keys(work: Path, chunk_no: int, scored: pa.Table) -> list[str]:
    """The row keys of one scored chunk."""
    return with_renamed_keys(scored.column("id").to_pylist(), _read_if_exists(keys_path(work, chunk_no)))
