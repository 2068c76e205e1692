"""dedup benchmark: signature speed, LSH speed and memory, and correctness on real ground truth.

Ground truth (``make bench-data`` first):
* Debian handbook pages left untranslated are near-copies of the English page of the same name:
  every (language, page) is paired with en-US/page and scored against the exact Jaccard of their
  word 5-gram sets.
* Seeded edits of real English pages (sentence swaps, added boilerplate, changed words).
Precision and recall are over those pairs: truth = exact Jaccard >= threshold, prediction = same
dedup cluster.

Run: ``python -m bench.bench_dedup [--langs N]``; prints Markdown tables.
"""

from __future__ import annotations

import argparse
import random
import re
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import lxml.html
import numpy as np
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH

from bench.corpus import handbook_dir
from poisonguard.core import minhash
from poisonguard.filters import dedup

_WORD = re.compile(r"\w+")
BOILERPLATE = (
    "Home | About us | Contact | Privacy policy | Terms of use. Subscribe to our newsletter to get the "
    "latest news and offers delivered to your inbox every week. Copyright 2024 all rights reserved. "
    "Follow us on social media. Cookies help us deliver our services; by using them you agree."
)


def handbook_texts(n_langs: int) -> dict[str, dict[str, str]]:
    """{language: {page name: visible text}} for en-US and ``n_langs`` other languages."""
    base = handbook_dir("en-US").parent
    others = sorted(p.name for p in base.iterdir() if p.is_dir() and "-" in p.name and p.name != "en-US")
    langs = ["en-US", *others]
    out: dict[str, dict[str, str]] = {}
    for lang in langs[: n_langs + 1]:
        pages = {}
        for path in sorted((base / lang).glob("*.html")):
            root = lxml.html.fromstring(path.read_bytes())
            for bad in root.xpath("//script|//style"):
                bad.drop_tree()
            pages[path.name] = " ".join(root.text_content().split())
        out[lang] = pages
    return out


def shingle_sets(texts: list[str], k: int) -> list[set[int]]:
    hashes, counts, _ = minhash._group_hashes(texts, k)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    return [set(hashes[bounds[i] : bounds[i + 1]].tolist()) for i in range(len(texts))]


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def seeded_edits(pages: dict[str, str], rng: random.Random) -> list[tuple[str, str, str]]:
    """(original page, edit kind, edited text) for every English page long enough to edit."""
    out = []
    for name, text in pages.items():
        words = text.split()
        if len(words) < 100:
            continue
        sentences = re.split(r"(?<=[.!?]) ", text)
        if len(sentences) > 3:
            i, j = rng.sample(range(len(sentences)), 2)
            swapped = list(sentences)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            out.append((name, "sentence swap", " ".join(swapped)))
        out.append((name, "boilerplate", BOILERPLATE + " " + text + " " + BOILERPLATE))
        for rate in (0.01, 0.03, 0.05, 0.10):
            changed = list(words)
            for p in rng.sample(range(len(words)), max(1, int(rate * len(words)))):
                changed[p] = f"zz{rng.randrange(10**6)}"
            out.append((name, f"{int(rate * 100)}% words changed", " ".join(changed)))
    return out


def prf(truth: list[bool], pred: list[bool]) -> tuple[float, float, int, int, int]:
    tp = sum(t and p for t, p in zip(truth, pred, strict=True))
    fp = sum(p and not t for t, p in zip(truth, pred, strict=True))
    fn = sum(t and not p for t, p in zip(truth, pred, strict=True))
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp, fp, fn


def best_rate(fn: Callable[[], Any], megabytes: float, repeat: int = 3) -> tuple[float, float]:
    """(MB/s by CPU time, MB/s by wall time), best of ``repeat``: the bench machine is shared."""
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return megabytes / min(cpu), megabytes / min(wall)


def datasketch_shingles(text: str, k: int) -> list[bytes]:
    words = _WORD.findall(text.lower())
    return [" ".join(words[i : i + k]).encode() for i in range(max(len(words) - k + 1, 1))] if words else []


def bench_speed(texts: list[str], cfg: dedup.Config) -> list[tuple[str, float, float]]:
    mb = sum(len(t.encode()) for t in texts) / 1e6
    small = texts[: max(1, len(texts) // 10)]
    small_mb = sum(len(t.encode()) for t in small) / 1e6

    def update_loop() -> None:
        for t in small:
            m = MinHash(
                num_perm=cfg.num_perm, seed=cfg.seed, scheme=cfg.scheme, hashfunc=xxhash.xxh32_intdigest
            )
            for s in datasketch_shingles(t, cfg.shingle_words):
                m.update(s)

    def bulk() -> None:
        MinHash.bulk(
            [datasketch_shingles(t, cfg.shingle_words) for t in texts],
            num_perm=cfg.num_perm,
            seed=cfg.seed,
            scheme=cfg.scheme,
            hashfunc=xxhash.xxh32_intdigest,
        )

    return [
        ("datasketch update() per shingle (xxh32)", *best_rate(update_loop, small_mb, 1)),
        ("datasketch MinHash.bulk (xxh32)", *best_rate(bulk, mb, 2)),
        ("poisonguard signatures (vectorised)", *best_rate(lambda: dedup.signatures(texts, cfg), mb)),
        ("poisonguard content_keys", *best_rate(lambda: dedup.content_keys(texts), mb)),
    ]


def bench_index(texts: list[str], cfg: dedup.Config) -> list[tuple[str, float, float]]:
    sigs = dedup.signatures(texts, cfg)
    keys = dedup.content_keys(texts)
    ids = [f"d{i}" for i in range(len(texts))]
    urls = [f"https://site{i % 50}.example/{i}" for i in range(len(texts))]
    bands, rows = dedup.lsh_params(cfg)
    dedup.registrable_domain("https://warm.example/")  # one-time: parse the public suffix list
    tracemalloc.start()
    t0 = time.perf_counter()
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(bands, rows))
    lean = [LeanMinHash(seed=cfg.seed, hashvalues=s, scheme=cfg.scheme) for s in sigs]
    for i, m in enumerate(lean):
        lsh.insert(i, m)
    ds_bytes = tracemalloc.get_traced_memory()[0]
    for m in lean:
        lsh.query(m)
    ds_rate = len(texts) / (time.perf_counter() - t0)
    del lsh, lean
    tracemalloc.stop()
    t0 = time.perf_counter()
    index = dedup.DedupIndex(cfg)
    index.add(ids, urls, keys, sigs)
    index.assign()
    pg_rate = len(texts) / (time.perf_counter() - t0)
    return [
        ("datasketch MinHashLSH insert+query, LeanMinHash kept (traced)", ds_rate, ds_bytes / len(texts)),
        ("poisonguard DedupIndex add+assign (state_bytes)", pg_rate, index.state_bytes() / len(texts)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--langs", type=int, default=25, help="handbook languages besides en-US")
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args(argv)
    cfg = dedup.Config() if args.threshold is None else dedup.Config(threshold=args.threshold)
    rng = random.Random(0)
    t0 = time.perf_counter()
    book = handbook_texts(args.langs)
    english = book["en-US"]
    print(
        f"Loaded {sum(len(p) for p in book.values())} handbook pages in {len(book)} languages "
        f"({time.perf_counter() - t0:.0f} s); threshold {cfg.threshold}, {cfg.num_perm} permutations, "
        f"bands x rows {dedup.lsh_params(cfg)}, scheme {cfg.scheme}\n"
    )

    # Correctness ---------------------------------------------------------------------------
    docs: list[tuple[str, str, str]] = []  # (id, url, text)
    for lang, pages in book.items():
        for name, text in pages.items():
            docs.append((f"{lang}/{name}", f"https://handbook-{lang.lower()}.example/{name}", text))
    edits = seeded_edits(english, rng)
    for n, (name, _kind, text) in enumerate(edits):
        docs.append((f"edit{n}/{name}", f"https://edit{n}.example/{name}", text))
    texts = [d[2] for d in docs]
    index = dedup.DedupIndex(cfg)
    doc_ids, doc_urls = [d[0] for d in docs], [d[1] for d in docs]
    index.add(doc_ids, doc_urls, dedup.content_keys(texts), dedup.signatures(texts, cfg))
    table = index.assign()
    cluster = dict(zip([d[0] for d in docs], table.column("dedup_cluster_id").to_pylist(), strict=True))
    sets = dict(zip([d[0] for d in docs], shingle_sets(texts, cfg.shingle_words), strict=True))

    groups: dict[str, list[tuple[str, str]]] = {"handbook (lang, en-US) pairs": []}
    for lang, pages in book.items():
        if lang != "en-US":
            pairs = [(f"{lang}/{n}", f"en-US/{n}") for n in pages if n in english]
            groups["handbook (lang, en-US) pairs"] += pairs
    for n, (name, kind, _) in enumerate(edits):
        groups.setdefault(f"edit: {kind}", []).append((f"edit{n}/{name}", f"en-US/{name}"))
    print("| pairs | n | exact J>=0.9 | 0.5<=J<0.9 | truth J>=thr | precision | recall | recall J>=0.9 |")
    print("|---|---|---|---|---|---|---|---|")
    all_truth: list[bool] = []
    all_pred: list[bool] = []
    for label, pairs in groups.items():
        js = [jaccard(sets[a], sets[b]) for a, b in pairs]
        truth = [j >= cfg.threshold for j in js]
        pred = [cluster[a] == cluster[b] for a, b in pairs]
        p, r, *_ = prf(truth, pred)
        hi = [(j >= 0.9, q) for j, q in zip(js, pred, strict=True) if j >= 0.9]
        r9 = sum(q for _, q in hi) / max(len(hi), 1)
        print(
            f"| {label} | {len(pairs)} | {sum(j >= 0.9 for j in js)} | {sum(0.5 <= j < 0.9 for j in js)} | "
            f"{sum(truth)} | {p:.3f} | {r:.3f} | {r9:.3f} |"
        )
        all_truth += truth
        all_pred += pred
    p, r, tp, fp, fn = prf(all_truth, all_pred)
    print(
        f"| **all** | {len(all_truth)} | | | {sum(all_truth)} | {p:.3f} | {r:.3f} | "
        f"(tp {tp}, fp {fp}, fn {fn}) |"
    )

    # Cluster purity: every pair inside a cluster, against exact Jaccard.
    members: dict[str, list[str]] = {}
    for doc_id, cid in cluster.items():
        members.setdefault(cid, []).append(doc_id)
    inside = [
        jaccard(sets[a], sets[b]) for ms in members.values() for i, a in enumerate(ms) for b in ms[i + 1 :]
    ]
    big = max(len(m) for m in members.values())
    n_multi = sum(len(m) > 1 for m in members.values())
    print(
        f"\nClusters of 2+: {n_multi} (largest {big}); pairs inside clusters: "
        f"{len(inside)}, exact J >= threshold: {np.mean(np.array(inside) >= cfg.threshold):.3f}, "
        f">= 0.5: {np.mean(np.array(inside) >= 0.5):.3f}"
    )
    domains = table.column("dedup_cluster_domains").to_numpy()
    flagged = sum(1 for f in dedup.flag(table, cfg) if f)
    print(
        f"Benign mirror view (each handbook language on its own domain): {flagged} documents would be "
        f"flagged as a campaign at K={cfg.campaign_min_domains}; "
        f"max domains in a cluster {domains.max()}\n"
    )

    # Campaign recall: one article lightly edited on N fake domains, among the handbook.
    print("| P-FARM copies (1 word changed each) | flagged | cluster domains |")
    print("|---|---|---|")
    article = english[sorted(english, key=lambda n: -len(english[n]))[10]].split()[:400]
    for n_domains in (10, 50, 500):
        farm = []
        for k in range(n_domains):
            words = list(article)
            words[rng.randrange(len(words))] = f"claim{k}"
            farm.append(" ".join(words))
        sub = texts[:2000] + farm
        idx = dedup.DedupIndex(cfg)
        farm_urls = [f"https://news{k}.farm{k}.example/a" for k in range(n_domains)]
        idx.add(
            [f"x{i}" for i in range(len(sub))],
            doc_urls[:2000] + farm_urls,
            dedup.content_keys(sub),
            dedup.signatures(sub, cfg),
        )
        tab = idx.assign()
        flags = dedup.flag(tab, cfg)[2000:]
        print(
            f"| {n_domains} | {sum(bool(f) for f in flags)}/{n_domains} | "
            f"{tab.column('dedup_cluster_domains').to_pylist()[-1]} |"
        )

    # Speed ---------------------------------------------------------------------------------
    speed_texts = [t for lang in list(book)[:4] for t in book[lang].values()]
    print(
        f"\n| signatures ({sum(len(t.encode()) for t in speed_texts) / 1e6:.1f} MB of handbook text, "
        f"{cfg.num_perm} perms) | MB/s (CPU time) | MB/s (wall) |"
    )
    print("|---|---|---|")
    rates = bench_speed(speed_texts, cfg)
    for name, cpu, wall in rates:
        print(f"| {name} | {cpu:.1f} | {wall:.1f} |")
    print(f"\nSpeed-up over MinHash.bulk (CPU time): {rates[2][1] / rates[1][1]:.1f}x\n")
    print(f"| index ({len(texts)} documents) | docs/s | bytes per document |")
    print("|---|---|---|")
    for name, rate, per_doc in bench_index(texts, cfg):
        print(f"| {name} | {rate:.0f} | {per_doc:.0f} |")
    print(f"\nTotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
