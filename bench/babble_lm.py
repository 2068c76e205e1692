"""Per-token LM scores of the P-BABBLE-X sample, cached on disk (the LM is the slow part).

    python -m bench.babble_lm [--per-genre 60] [--per-category 4] [--seed 0] [--max-tokens N]

Scores the sample of :func:`bench.babble_bench.sample` (and P-ALNUM) with the default model and keeps,
per document, the raw material of every perplexity signal: the per-token NLLs with their character
offsets and scored-window numbers, and the short- and full-context NLLs of the context-gain chunks
(measured for every document with enough tokens, not only those in the `perplexity:incoherent` band).
:func:`signal_table` turns them into the detector's signal columns with the detector's own functions,
so a new signal derived from the NLLs needs no new LM run.

The cache is a folder of parquet parts under ``bench/out/babble_tokens-<key>/`` (one per batch of 16
documents, written atomically), keyed by the perplexity settings that change scores; an interrupted
run resumes where it stopped. Documents are scored in a shuffled order, so a partial cache covers
every genre and category.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

OUT_DIR = Path(__file__).resolve().parent / "out"
BATCH = 16


def scoring_config(max_tokens: int | None = None, threads: int | None = None) -> Any:
    """The default config's perplexity settings; `max_tokens` / `threads` override its own (a cache
    per cap, so two caps can be compared on one sample)."""
    from poisonguard.pipelines.config import load_config

    cfg = load_config().perplexity
    update = {k: v for k, v in (("max_tokens", max_tokens), ("threads", threads)) if v is not None}
    return cfg.model_copy(update=update) if update else cfg


# the settings that change a token row (the signal thresholds do not: signals are derived afterwards)
KEY_SETTINGS = (
    "model",
    "dtype",
    "max_tokens",
    "context_chunk",
    "context_chunks",
    "context_min_position",
    "context_gain_min_tokens",
)


def cache_dir(cfg: Any) -> Path:
    settings = json.dumps({k: getattr(cfg, k) for k in KEY_SETTINGS}, sort_keys=True)
    return OUT_DIR / f"babble_tokens-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def cached(cfg: Any) -> dict[str, dict[str, Any]]:
    """text key -> the cached token row, for every part already written."""
    folder = cache_dir(cfg)
    if not folder.exists():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    for part in sorted(folder.glob("part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            rows[row["key"]] = row
    return rows


def _token_rows(scorer: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from poisonguard.filters import perplexity

    prep = scorer.prepare(pa.table({"text": [d["text"] for d in batch]}))
    per_text = scorer._per_text_nll(prep.plans)
    chunks = scorer.context_chunk_nlls(prep.plans, per_text, perplexity.joined_nll(per_text), every=True)
    prefixed = scorer.lm.prefix_id is not None
    rows = []
    for d in batch:
        u = prep.distinct[d["text"]]
        offsets, segs = perplexity.scored_offsets(prep.plans[u], prefixed)
        nll = np.concatenate(per_text[u]) if per_text[u] else np.zeros(0)
        short, full = chunks.get(u, (np.zeros(0), np.zeros(0)))
        rows.append(
            {
                "key": text_key(d["text"]),
                "nll": nll.astype(np.float32).tolist(),
                "start": offsets[:, 0].astype(np.int32).tolist(),
                "end": offsets[:, 1].astype(np.int32).tolist(),
                "seg": segs.astype(np.int16).tolist(),
                "gain_short": short.astype(np.float32).tolist(),
                "gain_full": full.astype(np.float32).tolist(),
            }
        )
    return rows


def score_tokens(docs: list[dict[str, Any]], seed: int = 0, cfg: Any = None) -> dict[str, dict[str, Any]]:
    """Token rows for `docs`: the cached ones, the others scored now (and cached, batch by batch)."""
    from poisonguard.filters import perplexity

    cfg = cfg if cfg is not None else scoring_config()
    have = cached(cfg)
    todo = [d for d in docs if text_key(d["text"]) not in have]
    if not todo:
        return have
    random.Random(seed).shuffle(todo)
    folder = cache_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    scorer = perplexity.PerplexityScorer(cfg)
    start = time.perf_counter()
    for lo in range(0, len(todo), BATCH):
        rows = _token_rows(scorer, todo[lo : lo + BATCH])
        part = folder / f"part-{int(time.time() * 1000)}-{lo:06d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), part.with_suffix(".tmp"))
        part.with_suffix(".tmp").replace(part)
        for r in rows:
            have[r["key"]] = r
        done = min(lo + BATCH, len(todo))
        print(f"babble_lm: {done}/{len(todo)} docs, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return have


def signal_table(docs: list[dict[str, Any]], rows: dict[str, dict[str, Any]], cfg: Any = None) -> pa.Table:
    """id + the perplexity detector's signal columns for the docs that have a token row."""
    from poisonguard.filters import perplexity

    cfg = cfg if cfg is not None else scoring_config()
    ln_vocab = float(np.log(49152))  # SmolLM2's vocabulary (uniform_share only; not a combiner term)
    ids, results = [], []
    for d in docs:
        row = rows.get(text_key(d["text"]))
        if row is None:
            continue
        offsets = np.stack([np.asarray(row["start"]), np.asarray(row["end"])], axis=1).reshape(-1, 2)
        nll = np.asarray(row["nll"], dtype=np.float64)
        out = perplexity.signals_from_nll(d["text"], nll, offsets, np.asarray(row["seg"]), cfg, ln_vocab)
        if row["gain_short"]:
            out.update(perplexity.gain_signals(np.asarray(row["gain_short"]), np.asarray(row["gain_full"])))
        ids.append(d["id"])
        results.append(out)
    cols = {"id": pa.array(ids, pa.string())}
    for name, typ in perplexity.column_types().items():
        cols[perplexity.PREFIX + name] = pa.array([r.get(name) for r in results], typ)
    return pa.table(cols)


def bench_docs(per_genre: int, per_category: int, alnum: int, seed: int) -> list[dict[str, Any]]:
    from bench import babble_bench, babble_gen

    return babble_bench.sample(per_genre, per_category, seed) + babble_gen.p_alnum_salad(alnum, seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-genre", type=int, default=60)
    ap.add_argument("--per-category", type=int, default=4)
    ap.add_argument("--alnum", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="score at most this many new documents")
    ap.add_argument("--max-tokens", type=int, default=None, help="override perplexity.max_tokens")
    ap.add_argument("--threads", type=int, default=None, help="override perplexity.threads")
    args = ap.parse_args(argv)
    cfg = scoring_config(args.max_tokens, args.threads)
    docs = bench_docs(args.per_genre, args.per_category, args.alnum, args.seed)
    have = cached(cfg)
    todo = [d for d in docs if text_key(d["text"]) not in have]
    if args.limit:
        random.Random(args.seed).shuffle(todo)
        docs = [d for d in docs if text_key(d["text"]) in have] + todo[: args.limit]
    rows = score_tokens(docs, args.seed, cfg)
    print(f"{len(rows)} docs scored -> {cache_dir(cfg)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
