"""Spun content-farm campaigns (P-FARM-spun): fit the campaign detector on one generator, test on the other.

Generators A and B (bench/spun.py) differ in carrier corpus (Wikipedia summaries / Debian handbook),
synonym source (OpenOffice thesaurus / WordNet), spinning mechanism (free per-copy swaps / one
spintax per campaign) and site chrome (news site / blog CMS). For each source the detector's
thresholds (``candidate_threshold``, ``core_min_domains``, ``min_containment``) are chosen on that
source alone: the highest campaign recall with at most ``--max-fp`` of its benign look-alikes
quarantined, ties to the most conservative setting. The fitted thresholds are then applied to the
other source. Reported per source: recall (share of campaign copies quarantined as a campaign) and
false positives (share of look-alikes quarantined) in-source, cross-source (the figure to quote) and
at the shipped defaults.

    python -m bench.bench_spun [--seed 0] [--intensity 0.5 1.0] [--json bench/out/spun.json] [--no-speed]
    python -m bench.bench_spun --legal-dedup-only   # only dedup's campaign rule on the legal notices

Dedup's campaign rule (filters/dedup.py) on each source's look-alikes, legal notices included, at
its shipped defaults: the legal-notice knobs are the ones set on source A's notices (core/legal.py,
shared with the campaign detector), so source B's notices are held out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import spun
from poisonguard.core import minhash
from poisonguard.filters import campaign

GRID = {
    "candidate_threshold": (0.15, 0.2, 0.3),
    "core_min_domains": (3, 4, 6),
    "min_containment": (0.3, 0.4, 0.5, 0.6),
    "min_varied_containment": (0.1, 0.2),
}


def build(source: str, seed: int, intensity: float) -> list[dict[str, Any]]:
    return [*spun.campaigns(source, seed, intensity=intensity), *spun.lookalikes(source, seed, legal=True)]


def evaluate(
    docs: list[dict[str, Any]], sketches: tuple[Any, list[Any]], cfg: campaign.Config
) -> dict[str, Any]:
    index = campaign.CampaignIndex(cfg)
    index.add([d["id"] for d in docs], [d["url"] for d in docs], *sketches)
    return figures(docs, [bool(r) for r in campaign.flag(index.assign(), cfg)])


def figures(docs: list[dict[str, Any]], flags: list[bool]) -> dict[str, Any]:
    """Recall (campaign copies flagged), false positives (look-alikes flagged), both in detail."""
    pos = [f for f, d in zip(flags, docs, strict=True) if d["label"] == 1]
    neg = Counter(d["family"] for f, d in zip(flags, docs, strict=True) if d["label"] == 0 and f)
    neg_total = Counter(d["family"] for d in docs if d["label"] == 0)
    by_size: dict[int, list[bool]] = {}
    for f, d in zip(flags, docs, strict=True):
        if d["label"] == 1:
            by_size.setdefault(d["domains"], []).append(f)
    n_neg = sum(neg_total.values())
    return {
        "recall": sum(pos) / len(pos),
        "fp": sum(neg.values()) / n_neg,
        "positives": len(pos),
        "negatives": n_neg,
        "recall_by_domains": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_size.items())},
        "fp_by_family": {f: f"{neg.get(f, 0)}/{n}" for f, n in sorted(neg_total.items())},
    }


# Second stage, with the GRID knobs fixed at their fit: how far under the bar a member of an
# established campaign may be (filters/campaign.py campaign_domains).
RELAXED_GRID = {"relaxed_share": (0.5, 0.75, 1.0)}


def fit(docs: list[dict[str, Any]], sketches: Any, max_fp: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid setting with the highest recall at false positives <= ``max_fp`` (:func:`fit_grid`;
    the plateau's centre: the median containment, then the median candidate threshold, then the
    median core), then ``relaxed_share`` the same way with those fixed."""
    params, _ = fit_grid(
        GRID,
        lambda p: evaluate(docs, sketches, campaign.Config(**p)),
        max_fp,
        ("min_containment", "min_varied_containment", "candidate_threshold", "core_min_domains"),
    )
    return fit_grid(
        {**{k: (v,) for k, v in params.items()}, **RELAXED_GRID},
        lambda p: evaluate(docs, sketches, campaign.Config(**p)),
        max_fp,
        ("relaxed_share",),
    )


def fit_grid(
    grid: dict[str, Sequence[Any]],
    score: Callable[[dict[str, Any]], dict[str, Any]],
    max_fp: float,
    centre: Sequence[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The setting of `grid` with the highest recall at false positives <= ``max_fp``. Settings that
    tie form a plateau; the choice is its centre, one knob at a time in the order `centre`, not an
    edge of it. `score(params)` gives :func:`figures`."""
    feasible: list[tuple[float, dict[str, Any], dict[str, Any]]] = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        res = score(params)
        if res["fp"] <= max_fp:
            feasible.append((round(res["recall"], 4), params, res))
    if not feasible:
        raise SystemExit(f"no setting in the grid keeps false positives <= {max_fp}")
    top = max(r for r, _, _ in feasible)
    plateau = [f for f in feasible if f[0] == top]
    for knob in centre:
        values = sorted(f[1][knob] for f in plateau)
        plateau = [f for f in plateau if f[1][knob] == values[len(values) // 2]]
    _, params, res = plateau[0]
    return params, res


def sketch_all(docs: list[dict[str, Any]], cfg: campaign.Config) -> Any:
    return campaign.sketch([d["text"] for d in docs], cfg)


def jaccard_band(docs: list[dict[str, Any]], pairs: int = 300) -> dict[str, float]:
    """Pairwise word 5-gram Jaccard between copies of the same campaign (first ``pairs`` pairs)."""
    by_cluster: dict[str, list[set[bytes]]] = {}
    for d in docs:
        if d["label"] == 1 and len(by_cluster.get(d["cluster"], [])) < 12:
            by_cluster.setdefault(d["cluster"], []).append(set(minhash.shingles(d["text"], 5)))
    js = sorted(
        len(a & b) / len(a | b) for sets in by_cluster.values() for a, b in itertools.combinations(sets, 2)
    )[: pairs * 10]
    n = len(js)
    return {"min": js[0], "p10": js[n // 10], "median": js[n // 2], "p90": js[9 * n // 10], "max": js[-1]}


def run(seed: int, intensity: float, max_fp: float = 0.005) -> dict[str, Any]:
    """Fit on each source, test on the other; everything the report shows, as a dict."""
    started = time.perf_counter()
    base = campaign.Config()
    data = {s: build(s, seed, intensity) for s in spun.SOURCES}
    sketches = {s: sketch_all(data[s], base) for s in spun.SOURCES}
    result: dict[str, Any] = {"seed": seed, "intensity": intensity, "max_fp": max_fp, "sources": {}}
    fitted = {s: fit(data[s], sketches[s], max_fp) for s in spun.SOURCES}
    for s in spun.SOURCES:
        other = "B" if s == "A" else "A"
        params, in_source = fitted[s]
        cross_params = fitted[other][0]
        result["sources"][s] = {
            "copies_jaccard5": jaccard_band(data[s]),
            "fitted_here": params,
            "in_source": in_source,
            "fitted_on_other": cross_params,
            "cross_source": evaluate(data[s], sketches[s], campaign.Config(**cross_params)),
            "default_config": evaluate(data[s], sketches[s], base),
        }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def speed(docs: list[dict[str, Any]], repeat: int = 3) -> dict[str, float]:
    """Seconds per stage, best of ``repeat``, for the campaign detector and, as the baseline in the
    same run on the same texts, dedup's signatures and index."""
    from poisonguard.filters import dedup

    texts = [d["text"] for d in docs]
    ids, urls = [d["id"] for d in docs], [d["url"] for d in docs]
    dcfg, ccfg = dedup.Config(), campaign.Config()

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    sigs = dedup.signatures(texts, dcfg)
    keys = dedup.content_keys(texts)
    sk = campaign.sketch(texts, ccfg)

    def dedup_index() -> None:
        index = dedup.DedupIndex(dcfg)
        index.add(ids, urls, keys, sigs)
        index.assign()

    def campaign_index() -> None:
        index = campaign.CampaignIndex(ccfg)
        index.add(ids, urls, *sk)
        index.assign()

    return {
        "docs": len(docs),
        "mb": sum(len(t.encode()) for t in texts) / 1e6,
        "dedup_signatures_s": best(lambda: dedup.signatures(texts, dcfg)),
        "campaign_sketch_s": best(lambda: campaign.sketch(texts, ccfg)),
        "dedup_index_s": best(dedup_index),
        "campaign_index_s": best(campaign_index),
    }


def dedup_on_legal(seed: int) -> dict[str, Any]:
    """Per source: of its look-alikes (legal notices included), how many dedup's campaign rule
    quarantines at its shipped defaults, with and without the legal exemption, and what becomes
    of the legal notices (quarantined, duplicate of a kept copy, kept)."""
    from poisonguard.core import legal as legal_notices
    from poisonguard.filters import dedup

    out: dict[str, Any] = {}
    cfg = dedup.Config()
    for s in spun.SOURCES:
        docs = spun.lookalikes(s, seed, legal=True)
        texts, ids = [d["text"] for d in docs], [d["id"] for d in docs]
        urls, keys = [d["url"] for d in docs], dedup.content_keys(texts)
        legal = [d["family"].startswith("legal-") for d in docs]
        row: dict[str, Any] = {"lookalikes": len(docs), "legal_notices": sum(legal)}
        for name, legal_cfg in (
            ("exempt", legal_notices.Config()),
            ("no_exemption", legal_notices.Config(sentence_share=None)),
        ):
            index = dedup.DedupIndex(cfg)
            flags = legal_notices.flags(texts, legal_cfg)
            index.add(ids, urls, keys, dedup.signatures(texts, cfg), legal_notices=flags)
            table = index.assign()
            flags = [bool(r) for r in dedup.flag(table, cfg)]
            roots = table.column("dedup_cluster_id").to_pylist()
            dup = [not f and r != i for f, r, i in zip(flags, roots, ids, strict=True)]
            row[name] = {
                "lookalikes_quarantined": sum(flags),
                "legal_quarantined": sum(f for f, g in zip(flags, legal, strict=True) if g),
                "legal_duplicate": sum(d for d, g in zip(dup, legal, strict=True) if g),
                "legal_flagged_legal": sum(
                    bool(v) for v, g in zip(table.column("dedup_legal").to_pylist(), legal, strict=True) if g
                ),
            }
        out[s] = row
    return out


def dedup_legal_report(result: dict[str, Any]) -> list[str]:
    out = [
        "#### Dedup's campaign rule on the legal look-alikes (shipped defaults)\n",
        "Legal-notice knobs set on source A's notices (shared with the campaign detector); source B's "
        "notices (terms-of-use template, Apache-2.0, MPL-2.0) held out. `quarantined` = `dedup:campaign`.\n",
        "| source | look-alikes | legal notices | read as legal (`dedup_legal`) | legal quarantined "
        "| legal duplicate (one copy kept per cluster) | all look-alikes quarantined "
        "| without the exemption: legal quarantined |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, r in result.items():
        e, n, total = r["exempt"], r["no_exemption"], r["legal_notices"]
        out.append(
            f"| {s}{' (held out)' if s == 'B' else ' (fit)'} | {r['lookalikes']} | {total} | "
            f"{e['legal_flagged_legal']} | {e['legal_quarantined']} "
            f"({pct(e['legal_quarantined'] / total)}) | "
            f"{e['legal_duplicate']} | {e['lookalikes_quarantined']} "
            f"({pct(e['lookalikes_quarantined'] / r['lookalikes'])}) | {n['legal_quarantined']} |"
        )
    return out + [""]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def report(result: dict[str, Any]) -> list[str]:
    """Markdown for one :func:`run` result."""
    return [
        f"#### Intensity {result['intensity']} (seed {result['seed']}; fit: highest recall at <= "
        f"{pct(result['max_fp'])} false positives, centre of the plateau)\n",
        *result_tables(result["sources"], {**GRID, **RELAXED_GRID}),
    ]


def result_tables(
    srcs: dict[str, Any], grid: dict[str, Any], extra: Sequence[tuple[str, str]] = (), unit: str = "campaign"
) -> list[str]:
    """The tables of a fit-on-one/test-on-the-other result (here and bench/bench_farm.py): per test
    source its figures, the knobs fitted on each source, and the cross-source figures in detail.
    `extra`: (result key, column header) of further recall / FP columns."""
    keys = ("in_source", "cross_source", "default_config", *(k for k, _ in extra))
    out = [
        "| test source | copies | look-alikes | pairwise J5 of copies (p10 / median / p90) "
        "| in-source recall / FP | **cross-source** recall / FP | shipped defaults recall / FP |"
        + "".join(f" {header} |" for _, header in extra),
        "|---|---:|---:|---|---|---|---|" + "---|" * len(extra),
    ]
    for s, r in srcs.items():
        j = r["copies_jaccard5"]
        cells = [f"{pct(r[k]['recall'])} / {pct(r[k]['fp'])}" for k in keys]
        cells[1] = f"**{cells[1]}**"
        out.append(
            f"| {s} | {r['in_source']['positives']} | {r['in_source']['negatives']} | "
            f"{j['p10']:.2f} / {j['median']:.2f} / {j['p90']:.2f} | " + " | ".join(cells) + " |"
        )
    out += ["", "| fitted on | " + " | ".join(grid) + " |", "|---|" + "---:|" * len(grid)]
    for s, r in srcs.items():
        out.append(f"| {s} | " + " | ".join(str(r["fitted_here"][k]) for k in grid) + " |")
    out += ["", f"Cross-source, per {unit} size (share of copies quarantined) and per look-alike family "
            "(quarantined / docs):", ""]  # fmt: skip
    for s, r in srcs.items():
        sizes = ", ".join(f"{k} domains {pct(v)}" for k, v in r["cross_source"]["recall_by_domains"].items())
        fams = ", ".join(f"{k} {v}" for k, v in r["cross_source"]["fp_by_family"].items())
        out.append(f"- test {s}: {sizes}; {fams}")
    return out + [""]


def speed_report(t: dict[str, float]) -> list[str]:
    out = [
        f"#### Speed: {t['docs']} docs, {t['mb']:.1f} MB (generators A and B), best of 3, one process\n",
        "| stage | seconds | MB/s | against dedup's stage (same run, same texts) |",
        "|---|---:|---:|---:|",
    ]
    pairs = (("campaign_sketch_s", "dedup_signatures_s"), ("campaign_index_s", "dedup_index_s"))
    for ours, theirs in pairs:
        for name in (theirs, ours):
            out.append(
                f"| {name[:-2]} | {t[name]:.2f} | {t['mb'] / t[name]:.1f} | {t[name] / t[theirs]:.2f}x |"
            )
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="campaign and look-alike draw")
    ap.add_argument(
        "--intensity",
        type=float,
        nargs="+",
        default=[spun.DEFAULT_INTENSITY, 1.0],
        help="spinning intensities to run (default: 0.5, the published band, and 1.0, harder)",
    )
    ap.add_argument("--max-fp", type=float, default=0.005)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-speed", action="store_true", help="skip timing the detector against dedup")
    ap.add_argument(
        "--legal-dedup-only", action="store_true", help="only dedup's campaign rule on the legal look-alikes"
    )
    args = ap.parse_args(argv)
    if args.legal_dedup_only:
        print("\n".join(dedup_legal_report(dedup_on_legal(args.seed))))
        return 0
    results = [run(args.seed, x, args.max_fp) for x in args.intensity]
    lines = [
        "Detector: filters/campaign.py. Generators (bench/spun.py): A = Wikipedia summaries + OpenOffice "
        "thesaurus (free per-copy swaps) + news chrome; B = Debian handbook + WordNet (one spintax per "
        "campaign) + blog chrome. Campaigns per source: three on 10 domains, two on 50, one on 500. "
        "Look-alikes (label clean): wire stories on 2-9 domains, mirrors on 2-6, CMS sites sharing a "
        "theme (3 pages per site, and one short page per site), forum quote chains and editions on one "
        "site, unrelated background articles, legal notices shared by unrelated sites (A: a privacy-policy "
        "template on 30 domains and GPL-3 on 15; B: a terms-of-use template on 30, Apache-2.0 and "
        "MPL-2.0 on 15 each); source B also translations of handbook pages (each language on its own "
        "domain). Fit on one source, test on the other; the shipped defaults are the fit on A.\n",
    ]
    for result in results:
        lines += report(result)
    lines += dedup_legal_report(dedup_on_legal(args.seed))
    if not args.no_speed:
        docs = [d for s in spun.SOURCES for d in build(s, args.seed, spun.DEFAULT_INTENSITY)]
        lines += speed_report(speed(docs))
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
