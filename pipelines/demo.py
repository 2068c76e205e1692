"""`make demo`: run poisonguard on the built-in examples and say where the results are."""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


def crawl_demo_site(out: Path, use_lm: bool) -> None:
    """Serve examples/site on 127.0.0.1 and crawl it like `poisonguard crawl` would."""
    from poisonguard.crawler.run import run_crawl

    site = EXAMPLES / "site"
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seed = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        cfg = load_config()
        print(f"\n== poisonguard crawl {seed} --out {out}   (serving {site.relative_to(EXAMPLES.parent)})")
        stats = run_crawl([seed], out, cfg.crawl)
    finally:
        server.shutdown()
    report = run_filter(
        [str(out / "raw")],
        out,
        cfg,
        use_lm=use_lm,
        show_progress=False,
        extra_report={"command": "crawl", "crawl": stats},
    )
    print_summary(report, out)
    print("\npages -> outcomes (expected per examples/site/README.md):")
    expected = {}
    for line in (site / "README.md").read_text("utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].endswith(".html"):
            expected[cells[0]] = cells[1]
    for folder in ("clean", "quarantine"):
        for shard in sorted((out / folder).glob("part-*.parquet")):
            table = pq.read_table(shard)
            outcomes = table.column("outcome").to_pylist() if "outcome" in table.column_names else None
            reasons = table.column("reasons").to_pylist() if outcomes else None
            for i, url in enumerate(table.column("url").to_pylist()):
                page = url.rsplit("/", 1)[1] or "index.html"
                got = outcomes[i] if outcomes else "kept"
                why = ", ".join(reasons[i]) if reasons else ""
                print(f"  {page:<16} expect {expected.get(page, '?'):<26} got {got:<12} {why}")


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
    crawl_out = args.out / "crawl"
    if crawl_out.exists():
        shutil.rmtree(crawl_out)
    crawl_demo_site(crawl_out, use_lm=not args.no_lm)
    print(f"\nresults: {out} (corpus) and {crawl_out} (crawl); open report.html in each")


if __name__ == "__main__":
    main()
