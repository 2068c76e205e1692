"""Trigger mining (filters/trigger_mining.py) on the real clean base, with and without P-RARE.

    python -m bench.bench_trigger_mining [--per-half 3000] [--seed 0] [--lm]

Clean: two halves of `--per-half` pages that share no source, category or language:

* **A**: English and code: python-docs, handbook-en, the English hard negatives, the Clang 15, LLVM
  15 and Borg HTML docs (code identifiers, units, command names), held-out prose (forum, fiction,
  Austen, news; bench/babble_gen.py), sampled to 90% of the half, then wiki-en pages;
  P-RARE carriers: other wiki-en pages;
* **B**: the other languages: the Debian handbook in eight languages, 200 UDHR translations (short
  words of 200 languages), Persian ZWNJ and Arabic RLM paragraphs, then wiki-fr and wiki-es pages;
  P-RARE carriers: other wiki-fr and wiki-es pages.

Carriers are wiki pages kept out of the clean half (a hash of the id), so a poisoned page never has
its clean twin in the run. Every clean page is put on one of 400 random hosts (a stress test: the
host floor no longer protects single-site words). Poison: P-RARE (1-3 tokens at random word
positions, each page on its own domain) at 0.5%, 1% and 2% of the clean count, with the published
tokens T1 (`cf mn bb tq mb`) and a set never used for tuning, T2 (`zx qo vk ju yb`). At 0.5% a half
holds 15 poisoned pages on 15 hosts: over the 10-host floor; the mining floor is 10 pages
(`min_group_docs`; `min_doc_share` 0.3% of 3,000 is 9).

`--lm` adds the ONION check (the default language model; windows cached in bench/out/ so a rerun only
scores what is new). Its one fitted knob, `min_disruption`, is fitted on a clean half alone (the
largest median disruption of its groups in at least half the mining floor's pages and hosts as the
miner counts them (`unsure_page_weight`), plus a margin, or the configured value if larger; see
`fit_threshold`) and reported on the other half with
both token sets (held out), beside the value fitted on the same half (in-source). No token set is
used for fitting. Every page carries the language detector's columns (default config), as the
pipeline's scored chunks do: the miner measures words per page language.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import pickle
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from bench import babble_gen, corpus, generators
from poisonguard.filters import trigger_mining as tm

T1 = ("cf", "mn", "bb", "tq", "mb")
T2 = ("zx", "qo", "vk", "ju", "yb")
HALF_B = ("wiki-fr", "wiki-es", "handbook-fr", "handbook-de", "handbook-es", "handbook-ja")
HALF_B += (
    "handbook-ru",
    "handbook-ar",
    "handbook-zh",
    "handbook-fa",
    "udhr",
    "unicode-fa-zwnj",
    "unicode-ar-rlm",
)
CACHE = Path("bench/out/trigger_mining_lm_cache.pkl")
GROUPS_DUMP = Path("bench/out/trigger_mining_groups.jsonl")
CONTROLS = ("zqxv", "xjkq")  # reference non-words when the configuration names none
MARGIN = 0.5  # nats above the largest clean disruption of the fit half


class CachedScorer:
    """The default LM's window NLLs, cached on disk by window (the clean halves' windows are the same
    in every case)."""

    def __init__(self) -> None:
        self.cache: dict[bytes, np.ndarray] = pickle.loads(CACHE.read_bytes()) if CACHE.exists() else {}
        self.scorer: Any = None

    @property
    def lm(self) -> Any:
        return self._scorer().lm

    def _scorer(self) -> Any:
        if self.scorer is None:
            from poisonguard.filters import perplexity
            from poisonguard.pipelines.config import load_config

            self.scorer = perplexity.PerplexityScorer(load_config().perplexity)
        return self.scorer

    def window_nll(self, windows: list[list[int]]) -> list[np.ndarray]:
        keys = [hashlib.sha1(np.asarray(w, np.int64).tobytes()).digest() for w in windows]
        todo = sorted({k: w for k, w in zip(keys, windows, strict=True) if k not in self.cache}.items())
        for start in range(0, len(todo), 256):  # saved as it goes: an interrupted run loses little
            part = todo[start : start + 256]
            for (k, _), nll in zip(part, self._scorer().window_nll([w for _, w in part]), strict=True):
                self.cache[k] = nll
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            tmp = CACHE.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(self.cache))
            tmp.replace(CACHE)
        return [self.cache[k] for k in keys]


CODE_DOCS = (  # real documentation sites full of code identifiers (bench/data.py), for half A
    "clang-15-doc/usr/share/doc/clang-15/html",
    "llvm-15-doc/usr/share/doc/llvm-15-doc/html",
    "borgbackup-doc/usr/share/doc/borgbackup/html",
)
HALF_A = ("python-docs", "handbook-en", "discusses-attacks", "lookalike-benign", "near-dup-pair")
HALF_A += ("a11y-hidden-html", "unicode-emoji-zwj")
GENRES = {"forum": 600, "fiction": 200, "austen": 200, "news": 200}  # held-out prose pages per genre
UDHR_PAGES = 200  # of 530 languages: each adds its own short words (the LM reads them: the bench's cost)


def _code_docs() -> list[dict]:
    from bench.bench_split_view import release_pages

    out = []
    for folder in CODE_DOCS:
        site = folder.split("/")[0]
        for rel, text in release_pages(folder).items():
            out.append({"id": f"clean-{site}-{rel}", "text": text, "url": f"https://{site}.example/{rel}"})
            out[-1]["category"] = site
    return out


def halves(per_half: int, seed: int) -> dict[str, tuple[list[dict], list[dict]]]:
    """Half name -> (clean pages, carrier pages). Each half: its own sources (no category or language
    shared), filled up to `per_half` clean pages with its wiki pages; the other wiki pages of its
    languages (a hash of the id) are its P-RARE carriers, never in the clean half."""
    base = corpus.clean_base(seed=seed)
    rng = random.Random(seed)
    udhr = [d for d in base if d["category"] == "udhr"]
    own = {
        "A": [d for d in base if d["category"] in HALF_A] + _code_docs(),
        "B": [
            d for d in base if d["category"] in HALF_B and d["category"] not in ("udhr", "wiki-fr", "wiki-es")
        ]
        + rng.sample(udhr, min(len(udhr), UDHR_PAGES)),
    }
    for genre, n in GENRES.items():
        own["A"] += babble_gen.clean_genre_docs(genre, n, seed)
    for name, docs in own.items():  # at most 90% of a half: the rest are its wiki pages
        if len(docs) > 0.9 * per_half:
            own[name] = rng.sample(docs, int(0.9 * per_half))
    wiki = {"A": ("wiki-en",), "B": ("wiki-fr", "wiki-es")}
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    for name, docs in own.items():
        pages = [d for d in base if d["category"] in wiki[name]]
        held = [d for d in pages if zlib.crc32(d["id"].encode()) % 4 == 0]
        rest = [d for d in pages if zlib.crc32(d["id"].encode()) % 4 != 0]
        fill = rng.sample(rest, max(0, min(len(rest), per_half - len(docs))))
        out[name] = (docs + fill, held)
    return out


def with_languages(docs: list[dict]) -> list[dict]:
    """The pages with the language detector's `language_lang` (default config), as the pipeline's
    scored chunks carry it: the miner's word languages come from it."""
    from poisonguard.filters import language
    from poisonguard.pipelines.config import load_config

    if docs:
        table = pa.table({"text": [str(d["text"]) for d in docs]})
        scores = language.score(table, load_config().language)
        for column in (tm.LANGUAGE_COLUMN, tm.CONFIDENCE_COLUMN):
            for d, value in zip(docs, scores[column].to_pylist(), strict=True):
                d[column] = value
    return docs


def page_languages(docs: list[dict], cfg: tm.Config) -> list[str]:
    """The miner's page languages of `docs` (see tm.page_languages)."""
    columns = (tm.LANGUAGE_COLUMN, tm.CONFIDENCE_COLUMN)
    table = pa.Table.from_pylist([{c: d[c] for c in columns} for d in docs])
    return tm.page_languages(table, cfg) or []


def clean_partial(clean: list[dict], cfg: tm.Config) -> tuple[tm.TriggerMiner, list[str]]:
    """A miner that has observed a clean half, every page on one of 400 random hosts (the stress test:
    the host floor no longer protects single-site words), in chunks of 500 as the engines merge them;
    the texts in input order. Copied for each case (the clean half is the same in every case)."""
    rng = random.Random(1)
    texts = [d["text"] for d in clean]
    hosts = [f"h{rng.randrange(400)}.example" for _ in clean]
    langs = page_languages(clean, cfg)
    miner = tm.TriggerMiner(cfg)
    for first in range(0, len(clean), 500):
        part = slice(first, first + 500)
        miner.merge(tm.chunk_partial(texts[part], hosts[part], first, cfg, langs[part]))
    return miner, texts


def mine(base: tuple[tm.TriggerMiner, list[str]], poison: list[dict], scorer: Any) -> tm.TriggerMiner:
    """The clean half's miner with `poison` (each page on its own domain) appended, LM-checked."""
    miner = copy.deepcopy(base[0])
    texts = base[1] + [d["text"] for d in poison]
    hosts = [tm.host_of(d.get("url")) for d in poison]
    first = len(base[1])
    if poison:
        langs = page_languages(with_languages(poison), miner.cfg)
        miner.merge(tm.chunk_partial([d["text"] for d in poison], hosts, first, miner.cfg, langs))
    if scorer is not None:
        wanted = miner.onion_requests()
        miner.add_contexts(texts, 0, wanted)
        miner.confirm(scorer)
    return miner


# The LM check's two decision rules: (config knob, the group's figure it is compared with). The
# absolute rule compares the group's median disruption with `min_disruption`; the relative rule its
# median disruption less the reference non-words' in the same contexts (`onion_controls`).
RULES = {
    "absolute": ("min_disruption", "group_disruption"),
    "relative": ("min_relative_disruption", "group_relative"),
}


def decided(miner: tm.TriggerMiner, cfg: tm.Config, rule: str, value: float | None = None) -> tm.TriggerMiner:
    """The same statistics and LM readings (the controls read whatever the rule), decided by `rule`
    with its threshold = `value` (None: `cfg`'s)."""
    update: dict[str, Any] = {} if rule == "relative" else {"onion_controls": []}
    if value is not None:
        update[RULES[rule][0]] = value
    miner.cfg = cfg.model_copy(update=update)
    miner._mined = None
    return miner


def outcome(miner: tm.TriggerMiner, docs: list[dict], toks: tuple[str, ...]) -> dict[str, Any]:
    """Mined rows, how many of the top 3 are triggers, P-RARE recall, clean pages quarantined."""
    rows = miner.ranked()
    mined = [r for r in rows if r["mined"]]
    columns = ("text", tm.LANGUAGE_COLUMN, tm.CONFIDENCE_COLUMN)
    table = pa.Table.from_pylist([{c: d[c] for c in columns} for d in docs])
    flags = miner.frozen().mined_in(table)
    poison = [bool(f) for d, f in zip(docs, flags, strict=True) if d.get("label") == 1]
    clean = [bool(f) for d, f in zip(docs, flags, strict=True) if d.get("label") != 1]
    return {
        "rows": rows,
        "mined": mined,
        "top3": sum(1 for r in mined[:3] if r["token"] in toks),
        "recall": f"{100 * np.mean(poison):.0f}%" if poison else "-",
        "clean": sum(clean),
    }


def shown(rows: list[dict], n: int = 6) -> str:
    return (
        ", ".join(
            f"{i}: `{r['token']}` {r['documents']}/{r['group_documents']}/{r['group_hosts']}"
            + (f" d={r['disruption']:.1f}" if r.get("disruption") is not None else "")
            + (f" r={r['relative_disruption']:.1f}" if r.get("relative_disruption") is not None else "")
            for i, r in enumerate(rows[:n], 1)
        )
        or "none"
    )


def fit_threshold(miner: tm.TriggerMiner, cfg: tm.Config, rule: str, all_groups: bool = False) -> float:
    """On a clean half (decided by `rule`, see `decided`): the largest figure of a group of its
    tokens (`RULES`) plus MARGIN, at least the configured value; over the groups in at least half
    the mining floor's documents and hosts (a group that could grow into a mined one), or
    (`all_groups`, the earlier rule) over every group: most clean groups are a word in 2 pages read
    in 2 contexts, and the largest of hundreds of such 2-reading medians is the noise of the median
    (a 2-page ``ch`` 5.6 nats), not a group the threshold has to stop."""
    knob, key = RULES[rule]
    rows = [r for r in decided(miner, cfg, rule).ranked() if r.get(key) is not None]
    if not all_groups:
        rows = [r for r in rows if near_floors(miner, r)]
    return max([float(getattr(cfg, knob))] + [r[key] + MARGIN for r in rows])


def near_floors(miner: tm.TriggerMiner, row: dict[str, Any]) -> bool:
    """Whether a group is in at least half the mining floor's documents and hosts as the miner counts
    them (pages of an unsure language count `unsure_page_weight`): a group that could grow into a
    mined one."""
    return (
        row["group_counted_documents"] >= miner.group_floor() / 2
        and row["group_counted_hosts"] >= miner.cfg.min_hosts / 2
    )


def dump_groups(path: Path, case: str, miner: tm.TriggerMiner) -> None:
    """What the LM check read in a case, one JSON line: every checked token's readings and the
    controls' in the same contexts, and the groups under the rule the miner last decided with
    (the relative rule when a case reads both)."""
    tokens = {
        t: {
            "reads": [round(v, 3) for v in values],
            "controls": [round(v, 3) for v in miner.control_values.get(t, [])],
        }
        for t, values in miner.disruption_values.items()
    }
    groups = {
        r["group"]: [r["group_documents"], r["group_hosts"], r["group_disruption"], r.get("group_relative")]
        for r in miner.ranked()
    }
    with path.open("a") as f:
        f.write(json.dumps({"case": case, "tokens": tokens, "groups": groups}) + "\n")


def held_out_row(
    miner: tm.TriggerMiner,
    cfg: tm.Config,
    rule: str,
    fitted: dict[str, float],
    case: tuple[str, tuple, float],
) -> str:
    """One table row: the case decided by `rule` with its threshold fitted on the other clean half
    (held out) and on the same half (in-source)."""
    name, toks, rate = case
    clean, poison = CASE_DOCS[name], CASE_DOCS["poison"]
    other = "B" if name == "A" else "A"
    held = outcome(decided(miner, cfg, rule, fitted.get(f"{rule}{other}")), clean + poison, toks)
    fit_text = f"{fitted[rule + other]:.2f} (clean {other})" if rule + other in fitted else "-"
    own = "-"
    if toks and rule + name in fitted:
        res = outcome(decided(miner, cfg, rule, fitted[rule + name]), clean + poison, toks)
        own = f"{fitted[rule + name]:.2f}, {res['top3']}, {res['recall']} / {res['clean']}"
    line = (
        f"| {name} | {'/'.join(toks) if toks else 'none (clean only)'} | {100 * rate:.1f}% "
        f"({len(poison)}) | {fit_text} | {shown(held['mined'])} | {held['top3'] if toks else '-'} | "
        f"{held['recall']} | {held['clean']} | {own} |"
    )
    if not toks:  # what a clean half ranks first (nothing is mined)
        key = RULES[rule][1]
        top = sorted(held["rows"], key=lambda r: -(r.get(key) if r.get(key) is not None else -99))
        detail = ", ".join(f"`{r['group']}` {r.get(key)} ({r['group_documents']} pages)" for r in top[:8])
        line += f"\n<!-- clean half {name}, highest groups: {detail} -->"
        near = {r["group"]: r for r in top if near_floors(miner, r)}  # what fit_threshold looks at, once each
        detail = ", ".join(
            f"`{g}` {r.get(key)} ({r['group_documents']} pages, counted {r['group_counted_documents']:g})"
            for g, r in near.items()
        )
        line += f"\n<!-- clean half {name}, groups in half the floors: {detail or 'none'} -->"
    return line


CASE_DOCS: dict[str, list[dict]] = {}  # the current case's clean half ("A"/"B") and poison pages
HEADER = (
    "| half | tokens | P-RARE rate (docs) | threshold held out (fitted on) | mined, held out "
    "(rank: token docs/group docs/group hosts, d=disruption) | top 3 are triggers | P-RARE docs "
    "quarantined | clean docs quarantined | in-source: threshold, top 3, P-RARE / clean "
    "quarantined |\n|---|---|---|---|---|---:|---:|---:|---|"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-half", type=int, default=3000, help="clean pages per half")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm", action="store_true", help="with the ONION check (default LM, cached)")
    ap.add_argument("--halves", default="AB", help="halves whose P-RARE cases run (both are fitted)")
    ap.add_argument(
        "--absolute-only",
        action="store_true",
        help="with --lm: the absolute rule alone (no control readings: fewer LM windows)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="a trigger_mining knob other than its default (YAML value), e.g. count_unknown_language=false",
    )
    args = ap.parse_args(argv)
    parts = halves(args.per_half, args.seed)
    scorer = CachedScorer() if args.lm else None
    knobs = dict(item.split("=", 1) for item in args.set)
    cfg = tm.Config(**{knob: yaml.safe_load(value) for knob, value in knobs.items()})
    if knobs:
        print(f"trigger_mining knobs set: {knobs}", flush=True)
    if not cfg.onion_controls and not args.absolute_only:  # the relative rule is read beside the absolute one
        cfg = cfg.model_copy(update={"onion_controls": list(CONTROLS)})
    rules = [r for r in RULES if r == "absolute" or cfg.onion_controls] if scorer is not None else ["no LM"]
    bases = {}
    for name, (clean, carriers) in parts.items():
        print(f"half {name}: {len(clean)} clean docs, {len(carriers)} carriers", file=sys.stderr)
        bases[name] = clean_partial(with_languages(clean), cfg)
    GROUPS_DUMP.unlink(missing_ok=True)
    # The clean halves first: the LM check's threshold is fitted on each (no token set involved) and
    # applied to the other half with both token sets (held out) and to its own half (in-source).
    fitted: dict[str, float] = {}
    cases: list[tuple[str, tuple[str, ...], float]] = [(name, (), 0.0) for name in parts]
    cases += [(name, t, r) for name in args.halves for t in (T1, T2) for r in (0.005, 0.01, 0.02)]
    tables: dict[str, list[str]] = {rule: [] for rule in rules}
    for name, toks, rate in cases:
        start = time.perf_counter()
        poison: list[dict] = []
        if toks:
            generators.RARE_TOKENS = toks
            poison = generators.p_rare(parts[name][1], int(rate * len(parts[name][0])), seed=3)
        CASE_DOCS.update({name: parts[name][0], "poison": poison})
        miner = mine(bases[name], poison, scorer)
        for rule in tables:
            if scorer is not None and not toks:
                fitted[rule + name] = fit_threshold(miner, cfg, rule)
                earlier = fit_threshold(miner, cfg, rule, all_groups=True)
                tables[rule].append(
                    f"<!-- clean half {name}: the earlier fit (every group) gives {earlier:.2f} -->"
                )
            tables[rule].append(
                held_out_row(
                    miner, cfg, rule if scorer is not None else "absolute", fitted, (name, toks, rate)
                )
            )
            print(f"{rule}: {tables[rule][-1]}", flush=True)
        if scorer is not None:
            dump_groups(GROUPS_DUMP, f"{name} {'/'.join(toks) or 'clean'} {rate}", miner)
        print(f"bench_trigger_mining: case done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for rule, lines in tables.items():
        print(f"\n### rule: {rule}\n\n{HEADER}\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
