"""The on-disk dedup index of earlier nights (filters/dedup_prior.py) over many nights: the peak RSS
of each night and the RSS after it, the Python heap, the lookup rate of a night's assign against
the growing index, the index bytes it reads, and the in-memory DedupIndex on the same night at a
size that fits, in the same run.

Synthetic MinHash signatures (128 x uint32, the default "affine32" sketch): random ones, with a
share of near copies of earlier nights' documents (read back from the index on disk) and of
tonight's, and exact copies (same content key); one document in ten on a domain of its own, so the
history's distinct domains grow as a crawl's do. Each night: tonight's documents are assigned
against the index (what the nightly filter does), then the cluster representatives are appended
as the night's segment (what the nightly commit does). Nothing of the earlier nights stays in
memory between nights. The in-memory comparison runs in a forked process, so its memory does not
count in the on-disk figures.

Run: ``python -m bench.bench_prior_index [--nights 28 --per-night 100000 --filter-only]``; prints
Markdown. ``--prefill-docs 2500000 20000000 --nights 3`` measures the nights against long histories:
for each value, a fresh index is first filled with that many earlier documents (random sketches, as
the representatives a night keeps are) through the index's own ``append`` and ``compact``, in the
segment layout that nights of ``--per-night`` documents leave (``dedup_prior.segment_sizes``), then
``--nights`` ordinary nights are measured against it. ``--no-release`` (the index keeps the heap
it freed) and ``--clear-host-cache`` (the bounded host -> domain cache emptied each night) are the
baselines of the RSS figures.
Files go to bench/out/prior_index/ and are deleted at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import multiprocessing
import resource
import shutil
import sys
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from poisonguard.filters import dedup, dedup_prior
from poisonguard.filters.dedup_prior import Docs, NightIndex, PriorIndex, collect_garbage

OUT = Path(__file__).resolve().parent / "out" / "prior_index"
NUM_PERM = 128


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_after_trim_mb() -> float:
    """RSS once glibc has handed its free heap pages back (malloc_trim): what the process holds,
    not what its allocator keeps for later."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return float("nan")
    return rss_mb()


def reset_peak() -> bool:
    """Restart the kernel's peak-RSS count (VmHWM) so that it measures one night (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def night_peak_mb() -> float:
    """The peak RSS since :func:`reset_peak` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def domain_of(doc_id: str) -> str:
    """A synthetic registrable domain, a function of the id (so that the in-memory comparison can
    give earlier documents theirs): one document in ten on a domain of its own (the history's
    distinct domains grow with it, as a crawl's do), the others on 5,000 recurring sites."""
    h = zlib.crc32(doc_id.encode("utf-8"))
    return f"{doc_id}.example" if h % 10 == 0 else f"site{h % 5000}.example"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def night_docs(rng: np.random.Generator, night: int, n: int, prior: PriorIndex, dup: float) -> Docs:
    """``n`` documents: random sketches, ``dup`` of them near copies of earlier documents, ``dup``/2
    near copies of tonight's, 0.5% exact copies of tonight's."""
    sigs = rng.integers(0, 2**32 - 1, size=(n, NUM_PERM), dtype=np.uint32)
    keys = rng.integers(1, 2**63, size=(n, 2), dtype=np.uint64)
    n_old = int(n * dup) if len(prior) else 0
    rows = rng.choice(n, size=n_old + int(n * dup / 2) + n // 200, replace=False)
    old_rows, new_rows, exact_rows = (
        rows[:n_old],
        rows[n_old : n_old + int(n * dup / 2)],
        rows[n_old + int(n * dup / 2) :],
    )
    if n_old:
        sources = np.sort(rng.choice(len(prior), size=n_old, replace=False))
        sigs[old_rows] = prior.sigs(sources)
    sources = rng.integers(0, n, size=len(new_rows))
    sigs[new_rows] = sigs[sources]
    for copy in (old_rows, new_rows):  # a few permutations differ: estimated Jaccard about 0.96
        flip = rng.integers(0, NUM_PERM, size=(len(copy), 5))
        sigs[copy[:, None], flip] = rng.integers(0, 2**32 - 1, size=flip.shape, dtype=np.uint32)
    sources = rng.integers(0, n, size=len(exact_rows))
    sigs[exact_rows], keys[exact_rows] = sigs[sources], keys[sources]
    ids = [f"{night}-{i}" for i in range(n)]
    return Docs(ids, [domain_of(i) for i in ids], keys, sigs)


def random_docs(rng: np.random.Generator, prefix: str, n: int) -> Docs:
    """``n`` documents with random sketches and content keys: what a night keeps (one document per
    cluster) looks like this to the index."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    sigs = rng.integers(0, 2**32 - 1, size=(n, NUM_PERM), dtype=np.uint32)
    keys = rng.integers(1, 2**63, size=(n, 2), dtype=np.uint64)
    return Docs(ids, [domain_of(i) for i in ids], keys, sigs)


def prefill(prior: PriorIndex, total: int, args: Any, rng: np.random.Generator) -> tuple[PriorIndex, str]:
    """An index of ``total`` earlier documents in the layout that nights of ``--per-night`` leave,
    written by ``append`` (chunks of at most ``--prefill-chunk``) and ``compact`` (a segment of
    several chunks is merged from them, as the nights' segments were): the same files, the nightly
    lookups skipped. Returns the index and a line on how it was built."""
    nights = [args.per_night] * (total // args.per_night) + (
        [total % args.per_night] if total % args.per_night else []
    )
    layout = dedup_prior.segment_sizes(nights, args.max_segments)
    start = time.perf_counter()
    appended = merged = 0.0
    for seg, size in enumerate(layout):
        chunks = -(-size // args.prefill_chunk)
        for c in range(chunks):
            n = size // chunks + (1 if c < size % chunks else 0)
            t0 = time.perf_counter()
            manifest = f"prefill{seg:03d}-{c:03d}.json"
            prior = prior.append(random_docs(rng, f"p{seg}.{c}", n), manifest)
            collect_garbage(OUT, [manifest])
            appended += time.perf_counter() - t0
        if chunks > 1:
            t0 = time.perf_counter()
            prior = prior.compact(seg + 1, manifest)
            collect_garbage(OUT, [manifest])
            merged += time.perf_counter() - t0
        print(
            f"prefill: segment {seg + 1}/{len(layout)}, {size:,} documents in {chunks} chunk(s); "
            f"{len(prior):,} in all, {time.perf_counter() - start:.0f} s, RSS {rss_mb():,.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    assert [s.n for s in prior.segments] == layout, "the prefill's layout is not the nights' layout"
    dedup_prior.release_free_heap()
    took, disk = time.perf_counter() - start, folder_bytes(OUT)
    line = (
        f"Prefill of {len(prior):,} earlier documents (the layout of {len(nights)} nights of "
        f"{args.per_night:,}: segments of {', '.join(f'{n / 1e6:.2f}' for n in layout)} M documents): "
        f"{took / 60:.1f} min ({appended / 60:.1f} appending, {merged / 60:.1f} merging), "
        f"{disk / 2**30:.2f} GiB on disk ({disk / len(prior):.0f} bytes a document), "
        f"RSS after {rss_mb():,.0f} MB, peak RSS {night_peak_mb():,.0f} MB."
    )
    return prior, line


def assign_on_disk(prior: PriorIndex, docs: Docs) -> tuple[Any, float, dict[str, int]]:
    """Tonight's columns against the index, the seconds and the index bytes read (by kind of file)."""
    dedup_prior.IO.reset()
    start = time.perf_counter()
    night = NightIndex(prior)
    night.prefetch_ids(docs.ids)
    night.add(docs.ids, docs.domains, [k.tobytes() for k in docs.keys], docs.sigs)
    table = night.assign()
    return table, time.perf_counter() - start, {"all": dedup_prior.IO.bytes_read, **dedup_prior.IO.by_kind}


def _in_memory(prior: PriorIndex, docs: Docs, conn: Any) -> None:
    """In a forked process: the in-memory index loaded with every earlier document, then tonight's."""
    everyone = np.arange(len(prior))
    sigs, ids = prior.sigs(everyone), prior.ids(everyone)
    base = rss_mb()
    start = time.perf_counter()
    index = dedup.DedupIndex(prior.cfg)
    index.add(ids, [domain_of(i) for i in ids], [b""] * len(ids), sigs, prior=True)
    del sigs, ids
    index.add(docs.ids, docs.domains, [k.tobytes() for k in docs.keys], docs.sigs)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    table = index.assign()
    took = time.perf_counter() - start
    conn.send((table, took, loaded, rss_mb(), peak_mb(), base, index.state_bytes()))
    conn.close()


def in_memory(prior: PriorIndex, docs: Docs) -> tuple[Any, ...]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_memory, args=(prior, docs, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return tuple(result)


def one_night(prior: PriorIndex, docs: Docs, night: int, args: Any) -> tuple[PriorIndex, dict, str]:
    """Assign tonight's documents with and without the key filters (same index, same documents),
    append the representatives (then merge past ``--max-segments``); the figures of the night."""
    unfiltered = PriorIndex(OUT, prior.manifest, prior.cfg, args.cache_mb, use_filter=False)
    table, took, read = assign_on_disk(prior, docs)
    figures: dict[str, Any] = {
        "took": took,
        "read": read,
        "segments": len(prior.segments),
        "earlier": len(prior),
    }
    if not args.filter_only:
        plain, figures["took_plain"], figures["read_plain"] = assign_on_disk(unfiltered, docs)
        figures["same"] = plain.equals(table)
        del plain
    clusters = np.array(table.column("dedup_cluster_id").to_pylist(), dtype=object)
    figures["named"] = sum(1 for c in clusters.tolist() if not c.startswith(f"{night}-"))
    text = comparison(prior, docs, table, took) if night == args.memory_night else ""
    reps = np.flatnonzero(clusters == np.array(docs.ids, dtype=object))
    kept = Docs(
        [docs.ids[i] for i in reps.tolist()],
        [docs.domains[i] for i in reps.tolist()],
        docs.keys[reps],
        docs.sigs[reps],
    )
    del table, clusters
    start = time.perf_counter()
    manifest = f"night{night:03d}.json"
    prior = prior.append(kept, manifest).compact(args.max_segments, manifest)
    collect_garbage(OUT, [manifest])
    figures["commit"] = time.perf_counter() - start
    figures["disk"] = folder_bytes(OUT)
    return prior, figures, text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nights", type=int, default=40)
    parser.add_argument("--per-night", type=int, default=50_000)
    parser.add_argument("--dup", type=float, default=0.02, help="share of near copies of earlier documents")
    parser.add_argument("--cache-mb", type=int, default=64)
    parser.add_argument(
        "--max-segments", type=int, default=8, help="dedup.index_max_segments (0: never merge)"
    )
    parser.add_argument("--filter-only", action="store_true", help="skip the lookups without key filters")
    parser.add_argument("--memory-night", type=int, default=3, help="night of the in-memory comparison")
    parser.add_argument("--keep", action="store_true", help="keep bench/out/prior_index")
    parser.add_argument(
        "--prefill-docs",
        type=int,
        nargs="*",
        default=[0],
        help="earlier documents written before the measured nights; several: one fresh index each",
    )
    parser.add_argument(
        "--prefill-chunk", type=int, default=1_000_000, help="documents per append of the prefill"
    )
    parser.add_argument(
        "--no-release",
        action="store_true",
        help="baseline: the index does not hand freed heap back after a night (release_free_heap off)",
    )
    parser.add_argument(
        "--clear-host-cache",
        action="store_true",
        help="diagnostic: empty the bounded host -> registrable domain cache after each night",
    )
    args = parser.parse_args()
    if args.prefill_chunk < args.per_night:
        parser.error("--prefill-chunk must hold a night (--per-night)")
    if args.no_release:
        dedup_prior.release_free_heap = lambda: None
    cfg = dedup.Config()
    rng = np.random.default_rng(20261204)
    rows: list[str] = []
    prefills: list[str] = []
    compare = ""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        for stage, total in enumerate(args.prefill_docs):
            shutil.rmtree(OUT, ignore_errors=True)
            OUT.mkdir(parents=True)
            prior = PriorIndex(OUT, None, cfg, cache_mb=args.cache_mb)
            if total:
                reset_peak()
                prior, line = prefill(prior, total, args, rng)
                prefills.append(line)
                print(line, file=sys.stderr, flush=True)
            for night in range(1, args.nights + 1):
                docs = night_docs(rng, night, args.per_night, prior, args.dup)
                per_night = reset_peak()
                prior, fig, text = one_night(prior, docs, night, args)
                fig["peak"] = night_peak_mb() if per_night else float("nan")  # not the lifetime peak
                compare = compare or (text if stage == 0 else "")
                del docs
                if args.clear_host_cache:
                    dedup._domain_of_host.cache_clear()
                gc.collect()
                rows.append(night_row(night, prior, fig, args))
                print(rows[-1], file=sys.stderr, flush=True)  # progress: a night takes a while
            del prior
    finally:
        if not args.keep:
            shutil.rmtree(OUT, ignore_errors=True)
    wall = time.perf_counter() - began
    bands, band_rows = dedup.lsh_params(cfg)
    print(
        f"{args.nights} nights of {args.per_night:,} synthetic signatures ({NUM_PERM} x uint32, "
        f"{bands} bands x {band_rows} rows); {args.dup:.0%} of each night near copies of earlier "
        f"documents, {args.dup / 2:.0%} of tonight's, 0.5% exact copies; `dedup.index_cache_mb` "
        f"{args.cache_mb}, `dedup.index_max_segments` {args.max_segments}; "
        f"{'freed heap kept (--no-release); ' if args.no_release else ''}"
        f"{'host cache emptied each night; ' if args.clear_host_cache else ''}{wall / 60:.1f} min.\n"
    )
    for line in prefills:
        print(f"- {line}")
    if prefills:
        print()
    print(
        "| night | earlier docs | segments | assign s | MB read (filters / tables / documents) "
        "| assign s, no filter | MB read, no filter "
        "| same columns | commit s | lookup docs/s | clusters named by earlier docs "
        "| peak RSS in the night MB "
        "| RSS after MB | Python heap MB | Arrow MB | index on disk GiB | disk bytes/doc |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()
    before, heap = rss_mb(), tracemalloc.get_traced_memory()[0] / 2**20
    print(
        f"After the last night: RSS {before:,.0f} MB, {rss_after_trim_mb():,.0f} MB once glibc's "
        f"malloc_trim has returned its free heap pages; Python heap (tracemalloc, numpy included) "
        f"{heap:,.0f} MB; peak RSS {peak_mb():,.0f} MB.\n"
    )
    print(compare)


def mb_read(read: dict[str, int]) -> str:
    """MB read: in all, then from key filters / tables (keys, rows, fences) / documents' data."""
    tables = read.get("tables", 0) + read.get("fences", 0)
    parts = (read.get("filters", 0), tables, read.get("documents", 0))
    return f"{read['all'] / 2**20:,.1f} ({' / '.join(f'{p / 2**20:,.1f}' for p in parts)})"


def night_row(night: int, prior: PriorIndex, fig: dict[str, Any], args: Any) -> str:
    """One row of the table: the night's lookups against the index as it was before the night,
    and the process's memory after the night (RSS, what Python's allocator traces, Arrow's pool)."""
    plain = (
        f"{fig['took_plain']:.1f} | {mb_read(fig['read_plain'])} | {'yes' if fig['same'] else 'NO'}"
        if not args.filter_only
        else "- | - | -"
    )
    return (
        f"| {night} | {fig['earlier'] / 1e6:.2f} M | {fig['segments']} | {fig['took']:.1f} | "
        f"{mb_read(fig['read'])} | {plain} | {fig['commit']:.1f} | {args.per_night / fig['took']:,.0f} | "
        f"{fig['named']:,} | {fig['peak']:,.0f} | {rss_mb():,.0f} | "
        f"{tracemalloc.get_traced_memory()[0] / 2**20:,.0f} | {pa.total_allocated_bytes() / 2**20:,.0f} | "
        f"{fig['disk'] / 2**30:,.2f} | {fig['disk'] / len(prior):,.0f} |"
    )


def comparison(prior: PriorIndex, docs: Docs, table: Any, took: float) -> str:
    want, mem_took, loaded, mem_rss, mem_peak, base, state = in_memory(prior, docs)
    same = "identical" if want.equals(table) else "DIFFERENT"
    n = len(docs.ids)
    return (
        f"Same night, same documents, in-memory `DedupIndex` (loaded with the {len(prior):,} earlier "
        f"documents; in a forked process): assign {n / mem_took:,.0f} docs/s ({mem_took:.1f} s, plus "
        f"{loaded:.1f} s to load them), {state / 2**20:,.0f} MB of index state "
        f"({state / (len(prior) + n):.0f} bytes a document), RSS {mem_rss:,.0f} MB after assign. "
        f"On disk: {n / took:,.0f} docs/s ({took:.1f} s), {n / took / (n / mem_took):.2f}x the in-memory "
        f"rate. Columns: {same}.\n"
    )


if __name__ == "__main__":
    main()
