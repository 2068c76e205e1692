"""`make demo`: run poisonguard on the built-in examples and say where the results are."""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from poisonguard.pipelines.cli import print_summary
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.runner import run_filter

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _labels_by_outcome(out: Path) -> Counter[tuple[str, str]]:
    """(label, outcome) pairs, from the label each example document carries in `meta`."""
    pairs: Counter[tuple[str, str]] = Counter()
    for folder, outcome in (("clean", "kept"), ("quarantine", None)):
        for shard in sorted((out / folder).glob("part-*.parquet")):
            table = pq.read_table(shard)
            outcomes = table.column("outcome").to_pylist() if outcome is None else [outcome] * table.num_rows
            for meta, got in zip(table.column("meta").to_pylist(), outcomes, strict=True):
                label = json.loads(meta).get("label", "?") if meta else "?"
                pairs[(label, got)] += 1
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--no-lm", action="store_true", help="skip the language-model stage")
    args = parser.parse_args()
    out = args.out / "filter"
    if out.exists():
        shutil.rmtree(out)
    cfg = load_config()
    corpus = EXAMPLES / "corpus" / "demo.jsonl"
    print(f"== poisonguard filter {corpus.relative_to(EXAMPLES.parent)} --out {out}")
    report = run_filter([str(corpus)], out, cfg, use_lm=not args.no_lm, show_progress=False)
    print_summary(report, out)
    print("\nexample labels -> outcomes:")
    for (label, outcome), n in sorted(_labels_by_outcome(out).items()):
        print(f"  {label:<16} {outcome:<12} {n}")


if __name__ == "__main__":
    main()
