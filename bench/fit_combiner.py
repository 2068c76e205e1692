"""Fit the combiner (filters/combiner.py) by the cross-source protocol and report held-out figures.

    python -m bench.fit_combiner [--per-genre 60] [--per-category 40] [--lm-per-genre 40]
                                 [--lm-per-category 4] [--seed 0] [--only both|cheap|lm]
                                 [--lm-max-tokens N] [--write-config configs/default.yaml]

Three models (the shipped cheap and tokens models: ``--only cheap --per-genre 120``):

* ``cheap`` (every document): coherence and language columns, on a large sample
  (bench/babble_bench.py: P-BABBLE-X babble from the chains of five genres, clean held-out prose of the
  same genres, poetry, dialogue, lists and the clean base);
* ``tokens`` (every document: pages of random tokens): the mixed letter-digit token share and the
  language confidence, fitted on P-HEXSALAD and the clean fit half with its threshold above every clean
  fit doc, reported on P-ALNUM, and the other way round (:func:`tokens_report`);
* ``lm`` (documents the LM scored): the same columns plus the perplexity detector's, on the sample
  whose per-token NLLs bench/babble_lm.py cached (the LM is the slow part; run it first).

P-ALNUM (issue 13 item 6's example) is never used for fitting the shipped models; P-HEXSALAD (another
random-token generator: hex digests and base64 runs after a real sentence) is, in every cheap fit
too. Clean documents are split in two halves by a hash of their id: the fit half and the test half.
For the cheap and lm models:

* cross-source ("leave one genre out"): for each genre G, fit on the babble of the other four genres
  (and of the fit-only chains, below) and the clean fit half without G's own prose; threshold = the
  score that lets `fp` of that clean fit half through; report recall on G's babble (chains never
  fitted) and the false-positive rate on the clean test half (G's prose included: never fitted either);
* in-source: fit on the even-numbered babble of all genres, report recall on the odd-numbered babble
  of G, same clean halves;
* shipped: fit on all genres' babble and the clean fit half; its recall on P-ALNUM and its false
  positives per clean category on the test half. ``--write-config`` writes the fitted models into the
  combiner section of a config file, each block in place (atomically; everything else is kept).

Fit-only chains (``--fit-chains N``, round 6): every cheap fit also sees N babble pages from each of
chains over eight clean-base corpora (bench/babble_gen.py ``FIT_CHAIN_CATEGORIES``: Wikipedia en/fr/es,
the Debian handbook en/de/fr/es/ru), trained on pages that are not in the sample; they are never a
reported genre, so a held-out genre's chains and prose stay unseen while the fit sees more kinds of chain.

Signal columns are cached under bench/out/ (cheap ones per sample; LM ones from the token cache).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import re
import sys
from dataclasses import dataclass
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
    "coherence_quote_errors",
    "coherence_bracket_errors",
    "coherence_sentence_length_cv",
    "coherence_long_word_reuse",
    "language_confidence",
)
# The tokens model (pages of random tokens): fitted on P-HEXSALAD, tested on P-ALNUM, and both ways.
TOKEN_FEATURES = ("coherence_alnum_mix_share", "language_confidence")
# Columns measured on the LM sample (the separation table shows each); the lm model uses LM_MODEL:
# the coherence columns and the LM columns whose babble-vs-clean AUROC is far from 0.5 (the spread
# of sentence NLLs and the change-point jump separate little and made the fit noisier).
LM_FEATURES = (
    "perplexity_mean_nll",
    "perplexity_context_gain",
    "perplexity_context_gain_ratio",
    "perplexity_sentence_nll_std",
    "perplexity_sentence_end_nll",
    "perplexity_sentence_start_nll",
    "perplexity_changepoint_jump",
    "perplexity_max_window_nll",
)
_LM_COLUMNS = (
    "perplexity_mean_nll",
    "perplexity_context_gain",
    "perplexity_context_gain_ratio",
    "perplexity_sentence_end_nll",
    "perplexity_sentence_start_nll",
    "perplexity_max_window_nll",
)
# round 2's lm model: the five coherence columns of round 1 (kept for `--lm-features round2`)
LM_MODEL_ROUND2 = (
    "coherence_topic_reuse",
    "coherence_far_reuse",
    "coherence_type_ratio",
    "coherence_entity_reuse",
    "coherence_quote_imbalance",
    *_LM_COLUMNS,
)
# every column of the cheap model (the structure columns of round 4 included) and the LM's
LM_MODEL = (*CHEAP_FEATURES, *_LM_COLUMNS)


def log(msg: str) -> None:
    print(f"fit_combiner: {msg}", file=sys.stderr, flush=True)


def half(doc_id: str) -> str:
    return "fit" if hashlib.sha256(doc_id.encode()).digest()[0] % 2 == 0 else "test"


def signal_table(docs: list[dict[str, Any]], cache: Path) -> pa.Table:
    """Cheap stages' columns for `docs` (the combiner off); only the docs the cache lacks are scored."""
    have = pq.read_table(cache) if cache.exists() else None
    known = set(have.column("id").to_pylist()) if have is not None else set()
    docs = [d for d in docs if d["id"] not in known]
    if not docs and have is not None:
        return have
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
    if have is not None:
        table = pa.concat_tables([have.select(table.column_names), table])
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
    center = np.nan_to_num(np.nanmedian(clean, axis=0))
    q75, q25 = np.nanpercentile(clean, 75, axis=0), np.nanpercentile(clean, 25, axis=0)
    # a column constant on most clean docs (quote imbalance: 0) gets a quarter of its overall std
    scale = np.nan_to_num(
        np.maximum((q75 - q25) / 1.35, np.maximum(0.25 * np.nanstd(x, axis=0), 1e-3)), nan=1.0
    )
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


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties half; nan values dropped."""
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if not len(pos) or not len(neg):
        return float("nan")
    both = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(both, kind="stable"), kind="stable").astype(float)
    for v in np.unique(both):  # average ranks of ties
        same = both == v
        ranks[same] = ranks[same].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) - 1) / 2) / (len(pos) * len(neg)))


def grid_of(text: str) -> tuple[float, ...]:
    """'1,3,10' -> (1.0, 3.0, 10.0)."""
    grid = tuple(float(v) for v in text.split(",") if v.strip())
    if not grid:
        raise SystemExit(f"fit_combiner: an L2 grid needs at least one value (got {text!r})")
    return grid


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


@dataclass
class Sample:
    """One fitting sample: docs, their feature matrix and the masks the protocol needs."""

    docs: list[dict[str, Any]]
    features: tuple[str, ...]
    x: np.ndarray

    def __post_init__(self) -> None:
        d = self.docs
        self.y = np.array([1 if x.get("label") == 1 else 0 for x in d])
        self.genre = np.array([x.get("genre") or "" for x in d])
        self.category = np.array([str(x.get("category") or "") for x in d])
        self.babble = np.array([x.get("family") == "P-BABBLE-X" for x in d])
        self.fit_only = np.array([str(x.get("genre") or "").startswith("fit-") for x in d])
        self.alnum = np.array([x.get("family") == "P-ALNUM" for x in d])
        self.salad = np.array([x.get("family") == "P-HEXSALAD" for x in d])
        self.index = np.array([int(x["id"].rsplit("-", 1)[1]) if x.get("family") else -1 for x in d])
        side = np.array([half(x["id"]) for x in d])
        self.clean_fit = (self.y == 0) & (side == "fit")
        self.clean_test = (self.y == 0) & (side == "test")

    def fit(self, rows: np.ndarray, l2: float) -> dict[str, Any]:
        return fit(self.x[rows], self.y[rows], l2)

    def scores(self, model: dict[str, Any], rows: np.ndarray | None = None) -> np.ndarray:
        return log_odds(model, self.x if rows is None else self.x[rows])


def held_out_fit(
    s: Sample, genre: str, fp: float, l2: float, without: tuple[str, ...] = ()
) -> tuple[np.ndarray, float]:
    """Scores and threshold of the model fitted without `genre` and the genres in `without` (their
    chains and their clean prose)."""
    out = {genre, *without}
    clean = s.clean_fit & ~np.isin(s.category, [f"prose-{g}" for g in out])
    train = (s.babble & ~np.isin(s.genre, list(out))) | s.salad | clean
    model = s.fit(train, l2)
    return s.scores(model), threshold_for(s.scores(model, clean), fp)


def inner_recall(s: Sample, genres: list[str], fp: float, l2: float, without: tuple[str, ...] = ()) -> float:
    """Mean recall over `genres`, each held out in turn (`without` left out of every fit)."""
    recalls = []
    for g in genres:
        score, thr = held_out_fit(s, g, fp, l2, without)
        recalls.append(float((score[s.babble & (s.genre == g)] >= thr).mean()))
    return float(np.mean(recalls))


def choose_l2(
    s: Sample, genres: list[str], fp: float, grid: tuple[float, ...], without: tuple[str, ...] = ()
) -> float:
    """The penalty of `grid` with the best mean leave-one-genre-out recall over `genres` (the
    smaller on a tie): chosen on the genres a fit may see, never on the one it is tested on."""
    if len(grid) == 1:
        return grid[0]
    found = [(inner_recall(s, genres, fp, l2, without), -l2) for l2 in grid]
    return -max(found)[1]


def held_out(s: Sample, genre: str, fp: float, grid: tuple[float, ...]) -> tuple[np.ndarray, float, float]:
    """Scores, threshold and penalty of the model fitted without `genre`; the penalty is chosen by
    leave-one-genre-out on the other four genres alone (nested), so the held-out figure stays held
    out."""
    rest = [g for g in babble_corpora.GENRES if g != genre]
    l2 = choose_l2(s, rest, fp, grid, without=(genre,))
    return (*held_out_fit(s, genre, fp, l2), l2)


def in_source(s: Sample, fp: float, l2: float) -> tuple[np.ndarray, float]:
    """Scores and threshold of the model fitted on the even-numbered babble of every genre."""
    train = (s.babble & (s.index % 2 == 0)) | s.salad | s.clean_fit
    model = s.fit(train, l2)
    return s.scores(model), threshold_for(s.scores(model, s.clean_fit), fp)


def report(
    s: Sample, name: str, fp: float, grid: tuple[float, ...], also: np.ndarray | None = None
) -> tuple[list[str], dict[str, Any], float]:
    """Markdown lines for one model's protocol, the shipped model and its threshold. `grid`: the L2
    penalties tried (each held-out model's chosen on its four training genres; the in-source and
    shipped models' on all five). `also`: the docs another model quarantines anyway (the pipeline
    quarantines when either does): reported beside."""
    also = np.zeros(len(s.docs), dtype=bool) if also is None else also
    out = [
        f"**{name}**: {len(s.docs)} docs: {int((s.babble & ~s.fit_only).sum())} babble of the five genres, "
        f"{int(s.fit_only.sum())} babble of the fit-only chains, {int(s.salad.sum())} P-HEXSALAD, "
        f"{int(s.alnum.sum())} P-ALNUM, "
        f"{int(s.clean_fit.sum())} clean (fit half), {int(s.clean_test.sum())} clean (test half); "
        f"threshold: {pct(fp)} FP on the clean fit half.",
        "",
        "| held-out genre | recall, chains never fitted (cross-source) | recall in-source (odd pages) "
        "| clean FP, test half | of which its own prose | with the shipped cheap model: recall | clean FP "
        "| L2 penalty (chosen on the four) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    l2 = choose_l2(s, list(babble_corpora.GENRES), fp, grid)
    ins, ins_thr = in_source(s, fp, l2)
    order = np.array([d.get("order") or 0 for d in s.docs])
    opener = np.array(["/opener" in (d.get("variant") or "") for d in s.docs])
    parts = {f"order {o}": order == o for o in (1, 2, 3)} | {"real first sentence": opener, "none": ~opener}
    by_part: list[str] = []
    fp_by_cat: dict[str, list[float]] = collections.defaultdict(list)
    recalls: list[float] = []
    both: list[float] = []
    flagged = 0  # clean test docs flagged, summed over the five held-out models
    for g in babble_corpora.GENRES:
        score, thr, fold_l2 = held_out(s, g, fp, grid)
        rows = s.babble & (s.genre == g)
        own = s.clean_test & (s.category == f"prose-{g}")
        recalls.append(float((score[rows] >= thr).mean()))
        flagged += int((score[s.clean_test] >= thr).sum())
        for cat in np.unique(s.category[s.clean_test]):
            m = s.clean_test & (s.category == cat)
            fp_by_cat[cat].append(float((score[m] >= thr).mean()))
        cells = [pct(float((score[rows & m] >= thr).mean())) for m in parts.values()]
        by_part.append(f"| {g} | " + " | ".join(cells) + " |")
        odd = rows & (s.index % 2 == 1)
        either = (score >= thr) | also
        both.append(float(either[rows].mean()))
        out.append(
            f"| {g} | {pct(recalls[-1])} | {pct(float((ins[odd] >= ins_thr).mean()))} | "
            f"{pct(float((score[s.clean_test] >= thr).mean()))} | "
            f"{pct(float((score[own] >= thr).mean())) if own.any() else '-'} | "
            f"{pct(both[-1])} | {pct(float(either[s.clean_test].mean()))} | {fold_l2:g} |"
        )
    mean_both = pct(float(np.mean(both)))
    out.append(f"| **all five (mean)** | **{pct(float(np.mean(recalls)))}** | | | | **{mean_both}** | | |")
    judged = 5 * int(s.clean_test.sum())
    out += ["", f"Clean test docs flagged, summed over the five held-out models: {flagged} of {judged}."]
    out += ["", "Held out, by chain order and opening (same models, each genre's chains never fitted):", ""]
    out += ["| held-out genre | " + " | ".join(parts) + " |", "|---|" + "---:|" * len(parts), *by_part]
    train = s.babble | s.salad | s.clean_fit
    model = s.fit(train, l2)
    thr = threshold_for(s.scores(model, s.clean_fit), fp)
    score = s.scores(model)
    per_order = collections.defaultdict(list)
    for d, v in zip(s.docs, score, strict=True):
        if d.get("family") == "P-BABBLE-X" and d.get("genre") in babble_corpora.GENRES:
            per_order[f"order {d['order']}"].append(v >= thr)
    alnum = pct(float((score[s.alnum] >= thr).mean())) if s.alnum.any() else "n/a"
    salad = f"P-HEXSALAD (fitted) {pct(float((score[s.salad] >= thr).mean()))}; " if s.salad.any() else ""
    clean_fp = pct(float((score[s.clean_test] >= thr).mean()))
    out += [
        "",
        f"Shipped {name} model (all five genres + the clean fit half, L2 {l2:g} chosen by leave one genre "
        f"out on all five): threshold {thr:+.3f}; babble recall "
        f"(fitted, the five genres) {pct(float((score[s.babble & ~s.fit_only] >= thr).mean()))} "
        f"({', '.join(f'{k} {pct(float(np.mean(v)))}' for k, v in sorted(per_order.items()))}); "
        f"{salad}P-ALNUM (never fitted) {alnum}; clean test half FP {clean_fp}.",
        "",
        "| clean category (test half) | docs | FP, held-out models (mean of 5) | FP, shipped model |",
        "|---|---:|---:|---:|",
    ]
    for cat in sorted(fp_by_cat, key=lambda c: (not c.startswith("prose-"), c)):
        m = s.clean_test & (s.category == cat)
        out.append(
            f"| {cat} | {int(m.sum())} | {pct(float(np.mean(fp_by_cat[cat])))} | "
            f"{pct(float((score[m] >= thr).mean()))} |"
        )
    return out, model, thr


def separation(s: Sample) -> list[str]:
    """Per feature and genre: AUROC of the genre's babble against all clean docs (1 = babble higher)."""
    out = ["| feature | " + " | ".join(babble_corpora.GENRES) + " |", "|---|" + "---:|" * 5]
    clean = s.y == 0
    for j, name in enumerate(s.features):
        cells = [
            f"{auroc(s.x[s.babble & (s.genre == g), j], s.x[clean, j]):.2f}" for g in babble_corpora.GENRES
        ]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def yaml_block(name: str, features: tuple[str, ...], model: dict[str, Any], thr: float) -> list[str]:
    out = [f"  {name}:", f"    bias: {model['bias']:.4f}", f"    threshold: {thr:.4f}", "    terms:"]
    for col, c, sc, w in zip(features, model["center"], model["scale"], model["weights"], strict=True):
        out.append(f"      - {{column: {col}, center: {c:.4f}, scale: {sc:.4f}, weight: {w:.4f}}}")
    return out


def write_config(path: Path, blocks: dict[str, list[str]]) -> None:
    """Replace (or add, before the lm model or the section's end) each named model block of the
    combiner section of `path` (atomically; the rest of the file is kept)."""
    text = path.read_text("utf-8")
    if "# --- end combiner ---" not in text:
        raise SystemExit(f"{path}: no '# --- end combiner ---' line")
    for name, lines in blocks.items():
        block = "\n".join(lines) + "\n"
        pattern = re.compile(rf"(?m)^  {name}:\n(?:    .*\n)*")
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text, count=1)  # type: ignore[misc]
            continue
        anchor = "\n  lm:\n" if name != "lm" and "\n  lm:\n" in text else "\n# --- end combiner ---"
        text = text.replace(anchor, "\n" + block.rstrip("\n") + anchor, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


def shipped_cheap(s: Sample) -> np.ndarray:
    """The docs of `s` (with the cheap columns) that the cheap model of configs/default.yaml flags."""
    from poisonguard.filters import combiner
    from poisonguard.pipelines.config import load_config

    cfg = load_config().combiner
    rows = [dict(zip(s.features, (None if np.isnan(v) else float(v) for v in x), strict=True)) for x in s.x]
    return np.array([bool(combiner.flag(pa.Table.from_pylist([r]), cfg)[0]) for r in rows])


def cheap_sample(args: argparse.Namespace) -> tuple[Sample, Sample]:
    """(the cheap model's sample, the same docs with the tokens model's columns)."""
    docs = babble_bench.sample(args.per_genre, args.per_category, args.seed)
    docs += babble_gen.p_alnum_salad(args.alnum, args.seed) + babble_gen.p_hex_salad(args.alnum, args.seed)
    own = {d["text"] for d in docs}
    for category in babble_gen.FIT_CHAIN_CATEGORIES if args.fit_chains else ():
        docs += babble_gen.p_babble_fit(category, args.fit_chains, args.seed, own)
    key = f"{args.per_genre}-{args.per_category}-{args.alnum}-{args.seed}"
    table = signal_table(docs, OUT_DIR / f"babble_cheap-v16-{key}.parquet")
    ids = [d["id"] for d in docs]
    return Sample(docs, CHEAP_FEATURES, matrix(table, ids, CHEAP_FEATURES)), Sample(
        docs, TOKEN_FEATURES, matrix(table, ids, TOKEN_FEATURES)
    )


def tokens_report(s: Sample, fp: float, l2: float) -> tuple[list[str], dict[str, Any], float]:
    """The tokens model: fit on one random-token generator and the clean fit half, report on the other
    generator (never fitted) and the clean test half, both ways; shipped: fitted on P-HEXSALAD."""
    out = [
        "| fitted on | threshold | recall, fitted generator | recall, other generator (held out) "
        "| P-BABBLE-X flagged | clean FP, test half |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    shipped: tuple[dict[str, Any], float] | None = None
    for name, fitted, other in (("P-HEXSALAD", s.salad, s.alnum), ("P-ALNUM", s.alnum, s.salad)):
        model = s.fit(fitted | s.clean_fit, l2)
        thr = threshold_for(s.scores(model, s.clean_fit), fp)
        score = s.scores(model) >= thr
        out.append(
            f"| {name} | {thr:+.2f} | {pct(float(score[fitted].mean()))} | {pct(float(score[other].mean()))} "
            f"| {pct(float(score[s.babble].mean()))} | {pct(float(score[s.clean_test].mean()))} "
            f"({int(score[s.clean_test].sum())} of {int(s.clean_test.sum())}) |"
        )
        shipped = shipped or (model, thr)
    assert shipped is not None
    return out, *shipped


def lm_sample(args: argparse.Namespace) -> tuple[Sample, Sample] | None:
    """(the lm model's sample, the same docs with every measured column) from the LM token cache."""
    from bench import babble_lm

    docs = babble_lm.bench_docs(args.lm_per_genre, args.lm_per_category, args.alnum, args.seed)
    cfg = babble_lm.scoring_config(args.lm_max_tokens)
    rows = babble_lm.cached(cfg)
    docs = [d for d in docs if babble_lm.text_key(d["text"]) in rows]
    if not docs:
        return None
    lm = babble_lm.signal_table(docs, rows, cfg)
    key = f"lm-{args.lm_per_genre}-{args.lm_per_category}-{args.alnum}-{args.seed}"
    cheap = signal_table(docs, OUT_DIR / f"babble_cheap-v16-{key}.parquet")
    ids = [d["id"] for d in docs]
    x = np.hstack([matrix(cheap, ids, CHEAP_FEATURES), matrix(lm, ids, LM_FEATURES)])
    every = Sample(docs, CHEAP_FEATURES + LM_FEATURES, x)
    chosen = LM_MODEL_ROUND2 if args.lm_features == "round2" else LM_MODEL
    return Sample(docs, chosen, x[:, [every.features.index(f) for f in chosen]]), every


def run(args: argparse.Namespace) -> str:
    out: list[str] = []
    blocks: dict[str, list[str]] = {}
    if args.only != "lm":
        cheap, tokens = cheap_sample(args)
        lines, model, thr = report(cheap, "cheap", args.fp, grid_of(args.l2))
        out += lines + [""]
        blocks["cheap"] = yaml_block("cheap", cheap.features, model, thr)
        lines, model, thr = tokens_report(tokens, args.tokens_fp, args.tokens_l2)
        out += ["**tokens** (pages of random tokens):", "", *lines, ""]
        blocks["tokens"] = yaml_block("tokens", tokens.features, model, thr)
    samples = lm_sample(args) if args.only != "cheap" else None
    if samples is not None:
        lm, every = samples
        lines, model, thr = report(lm, "lm", args.fp, grid_of(args.lm_l2), shipped_cheap(every))
        out += lines + ["", "Separation on the LM sample (AUROC, babble of a genre vs all clean docs):", ""]
        out += separation(every) + [""]
        blocks["lm"] = yaml_block("lm", lm.features, model, thr)
    else:
        log("no cached LM rows (run python -m bench.babble_lm first): lm model not fitted")
    out += ["```yaml", "combiner:", *(line for b in blocks.values() for line in b), "```"]
    if args.write_config and blocks:
        write_config(Path(args.write_config), blocks)
        log(f"wrote the combiner models into {args.write_config}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-genre", type=int, default=60)
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--lm-per-genre", type=int, default=40)
    ap.add_argument("--lm-per-category", type=int, default=4)
    ap.add_argument(
        "--lm-max-tokens",
        type=int,
        default=None,
        help="the LM token cache of this perplexity.max_tokens (default: the config's)",
    )
    ap.add_argument("--alnum", type=int, default=30)
    ap.add_argument(
        "--fit-chains",
        type=int,
        default=30,
        help="babble pages per chain over a clean-base corpus (bench/babble_gen.py FIT_CHAIN_CATEGORIES), "
        "fitted on in every cheap fit and never reported; 0: none (rounds 1-5)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp", type=float, default=0.004, help="clean fit-half FP allowed by the threshold")
    ap.add_argument(
        "--tokens-fp",
        type=float,
        default=0.0,
        help="clean fit-half FP allowed by the tokens model's threshold",
    )
    ap.add_argument(
        "--l2",
        default="1,3,10,30,100",
        help="L2 penalties tried for the cheap model (comma-separated; one value: fixed); each held-out "
        "fold chooses by leave one genre out on its own four genres",
    )
    ap.add_argument("--lm-l2", default="5,20,50", help="the same for the lm model (fewer docs)")
    ap.add_argument(
        "--lm-features",
        choices=("all", "round2"),
        default="all",
        help="the lm model's columns: every cheap column + the LM's (all), or round 2's",
    )
    ap.add_argument("--tokens-l2", type=float, default=1.0, help="L2 penalty of the tokens model")
    ap.add_argument("--write-config", default="", help="write the fitted models into this config file")
    ap.add_argument("--only", choices=("both", "cheap", "lm"), default="both", help="fit only this model")
    args = ap.parse_args(argv)
    print(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
