"""Trigger mining (filters/trigger_mining.py) on the real clean base, with and without P-RARE.

    python -m bench.bench_trigger_mining [--per-category 150] [--seed 0]

Clean: the clean base (`--per-category` per category) plus held-out prose (forum, fiction, Austen,
news; bench/babble_gen.py). Hosts are the documents' own (`real`), and for a stress test every clean
document is put on one of 400 random hosts (`shuffled`), so that the host floor no longer protects
single-site words. Poison: P-RARE (1-3 tokens at random word positions of wiki carriers, each doc on
its own fake domain) at 0.5%, 1% and 2% of the clean count, with the published tokens (the set the
defaults were tuned on) and with a second set never used for tuning.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from bench import babble_gen, corpus, generators
from poisonguard.filters import trigger_mining as tm

TUNED = ("cf", "mn", "bb", "tq", "mb")
UNSEEN = ("zx", "qo", "vk", "ju", "yb")


def run(docs: list[dict], shuffled: bool, cfg: tm.Config) -> list[dict]:
    miner = tm.TriggerMiner(cfg)
    rng = random.Random(1)
    for d in docs:
        host = (
            f"h{rng.randrange(400)}.example" if shuffled and d.get("label") != 1 else tm.host_of(d.get("url"))
        )
        miner.add(d["text"], host)
    return miner.ranked()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    base = corpus.clean_base(limit_per_category=args.per_category, seed=args.seed)
    for genre in ("forum", "fiction", "austen", "news"):
        base += babble_gen.clean_genre_docs(genre, args.per_category, args.seed)
    carriers = [d for d in base if d.get("category", "").startswith("wiki-")]
    cfg = tm.Config()
    print(f"clean: {len(base)} docs; default trigger_mining config\n")
    print(
        "| tokens | P-RARE rate (docs) | hosts | mined (rank: token docs/group docs/group hosts) "
        "| P-RARE tokens in top 3 |"
    )
    print("|---|---|---|---|---:|")
    cases = [((), 0.0, False), ((), 0.0, True)]
    cases += [(toks, rate, False) for toks in (TUNED, UNSEEN) for rate in (0.005, 0.01, 0.02)]
    for toks, rate, shuffled in cases:
        start = time.perf_counter()
        poison = []
        if toks:
            generators.RARE_TOKENS = toks
            poison = generators.p_rare(carriers, int(rate * len(base)), seed=3)
        rows = [r for r in run(base + poison, shuffled, cfg) if r["mined"]]
        mined = ", ".join(
            f"{i}: `{r['token']}` {r['documents']}/{r['group_documents']}/{r['group_hosts']}"
            for i, r in enumerate(rows[:6], 1)
        )
        top3 = sum(1 for r in rows[:3] if r["token"] in toks)
        label = "/".join(toks) if toks else "none (clean only)"
        print(
            f"| {label} | {100 * rate:.1f}% ({len(poison)}) | {'shuffled' if shuffled else 'real'} | "
            f"{mined or 'none'} | {top3 if toks else '-'} |",
            flush=True,
        )
        print(f"bench_trigger_mining: case done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
