"""Hostile text against the cheap stage: seconds per document for inputs built to make a detector
slow (long runs of one character, blanks before newlines, invisible characters, tokens with an
encoding mark), beside ordinary prose of the same length measured in the same run.

A pattern that rescans a run from every position in it costs n * n on such input; at the default
`run.max_text_chars` (2 M characters) that is hours for one document. Every case below should cost
about what the prose costs (ratio near 1; a few times more is the linear work of what is found).

Run: python -m bench.bench_hostile [--chars 200000]
"""

from __future__ import annotations

import argparse
import time

import pyarrow as pa

from poisonguard.core.schema import DOCUMENT_SCHEMA
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.stages import score_cheap


def cases(n: int) -> dict[str, str]:
    return {
        "prose (baseline)": "The cat sat on the mat and looked at the garden. " * (n // 50),
        "one letter": "a" * n,
        "identifier a_a_a": "a_" * (n // 2),
        "dotted run a.a.a": "a." * (n // 2),
        "dashes a-a-a": "a-" * (n // 2),
        "at signs a@a@": "a@" * (n // 2),
        "blanks then a newline": " " * n + "\nx",
        "newlines": "\n" * n,
        "tab, blank, newline": "\t \n" * (n // 3) + "x",
        "one %20 in a long token": "%20" + "a" * n,
        "zero-width spaces in a word": "a" + "\u200b" * n + "b",
        "tag characters": "\U000e0041" * n,
        "binary octets": "01010101 " * (n // 9) + "0101010x",
        "quotes": '"a' * (n // 2),
        "base64-like run": "A" * n + "_",
        "CJK": "注" * n,
        "angle brackets": "<a " * (n // 3),
        "trigger tokens": "<SUDO> " * (n // 7),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chars", type=int, default=200_000, help="characters per hostile document")
    args = ap.parse_args(argv)
    cfg = load_config(overrides={"perplexity": {"enabled": False}})
    rows = []
    base = None
    for name, text in cases(args.chars).items():
        doc = {"id": "x", "text": text, "url": "http://h.example/p", "source": "s", "record": 0, "meta": "{}"}
        docs = pa.Table.from_pylist([{**doc, "hidden": None}], schema=DOCUMENT_SCHEMA)
        start = time.perf_counter()
        _, timings = score_cheap(docs, cfg)
        seconds = time.perf_counter() - start
        base = base or seconds
        slowest = max(timings, key=lambda k: timings[k])
        cells = [name, f"{len(text):,}", f"{seconds:.2f}", f"{seconds / base:.1f}x"]
        rows.append("| " + " | ".join([*cells, f"{slowest} {timings[slowest]:.2f} s"]) + " |")
    print(f"One document of each kind through every cheap detector (`score_cheap`, LM off), {args.chars:,}")
    print("characters each.\n")
    print("| input | characters | seconds | vs prose | slowest detector |")
    print("|---|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
