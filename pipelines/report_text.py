"""Text for the report: document text escaped, invisible characters made visible (`<U+E0069>`),
offending spans highlighted in a window around them, and the small HTML pieces (cells, tables)."""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

WINDOW_BEFORE = 200  # characters shown before the offending span ...


WINDOW_CHARS = 700  # ... out of this many in all


MAX_HIDDEN_SPANS = 3


HIDDEN_SPAN_CHARS = 300


MAX_TABLE_ROWS = 30


MAX_CELL_CHARS = 200


MAX_ESCAPES = 40  # invisible characters written out per run; the rest are counted


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


def as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def document_spans(row: dict[str, Any]) -> list[Span]:
    """Every span the detectors located in the document's text (missing columns are fine)."""
    spans: list[Span] = []
    for m in row.get("triggers_matches") or ():
        start, end = as_int(m.get("start")), as_int(m.get("end"))
        if start is not None and end is not None and end > start:
            spans.append(Span(start, end, "trig", f"trigger {m.get('category')}: {m.get('phrase')}"))
    for s in row.get("unicode_spans") or ():
        start, end = as_int(s.get("start")), as_int(s.get("end"))
        if start is not None and end is not None and end > start:
            spans.append(Span(start, end, "uni", f"unicode: {s.get('kind')}"))
    start, end = as_int(row.get("perplexity_window_start")), as_int(row.get("perplexity_window_end"))
    if start is not None and end is not None and end > start:
        spans.append(Span(start, end, "ppl", "highest-perplexity window"))
    return spans


def focus_for(reason: str, row: dict[str, Any], spans: list[Span]) -> int:
    """Where in the text the evidence for `reason` is: the window is cut around it."""
    detector = reason.split(":")[0]
    wanted = {"triggers": "trig", "unicode": "uni", "perplexity": "ppl"}.get(detector)
    if detector == "perplexity":
        cp = as_int(row.get("perplexity_changepoint_char"))
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
# Page sections (each returns HTML; a section that fails says so instead of failing the run)


def fmt_num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    return cell(value)


def cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_CELL_CHARS:
        text = text[:MAX_CELL_CHARS] + "…"
    return escape_visible(text)


def id_html(doc_id: Any) -> str:
    """A document id; a 64-character hash is cut to its first 12 characters (the full id on hover)."""
    text = str(doc_id)
    if len(text) >= 32 and all(c in "0123456789abcdef" for c in text):
        return f'<span class="id" title="{html.escape(text)}">{html.escape(text[:12])}…</span>'
    return f'<span class="id">{cell(text)}</span>'


def table_html(header: list[str], rows: Iterable[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv_table(data: dict[str, Any], depth: int = 0) -> str:
    rows = []
    for key, value in list(data.items())[: MAX_TABLE_ROWS * 2]:
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            # {host: {pages, bytes, ...}}: one row per entry reads better than nested tables
            rendered = dict_rows_table([{"": k, **v} for k, v in value.items()])
        elif isinstance(value, dict) and value and depth < 2:
            rendered = kv_table(value, depth + 1)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and depth < 2:
            rendered = dict_rows_table(value)
        else:
            rendered = fmt_num(value)
        rows.append([html.escape(str(key)), rendered])
    return table_html(["key", "value"], rows, "kv")


def dict_rows_table(items: list[dict[str, Any]]) -> str:
    keys: dict[str, None] = {}
    for item in items[:MAX_TABLE_ROWS]:
        keys.update(dict.fromkeys(str(k) for k in item))
    rows = [[fmt_num(item.get(k)) for k in keys] for item in items[:MAX_TABLE_ROWS]]
    more = f"<p>… {len(items) - MAX_TABLE_ROWS:,} more</p>" if len(items) > MAX_TABLE_ROWS else ""
    return table_html(list(keys), rows) + more
