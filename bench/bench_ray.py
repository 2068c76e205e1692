"""Ray engine vs local engine on the same input: overhead ratio, and scaling from 1 to 2 workers.

    python -m bench.bench_ray [--docs 4000]

Input: English Wikipedia summaries (`make bench-data`; a synthetic corpus when the cache is absent),
plus 10% lightly edited near-copies and 2% exact copies so that dedup has clusters to build. Language
model off (its cost is the same per document on both engines; it runs in an actor pool on Ray). Every
Ray run starts its own local Ray with the given number of CPUs; start-up is reported apart. Prints a
Markdown table; checks that both engines give the same outcome for every document.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

for _key, _value in (("RAY_USAGE_STATS_ENABLED", "0"), ("RAY_DEDUP_LOGS", "0")):
    os.environ.setdefault(_key, _value)

import pyarrow.parquet as pq  # noqa: E402

from poisonguard.pipelines.config import load_config  # noqa: E402
from poisonguard.pipelines.ray_engine import run_filter_ray  # noqa: E402
from poisonguard.pipelines.runner import run_filter  # noqa: E402


def _texts(n: int) -> tuple[list[str], str]:
    try:
        from bench.corpus import wiki_summaries

        base = wiki_summaries("en")
        source = "Wikipedia summaries (en)"
    except (FileNotFoundError, ImportError):
        rng = random.Random(0)
        vocab = [f"w{i}" for i in range(5000)]
        base = [" ".join(rng.choice(vocab) for _ in range(rng.randint(60, 200))) for _ in range(n)]
        source = "synthetic words (bench data absent)"
    rng = random.Random(1)
    texts = list(base[: int(n * 0.88)])
    for _ in range(int(n * 0.10)):
        words = rng.choice(texts).split()
        for _ in range(max(1, len(words) // 30)):
            words[rng.randrange(len(words))] = "edited"
        texts.append(" ".join(words))
    texts += [rng.choice(texts) for _ in range(n - len(texts))]
    return texts, source


def _outcomes(out: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for shard in sorted(out.glob("clean/part-*.parquet")):
        found.update((i, ("kept", ())) for i in pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    for shard in sorted(out.glob("quarantine/part-*.parquet")):
        for row in pq.read_table(shard, columns=["id", "outcome", "reasons"]).to_pylist():
            found[row["id"]] = (row["outcome"], tuple(row["reasons"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--batch-rows", type=int, default=250)
    args = parser.parse_args()
    import json

    import ray

    texts, source = _texts(args.docs)
    rng = random.Random(2)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        with corpus.open("w", encoding="utf-8") as fh:
            for i, t in enumerate(texts):
                url = f"https://site{rng.randrange(300)}.example{rng.randrange(40)}.org/{i}"
                fh.write(json.dumps({"id": f"d{i}", "text": t, "url": url}) + "\n")
        mb = corpus.stat().st_size / 1e6
        rows: list[dict[str, Any]] = []
        outcomes: dict[str, dict[str, Any]] = {}
        for engine, workers in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)):
            cfg = load_config(
                overrides={
                    "perplexity": {"enabled": False},
                    "run": {"batch_rows": args.batch_rows, "workers": workers},
                }
            )
            out = Path(tmp) / f"{engine}-{workers}"
            init_s = 0.0
            if engine == "ray":
                t0 = time.perf_counter()
                ray.init(
                    num_cpus=workers,
                    include_dashboard=False,
                    object_store_memory=300 * 2**20,
                    log_to_driver=False,
                )
                init_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            if engine == "ray":
                report = run_filter_ray([str(corpus)], out, cfg, show_progress=False)
                ray.shutdown()
            else:
                report = run_filter([str(corpus)], out, cfg, show_progress=False)
            wall = time.perf_counter() - t0
            outcomes[f"{engine}-{workers}"] = _outcomes(out)
            t = report["timings_s"]
            rows.append(
                {
                    "engine": engine,
                    "workers": workers,
                    "init": init_s,
                    "wall": wall,
                    "cheap": t.get("stage:cheap", 0.0),
                    "dedup": t.get("stage:dedup", 0.0),
                    "write": t.get("stage:write", 0.0),
                    "counts": report["counts"],
                }
            )
    same = all(o == outcomes["local-1"] for o in outcomes.values())
    base = {(r["engine"], r["workers"]): r["wall"] for r in rows}
    print(
        f"Ray vs local engine: {args.docs} docs, {mb:.1f} MB JSONL ({source}), batch_rows "
        f"{args.batch_rows}, LM off, {os.cpu_count()} cores\n"
    )
    print(
        "| engine | workers | Ray start (s) | wall (s) | docs/s | stage cheap (s) | stage dedup (s) "
        "| stage write (s) | vs local, same workers | speed-up 1 -> 2 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["wall"] / base[("local", r["workers"])]
        speedup = base[(r["engine"], 1)] / r["wall"] if r["workers"] == 2 else 1.0
        print(
            f"| {r['engine']} | {r['workers']} | {r['init']:.1f} | {r['wall']:.1f} | "
            f"{args.docs / r['wall']:.0f} | {r['cheap']:.1f} | {r['dedup']:.2f} | {r['write']:.2f} | "
            f"{ratio:.2f}x | {speedup:.2f}x |"
        )
    counts = rows[0]["counts"]
    print(f"\nOutcomes: {counts}. Same outcome and reasons for every document on all four runs: {same}.")


if __name__ == "__main__":
    main()
