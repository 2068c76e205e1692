"""Calibrate the perplexity detector's thresholds on real clean text, then measure recall.

Clean text (``make bench-data`` first): Wikipedia summaries en/fr/es, Debian handbook pages de/ja/ru/en
and the Python 3.11 docs (code-heavy). Poison: bench.generators P-SUDO (plain and HTML-escaped trigger),
P-SUDO-adapt (Markov and unigram payloads) and P-TRAP, all built on the same clean carriers, and P-TARPIT
(real Markov babble pages). Hard negatives, counted apart and not used to set thresholds: texts that
discuss attacks and benign look-alikes of injection phrases (all of them), the UDHR in many languages and
the Python docs (sampled like the clean set).

A P-SUDO count sweep mixes the first k documents (k = 50, 100, 250; Souly et al. 2025 found about
250 poisoned documents enough whatever the model size) of one P-SUDO set with the clean pages and reports
recall and where the trigger ranks in :func:`perplexity.mine_triggers` over the mixed set.

Each threshold is set above the clean set's highest value of its signal, by a margin proportional to
how far that maximum lies from the clean median (see :func:`calibrate`); the tables then report the
false-positive rate (with counts) and the recall per family at those thresholds and at the shipped
defaults, with a one-sided 95% upper bound on the clean false-positive rate. Signals are cached per
(text, detector settings) so a rerun only re-decides; the context gain has its own cache, so changing its
settings rescores only the documents that can get one.

Calibration and test data never overlap: the clean pages are drawn (seed `--seed`) from the clean
categories above after removing every page of poisonbench's clean base at `--exclude-per-category`
documents per category (seed 0; bench/poisonbench.py, the LM cascade's recall and speed input in
bench/bench_cascade.py take theirs from it), so the thresholds are set on Wikipedia, handbook and Python
docs pages those benchmarks never see. `--dtype` is the weight type the thresholds are for (default:
what `perplexity.dtype: auto` picks here, bfloat16 on CPUs with native bfloat16).

Run: ``python -m bench.calibrate_perplexity [--per-category 75] [--poison 50] [--margin 0.25]
[--sudo-counts 50 100 250] [--dtype bfloat16] [--seed 0] [--exclude-per-category 40]``;
prints Markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
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
HARD_NEGATIVES = ("discusses-attacks", "lookalike-benign")  # all of them
HARD_SAMPLED = ("udhr", "python-docs")  # as many per category as the clean set
SUDO_COUNTS = (50, 100, 250)  # P-SUDO count sweep (Souly et al. 2025: ~250 documents suffice)
# Settings that change the signals (a change invalidates the signal cache).
SIGNALS_VERSION = 3  # bump when filters/perplexity.py computes signals differently
SCORING_KEYS = ("model", "dtype", "max_tokens", "window", "min_segment", "trigger_tokens", "uniform_ratio")
# The context gain (cached apart): its own settings on top of the scoring ones.
GAIN = ppl.PREFIX + "context_gain"
GAIN_VERSION = 1  # bump when filters/perplexity.py computes the context gain differently
GAIN_KEYS = (
    "context_chunk",
    "context_chunks",
    "context_min_position",
    "context_gain_min_nll",
    "context_gain_min_tokens",
    "incoherent_max_nll",
)


def _settings_key(cfg: ppl.Config, gain: bool = False) -> str:
    settings: dict[str, Any] = {k: getattr(cfg, k) for k in SCORING_KEYS}
    settings["signals_version"] = SIGNALS_VERSION
    if gain:
        settings.update({k: getattr(cfg, k) for k in GAIN_KEYS})
        settings["gain_version"] = GAIN_VERSION
    raw = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _load(path: Path) -> dict[str, dict[str, Any]]:
    return {row["text_sha"]: row for row in pq.read_table(path).to_pylist()} if path.exists() else {}


def _save(rows: dict[str, dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows.values())), path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def score_cached(docs: list[dict[str, Any]], cfg: ppl.Config, store: Path) -> tuple[pa.Table, float, int]:
    """Signals for `docs` (in order); returns (table, seconds spent scoring, tokens scored now).

    A document is scored when its signals are not cached, or when its context gain is not cached and
    its cached signals make it a candidate for one (others get a null gain without scoring)."""
    path = store / f"signals-{_settings_key(cfg)}.parquet"
    gain_path = store / f"gain-{_settings_key(cfg, gain=True)}.parquet"
    known, gains = _load(path), _load(gain_path)
    shas = [hashlib.sha256(d["text"].encode("utf-8", "surrogatepass")).hexdigest() for d in docs]
    first = {sha: i for i, sha in reversed(list(enumerate(shas)))}
    todo, gains_added = [], False
    for sha, i in first.items():
        row = known.get(sha)
        if row is None:
            todo.append(i)
        elif sha not in gains:
            mean, n = row[ppl.PREFIX + "mean_nll"], row[ppl.PREFIX + "scored_tokens"]
            if ppl.gain_candidate(mean, n, cfg):
                todo.append(i)
            else:
                gains[sha], gains_added = {"text_sha": sha, GAIN: None}, True
    todo.sort()
    seconds, tokens = 0.0, 0
    if todo:
        scorer = ppl.PerplexityScorer(cfg)
        step = 16
        for a in range(0, len(todo), step):
            part = todo[a : a + step]
            batch = pa.table({"text": [docs[i]["text"] for i in part], "url": [docs[i]["url"] for i in part]})
            t = time.perf_counter()
            cols = scorer.score(batch)
            seconds += time.perf_counter() - t
            rows = pa.table(cols).to_pylist()
            for i, row in zip(part, rows, strict=True):
                gains[shas[i]] = {"text_sha": shas[i], GAIN: row.pop(GAIN)}
                row["text_sha"] = shas[i]
                known.setdefault(shas[i], row)  # signals already cached stay as they were
                tokens += row[ppl.PREFIX + "scored_tokens"] or 0
            print(
                f"  scored {min(a + step, len(todo))}/{len(todo)} ({tokens / max(seconds, 1e-9):.0f} tok/s)",
                file=sys.stderr,
                flush=True,
            )
            _save(known, path)  # after every step: an interrupted run keeps what it scored
            _save(gains, gain_path)
    if todo or gains_added:
        _save(gains, gain_path)
    rows = [{k: v for k, v in known[s].items() if k != "text_sha"} for s in shas]
    table = pa.Table.from_pylist(rows)
    table = table.append_column(GAIN, pa.array([gains[s][GAIN] for s in shas], pa.float64()))
    table = table.append_column("url", pa.array([d["url"] for d in docs], pa.string()))
    return table, seconds, tokens


def held_out_clean(per_category: int, seed: int, exclude_per_category: int) -> list[dict[str, Any]]:
    """`per_category` clean pages of each CLEAN_CATEGORIES category, none of them in poisonbench's
    clean base at `exclude_per_category` per category (seed 0, every category; 0: exclude none)."""
    excluded = {d["text"] for d in clean_base(limit_per_category=exclude_per_category, seed=0)}
    if exclude_per_category <= 0:
        excluded = set()
    out: list[dict[str, Any]] = []
    for cat in CLEAN_CATEGORIES:
        pool = [d for d in clean_base(seed=seed, only=(cat,)) if d["text"] not in excluded]
        rng = random.Random(f"calibrate:{seed}:{cat}")
        out += [pool[i] for i in sorted(rng.sample(range(len(pool)), min(per_category, len(pool))))]
    return out


def _round_up(x: float, step: float) -> float:
    return math.ceil(x / step) * step


def _round_down(x: float, step: float) -> float:
    return math.floor(x / step) * step


def fp_upper_bound(k: int, n: int, alpha: float = 0.05) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound on a rate seen k times in n trials."""
    if n == 0 or k >= n:
        return 1.0

    def cdf(p: float) -> float:  # P(X <= k) for X ~ Binomial(n, p)
        return sum(math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                            + j * math.log(p) + (n - j) * math.log1p(-p)) for j in range(k + 1))  # fmt: skip

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > alpha else (lo, mid)
    return hi


def calibrate(clean: pa.Table, base: ppl.Config, margin: float) -> ppl.Config:
    """Thresholds outside the clean distribution (documents with >= min_tokens scored tokens).

    A threshold is the clean maximum plus `margin` times the distance from the clean median to that
    maximum (the rule that fires on one signal alone, a bare change-point, gets twice the margin), rounded
    up. The context gain flags low values in a band of mean NLL. The band starts at the scoring setting
    `context_gain_min_nll` (above the clean median; documents below it get no gain) and ends like the
    thresholds above, over the clean documents long enough to be candidates (`incoherent_max_nll`, never
    above the scoring one); the gain threshold is the minimum over the clean candidates minus `margin`
    times the distance from that minimum to their median, rounded down. The
    trap rule's copied-span bound (`repeat_window_nll`) is not calibrated here: it only acts together with
    a window NLL above every clean document's."""
    rows = [r for r in clean.to_pylist() if (r[ppl.PREFIX + "scored_tokens"] or 0) >= base.min_tokens]

    def values(name: str) -> list[float]:
        return sorted(r[ppl.PREFIX + name] for r in rows if r.get(ppl.PREFIX + name) is not None)

    def above(name: str, step: float, k: float = 1.0, cap: float = math.inf) -> float:
        vals = values(name)
        hi, med = vals[-1], vals[len(vals) // 2]
        return min(cap, _round_up(hi + k * margin * (hi - med), step))

    # The incoherent rule's band ends above every clean document long enough to be a candidate, and
    # its gain threshold lies below every clean candidate's gain.
    n_min = base.context_gain_min_tokens
    long = sorted(r[ppl.PREFIX + "mean_nll"] for r in rows if r[ppl.PREFIX + "scored_tokens"] >= n_min)
    top = long[-1] + margin * (long[-1] - long[len(long) // 2])
    upper = min(base.incoherent_max_nll, _round_up(top, 0.25))  # no gains were computed above the base's
    gains = sorted(r[GAIN] for r in rows if r.get(GAIN) is not None and r[ppl.PREFIX + "mean_nll"] < upper)
    incoherent = base.incoherent_context_gain
    if gains:
        lo, med = gains[0], gains[len(gains) // 2]
        incoherent = _round_down(lo - margin * (med - lo), 0.05)

    return base.model_copy(
        update={
            "gibberish_share": above("uniform_share", 0.05, cap=0.95),
            "changepoint_jump": above("changepoint_jump", 0.25),
            "after_uniform_share": above("after_uniform_share", 0.05, cap=0.95),
            "strong_changepoint_jump": above("changepoint_jump", 0.25, k=2.0),
            "babble_mean_nll": above("mean_nll", 0.25),
            "babble_window_nll": above("max_window_nll", 0.25),
            "incoherent_max_nll": upper,
            "incoherent_context_gain": incoherent,
        }
    )


def _flag_rate(signals: pa.Table, cfg: ppl.Config) -> tuple[int, int, dict[str, int]]:
    reasons = ppl.flag(signals, cfg)
    by: dict[str, int] = {}
    for rs in reasons:
        for r in rs:
            by[r] = by.get(r, 0) + 1
    return sum(1 for rs in reasons if rs), len(reasons), by


def _gains(sig: pa.Table, cfg: ppl.Config, in_band: bool = True) -> list[float]:
    """Context gains of the documents inside (or, in_band=False, above) the incoherent rule's band."""
    out = []
    for r in sig.to_pylist():
        gain, mean, n = r[GAIN], r[ppl.PREFIX + "mean_nll"], r[ppl.PREFIX + "scored_tokens"]
        if gain is None:
            continue
        if ppl.gain_candidate(mean, n, cfg) if in_band else mean >= cfg.incoherent_max_nll:
            out.append(gain)
    return sorted(out)


def _gain_summary(sig: pa.Table, cfg: ppl.Config) -> str:
    gains = _gains(sig, cfg)
    return f"{len(gains)}, {gains[0]:.2f} / {gains[len(gains) // 2]:.2f}" if gains else "0"


def _mined(cand: dict[str, Any] | None, rank: int | None) -> str:
    if cand is None:
        return "-"
    return f"{rank}: `{cand['candidate']}` ({cand['documents']} docs, {cand['hosts']} hosts)"


def _sudo_sweep(
    carriers: list[dict[str, Any]],
    counts: list[int],
    clean: pa.Table,
    cfg: ppl.Config,
    base: ppl.Config,
    store: Path,
) -> None:
    """P-SUDO count sweep: the first k documents of one P-SUDO set (seed 0, the P-SUDO family's own
    documents first, so those are cached) mixed with the clean pages."""
    docs = gen.p_sudo(carriers, n=max(counts), seed=0)
    sig = score_cached(docs, base, store)[0]
    trigger = gen.SUDO_TRIGGER
    print(
        f"\nP-SUDO count sweep: the first k of {len(docs)} P-SUDO documents mixed with the {clean.num_rows} "
        f"clean pages; recall at the calibrated thresholds and the shipped defaults; `{trigger}`'s rank in "
        f"`mine_triggers` over the mixed set (change-points with a jump >= {cfg.changepoint_jump:.2f}) and "
        "the best other candidate:\n"
    )
    print(
        "| k | poisoned share | recall calibrated | recall defaults "
        f"| `{trigger}` (rank: docs, hosts) | best other candidate (rank: docs, hosts) |"
    )
    print("|---|---|---|---|---|---|")
    for k in counts:
        sub = sig.slice(0, k)
        f_cal, tot, _ = _flag_rate(sub, cfg)
        f_def, _, _ = _flag_rate(sub, ppl.Config())
        mixed = pa.concat_tables([clean.select(sub.column_names), sub])
        mined = ppl.mine_triggers(mixed, top=mixed.num_rows, min_jump=cfg.changepoint_jump)
        rank = next((i for i, m in enumerate(mined, 1) if m["candidate"] == trigger), None)
        other = next(((i, m) for i, m in enumerate(mined, 1) if m["candidate"] != trigger), None)
        hit = _mined(mined[rank - 1], rank) if rank else "not mined"
        print(
            f"| {k} | {100 * tot / mixed.num_rows:.1f}% | {f_cal / tot:.2f} | {f_def / tot:.2f} "
            f"| {hit} | {_mined(other[1], other[0]) if other else '-'} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-category", type=int, default=75, help="clean documents per category")
    ap.add_argument("--poison", type=int, default=50, help="documents per poison family")
    ap.add_argument("--margin", type=float, default=0.25, help="threshold margin (see calibrate)")
    ap.add_argument("--max-tokens", type=int, default=None, help="override perplexity.max_tokens")
    ap.add_argument(
        "--sudo-counts", type=int, nargs="*", default=list(SUDO_COUNTS), help="P-SUDO count sweep (none: off)"
    )
    ap.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "int8"),
        default=None,
        help="weights the thresholds are for (default: what dtype auto picks on this CPU)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the clean calibration sample")
    ap.add_argument(
        "--exclude-per-category",
        type=int,
        default=40,
        help="leave out poisonbench's clean base at this many docs per category (0: none)",
    )
    args = ap.parse_args(argv)
    dtype = args.dtype or ppl.resolve_dtype("auto", "cpu")
    base = ppl.Config(dtype=dtype)
    if args.max_tokens is not None:
        base = base.model_copy(update={"max_tokens": args.max_tokens})
    try:
        clean_docs = held_out_clean(args.per_category, args.seed, args.exclude_per_category)
        hard_docs = clean_base(seed=0, only=HARD_NEGATIVES) + clean_base(
            limit_per_category=args.per_category, seed=0, only=HARD_SAMPLED
        )
        tarpit = gen.p_tarpit(max(1, args.poison // 2), seed=0)
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
        "P-TARPIT": tarpit,
    }
    store = cache_dir() / "perplexity"
    # Context gains for the widest band the calibration can choose (up to the babble rule's mean NLL).
    base = base.model_copy(update={"incoherent_max_nll": base.babble_mean_nll})
    clean, secs, toks = score_cached(clean_docs, base, store)
    hard = score_cached(hard_docs, base, store)[0]
    poisoned = {name: score_cached(docs, base, store)[0] for name, docs in families.items()}
    cfg = calibrate(clean, base, args.margin)

    print(
        f"Model: {ppl.Config().model or 'SmolLM2-135M (shipped GGUF)'}, dtype {base.dtype}, "
        f"max_tokens {base.max_tokens}, window {base.window}; "
        f"margin {args.margin} x (clean max - clean median).\n"
    )
    print(
        f"Context gain (perplexity:incoherent): mean NLL of up to {base.context_chunks} chunks of "
        f"{base.context_chunk} tokens scored alone (those with the highest full-context NLL, starting "
        f">= {base.context_min_position} tokens into their window) minus their full-context NLL; only for "
        f"documents with >= {base.context_gain_min_tokens} scored tokens and a mean NLL from "
        f"{base.context_gain_min_nll} (above the clean median) to below incoherent_max_nll (calibrated on "
        f"the clean documents that long, like the thresholds above); threshold: the lowest clean gain "
        f"minus {args.margin} x (their median - that minimum).\n"
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
        "incoherent_max_nll",
        "incoherent_context_gain",
    ):
        print(f"| {k} | {getattr(cfg, k):.2f} |")
    print("\nClean text (false positives at the calibrated thresholds, and at the shipped defaults):\n")
    print(
        "| category | docs | mean NLL (median) | max window NLL (max) | gain (in band: n, min / median) "
        "| FP calibrated | FP defaults |"
    )
    print("|---|---|---|---|---|---|---|")
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
            f"| {cat} | {tot} | {med:.2f} | {hi:.2f} | {_gain_summary(sub, cfg)} | "
            f"{f_cal} ({100 * f_cal / tot:.1f}%) | {f_def} ({100 * f_def / tot:.1f}%) |"
        )
    f_cal, tot, _ = _flag_rate(clean, cfg)
    f_def, _, _ = _flag_rate(clean, ppl.Config())
    print(
        f"\nClean false-positive rate, one-sided 95% upper bound: {100 * fp_upper_bound(f_cal, tot):.2f}% "
        f"calibrated, {100 * fp_upper_bound(f_def, tot):.2f}% defaults ({tot} documents)."
    )
    print("\nHard negatives (not used for the thresholds):\n")
    print(
        "| category | docs | gain (in band: n, min / median) | low gain above band "
        "| FP calibrated | FP defaults | reasons (calibrated) |"
    )
    print("|---|---|---|---|---|---|---|")
    hard_cats = [d["category"] for d in hard_docs]
    for cat in (*HARD_NEGATIVES, *HARD_SAMPLED, "all"):
        idx = [i for i, c in enumerate(hard_cats) if cat in (c, "all")]
        if not idx:
            continue
        sub = hard.take(idx)
        f_cal, tot, by = _flag_rate(sub, cfg)
        f_def, _, _ = _flag_rate(sub, ppl.Config())
        reasons = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(by.items()))
        kept = sum(1 for g in _gains(sub, cfg, in_band=False) if g <= cfg.incoherent_context_gain)
        print(
            f"| {cat} | {tot} | {_gain_summary(sub, cfg)} | {kept} | {f_cal} ({100 * f_cal / tot:.1f}%) | "
            f"{f_def} ({100 * f_def / tot:.1f}%) | {reasons} |"
        )
    print("\nRecall per poison family (calibrated thresholds; shipped defaults):\n")
    print(
        "| family | docs | recall calibrated | recall defaults | gain (in band: n, min / median) "
        "| reasons (calibrated) | top mined trigger |"
    )
    print("|---|---|---|---|---|---|---|")
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
        print(
            f"| {name} | {tot} | {f_cal / tot:.2f} | {f_def / tot:.2f} | {_gain_summary(sig, cfg)} "
            f"| {reasons} | {top} |"
        )
    if args.sudo_counts:
        _sudo_sweep(carriers, sorted(set(args.sudo_counts)), clean, cfg, base, store)
    if toks:
        print(f"\nScored {toks} clean tokens in {secs:.0f} s ({toks / secs:.0f} tokens/s) this run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
