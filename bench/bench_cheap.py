"""Speed of the cheap detectors and of the filter job without the language model.

Real text from the bench cache (Wikipedia summaries en/fr/es and Debian handbook pages in several
languages). Speeds are per core: MB of UTF-8 text per CPU second of the process (user + system), so
that other work on a shared machine does not change them. Prints Markdown tables:

1. each cheap detector's `score` in-process, and the MinHash signatures + exact-duplicate keys;
2. the whole cheap stage (`score_cheap`: every cheap detector plus MinHash signatures and keys) with
   the fastText and the langdetect language backends;
3. `poisonguard filter --no-lm` end to end with 1 and 2 workers, against a baseline measured in the
   same run (the same job with every detector off: reading, chunking and writing only), with wall
   time, CPU time of the job and its workers, and the peak RSS; and the same at 10x the input, to
   show memory stays flat.

Run: python -m bench.bench_cheap [--mb 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from bench.corpus import handbook_pages, html_to_text, wiki_summaries
from poisonguard.filters import dedup, registry
from poisonguard.pipelines import policy
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.stages import score_cheap

HANDBOOK_LANGS = ("de", "ja", "ru", "ar", "zh")


def corpus_texts(target_mb: float) -> list[str]:
    """Wikipedia summaries and handbook pages, interleaved, up to about `target_mb` MB of UTF-8."""
    pools = [wiki_summaries(lang) for lang in ("en", "fr", "es")]
    for lang in HANDBOOK_LANGS:
        pools.append([html_to_text(html) for _, html in handbook_pages(lang)])
    texts: list[str] = []
    size = 0
    index = 0
    while size < target_mb * 1e6:
        progressed = False
        for pool in pools:
            if index < len(pool) and pool[index].strip():
                texts.append(pool[index])
                size += len(pool[index].encode())
                progressed = True
        index += 1
        if not progressed:
            break
    return texts


def write_corpus(path: Path, texts: list[str], copies: int = 1) -> int:
    with path.open("w", encoding="utf-8") as fh:
        for copy in range(copies):
            for i, text in enumerate(texts):
                fh.write(json.dumps({"id": f"{copy}-{i}", "text": text}, ensure_ascii=False) + "\n")
    return path.stat().st_size


def detector_speeds(texts: list[str]) -> list[tuple[str, float, float]]:
    cfg = load_config()
    mb = sum(len(t.encode()) for t in texts) / 1e6
    batch_docs = []
    for start in range(0, len(texts), 2000):
        chunk = texts[start : start + 2000]
        batch_docs.append(
            pa.table(
                {
                    "id": [str(i) for i in range(len(chunk))],
                    "text": chunk,
                    "url": pa.nulls(len(chunk), pa.string()),
                    "hidden": pa.nulls(
                        len(chunk), pa.list_(pa.struct([("channel", pa.string()), ("text", pa.string())]))
                    ),
                }
            )
        )
    rows: list[tuple[str, float, float]] = []
    for detector in registry.in_stage("cheap"):
        name, dcfg = detector.name, policy.section(cfg, detector)
        detector.score(batch_docs[0].slice(0, 10), dcfg)  # build automata, load models
        began = time.process_time()
        for table in batch_docs:
            detector.score(table, dcfg)
        elapsed = max(time.process_time() - began, 1e-9)
        rows.append((name, mb / elapsed, len(texts) / elapsed))
    began = time.process_time()
    for offset in range(0, len(texts), 2000):
        chunk = texts[offset : offset + 2000]
        dedup.signatures(chunk, cfg.dedup)
        dedup.content_keys(chunk)
    elapsed = max(time.process_time() - began, 1e-9)
    rows.append(("dedup signatures + keys", mb / elapsed, len(texts) / elapsed))
    return rows


def cheap_stage_speed(texts: list[str], backend: str) -> tuple[float, float]:
    cfg = load_config(overrides={"language": {"backend": backend}})
    docs = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    from poisonguard.core.schema import DOCUMENT_SCHEMA

    for f in DOCUMENT_SCHEMA:
        if f.name not in docs.column_names:
            docs = docs.append_column(f.name, pa.nulls(docs.num_rows, f.type))
    docs = docs.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
    score_cheap(docs.slice(0, 10), cfg)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    start = time.process_time()
    for offset in range(0, docs.num_rows, 2000):
        score_cheap(docs.slice(offset, 2000), cfg)
    elapsed = time.process_time() - start
    return mb / elapsed, len(texts) / elapsed


def run_filter_job(corpus: Path, out: Path, config: Path, workers: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (the job and its workers) and peak RSS (MB, largest process of the
    job) of `poisonguard filter`."""
    cmd = [
        sys.executable,
        "-m",
        "poisonguard.pipelines.cli",
        "filter",
        str(corpus),
        "--out",
        str(out),
        "--config",
        str(config),
        "--workers",
        str(workers),
        "--no-lm",
        "--quiet",
        "--overwrite",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(
            f"filter job failed: {' '.join(cmd)}\n{proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=10.0, help="MB of real text (default 10)")
    parser.add_argument("--scale", type=int, default=10, help="the larger input is this many copies")
    args = parser.parse_args()
    texts = corpus_texts(args.mb)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(
        f"### Cheap detectors ({len(texts):,} real documents, {mb:.1f} MB: Wikipedia en/fr/es, "
        f"Debian handbook {'/'.join(HANDBOOK_LANGS)})\n"
    )
    print("| detector | MB/s per core | docs/s per core |\n|---|---:|---:|")
    for name, mbs, dps in detector_speeds(texts):
        print(f"| {name} | {mbs:.2f} | {dps:,.0f} |")
    print(
        "\n| whole cheap stage (all detectors + MinHash signatures), 1 process | MB/s per core | docs/s |"
        "\n|---|---:|---:|"
    )
    for backend in ("fasttext", "langdetect"):
        mbs, dps = cheap_stage_speed(texts, backend)
        print(f"| language backend {backend} | {mbs:.2f} | {dps:,.0f} |")

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        small, large = tmpdir / "x1.jsonl", tmpdir / f"x{args.scale}.jsonl"
        small_bytes = write_corpus(small, texts)
        large_bytes = write_corpus(large, texts, args.scale)
        everything_off = tmpdir / "off.yaml"
        everything_off.write_text(
            "\n".join(
                f"{n}: {{enabled: false}}"
                for n in (
                    "unicode",
                    "triggers",
                    "repetition",
                    "language",
                    "hidden_text",
                    "cloaking",
                    "dedup",
                    "perplexity",
                )
            )
            + "\n"
        )
        default = tmpdir / "default.yaml"
        default.write_text("perplexity: {enabled: false}\n")
        langdetect = tmpdir / "langdetect.yaml"
        langdetect.write_text("perplexity: {enabled: false}\nlanguage: {backend: langdetect}\n")
        print(f"\n### `poisonguard filter --no-lm` end to end ({small_bytes / 1e6:.1f} MB JSONL)\n")
        print("| job | workers | seconds | MB/s | CPU s | MB per CPU s | x baseline time | peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        base_s, base_cpu, base_rss = run_filter_job(small, tmpdir / "o", everything_off, 1)
        print(
            f"| baseline: read + write, detectors off | 1 | {base_s:.1f} | "
            f"{small_bytes / 1e6 / base_s:.2f} | {base_cpu:.1f} | "
            f"{small_bytes / 1e6 / base_cpu:.2f} | 1.00 | {base_rss:.0f} |"
        )
        for label, cfg in (
            ("cheap detectors, fastText", default),
            ("cheap detectors, langdetect", langdetect),
        ):
            # langdetect is ~25x slower; one run of it is enough to show the backend's cost.
            for workers in (1, 2) if cfg is default else (1,):
                secs, cpu, rss = run_filter_job(small, tmpdir / "o", cfg, workers)
                rate = small_bytes / 1e6 / secs
                print(
                    f"| {label} | {workers} | {secs:.1f} | {rate:.2f} | {cpu:.1f} | "
                    f"{small_bytes / 1e6 / cpu:.2f} | {secs / base_s:.2f} | {rss:.0f} |"
                )
        secs, cpu, rss = run_filter_job(large, tmpdir / "o", default, 2)
        rate = large_bytes / 1e6 / secs
        print(
            f"| cheap detectors, fastText, {args.scale}x input ({large_bytes / 1e6:.0f} MB) | 2 | "
            f"{secs:.1f} | {rate:.2f} | {cpu:.1f} | {large_bytes / 1e6 / cpu:.2f} | - | {rss:.0f} |"
        )


if __name__ == "__main__":
    main()
