"""The language model's start-up, scoring and memory: builtin engine against transformers, paired.

    python -m bench.bench_lm_startup [--rounds 3] [--docs 8]

Each measurement is a fresh process (what `poisonguard filter` pays once per run), the two engines
interleaved (builtin, transformers, then transformers, builtin, ...), so a change of the shared
machine's load hits both alike. Each process: imports what the CLI imports, then torch; builds the
default `PerplexityScorer` (the model loaded from its kept dequantised copy, `perplexity.dtype: auto`);
scores one short document (first-call costs), then `--docs` documents of the clean base (every tenth
of bench.corpus.clean_base at 4 per category, seed 0: the default budget's share of that input). It
reports wall and CPU seconds of each phase, resident memory after loading and its peak (VmHWM),
whether transformers was imported, and each document's mean NLL; the NLLs of the two engines are
compared document by document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.poisonbench import md_table

CHILD = r"""
import json, sys, time
def status():
    st = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(st[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}
t0, c0 = time.perf_counter(), time.process_time()
import pyarrow as pa
from poisonguard.pipelines import cli  # what `poisonguard filter` imports before the LM stage
from poisonguard.filters import perplexity as ppl
import torch
t1, c1 = time.perf_counter(), time.process_time()
scorer = ppl.PerplexityScorer(ppl.Config(engine=sys.argv[1]))
t2, c2 = time.perf_counter(), time.process_time()
loaded = status()
texts = json.load(open(sys.argv[2]))
scorer.score(pa.table({"text": ["A short first document to warm the model up."]}))
t3, c3 = time.perf_counter(), time.process_time()
cols = scorer.score(pa.table({"text": texts}))
t4, c4 = time.perf_counter(), time.process_time()
print(json.dumps({
    "engine": scorer.lm.engine, "dtype": scorer.dtype, "import_s": t1 - t0, "import_cpu": c1 - c0,
    "load_s": t2 - t1, "load_cpu": c2 - c1, "first_s": t3 - t2, "score_s": t4 - t3, "score_cpu": c4 - c3,
    "tokens": sum(cols["perplexity_scored_tokens"].to_pylist()),
    "rss_loaded": loaded["VmRSS"], "rss_peak": status()["VmHWM"],
    "transformers": "transformers" in sys.modules, "mean_nll": cols["perplexity_mean_nll"].to_pylist(),
}))
"""


def log(msg: str) -> None:
    print(f"bench_lm_startup: {msg}", file=sys.stderr, flush=True)


def documents(n: int) -> list[str]:
    from bench import corpus

    base = corpus.clean_base(limit_per_category=4, seed=0)
    return [d["text"] for d in base[::10]][:n]


def measure(engine: str, docs_file: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, engine, docs_file], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{engine}: exit {proc.returncode}: {proc.stderr[-800:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def report(runs: dict[str, list[dict[str, Any]]], load: tuple[float, float], args: argparse.Namespace) -> str:
    new, old = runs["auto"], runs["transformers"]
    rows = []
    for label, key, fmt in (
        ("imports (CLI modules, torch), s", "import_s", "{:.2f}"),
        ("model load, s", "load_s", "{:.2f}"),
        ("model load, CPU s", "load_cpu", "{:.2f}"),
        ("first document, s", "first_s", "{:.2f}"),
        (f"scoring {args.docs} documents, s", "score_s", "{:.1f}"),
        (f"scoring {args.docs} documents, CPU s", "score_cpu", "{:.1f}"),
        ("resident after load, MB", "rss_loaded", "{:,.0f}"),
        ("peak resident, MB", "rss_peak", "{:,.0f}"),
    ):
        a, b = _median(new, key), _median(old, key)
        # The fastest of the rounds: the one least slowed by other jobs (times only).
        fastest = (
            f"{min(r[key] for r in new) / min(r[key] for r in old):.2f}x"
            if key.endswith(("_s", "_cpu"))
            else "-"
        )
        rows.append([label, fmt.format(a), fmt.format(b), f"{a / b:.2f}x" if b else "-", fastest])
    diffs = [
        abs(x - y)
        for n, o in zip(new, old, strict=True)
        for x, y in zip(n["mean_nll"], o["mean_nll"], strict=True)
        if x is not None and y is not None
    ]
    tokens = new[0]["tokens"]
    lines = [
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {new[0]['dtype']}; "
        f"{args.rounds} rounds, engines interleaved (each a fresh process); load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after (the machine is shared: read the ratios). Medians; "
        f"{tokens} scored tokens.\n",
        md_table(
            ["phase", "builtin", "transformers", "builtin / transformers", "fastest / fastest"], rows, "lrrrr"
        ),
        f"\ntransformers imported: builtin {sorted({r['transformers'] for r in new})}, transformers "
        f"{sorted({r['transformers'] for r in old})}. Per-document mean NLL, builtin against transformers: "
        f"largest difference {max(diffs):.2e} nats over {len(diffs)} documents x rounds.",
        "\nSeconds per round (builtin / transformers): "
        + "; ".join(
            f"load {n['load_s']:.1f}/{o['load_s']:.1f}, score {n['score_s']:.1f}/{o['score_s']:.1f}"
            for n, o in zip(new, old, strict=True)
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None, help="also write the raw measurements here")
    ap.add_argument("--from-json", type=Path, default=None, help="only print the report of a --json file")
    args = ap.parse_args(argv)
    if args.from_json:
        runs = json.loads(args.from_json.read_text())
        args.rounds = len(runs["auto"])
        print(report(runs, (float("nan"), float("nan")), args))
        return 0
    runs = {"auto": [], "transformers": []}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(documents(args.docs), fh)
        docs_file = fh.name
    load_before = os.getloadavg()[0]
    try:
        for r in range(args.rounds):
            order = ("auto", "transformers") if r % 2 == 0 else ("transformers", "auto")
            for engine in order:
                start = time.perf_counter()
                runs[engine].append(measure(engine, docs_file))
                log(f"round {r + 1} {engine}: {time.perf_counter() - start:.0f} s")
    finally:
        os.unlink(docs_file)
    text = report(runs, (load_before, os.getloadavg()[0]), args)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
