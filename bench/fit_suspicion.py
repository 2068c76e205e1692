"""Fit the suspicion score's constants on one clean source and print them (filters/suspicion.py).

    python -m bench.fit_suspicion [--per-category 40] [--seed 0]

Source A, the only one the constants see: the Debian handbook in 9 languages (poisonbench's clean
`handbook-*` categories, 360 documents). From it:

* the order-ratio curve: for word counts 150 ... 1500, the median and the robust spread (1.4826 x
  median absolute deviation) of the order ratio of the handbook's documents cut to that many words
  (real text's ratio falls with length: zlib finds more repeated phrases in a longer text);
* the centre (median) and spread of the combiner's log-odds (filters/combiner.py, whose weights were
  fitted on P-BABBLE-X babble, bench/fit_combiner.py).

No poisoned document is read. bench/bench_cascade.py then reports recall with thresholds set on every
clean source (Wikipedia, the Python docs, UDHR and the hard negatives are never fitted on) and on the
LM families poisonbench generates (unigram salad, order-2 Markov chains, tarpit pages), which no
constant here saw.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench import bench_cascade
from poisonguard.filters import combiner, suspicion
from poisonguard.pipelines.config import load_config

GRID = (150, 200, 300, 450, 700, 1000, 1500)


def robust(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    return med, float(np.median(np.abs(values - med)) * 1.4826)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.lm_clean, args.lm_poison = 0, 25
    cfg = load_config(overrides={"cloaking": {"enabled": False}})
    base, _poison, decided = bench_cascade.cheap_decided(args, cfg)
    handbook = {d["id"] for d in base if str(d.get("category") or "").startswith("handbook-")}
    rows = [i for i, doc_id in enumerate(decided.column("id").to_pylist()) if doc_id in handbook]
    fit = decided.take(rows)
    words = [suspicion.words(t or "", cfg.suspicion.max_words) for t in fit.column("text").to_pylist()]
    print(f"fit on {fit.num_rows} Debian handbook documents")
    print("ORDER_CURVE = (  # (words, median order ratio, spread)")
    for n in GRID:
        ratios = np.array([suspicion.order_ratio(w[:n], 1) for w in words if len(w) >= n], dtype=float)
        med, spread = robust(ratios)
        print(f"    ({n}, {med:.4f}, {spread:.4f}),  # {len(ratios)} documents")
    print(")")
    odds = np.array([v for v in combiner.score(fit, cfg.combiner) if v is not None], dtype=float)
    med, spread = robust(odds)
    print(f"combiner_center: {med:.4f}   combiner_scale: {spread:.4f}   ({len(odds)} documents)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
