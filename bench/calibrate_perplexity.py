"""Calibrate the perplexity detector's thresholds on real clean text, then measure recall.

Clean text (``make bench-data`` first): Wikipedia summaries en/fr/es, Debian handbook pages de/ja/ru/en
and the Python 3.11 docs (code-heavy). Poison: bench.generators P-SUDO (plain and HTML-escaped trigger),
P-SUDO-adapt (Markov and unigram payloads) and P-TRAP, all built on the same clean carriers.

Each threshold is set above the clean set's highest value of its signal, by a margin proportional to
how far that maximum lies from the clean median (see :func:`calibrate`); the tables then report the
false-positive rate (with counts) and the recall per family at those thresholds and at the shipped
defaults. Signals are cached per (text, detector settings) so a rerun only re-decides.

Run: ``python -m bench.calibrate_perplexity [--per-category 75] [--poison 50] [--margin 0.25]``;
prints Markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench import generators as gen
from bench.corpus import MissingData, clean_base
from bench.data import cache_dir
from poisonguard.filters import perplexity as ppl

CLEAN_CATEGORIES = (
    "wiki-en",
    "wiki-fr",
    "wiki-es",
    "handbook-de",
    "handbook-ja",
    "handbook-ru",
    "handbook-en",
    "python-docs",
)
# Settings that change the signals (a change invalidates the signal cache).
SIGNALS_VERSION = 3  # bump when filters/perplexity.py computes signals differently
SCORING_KEYS = ("model", "dtype", "max_tokens", "window", "min_segment", "trigger_tokens", "uniform_ratio")


def _settings_key(cfg: ppl.Config) -> str:
    settings: dict[str, Any] = {k: getattr(cfg, k) for k in SCORING_KEYS}
    settings["signals_version"] = SIGNALS_VERSION
    raw = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def score_cached(docs: list[dict[str, Any]], cfg: ppl.Config, store: Path) -> tuple[pa.Table, float, int]:
    """Signals for `docs` (in order); returns (table, seconds spent scoring, tokens scored now)."""
    key = _settings_key(cfg)
    path = store / f"signals-{key}.parquet"
    known: dict[str, dict[str, Any]] = {}
    if path.exists():
        for row in pq.read_table(path).to_pylist():
            known[row["text_sha"]] = row
    shas = [hashlib.sha256(d["text"].encode("utf-8", "surrogatepass")).hexdigest() for d in docs]
    todo = [i for i, s in enumerate(shas) if s not in known]
    seconds, tokens = 0.0, 0
    if todo:
        scorer = ppl.PerplexityScorer(cfg)
        step = 64
        for a in range(0, len(todo), step):
            part = todo[a : a + step]
            batch = pa.table({"text": [docs[i]["text"] for i in part], "url": [docs[i]["url"] for i in part]})
            t = time.perf_counter()
            cols = scorer.score(batch)
            seconds += time.perf_counter() - t
            rows = pa.table(cols).to_pylist()
            for i, row in zip(part, rows, strict=True):
                row["text_sha"] = shas[i]
                known[shas[i]] = row
                tokens += row[ppl.PREFIX + "scored_tokens"] or 0
            print(
                f"  scored {min(a + step, len(todo))}/{len(todo)} ({tokens / max(seconds, 1e-9):.0f} tok/s)",
                file=sys.stderr,
                flush=True,
            )
        store.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(list(known.values())), path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
    rows = [{k: v for k, v in known[s].items() if k != "text_sha"} for s in shas]
    table = pa.Table.from_pylist(rows).append_column("url", pa.array([d["url"] for d in docs], pa.string()))
    return table, seconds, tokens


def _round_up(x: float, step: float) -> float:
    return math.ceil(x / step) * step


def calibrate(clean: pa.Table, base: ppl.Config, margin: float) -> ppl.Config:
    """Thresholds outside the clean distribution (documents with >= min_tokens scored tokens).

    A threshold is the clean maximum plus `margin` times the distance from the clean median to that
    maximum (the rule that fires on one signal alone, a bare change-point, gets twice the margin), rounded
    up. The trap rule's copied-span bound (`repeat_window_nll`) is not calibrated here: it only acts
    together with a window NLL above every clean document's."""
    rows = [r for r in clean.to_pylist() if (r[ppl.PREFIX + "scored_tokens"] or 0) >= base.min_tokens]

    def above(name: str, step: float, k: float = 1.0, cap: float = math.inf) -> float:
        vals = sorted(r[ppl.PREFIX + name] for r in rows if r[ppl.PREFIX + name] is not None)
        hi, med = vals[-1], vals[len(vals) // 2]
        return min(cap, _round_up(hi + k * margin * (hi - med), step))

    return base.model_copy(
        update={
            "gibberish_share": above("uniform_share", 0.05, cap=0.95),
            "changepoint_jump": above("changepoint_jump", 0.25),
            "after_uniform_share": above("after_uniform_share", 0.05, cap=0.95),
            "strong_changepoint_jump": above("changepoint_jump", 0.25, k=2.0),
            "babble_mean_nll": above("mean_nll", 0.25),
            "babble_window_nll": above("max_window_nll", 0.25),
        }
    )


def _flag_rate(signals: pa.Table, cfg: ppl.Config) -> tuple[int, int, dict[str, int]]:
    reasons = ppl.flag(signals, cfg)
    by: dict[str, int] = {}
    for rs in reasons:
        for r in rs:
            by[r] = by.get(r, 0) + 1
    return sum(1 for rs in reasons if rs), len(reasons), by


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-category", type=int, default=75, help="clean documents per category")
    ap.add_argument("--poison", type=int, default=50, help="documents per poison family")
    ap.add_argument("--margin", type=float, default=0.25, help="threshold margin (see calibrate)")
    ap.add_argument("--max-tokens", type=int, default=None, help="override perplexity.max_tokens")
    args = ap.parse_args(argv)
    base = ppl.Config() if args.max_tokens is None else ppl.Config(max_tokens=args.max_tokens)
    try:
        clean_docs = clean_base(limit_per_category=args.per_category, seed=0, only=CLEAN_CATEGORIES)
    except MissingData as exc:
        print(f"calibrate_perplexity: {exc}", file=sys.stderr)
        return 2
    carriers = [d for d in clean_docs if d["category"].startswith("wiki-en")] or clean_docs
    n = args.poison
    families: dict[str, list[dict[str, Any]]] = {
        "P-SUDO": gen.p_sudo(carriers, n=n, seed=0),
        "P-SUDO escaped": gen.p_sudo(carriers, n=max(1, n // 2), seed=0, escaped=True),
        "P-SUDO-adapt markov": gen.p_sudo_adapt(carriers, n=max(1, n // 2), seed=0, mode="markov"),
        "P-SUDO-adapt unigram": gen.p_sudo_adapt(carriers, n=max(1, n // 2), seed=0, mode="unigram"),
        "P-TRAP": gen.p_trap(carriers, n=max(9, n // 2), seed=0),
    }
    store = cache_dir() / "perplexity"
    clean, secs, toks = score_cached(clean_docs, base, store)
    poisoned = {name: score_cached(docs, base, store)[0] for name, docs in families.items()}
    cfg = calibrate(clean, base, args.margin)

    print(
        f"Model: {ppl.Config().model or 'SmolLM2-135M (shipped GGUF)'}, dtype {base.dtype}, "
        f"max_tokens {base.max_tokens}, window {base.window}; "
        f"margin {args.margin} x (clean max - clean median).\n"
    )
    print("Calibrated thresholds (copy into configs/default.yaml and perplexity.Config):\n")
    print("| threshold | value |\n|---|---|")
    for k in (
        "gibberish_share",
        "changepoint_jump",
        "after_uniform_share",
        "strong_changepoint_jump",
        "babble_mean_nll",
        "babble_window_nll",
        "repeat_window_nll",
    ):
        print(f"| {k} | {getattr(cfg, k):.2f} |")
    print("\nClean text (false positives at the calibrated thresholds, and at the shipped defaults):\n")
    print("| category | docs | mean NLL (median) | max window NLL (max) | FP calibrated | FP defaults |")
    print("|---|---|---|---|---|---|")
    cats = [d["category"] for d in clean_docs]
    for cat in [*CLEAN_CATEGORIES, "all"]:
        idx = [i for i, c in enumerate(cats) if cat in (c, "all")]
        if not idx:
            continue
        sub = clean.take(idx)
        means = sorted(v for v in sub.column(ppl.PREFIX + "mean_nll").to_pylist() if v is not None)
        hi = max(
            (v for v in sub.column(ppl.PREFIX + "max_window_nll").to_pylist() if v is not None), default=0
        )
        f_cal, tot, _ = _flag_rate(sub, cfg)
        f_def, _, _ = _flag_rate(sub, ppl.Config())
        med = means[len(means) // 2] if means else float("nan")
        print(
            f"| {cat} | {tot} | {med:.2f} | {hi:.2f} | {f_cal} ({100 * f_cal / tot:.1f}%) | "
            f"{f_def} ({100 * f_def / tot:.1f}%) |"
        )
    print("\nRecall per poison family (calibrated thresholds; shipped defaults):\n")
    print(
        "| family | docs | recall calibrated | recall defaults | reasons (calibrated) | top mined trigger |"
    )
    print("|---|---|---|---|---|---|")
    for name, sig in poisoned.items():
        f_cal, tot, by = _flag_rate(sig, cfg)
        f_def, _, _ = _flag_rate(sig, ppl.Config())
        mined = ppl.mine_triggers(
            pa.concat_tables([clean.select(sig.column_names), sig]), top=1, min_jump=cfg.changepoint_jump
        )
        top = (
            f"`{mined[0]['candidate']}` ({mined[0]['documents']} docs, {mined[0]['hosts']} hosts)"
            if mined
            else "-"
        )
        reasons = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(by.items()))
        print(f"| {name} | {tot} | {f_cal / tot:.2f} | {f_def / tot:.2f} | {reasons} | {top} |")
    if toks:
        print(f"\nScored {toks} clean tokens in {secs:.0f} s ({toks / secs:.0f} tokens/s) this run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
