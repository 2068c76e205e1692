"""LM signal columns cached on disk by text, so benchmarks score each document with the LM once.

    python -m bench.lm_cache [--per-category 40] [--lm-clean 15] [--lm-poison 25]

fills bench/out/lm_cache.parquet for poisonbench's LM sample (the same docs `poisonbench` samples).
The cache key is sha256(text) plus the perplexity config that changes scores (model, dtype,
max_tokens and the signal settings); a config change starts a new cache file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

OUT_DIR = Path(__file__).resolve().parent / "out"
# settings that change speed or which documents are scored, never a document's signals
SCORING_KEYS_IGNORED = {
    "enabled",
    "route",
    "budget",
    "batch_tokens",
    "batch_size",
    "device",
    "threads",
    "compile",
    "gpu_batch_tokens",
    "engine",  # the builtin engine's NLLs equal transformers' (tests/core/test_llama.py)
}


def _config_key(cfg: Any) -> str:
    dumped = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in SCORING_KEYS_IGNORED}
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(cfg: Any) -> Path:
    return OUT_DIR / f"lm_cache-{_config_key(cfg)}.parquet"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _load(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    table = pq.read_table(path)
    return {row.pop("key"): row for row in table.to_pylist()}


def _save(path: Path, rows: dict[str, dict[str, Any]], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{"key": k, **v} for k, v in rows.items()], schema=schema)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def lm_columns(
    texts: Sequence[str],
    cfg: Any,
    scorer: Any = None,
    batch: int = 16,
    log: Any = None,
    score_missing: bool = True,
) -> dict[str, pa.Array]:
    """Perplexity signal columns for `texts` (a poisonguard perplexity Config), from the cache where
    possible; the rest is scored in batches of `batch` documents and saved after each batch."""
    from poisonguard.filters import perplexity

    path = cache_path(cfg)
    rows = _load(path)
    keys = [_key(t) for t in texts]
    missing = list(dict.fromkeys(k for k in keys if k not in rows))
    by_key = dict(zip(keys, texts, strict=True))
    schema: pa.Schema | None = pq.read_schema(path) if path.exists() else None
    if missing and not score_missing:
        raise LookupError(f"{len(missing)} texts are not in {path}: run python -m bench.lm_cache first")
    if missing:
        scorer = scorer or perplexity.PerplexityScorer(cfg)
        start = time.perf_counter()
        for first in range(0, len(missing), batch):
            part = missing[first : first + batch]
            table = pa.table({"id": part, "text": [by_key[k] for k in part], "url": pa.nulls(len(part))})
            columns = scorer.score(table)
            if schema is None:
                schema = pa.schema(
                    [pa.field("key", pa.string())] + [pa.field(n, c.type) for n, c in columns.items()]
                )
            for i, k in enumerate(part):
                rows[k] = {n: c[i].as_py() for n, c in columns.items()}
            _save(path, rows, schema)
            if log:
                done = first + len(part)
                log(
                    f"LM cache: {done}/{len(missing)} docs scored "
                    f"({done / (time.perf_counter() - start):.2f}/s)"
                )
    assert schema is not None or not texts
    fields = [f for f in (schema or pa.schema([])) if f.name != "key"]
    return {f.name: pa.array([rows[k][f.name] for k in keys], f.type) for f in fields}


def main(argv: list[str] | None = None) -> int:
    from bench import poisonbench
    from poisonguard.pipelines.config import load_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm-clean", type=int, default=15)
    ap.add_argument("--lm-poison", type=int, default=25)
    ap.add_argument(
        "--undecided-poison",
        action="store_true",
        help="only the sampled poison the cheap stages leave to the LM (the docs routing can change)",
    )
    args = ap.parse_args(argv)
    base, poison, _ = poisonbench.build(args.per_category, args.seed)
    sample = poisonbench.lm_sample(base, poison, args)
    cfg = load_config(overrides={"cloaking": {"enabled": False}})
    if args.undecided_poison:
        from poisonguard.pipelines.runner import score_documents

        sample = [d for d in sample if d.get("label") == 1]
        decided = score_documents(poisonbench.to_table(sample), cfg)
        left = {
            i
            for i, o in zip(decided["id"].to_pylist(), decided["outcome"].to_pylist(), strict=True)
            if o == "kept"
        }
        # the families the LM is for first, so an interrupted run has cached the useful part
        sample = sorted(
            (d for d in sample if d["id"] in left),
            key=lambda d: d["family"] not in ("P-TARPIT", "P-SUDO-adapt"),
        )
        print(f"LM cache: {len(sample)} undecided poison docs", file=sys.stderr, flush=True)
    table = poisonbench.to_table(sample)
    lm_columns(
        table.column("text").to_pylist(), cfg.perplexity, log=lambda m: print(m, file=sys.stderr, flush=True)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
