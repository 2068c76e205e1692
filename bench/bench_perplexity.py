"""perplexity detector speed: scored tokens/s against a naive baseline and against this machine's limit.

All three numbers come from the same run on the same documents (real Debian handbook and Wikipedia
pages, ``make bench-data`` first):

* detector: ``PerplexityScorer(Config()).score`` (token budget per document, length-sorted batches,
  vocabulary projection only on real positions, inference mode, all cores);
* naive baseline: float32, one document at a time, the whole document, ``model(ids).logits`` then
  ``cross_entropy`` (what a first script would do);
* machine limit: the best dense matmul rate measured here (float32 and bfloat16, shapes of the model's
  MLP) divided by the model's FLOPs per token (2 x parameters).

Run: ``python -m bench.bench_perplexity [--docs 16] [--naive-docs 4]``; prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import pyarrow as pa

from bench.corpus import MissingData, clean_base
from poisonguard.filters import lm as lm_loader
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
            logits = model(input_ids=ids).logits
            nll = F.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="none")
            float(nll.mean())
            seconds += time.perf_counter() - start
            total += ids.shape[1] - 1
    return total / seconds, total


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=16, help="documents scored by the detector")
    ap.add_argument("--naive-docs", type=int, default=4, help="documents scored by the naive baseline")
    args = ap.parse_args(argv)
    try:
        docs = clean_base(limit_per_category=args.docs // 2, seed=1, only=("handbook-en", "wiki-en"))
    except MissingData as exc:
        print(f"bench_perplexity: {exc}", file=sys.stderr)
        return 2
    cfg = ppl.Config()
    t = time.perf_counter()
    scorer = ppl.PerplexityScorer(cfg)
    load_s = time.perf_counter() - t
    params = sum(p.numel() for p in scorer.lm.model.parameters())
    gflop_per_token = 2 * params / 1e9

    rates = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    best_dtype = max(rates, key=lambda k: rates[k])
    limit = rates[best_dtype] / gflop_per_token

    table = pa.table({"text": [d["text"] for d in docs], "url": [d["url"] for d in docs]})
    scorer.score(table.slice(0, 2))  # warm-up (first-call allocations)
    t = time.perf_counter()
    cols = scorer.score(table)
    det_s = time.perf_counter() - t
    det_tokens = sum(cols[ppl.PREFIX + "scored_tokens"].to_pylist())
    det_rate = det_tokens / det_s

    # Naive baseline on medium-length pages (200-1200 tokens: whole documents, attention cost included,
    # without letting one 10k-token page dominate the run time).
    tok = scorer.lm.tokenizer
    sized = [(len(tok(d["text"], add_special_tokens=False)["input_ids"]), d["text"]) for d in docs]
    naive_texts = [t for n, t in sorted(sized) if 200 <= n <= 1200][: args.naive_docs]
    naive_rate, naive_tokens = naive_tokens_per_s(scorer.lm, naive_texts)

    print(
        f"Model {scorer.lm.name}: {params / 1e6:.1f} M parameters, {gflop_per_token:.3f} GFLOP/token "
        f"(2 x params); detector dtype {scorer.dtype}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{os.cpu_count()} cores; model load {load_s:.1f} s.\n"
    )
    print("| measurement | value |\n|---|---|")
    print(f"| float32 matmul (1024x576 @ 576x1536) | {rates['float32']:.1f} GFLOP/s |")
    print(f"| bfloat16 matmul (same shape) | {rates['bfloat16']:.1f} GFLOP/s |")
    print(f"| machine limit = best matmul ({best_dtype}) / FLOPs per token | {limit:.0f} tokens/s |")
    print(
        f"| detector ({len(docs)} docs, {det_tokens} scored tokens, max_tokens {cfg.max_tokens}) | "
        f"{det_rate:.0f} tokens/s, {len(docs) / det_s:.2f} docs/s |"
    )
    print(
        f"| naive: fp32, batch 1, whole document ({len(naive_texts)} docs, {naive_tokens} tokens) | "
        f"{naive_rate:.0f} tokens/s |"
    )
    print(f"| detector / naive (scored tokens/s) | {det_rate / naive_rate:.2f}x (goal >= 5x) |")
    print(f"| detector / machine limit | {100 * det_rate / limit:.0f}% (goal >= 60%) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
