"""OUT/report.html: one self-contained page that says what a run dropped, why, and whether to believe it.

This module builds the page's sections and the page; what it reads is in report_data.py, how text
is escaped and highlighted in report_text.py, the plots in report_plots.py.

Built from OUT/report.json, OUT/manifest.json (the run's validated config, for thresholds) and the
shards alone, so `poisonguard report OUT` rebuilds it at any time; the same inputs give the same bytes
(plots are rendered with fixed SVG ids and no dates).

Sections: summary (counts, time, throughput, config, versions), plots (documents per reason, score
distributions kept vs quarantined with the config's thresholds, duplicate cluster sizes, quarantine
rate per host, languages), evidence (a capped sample of quarantined documents per reason, cut to a
window around the offending span, which is highlighted), mined trigger candidates, unreadable records,
the crawl section when there is one, and the config.

Safety: every piece of document text, URL, reason and host goes through `html.escape`; invisible
characters are shown as visible escapes (`<U+E0069>`), so the page never hides what the attacker hid.
The page has no JavaScript and loads nothing: plots are SVG files embedded as data URIs in <img>
elements, which browsers never let run scripts.

Size: samples are capped (MAX_SAMPLES_PER_REASON per reason, MAX_REASONS_WITH_SAMPLES reasons, a
window of WINDOW_CHARS characters per document), plots are capped (MAX_SIGNAL_PLOTS score plots, top
N bars), and tables are capped, so the page stays well under a megabyte whatever the corpus size.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poisonguard.core.files import atomic_path
from poisonguard.core.schema import QUARANTINED
from poisonguard.pipelines.report_data import (
    MAX_REASONS_WITH_SAMPLES,
    MAX_SAMPLES_PER_REASON,
    Sample,
    ShardFacts,
    collect,
    read_json,
    run_config,
    threshold_for,
)
from poisonguard.pipelines.report_plots import (
    plot_clusters,
    plot_hosts,
    plot_languages,
    plot_reasons,
    plot_scores,
)
from poisonguard.pipelines.report_text import (
    WINDOW_CHARS,
    as_int,
    cell,
    dict_rows_table,
    document_spans,
    escape_visible,
    fmt_num,
    focus_for,
    id_html,
    kv_table,
    render_hidden,
    render_window,
    table_html,
)

REPORT_FILE = "report.html"


def section_summary(report: dict[str, Any], config: dict[str, Any], facts: ShardFacts) -> str:
    counts = report.get("counts") or {}
    total = counts.get("in") or 0
    rows = []
    for name in ("in", "kept", "duplicate", "quarantined", "filtered", "unreadable"):
        n = counts.get(name, 0) or 0
        share = f"{100 * n / total:.1f}%" if total else "–"
        rows.append([html.escape(name), fmt_num(n), share])
    inputs = [str(i) for i in report.get("inputs") or []]
    shown = "".join(f"<li>{escape_visible(i)}</li>" for i in inputs[:20])
    if len(inputs) > 20:
        shown += f"<li>… {len(inputs) - 20:,} more</li>"
    run = [
        ["command", html.escape(str(report.get("command", "filter")))],
        ["input size", f"{fmt_num((report.get('input_bytes') or 0) / 1e6)} MB"],
        ["time", f"{fmt_num(report.get('elapsed_s'))} s"],
        ["throughput", f"{fmt_num(report.get('docs_per_s'))} docs/s, {fmt_num(report.get('mb_per_s'))} MB/s"],
        ["documents scored by the language model", fmt_num(report.get("lm_scored_docs"))],
    ]
    lm_section = config.get("perplexity")
    model = lm_section.get("model") if isinstance(lm_section, dict) else None
    used = report.get("config") or {}
    lm_used = used.get("lm")
    run.append(
        [
            "language model",
            html.escape(
                "not used"
                if lm_used is False
                else str(used.get("perplexity_model") or model or "shipped default")
            ),
        ]
    )
    enabled = [s for s, v in config.items() if isinstance(v, dict) and v.get("enabled") is True]
    silent = [s for s in enabled if not any(c.startswith(f"{s}_") for c in facts.signal_columns)]
    run.append(["detectors enabled", html.escape(", ".join(enabled) or "–")])
    if silent:
        run.append(
            [
                "enabled but wrote no signal columns",
                f'<span class="warn">{html.escape(", ".join(silent))}</span> (nothing they look for '
                "was checked in this run)",
            ]
        )
    versions = report.get("versions") or {}
    run.append(["versions", html.escape(", ".join(f"{k} {v}" for k, v in versions.items()))])
    timings = report.get("timings_s") or {}
    timing_rows = [[html.escape(k), fmt_num(v)] for k, v in timings.items()]
    return (
        '<section id="summary"><h2>Summary</h2><div class="cols"><div>'
        + table_html(["outcome", "documents", "share"], rows, "counts")
        + f"</div><div>{table_html(['run', ''], run, 'kv')}</div></div>"
        + f"<details><summary>inputs ({len(inputs):,})</summary><ul>{shown}</ul></details>"
        + "<details><summary>time per stage (s)</summary>"
        + f"{table_html(['stage', 'seconds'], timing_rows)}</details>"
        + "</section>"
    )


def section_hosts(report: dict[str, Any]) -> str:
    """Every host the report lists, most quarantined first, with its quarantine rate."""
    hosts = [h for h in report.get("hosts") or [] if isinstance(h, dict) and h.get("docs")]
    if not hosts:
        return ""
    hosts.sort(key=lambda h: (-(h.get(QUARANTINED) or 0) / h["docs"], -h["docs"], str(h.get("host"))))
    rows = [
        [
            cell(h.get("host")),
            fmt_num(h["docs"]),
            *(fmt_num(h.get(o) or 0) for o in ("kept", "duplicate", QUARANTINED, "filtered")),
            f"{100 * (h.get(QUARANTINED) or 0) / h['docs']:.1f}%",
        ]
        for h in hosts
    ]
    total = report.get("hosts_total", len(hosts))
    note = f" (the {len(hosts):,} largest of {fmt_num(total)})" if total and total > len(hosts) else ""
    header = ["host", "docs", "kept", "duplicate", "quarantined", "filtered", "quarantine rate"]
    return (
        f'<details id="hosts-table"><summary>All hosts{note}, most quarantined first</summary>'
        f'<div class="wrap">{table_html(header, rows, "counts")}</div></details>'
    )


def section_crawl(crawl: dict[str, Any]) -> str:
    """The crawl stats as narrow tables: numbers four to a row, then one table per per-item mapping."""
    scalars = [(k, v) for k, v in crawl.items() if not isinstance(v, dict | list)]
    rows = []
    for i in range(0, len(scalars), 4):
        cells: list[str] = []
        for key, value in scalars[i : i + 4]:
            cells += [f"<b>{html.escape(str(key))}</b>", fmt_num(value)]
        rows.append(cells + [""] * (8 - len(cells)))
    parts = ['<div class="wrap">' + table_html(["stat", "value"] * 4, rows, "kv") + "</div>"]
    for key, value in crawl.items():
        if not isinstance(value, dict | list) or not value:
            continue
        parts.append(f"<h3>{html.escape(str(key))}</h3>")
        if isinstance(value, list):
            body = dict_rows_table(value) if all(isinstance(v, dict) for v in value) else cell(value)
        elif all(isinstance(v, dict) for v in value.values()):
            body = dict_rows_table([{"": k, **v} for k, v in value.items()])
        else:
            body = (
                section_crawl(value) if any(isinstance(v, dict) for v in value.values()) else kv_table(value)
            )
        parts.append(f'<div class="wrap">{body}</div>')
    return "".join(parts)


def render_sample(sample: Sample, anchor: str, config: dict[str, Any] | None = None) -> str:
    row = sample.row
    text = str(row.get("text") or "")
    spans = document_spans(row)
    cp = as_int(row.get("perplexity_changepoint_char"))
    focus = focus_for(sample.reason, row, spans)
    body = render_window(text, spans, focus, cp)
    reasons = ", ".join(str(r) for r in row.get("reasons") or [])
    meta = [id_html(row.get("id")), f'<span class="outcome">{html.escape(str(row.get("outcome")))}</span>']
    if row.get("url"):
        meta.insert(0, f'<span class="url">{cell(row.get("url"))}</span>')  # a URL says more than a hash
    if row.get("duplicate_of"):
        kind = "exact duplicate" if row.get("dedup_exact_of") else "near-duplicate"
        meta.append(f"{kind} of {id_html(row.get('duplicate_of'))}")
    details = []
    # `repetition:dup_5gram_char_frac` is decided on the column of the same name: show it and its limit.
    column = sample.reason.replace(":", "_", 1)
    if isinstance(row.get(column), int | float):
        threshold = threshold_for(column, config or {})
        limit = f" (threshold: {threshold[0]} {threshold[1]:g})" if threshold else ""
        details.append(f"{html.escape(column)} = {fmt_num(row[column])}{limit}")
    if (row.get("dedup_cluster_size") or 0) >= 2:
        details.append(
            f"near-duplicate cluster of {fmt_num(row.get('dedup_cluster_size'))} documents on "
            f"{fmt_num(row.get('dedup_cluster_domains'))} domain(s), first member "
            f"{id_html(row.get('dedup_cluster_id'))}"
        )
    if row.get("dedup_exact_of"):
        details.append(f"exact copy of {id_html(row.get('dedup_exact_of'))} (same normalised text)")
    for m in (row.get("triggers_matches") or [])[:5]:
        details.append(
            f"trigger [{cell(m.get('category'))}] {cell(m.get('phrase'))} at {fmt_num(m.get('start'))}"
        )
    if row.get("unicode_tag_payload"):
        details.append(f"tag-character payload: {cell(row.get('unicode_tag_payload'))}")
    if row.get("perplexity_trigger_candidate"):
        details.append(f"text before the change-point: {cell(row.get('perplexity_trigger_candidate'))}")
    detail_html = f'<p class="lbl">{"; ".join(details)}</p>' if details else ""
    return (
        f'<div class="doc" id="{anchor}"><p class="meta">{" · ".join(meta)}</p><p class="lbl">reasons: '
        f"{escape_visible(reasons)}</p>{detail_html}<pre>{body}</pre>"
        f"{render_hidden(row, sample.reason)}</div>"
    )


BENIGN_REASONS = ("dedup:near_duplicate", "dedup:exact_duplicate")


def evidence_rank(reason: str) -> int:
    """Suspected poison first, then opt-in filters, then benign duplicates (stable within a rank)."""
    if reason in BENIGN_REASONS:
        return 2
    if reason.startswith(("policy:", "language:not_allowed")):
        return 1
    return 0


def section_evidence(report: dict[str, Any], facts: ShardFacts, config: dict[str, Any] | None = None) -> str:
    reasons = report.get("reasons") or {}
    if not reasons:
        return "<p>Nothing was dropped.</p>"
    parts = [
        '<p class="legend">Highlights: <mark class="trig">trigger</mark> <mark class="uni">unicode '
        'span</mark> <mark class="ppl">highest-perplexity window</mark> <span class="cp">▼change-point'
        '</span> <span class="inv">&lt;U+E0069&gt;</span> invisible character. Text is cut to '
        f"{WINDOW_CHARS} characters around the evidence; at most {MAX_SAMPLES_PER_REASON} documents "
        "per reason; a document with several reasons is shown once.</p>"
    ]
    shown: dict[str, tuple[str, str]] = {}  # document id -> (anchor, reason it is shown under)
    for n, (reason, count) in enumerate(sorted(reasons.items(), key=lambda kv: evidence_rank(kv[0]))):
        if n >= MAX_REASONS_WITH_SAMPLES:
            parts.append(f"<p>… {len(reasons) - n} more reason(s) without samples (page size cap).</p>")
            break
        samples = facts.samples.get(str(reason), [])
        docs, also = [], []
        for sample in samples:
            doc_id = str(sample.row.get("id"))
            if doc_id in shown:
                anchor, first = shown[doc_id]
                also.append(f'<a href="#{anchor}">{cell(doc_id)}</a> (under {escape_visible(first)})')
                continue
            anchor = f"doc-{len(shown) + 1}"
            shown[doc_id] = (anchor, str(reason))
            docs.append(render_sample(sample, anchor, config))
        more = f'<p class="lbl">Also: {", ".join(also)}</p>' if also else ""
        opened = " open" if n < 8 else ""
        parts.append(
            f'<details class="reason"{opened}><summary><b>{escape_visible(str(reason))}'
            f"</b> — {fmt_num(count)} document(s), {len(samples)} shown</summary>{''.join(docs)}{more}"
            "</details>"
        )
    return "".join(parts)


def section_triggers(report: dict[str, Any]) -> str:
    mined = [m for m in report.get("trigger_candidates") or [] if isinstance(m, dict)]
    if not mined:
        lm = (report.get("config") or {}).get("lm")
        why = " (the language model was not used)" if lm is False else ""
        return f"<p>No trigger candidates were mined{why}.</p>"
    return (
        "<p>Text that stands right before a perplexity change-point, ranked by documents and hosts: "
        "a candidate seen across many unrelated hosts is likely a backdoor trigger.</p>"
        + dict_rows_table(mined)
    )


def section_unreadable(report: dict[str, Any]) -> str:
    items = [u for u in report.get("unreadable") or [] if isinstance(u, dict)]
    total = report.get("unreadable_total", len(items)) or 0
    if not items:
        return "<p>Every input record was readable.</p>"
    return f"<p>{fmt_num(total)} unreadable record(s); the first ones:</p>" + dict_rows_table(items)


def section_config(config: dict[str, Any], out: Path) -> str:
    source = "manifest.json" if (out / "manifest.json").exists() else "configuration defaults"
    text = json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return (
        f"<details><summary>The run's validated configuration ({html.escape(source)})</summary>"
        f"<pre>{escape_visible(text)}</pre></details>"
    )


# ---------------------------------------------------------------------------------------------
# The page

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}table.counts td:nth-child(n+2){text-align:right}
.cols{display:flex;gap:2em;flex-wrap:wrap}img.plot{max-width:100%;display:block;margin:.5em 0}
pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;border:1px solid #e4e4e4;padding:.5em}
mark.trig{background:#ffb3b3}mark.uni{background:#ffd27f}mark.ppl{background:#d6c7ff}
mark{padding:0 1px}.inv{color:#b00;background:#fee;font-family:monospace;font-size:.85em;
border:1px dashed #b00}.cp{color:#fff;background:#6a3fb5;font-size:.8em;padding:0 3px}
.cut{color:#999}.doc{border-left:3px solid #c0392b;padding-left:.8em;margin:1em 0}.meta{margin:0}
.id{font-family:monospace}.outcome{font-weight:bold}.url{color:#555}.lbl{margin:.2em 0;color:#444}
ul.hidden{font-family:monospace;font-size:.9em}.chan{background:#333;color:#fff;padding:0 4px}
.warn{color:#b00;font-weight:bold}details{margin:.4em 0}summary{cursor:pointer}
.wrap{max-width:100%;overflow-x:auto}td{max-width:32em;overflow-wrap:anywhere}
nav#toc{background:#f4f4f4;padding:.4em .8em;border:1px solid #ddd}
"""


def _guard(name: str, build: Callable[[], str]) -> str:
    """A section that cannot be built says why; the run that writes the page must not fail over it."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - reported on the page, with the section's name
        return (
            f'<p class="warn">The {html.escape(name)} section could not be built: '
            f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"
        )


def build_report_html(out: Path) -> str:
    """The page for the finished run in `out` (report.json, manifest.json and the shards)."""
    report = read_json(out / "report.json")
    if not report:
        raise FileNotFoundError(f"{out / 'report.json'}: missing; is this the output folder of a run?")
    config = run_config(out)
    problems = []
    try:
        facts = collect(out, report)
    except Exception as exc:  # noqa: BLE001 - an unreadable shard must not cost the rest of the page
        facts = ShardFacts()
        problems.append(
            f'<p class="warn">The shards could not be read for plots and evidence: '
            f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"
        )
    counts = report.get("counts") or {}
    title = f"poisonguard {report.get('command', 'filter')} report"
    sections = [
        _guard("summary", lambda: section_summary(report, config, facts)),
        '<section id="plots"><h2>What was dropped</h2>',
        '<div id="plot-reasons">' + _guard("reasons plot", lambda: plot_reasons(report)) + "</div>",
        '<h3>Score distributions</h3><div id="plot-scores">'
        + _guard("score plot", lambda: plot_scores(facts, config))
        + "</div>",
        '<h3>Duplicates</h3><div id="plot-clusters">'
        + _guard("cluster plot", lambda: plot_clusters(report, facts))
        + "</div>",
        '<h3 id="hosts">Hosts</h3><div id="plot-hosts">'
        + _guard("host plot", lambda: plot_hosts(report))
        + "</div>"
        + _guard("hosts table", lambda: section_hosts(report)),
        '<h3>Languages</h3><div id="plot-languages">'
        + _guard("language plot", lambda: plot_languages(report))
        + "</div></section>",
        '<section id="evidence"><h2>Evidence: dropped documents per reason</h2>'
        + _guard("evidence", lambda: section_evidence(report, facts, config))
        + "</section>",
        '<section id="triggers"><h2>Mined trigger candidates</h2>'
        + _guard("triggers", lambda: section_triggers(report))
        + "</section>",
        '<section id="unreadable"><h2>Unreadable records</h2>'
        + _guard("unreadable", lambda: section_unreadable(report))
        + "</section>",
    ]
    if isinstance(report.get("crawl"), dict):
        sections.append(
            '<section id="crawl"><h2>Crawl</h2>'
            + _guard("crawl", lambda: section_crawl(report["crawl"]))
            + "</section>"
        )
    sections.append(
        '<section id="config"><h2>Configuration</h2>'
        + _guard("config", lambda: section_config(config, out))
        + "</section>"
    )
    outcomes = ("kept", "duplicate", "quarantined", "filtered", "unreadable")
    headline = f"{fmt_num(counts.get('in', 0))} documents in: " + ", ".join(
        f"{fmt_num(counts.get(name, 0))} {name}" for name in outcomes
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{headline}</p>{''.join(problems)}{table_of_contents(sections)}"
        + "\n".join(sections)
        + "</body></html>\n"
    )


TOC_TITLES = {
    "summary": "Summary",
    "plots": "What was dropped",
    "hosts": "Hosts",
    "evidence": "Evidence",
    "triggers": "Trigger candidates",
    "unreadable": "Unreadable records",
    "crawl": "Crawl",
    "config": "Configuration",
}


def table_of_contents(sections: list[str]) -> str:
    """Links to the sections the page has, in page order."""
    found = re.findall(r'<(?:section|h3) id="([a-z]+)"', "".join(sections))
    links = [f'<a href="#{name}">{TOC_TITLES[name]}</a>' for name in found if name in TOC_TITLES]
    return f'<nav id="toc">{" · ".join(links)}</nav>'


def write_report_html(out: Path) -> Path:
    """Write OUT/report.html (atomically) and return its path."""
    out = Path(out)
    page = build_report_html(out)
    target = out / REPORT_FILE
    with atomic_path(target) as tmp:
        tmp.write_text(page, "utf-8")
    return target
