"""The Ray engine: the local runner's stages on a Ray cluster, with the same outcomes per document.

Stages (the local runner's, see runner.py; chunk N is the same documents as there):

1. read + cheap detectors. The driver reads the inputs with poisonguard's own readers (so the chunking,
   the ids and the unreadable list are the local engine's), puts each chunk in the object store, and
   Ray Data runs ``runner.score_cheap`` on it with ``map_batches``; each task writes its scored chunk
   to OUT/_work/scored/ (the same checkpoint files as the local engine, so ``--resume`` works).
2. dedup, distributed (:func:`distributed_dedup`): two shuffles with Ray tasks, never gathering the
   signatures on one node. Exact keys are shuffled so that equal keys meet; then LSH band keys of the
   remaining documents are shuffled with their signatures, and each reducer verifies the candidate
   pairs of its buckets with the estimated-Jaccard check of ``DedupIndex``. The driver receives only
   the verified edges and similarities of buckets with two or more members and computes the
   connected components over those documents (the others are singletons). Nightly's index of
   earlier runs (``dedup_index``) is shipped in slices through the object store and joins both
   shuffles, ranked first, as in ``DedupIndex.assign``. Context detectors (nightly's drift) observe
   every scored chunk here, on the driver, which holds their state.
3. the language model, in a Ray Data actor pool (one model load per actor; GPUs requested when the
   cluster has them and the perplexity config can place the model on one), only for undecided
   documents, checkpointed per chunk in OUT/_work/lm/.
4. decisions per chunk in Ray tasks (``runner.finalize_chunk``) -> OUT/_work/decided/; the driver then
   streams the decided chunks in input order through the same shard writers, report, manifest and
   commit (``runner.commit_output``), so OUT holds the same shards as a local run. With context
   detectors, the driver decides each chunk itself as it streams them (their ``score`` and ``flag``
   need their driver-side state), exactly as the local runner's stage 4.

OUT must be on storage every node can read and write (one machine, NFS, a mounted bucket): the tasks
write the work files there. Inputs are read by the driver only.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from poisonguard.core import minhash
from poisonguard.core.files import write_table
from poisonguard.core.ray_cluster import cluster_cpus, connected, ray_module, wait_all
from poisonguard.core.schema import DOCUMENT_SCHEMA
from poisonguard.filters import campaign, dedup, perplexity
from poisonguard.pipelines import cascade, policy, runner
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.fields import FieldMap
from poisonguard.pipelines.progress import Progress
from poisonguard.pipelines.readers import ReadState, expand_inputs, read_documents, total_bytes
from poisonguard.pipelines.shard_schema import shard_schema
from poisonguard.pipelines.writers import ShardWriter

CHUNK_COLUMN = "_chunk"

# What a reducer sends back per LSH bucket with two or more members: band, band key, member ranks,
# verified edges (pairs of ranks) and the highest similarity each member was compared at.
Bucket = tuple[int, int, np.ndarray, np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Stage 1: cheap detectors with Ray Data


def _score_blocks(batch: pa.Table, cfg: PipelineConfig, scored_dir: str) -> pa.Table:
    """map_batches UDF: every chunk in the batch (normally exactly one) -> its scored work file."""
    chunks = batch.column(CHUNK_COLUMN).to_numpy()
    done: list[int] = []
    rows: list[int] = []
    timing_names: list[list[str]] = []
    timing_values: list[list[float]] = []
    for chunk_no in dict.fromkeys(chunks.tolist()):
        docs = batch.filter(pa.array(chunks == chunk_no)).drop_columns([CHUNK_COLUMN])
        table, timings = runner.score_cheap(docs, cfg)
        write_table(Path(scored_dir) / f"chunk-{chunk_no:05d}.parquet", table, cfg.run.row_group_rows)
        done.append(chunk_no)
        rows.append(docs.num_rows)
        timing_names.append(list(timings))
        timing_values.append(list(timings.values()))
    node = ray_module().get_runtime_context().get_node_id()
    return pa.table(
        {
            "chunk": pa.array(done, pa.int64()),
            "rows": pa.array(rows, pa.int64()),
            "node": pa.array([node] * len(done), pa.string()),
            "timing_names": timing_names,
            "timing_values": timing_values,
        }
    )


def _score_window(refs: list[Any], cfg: PipelineConfig, scored_dir: Path) -> pa.Table:
    ray = ray_module()
    ds = ray.data.from_arrow_refs(refs).map_batches(
        _score_blocks,
        batch_size=None,
        batch_format="pyarrow",
        zero_copy_batch=True,
        fn_kwargs={"cfg": cfg, "scored_dir": str(scored_dir)},
        num_cpus=1,
    )
    return pa.Table.from_pylist(ds.take_all())


# ---------------------------------------------------------------------------------------------
# Stage 2: distributed dedup


def _split(table: pa.Table, part: np.ndarray, parts: int) -> list[pa.Table]:
    return [table.filter(pa.array(part == p)) for p in range(parts)]


def _read_sigs(path: str, cfg: dedup.Config, columns: Sequence[str] = ()) -> tuple[np.ndarray, pa.Table]:
    table = pq.read_table(path, columns=[runner.SIG_COLUMN, *columns])
    flat = table.column(runner.SIG_COLUMN).combine_chunks().flatten()
    sigs = np.asarray(flat).reshape(table.num_rows, -1)
    sigs = sigs.astype(minhash.signature_dtype(cfg.scheme), copy=False)
    return sigs, table


def _exact_map(source: str | np.ndarray, offset: int, parts: int) -> list[pa.Table]:
    """Content keys of one chunk (a scored work file), or of one slice of the prior index (its (n, 2)
    key array), partitioned by key."""
    if isinstance(source, np.ndarray):
        arr = source
    else:
        keys = pq.read_table(source, columns=[runner.KEY_COLUMN]).column(runner.KEY_COLUMN).to_pylist()
        arr = np.zeros((len(keys), 2), dtype=np.uint64)
        for i, key in enumerate(keys):
            if key:
                arr[i] = np.frombuffer(key, dtype=np.uint64)
    has = np.flatnonzero((arr[:, 0] != 0) | (arr[:, 1] != 0))
    table = pa.table({"k0": arr[has, 0], "k1": arr[has, 1], "rank": (has + offset).astype(np.int64)})
    return _split(table, arr[has, 1] % np.uint64(parts), parts)


def _exact_reduce(*tables: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(copies, their earliest copy) for every key held by two or more documents, as ranks."""
    t = pa.concat_tables(tables)
    k0, k1, rank = (t.column(c).to_numpy() for c in ("k0", "k1", "rank"))
    srt = np.lexsort((rank, k1, k0))
    k0, k1, rank = k0[srt], k1[srt], rank[srt]
    new = np.ones(len(rank), dtype=bool)
    new[1:] = (k0[1:] != k0[:-1]) | (k1[1:] != k1[:-1])
    leader = rank[np.maximum.accumulate(np.where(new, np.arange(len(rank)), 0))]
    return rank[~new], leader[~new]


def _band_map(
    source: str | np.ndarray, offset: int, copies: np.ndarray, cfg: dedup.Config, parts: int
) -> list[pa.Table]:
    """One row per (band, candidate document) with its band key and signature, partitioned by key;
    for one chunk (a scored work file) or one slice of the prior index (its signatures)."""
    bands, rows = dedup.lsh_params(cfg)
    sigs = source if isinstance(source, np.ndarray) else _read_sigs(source, cfg)[0]
    n = len(sigs)
    rank = np.arange(offset, offset + n, dtype=np.int64)
    empty = minhash.empty_value(cfg.scheme)
    cand = ~np.all(sigs == empty, axis=1) & ~np.isin(rank, copies) if n else np.zeros(0, bool)
    csigs, crank = sigs[cand], rank[cand]
    width = sigs.shape[1] if sigs.ndim == 2 else cfg.num_perm
    dtype = pa.uint32() if csigs.dtype == np.uint32 else pa.uint64()
    flat_sigs = pa.FixedSizeListArray.from_arrays(
        pa.array(np.tile(csigs, (bands, 1)).reshape(-1), dtype), width
    )
    # The index's own band keys (a private helper, reused so that buckets are exactly the local ones).
    keys = np.concatenate(
        [dedup._band_keys(csigs, b, rows) for b in range(bands)] or [np.zeros(0, np.uint64)]
    )
    table = pa.table(
        {
            "band": pa.array(np.repeat(np.arange(bands, dtype=np.int32), len(csigs))),
            "key": pa.array(keys, pa.uint64()),
            "rank": pa.array(np.tile(crank, bands)),
            "sig": flat_sigs,
        }
    )
    return _split(table, keys % np.uint64(parts), parts)


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


def _band_reduce(cfg: dedup.Config, *tables: pa.Table) -> list[Bucket]:
    """Verify the buckets of this partition; only buckets with two or more members come back."""
    t = pa.concat_tables(tables)
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


def _lookup(path: str, offset: int, ranks: np.ndarray, cfg: PipelineConfig) -> pa.Table:
    """id, registrable domain, short sketch and cheap-detector eligibility of the given documents."""
    table = pq.read_table(path)
    quarantine, filtered = policy.cheap_reasons(table, cfg)
    rows = (ranks - offset).astype(np.int64)
    sigs, _ = _read_sigs(path, cfg.dedup)
    short = np.all(sigs == minhash.empty_value(cfg.dedup.scheme), axis=1) if len(sigs) else np.zeros(0, bool)
    ids = table.column("id").take(pa.array(rows)).to_pylist()
    urls = table.column("url").take(pa.array(rows)).to_pylist()
    return pa.table(
        {
            "rank": pa.array(ranks, pa.int64()),
            "id": pa.array(ids, pa.string()),
            "domain": pa.array([dedup.registrable_domain(u) for u in urls], pa.string()),
            "short": pa.array(short[rows], pa.bool_()),
            "eligible": pa.array([not quarantine[r] and not filtered[r] for r in rows.tolist()], pa.bool_()),
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


PRIOR_SLICE_ROWS = 50_000  # prior-index documents per map task (about 25 MB of signatures at 128 perms)


def _prior_slices(entries: dedup.IndexEntries, rows: int) -> list[tuple[int, Any, Any]]:
    """(first rank, keys ref, signatures ref) per slice of the prior index, put in the object store."""
    ray = ray_module()
    n = len(entries.prior)
    return [
        (start, ray.put(entries.keys[start : start + rows]), ray.put(entries.sigs[start : start + rows]))
        for start in range(0, n, rows)
    ]


def _prior_lookup(entries: dedup.IndexEntries, ranks: np.ndarray, cfg: dedup.Config) -> pa.Table:
    """`_lookup`'s columns for documents of the prior index (on the driver, which holds it)."""
    codes = entries.domains[ranks].tolist()
    short = np.all(entries.sigs[ranks] == minhash.empty_value(cfg.scheme), axis=1)
    return pa.table(
        {
            "rank": pa.array(ranks, pa.int64()),
            "id": entries.ids.take(pa.array(ranks, pa.int64())).cast(pa.string()),
            "domain": pa.array([entries.domain_names[c] if c >= 0 else None for c in codes], pa.string()),
            "short": pa.array(short, pa.bool_()),
            "eligible": pa.array(np.zeros(len(ranks), bool), pa.bool_()),  # never chosen: not tonight's
        }
    )


def distributed_dedup(
    chunk_paths: list[Path],
    offsets: list[int],
    cfg: PipelineConfig,
    parts: int | None = None,
    prior: dedup.DedupIndex | None = None,
    prior_slice_rows: int = PRIOR_SLICE_ROWS,
) -> DedupResult:
    """Exact + near-duplicate clusters over all chunks, equal to ``DedupIndex.assign`` + the runner's
    representative choice, computed with two shuffles (see the module docstring).

    `prior`: an index of documents of earlier runs (nightly), read only. Its documents go through
    the same two shuffles as tonight's, ranked before them as in ``DedupIndex.assign``: each slice of
    ``prior_slice_rows`` documents is put in the object store once and mapped by its own task, so
    their band keys meet tonight's at the reducers that own the keys. Nothing of the index is
    gathered anywhere but on the driver that loaded it. (Looking tonight's documents up in a prior
    LSH table would cost less per night, but it would miss what the local index does: edges among
    prior documents that a new document bridges, and the order in which buckets are verified; this
    way the result equals the local engine's column for column.)

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
    entries = prior.entries() if prior is not None and len(prior) else None
    if entries is not None and not entries.prior.all():
        raise ValueError("dedup_index: holds documents not added as prior (documents of earlier runs)")
    n_prior = len(entries.prior) if entries is not None else 0
    prior_parts = _prior_slices(entries, prior_slice_rows) if entries is not None else []
    # Global ranks: the prior index's documents first, then tonight's in input order.
    chunks: list[tuple[Any, int]] = [(p, o + n_prior) for p, o in zip(paths, offsets, strict=True)]
    sources_keys = [(k, s) for s, k, _ in prior_parts] + chunks
    sources_sigs = [(g, s) for s, _, g in prior_parts] + chunks

    # Shuffle 1: content keys.
    mapped = _map_all(_exact_map, [(src, o, parts) for src, o in sources_keys], parts)
    reduce_exact = ray.remote(_exact_reduce)
    exact = ray.get([reduce_exact.remote(*[m[p] for m in mapped]) for p in range(parts)])
    del mapped
    copies = np.concatenate([c for c, _ in exact]) if exact else np.zeros(0, np.int64)
    leaders = np.concatenate([lead for _, lead in exact]) if exact else np.zeros(0, np.int64)

    # Shuffle 2: LSH band keys with signatures, buckets verified where they meet.
    copies_ref = ray.put(np.sort(copies))
    mapped = _map_all(_band_map, [(src, o, copies_ref, dcfg, parts) for src, o in sources_sigs], parts)
    reduce_band = ray.remote(_band_reduce)
    buckets: list[Bucket] = [
        b
        for part in ray.get([reduce_band.remote(dcfg, *[m[p] for m in mapped]) for p in range(parts)])
        for b in part
    ]
    del mapped, prior_parts
    # The local index verifies buckets band by band, in band-key order; replaying them in that order
    # gives the same skipped buckets (all members already joined), hence the same similarities.
    buckets.sort(key=lambda b: (b[0], b[1]))

    parts_touched = [copies, leaders] + [b[2] for b in buckets]
    touched = np.unique(np.concatenate(parts_touched)) if parts_touched else np.zeros(0, np.int64)
    n = len(touched)
    result = DedupResult(touched=n, buckets=len(buckets), edges=sum(len(b[3]) for b in buckets))
    if not n:
        return result
    uf = dedup.UnionFind(n)  # union by smallest index, as DedupIndex
    max_sim = np.zeros(n, dtype=np.float64)
    exact_of = np.full(n, -1, dtype=np.int64)
    ci, cl = np.searchsorted(touched, copies), np.searchsorted(touched, leaders)
    exact_of[ci] = cl
    max_sim[ci] = 1.0
    max_sim[cl] = 1.0
    for a, b in zip(cl.tolist(), ci.tolist(), strict=True):
        uf.union(a, b)
    for _, _, members, pairs, best in buckets:
        local = np.searchsorted(touched, members).tolist()
        root0 = uf.find(local[0])
        if all(uf.find(j) == root0 for j in local[1:]):
            continue
        np.maximum.at(max_sim, np.array(local), best)
        for a, b in np.searchsorted(touched, pairs).tolist():
            uf.union(a, b)
    roots = np.fromiter((uf.find(i) for i in range(n)), dtype=np.int64, count=n)

    # Ids, domains and eligibility of the touched documents, read where their chunks are (those of
    # the prior index: on the driver, from the index it holds).
    tonight = touched >= n_prior
    chunk_of = np.searchsorted(bounds, touched[tonight] - n_prior, side="right") - 1
    lookup = ray.remote(_lookup)
    cfg_ref = ray.put(cfg)
    refs = []
    for c in np.unique(chunk_of).tolist():
        refs.append(lookup.remote(paths[c], offsets[c] + n_prior, touched[tonight][chunk_of == c], cfg_ref))
    found = ray.get(refs)
    if entries is not None and not tonight.all():
        found.insert(0, _prior_lookup(entries, touched[~tonight], dcfg))
    info = pa.concat_tables(found)
    info = info.take(pc.sort_indices(info, [("rank", "ascending")]))
    ids = info.column("id").to_pylist()
    domains = info.column("domain").to_pylist()
    short = info.column("short").to_numpy(zero_copy_only=False)

    size = np.bincount(roots, minlength=n)[roots]
    codes: dict[str, int] = {}
    dom_code = np.array([codes.setdefault(d, len(codes)) if d is not None else -1 for d in domains], np.int64)
    with_domain = dom_code >= 0
    pairs_rd = np.unique(np.stack([roots[with_domain], dom_code[with_domain]]), axis=1)
    n_domains = np.bincount(pairs_rd[0], minlength=n)[roots]
    assign = pa.table(
        {
            "dedup_cluster_id": pa.array([ids[r] for r in roots.tolist()], pa.string()),
            "dedup_cluster_size": pa.array(size, pa.int64()),
            "dedup_cluster_domains": pa.array(n_domains, pa.int64()),
            "dedup_exact_of": pa.array([ids[e] if e >= 0 else None for e in exact_of.tolist()], pa.string()),
            "dedup_max_similarity": pa.array(np.round(max_sim, 6), pa.float64()),
            "dedup_short": pa.array(short, pa.bool_()),
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
    duplicate_of, kind, _ = runner.choose_representatives(
        ids[first:],
        assign.column("dedup_cluster_id").to_pylist(),
        assign.column("dedup_exact_of").to_pylist(),
        eligible[first:],
        prior.is_prior if entries is not None and prior is not None else None,
    )
    full = pa.table(
        [
            pa.array(touched[tonight] - n_prior, pa.int64()),
            *assign.columns,
            pa.array(duplicate_of, pa.string()),
            pa.array(kind, pa.string()),
            pa.array(eligible[first:], pa.bool_()),
        ],
        schema=OVERRIDE_SCHEMA,
    )
    for c in np.unique(chunk_of).tolist():
        result.overrides[c] = full.filter(pa.array(chunk_of == c))
    return result


def chunk_assignment(
    scored: pa.Table, offset: int, overrides: pa.Table | None, cfg: PipelineConfig
) -> tuple[pa.Table | None, list[str | None], list[str | None], list[bool]]:
    """(SIGNAL_SCHEMA columns or None without dedup, duplicate_of, duplicate_kind, eligible) for one
    scored chunk: defaults of a singleton cluster, replaced by the dedup overrides."""
    n = scored.num_rows
    quarantine, filtered = policy.cheap_reasons(scored, cfg)
    eligible = [not q and not f for q, f in zip(quarantine, filtered, strict=True)]
    duplicate_of: list[str | None] = [None] * n
    kind: list[str | None] = [None] * n
    if not cfg.dedup.enabled:
        return None, duplicate_of, kind, eligible
    ids = scored.column("id").to_pylist()
    sigs, _ = _read_sigs_table(scored, cfg.dedup)
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
    }
    if overrides is not None and overrides.num_rows:
        rows = (overrides.column("rank").to_numpy() - offset).tolist()
        for name in cols:
            values = overrides.column(name).to_pylist()
            for r, v in zip(rows, values, strict=True):
                cols[name][r] = v
        for r, d, k, e in zip(
            rows,
            overrides.column("duplicate_of").to_pylist(),
            overrides.column("duplicate_kind").to_pylist(),
            overrides.column("eligible").to_pylist(),
            strict=True,
        ):
            duplicate_of[r], kind[r], eligible[r] = d, k, e
    assign = pa.table(
        {f.name: pa.array(cols[f.name], f.type) for f in dedup.SIGNAL_SCHEMA}, schema=dedup.SIGNAL_SCHEMA
    )
    return assign, duplicate_of, kind, eligible


def _read_sigs_table(table: pa.Table, cfg: dedup.Config) -> tuple[np.ndarray, pa.Table]:
    flat = table.column(runner.SIG_COLUMN).combine_chunks().flatten()
    return np.asarray(flat).reshape(table.num_rows, -1).astype(minhash.signature_dtype(cfg.scheme)), table


def _campaign_path(work: Path, chunk_no: int) -> Path:
    return work / "campaign" / f"chunk-{chunk_no:05d}.parquet"


def campaign_signals(chunk_files: list[Path], work: Path, cfg: PipelineConfig) -> None:
    """Spun campaigns (filters/campaign.py) over every scored chunk, on the driver: one index of
    signatures and sketches (no text), its columns written per chunk for the stage-4 tasks."""
    index = campaign.CampaignIndex(cfg.campaign)
    columns = ["id", "url", campaign.SIG_COLUMN, campaign.SKETCH_COLUMN, campaign.BODY_SHARE_COLUMN]
    columns.append(campaign.OWNER_COLUMN)
    for path in chunk_files:
        index.add_table(pq.read_table(path, columns=columns))
    found = index.assign()
    (work / "campaign").mkdir(exist_ok=True)
    offset = 0
    for path in chunk_files:
        rows = pq.ParquetFile(path).metadata.num_rows
        write_table(_campaign_path(work, _chunk_no(path)), found.slice(offset, rows), cfg.run.row_group_rows)
        offset += rows


def _overrides_path(work: Path, chunk_no: int) -> Path:
    return work / "dedup" / f"chunk-{chunk_no:05d}.parquet"


def _load_overrides(work: str, chunk_no: int) -> pa.Table | None:
    path = _overrides_path(Path(work), chunk_no)
    return pq.read_table(path) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Stage 3: the language model in an actor pool


class LMActor:
    """Ray Data actor: loads the model once, scores the undecided documents of whole chunks."""

    def __init__(self, cfg: PipelineConfig, work: str, offsets: dict[int, int]) -> None:
        self.cfg = cfg
        self.work = Path(work)
        self.offsets = offsets
        self.scorer: Any = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        scored_rows: list[int] = []
        for chunk_no in batch.column("chunk").to_pylist():
            scored_rows.append(self._chunk(int(chunk_no)))
        return pa.table({"chunk": batch.column("chunk"), "lm_rows": pa.array(scored_rows, pa.int64())})

    def _chunk(self, chunk_no: int) -> int:
        cfg = self.cfg
        name = f"chunk-{chunk_no:05d}.parquet"
        scored = pq.read_table(self.work / "scored" / name)
        _, duplicate_of, _, eligible = chunk_assignment(
            scored, self.offsets[chunk_no], _load_overrides(str(self.work), chunk_no), cfg
        )
        rows = scored.num_rows
        undecided = [e and d is None for e, d in zip(eligible, duplicate_of, strict=True)]
        picked = cascade.lm_rows(scored, cfg, undecided)
        target = self.work / "lm" / name
        if not picked:
            write_table(target, pa.table({"_empty": pa.nulls(rows, pa.bool_())}), cfg.run.row_group_rows)
            return 0
        if self.scorer is None:
            self.scorer = perplexity.PerplexityScorer(cfg.perplexity)
        subset = scored.select(["id", "text", "url"]).take(pa.array(picked))
        limit = cfg.run.max_text_chars
        subset = subset.set_column(
            1, "text", pa.array([t[:limit] for t in subset.column("text").to_pylist()], pa.string())
        )
        scores = runner.perplexity_columns(self.scorer.score(subset))
        full = {}
        for col, values in scores.items():
            column: list[Any] = [None] * rows
            for pos, value in zip(picked, values.to_pylist(), strict=True):
                column[pos] = value
            full[col] = pa.array(column, values.type)
        write_table(target, pa.table(full), cfg.run.row_group_rows)
        return len(picked)


def _lm_verdicts(
    scored_path: str, lm_path: str, ranks: np.ndarray, offset: int, cfg: PipelineConfig
) -> list[str]:
    """Ids among `ranks` that the language model quarantines (their copies follow them)."""
    lm = pq.read_table(lm_path)
    rows = (ranks - offset).astype(np.int64)
    sub = lm.take(pa.array(rows))
    reasons = policy.lm_reasons(sub, cfg)
    ids = pq.read_table(scored_path, columns=["id"]).column("id").take(pa.array(rows)).to_pylist()
    return [i for i, r in zip(ids, reasons, strict=True) if r]


def _lm_gpus(cfg: PipelineConfig) -> float:
    """GPUs per LM actor: one when the cluster has GPUs and `perplexity.device` is not cpu. Ray then
    shows the actor its GPU as cuda:0, which `device: auto` (or cuda) picks up."""
    has_gpu = ray_module().cluster_resources().get("GPU", 0) > 0
    return 1.0 if has_gpu and cfg.perplexity.device != "cpu" else 0.0


# ---------------------------------------------------------------------------------------------
# Stage 4: decisions


def decided_table(
    chunk_no: int,
    offset: int,
    work: str,
    cfg: PipelineConfig,
    doc_schema: pa.Schema,
    lm_schema: pa.Schema,
    quarantined: set[str],
    context_detectors: tuple[runner.ContextDetector, ...] = (),
) -> pa.Table:
    """One chunk's decided table from its work files (scored, dedup overrides, LM), as the local
    runner's stage 4 builds it; `quarantined` grows as in ``runner.finalize_chunk``."""
    name = f"chunk-{chunk_no:05d}.parquet"
    scored = pq.read_table(Path(work) / "scored" / name)
    rows = scored.num_rows
    assign, duplicate_of, kind, _ = chunk_assignment(scored, offset, _load_overrides(work, chunk_no), cfg)
    context_columns: dict[str, pa.Array] = {}
    for detector in context_detectors:
        context_columns.update(detector.score(scored))
    table = scored.select([c for c in scored.column_names if not c.startswith("_")])
    for f in doc_schema:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(rows, f.type))
    if assign is not None:
        for col in assign.column_names:
            table = table.append_column(col, assign.column(col))
    if cfg.campaign.enabled:
        found = pq.read_table(_campaign_path(Path(work), chunk_no))
        for col in found.column_names:
            table = table.append_column(col, found.column(col))
    lm_file = Path(work) / "lm" / name
    lm_part = pq.read_table(lm_file) if lm_file.exists() else None
    for f in lm_schema:
        have = lm_part is not None and f.name in lm_part.column_names
        values = (
            lm_part.column(f.name).cast(f.type) if lm_part is not None and have else pa.nulls(rows, f.type)
        )
        table = table.append_column(f.name, values)
    for detector in context_detectors:
        for f in detector.schema:
            table = table.append_column(f.name, pa.array(context_columns[f.name], f.type))
    return runner.finalize_chunk(table, cfg, duplicate_of, kind, quarantined, context_detectors)


def _decide_chunk(
    chunk_no: int,
    offset: int,
    work: str,
    cfg: PipelineConfig,
    doc_schema: pa.Schema,
    lm_schema: pa.Schema,
    quarantined: list[str],
) -> int:
    """Ray task: one chunk's decisions -> OUT/_work/decided/ (runs without context detectors)."""
    table = decided_table(chunk_no, offset, work, cfg, doc_schema, lm_schema, set(quarantined))
    write_table(Path(work) / "decided" / f"chunk-{chunk_no:05d}.parquet", table, cfg.run.row_group_rows)
    return table.num_rows


# ---------------------------------------------------------------------------------------------
# The whole run


def _chunk_no(path: Path) -> int:
    return int(path.stem.split("-")[1])


def run_filter_ray(
    inputs: list[str],
    out: Path,
    cfg: PipelineConfig,
    *,
    address: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    use_lm: bool | None = None,
    show_progress: bool | str = True,
    extra_report: dict[str, Any] | None = None,
    lm_actors: int | None = None,
    dedup_index: dedup.DedupIndex | None = None,
    context_detectors: tuple[runner.ContextDetector, ...] = (),
) -> dict[str, Any]:
    """`runner.run_filter` on a Ray cluster: same OUT files, same outcome and reasons per document.

    `address`: the cluster to join (``auto``, ``ray://head:10001``...); without it the Ray already
    initialised in this process is used, or a local one with ``run.workers`` CPUs is started (and
    stopped at the end). `lm_actors`: language-model actors (default: one per GPU, else one).

    `dedup_index` and `context_detectors` mean what they mean to ``run_filter`` (nightly: the index
    of earlier runs, the drift detector). The index is only read, never added to (the local runner
    adds tonight's documents to it). Its documents join the dedup shuffles (:func:`distributed_dedup`).
    Context detectors run on the driver, which holds their state (nightly's SQLite history):
    ``observe`` per scored chunk in stage 2, then ``score`` and ``flag`` as each chunk is decided,
    in input order; with them, stage 4's decisions are made on the driver as it streams the chunks
    into the shards (the local runner's loop) instead of in Ray tasks.
    """
    with connected(address, cfg.run.workers):
        return _run(
            inputs,
            out,
            cfg,
            overwrite=overwrite,
            resume=resume,
            use_lm=use_lm,
            show_progress=show_progress,
            extra_report=extra_report,
            lm_actors=lm_actors,
            dedup_index=dedup_index,
            context_detectors=context_detectors,
        )


def _run(
    inputs: list[str],
    out: Path,
    cfg: PipelineConfig,
    *,
    overwrite: bool,
    resume: bool,
    use_lm: bool | None,
    show_progress: bool | str,
    extra_report: dict[str, Any] | None,
    lm_actors: int | None,
    dedup_index: dedup.DedupIndex | None,
    context_detectors: tuple[runner.ContextDetector, ...],
) -> dict[str, Any]:
    ray = ray_module()
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.time()
    use_lm = cfg.perplexity.enabled if use_lm is None else (use_lm and cfg.perplexity.enabled)
    own = {(out / name).resolve() for name in ("clean", "quarantine", runner.WORK)}
    paths = [p for p in expand_inputs(inputs) if not own & set(p.resolve().parents)]
    if not paths:
        raise runner.OutputError(f"{out}: every input file is one of this output folder's own shards")
    fingerprint = runner._fingerprint(paths, cfg, use_lm)
    runner.prepare_out(out, overwrite, resume, fingerprint)
    work = out / runner.WORK
    scored_dir, lm_dir = work / "scored", work / "lm"
    for sub in ("scored", "lm", "dedup", "decided"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "fingerprint").write_text(fingerprint)
    progress = Progress(enabled=show_progress)
    timings: dict[str, float] = {}
    state = ReadState(fields=FieldMap.from_config(cfg.input), max_record_bytes=cfg.run.max_record_bytes)
    input_bytes = total_bytes(paths)
    cpus = cluster_cpus()

    # Stage 1 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    task = progress.start("scoring (ray)", total=input_bytes, unit="B")
    expected: dict[int, int] = {}
    scored_on: dict[str, int] = {}  # Ray node id -> chunks it scored in this run
    window: list[Any] = []
    window_rows = 0

    def flush() -> None:
        nonlocal window, window_rows
        if window:
            result = _score_window(window, cfg, scored_dir)
            for chunk_no, rows, node, names, values in zip(
                *(
                    result.column(c).to_pylist()
                    for c in ("chunk", "rows", "node", "timing_names", "timing_values")
                ),
                strict=True,
            ):
                if rows != expected[chunk_no]:
                    raise RuntimeError(f"chunk {chunk_no}: scored {rows} rows, expected {expected[chunk_no]}")
                scored_on[node] = scored_on.get(node, 0) + 1
                for key, value in zip(names, values, strict=True):
                    timings[key] = timings.get(key, 0.0) + value
        progress.advance(task, state.bytes_done, window_rows)
        window, window_rows = [], 0

    for chunk_no, docs in enumerate(read_documents(paths, cfg.run.batch_rows, state)):
        if (scored_dir / f"chunk-{chunk_no:05d}.parquet").exists():  # finished by an interrupted run
            progress.advance(task, state.bytes_done, docs.num_rows)
            continue
        expected[chunk_no] = docs.num_rows
        tagged = docs.append_column(CHUNK_COLUMN, pa.array(np.full(docs.num_rows, chunk_no, np.int64)))
        window.append(ray.put(tagged))
        window_rows += docs.num_rows
        # Bounded look-ahead: the driver never holds more than a few chunks per CPU in the store.
        if len(window) >= 4 * cpus:
            flush()
    flush()
    progress.finish(task)
    chunk_files = runner._chunk_paths(scored_dir)
    chunk_rows = [pq.ParquetFile(p).metadata.num_rows for p in chunk_files]
    offsets = [int(x) for x in np.concatenate(([0], np.cumsum(chunk_rows)[:-1]))] if chunk_rows else []
    offset_of = {_chunk_no(p): o for p, o in zip(chunk_files, offsets, strict=True)}
    docs_in = sum(chunk_rows)
    timings["stage:cheap"] = time.perf_counter() - stage_start

    # Stage 2 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    shutil.rmtree(work / "dedup")
    (work / "dedup").mkdir()
    touched_chunks: dict[int, np.ndarray] = {}
    # Context detectors see every chunk in input order before anything is decided (runner stage 2).
    for path in chunk_files if context_detectors else []:
        table = pq.read_table(path)
        for detector in context_detectors:
            detector.observe(table)
    if cfg.dedup.enabled and chunk_files:
        result = distributed_dedup(chunk_files, offsets, cfg, prior=dedup_index)
        for c, table in result.overrides.items():
            write_table(_overrides_path(work, _chunk_no(chunk_files[c])), table, cfg.run.row_group_rows)
            touched_chunks[c] = table.column("rank").to_numpy()
        timings["dedup:touched_docs"] = result.touched
        timings["dedup:buckets_verified"] = result.buckets
    if cfg.campaign.enabled and chunk_files:
        campaign_signals(chunk_files, work, cfg)
    timings["stage:dedup"] = time.perf_counter() - stage_start

    # Stage 3 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    lm_rows = 0
    quarantined_reps: list[tuple[int, list[str]]] = []  # (chunk position, ids)
    if use_lm and chunk_files:
        todo = [_chunk_no(p) for p in chunk_files if not (lm_dir / p.name).exists()]
        if todo:
            gpus = _lm_gpus(cfg)
            actors = lm_actors or (max(1, int(ray.cluster_resources().get("GPU", 0))) if gpus else 1)
            ds = ray.data.from_items([{"chunk": c} for c in todo]).map_batches(
                LMActor,
                batch_size=1,
                batch_format="pyarrow",
                concurrency=actors,
                num_gpus=gpus,
                num_cpus=1,
                fn_constructor_kwargs={"cfg": cfg, "work": str(work), "offsets": offset_of},
            )
            lm_rows = sum(int(r["lm_rows"]) for r in ds.take_all())
    if use_lm and chunk_files and not context_detectors:  # with them, stage 4 runs on the driver
        verdict = ray.remote(_lm_verdicts)
        verdicts = {
            c: verdict.remote(str(chunk_files[c]), str(lm_dir / chunk_files[c].name), ranks, offsets[c], cfg)
            for c, ranks in touched_chunks.items()
        }
        quarantined_reps = list(zip(verdicts, ray.get(list(verdicts.values())), strict=True))
    timings["stage:lm"] = time.perf_counter() - stage_start

    # Stage 4 -------------------------------------------------------------------------------
    stage_start = time.perf_counter()
    doc_schema = pa.unify_schemas(
        [runner._strip_internal(pq.read_schema(p)) for p in chunk_files] or [DOCUMENT_SCHEMA],
        promote_options="permissive",
    )
    lm_schemas = [pq.read_schema(lm_dir / p.name) for p in chunk_files if (lm_dir / p.name).exists()]
    # One schema per LM work file; unified (the local runner's concatenation repeats the fields when
    # several chunks hold LM scores, which pyarrow refuses to unify).
    lm_schema = pa.unify_schemas(
        [runner._strip_internal(s) for s in lm_schemas] or [pa.schema([])], promote_options="permissive"
    )
    assign_schema = pa.schema(
        (list(dedup.SIGNAL_SCHEMA) if cfg.dedup.enabled else [])
        + (list(campaign.SIGNAL_SCHEMA) if cfg.campaign.enabled and chunk_files else [])
    )
    context_fields = [f for d in context_detectors for f in d.schema]
    produced = pa.schema(list(doc_schema) + list(assign_schema) + list(lm_schema) + context_fields)
    # One schema for clean and quarantine, with or without the LM (pipelines/shard_schema.py).
    out_schema = shard_schema(produced, context_fields)
    if not context_detectors:
        decide = ray.remote(_decide_chunk)
        cfg_ref = ray.put(cfg)
        refs = []
        for pos, path in enumerate(chunk_files):
            # As in the local runner, a copy follows its quarantined original only when the
            # original's chunk was decided before the copy's.
            earlier = [i for c, ids in quarantined_reps if c < pos for i in ids]
            refs.append(
                decide.remote(
                    _chunk_no(path), offsets[pos], str(work), cfg_ref, doc_schema, lm_schema, earlier
                )
            )
        wait_all(refs)
    for name in ("clean", "quarantine"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    clean = ShardWriter(out / "clean", out_schema, cfg.run.shard_rows, cfg.run.row_group_rows)
    dropped = ShardWriter(out / "quarantine", out_schema, cfg.run.shard_rows, cfg.run.row_group_rows)
    tally = runner.Tally()
    lm_signals: list[pa.Table] = []
    quarantined_ids: set[str] = set()  # the local runner's running set (driver-side decisions only)
    for pos, path in enumerate(chunk_files):
        if context_detectors:
            table = decided_table(
                _chunk_no(path),
                offsets[pos],
                str(work),
                cfg,
                doc_schema,
                lm_schema,
                quarantined_ids,
                context_detectors,
            )
        else:
            table = pq.read_table(work / "decided" / path.name)
        runner.write_decided_chunk(table, lm_schema, tally, lm_signals, clean, dropped)
    shards = {"clean": clean.close(), "quarantine": dropped.close()}
    timings["stage:write"] = time.perf_counter() - stage_start

    unreadable = [u.as_dict() for u in state.unreadable]
    extra = {
        "engine": "ray",
        "ray_cpus": cpus,
        "ray_nodes": dict(sorted(scored_on.items())),
        **(extra_report or {}),
    }
    return runner.commit_output(
        out,
        cfg,
        paths=paths,
        input_bytes=input_bytes,
        docs_in=docs_in,
        unreadable=unreadable,
        tally=tally,
        shards=shards,
        lm_signals=lm_signals,
        lm_rows=lm_rows,
        timings=Counter(timings),
        started=started,
        use_lm=use_lm,
        extra_report=extra,
    )
