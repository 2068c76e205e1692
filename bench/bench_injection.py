"""P-INJ-X: the injection detector fitted on one collection side, reported on the other.

    python -m bench.train_injection --fit A --out poisonguard/filters/injection_model.npz
    python -m bench.train_injection --fit B --out bench/out/injection_model_B.npz
    python -m bench.bench_injection [--model-a PATH] [--model-b PATH] [--per-category 300]
    python -m bench.bench_injection --probe-a filters/injection_probe.npz --calibrate --pool-clean-base ...

Prints Markdown: recall per test collection and language for "fit A, test B" and "fit B, test A",
beside the in-source figure (the test half of the fit side's own collections), with the detector's
decision (classifier, context thresholds, trigger-list phrases as in the pipeline) and the classifier
alone; then false positives per hard-negative category and per clean-base category (test halves
only). Which data is fit and which is test: see bench/injection_data.py and bench/train_injection.py.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from bench import corpus
from bench import injection_data as idata
from poisonguard.filters import injection, triggers

OUT = Path(__file__).resolve().parent / "out"
SHIPPED = Path(__file__).resolve().parents[1] / "filters" / injection.MODEL_FILE


class Decisions(NamedTuple):
    flagged: list[bool]  # the detector (with the probe alone where the config has it)
    classifier_over_bar: list[bool]  # the injection score over the out-of-context bar, nothing else
    context: list[str]
    before: list[bool]  # the detector without the probe alone (same run, same thresholds)


def decide(texts: Sequence[str], cfg: injection.Config) -> Decisions:
    """Per text: the detector's decision, the classifier alone's, the context, and the detector's
    decision without the probe alone."""
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": list(texts)})
    cols = {**triggers.score(table, triggers.Config()), **injection.score(table, cfg)}
    signals = pa.table(cols)
    lists = [
        [r for r in rs if r == "triggers:prompt_injection"]
        for rs in triggers.flag(signals, triggers.Config())
    ]
    reasons = [a + b for a, b in zip(injection.flag(signals, cfg), lists, strict=True)]
    off = cfg.model_copy(update={"probe_alone": False})
    before = [a + b for a, b in zip(injection.flag(signals, off), lists, strict=True)]
    scores = signals.column("injection_score").to_pylist()
    bar = injection.thresholds(cfg, cfg.probe)[0]
    return Decisions(
        [bool(r) for r in reasons],
        [s >= bar for s in scores],
        signals.column("injection_context").to_pylist(),
        [bool(r) for r in before],
    )


def pct(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}% ({k}/{n})" if n else "n/a"


def recall_rows(label: str, samples: list[idata.Sample], cfg: injection.Config, seed: int) -> list[list[str]]:
    rng = random.Random(f"plant:{seed}:{label}")
    pages = [idata.plant(s, rng) for s in samples]
    got = decide(pages, cfg)
    by_lang: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    by_kind: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for s, f, a, b in zip(samples, got.flagged, got.classifier_over_bar, got.before, strict=True):
        for key, table in ((s["lang"], by_lang), (s["kind"], by_kind)):
            table[key][0] += f
            table[key][1] += a
            table[key][2] += 1
            table[key][3] += b
    n = len(pages)
    rows = [
        [
            label,
            "all",
            pct(sum(got.flagged), n),
            pct(sum(got.before), n),
            pct(sum(got.classifier_over_bar), n),
        ]
    ]
    for name, slices in (("lang", by_lang), ("kind", by_kind)):
        rows += [
            [label, f"{name} {k}", pct(v[0], v[2]), pct(v[3], v[2]), pct(v[1], v[2])]
            for k, v in sorted(slices.items())
        ]
    return rows


def fp_rows(cfg: injection.Config, per_category: int) -> list[list[str]]:
    rows = []
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for doc in idata.hard_negatives("test"):
        groups[f"hard: {doc['source']}"].append(doc["text"])
    for doc in corpus.clean_base(limit_per_category=per_category, seed=1):
        if idata.split_of(doc["id"]) == "test":
            groups[doc["category"]].append(doc["text"])
    total = [0, 0, 0]
    for name, texts in groups.items():
        got = decide(texts, cfg)
        in_ctx = sum(1 for c in got.context if c)
        n = len(texts)
        rows.append(
            [
                name,
                str(n),
                pct(sum(got.flagged), n),
                pct(sum(got.before), n),
                pct(sum(got.classifier_over_bar), n),
                str(in_ctx),
            ]
        )
        if not name.startswith("hard"):
            total[0] += sum(got.flagged)
            total[1] += n
            total[2] += sum(got.before)
    rows.append(
        [
            "clean base, all categories",
            str(total[1]),
            pct(total[0], total[1]),
            pct(total[2], total[1]),
            "",
            "",
        ]
    )
    return rows


def config(model: str, probe: str | None, alone: str | None = None) -> injection.Config:
    """The detector's config for a model file, a probe file (None: the probe off) and a probe-alone
    file (None: off)."""
    if probe is None:
        return injection.Config(model_file=model, probe=False)
    from bench.injection_probe import use_cached_hidden

    use_cached_hidden()  # hidden states from the cache under bench/out/ (computed once)
    return injection.Config(
        model_file=model, probe=True, probe_file=probe, probe_alone=alone is not None, probe_alone_file=alone
    )


def fit_negatives(per_category: int, pool_clean: bool) -> list[tuple[str, str]]:
    """(category, text) of the fit half of the negatives both calibrations read: the hard negatives,
    then the clean base (`pool_clean`: its categories as one)."""
    docs = [(f"hard: {d['source']}", d["text"]) for d in idata.hard_negatives("fit")]
    docs += [
        ("clean base" if pool_clean else d["category"], d["text"])
        for d in corpus.clean_base(limit_per_category=per_category, seed=1)
        if idata.split_of(d["id"]) == "fit"
    ]
    return docs


def calibrate_alone(
    cfg: injection.Config, per_category: int, fp: float, pool_clean: bool
) -> injection.Config:
    """The probe alone's bar on the fit half of the negatives, cross-fitted (each page scored by the
    probe alone fitted without its fold of negative pages): the lowest that keeps every category at
    or under `fp` of its pages out of context over it (the probe alone judges no page in context)."""
    from bench.injection_probe import doc_fold, fold_files

    assert cfg.probe_alone_file is not None
    docs = fit_negatives(per_category, pool_clean)
    scores: list[float] = []
    cats: list[str] = []
    for k, path in enumerate(fold_files(cfg.probe_alone_file)):
        part = [(c, t) for c, t in docs if doc_fold(t) == k]
        texts = [t for _c, t in part]
        table_ = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
        fold_cfg = cfg.model_copy(update={"probe_alone_file": path})
        sig = {**triggers.score(table_, triggers.Config()), **injection.score(table_, fold_cfg)}
        rows = zip(
            sig["injection_context"].to_pylist(),
            sig["triggers_discussion"].to_pylist(),
            sig["injection_alone_score"].to_pylist(),
            part,
            strict=True,
        )
        for ctx, talk, prob, (cat, _t) in rows:
            if not ctx and not talk:
                scores.append(prob)
                cats.append(cat)
    values_by_cat: dict[str, list[float]] = collections.defaultdict(list)
    for cat, prob in zip(cats, scores, strict=True):
        values_by_cat[cat].append(prob)
    worst = 0.0
    for cat, values in sorted(values_by_cat.items()):
        ordered = sorted(values)
        allowed = int(np.floor(fp * len(ordered)))
        top = ordered[len(ordered) - 1 - allowed] + 1e-4
        print(
            f"calibrate_alone: {cat}: {len(ordered)} pages out of context, bar {top:.4f}; highest "
            f"{[round(v, 4) for v in ordered[-5:]]}",
            file=sys.stderr,
        )
        worst = max(worst, top)
    return cfg.model_copy(update={"probe_alone_threshold": round(min(0.9999, worst), 4)})


def _calibration_signals(docs: list[tuple[str, str]], cfg: injection.Config, probe: str | None) -> pa.Table:
    """Signals of the fit-half negatives. With a probe: cross-fitted, each page scored by the probe
    fitted without the pages of its fold (bench/injection_probe.py), since the probe read these pages."""
    texts = [t for _c, t in docs]
    if probe is None:
        table_ = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
        return pa.table({**triggers.score(table_, triggers.Config()), **injection.score(table_, cfg)})
    from bench.injection_probe import doc_fold, fold_files

    order = sorted(range(len(texts)), key=lambda i: doc_fold(texts[i]))
    parts = []
    for k, path in enumerate(fold_files(probe)):
        part = [texts[i] for i in order if doc_fold(texts[i]) == k]
        table_ = pa.table({"id": [str(i) for i in range(len(part))], "text": part})
        fold_cfg = cfg.model_copy(update={"probe_file": path})
        parts.append(
            pa.table({**triggers.score(table_, triggers.Config()), **injection.score(table_, fold_cfg)})
        )
    signals = pa.concat_tables(parts)
    back = np.argsort(np.array(order))  # rows in the order of `docs`
    return signals.take(pa.array(back))


def calibrate(
    model: str,
    per_category: int,
    fp: float,
    pool_clean: bool = False,
    probe: str | None = None,
    alone: str | None = None,
) -> injection.Config:
    """Thresholds on the fit half of the negatives (clean base + hard negatives): the lowest that keep
    every category at or under `fp` false positives, one for documents out of context and one for
    security pages and threads. With `pool_clean` the clean-base categories count as one category (the
    hard-negative categories keep their own cap): in a clean category of ~40 fit pages a cap under 2.5%
    allows no page over the bar, so its single highest page would set the threshold alone."""
    cfg = config(model, probe, alone)
    docs = fit_negatives(per_category, pool_clean)
    sig = _calibration_signals(docs, cfg, probe)
    ctx = np.array(
        [
            bool(c) or bool(t)
            for c, t in zip(
                sig.column("injection_context").to_pylist(),
                sig.column("triggers_discussion").to_pylist(),
                strict=True,
            )
        ]
    )
    # the score each page is judged by: in context the probe only lowers (injection.flag)
    scores = np.where(
        ctx,
        np.array(sig.column("injection_score_in_context").to_pylist()),
        np.array(sig.column("injection_score").to_pylist()),
    )
    cats = np.array([c for c, _t in docs])

    def cut(mask: np.ndarray) -> float:
        worst = 0.0
        for cat in set(cats[mask]):
            values = np.sort(scores[mask & (cats == cat)])
            allowed = int(np.floor(fp * len(values)))
            worst = max(worst, float(values[len(values) - 1 - allowed]) + 1e-4)
        return round(min(0.9999, worst), 4)

    names = (
        ("probe_threshold", "probe_threshold_in_context") if probe else ("threshold", "threshold_in_context")
    )
    return cfg.model_copy(update={names[0]: cut(~ctx), names[1]: cut(ctx)})


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-a", default=str(SHIPPED), help="model fitted on side A (default: shipped)")
    ap.add_argument("--model-b", default=str(OUT / "injection_model_B.npz"))
    ap.add_argument("--per-category", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--calibrate", action="store_true", help="set thresholds on the fit half (else: config defaults)"
    )
    ap.add_argument("--fp", type=float, default=0.003, help="false-positive target of --calibrate")
    ap.add_argument(
        "--pool-clean-base",
        action="store_true",
        help="--calibrate caps the clean base as one pooled category (hard negatives stay per category)",
    )
    ap.add_argument("--probe-a", default=None, help="hidden-state probe of side A (default: off)")
    ap.add_argument("--probe-b", default=None, help="hidden-state probe of side B (default: off)")
    ap.add_argument("--alone-a", default=None, help="probe alone of side A (default: off)")
    ap.add_argument("--alone-b", default=None, help="probe alone of side B (default: off)")
    ap.add_argument(
        "--calibrate-alone",
        action="store_true",
        help="set the probe alone's bar on the fit half (cross-fitted); the other thresholds as given",
    )
    ap.add_argument(
        "--alone-fp", type=float, default=None, help="false-positive cap of the probe alone's bar"
    )
    ap.add_argument(
        "--probe-thresholds-b",
        type=float,
        nargs=2,
        default=None,
        help="fit B's probe thresholds (out of context, in context) when not calibrated here",
    )
    ap.add_argument("--sides", default="AB", help="which fit sides to report (A, B or AB)")
    ap.add_argument(
        "--in-source-only",
        action="store_true",
        help="only the fit side's own test halves, no false-positive table (a fit-side check of a design)",
    )
    ap.add_argument(
        "--no-third-party",
        action="store_true",
        help="leave set C out (a fit-side comparison of two designs that must not score it again)",
    )
    args = ap.parse_args(argv)
    out = []
    for fit_side, model, probe, alone, test_names in (
        (
            "A",
            args.model_a,
            args.probe_a,
            args.alone_a,
            ("bastion", "garak-multilingual", "handwritten", "third-party"),
        ),
        ("B", args.model_b, args.probe_b, args.alone_b, ("garak", "tooling", "third-party")),
    ):
        if fit_side not in args.sides:
            continue
        cfg = (
            calibrate(model, args.per_category, args.fp, args.pool_clean_base, probe, alone)
            if args.calibrate
            else config(model, probe, alone)
        )
        if fit_side == "B" and args.probe_thresholds_b:
            bars_b = args.probe_thresholds_b
            cfg = cfg.model_copy(
                update={"probe_threshold": bars_b[0], "probe_threshold_in_context": bars_b[1]}
            )
        if alone and args.calibrate_alone:
            fp_alone = args.fp if args.alone_fp is None else args.alone_fp
            cfg = calibrate_alone(cfg, args.per_category, fp_alone, args.pool_clean_base)
        bars = injection.thresholds(cfg, cfg.probe)
        print(
            f"bench_injection: fit {fit_side} ({model}, probe {probe}, alone {alone}): thresholds {bars}, "
            f"probe alone {cfg.probe_alone_threshold if alone else None}",
            file=sys.stderr,
        )
        out.append(
            f"Fit {fit_side} (probe {probe}, probe alone {alone}): threshold {bars[0]}, "
            f"in context {bars[1]}, "
            f"probe alone {cfg.probe_alone_threshold if alone else 'off'}\n"
        )
        rows: list[list[str]] = []
        for name in idata.SIDES_NAMES[fit_side]:
            held = [s for s in idata.collection(name) if idata.split_of(s["text"]) == "test"]
            rows += recall_rows(f"in-source {name} (test half)", held, cfg, args.seed)
        for name in () if args.in_source_only else test_names:
            if name == "third-party" and args.no_third_party:
                continue
            rows += recall_rows(f"cross-source {name}", list(idata.collection(name)), cfg, args.seed)
        out.append(f"### Fit {fit_side}: recall on planted injections\n")
        header = ["test set", "slice", "detector", "without the probe alone", "classifier alone"]
        out.append(table(header, rows) + "\n")
        if fit_side == "A" and not args.in_source_only:
            out.append("### Fit A (shipped model): false positives on the test halves\n")
            out.append(
                table(
                    [
                        "category",
                        "docs",
                        "detector",
                        "without the probe alone",
                        "classifier alone",
                        "docs in context",
                    ],
                    fp_rows(cfg, args.per_category),
                )
                + "\n"
            )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
