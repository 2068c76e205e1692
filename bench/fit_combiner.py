"""Fit the combiner (filters/combiner.py) by the cross-source protocol and report held-out figures.

    python -m bench.fit_combiner [--per-genre 60] [--per-category 40] [--seed 0] [--lm]

Data (bench/babble_bench.py): P-BABBLE-X babble from the chains of five genres (Jane Austen, Brown
fiction, Brown press, Python docs, mailing-list posts), clean held-out prose of the same genres,
poetry, and the clean base; plus P-ALNUM (issue 13 item 6's example), which is never used for fitting.
Clean documents are split in two halves by a hash of their id: the fit half and the test half.

* cross-source ("leave one genre out"): for each genre G, fit on the babble of the other genres and
  the clean fit half; threshold = the fit-clean score that lets `fp` of the fit half through; report
  recall on G's babble and the false-positive rate on the clean test half;
* in-source: fit on the even-numbered babble of all genres, test on the odd-numbered ones;
* shipped: fit on all genres' babble and the clean fit half; its terms (paste into
  configs/default.yaml) and its recall on P-ALNUM and false positives on the clean test half.

Cheap signal columns are cached under bench/out/ (`--lm` adds the perplexity columns of the cached LM
sample of bench/babble_lm.py and reports on that sample only).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import babble_bench, babble_corpora, babble_gen

OUT_DIR = Path(__file__).resolve().parent / "out"
CHEAP_FEATURES = (
    "coherence_topic_reuse",
    "coherence_far_reuse",
    "coherence_type_ratio",
    "coherence_entity_reuse",
    "coherence_quote_imbalance",
    "coherence_alnum_mix_share",
    "language_confidence",
)
LM_FEATURES = ("perplexity_mean_nll", "perplexity_context_gain", "perplexity_changepoint_jump")


def log(msg: str) -> None:
    print(f"fit_combiner: {msg}", file=sys.stderr, flush=True)


def half(doc_id: str) -> str:
    return "fit" if hashlib.sha256(doc_id.encode()).digest()[0] % 2 == 0 else "test"


def signal_table(docs: list[dict[str, Any]], cache: Path) -> pa.Table:
    """Cheap stages' columns for `docs` (the combiner off), from the cache when it holds them all."""
    if cache.exists():
        table = pq.read_table(cache)
        if set(table.column("id").to_pylist()) >= {d["id"] for d in docs}:
            return table
    from bench.poisonbench import to_table
    from poisonguard.pipelines.config import load_config
    from poisonguard.pipelines.runner import score_documents

    cfg = load_config(overrides={"cloaking": {"enabled": False}, "combiner": {"enabled": False}})
    log(f"scoring {len(docs)} docs (cheap stages)")
    decided = score_documents(to_table(docs), cfg, use_lm=False)
    keep = [
        c
        for c in decided.column_names
        if c == "id" or c.startswith(("coherence_", "language_", "repetition_"))
    ]
    table = decided.select(keep)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, cache.with_suffix(".tmp"))
    cache.with_suffix(".tmp").replace(cache)
    return table


def matrix(table: pa.Table, ids: list[str], features: tuple[str, ...]) -> np.ndarray:
    row = {i: k for k, i in enumerate(table.column("id").to_pylist())}
    cols = []
    for name in features:
        values = table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
        cols.append([np.nan if values[row[i]] is None else float(values[row[i]]) for i in ids])
    return np.array(cols, dtype=float).T


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, clip: float = 4.0) -> dict[str, Any]:
    """Logistic regression (Newton steps, L2, classes weighted equally) on standardised columns.
    Centre: the clean median; scale: the clean interquartile range / 1.35 (a robust std), at least a
    quarter of the column's overall std."""
    clean = x[y == 0]
    center = np.nanmedian(clean, axis=0)
    q75, q25 = np.nanpercentile(clean, 75, axis=0), np.nanpercentile(clean, 25, axis=0)
    # a column constant on most clean docs (quote imbalance: 0) gets a quarter of its overall std
    scale = np.maximum((q75 - q25) / 1.35, np.maximum(0.25 * np.nanstd(x, axis=0), 1e-3))
    z = standardise(x, center, scale, clip)
    a = np.hstack([np.ones((len(z), 1)), z])
    sw = np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum())) * len(y)
    w = np.zeros(a.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(a @ w)))
        grad = a.T @ (sw * (p - y)) + l2 * np.r_[0, w[1:]]
        hess = (a * (sw * p * (1 - p))[:, None]).T @ a + l2 * np.diag(np.r_[0, np.ones(len(w) - 1)])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return {"center": center, "scale": scale, "bias": float(w[0]), "weights": w[1:], "clip": clip}


def standardise(x: np.ndarray, center: np.ndarray, scale: np.ndarray, clip: float) -> np.ndarray:
    z = np.clip((x - center) / scale, -clip, clip)
    return np.where(np.isnan(z), 0.0, z)


def log_odds(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return model["bias"] + standardise(x, model["center"], model["scale"], model["clip"]) @ model["weights"]


def threshold_for(clean_scores: np.ndarray, fp: float) -> float:
    """The lowest threshold at which at most `fp` of these clean scores reach it (score >= t)."""
    ordered = np.sort(clean_scores)[::-1]
    allowed = int(np.floor(fp * len(ordered)))
    return float(ordered[allowed] + 1e-6) if allowed < len(ordered) else float(ordered[-1])


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def run(args: argparse.Namespace) -> str:
    docs = babble_bench.sample(args.per_genre, args.per_category, args.seed)
    docs += babble_gen.p_alnum_salad(args.alnum, args.seed)
    cache = OUT_DIR / f"babble_cheap-{args.per_genre}-{args.per_category}-{args.alnum}-{args.seed}.parquet"
    table = signal_table(docs, cache)
    features = CHEAP_FEATURES
    if args.lm:
        from bench import babble_lm

        lm = babble_lm.lm_columns(docs, args.per_genre, args.per_category, args.seed)
        lm_ids = set(lm.column("id").to_pylist())
        docs = [d for d in docs if d["id"] in lm_ids or d.get("family") == "P-ALNUM"]
        joined = {
            c: dict(zip(lm.column("id").to_pylist(), lm.column(c).to_pylist(), strict=True))
            for c in LM_FEATURES
        }
        ids_all = table.column("id").to_pylist()
        for c in LM_FEATURES:
            table = table.append_column(c, pa.array([joined[c].get(i) for i in ids_all], pa.float64()))
        features = CHEAP_FEATURES + LM_FEATURES
    ids = [d["id"] for d in docs]
    x = matrix(table, ids, features)
    y = np.array([1 if d.get("label") == 1 else 0 for d in docs])
    genre = np.array([d.get("genre") or "" for d in docs])
    is_babble = np.array([d.get("family") == "P-BABBLE-X" for d in docs])
    is_alnum = np.array([d.get("family") == "P-ALNUM" for d in docs])
    side = np.array([half(i) for i in ids])
    clean_fit, clean_test = (y == 0) & (side == "fit"), (y == 0) & (side == "test")
    category = np.array([str(d.get("category") or "") for d in docs])
    out = [
        f"{len(docs)} docs: {int(is_babble.sum())} babble, {int(is_alnum.sum())} P-ALNUM, "
        f"{int(clean_fit.sum())} clean (fit half), {int(clean_test.sum())} clean (test half); "
        f"features: {', '.join(features)}; threshold: {pct(args.fp)} FP on the clean fit half.\n",
        "| held-out genre | fit on | recall (held out) | recall in-source | clean FP (test half) |",
        "|---|---|---:|---:|---:|",
    ]
    for held in babble_corpora.GENRES:
        train = (is_babble & (genre != held)) | clean_fit
        model = fit(x[train], y[train], args.l2)
        thr = threshold_for(log_odds(model, x[clean_fit]), args.fp)
        s = log_odds(model, x)
        held_rows = is_babble & (genre == held)
        in_rows = is_babble & (genre != held)
        out.append(
            f"| {held} | {', '.join(g for g in babble_corpora.GENRES if g != held)} | "
            f"{pct(float((s[held_rows] >= thr).mean()))} | {pct(float((s[in_rows] >= thr).mean()))} | "
            f"{pct(float((s[clean_test] >= thr).mean()))} |"
        )
    # shipped model: every genre's babble + the clean fit half
    train = is_babble | clean_fit
    model = fit(x[train], y[train], args.l2)
    thr = threshold_for(log_odds(model, x[clean_fit]), args.fp)
    s = log_odds(model, x)
    per_order = collections.defaultdict(list)
    for d, v in zip(docs, s, strict=True):
        if d.get("family") == "P-BABBLE-X":
            per_order[f"order {d['order']}"].append(v >= thr)
    fp_rows = collections.Counter(category[clean_test & (s >= thr)])
    out += [
        "",
        f"Shipped model (fit on all five genres + the clean fit half): threshold {thr:+.3f}; "
        f"babble recall {pct(float((s[is_babble] >= thr).mean()))} "
        f"({', '.join(f'{k} {pct(float(np.mean(v)))}' for k, v in sorted(per_order.items()))}); "
        f"P-ALNUM (never fitted on) {pct(float((s[is_alnum] >= thr).mean())) if is_alnum.any() else 'n/a'}; "
        f"clean test half FP {pct(float((s[clean_test] >= thr).mean()))} "
        f"({', '.join(f'{k} {v}' for k, v in fp_rows.most_common()) or 'none'}).",
        "",
        "```yaml",
        "combiner:",
        f"  bias: {model['bias']:.4f}",
        f"  threshold: {thr:.4f}",
        f"  clip: {model['clip']}",
        "  terms:",
    ]
    for name, c, sc, w in zip(features, model["center"], model["scale"], model["weights"], strict=True):
        out.append(f"    - {{column: {name}, center: {c:.4f}, scale: {sc:.4f}, weight: {w:.4f}}}")
    out.append("```")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-genre", type=int, default=60)
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--alnum", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp", type=float, default=0.004, help="clean fit-half FP allowed by the threshold")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--lm", action="store_true", help="add the cached LM columns (bench/babble_lm.py)")
    args = ap.parse_args(argv)
    print(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
