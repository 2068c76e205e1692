"""perplexity detector on a CUDA GPU: scored tokens/s against the GPU's limit, NLLs against CPU float32.

Run through ``python -m bench.bench_perplexity --device cuda [--docs-file FILE] [--reference FILE]``.
Everything comes from one run on one GPU:

* GPU limit: the best of a large square bf16 matmul and one of the model's own shapes (TFLOP/s), divided
  by the model's FLOPs per scored token (2 x parameters);
* detector: ``PerplexityScorer(Config(device="cuda", dtype="bfloat16")).score_stream`` end to end (text
  in, signal columns out: tokenising and the per-document signals in `--host-workers` processes while
  the GPU scores the batch between them; one window per row, passes sized to the GPU's free memory,
  the output layer in chunks);
* model only: the same forward passes over windows tokenised beforehand, the part of the detector
  that runs on the GPU;
* agreement: `perplexity_mean_nll` and `perplexity_max_window_nll` of the first documents against the
  same documents scored by float32 on a CPU (`--reference`, written by ``--write-reference`` there).

`--docs-file` is a JSONL file (optionally .zst) of {"text": ...}; without it the clean base of
``make bench-data`` is used. The documents are scored `--passes` times (each pass distinct batches),
so that the run lasts long enough to time a GPU.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from poisonguard.filters import perplexity as ppl

SIGNALS_COMPARED = ("mean_nll", "max_window_nll")


def read_docs(path: str) -> list[str]:
    raw = Path(path).read_bytes()
    if path.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    return [json.loads(line)["text"] for line in raw.decode("utf-8").splitlines() if line.strip()]


def write_reference(texts: list[str], path: str, model: str | None, n: int) -> None:
    """CPU float32 signals of the first `n` documents (run on a machine without a GPU)."""
    scorer = ppl.PerplexityScorer(ppl.Config(model=model, device="cpu", dtype="float32"))
    cols = scorer.score(pa.table({"text": texts[:n]}))
    ref = {name: cols[ppl.PREFIX + name].to_pylist() for name in SIGNALS_COMPARED}
    Path(path).write_text(json.dumps({"docs": n, "signals": ref}))


def _bf16_tflops(shape: tuple[int, int, int], repeats: int = 20) -> float:
    import torch

    m, k, n = shape
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e12


def _batches(texts: list[str], size: int, passes: int) -> Iterator[pa.Table]:
    # Each pass shifts the texts by a few characters so no batch repeats an earlier text exactly
    # (identical texts in a batch are scored once, which would flatter the rate).
    for p in range(passes):
        shifted = [t[p:] if len(t) > p + 200 else t for t in texts]
        for a in range(0, len(shifted), size):
            yield pa.table({"text": shifted[a : a + size]})


def run(args: Any) -> int:
    import torch

    if not torch.cuda.is_available():
        print("bench_perplexity --device cuda: torch sees no CUDA GPU here")
        return 2
    texts = read_docs(args.docs_file) if args.docs_file else _clean_texts()
    name = torch.cuda.get_device_name(0)
    t = time.perf_counter()
    scorer = ppl.PerplexityScorer(
        ppl.Config(model=args.model, device="cuda", dtype="bfloat16", compile=args.compile)
    )
    load_s = time.perf_counter() - t
    params = sum(p.numel() for p in scorer.lm.model.parameters())
    cfg = scorer.lm.model.config
    flop_per_token = 2 * params
    square = _bf16_tflops((8192, 8192, 8192))
    model_shape = _bf16_tflops((65536, cfg.hidden_size, cfg.intermediate_size))
    limit = max(square, model_shape) * 1e12 / flop_per_token

    workers = args.host_workers if args.host_workers >= 0 else max(1, (os.cpu_count() or 2) - 2)
    # Warm-up: first-call allocations, kernel selection, compilation (perplexity.compile).
    t = time.perf_counter()
    list(scorer.score_stream(_batches(texts[: args.batch_docs], args.batch_docs, 1)))
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t

    # Detector end to end.
    scored, docs = 0, 0
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for cols in scorer.score_stream(_batches(texts, args.batch_docs, args.passes), workers=workers):
        scored += sum(v or 0 for v in cols[ppl.PREFIX + "scored_tokens"].to_pylist())
        docs += len(cols[ppl.PREFIX + "scored_tokens"])
    det_s = time.perf_counter() - start
    peak_gib = torch.cuda.max_memory_allocated() / 2**30

    # Model only: the packed forward passes over pre-tokenised windows.
    prep = scorer.prepare(pa.table({"text": texts}))
    windows = [w for plan in prep.plans for w in plan.ids]
    scorer._nll(windows[:2000])
    torch.cuda.synchronize()
    start = time.perf_counter()
    scorer._nll(windows)
    torch.cuda.synchronize()
    model_s = time.perf_counter() - start
    model_tokens = sum(len(w) for w in windows)
    row_len = ppl.min_row_len(scorer.cfg)
    per_pass, _ = scorer._pass_shape(row_len)

    print(
        f"GPU {name}, torch {torch.__version__}; model {scorer.lm.name}: {params / 1e6:.1f} M parameters, "
        f"{flop_per_token / 1e9:.3f} GFLOP/token (2 x params), bfloat16, attention "
        f"`{getattr(cfg, '_attn_implementation', '?')}`, compiled: {scorer.compiled}; load {load_s:.1f} s, "
        f"warm-up {warm_s:.1f} s; {len(texts)} documents x "
        f"{args.passes} passes in batches of {args.batch_docs}; {per_pass} rows of {row_len} "
        f"tokens per forward pass at most; host work in {workers} worker processes.\n"
    )
    print("| measurement | value |\n|---|---|")
    print(f"| bf16 matmul 8192x8192x8192 | {square:.0f} TFLOP/s |")
    mlp = f"65536x{cfg.hidden_size}x{cfg.intermediate_size}"
    print(f"| bf16 matmul {mlp} (MLP shape) | {model_shape:.0f} TFLOP/s |")
    print(f"| GPU limit = best matmul / FLOPs per token | {limit / 1e6:.2f} M tokens/s |")
    print(
        f"| detector end to end ({docs} docs, {scored} scored tokens, {det_s:.1f} s) | "
        f"{scored / det_s / 1e6:.3f} M tokens/s, {docs / det_s:.0f} docs/s, "
        f"{100 * scored / det_s / limit:.0f}% of limit (goal >= 1 M tokens/s) |"
    )
    print(
        f"| model only, packed passes ({len(windows)} windows, {model_tokens} tokens) | "
        f"{model_tokens / model_s / 1e6:.3f} M tokens/s, "
        f"{100 * model_tokens / model_s / limit:.0f}% of limit |"
    )
    print(f"| peak GPU memory (detector) | {peak_gib:.1f} GiB |")
    if args.reference:
        _compare(scorer, texts, args.reference)
    return 0


def _compare(scorer: ppl.PerplexityScorer, texts: list[str], reference: str) -> None:
    ref = json.loads(Path(reference).read_text())
    n = ref["docs"]
    cols = scorer.score(pa.table({"text": texts[:n]}))
    print(f"\nbfloat16 on the GPU against float32 on a CPU, the same {n} documents (nats per token):\n")
    print("| signal | mean difference | largest difference |\n|---|---|---|")
    for name in SIGNALS_COMPARED:
        a = np.array(ref["signals"][name], dtype=float)
        b = np.array(cols[ppl.PREFIX + name].to_pylist(), dtype=float)
        print(f"| {name} | {np.nanmean(b - a):+.4f} | {np.nanmax(np.abs(b - a)):.4f} |")


def _clean_texts() -> list[str]:
    from bench.corpus import clean_base

    return [d["text"] for d in clean_base(seed=1)]
