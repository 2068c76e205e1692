"""Trigger mining (filters/trigger_mining.py) on the real clean base, with and without P-RARE.

    python -m bench.bench_trigger_mining [--per-category 150] [--seed 0] [--lm]

Clean: the clean base (`--per-category` per category) plus held-out prose (forum, fiction, Austen,
news; bench/babble_gen.py), split in two halves that share no category or language:

* **A**: English and code (wiki-en, handbook-en, python-docs, the English hard negatives, the four
  prose genres); P-RARE carriers: held-out wiki-en pages;
* **B**: the other languages (wiki-fr/es, the handbook in eight languages, UDHR, RTL/ZWNJ pages);
  P-RARE carriers: held-out wiki-fr and wiki-es pages.

Carriers are wiki pages kept out of the clean half (a hash of the id), so a poisoned page never has
its clean twin in the run. Every clean page is put on one of 400 random hosts (`shuffled`, a stress
test: the host floor no longer protects single-site words), and for comparison on its real host.
Poison: P-RARE (1-3 tokens at random word positions, each page on its own domain) at 0.5%, 1% and 2%
of the clean count, with the published tokens T1 (`cf mn bb tq mb`) and a set never used for tuning,
T2 (`zx qo vk ju yb`).

`--lm` adds the ONION check (the default language model; windows cached in bench/out/ so a rerun only
scores what is new). The check's one fitted knob, `min_disruption`, is fitted on one half with one
token set (the largest disruption of a clean token there plus a margin, or the configured value if
larger) and reported on the other half with the other token set, both ways.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

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
        if todo:
            for (k, _), nll in zip(todo, self._scorer().window_nll([w for _, w in todo]), strict=True):
                self.cache[k] = nll
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            tmp = CACHE.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(self.cache))
            tmp.replace(CACHE)
        return [self.cache[k] for k in keys]


def halves(per_category: int, seed: int) -> dict[str, tuple[list[dict], list[dict]]]:
    """Half name -> (clean pages, carrier pages)."""
    base = corpus.clean_base(limit_per_category=per_category, seed=seed)
    for genre in ("forum", "fiction", "austen", "news"):
        base += babble_gen.clean_genre_docs(genre, per_category, seed)
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    for name in ("A", "B"):
        docs = [d for d in base if (d.get("category") in HALF_B) == (name == "B")]
        held = {
            d["id"]
            for d in docs
            if d.get("category", "").startswith("wiki-") and zlib.crc32(d["id"].encode()) % 2
        }
        out[name] = ([d for d in docs if d["id"] not in held], [d for d in docs if d["id"] in held])
    return out


def mine(docs: list[dict], shuffled: bool, cfg: tm.Config, scorer: Any) -> tm.TriggerMiner:
    rng = random.Random(1)
    texts = [d["text"] for d in docs]
    hosts = [
        f"h{rng.randrange(400)}.example" if shuffled and d.get("label") != 1 else tm.host_of(d.get("url"))
        for d in docs
    ]
    miner = tm.TriggerMiner(cfg)
    for first in range(0, len(docs), 500):  # chunks, as the engines merge them
        miner.merge(tm.chunk_partial(texts[first : first + 500], hosts[first : first + 500], first, cfg))
    if scorer is not None:
        wanted = miner.onion_requests()
        miner.add_contexts(texts, 0, wanted)
        miner.confirm(scorer)
    return miner


def case_row(miner: tm.TriggerMiner, docs: list[dict], toks: tuple[str, ...], label: str) -> str:
    rows = miner.ranked()
    mined = [r for r in rows if r["mined"]]
    shown = ", ".join(
        f"{i}: `{r['token']}` {r['documents']}/{r['group_documents']}/{r['group_hosts']}"
        + (f" d={r['disruption']:.1f}" if r.get("disruption") is not None else "")
        for i, r in enumerate(mined[:6], 1)
    )
    top3 = sum(1 for r in mined[:3] if r["token"] in toks)
    flags = miner.frozen().mined_in(
        __import__("pyarrow").Table.from_pylist([{"text": d["text"]} for d in docs])
    )
    poison = [bool(f) for d, f in zip(docs, flags, strict=True) if d.get("label") == 1]
    clean = [bool(f) for d, f in zip(docs, flags, strict=True) if d.get("label") != 1]
    recall = f"{100 * np.mean(poison):.0f}%" if poison else "-"
    return f"{label} | {shown or 'none'} | {top3 if toks else '-'} | {recall} | {sum(clean)} |"


def fit_threshold(miner: tm.TriggerMiner, toks: tuple[str, ...], cfg: tm.Config) -> float:
    """The largest disruption of a clean checked token (not in `toks`) plus MARGIN, at least the
    configured value."""
    clean = [v for t, v in miner.disruption.items() if t not in toks]
    return max([cfg.min_disruption] + [v + MARGIN for v in clean])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm", action="store_true", help="with the ONION check (default LM, cached)")
    args = ap.parse_args(argv)
    parts = halves(args.per_category, args.seed)
    scorer = CachedScorer() if args.lm else None
    cfg = tm.Config()
    for name, (clean, carriers) in parts.items():
        print(f"half {name}: {len(clean)} clean docs, {len(carriers)} carriers", file=sys.stderr)
    print(
        "| half | tokens | P-RARE rate (docs) | hosts | min_disruption | mined (rank: token docs/group "
        "docs/group hosts, d=disruption) | P-RARE tokens in top 3 | P-RARE docs quarantined "
        "| clean docs quarantined |"
    )
    print("|---|---|---|---|---|---|---:|---:|---:|")
    fitted: dict[tuple[str, tuple[str, ...]], float] = {}
    if scorer is not None:  # fit on each half with each token set (1% rate), report on the other
        for name, (clean, carriers) in parts.items():
            for toks in (T1, T2):
                generators.RARE_TOKENS = toks
                poison = generators.p_rare(carriers, int(0.01 * len(clean)), seed=3)
                fitted[(name, toks)] = fit_threshold(mine(clean + poison, True, cfg, scorer), toks, cfg)
        print(f"fitted min_disruption: {fitted}", file=sys.stderr)
    for name, (clean, carriers) in parts.items():
        other = "B" if name == "A" else "A"
        for toks, rate, shuffled in [((), 0.0, False), ((), 0.0, True)] + [
            (t, r, True) for t in (T1, T2) for r in (0.005, 0.01, 0.02)
        ]:
            start = time.perf_counter()
            poison = []
            if toks:
                generators.RARE_TOKENS = toks
                poison = generators.p_rare(carriers, int(rate * len(clean)), seed=3)
            docs = clean + poison
            # Cross-source: the threshold fitted on the other half with the other token set.
            fit_key = (other, T2 if toks == T1 else T1)
            run_cfg = cfg.model_copy(update={"min_disruption": fitted[fit_key]}) if fit_key in fitted else cfg
            miner = mine(docs, shuffled, run_cfg, scorer)
            label = (
                f"| {name} | {'/'.join(toks) if toks else 'none (clean only)'} | "
                f"{100 * rate:.1f}% ({len(poison)}) | "
                f"{'shuffled' if shuffled else 'real'} | "
                + (
                    f"{run_cfg.min_disruption:.2f} (fit {fit_key[0]}, {'/'.join(fit_key[1])})"
                    if scorer
                    else "no LM"
                )
            )
            print(case_row(miner, docs, toks, label), flush=True)
            print(f"bench_trigger_mining: case done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
