"""perplexity detector speed: scored tokens/s against a naive baseline and against this machine's limit.

All three numbers come from the same run on the same documents (real Debian handbook and Wikipedia
pages, ``make bench-data`` first):

* detector: ``PerplexityScorer(Config(dtype=...)).score`` in float32 and each of `--dtypes` (int8 by
  default; ``--dtypes bfloat16``) (token budget per document, windows packed into rows, vocabulary
  projection only on real positions, inference mode, all cores), with their signals, perplexity
  verdicts and the combiner's lm-model log-odds compared to the float32 ones;
* naive baseline: float32, one document at a time, the whole document, ``model(ids).logits`` then
  ``cross_entropy`` (what a first script would do), best of `repeats` passes. A cold first pass
  (fresh allocations for the full-vocabulary logits) runs at a quarter of the warm speed; an earlier
  version of this benchmark timed only that pass and overstated the detector's lead;
* machine limit: the best dense matmul rate measured here (float32 and bfloat16, shapes of the model's
  MLP) divided by the model's FLOPs per token (2 x parameters).

Run: ``python -m bench.bench_perplexity [--docs 16] [--naive-docs 4] [--dtypes bfloat16 int8]``; prints
Markdown (``--naive-docs 0``: no naive baseline).
On a GPU: ``python -m bench.bench_perplexity --device cuda`` (see bench/perplexity_gpu.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa

from bench.corpus import MissingData, clean_base
from poisonguard.core import lm as lm_loader
from poisonguard.filters import perplexity as ppl


def matmul_gflops(dtype: Any, rows: int = 1024, seconds: float = 1.5) -> float:
    """Sustained GFLOP/s of a (rows x 576) @ (576 x 1536) matmul, SmolLM2-135M's MLP shape."""
    import torch

    a = torch.randn(rows, 576, dtype=dtype)
    b = torch.randn(576, 1536, dtype=dtype)
    a @ b
    n, start = 0, time.perf_counter()
    while True:
        a @ b
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or (n >= 2 and elapsed > 0.3 and dtype != torch.float32):
            break
    return 2 * rows * 576 * 1536 * n / elapsed / 1e9


def naive_tokens_per_s(loaded: lm_loader.LoadedModel, texts: list[str]) -> tuple[float, int]:
    import torch
    import torch.nn.functional as F

    tok, model = loaded.tokenizer, loaded.model
    total, seconds = 0, 0.0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
            start = time.perf_counter()
            out = model(input_ids=ids)
            logits = getattr(out, "logits", out)  # the builtin engine returns the logits themselves
            nll = F.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="none")
            float(nll.mean())
            seconds += time.perf_counter() - start
            total += ids.shape[1] - 1
    return total / seconds, total


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=24, help="documents scored by the detector")
    ap.add_argument("--naive-docs", type=int, default=6, help="documents scored by the naive baseline")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs per detector (best counts)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the GPU benchmark")
    ap.add_argument("--model", default=None, help="perplexity.model (default: the shipped SmolLM2 GGUF)")
    ap.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "int8"],
        choices=("float32", "bfloat16", "int8"),
        help="CPU: weight types timed and compared with float32 (always run)",
    )
    ap.add_argument("--docs-file", default=None, help="cuda: JSONL(.zst) of {text}; default: clean base")
    ap.add_argument("--passes", type=int, default=4, help="cuda: passes over the documents")
    ap.add_argument("--batch-docs", type=int, default=4096, help="cuda: documents per scored batch")
    ap.add_argument("--compile", action="store_true", help="cuda: perplexity.compile on")
    ap.add_argument("--host-workers", type=int, default=-1, help="cuda: host processes (-1: cores - 2)")
    ap.add_argument("--reference", default=None, help="cuda: CPU float32 signals to compare against")
    ap.add_argument(
        "--write-reference", default=None, help="write CPU float32 signals of the first --docs documents"
    )
    args = ap.parse_args(argv)
    if args.write_reference:
        from bench import perplexity_gpu

        texts = perplexity_gpu.read_docs(args.docs_file) if args.docs_file else perplexity_gpu._clean_texts()
        perplexity_gpu.write_reference(texts, args.write_reference, args.model, args.docs)
        return 0
    if args.device == "cuda":
        from bench import perplexity_gpu

        return perplexity_gpu.run(args)
    try:
        docs = clean_base(limit_per_category=args.docs // 2, seed=1, only=("handbook-en", "wiki-en"))
    except MissingData as exc:
        print(f"bench_perplexity: {exc}", file=sys.stderr)
        return 2
    table = pa.table({"text": [d["text"] for d in docs], "url": [d["url"] for d in docs]})
    scorers: dict[str, ppl.PerplexityScorer] = {}
    load_s: dict[str, float] = {}
    for dtype in dict.fromkeys(["float32", *args.dtypes]):
        t = time.perf_counter()
        scorers[dtype] = ppl.PerplexityScorer(ppl.Config(dtype=dtype))
        load_s[dtype] = time.perf_counter() - t
    default_dtype = ppl.Config().dtype
    fp32 = scorers["float32"]
    params = sum(p.numel() for p in fp32.lm.model.parameters())
    gflop_per_token = 2 * params / 1e9

    rates = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    best_dtype = max(rates, key=lambda k: rates[k])
    limit = rates[best_dtype] / gflop_per_token

    # Each detector scores the same documents `repeats` times, the runs interleaved so that a noisy
    # neighbour slows both alike; the best run counts.
    det_rate: dict[str, float] = {}
    cols: dict[str, dict[str, pa.Array]] = {}
    for s in scorers.values():
        s.score(table.slice(0, 2))  # warm-up (first-call allocations)
    for _ in range(args.repeats):
        for dtype, s in scorers.items():
            t = time.perf_counter()
            cols[dtype] = s.score(table)
            rate = sum(cols[dtype][ppl.PREFIX + "scored_tokens"].to_pylist()) / (time.perf_counter() - t)
            det_rate[dtype] = max(det_rate.get(dtype, 0.0), rate)
    det_tokens = sum(cols["float32"][ppl.PREFIX + "scored_tokens"].to_pylist())

    # Naive baseline on medium-length pages (200-1200 tokens: whole documents, attention cost included,
    # without letting one 10k-token page dominate the run time).
    tok = fp32.lm.tokenizer
    sized = [(len(tok(d["text"], add_special_tokens=False)["input_ids"]), d["text"]) for d in docs]
    naive_texts = [t for n, t in sorted(sized) if 200 <= n <= 1200][: args.naive_docs]
    naive_rate, naive_tokens = (
        max(naive_tokens_per_s(fp32.lm, naive_texts) for _ in range(args.repeats))
        if naive_texts
        else (0.0, 0)
    )

    print(
        f"Model {fp32.lm.name}: {params / 1e6:.1f} M parameters, {gflop_per_token:.3f} GFLOP/token "
        f"(2 x params); torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores; model load "
        + ", ".join(f"{load_s[d]:.1f} s ({d})" for d in load_s)
        + f" (int8 with its calibration pass). Default `perplexity.dtype`: {default_dtype} "
        f"({ppl.resolve_dtype(default_dtype, 'cpu')} here).\n"
    )
    print("| measurement | value |\n|---|---|")
    print(f"| float32 matmul (1024x576 @ 576x1536) | {rates['float32']:.1f} GFLOP/s |")
    print(f"| bfloat16 matmul (same shape) | {rates['bfloat16']:.1f} GFLOP/s |")
    print(f"| machine limit = best matmul ({best_dtype}) / FLOPs per token | {limit:.0f} tokens/s |")
    if naive_texts:
        print(
            f"| naive: fp32, batch 1, whole document ({len(naive_texts)} docs, {naive_tokens} tokens, "
            f"best of {args.repeats}) | "
            f"{naive_rate:.0f} tokens/s |"
        )
    for dtype, rate in det_rate.items():
        print(
            f"| detector, {dtype} ({len(docs)} docs, {det_tokens} scored tokens, best of {args.repeats}) | "
            f"{rate:.0f} tokens/s, {len(docs) * rate / det_tokens:.2f} docs/s |"
        )
        if naive_texts:
            print(f"| detector {dtype} / naive | {rate / naive_rate:.2f}x (goal >= 5x) |")
        print(f"| detector {dtype} / machine limit | {100 * rate / limit:.0f}% (goal >= 60%) |")
    if naive_texts:
        print(
            f"\nThe naive baseline, warm, already runs at {100 * naive_rate / limit:.0f}% of this machine's "
            f"limit: on 2 cores one whole document is a matmul large enough to fill both. Per scored token "
            f"no detector can beat it by more than limit / naive = {limit / naive_rate:.2f}x here, so the "
            "5x goal cannot be met on this machine; it assumed a baseline far below the limit. What the "
            "detector bounds is the cost per document (at most `max_tokens` scored tokens, whatever the "
            "length)."
        )
    for dtype in cols:
        if dtype != "float32":
            print_differences(cols["float32"], cols[dtype], dtype)
    return 0


COMPARED = (
    "mean_nll", "max_window_nll", "min_window_nll", "changepoint_jump", "uniform_share", "context_gain",
    "context_gain_ratio", "sentence_nll_std", "sentence_end_nll", "sentence_start_nll",
)  # fmt: skip


def lm_log_odds(cols: dict[str, pa.Array]) -> list[float]:
    """Per document, the language model columns' part of the combiner's lm-model log-odds (shipped
    weights): what a change of weight type can move in the combiner's verdict."""
    from poisonguard.filters import combiner
    from poisonguard.pipelines.config import load_config

    cfg = load_config().combiner
    out = []
    for row in pa.table(cols).to_pylist():
        parts = combiner.contributions(row, cfg.lm, cfg.clip)
        out.append(sum(v for k, v in parts.items() if k.startswith(ppl.PREFIX)))
    return out


def print_differences(ref: dict[str, pa.Array], other: dict[str, pa.Array], dtype: str) -> None:
    """`other` (weights `dtype`) against float32 on the same documents: signals, flags, combiner."""
    print(f"\n{dtype} against float32 on the same documents (signal differences, nats or shares):\n")
    print("| signal | mean difference | largest difference |\n|---|---|---|")
    for name in COMPARED:
        a = np.array(ref[ppl.PREFIX + name].to_pylist(), dtype=float)
        b = np.array(other[ppl.PREFIX + name].to_pylist(), dtype=float)
        if np.isnan(b - a).all():
            continue
        print(f"| {name} | {np.nanmean(b - a):+.3f} | {np.nanmax(np.abs(b - a)):.3f} |")
    delta = np.subtract(lm_log_odds(other), lm_log_odds(ref))
    print(
        f"| combiner lm model, the LM columns' log-odds | {delta.mean():+.3f} | {np.abs(delta).max():.3f} |"
    )
    cfg = ppl.Config()
    flips = sum(
        bool(a) != bool(b)
        for a, b in zip(ppl.flag(pa.table(ref), cfg), ppl.flag(pa.table(other), cfg), strict=True)
    )
    print(f"\nDocuments whose perplexity verdict differs (shipped thresholds): {flips} of {len(delta)}.")


if __name__ == "__main__":
    raise SystemExit(main())
