"""Content farms whose copies are not spun (P-FARM): dedup's campaign rule fitted on one generator,
tested on the other.

Generators (bench/generators.py): A (``p_farm``) = a Wikipedia or handbook page plus a planted claim
at its end, 1-3 word edits and a dateline per copy, plain text; B (``p_farm_b``) = the opening of a
Brown-corpus press article with another planted claim inside it, other edits (a figure changed, two
words swapped, an attribution) and each copy an HTML page in its own site's chrome, read through the
crawler's HTML pass. Farms per generator: three on 10 domains, two on 50, two on 500, and three
more (10, 50, 500 domains) whose copies carry no word edits (the article verbatim). Benign
look-alikes (label clean) of the same kind of page: bench/spun.py's families of source A (news
chrome) beside generator A and of source B (blog chrome) beside generator B: wire stories on 2-9
domains, mirrors on 2-6, CMS sites sharing a theme, forum quote chains, editions on one site,
unrelated background articles, legal notices shared by unrelated sites (B: also translations).
Their carriers share no paragraph with a farm.

The knobs fitted are dedup's (``threshold``, ``campaign_min_domains``): on each generator alone, the
highest share of farm copies quarantined as ``dedup:campaign`` with at most ``--max-fp`` of the
look-alikes quarantined, ties to the centre of the plateau; then applied to the other generator.
Reported per generator: recall and false positives in-source, cross-source (the figure to quote) and
at the shipped defaults. Then the pipeline as shipped (dedup at its defaults plus the campaign
detector) with the campaign detector's ``verbatim_core_sentences`` fitted the same way (each farm
indexed alone with all the look-alikes).

    python -m bench.bench_farm [--seed 0] [--max-fp 0.005] [--json bench/out/farm.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import corpus, generators, spun
from bench.bench_spun import figures, fit_grid, jaccard_band, pct, result_tables
from poisonguard.core import legal
from poisonguard.filters import campaign, dedup

SOURCES = ("A", "B")
SIZES = (10, 10, 10, 50, 50, 500, 500)
# Farms whose copies carry no word edits at all (the article verbatim, only the chrome or dateline
# differs): every sentence is then verbatim on every domain, as a theme's footer is.
VERBATIM_SIZES = (10, 50, 500)
GRID = {
    "threshold": (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9),
    "campaign_min_domains": (3, 5, 8, 10, 15, 20),
}
# The campaign detector's knob for copies that are not spun (filters/campaign.py); its other
# thresholds stay at the shipped defaults, which bench/bench_spun.py fits on spun campaigns.
CAMPAIGN_GRID = {"verbatim_core_sentences": (4, 6, 8, 10, 12, 16, 20)}

Doc = dict[str, Any]


def farms(source: str, seed: int) -> list[Doc]:
    """The farms of one generator (SIZES, then VERBATIM_SIZES without word edits), with `text` as
    the pipeline reads it."""
    if source == "A":
        # poisonbench's carriers: every Wikipedia and handbook category (bench/poisonbench.py)
        names = [n for n in corpus.categories() if n.startswith(("wiki-", "handbook-"))]
        carriers = corpus.clean_base(only=names, seed=seed)
        edited = generators.p_farm(carriers, len(SIZES), seed, SIZES)
        verbatim = generators.p_farm(carriers, len(VERBATIM_SIZES), seed + 1, VERBATIM_SIZES, edits=False)
    else:
        from poisonguard.crawler.html import extract

        pages = generators.p_farm_b(len(SIZES), seed, SIZES)
        edited = [{**d, "text": extract(d["html"]).text} for d in pages]
        pages = generators.p_farm_b(len(VERBATIM_SIZES), seed + 1, VERBATIM_SIZES, edits=False)
        verbatim = [{**d, "text": extract(d["html"]).text} for d in pages]
    renamed = [{**d, "id": f"verbatim-{d['id']}", "cluster": f"verbatim-{d['cluster']}"} for d in verbatim]
    return edited + renamed


def build(seed: int) -> dict[str, list[Doc]]:
    """Per generator its farms and its look-alikes; no look-alike carrier holds a farm's paragraph."""
    poison = {s: farms(s, seed) for s in SOURCES}
    spun.reserve([str(d["text"]) for docs in poison.values() for d in docs])
    # Legal notices included: dedup marks them (dedup_legal) and never quarantines them as a campaign.
    return {s: [*poison[s], *spun.lookalikes(s, seed, legal=True)] for s in SOURCES}


class Signed:
    """The documents of one generator with their MinHash signatures and content keys (computed once;
    the fitted knobs do not change them)."""

    def __init__(self, docs: list[Doc], cfg: dedup.Config) -> None:
        texts = [str(d["text"]) for d in docs]
        self.docs = docs
        self.sigs = np.asarray(dedup.signatures(texts, cfg))
        self.keys = dedup.content_keys(texts)
        self.legal = legal.flags(texts, legal.Config())  # the fitted knobs do not change them either

    def flagged(self, cfg: dedup.Config) -> list[bool]:
        index = dedup.DedupIndex(cfg)
        ids, urls = [d["id"] for d in self.docs], [d["url"] for d in self.docs]
        index.add(ids, urls, self.keys, self.sigs, legal_notices=self.legal)
        return [bool(r) for r in dedup.flag(index.assign(), cfg)]

    def flagged_by_campaign(self, params: dict[str, Any] | None = None) -> list[bool]:
        """The campaign detector (filters/campaign.py) at its shipped defaults, or with `params`.
        Each farm is indexed alone with all the look-alikes, as one farm among a crawl's other
        pages: farms of one generator can share an article and merge into one group, which would
        hide how the detector treats one farm. A look-alike counts as flagged when any run flags it."""
        cfg = campaign.Config(**(params or {}))
        if not hasattr(self, "_sketches"):
            self._sketches = campaign.sketch([str(d["text"]) for d in self.docs], campaign.Config())
        clean = [i for i, d in enumerate(self.docs) if d["label"] == 0]
        flags = [False] * len(self.docs)
        for farm in sorted({str(d["cluster"]) for d in self.docs if d["label"] == 1}):
            members = [i for i, d in enumerate(self.docs) if d.get("cluster") == farm] + clean
            index = campaign.CampaignIndex(cfg)
            index.add(
                [self.docs[i]["id"] for i in members],
                [self.docs[i]["url"] for i in members],
                self._sketches[0][members],
                *([part[i] for i in members] for part in self._sketches[1:]),
            )
            for i, reasons in zip(members, campaign.flag(index.assign(), cfg), strict=True):
                flags[i] = flags[i] or bool(reasons)
        return flags


def evaluate(signed: Signed, cfg: dedup.Config, also: list[bool] | None = None) -> dict[str, Any]:
    """Recall (farm copies quarantined as dedup:campaign, or by `also`) and false positives
    (look-alikes quarantined)."""
    flags = signed.flagged(cfg)
    if also is not None:
        flags = [a or b for a, b in zip(flags, also, strict=True)]
    return figures(signed.docs, flags)


def fit(signed: Signed, max_fp: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid setting with the highest recall at false positives <= ``max_fp``; among settings that
    tie, the median threshold, then the median domain count (the plateau's centre, not its edge)."""
    return fit_grid(GRID, lambda params: evaluate(signed, dedup.Config(**params)), max_fp, tuple(GRID))


def pipeline(signed: Signed, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `poisonguard filter` quarantines as a campaign: dedup at its shipped defaults, plus the
    campaign detector at its defaults or with `params`."""
    return evaluate(signed, dedup.Config(), signed.flagged_by_campaign(params))


def fit_pipeline(signed: Signed, max_fp: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """CAMPAIGN_GRID's setting with the highest recall at false positives <= ``max_fp``, the
    plateau's centre."""
    return fit_grid(CAMPAIGN_GRID, lambda params: pipeline(signed, params), max_fp, tuple(CAMPAIGN_GRID))


def run(seed: int, max_fp: float = 0.005) -> dict[str, Any]:
    """Fit on each generator, test on the other; everything the report shows, as a dict."""
    started = time.perf_counter()
    base = dedup.Config()
    signed = {s: Signed(docs, base) for s, docs in build(seed).items()}
    fitted = {s: fit(signed[s], max_fp) for s in SOURCES}
    fitted_pipeline = {s: fit_pipeline(signed[s], max_fp) for s in SOURCES}
    result: dict[str, Any] = {"seed": seed, "max_fp": max_fp, "sources": {}, "pipeline": {}}
    for s in SOURCES:
        other = "B" if s == "A" else "A"
        params, in_source = fitted[s]
        result["sources"][s] = {
            "copies_jaccard5": jaccard_band(signed[s].docs),
            "fitted_here": params,
            "in_source": in_source,
            "fitted_on_other": fitted[other][0],
            "cross_source": evaluate(signed[s], dedup.Config(**fitted[other][0])),
            "default_config": evaluate(signed[s], base),
            "default_pipeline": pipeline(signed[s]),
        }
        result["pipeline"][s] = {
            "copies_jaccard5": result["sources"][s]["copies_jaccard5"],
            "fitted_here": fitted_pipeline[s][0],
            "in_source": fitted_pipeline[s][1],
            "fitted_on_other": fitted_pipeline[other][0],
            "cross_source": pipeline(signed[s], fitted_pipeline[other][0]),
            "default_config": pipeline(signed[s]),
        }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def report(result: dict[str, Any]) -> list[str]:
    intro = (
        "Detector: dedup's campaign rule (filters/dedup.py, `dedup:campaign`). Generators "
        "(bench/generators.py): A = `p_farm` (a Wikipedia or handbook page cut at 1,500 characters plus "
        "a claim, word edits, a dateline, plain text); B = `p_farm_b` (a Brown press article with another "
        "claim inside, other edits, HTML pages in per-site chrome through the crawler's HTML pass). Farms "
        "per generator: three on 10 domains, two on 50, two on 500, and three (10, 50, 500) whose copies "
        "carry no word edits. Look-alikes: bench/spun.py's benign "
        "families of source A beside generator A, of source B beside B. Fit on one generator, test on "
        "the other. The last column adds the spun-campaign detector (filters/campaign.py; its own "
        "cross-source fit is section spun) at its defaults, so it is what `poisonguard filter` "
        "quarantines as a campaign; those defaults were fitted on spun source A, whose look-alikes are "
        "generator A's here, except `verbatim_core_sentences`, which is the fit on farm generator B "
        "of the last table.\n"
    )
    return [
        intro,
        f"Seed {result['seed']}; fit: highest recall at <= {pct(result['max_fp'])} false positives, "
        f"centre of the plateau; {result['seconds']:.0f} s.\n",
        *result_tables(
            result["sources"], GRID, (("default_pipeline", "shipped defaults + campaign detector"),), "farm"
        ),
        "#### The pipeline: dedup at its defaults + the campaign detector, its verbatim rule fitted\n",
        "What `poisonguard filter` quarantines as a campaign (`dedup:campaign`, `campaign:spun`, "
        "`campaign:copied`), with the campaign detector's `verbatim_core_sentences` (a group core of "
        "that many sentences verbatim on nearly all its domains confirms its copies: a long article "
        "copied word for word, not a theme's banner and footer) fitted on one generator and tested on "
        "the other; every other knob at its shipped default. Each farm is indexed alone with all the "
        "look-alikes. Generator A's verbatim farms are plain text without chrome, so dedup takes them "
        "whatever the knob; on A the knob is bounded only from below (the one-page CMS look-alikes).\n",
        *result_tables(result["pipeline"], CAMPAIGN_GRID, (), "farm"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-fp", type=float, default=0.005)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result = run(args.seed, args.max_fp)
    print("\n".join(report(result)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
