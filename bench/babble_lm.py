"""LM signal columns for the P-BABBLE-X sample, cached on disk (the LM is the slow part).

    python -m bench.babble_lm [--per-genre 24] [--per-category 4] [--seed 0]

Scores the sample of :func:`bench.babble_bench.sample` with the perplexity detector, with the context
gain measured for every document long enough (not only those in the shipped candidate band), and
writes ``bench/out/babble_lm-<per-genre>-<per-category>-<seed>.parquet`` (id + perplexity columns).
A second run with the same arguments reads the file instead of scoring.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUT_DIR = Path(__file__).resolve().parent / "out"


def cache_path(per_genre: int, per_category: int, seed: int) -> Path:
    return OUT_DIR / f"babble_lm-{per_genre}-{per_category}-{seed}.parquet"


def lm_columns(docs: list[dict], per_genre: int, per_category: int, seed: int) -> pa.Table:
    """id + perplexity_* columns for `docs`, from the cache or scored now (and cached)."""
    path = cache_path(per_genre, per_category, seed)
    if path.exists():
        table = pq.read_table(path)
        have = set(table.column("id").to_pylist())
        if all(d["id"] in have for d in docs):
            return table
    from poisonguard.filters import perplexity
    from poisonguard.pipelines.config import load_config

    cfg = load_config().perplexity.model_copy(
        update={"context_gain_min_nll": 0.0, "incoherent_max_nll": 1e9, "context_gain_min_tokens": 96}
    )
    scorer = perplexity.PerplexityScorer(cfg)
    batch = pa.table(
        {
            "id": [d["id"] for d in docs],
            "text": [d["text"] for d in docs],
            "url": [d.get("url") for d in docs],
        }
    )
    cols: dict[str, list] = {}
    start = time.perf_counter()
    for lo in range(0, batch.num_rows, 16):
        part = scorer.score(batch.slice(lo, 16))
        for name, arr in part.items():
            cols.setdefault(name, []).extend(arr.to_pylist())
        print(
            f"babble_lm: {lo + 16}/{batch.num_rows} docs, {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
    table = pa.table({"id": batch.column("id"), **{k: pa.array(v) for k, v in cols.items()}})
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return table


def main(argv: list[str] | None = None) -> int:
    from bench import babble_bench

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-genre", type=int, default=24)
    ap.add_argument("--per-category", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    docs = babble_bench.sample(args.per_genre, args.per_category, args.seed)
    table = lm_columns(docs, args.per_genre, args.per_category, args.seed)
    print(f"{table.num_rows} docs -> {cache_path(args.per_genre, args.per_category, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
