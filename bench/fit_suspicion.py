"""Fit the suspicion score's constants on one clean source and print them (filters/suspicion.py).

    python -m bench.fit_suspicion [--per-category 40] [--seed 0] [--babble 60]

Source A, the only one the constants see: the Debian handbook in 9 languages (poisonbench's clean
`handbook-*` categories, 360 documents). From it, the curves of both signals: for word counts 100 ... 1500,
the median and the robust spread (1.4826 x median absolute deviation) of the local repeat of the
handbook's documents cut to that many words (a longer text reuses more of its words), and the same for
the order ratio (real text's falls with length: zlib finds more repeated phrases in a longer text);
and the centre (median) and spread of the cheap combiner's log-odds (filters/combiner.py, whose
weights were fitted on P-BABBLE-X babble, bench/fit_combiner.py), which ranks long documents too.

No poisoned document is read by the fit. bench/bench_cascade.py then reports recall with thresholds
set on every clean source (Wikipedia, the Python docs, UDHR and the hard negatives are never fitted
on) and on the LM families poisonbench generates (unigram salad, order-2 Markov chains, tarpit pages),
which no constant here saw.

`--babble N` adds a check on generators that are not poisonbench's: N pages of P-BABBLE-X babble per
genre (bench/babble_gen.py: word chains of order 1-3 trained on the train half of five real corpora)
against N clean pages of the same genre's held half, AUROC of the local repeat (low = babble) and of
the zlib order ratio, both raw (the pages are 700-3,000 characters).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from bench import bench_cascade
from bench.poisonbench import auroc
from poisonguard.filters import combiner, suspicion
from poisonguard.pipelines.config import load_config

GRID = (100, 150, 200, 300, 450, 700, 1000, 1500)


def robust(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    return med, float(np.median(np.abs(values - med)) * 1.4826)


def babble_check(n: int, max_words: int) -> None:
    from bench import babble_corpora, babble_gen

    print(f"P-BABBLE-X check ({n} babble and {n} clean pages per genre, pages of 100 words or more):")
    for genre in babble_corpora.GENRES:
        sides = []
        for docs in (babble_gen.clean_genre_docs(genre, n), babble_gen.p_babble_x(genre, n)):
            tokens = [suspicion.words(d["text"], max_words) for d in docs]
            tokens = [t for t in tokens if len(t) >= 100]
            repeat = np.array([-(suspicion.local_repeat(t, 1) or 0.0) for t in tokens])
            sides.append((repeat, np.array([suspicion.order_ratio(t, 1) for t in tokens])))
        (c_rep, c_ord), (b_rep, b_ord) = sides
        print(
            f"  {genre:8s} clean {len(c_rep):3d} babble {len(b_rep):3d}  AUROC local repeat "
            f"{auroc(c_rep, b_rep):.3f}  order ratio {auroc(c_ord, b_ord):.3f}"
        )


def print_curve(
    name: str, what: str, signal: Callable[[list[str], int], float | None], words: list[list[str]]
) -> None:
    """A curve as Python source: per length of GRID, the median and spread of `signal` over the
    documents' first that many words (documents it gives no value are left out)."""
    print(f"{name} = (  # (words, {what}, spread)")
    for n in GRID:
        found = [signal(w[:n], 1) for w in words if len(w) >= n]
        values = np.array([v for v in found if v is not None], dtype=float)
        med, spread = robust(values)
        print(f"    ({n}, {med:.4f}, {spread:.4f}),  # {len(values)} documents")
    print(")")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--babble", type=int, default=0, help="P-BABBLE-X pages per genre to check on (0: none)")
    args = ap.parse_args(argv)
    args.lm_clean, args.lm_poison = 0, 25
    cfg = load_config(overrides={"cloaking": {"enabled": False}})
    base, _poison, decided = bench_cascade.cheap_decided(args, cfg)
    handbook = {d["id"] for d in base if str(d.get("category") or "").startswith("handbook-")}
    rows = [i for i, doc_id in enumerate(decided.column("id").to_pylist()) if doc_id in handbook]
    fit = decided.take(rows)
    words = [suspicion.words(t or "", cfg.suspicion.max_words) for t in fit.column("text").to_pylist()]
    print(f"fit on {fit.num_rows} Debian handbook documents")
    print_curve("REPEAT_CURVE", "median local repeat", suspicion.local_repeat, words)
    print_curve("ORDER_CURVE", "median order ratio", suspicion.order_ratio, words)
    odds = np.array([v for v in combiner.score(fit, cfg.combiner) if v is not None], dtype=float)
    med, spread = robust(odds)
    print(f"combiner_center: {med:.4f}   combiner_scale: {spread:.4f}   ({len(odds)} documents)")
    if args.babble:
        babble_check(args.babble, cfg.suspicion.max_words)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
