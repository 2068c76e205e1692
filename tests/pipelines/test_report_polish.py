"""Report page: table of contents, poison before benign dedup, exact duplicates named, all hosts with
their quarantine rate, short ids where a URL says more, the crawl as narrow tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.report_html import evidence_rank, section_crawl
from poisonguard.pipelines.runner import run_filter
from tests.conftest import DEMO_CORPUS, write_jsonl
from tests.pipelines.test_report import parse, text_of


def _page(tmp_path: Path) -> tuple[Path, str]:
    """The demo corpus plus an exact copy of a page and a document without an id (hash id, with URL)."""
    rows = [json.loads(line) for line in DEMO_CORPUS.read_text("utf-8").splitlines() if line.strip()]
    garden = next(r for r in rows if r["id"] == "garden-tomatoes")
    extra = [
        {**garden, "id": "garden-copy", "url": "https://mirror.example.net/tomatoes"},
        {
            "url": "https://anon.example.org/p",
            "text": "Nice post.\U000e0069\U000e0067\U000e006e Thanks a lot.",
        },
    ]
    src = write_jsonl(tmp_path / "extra.jsonl", extra)
    out = tmp_path / "out"
    run_filter(
        [str(DEMO_CORPUS), str(src)],
        out,
        load_config(overrides={"perplexity": {"enabled": False}}),
        show_progress=False,
    )
    return out, (out / "report.html").read_text("utf-8")


def test_report_polish(tmp_path: Path) -> None:
    out, page = _page(tmp_path)
    tree = parse(page)
    toc = next(el for el in tree.iter("nav") if el.get("id") == "toc")
    targets = [a.get("href") for a in toc.iter("a")]
    ids = {el.get("id") for el in tree.iter() if el.get("id")}
    assert targets[:2] == ["#summary", "#plots"] and "#evidence" in targets and "#config" in targets
    assert all(t[1:] in ids for t in targets)

    # evidence: every poison reason comes before the benign duplicate reasons
    summaries = [
        text_of(next(d.iter("summary"))).split(" — ")[0]
        for d in tree.iter("details")
        if d.get("class") == "reason"
    ]
    ranks = [evidence_rank(r) for r in summaries]
    assert ranks == sorted(ranks) and ranks[-1] == 2 and ranks[0] == 0

    evidence = text_of(next(el for el in tree.iter("section") if el.get("id") == "evidence"))
    assert "exact duplicate of garden-tomatoes" in evidence

    # a 64-character hash id is shortened where a URL names the document
    anon = re.search(r'<span class="id" title="([0-9a-f]{64})">([0-9a-f]{12})…</span>', page)
    assert anon and anon.group(1).startswith(anon.group(2))

    # all hosts, with the quarantine rate, most quarantined first
    table = next(el for el in tree.iter("details") if el.get("id") == "hosts-table")
    rows = [[text_of(td) for td in tr.iter("td")] for tr in table.iter("tr")][1:]
    report = json.loads((out / "report.json").read_text())
    assert len(rows) == report["hosts_total"] == len(report["hosts"]) >= 14
    rates = [float(r[-1].rstrip("%")) for r in rows]
    assert rates == sorted(rates, reverse=True) and rates[0] == 100.0


def test_crawl_stats_render_as_narrow_tables() -> None:
    crawl = {
        "pages": 12,
        "bytes": 34567,
        "finish_reason": "finished",
        "http_status": {"200": 11, "404": 1},
        "hosts": {"a.example": {"pages": 7, "bytes": 100}, "b.example": {"pages": 5, "bytes": 90}},
        "cloaking_probes": {"probed": 2, "views_differ": ["http://a.example/x"], "results": {}},
    }
    html_text = section_crawl(crawl)
    tree = parse(f"<!DOCTYPE html><html><head><title>t</title></head><body>{html_text}</body></html>")
    first = next(tree.iter("table"))
    assert len(next(first.iter("tr"))) == 8  # four stat/value pairs a row, not one long column
    hosts = [t for t in tree.iter("table") if "a.example" in text_of(t)]
    assert hosts and "pages" in text_of(hosts[0])
    assert all(el.get("class") == "wrap" for el in tree.iter("div"))
