"""OUT/report.html: one self-contained page that says what a run dropped, why, and whether to believe it.

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

import base64
import html
import io
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.core.files import atomic_path
from poisonguard.core.schema import DECISION_FIELDS, DOCUMENT_COLUMNS, QUARANTINED
from poisonguard.filters import registry
from poisonguard.filters.contract import knob_value

REPORT_FILE = "report.html"
MAX_SAMPLES_PER_REASON = 5
MAX_REASONS_WITH_SAMPLES = 30
WINDOW_BEFORE = 200  # characters shown before the offending span ...
WINDOW_CHARS = 700  # ... out of this many in all
MAX_HIDDEN_SPANS = 3
HIDDEN_SPAN_CHARS = 300
MAX_SIGNAL_PLOTS = 12
MAX_VALUES_PER_SIGNAL = 200_000  # per outcome; enough for a histogram, bounded memory on huge runs
MAX_BARS = 25
MAX_TABLE_ROWS = 30
MAX_CELL_CHARS = 200
MAX_ESCAPES = 40  # invisible characters written out per run; the rest are counted

NOT_SIGNALS = frozenset(DOCUMENT_COLUMNS) | {name for name, _ in DECISION_FIELDS}
# Signal columns that are ids or positions, not scores: never plotted as distributions.
NOT_SCORES = ("dedup_cluster_id", "_start", "_end", "_char", "_of")


# ---------------------------------------------------------------------------------------------
# Reading OUT


def shard_paths(out: Path, kind: str) -> list[Path]:
    """OUT/<kind>/part-*.parquet in name order (kind: clean or quarantine)."""
    return sorted((out / kind).glob("part-*.parquet"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}:1: expected a JSON object")
    return data


def run_config(out: Path) -> dict[str, Any]:
    """The full validated config of the run (manifest.json), else the defaults.

    The defaults are a fallback for a page written before manifest.json exists; they are the run's
    thresholds unless the run changed them.
    """
    config = read_json(out / "manifest.json").get("config")
    if isinstance(config, dict):
        return config
    from poisonguard.pipelines.config import load_config

    return load_config().model_dump(mode="json")


def reason_key(reason: str) -> str:
    """`detector:detail(extra)` -> `detector:detail`, as report.json's `reasons` counts them."""
    return reason.split("(")[0]


# ---------------------------------------------------------------------------------------------
# Thresholds: each signal column's knob, as its detector declares it (filters/registry.py)


def threshold_for(column: str, config: dict[str, Any]) -> tuple[str, float] | None:
    """The value in the run's config of the knob that decides on `column`, as (direction, value):
    direction ``above`` when larger values are flagged, ``below`` when smaller ones are. None for a
    column no detector declares a knob for, or whose knob is off (null)."""
    found = registry.signal_of(column)
    if found is None or found[1].knob is None:
        return None
    detector, signal = found
    section = config.get(detector.name)
    value = knob_value(section, signal.knob) if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return signal.direction, float(value)


# ---------------------------------------------------------------------------------------------
# Text rendering: escaped, invisible characters made visible, offending spans highlighted

_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Co", "Cn", "Cs", "Zl", "Zp"})


def is_invisible(ch: str) -> bool:
    return ch not in "\n\t" and unicodedata.category(ch) in _INVISIBLE_CATEGORIES


def escape_visible(text: str, html_out: bool = True) -> str:
    """Text with every invisible character written as `<U+XXXX>`; HTML-escaped when `html_out`.

    A run of tag characters (U+E0020-E007E, "ASCII smuggling") is followed by what it decodes to.
    """
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if not is_invisible(ch):
            j = i
            while j < n and not is_invisible(text[j]):
                j += 1
            parts.append(html.escape(text[i:j], quote=False) if html_out else text[i:j])
            i = j
            continue
        j = i
        while j < n and is_invisible(text[j]):
            j += 1
        run = text[i:j]
        escapes = "".join(f"<U+{ord(c):04X}>" for c in run[:MAX_ESCAPES])
        if len(run) > MAX_ESCAPES:
            escapes += f"…(+{len(run) - MAX_ESCAPES} more invisible)"
        decoded = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
        if decoded:
            escapes += f' [tag characters decode to "{decoded}"]'
        parts.append(f'<span class="inv">{html.escape(escapes)}</span>' if html_out else escapes)
        i = j
    return "".join(parts)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # css class: trig, uni, ppl
    label: str


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def document_spans(row: dict[str, Any]) -> list[Span]:
    """Every span the detectors located in the document's text (missing columns are fine)."""
    spans: list[Span] = []
    for m in row.get("triggers_matches") or ():
        start, end = _int(m.get("start")), _int(m.get("end"))
        if start is not None and end is not None and end > start:
            spans.append(Span(start, end, "trig", f"trigger {m.get('category')}: {m.get('phrase')}"))
    for s in row.get("unicode_spans") or ():
        start, end = _int(s.get("start")), _int(s.get("end"))
        if start is not None and end is not None and end > start:
            spans.append(Span(start, end, "uni", f"unicode: {s.get('kind')}"))
    start, end = _int(row.get("perplexity_window_start")), _int(row.get("perplexity_window_end"))
    if start is not None and end is not None and end > start:
        spans.append(Span(start, end, "ppl", "highest-perplexity window"))
    return spans


def focus_for(reason: str, row: dict[str, Any], spans: list[Span]) -> int:
    """Where in the text the evidence for `reason` is: the window is cut around it."""
    detector = reason.split(":")[0]
    wanted = {"triggers": "trig", "unicode": "uni", "perplexity": "ppl"}.get(detector)
    if detector == "perplexity":
        cp = _int(row.get("perplexity_changepoint_char"))
        if cp is not None:
            return cp
    own = [s.start for s in spans if s.kind == wanted]
    if own:
        return min(own)
    return min((s.start for s in spans), default=0)


def render_window(text: str, spans: list[Span], focus: int, changepoint: int | None = None) -> str:
    """HTML of text[focus - WINDOW_BEFORE : ...] with the spans inside it highlighted."""
    start = max(0, min(focus, len(text)) - WINDOW_BEFORE)
    end = min(len(text), start + WINDOW_CHARS)
    marks: list[frozenset[str]] = [frozenset()] * (end - start)
    titles: dict[str, set[str]] = {}
    for span in spans:
        lo, hi = max(span.start, start), min(span.end, end)
        for k in range(lo - start, hi - start):
            marks[k] = marks[k] | {span.kind}
        if lo < hi:
            titles.setdefault(span.kind, set()).add(span.label)
    out: list[str] = ['<span class="cut">[…]</span>'] if start > 0 else []
    k = 0
    while k < end - start:
        j = k
        while (
            j < end - start
            and marks[j] == marks[k]
            and not (changepoint is not None and j > k and start + j == changepoint)
        ):
            j += 1
        if changepoint is not None and start + k == changepoint:
            out.append('<span class="cp">▼change-point</span>')
        piece = escape_visible(text[start + k : start + j])
        if marks[k]:
            kinds = sorted(marks[k])
            title = "; ".join(sorted(t for kind in kinds for t in titles.get(kind, ())))
            out.append(f'<mark class="{" ".join(kinds)}" title="{html.escape(title)}">{piece}</mark>')
        else:
            out.append(piece)
        k = j
    if end < len(text):
        out.append('<span class="cut">[…]</span>')
    return "".join(out)


def _highlight_phrase(text: str, phrase: str | None) -> str:
    pos = text.casefold().find(phrase.casefold()) if phrase else -1
    if pos < 0 or not phrase:
        return escape_visible(text)
    end = pos + len(phrase)
    return (
        escape_visible(text[:pos])
        + f'<mark class="trig">{escape_visible(text[pos:end])}</mark>'
        + escape_visible(text[end:])
    )


def render_hidden(row: dict[str, Any], reason: str) -> str:
    """The hidden spans of an HTML page, the flagged channel first, with the instruction marked."""
    spans = [s for s in row.get("hidden") or () if s and s.get("text")]
    if not spans:
        return ""
    instructions: dict[str, str] = {}
    for item in row.get("hidden_text_instructions") or ():
        if item and item.get("channel") is not None:
            instructions.setdefault(str(item["channel"]), str(item.get("phrase") or ""))
    channel = reason.split(":", 1)[1] if reason.startswith("hidden_text:") else None

    def rank(span: dict[str, Any]) -> tuple[int, int]:
        ch = str(span.get("channel"))
        flagged = ch == channel or ch == f"legit_{channel}"
        return (0 if flagged else 1 if ch in instructions else 2, 0)

    items = []
    for span in sorted(spans, key=rank)[:MAX_HIDDEN_SPANS]:
        ch = str(span.get("channel"))
        text = str(span["text"])
        cut = text[:HIDDEN_SPAN_CHARS]
        body = _highlight_phrase(cut, instructions.get(ch))
        if len(text) > len(cut):
            body += '<span class="cut">[…]</span>'
        items.append(f'<li><span class="chan">{html.escape(ch)}</span> {body}</li>')
    more = len(spans) - len(items)
    tail = f"<li>… {more} more hidden span(s)</li>" if more > 0 else ""
    return (
        '<p class="lbl">Hidden text (not visible on the page):</p>'
        f'<ul class="hidden">{"".join(items)}{tail}</ul>'
    )


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg, SVG embedded as data URIs)


def _svg_img(draw: Callable[[Any], None], width: float, height: float, alt: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # Fixed ids and no date: the same data give the same bytes (report rebuilds are identical).
    rc: dict[str, Any] = {
        "svg.hashsalt": "poisonguard",
        "svg.fonttype": "none",
        "font.size": 8,
        "text.parse_math": False,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],
    }
    with matplotlib.rc_context(rc):  # type: ignore[arg-type]  # typed as a Literal of every key
        fig = Figure(figsize=(width, height))
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    # Indentation is a third of matplotlib's SVG; text sits on one line, so dropping it is safe.
    svg = re.sub(rb"\n[ ]+", b"\n", buf.getvalue())
    data = base64.b64encode(svg).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _short(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def barh_plot(
    labels: list[str], values: Sequence[float], title: str, xlabel: str, notes: list[str] | None = None
) -> str:
    labels, values = labels[:MAX_BARS], list(values[:MAX_BARS])
    shown = [_short(escape_visible(lbl, html_out=False)) for lbl in labels]
    width, height = 7.5, 0.9 + 0.22 * len(labels)
    # Margins from the label lengths (a layout engine costs more than the drawing itself).
    left = min(0.6, (0.3 + 0.065 * max((len(s) for s in shown), default=1)) / width)

    def draw(fig: Any) -> None:
        ax = fig.add_axes((left, 0.55 / height, 0.88 - left, 1 - 0.9 / height))
        y = list(range(len(labels)))
        ax.barh(y, values, color="#4878a8")
        ax.set_yticks(y, shown)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        for pos, note in enumerate(notes or []):
            ax.annotate(
                note, (values[pos], pos), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
            )
        ax.margins(x=0.15)

    return _svg_img(draw, width, height, title)


# ---------------------------------------------------------------------------------------------
# One pass over the shards for what report.json does not hold


@dataclass
class Sample:
    reason: str
    row: dict[str, Any]


@dataclass
class ShardFacts:
    """Collected from the shards: values per signal, cluster sizes, samples per reason."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # column -> outcome -> values
    cluster_docs_by_size: Counter[int] = field(default_factory=Counter)
    cluster_urls: dict[str, list[str]] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    numeric_columns: list[str] = field(default_factory=list)
    signal_columns: list[str] = field(default_factory=list)


def _is_numeric(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_boolean(t)


def _score_columns(schema: pa.Schema) -> list[str]:
    return [
        f.name
        for f in schema
        if f.name not in NOT_SIGNALS
        and not f.name.startswith("_")
        and _is_numeric(f.type)
        and not any(f.name.endswith(s) or f.name == s for s in NOT_SCORES)
    ]


def _collect_values(
    facts: ShardFacts,
    paths: list[Path],
    outcome_of: Callable[[pa.RecordBatch], list[str]],
    wanted_clusters: set[str],
) -> None:
    for path in paths:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        cols = [c for c in facts.numeric_columns if c in names]
        extra = [c for c in ("dedup_cluster_id", "dedup_cluster_size", "url", "outcome") if c in names]
        if not cols and not extra:
            continue
        for batch in pf.iter_batches(columns=sorted(set(cols + extra)), batch_size=65_536):
            outcomes = outcome_of(batch)
            for col in cols:
                per = facts.values.setdefault(col, {})
                for value, outcome in zip(batch.column(col).to_pylist(), outcomes, strict=True):
                    if value is None or (isinstance(value, float) and not math.isfinite(value)):
                        continue
                    bucket = per.setdefault(outcome, [])
                    if len(bucket) < MAX_VALUES_PER_SIGNAL:
                        bucket.append(float(value))
            if "dedup_cluster_size" in extra:
                facts.cluster_docs_by_size.update(
                    s for s in batch.column("dedup_cluster_size").to_pylist() if s is not None and s >= 2
                )
            if wanted_clusters and "dedup_cluster_id" in extra and "url" in extra:
                for cid, url in zip(
                    batch.column("dedup_cluster_id").to_pylist(), batch.column("url").to_pylist(), strict=True
                ):
                    if cid in wanted_clusters and url:
                        urls = facts.cluster_urls.setdefault(cid, [])
                        if len(urls) < 5:
                            urls.append(url)


def _collect_samples(facts: ShardFacts, paths: list[Path], reasons: list[str]) -> None:
    """Up to MAX_SAMPLES_PER_REASON dropped documents per reason, in shard order.

    Reads only the `reasons` column of each row group, and the full rows only of row groups that
    hold a document still wanted, so a huge quarantine costs little.
    """
    room = {r: MAX_SAMPLES_PER_REASON for r in reasons}
    for path in paths:
        if not any(room.values()):
            return
        pf = pq.ParquetFile(path)
        if "reasons" not in pf.schema_arrow.names:
            continue
        for group in range(pf.num_row_groups):
            if not any(room.values()):
                return
            row_reasons = pf.read_row_group(group, columns=["reasons"]).column("reasons").to_pylist()
            picked: dict[int, list[str]] = {}
            for i, rs in enumerate(row_reasons):
                for key in dict.fromkeys(reason_key(r) for r in rs or ()):
                    if room.get(key):
                        room[key] -= 1
                        picked.setdefault(i, []).append(key)
            if not picked:
                continue
            rows = pf.read_row_group(group).take(pa.array(sorted(picked))).to_pylist()
            for i, row in zip(sorted(picked), rows, strict=True):
                for key in picked[i]:
                    facts.samples.setdefault(key, []).append(Sample(key, row))


def collect(out: Path, report: dict[str, Any]) -> ShardFacts:
    facts = ShardFacts()
    clean, quarantine = shard_paths(out, "clean"), shard_paths(out, "quarantine")
    schemas = [pq.read_schema(p) for p in (clean[:1] + quarantine[:1])]
    seen: dict[str, None] = {}
    for schema in schemas:
        for f in schema:
            if f.name not in NOT_SIGNALS and not f.name.startswith("_"):
                seen.setdefault(f.name, None)
        for name in _score_columns(schema):
            if name not in facts.numeric_columns:
                facts.numeric_columns.append(name)
    facts.signal_columns = list(seen)
    largest = [c for c in (report.get("largest_clusters") or [])[:10] if isinstance(c, dict)]
    wanted = {str(c.get("cluster_id")) for c in largest}
    _collect_values(facts, clean, lambda b: ["kept"] * b.num_rows, wanted)
    _collect_values(facts, quarantine, lambda b: [str(o) for o in b.column("outcome").to_pylist()], wanted)
    reasons = [str(r) for r in (report.get("reasons") or {})][:MAX_REASONS_WITH_SAMPLES]
    _collect_samples(facts, quarantine, reasons)
    return facts


# ---------------------------------------------------------------------------------------------
# Page sections (each returns HTML; a section that fails says so instead of failing the run)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    return _cell(value)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_CELL_CHARS:
        text = text[:MAX_CELL_CHARS] + "…"
    return escape_visible(text)


def _id_html(doc_id: Any) -> str:
    """A document id; a 64-character hash is cut to its first 12 characters (the full id on hover)."""
    text = str(doc_id)
    if len(text) >= 32 and all(c in "0123456789abcdef" for c in text):
        return f'<span class="id" title="{html.escape(text)}">{html.escape(text[:12])}…</span>'
    return f'<span class="id">{_cell(text)}</span>'


def _table(header: list[str], rows: Iterable[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv_table(data: dict[str, Any], depth: int = 0) -> str:
    rows = []
    for key, value in list(data.items())[: MAX_TABLE_ROWS * 2]:
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            # {host: {pages, bytes, ...}}: one row per entry reads better than nested tables
            rendered = _dict_rows_table([{"": k, **v} for k, v in value.items()])
        elif isinstance(value, dict) and value and depth < 2:
            rendered = _kv_table(value, depth + 1)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and depth < 2:
            rendered = _dict_rows_table(value)
        else:
            rendered = _num(value)
        rows.append([html.escape(str(key)), rendered])
    return _table(["key", "value"], rows, "kv")


def _dict_rows_table(items: list[dict[str, Any]]) -> str:
    keys: dict[str, None] = {}
    for item in items[:MAX_TABLE_ROWS]:
        keys.update(dict.fromkeys(str(k) for k in item))
    rows = [[_num(item.get(k)) for k in keys] for item in items[:MAX_TABLE_ROWS]]
    more = f"<p>… {len(items) - MAX_TABLE_ROWS:,} more</p>" if len(items) > MAX_TABLE_ROWS else ""
    return _table(list(keys), rows) + more


def section_summary(report: dict[str, Any], config: dict[str, Any], facts: ShardFacts) -> str:
    counts = report.get("counts") or {}
    total = counts.get("in") or 0
    rows = []
    for name in ("in", "kept", "duplicate", "quarantined", "filtered", "unreadable"):
        n = counts.get(name, 0) or 0
        share = f"{100 * n / total:.1f}%" if total else "–"
        rows.append([html.escape(name), _num(n), share])
    inputs = [str(i) for i in report.get("inputs") or []]
    shown = "".join(f"<li>{escape_visible(i)}</li>" for i in inputs[:20])
    if len(inputs) > 20:
        shown += f"<li>… {len(inputs) - 20:,} more</li>"
    run = [
        ["command", html.escape(str(report.get("command", "filter")))],
        ["input size", f"{_num((report.get('input_bytes') or 0) / 1e6)} MB"],
        ["time", f"{_num(report.get('elapsed_s'))} s"],
        ["throughput", f"{_num(report.get('docs_per_s'))} docs/s, {_num(report.get('mb_per_s'))} MB/s"],
        ["documents scored by the language model", _num(report.get("lm_scored_docs"))],
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
    timing_rows = [[html.escape(k), _num(v)] for k, v in timings.items()]
    return (
        '<section id="summary"><h2>Summary</h2><div class="cols"><div>'
        + _table(["outcome", "documents", "share"], rows, "counts")
        + f"</div><div>{_table(['run', ''], run, 'kv')}</div></div>"
        + f"<details><summary>inputs ({len(inputs):,})</summary><ul>{shown}</ul></details>"
        + "<details><summary>time per stage (s)</summary>"
        + f"{_table(['stage', 'seconds'], timing_rows)}</details>"
        + "</section>"
    )


def plot_reasons(report: dict[str, Any]) -> str:
    reasons = report.get("reasons") or {}
    if not reasons:
        return "<p>No document was dropped.</p>"
    labels = [str(k) for k in reasons]
    values = [float(v) for v in reasons.values()]
    return barh_plot(labels, values, "Documents per reason", "documents", [f"{int(v):,}" for v in values])


def _detector_of(column: str) -> str:
    found = registry.signal_of(column)
    return found[0].name if found is not None else column.split("_")[0]


Threshold = tuple[str, float]


def pick_score_columns(facts: ShardFacts, config: dict[str, Any]) -> list[tuple[str, Threshold | None]]:
    """Up to MAX_SIGNAL_PLOTS varying numeric signals, shared fairly between detectors.

    Within a detector, columns with a threshold come first (they decide); the detectors take turns,
    so one detector with twenty statistics cannot crowd the others out.
    """
    groups: dict[str, list[tuple[str, tuple[str, float] | None]]] = {}
    for col in facts.numeric_columns:
        per = facts.values.get(col) or {}
        if len({v for vs in per.values() for v in vs}) < 2:
            continue  # a constant column says nothing
        groups.setdefault(_detector_of(col), []).append((col, threshold_for(col, config)))
    for items in groups.values():
        items.sort(key=lambda item: item[1] is None)
    picked: list[tuple[str, tuple[str, float] | None]] = []
    turn = 0
    while len(picked) < MAX_SIGNAL_PLOTS and any(turn < len(items) for items in groups.values()):
        for items in groups.values():
            if turn < len(items) and len(picked) < MAX_SIGNAL_PLOTS:
                picked.append(items[turn])
        turn += 1
    order = {col: i for i, col in enumerate(facts.numeric_columns)}
    return sorted(picked, key=lambda item: order[item[0]])


def plot_scores(facts: ShardFacts, config: dict[str, Any]) -> str:
    chosen = pick_score_columns(facts, config)
    if not chosen:
        return "<p>No numeric signal varies in this run.</p>"
    ncols = 4
    nrows = math.ceil(len(chosen) / ncols)
    height = 2.0 * nrows + 0.5

    def draw(fig: Any) -> None:
        from matplotlib.lines import Line2D

        # Fixed margins: a layout engine would cost more than all the drawing.
        axes = fig.subplots(
            nrows,
            ncols,
            squeeze=False,
            gridspec_kw={
                "left": 0.05,
                "right": 0.98,
                "bottom": 0.5 / height,
                "top": 1 - 0.75 / height,
                "hspace": 0.55 / 2.0 * 2,
                "wspace": 0.3,
            },
        )
        for ax in axes.flat[len(chosen) :]:
            ax.set_visible(False)
        for ax, (col, threshold) in zip(axes.flat, chosen, strict=False):
            per = facts.values[col]
            everything = [v for vs in per.values() for v in vs]
            lo, hi = min(everything), max(everything)
            if threshold is not None:
                lo, hi = min(lo, threshold[1]), max(hi, threshold[1])
            for outcome, color in (("kept", "#4878a8"), (QUARANTINED, "#c0392b")):
                vs = per.get(outcome)
                if vs:
                    # Shares within each outcome, so a handful of quarantined documents stays visible
                    # next to millions of kept ones (a linear axis: log ticks are slow to lay out).
                    ax.hist(
                        vs,
                        bins=30,
                        range=(lo, hi if hi > lo else lo + 1),
                        histtype="step",
                        color=color,
                        weights=[1 / len(vs)] * len(vs),
                    )
            if threshold is not None:
                ax.axvline(threshold[1], color="black", linestyle="--", linewidth=1)
                ax.annotate(
                    f"{threshold[0]} {threshold[1]:g}",
                    (threshold[1], 1),
                    xycoords=("data", "axes fraction"),
                    xytext=(2, -8),
                    textcoords="offset points",
                    fontsize=6,
                )
            n_kept, n_quar = len(per.get("kept", ())), len(per.get(QUARANTINED, ()))
            ax.set_title(f"{_short(col, 34)}\n({n_kept:,} kept, {n_quar:,} quarantined)", fontsize=6.5)
            ax.tick_params(labelsize=6)
            ax.locator_params(nbins=4)
        fig.legend(
            handles=[
                Line2D([], [], color="#4878a8", label="kept"),
                Line2D([], [], color="#c0392b", label="quarantined"),
            ],
            loc="upper right",
            fontsize=7,
        )

    img = _svg_img(draw, 10, height, "Score distributions, kept vs quarantined")
    skipped = len([c for c in facts.numeric_columns if c in facts.values]) - len(chosen)
    note = (
        f"<p>Share of each outcome's documents per bin. Dashed line: the threshold in the run's config. "
        f"{skipped} more numeric signal(s) not drawn (constant or over the plot cap).</p>"
    )
    return img + note


_SIZE_BUCKETS = ((2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 1000), (1001, 10**12))


def plot_clusters(report: dict[str, Any], facts: ShardFacts) -> str:
    parts = []
    if facts.cluster_docs_by_size:
        labels, values = [], []
        for lo, hi in _SIZE_BUCKETS:
            # A cluster of size s contributes s documents: clusters = documents / size.
            n = sum(docs / size for size, docs in facts.cluster_docs_by_size.items() if lo <= size <= hi)
            if n:
                labels.append(str(lo) if lo == hi else f"{lo}+" if hi >= 10**12 else f"{lo}-{hi}")
                values.append(round(n))
        parts.append(
            barh_plot(
                labels, values, "Duplicate clusters by size", "clusters", [f"{int(v):,}" for v in values]
            )
        )
    else:
        parts.append("<p>No duplicate clusters (or dedup was off).</p>")
    clusters = [c for c in report.get("largest_clusters") or [] if isinstance(c, dict)]
    if clusters:
        rows = []
        for c in clusters[:10]:
            cid = str(c.get("cluster_id"))
            outcomes = c.get("outcomes") or {}
            urls = facts.cluster_urls.get(cid, [])
            rows.append(
                [
                    _cell(cid),
                    _num(c.get("size")),
                    _num(c.get("domains")),
                    html.escape(", ".join(f"{k} {v}" for k, v in outcomes.items())),
                    "<br>".join(_cell(u) for u in urls),
                ]
            )
        parts.append(
            "<h3>Largest clusters (most domains first)</h3>"
            + _table(["cluster (first member)", "size", "domains", "outcomes", "some urls"], rows)
        )
    return "".join(parts)


def plot_hosts(report: dict[str, Any]) -> str:
    hosts = [h for h in report.get("hosts") or [] if isinstance(h, dict) and h.get("docs")]
    if not hosts:
        return "<p>No document had a URL.</p>"
    top = hosts[:MAX_BARS]
    labels = [str(h.get("host")) for h in top]
    rates = [100 * (h.get(QUARANTINED) or 0) / h["docs"] for h in top]
    notes = [f"{h.get(QUARANTINED) or 0:,} / {h['docs']:,}" for h in top]
    return barh_plot(
        labels,
        rates,
        f"Quarantine rate per host (top {len(top)} hosts by documents)",
        "% of the host's documents quarantined",
        notes,
    )


def section_hosts(report: dict[str, Any]) -> str:
    """Every host the report lists, most quarantined first, with its quarantine rate."""
    hosts = [h for h in report.get("hosts") or [] if isinstance(h, dict) and h.get("docs")]
    if not hosts:
        return ""
    hosts.sort(key=lambda h: (-(h.get(QUARANTINED) or 0) / h["docs"], -h["docs"], str(h.get("host"))))
    rows = [
        [
            _cell(h.get("host")),
            _num(h["docs"]),
            *(_num(h.get(o) or 0) for o in ("kept", "duplicate", QUARANTINED, "filtered")),
            f"{100 * (h.get(QUARANTINED) or 0) / h['docs']:.1f}%",
        ]
        for h in hosts
    ]
    total = report.get("hosts_total", len(hosts))
    note = f" (the {len(hosts):,} largest of {_num(total)})" if total and total > len(hosts) else ""
    header = ["host", "docs", "kept", "duplicate", "quarantined", "filtered", "quarantine rate"]
    return (
        f'<details id="hosts-table"><summary>All hosts{note}, most quarantined first</summary>'
        f'<div class="wrap">{_table(header, rows, "counts")}</div></details>'
    )


def section_crawl(crawl: dict[str, Any]) -> str:
    """The crawl stats as narrow tables: numbers four to a row, then one table per per-item mapping."""
    scalars = [(k, v) for k, v in crawl.items() if not isinstance(v, dict | list)]
    rows = []
    for i in range(0, len(scalars), 4):
        cells: list[str] = []
        for key, value in scalars[i : i + 4]:
            cells += [f"<b>{html.escape(str(key))}</b>", _num(value)]
        rows.append(cells + [""] * (8 - len(cells)))
    parts = ['<div class="wrap">' + _table(["stat", "value"] * 4, rows, "kv") + "</div>"]
    for key, value in crawl.items():
        if not isinstance(value, dict | list) or not value:
            continue
        parts.append(f"<h3>{html.escape(str(key))}</h3>")
        if isinstance(value, list):
            body = _dict_rows_table(value) if all(isinstance(v, dict) for v in value) else _cell(value)
        elif all(isinstance(v, dict) for v in value.values()):
            body = _dict_rows_table([{"": k, **v} for k, v in value.items()])
        else:
            body = (
                section_crawl(value) if any(isinstance(v, dict) for v in value.values()) else _kv_table(value)
            )
        parts.append(f'<div class="wrap">{body}</div>')
    return "".join(parts)


def plot_languages(report: dict[str, Any]) -> str:
    langs = report.get("languages") or {}
    if not langs:
        return "<p>No language signal in this run.</p>"
    return barh_plot(
        [str(k) for k in langs],
        [float(v) for v in langs.values()],
        "Languages",
        "documents",
        [f"{int(v):,}" for v in langs.values()],
    )


def render_sample(sample: Sample, anchor: str, config: dict[str, Any] | None = None) -> str:
    row = sample.row
    text = str(row.get("text") or "")
    spans = document_spans(row)
    cp = _int(row.get("perplexity_changepoint_char"))
    focus = focus_for(sample.reason, row, spans)
    body = render_window(text, spans, focus, cp)
    reasons = ", ".join(str(r) for r in row.get("reasons") or [])
    meta = [_id_html(row.get("id")), f'<span class="outcome">{html.escape(str(row.get("outcome")))}</span>']
    if row.get("url"):
        meta.insert(0, f'<span class="url">{_cell(row.get("url"))}</span>')  # a URL says more than a hash
    if row.get("duplicate_of"):
        kind = "exact duplicate" if row.get("dedup_exact_of") else "near-duplicate"
        meta.append(f"{kind} of {_id_html(row.get('duplicate_of'))}")
    details = []
    # `repetition:dup_5gram_char_frac` is decided on the column of the same name: show it and its limit.
    column = sample.reason.replace(":", "_", 1)
    if isinstance(row.get(column), int | float):
        threshold = threshold_for(column, config or {})
        limit = f" (threshold: {threshold[0]} {threshold[1]:g})" if threshold else ""
        details.append(f"{html.escape(column)} = {_num(row[column])}{limit}")
    if (row.get("dedup_cluster_size") or 0) >= 2:
        details.append(
            f"near-duplicate cluster of {_num(row.get('dedup_cluster_size'))} documents on "
            f"{_num(row.get('dedup_cluster_domains'))} domain(s), first member "
            f"{_id_html(row.get('dedup_cluster_id'))}"
        )
    if row.get("dedup_exact_of"):
        details.append(f"exact copy of {_id_html(row.get('dedup_exact_of'))} (same normalised text)")
    for m in (row.get("triggers_matches") or [])[:5]:
        details.append(
            f"trigger [{_cell(m.get('category'))}] {_cell(m.get('phrase'))} at {_num(m.get('start'))}"
        )
    if row.get("unicode_tag_payload"):
        details.append(f"tag-character payload: {_cell(row.get('unicode_tag_payload'))}")
    if row.get("perplexity_trigger_candidate"):
        details.append(f"text before the change-point: {_cell(row.get('perplexity_trigger_candidate'))}")
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
                also.append(f'<a href="#{anchor}">{_cell(doc_id)}</a> (under {escape_visible(first)})')
                continue
            anchor = f"doc-{len(shown) + 1}"
            shown[doc_id] = (anchor, str(reason))
            docs.append(render_sample(sample, anchor, config))
        more = f'<p class="lbl">Also: {", ".join(also)}</p>' if also else ""
        opened = " open" if n < 8 else ""
        parts.append(
            f'<details class="reason"{opened}><summary><b>{escape_visible(str(reason))}'
            f"</b> — {_num(count)} document(s), {len(samples)} shown</summary>{''.join(docs)}{more}"
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
        + _dict_rows_table(mined)
    )


def section_unreadable(report: dict[str, Any]) -> str:
    items = [u for u in report.get("unreadable") or [] if isinstance(u, dict)]
    total = report.get("unreadable_total", len(items)) or 0
    if not items:
        return "<p>Every input record was readable.</p>"
    return f"<p>{_num(total)} unreadable record(s); the first ones:</p>" + _dict_rows_table(items)


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
    headline = f"{_num(counts.get('in', 0))} documents in: " + ", ".join(
        f"{_num(counts.get(name, 0))} {name}" for name in outcomes
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
