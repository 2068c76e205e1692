"""Split-view drift on real page history: two releases of a real documentation site as two nights.

Each release pair is the HTML documentation of one project in two Debian packages of different
versions (bench/data.py): Clang 14 -> 15, LLVM 14 -> 15, Borg 1.2 -> 2.0, and the OpenMP runtime 14 -> 15
(Doxygen HTML; never looked at while the drift rules were designed). Night 1 is every page of the
old release, night 2 every page of the new one at the same URLs (https://<site>.docs.example/<path>),
text extracted by the crawler's own extraction. Both nights run through ``run_nightly`` (the real
nightly code path: plan, filter with the drift detector, history, commit), without the LM.

On night 2, ``--swaps`` pages that exist in both releases are swapped (docs/THREATS.md P-SPLIT): their
text is replaced by

* ``other-site``: a page of another real documentation site (the Debian handbook, the Python 3.11 docs),
  what a buyer of an expired domain serves at a URL of a published corpus, or
* ``same-site``: another page of the same release (the hard case: same vocabulary, same chrome).

Measured per pair: benign pages of night 2 quarantined with a ``drift:`` reason (the churn cost; goal
<= 0.5% of the pages with history), and swapped pages caught (a ``drift:`` reason; goal >= 95%).
Pages quarantined by other detectors are counted apart: they say nothing about drift.
A second table gives what the whole run did with each swapped page (its own outcome at the shipped
settings): drift, another detector, ``duplicate`` (dedup: a copy of a document kept earlier) or kept.

Generalisation: ``drift.topic_threshold`` (the shared-vocabulary bar of ``drift:topic_changed``) is fitted
on one pair's benign churn (the largest value that keeps its benign cost at 0) and reported on the
other pairs with that value, beside the shipped default. Calibration uses only night-2 benign pages of
the fitting pair; the swapped pages are never used for fitting. ``drift:moved`` (a page that took over
the text another URL keeps serving) has no fitted knob: it reuses drift's and dedup's thresholds.

``--seeds N`` adds up N draws of the swapped pages (seeds 0..N-1) per pair; night 1 is run once per
pair and its state copied for each draw.

    python -m bench.bench_split_view [--pairs clang,llvm,borg,omp] [--swaps 20] [--fit clang,borg]
        [--seeds 1]

Prints Markdown on stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.data import cache_dir

# (night 1 folder, night 2 folder) under the cache, per pair
PAIRS: dict[str, tuple[str, str]] = {
    "clang": ("clang-14-doc/usr/share/doc/clang-14/html", "clang-15-doc/usr/share/doc/clang-15/html"),
    "llvm": ("llvm-14-doc/usr/share/doc/llvm-14-doc/html", "llvm-15-doc/usr/share/doc/llvm-15-doc/html"),
    "borg": (
        "borgbackup-doc/usr/share/doc/borgbackup/html",
        "borgbackup2-doc/usr/share/doc/borgbackup2/html",
    ),
    "omp": (
        "libomp-14-doc/usr/share/doc/libomp-14-dev/html",
        "libomp-15-doc/usr/share/doc/libomp-15-dev/html",
    ),
}
RELEASES = {
    "clang": "Clang 14 -> 15",
    "llvm": "LLVM 14 -> 15",
    "borg": "Borg 1.2 -> 2.0",
    "omp": "OpenMP runtime 14 -> 15",
}
DATES = ("2026-01-01", "2026-01-02")
MIN_CHARS = 200  # pages shorter than this (redirect stubs, empty indexes) are left out of both nights


def release_pages(folder: str) -> dict[str, str]:
    """Relative path -> visible text of every HTML page of a release (sources and static files left out)."""
    from poisonguard.crawler.raw import _extract

    root = cache_dir() / folder
    if not root.is_dir():
        raise SystemExit(f"{root}: missing; run `python -m bench.data` first")
    out = {}
    for path in sorted(root.rglob("*.html")):
        rel = str(path.relative_to(root))
        if rel.startswith(("_static/", "_sources/", "_modules/")):
            continue
        text = _extract(path.read_bytes(), "text/html; charset=utf-8")[0]
        if len(text) >= MIN_CHARS:
            out[rel] = text
    return out


@functools.lru_cache(maxsize=1)
def other_site_texts() -> list[str]:
    """Pages of two other real documentation sites: what a swapped URL serves in the other-site case."""
    from bench.corpus import handbook_pages, html_to_text, python_docs_dir

    texts = [html_to_text(html) for _, html in handbook_pages("en")]
    texts += [
        html_to_text(p.read_text("utf-8", "replace")) for p in sorted(python_docs_dir().rglob("*.html"))
    ]
    return [t for t in texts if len(t) >= 1000]


def url(site: str, rel: str) -> str:
    return f"https://{site}.docs.example/{rel}"


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")


def _night(out: Path) -> dict[str, dict[str, Any]]:
    """Document id -> outcome, reasons and the drift columns, from a finished night's shards."""
    cols = ["id", "outcome", "reasons", "drift_changed", "drift_topic_similarity"]
    found: dict[str, dict[str, Any]] = {}
    for folder in ("clean", "quarantine"):
        for shard in sorted((out / folder).glob("part-*.parquet")):
            names = pq.read_schema(shard).names
            for row in pq.read_table(shard, columns=[c for c in cols if c in names]).to_pylist():
                row.setdefault("outcome", "kept")
                row["reasons"] = list(row.get("reasons") or [])
                found[row["id"]] = row
    return found


def caught(row: dict[str, Any] | None, bar: float) -> bool:
    """Whether the drift detector quarantines the row with the topic bar ``bar`` (drift.drift_reasons'
    rules: the other drift reasons as recorded, topic_changed recomputed for ``bar``)."""
    if row is None:
        return False
    others = [r for r in row["reasons"] if r.startswith("drift:") and not r.startswith("drift:topic_changed")]
    topic = row.get("drift_topic_similarity")
    return bool(others) or bool(row.get("drift_changed") and topic is not None and topic < bar)


def swap_pages(
    new: dict[str, str], common: list[str], swaps: int, seed: int
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Night 2 of one draw: (pages with the swaps in, swapped path -> kind, same-site swap -> the
    page whose text it got)."""
    rng = random.Random(seed)
    k = min(swaps, len(common) // 5)
    chosen = rng.sample(common, 2 * k)
    kinds = {rel: ("other-site" if i < k else "same-site") for i, rel in enumerate(chosen)}
    pool = other_site_texts()
    night2 = dict(new)
    source: dict[str, str] = {}
    # a source is a page not swapped itself: its night-2 outcome is then that of its own text
    unswapped = [r for r in new if r not in kinds]
    for rel, kind in kinds.items():
        if kind == "other-site":
            night2[rel] = rng.choice(pool)
        else:
            source[rel] = rng.choice(unswapped)
            night2[rel] = new[source[rel]]
    return night2, kinds, source


def run_pair(site: str, swaps: int, seeds: list[int]) -> list[dict[str, Any]]:
    """Two nights of one release pair through run_nightly, per draw of swapped pages (``seeds``);
    night 2's rows by kind of page. Night 1 is run once and its state copied for each draw."""
    import shutil

    from poisonguard.pipelines.nightly import run_nightly
    from poisonguard.pipelines.nightly_config import NightlyConfig

    old, new = (release_pages(f) for f in PAIRS[site])
    common = sorted(set(old) & set(new))
    cfg = NightlyConfig(use_lm=False, pipeline={"perplexity": {"enabled": False}})
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)

        def night(n: int, pages: dict[str, str], root: Path, tag: str) -> dict[str, dict[str, Any]]:
            landing = base / f"night{n}{tag}"
            landing.mkdir()
            records = [
                {"id": f"{rel}@{n}", "url": url(site, rel), "text": t} for rel, t in sorted(pages.items())
            ]
            _write(landing / "pages.jsonl", records)
            run_nightly(cfg, base=base, date=DATES[n - 1], inputs=[str(landing / "*.jsonl")], out=root)
            return _night(root / DATES[n - 1])

        first = night(1, old, base / "root1", "")
        for seed in seeds:
            night2, kinds, source = swap_pages(new, common, swaps, seed)
            root = base / f"root2-{seed}"
            shutil.copytree(base / "root1", root)
            second = night(2, night2, root, f"-{seed}")
            out.append(_outcomes(new, common, first, second, kinds, source))
            shutil.rmtree(root)
    return out


def _outcomes(
    new: dict[str, str],
    common: list[str],
    first: dict[str, dict[str, Any]],
    second: dict[str, dict[str, Any]],
    kinds: dict[str, str],
    source: dict[str, str],
) -> dict[str, Any]:
    """One draw's night-2 rows by kind of page."""
    # Drift compares with the last *accepted* version: a page quarantined on night 1 has none.
    accepted = {rel for rel in common if first.get(f"{rel}@1", {}).get("outcome") != "quarantined"}
    return {
        "pages": len(new),
        "common": len(common),
        "accepted": len(accepted),
        "benign": [second.get(f"{r}@2") for r in sorted(accepted - set(kinds))],
        "benign_other": sum(
            1
            for r in accepted - set(kinds)
            if second.get(f"{r}@2", {}).get("outcome") == "quarantined"
            and not any(x.startswith("drift:") for x in second[f"{r}@2"]["reasons"])
        ),
        "swapped": {
            kind: [_with_rel(second, r) for r in sorted(accepted) if kinds.get(r) == kind]
            for kind in ("other-site", "same-site")
        },
        "swapped_total": {
            kind: sum(1 for r in kinds if kinds[r] == kind) for kind in ("other-site", "same-site")
        },
        # the night-2 outcome of the page each comparable same-site swap copied (whole pipeline)
        "source_outcome": {
            r: second.get(f"{source[r]}@2", {}).get("outcome", "absent")
            for r in sorted(accepted)
            if r in source
        },
    }


def _with_rel(rows: dict[str, dict[str, Any]], rel: str) -> dict[str, Any] | None:
    """Night 2's row of the page at ``rel``, with ``rel`` in it (None when the run has no row)."""
    row = rows.get(f"{rel}@2")
    return None if row is None else {**row, "rel": rel}


def pipeline_outcome(row: dict[str, Any] | None) -> str:
    """What the whole pipeline did with a swapped page at the shipped settings: ``drift`` (quarantined
    with a drift reason), ``other detector`` (quarantined, no drift reason), ``duplicate`` (a copy of a
    document kept before or earlier in the night: dropped from the clean shards) or ``kept``."""
    if row is None:
        return "absent"
    if row["outcome"] == "quarantined":
        return "drift" if any(r.startswith("drift:") for r in row["reasons"]) else "other detector"
    return str(row["outcome"])


def topic_values(site: str) -> list[float]:
    """drift_topic_similarity of every benign page of a pair that drifted (shingle similarity < 0.3):
    what the topic bar is fitted on. Computed with the detector's own functions, no nightly run."""
    import numpy as np

    from poisonguard.core import minhash
    from poisonguard.filters import dedup, drift

    old, new = (release_pages(f) for f in PAIRS[site])
    common = sorted(set(old) & set(new))
    dcfg = dedup.Config()
    sig_old = drift.drift_signatures([old[r] for r in common], None, dcfg)
    sig_new = drift.drift_signatures([new[r] for r in common], None, dcfg)
    empty = minhash.empty_value(dcfg.scheme)
    out = []
    for i, rel in enumerate(common):
        version = drift.Version(
            "d", drift.text_sha256(old[rel]), np.asarray(sig_old[i]), drift.topic_sketch(old[rel])
        )
        sim = drift.similarity(drift.text_sha256(new[rel]), np.asarray(sig_new[i]), version, empty)
        if sim is not None and sim < drift.Config().threshold:
            topic = drift.topic_similarity(drift.topic_words(new[rel]), version.topic)
            if topic is not None:
                out.append(topic)
    return out


def fit_threshold(site: str) -> float:
    """The largest topic bar (0.01 steps) under which no benign drifted page of ``site`` falls."""
    values = topic_values(site)
    lowest = min(values, default=1.0)
    return max(0.0, round(int(lowest * 100) / 100 - 0.01, 2))


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One pair's runs over several draws (seeds) as one result: counts added, rows put together
    (a swapped page's ``rel`` and its source's key get the draw's number in front)."""
    if len(runs) == 1:
        return runs[0]
    out: dict[str, Any] = {
        "pages": runs[0]["pages"],
        "common": runs[0]["common"],
        "accepted": sum(r["accepted"] for r in runs),
        "benign": [x for r in runs for x in r["benign"]],
        "benign_other": sum(r["benign_other"] for r in runs),
        "swapped": {kind: [] for kind in ("other-site", "same-site")},
        "swapped_total": {
            kind: sum(r["swapped_total"][kind] for r in runs) for kind in ("other-site", "same-site")
        },
        "source_outcome": {},
    }
    for n, r in enumerate(runs):
        for kind, rows in r["swapped"].items():
            out["swapped"][kind] += [None if x is None else {**x, "rel": f"{n}:{x['rel']}"} for x in rows]
        out["source_outcome"].update({f"{n}:{rel}": v for rel, v in r["source_outcome"].items()})
    return out


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / max(b, 1):.1f}%)"


def _pipeline_table(results: dict[str, dict[str, Any]]) -> None:
    """Swapped pages by what the whole pipeline did with them (shipped settings): the drift detector is
    one way out of the clean shards; dedup is another for a page copied from elsewhere on the site."""
    from collections import Counter

    print(
        "\nWhole pipeline, shipped settings (the run's own outcomes): swapped pages by outcome\n\n"
        "| pair | kind | swapped | drift | other detector | duplicate | reached the clean shards "
        "| stopped (not in the clean shards) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for site, r in results.items():
        for kind in ("other-site", "same-site"):
            rows = r["swapped"][kind]
            n = Counter(pipeline_outcome(x) for x in rows)
            print(
                f"| {RELEASES[site]} | {kind} | {len(rows)} | {n['drift']} | {n['other detector']} "
                f"| {n['duplicate']} | {n['kept']} | {_pct(len(rows) - n['kept'], len(rows))} |"
            )
        kept_sources = Counter(
            r["source_outcome"][x["rel"]] for x in r["swapped"]["same-site"] if pipeline_outcome(x) == "kept"
        )
        if kept_sources:
            print(
                f"<!-- {site}: the pages that same-site swaps kept in the clean shards were copied from: "
                f"{dict(kept_sources)} (night-2 outcome of the source page) -->"
            )


def main() -> None:
    from poisonguard.filters import drift

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="clang,llvm,borg,omp")
    parser.add_argument(
        "--swaps", type=int, default=20, help="swapped pages of each kind per pair (at most 1/5)"
    )
    parser.add_argument("--fit", default="clang,borg", help="pairs the topic bar is fitted on, one at a time")
    parser.add_argument(
        "--seeds", type=int, default=1, help="draws of the swapped pages per pair (seeds 0..N-1), added up"
    )
    args = parser.parse_args()
    pairs = [p for p in args.pairs.split(",") if p]
    bars = {"shipped default": drift.Config().topic_threshold}
    for fit in (f for f in args.fit.split(",") if f):
        values = topic_values(fit)
        bars[f"fit on {fit}"] = fit_threshold(fit)
        print(
            f"- fit on {fit} ({RELEASES[fit]}): benign drifted pages' shared vocabulary "
            f"{', '.join(f'{v:.2f}' for v in sorted(values))} -> bar {bars[f'fit on {fit}']}"
        )
    print(
        "\n| pair | bar | pages (with accepted history) | benign quarantined by drift | other detectors "
        "| other-site swaps caught | same-site swaps caught |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    results = {}
    for site in pairs:
        r = results[site] = merge_runs(run_pair(site, args.swaps, list(range(args.seeds))))
        for label, bar in bars.items():
            held = "in-source" if label == f"fit on {site}" else "held out" if label.startswith("fit") else ""
            other, same = r["swapped"]["other-site"], r["swapped"]["same-site"]
            print(
                f"| {RELEASES[site]} | {label} {bar}{f' ({held})' if held else ''} "
                f"| {r['pages']} ({r['accepted']}) "
                f"| {_pct(sum(caught(x, bar) for x in r['benign']), r['accepted'])} | {r['benign_other']} "
                f"| {_pct(sum(caught(x, bar) for x in other), len(other))} "
                f"| {_pct(sum(caught(x, bar) for x in same), len(same))} |",
                flush=True,
            )
        print(
            f"<!-- {site}: swapped pages without an accepted night-1 version (not comparable): "
            f"{r['swapped_total']['other-site'] - len(r['swapped']['other-site'])} other-site, "
            f"{r['swapped_total']['same-site'] - len(r['swapped']['same-site'])} same-site -->"
        )
    _pipeline_table(results)
    print("\nGoals (issue 13 item 8): benign quarantined by drift <= 0.5%, swapped caught >= 95%.")


if __name__ == "__main__":
    main()
