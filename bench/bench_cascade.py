"""The LM cascade: recall per LM family at budgets and end-to-end speed, side by side.

    python -m bench.bench_cascade [--per-category 40] [--lm-all-docs 8] [--no-speed] [--no-recall]
        [--no-workers] [--speed-rows nolm default float32 ...]

1. Recall. poisonbench's documents (clean base + poison) go through the cheap stages; the LM signals
   of the sampled poison they leave undecided come from bench/out (bench/lm_cache.py scores what is
   missing, once, and keeps it). A poisoned document counts as caught when the cheap stages
   quarantine it, or when it is routed to the LM and the LM flags it. Routing at budget b sends a
   document when its route score (filters/suspicion.py route_score) is above the (1 - b) quantile of
   clean documents' scores: what a budget of b does on a corpus that is almost all clean. The score's
   constants are fitted on the Debian handbook's clean documents only (bench/fit_suspicion.py); the
   thresholds come from each clean source in turn (Wikipedia, the handbook, the rest) and the whole
   clean base. The generators (unigram salad and an order-2 Markov chain over the carriers,
   P-TARPIT's Markov babble over Project Gutenberg books) never set anything, but the signals (the
   local repeat with its 50-word window and 5-character content words, picked among about ten
   candidates, the order ratio's gate, `min_words` and `combiner_min_words`) were chosen after looking
   at these families on two samples (`--seed 0` and `--seed 1`), so read the figures as in-sample for
   that choice; bench/fit_suspicion.py --babble checks the signals on P-BABBLE-X chains instead.
2. Speed, one run on the same input (the clean base at `--speed-per-category` documents per category,
   as one JSONL file), each in its own process: datatrove's FineWeb filters, `poisonguard filter
   --no-lm`, the default config (budgeted LM; `perplexity.dtype: auto`, bfloat16 on CPUs with native
   bf16) with one and with two workers (the LM in two forked single-threaded processes sharing the
   model), the default on transformers' implementation of the model (`perplexity.engine:
   transformers`, what ran before the builtin engine), the default with the LM's work per page of
   before (`wide`: 512 scored tokens and the context gain of every page), the default in float32 (no
   recall: the LM cache holds the default's signals), a 3% budget,
   and the LM on every document (route: all) on the first `--lm-all-docs` documents only (the LM runs
   about one document a second on two idle cores). `--speed-rows` runs only some of these rows (the
   --no-lm and default rows always). Peak RSS is each process's own (wait4).
3. Workers (`--no-recall --no-speed` runs only this): `--no-lm` with `--workers 1` and `2` on
   `--workers-mb` MB (default 10.5) of the clean sources, runs paired and alternated 1-2-2-1: wall
   seconds and CPU seconds of the command's own process and of its workers apart. On a shared
   machine only the CPU seconds mean much: Linux schedules by session (autogroup), so a command's
   two workers share one session's slice of the cores and cannot get more CPU than one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import poisonbench
from bench.lm_cache import lm_columns
from bench.poisonbench import Doc, auroc, family_key, md_table, pct
from poisonguard.filters import perplexity, suspicion
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.runner import score_documents

OUT_DIR = Path(__file__).resolve().parent / "out"
BUDGETS = (1.0, 0.3, 0.1, 0.03, 0.01)
FITS = {"wiki": "wiki-", "python-docs": "python-docs"}
MAX_LOSS = 0.01  # the default budget: the smallest at which no family loses more than this


def log(msg: str) -> None:
    print(f"bench_cascade: {msg}", file=sys.stderr, flush=True)


def routed_share(scores: np.ndarray, clean: np.ndarray, budget: float) -> np.ndarray:
    """Which scores a budget routes, with the threshold set on clean documents."""
    if budget >= 1.0:
        return np.ones(len(scores), dtype=bool)
    threshold = float(np.quantile(clean, 1.0 - budget))
    return scores > threshold


def cheap_decided(args: argparse.Namespace, cfg: Any) -> tuple[list[Doc], list[Doc], pa.Table]:
    """poisonbench's docs and their cheap-stage decisions, cached under bench/out."""
    path = OUT_DIR / f"cascade-docs-{args.per_category}-{args.seed}.pkl"
    if path.exists():
        with path.open("rb") as fh:
            base, poison = pickle.load(fh)
    else:
        base, poison, _ = poisonbench.build(args.per_category, args.seed)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump((base, poison), fh)
    table_path = path.with_suffix(".parquet")
    if table_path.exists():
        return base, poison, pq.read_table(table_path)
    log(f"cheap stages on {len(base) + len(poison)} docs")
    decided = score_documents(poisonbench.to_table([*base, *poison]), cfg)
    pq.write_table(decided, table_path)
    return base, poison, decided


WHOLE = "the whole clean base"


def smallest_budget(fits: Sequence[dict[str, Any]]) -> float:
    """The smallest budget at which no family row of any of `fits` loses more than MAX_LOSS."""
    best = 1.0
    for b in BUDGETS:
        loss = max(r["recall"]["1.0"] - r["recall"][str(b)] for fit in fits for r in fit.values())
        if loss > MAX_LOSS:
            break
        best = b
    return best


def clean_groups(category: Sequence[str], is_clean: np.ndarray) -> dict[str, np.ndarray]:
    """Clean documents by source: the thresholds a budget sets depend on the corpus it runs on."""

    def group(c: str) -> str:
        return "wiki" if c.startswith("wiki-") else "handbook" if c.startswith("handbook-") else "other"

    names = {"wiki": "Wikipedia (en/fr/es)", "handbook": "Debian handbook (9 languages)",
             "other": "Python docs, UDHR and the hard negatives", "all": WHOLE}  # fmt: skip
    groups = {
        names[g]: is_clean & np.array([group(c) == g for c in category])
        for g in ("wiki", "handbook", "other")
    }
    groups[names["all"]] = is_clean
    return groups


def recall_section(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    cfg = load_config(overrides={"cloaking": {"enabled": False}})
    base, poison, decided = cheap_decided(args, cfg)
    docs = [*base, *poison]
    by_id = {d["id"]: d for d in docs}
    ids = decided.column("id").to_pylist()
    row = {i: k for k, i in enumerate(ids)}
    outcome = decided.column("outcome").to_pylist()
    sample = [d for d in poisonbench.lm_sample(base, poison, args) if d.get("label") == 1]
    undecided = [d for d in sample if outcome[row[d["id"]]] == "kept"]
    log(f"LM signals of {len(undecided)} undecided sampled poison docs (cached in bench/out)")
    lm = lm_columns(
        [decided.column("text")[row[d["id"]]].as_py() for d in undecided], cfg.perplexity, log=log
    )
    flags = perplexity.flag(pa.table(lm), cfg.perplexity)
    lm_caught = {d["id"]: bool(f) for d, f in zip(undecided, flags, strict=True)}
    category = [str(by_id[i].get("category") or "") for i in ids]
    is_clean = np.array([by_id[i].get("label") != 1 for i in ids])

    families = sorted({family_key(d) for d in sample})
    summary: dict[str, Any] = {"fits": {}, "families": families}
    sections: list[str] = []
    # recomputed from the text: the cached cheap-stage table may predate a change of the score
    fresh = decided.drop_columns([c for c in decided.column_names if c.startswith(suspicion.PREFIX)])
    for name, values in suspicion.score(decided, cfg.suspicion).items():
        fresh = fresh.append_column(name, values)
    scores = suspicion.route_score(fresh, cfg.suspicion, cfg.combiner)
    for group, clean_mask in clean_groups(category, is_clean).items():
        clean = scores[clean_mask]
        rows, result = [], {}
        for fam in families:
            members = [d for d in sample if family_key(d) == fam]
            pos = np.array([row[d["id"]] for d in members])
            cheap = np.array([outcome[p] == "quarantined" for p in pos])
            lm_hit = np.array([lm_caught.get(d["id"], False) for d in members])
            recalls = [
                float(np.mean(cheap | (lm_hit & routed_share(scores[pos], clean, b)))) for b in BUDGETS
            ]
            result[fam] = {
                "n": len(members),
                "cheap": float(cheap.mean()),
                "recall": dict(zip(map(str, BUDGETS), recalls, strict=True)),
            }
            rows.append([fam, len(members), pct(float(cheap.mean())), *map(pct, recalls),
                         f"{auroc(clean, scores[pos]):.3f}"])  # fmt: skip
        summary["fits"][group] = result
        header = ["family", "docs", "no LM", *(f"{b:.0%}" for b in BUDGETS), "AUROC"]
        sections += [f"\n### Thresholds set on {group} ({len(clean)} clean docs)\n", md_table(header, rows)]
    fits = summary["fits"]
    whole = smallest_budget([fits[WHOLE]])
    strict = smallest_budget(list(fits.values()))
    summary["default_budget"] = whole
    summary["strict_budget"] = strict
    from bench import baseline_datatrove

    dropped = baseline_datatrove.drop_reasons(sample)
    summary["datatrove"] = {
        fam: float(np.mean([bool(dropped[d["id"]]) for d in sample if family_key(d) == fam]))
        for fam in families
    }
    summary["lm_scored_poison"] = len(undecided)
    head = [
        "## Recall per LM family at LM budgets (poisonbench sample; thresholds set on each clean source)\n",
        f"{len(sample)} sampled poison docs of the LM families (at most {args.lm_poison} per row); the cheap "
        f"stages leave {len(undecided)} of them to the LM. `no LM`: cheap stages alone; `100%`: the LM "
        "scores every undecided document. Budget b routes a document when its route score "
        "(suspicion.route_score: the length-normalised local repeat, the order ratio where words recur, "
        "and the combiner for long documents) "
        "is above the (1 - b) quantile of the test clean documents' scores. `AUROC`: route score, family "
        "against the test clean documents. The score's constants are fitted on the Debian handbook alone "
        "(bench/fit_suspicion.py), no poisoned document; the other clean sources never.",
        f"\nSmallest budget at which no family loses more than {MAX_LOSS:.0%} of recall against 100%: "
        f"**{whole:.0%}** with the thresholds a mixed corpus sets (the whole clean base; the default "
        f"`perplexity.budget`), {strict:.0%} if every single clean source must pass on its own (with 25 "
        "docs a row, one document is 4 points).",
    ]
    return head + sections, summary


# ------------------------------------------------------------------------------------ speed


# Started through this small launcher: a child forked from the benchmark itself would start its peak
# RSS count at the benchmark's own size (the fork copies the page tables), so every row read at
# least ~650 MB; the launcher is a fresh small process, and reports its child's peak (wait4).
LAUNCHER = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, st, ru = os.wait4(p.pid, 0); "
    "open(sys.argv[1], 'w').write(str(ru.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(st))"
)


def _run(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB of the process and its descendants, exit code) of one command."""
    with tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False) as fh:
        rss_file = fh.name
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, rss_file, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    rss_text = Path(rss_file).read_text() or "0"
    os.unlink(rss_file)
    if proc.returncode != 0:
        log(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return wall, int(rss_text) / 1024, proc.returncode


DATATROVE = (
    "import json,sys; from bench import baseline_datatrove as b; "
    "docs=[json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]; b.drop_reasons(docs)"
)


def recall_cell(recall: dict[str, Any] | None, budget: float | str | None) -> str:
    """Mean and worst recall over the LM family rows and threshold sources at a budget (None: the
    default)."""
    if recall is None or budget == "-":
        return "-"
    if budget == "datatrove":
        rates = list(recall["datatrove"].values())
    else:
        key = str(recall["default_budget"] if budget is None else budget)
        fits = list(recall["fits"].values())
        rates = [r["recall"][key] if key != "0.0" else r["cheap"] for fit in fits for r in fit.values()]
    return f"mean {pct(float(np.mean(rates)))}, worst {pct(min(rates))}"


def speed_section(
    args: argparse.Namespace, recall: dict[str, Any] | None
) -> tuple[list[str], dict[str, Any]]:
    from bench import corpus

    base = corpus.clean_base(limit_per_category=args.speed_per_category, seed=args.seed)
    py = sys.executable
    pg = [py, "-m", "poisonguard.pipelines.cli", "filter"]
    rows, out = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-cascade-") as tmp:
        src, head = Path(tmp) / "base.jsonl", Path(tmp) / "head.jsonl"
        lines = [json.dumps({"id": d["id"], "text": d["text"], "url": d["url"]}) for d in base]
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        head.write_text("\n".join(lines[: args.lm_all_docs]) + "\n", encoding="utf-8")
        mb, head_mb = src.stat().st_size / 1e6, head.stat().st_size / 1e6
        all_cfg = Path(tmp) / "all.yaml"
        all_cfg.write_text("perplexity:\n  route: all\n")
        small_cfg = Path(tmp) / "small.yaml"
        small_cfg.write_text("perplexity:\n  budget: 0.03\n")
        f32_cfg = Path(tmp) / "f32.yaml"
        f32_cfg.write_text("perplexity:\n  dtype: float32\n")
        tf_cfg = Path(tmp) / "tf.yaml"
        tf_cfg.write_text("perplexity:\n  engine: transformers\n")
        wide_cfg = Path(tmp) / "wide.yaml"
        wide_cfg.write_text("perplexity:\n  max_tokens: 512\n  context_gain_every: true\n")
        every = f"poisonguard LM on every document (first {args.lm_all_docs} docs only)"
        dtype = perplexity.resolve_dtype(load_config().perplexity.dtype, "cpu")
        runs = {
            "datatrove": ("datatrove FineWeb filters", [py, "-c", DATATROVE, str(src)], len(base), mb,
                          "datatrove"),
            "nolm": ("poisonguard --no-lm", [*pg, str(src), "--out", f"{tmp}/a", "--no-lm", "-q"], len(base),
                     mb, 0.0),
            "default": (f"poisonguard default (budgeted LM, {dtype})", [*pg, str(src), "--out", f"{tmp}/b",
                        "-q"], len(base), mb, None),
            "workers2": ("poisonguard default, --workers 2", [*pg, str(src), "--out", f"{tmp}/e", "-q",
                         "--workers", "2"], len(base), mb, None),
            "transformers": ("poisonguard default, perplexity.engine transformers", [*pg, str(src), "--out",
                             f"{tmp}/t", "-q", "--config", str(tf_cfg)], len(base), mb, "-"),
            "wide": ("poisonguard default, the LM's work before (max_tokens 512, every context gain)", [*pg,
                     str(src), "--out", f"{tmp}/w", "-q", "--config", str(wide_cfg)], len(base), mb, "-"),
            "float32": ("poisonguard default, perplexity.dtype float32", [*pg, str(src), "--out", f"{tmp}/f",
                        "-q", "--config", str(f32_cfg)], len(base), mb, "-"),
            "budget3": ("poisonguard budget 3%", [*pg, str(src), "--out", f"{tmp}/d", "-q", "--config",
                        str(small_cfg)], len(base), mb, 0.03),
            "lmall": (every, [*pg, str(head), "--out", f"{tmp}/c", "-q", "--config", str(all_cfg)],
                      args.lm_all_docs, head_mb, 1.0),
        }  # fmt: skip
        load = os.getloadavg()
        for key in args.speed_rows:
            name, cmd, n, size, budget = runs[key]
            log(f"speed: {name}")
            wall, rss, code = _run(cmd)
            rows.append([name, n, f"{wall:.1f}", f"{n / wall:.2f}", f"{size / wall:.3f}", f"{rss:,.0f}",
                         recall_cell(recall, budget), "" if code == 0 else f"exit {code}"])  # fmt: skip
            out[name] = {"docs": n, "s": wall, "docs_per_s": n / wall, "mb_per_s": size / wall, "rss_mb": rss}
            if key in ("default", "wide") and code == 0:  # where its time went (the run's stage timings)
                report = Path(tmp) / {"default": "b", "wide": "w"}[key] / "report.json"
                timings = json.loads(report.read_text())["timings_s"]
                out[f"{key}_stages_s"] = {k: v for k, v in timings.items() if k.startswith("stage:")}
        load_after = os.getloadavg()
    nolm, default = out["poisonguard --no-lm"], out[runs["default"][0]]
    ratio = default["s"] / nolm["s"]
    header = ["run", "docs", "seconds", "docs/s", "MB/s", "peak RSS MB", "recall (LM families)", ""]
    text = [
        f"\n## Speed: the clean base ({len(base)} docs, {mb:.1f} MB JSONL), one run, each row its own "
        "process\n",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
        f"{load[0]:.1f} before, {load_after[0]:.1f} after (the machine was shared: read ratios, not "
        "absolutes). `recall`: section 1's recall at that row's budget over the LM "
        "family rows (mean and worst row); datatrove: its drop rate on the same docs.\n",
        md_table(header, rows, "lrrrrrll"),
        f"\ndefault / --no-lm wall time: **{ratio:.2f}x** (goal <= 3x); default: "
        f"**{default['docs_per_s']:.1f} docs/s** (goal >= 20), peak RSS {default['rss_mb']:,.0f} MB "
        "(goal <= 1,200).",
    ]
    for key, who in (("default", "The default run's"), ("wide", "The `wide` run's")):
        stages = out.get(f"{key}_stages_s", {})
        if stages:
            text.append(
                f"\n{who} stages (its report's timings): "
                + ", ".join(f"{k.removeprefix('stage:')} {v:.1f} s" for k, v in stages.items())
                + " (trigger_lm: trigger mining's LM check)."
            )
    wide = out.get(runs["wide"][0])
    if wide is not None:
        text.append(
            f"\nThe LM's work per page of before (`wide`) / --no-lm: {wide['s'] / nolm['s']:.2f}x; "
            f"the default / `wide`: {default['s'] / wide['s']:.2f}x."
        )
    out["default_over_nolm"] = ratio
    out["load"] = [load[0], load_after[0]]
    return text, out


# `poisonguard filter` run inside this launcher rather than as its own process, so that the CPU
# seconds of the command's own process (reading, dedup, writing) and of its worker processes
# (RUSAGE_CHILDREN: the scoring pool, reaped before it exits) can be told apart.
SPLIT_LAUNCHER = (
    "import atexit, json, resource, runpy, sys\n"
    "usage_file = sys.argv[1]\n"
    "def dump():\n"
    "    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))\n"
    "    with open(usage_file, 'w') as fh:\n"
    "        json.dump([own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime, own.ru_maxrss], fh)\n"
    "atexit.register(dump)\n"
    "sys.argv = ['poisonguard', *sys.argv[2:]]\n"
    "runpy.run_module('poisonguard.pipelines.cli', run_name='__main__')\n"
)


def _run_split(cmd: Sequence[str]) -> dict[str, Any]:
    """One `poisonguard` command (its arguments after the program name): wall seconds, CPU seconds
    of its own process and of its workers, its progress lines on stderr (a pipe: log mode)."""
    with tempfile.NamedTemporaryFile(prefix="bench-cpu-", delete=False) as fh:
        usage_file = fh.name
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", SPLIT_LAUNCHER, usage_file, *cmd], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    own, kids, rss = json.loads(Path(usage_file).read_text() or "[0, 0, 0]")
    os.unlink(usage_file)
    if proc.returncode != 0:
        log(f"{' '.join(cmd[:3])}... exited {proc.returncode}: {proc.stderr[-500:]}")
    progress = [line for line in proc.stderr.splitlines() if " poisonguard " in line]
    return {"wall": wall, "cpu_main": own, "cpu_workers": kids, "rss_mb": rss / 1024,
            "progress_lines": len(progress), "code": proc.returncode}  # fmt: skip


def _workers_input(args: argparse.Namespace, src: Path) -> int:
    """The clean sources as one JSONL file of at least `--workers-mb` MB (fewer if they run out);
    its size in bytes."""
    from bench import corpus

    size = 0
    with src.open("w", encoding="utf-8") as fh:
        for d in corpus.clean_base(limit_per_category=None, seed=args.seed):
            line = json.dumps({"id": d["id"], "text": d["text"], "url": d["url"]}) + "\n"
            fh.write(line)
            size += len(line.encode())
            if size >= args.workers_mb * 1e6:
                break
    return size


def workers_section(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """`--no-lm` with 1 and 2 workers on >= `--workers-mb` MB of the clean sources, paired and
    alternated (1-2-2-1) so a drift of the machine's load hits both. Wall seconds decide only on an
    idle machine; CPU seconds (the command's own process and its workers apart) say what the second
    worker costs whatever the load. Worker processes left after each run are counted (their command
    line names the run's output folder)."""
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    left = 0
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        src = Path(tmp) / "big.jsonl"
        size = _workers_input(args, src)
        for k, workers in enumerate((1, 2, 2, 1)):
            out = f"{tmp}/w{k}"
            log(f"workers: {workers} (run {k + 1} of 4)")
            run = _run_split(["filter", str(src), "--out", out, "--no-lm", "--workers", str(workers)])
            report = json.loads(Path(out, "report.json").read_text()) if run["code"] == 0 else {}
            run["stages_s"] = {k.removeprefix("stage:"): v for k, v in report.get("timings_s", {}).items()
                               if k.startswith("stage:") and k != "stage:lm"}  # fmt: skip
            runs[workers].append(run)
            found = subprocess.run(["pgrep", "-f", out], capture_output=True, text=True).stdout.split()
            left += len(found)
    load_after = os.getloadavg()

    def mean(workers: int, key: str) -> float:
        return float(np.mean([r[key] for r in runs[workers]]))

    def stage(workers: int, name: str) -> str:
        return f"{np.mean([r['stages_s'].get(name, 0.0) for r in runs[workers]]):.1f}"

    rows = [
        [w, ", ".join(f"{r['wall']:.1f}" for r in runs[w]), f"{mean(w, 'wall'):.1f}",
         f"{size / 1e6 / mean(w, 'wall'):.2f}", f"{mean(w, 'cpu_main'):.1f}", f"{mean(w, 'cpu_workers'):.1f}",
         f"{mean(w, 'cpu_main') + mean(w, 'cpu_workers'):.1f}",
         " / ".join(stage(w, s) for s in ("cheap", "dedup", "write")), f"{mean(w, 'rss_mb'):,.0f}",
         ", ".join(str(r["progress_lines"]) for r in runs[w])]
        for w in (1, 2)
    ]  # fmt: skip
    header = ["workers", "wall s (each run)", "wall s", "MB/s", "CPU s main", "CPU s workers", "CPU s total",
              "cheap / dedup / write s", "main peak RSS MB", "progress lines"]  # fmt: skip
    cpu = {w: mean(w, "cpu_main") + mean(w, "cpu_workers") for w in (1, 2)}
    ratio = mean(2, "wall") / mean(1, "wall")
    text = [
        f"\n## `--workers 2` against 1 (`--no-lm`, {size / 1e6:.1f} MB of clean text, runs 1-2-2-1)\n",
        f"Load average {load[0]:.1f} before, {load_after[0]:.1f} after, {os.cpu_count()} cores. CPU "
        "seconds are user + system; `main`: the command's own process (reading, dedup, writing; with "
        "1 worker also the scoring), `workers`: its scoring processes. Stage seconds are wall seconds "
        "from each run's report.\n",
        md_table(header, rows, "rlrrrrrrrl"),
        f"\n2 workers / 1 worker: wall time **{ratio:.2f}x**, CPU seconds {cpu[2] / cpu[1]:.2f}x; worker "
        f"processes left after the runs: {left}.",
    ]
    summary = {"mb": size / 1e6, "runs": runs, "ratio": ratio, "cpu_ratio": cpu[2] / cpu[1],
               "left_behind": left, "load": [load[0], load_after[0]]}  # fmt: skip
    return text, summary


SPEED_ROWS = (
    "datatrove",
    "nolm",
    "default",
    "wide",
    "transformers",
    "workers2",
    "float32",
    "budget3",
    "lmall",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm-clean", type=int, default=0, help="(LM sample) clean docs per category: not needed")
    ap.add_argument("--lm-poison", type=int, default=25, help="LM sample: poison docs per family row")
    ap.add_argument("--lm-all-docs", type=int, default=8, help="docs for the LM-on-everything row")
    ap.add_argument(
        "--speed-per-category",
        type=int,
        default=4,
        help="clean docs per category in the speed input (default 4: the LM runs ~1 doc/s on 2 idle cores)",
    )
    ap.add_argument(
        "--speed-rows",
        nargs="+",
        choices=SPEED_ROWS,
        default=list(SPEED_ROWS),
        help="rows of the speed table (nolm and default are always needed for the ratio)",
    )
    ap.add_argument("--no-recall", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-workers", action="store_true")
    ap.add_argument("--workers-mb", type=float, default=10.5, help="input size of the workers comparison")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.speed_rows = [r for r in SPEED_ROWS if r in {*args.speed_rows, "nolm", "default"}]
    out: list[str] = []
    summary: dict[str, Any] = {}
    if not args.no_recall:
        text, summary["recall"] = recall_section(args)
        out += text
    if not args.no_speed:
        text, summary["speed"] = speed_section(args, summary.get("recall"))
        out += text
    if not args.no_workers:
        text, summary["workers"] = workers_section(args)
        out += text
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
