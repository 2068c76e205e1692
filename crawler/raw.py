"""Raw crawl records: the Parquet shards in OUT/raw/ and their conversion into documents.

Every response the crawler receives (any status) is one raw row, written in shards while the crawl
runs, so a killed crawl keeps what it fetched. The body is kept as bytes, exactly as served, so the
HTML pass can be re-run later with another version and a page without a charset is not mis-decoded
at fetch time.

Document ids: sha256 of ``url``, ``final_url`` and the body's sha256 (joined by newlines). This keeps
one id per fetched page (the docs/DESIGN.md 1:1 rule) even when two URLs serve the same bytes, and is
stable when the same crawl is converted twice; near-copies across URLs are dedup's business.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from poisonguard.core.schema import DOCUMENT_SCHEMA
from poisonguard.core.urls import host_port_of
from poisonguard.crawler.cloaking_probe import relative_similarity

KIND_PAGE = "page"
KIND_PROBE = "cloaking_probe"

RAW_SCHEMA = pa.schema(
    [
        ("url", pa.string()),  # the URL requested (before redirects)
        ("final_url", pa.string()),  # the URL that answered
        ("status", pa.int32()),
        ("headers", pa.string()),  # JSON object: lower-case name -> list of values
        ("fetched_at", pa.timestamp("ms", tz="UTC")),
        ("html_sha256", pa.string()),  # sha256 of the body bytes
        ("html", pa.binary()),  # the body bytes as served
        ("user_agent", pa.string()),
        ("kind", pa.string()),  # "page" (the crawler's fetch) or "cloaking_probe" (a browser-UA re-fetch)
        ("depth", pa.int32()),
        ("content_type", pa.string()),
        # crawler view vs browser view (MinHash Jaccard estimate); null unless the page was probed
        ("cloaking_similarity", pa.float32()),
        # browser view vs a second browser view: what a page's own churn looks like
        ("cloaking_baseline", pa.float32()),
        ("tarpit_host", pa.bool_()),  # the tarpit guard marked the page (its region or host is a tarpit)
    ]
)

SHARD_PATTERN = re.compile(r"^part-(\d{5,})\.parquet$")
_HTML_TYPES = ("text/html", "application/xhtml+xml")


class RawShardWriter:
    """Appends raw rows to OUT/raw/part-NNNNN.parquet shards; each shard appears whole (temp + rename).

    Numbering continues after the shards already in the folder, so a resumed crawl adds to them.
    """

    def __init__(self, raw_dir: Path, shard_rows: int) -> None:
        self.raw_dir = raw_dir
        self.shard_rows = shard_rows
        raw_dir.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in raw_dir.iterdir() if (m := SHARD_PATTERN.match(p.name))]
        self._next = max(numbers, default=-1) + 1
        self._rows: list[dict[str, Any]] = []
        self.rows_written = 0
        self.shards_written: list[Path] = []

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=RAW_SCHEMA)
        path = self.raw_dir / f"part-{self._next:05d}.parquet"
        write_atomic(table, path)
        self._next += 1
        self.rows_written += len(self._rows)
        self.shards_written.append(path)
        self._rows = []


def write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def raw_shards(raw_dir: Path) -> list[Path]:
    return sorted(p for p in raw_dir.iterdir() if SHARD_PATTERN.match(p.name))


def fetched_by_host(raw_dir: Path) -> dict[str, dict[str, int]]:
    """Crawler fetches already stored in raw/, per host: pages, 2xx pages and body bytes."""
    hosts: dict[str, dict[str, int]] = {}
    for shard in raw_shards(raw_dir) if raw_dir.exists() else []:
        table = pq.read_table(shard, columns=["final_url", "status", "kind", "html"])
        sizes = pc.binary_length(table.column("html")).to_pylist()
        rows = zip(
            table.column("final_url").to_pylist(),
            table.column("status").to_pylist(),
            table.column("kind").to_pylist(),
            sizes,
            strict=True,
        )
        for url, status, kind, size in rows:
            if kind != KIND_PAGE or not url:
                continue
            entry = hosts.setdefault(host_port_of(url), {"pages": 0, "ok": 0, "bytes": 0})
            entry["pages"] += 1
            entry["ok"] += int(status is not None and 200 <= status < 300)
            entry["bytes"] += size or 0
    return hosts


def apply_crawl_results(
    raw_dir: Path,
    tarpit_hosts: Iterable[str],
    probes: dict[str, tuple[float, float | None]],
    tarpit_urls: Iterable[str] = (),
) -> int:
    """Write late crawl verdicts into the page rows; rewrites only the shards that change.

    The guard decides about a host after seeing several of its pages, and a probe result arrives after
    its page row was written, so rows carry ``tarpit_host=False`` and null similarities until this pass
    (run when the crawl ends) sets ``tarpit_host`` on every row of a host that is a tarpit as a whole
    and on the pages the guard marked inside a tarpit region (``tarpit_urls``, matched by final URL),
    and the cloaking similarities on probed pages. Returns the number of rows changed.
    """
    wanted = {h.lower() for h in tarpit_hosts}
    marked = set(tarpit_urls)
    if not wanted and not probes and not marked:
        return 0
    changed = 0
    for path in raw_shards(raw_dir):
        table = pq.read_table(path)
        urls = table.column("url").to_pylist()
        finals = table.column("final_url").to_pylist()
        kinds = table.column("kind").to_pylist()
        flags = table.column("tarpit_host").to_pylist()
        sims = table.column("cloaking_similarity").to_pylist()
        bases = table.column("cloaking_baseline").to_pylist()
        dirty = 0
        for i, url in enumerate(urls):
            if not flags[i] and (host_port_of(url) in wanted or finals[i] in marked):
                flags[i] = True
                dirty += 1
            if kinds[i] == KIND_PAGE and finals[i] in probes and sims[i] is None:
                sims[i], bases[i] = probes[finals[i]]
                dirty += 1
        if dirty:
            for name, values, typ in (
                ("tarpit_host", flags, pa.bool_()),
                ("cloaking_similarity", sims, pa.float32()),
                ("cloaking_baseline", bases, pa.float32()),
            ):
                table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, typ))
            write_atomic(table, path)
            changed += dirty
    return changed


# --- the HTML pass -------------------------------------------------------------------------------


def _fallback_extract(html: bytes, content_type: str | None) -> Any:
    """Stand-in used only while crawler/html.py (the HTML pass) is not installed: all text, no spans."""
    from types import SimpleNamespace

    import lxml.html

    try:
        root = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return SimpleNamespace(text="", hidden=[], title=None, encoding=None)
    for bad in root.xpath("//script|//style|//noscript|//template"):
        bad.drop_tree()
    title = root.findtext(".//title")
    text = " ".join(" ".join(root.itertext()).split())
    return SimpleNamespace(text=text, hidden=[], title=title, encoding=None)


def _html_extract() -> Any:
    try:
        from poisonguard.crawler.html import extract  # the HTML pass (issue #5 item 3)
    except ModuleNotFoundError as exc:
        if exc.name != "poisonguard.crawler.html":
            raise
        return _fallback_extract
    return extract


def _extract(
    html: bytes, content_type: str | None
) -> tuple[str, list[tuple[str, str]], str | None, str | None]:
    """(visible text, hidden spans as (channel, text), title, encoding) from crawler.html.extract."""
    result = _html_extract()(html, content_type)
    spans: list[tuple[str, str]] = []
    for span in result.hidden or ():
        if isinstance(span, dict):
            spans.append((str(span.get("channel", "")), str(span.get("text", ""))))
        elif isinstance(span, Sequence) and not isinstance(span, str):
            spans.append((str(span[0]), str(span[1])))
        else:
            spans.append((str(span.channel), str(span.text)))
    return result.text or "", spans, result.title, result.encoding


def is_html(content_type: str | None, body: bytes) -> bool:
    if content_type:
        return content_type.split(";", 1)[0].strip().lower() in _HTML_TYPES
    # No Content-Type: sniff the start the way browsers do for the common cases.
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<title"))


def document_id(url: str, final_url: str, html_sha256: str) -> str:
    return hashlib.sha256(f"{url}\n{final_url}\n{html_sha256}".encode()).hexdigest()


def raw_to_documents(raw: pa.Table, source: str = "crawl") -> pa.Table:
    """2xx HTML crawler fetches -> DOCUMENT_SCHEMA documents (probe rows and other responses stay in raw/).

    ``crawl_cloaking_similarity`` is the probe's crawler-vs-browser similarity relative to the page's own
    churn (crawler.cloaking_probe.relative_similarity; null unless probed) and ``crawl_tarpit_host`` whether
    the tarpit guard marked the page; filters/cloaking.py turns them into reasons. ``record``
    is the row number in ``raw``; ``meta`` keeps status, fetch time, title, encoding, the body hash
    and the probe's two raw similarities.
    """
    missing = [name for name in ("url", "final_url", "status", "html") if name not in raw.column_names]
    if missing:
        raise ValueError(f"raw crawl table lacks columns {missing} (expected crawler.raw.RAW_SCHEMA)")
    cols = {name: raw.column(name).to_pylist() for name in raw.column_names}
    n = raw.num_rows
    kinds = cols.get("kind") or [KIND_PAGE] * n
    ctypes = cols.get("content_type") or [None] * n
    out: dict[str, list[Any]] = {name: [] for name in DOCUMENT_SCHEMA.names}
    for i in range(n):
        status, body = cols["status"][i], cols["html"][i]
        if kinds[i] != KIND_PAGE or status is None or not 200 <= status < 300 or body is None:
            continue
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not is_html(ctypes[i], body):
            continue
        text, spans, title, encoding = _extract(body, ctypes[i])
        url, final_url = cols["url"][i], cols["final_url"][i] or cols["url"][i]
        sha = (cols.get("html_sha256") or [None] * n)[i] or hashlib.sha256(body).hexdigest()
        fetched = (cols.get("fetched_at") or [None] * n)[i]
        out["id"].append(document_id(url, final_url, sha))
        out["text"].append(text)
        out["url"].append(final_url)
        out["source"].append(source)
        out["record"].append(i)
        meta = {
            "requested_url": url,
            "status": status,
            "fetched_at": fetched.isoformat() if fetched is not None else None,
            "html_sha256": sha,
            "title": title,
            "encoding": encoding,
            "depth": (cols.get("depth") or [None] * n)[i],
            # the probe's two measurements behind cloaking_similarity (null unless probed)
            "cloaking_view_similarity": _round((cols.get("cloaking_similarity") or [None] * n)[i]),
            "cloaking_baseline": _round((cols.get("cloaking_baseline") or [None] * n)[i]),
        }
        out["meta"].append(json.dumps(meta, ensure_ascii=False))
        out["hidden"].append([{"channel": c, "text": t} for c, t in spans])
        sim = (cols.get("cloaking_similarity") or [None] * n)[i]
        base = (cols.get("cloaking_baseline") or [None] * n)[i]
        out["crawl_cloaking_similarity"].append(relative_similarity(sim, base))
        out["crawl_tarpit_host"].append(bool((cols.get("tarpit_host") or [False] * n)[i]))
    rows = len(out["id"])
    for name, values in out.items():  # columns the schema may gain later stay null here
        if len(values) != rows:
            out[name] = [None] * rows
    return pa.Table.from_pydict(out, schema=DOCUMENT_SCHEMA)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def read_raw(raw_dir: Path) -> pa.Table:
    """All raw shards of a crawl as one table (small crawls and tests; the runner streams shards)."""
    shards = raw_shards(raw_dir)
    if not shards:
        return RAW_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(p) for p in shards])
