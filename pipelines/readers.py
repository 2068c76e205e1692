"""Readers: JSONL (plain, .gz, .zst), Parquet, WARC and raw crawl shards -> document batches.

Every reader streams: memory is bounded by the batch size, never by the input. A record that cannot
be read is not skipped silently: it is listed as `Unreadable(file, where, why)` and the run goes on.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from poisonguard.core.schema import DOCUMENT_SCHEMA, text_id
from poisonguard.pipelines.fields import FieldMap, key_paths
from poisonguard.pipelines.storage import display_name

JSONL_SUFFIXES = (
    ".jsonl",
    ".ndjson",
    ".json",
    ".jsonl.gz",
    ".ndjson.gz",
    ".json.gz",
    ".jsonl.zst",
    ".ndjson.zst",
    ".json.zst",
)
PARQUET_SUFFIXES = (".parquet",)
WARC_SUFFIXES = (".warc", ".warc.gz")
KNOWN_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES + WARC_SUFFIXES


class InputError(ValueError):
    """An input that cannot be used at all (missing path, unknown format): a usage error."""


class NoTextError(RuntimeError):
    """Records were read but none had the text field: most likely the wrong --text-key or preset."""


@dataclass(frozen=True)
class Unreadable:
    file: str
    where: str  # "line 12", "row 40", "offset 1234", or "file"
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "where": self.where, "why": self.why}


@dataclass
class ReadState:
    """What reading has seen so far; shared by the readers of one run."""

    unreadable: list[Unreadable] = field(default_factory=list)
    bytes_done: int = 0
    records: int = 0
    fields: FieldMap = field(default_factory=FieldMap)
    # Keys of records that had no text, with how often: the message when no record had one.
    keys_without_text: dict[str, int] = field(default_factory=dict)

    def note_missing_text(self, keys: list[str]) -> None:
        for key in keys:
            self.keys_without_text[key] = self.keys_without_text.get(key, 0) + 1

    def check_found_text(self) -> None:
        """Raise NoTextError when records were seen but none of them had the text field."""
        if self.records or not self.keys_without_text:
            return
        seen = sorted(self.keys_without_text, key=lambda k: (-self.keys_without_text[k], k))
        raise NoTextError(
            f"no record has the text field {self.fields.text_key!r}; keys seen: {', '.join(seen[:30])}. "
            "Name the text field with --text-key (dotted paths such as metadata.content work) or pick "
            "a layout with --preset"
        )


def _suffix_kind(path: Path) -> str | None:
    name = path.name.lower()
    for kind, suffixes in (("jsonl", JSONL_SUFFIXES), ("parquet", PARQUET_SUFFIXES), ("warc", WARC_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files, directories (searched recursively for known formats) and globs, in a stable order."""
    found: list[Path] = []
    for item in inputs:
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"{item}: no file matches this pattern")
            found.extend(Path(m) for m in matches if Path(m).is_file())
            continue
        path = Path(item)
        if path.is_dir():
            # Names starting with "_" or "." are bookkeeping (crawl stats, job state, temp files),
            # as in Hadoop/Spark output folders.
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and _suffix_kind(p)
                and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
            )
            if not files:
                raise InputError(f"{path}: directory holds no .jsonl, .parquet or .warc file")
            found.extend(files)
        elif path.is_file():
            if _suffix_kind(path) is None:
                raise InputError(f"{path}: unknown format (expected {', '.join(KNOWN_SUFFIXES)})")
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    # The same file named twice would double its documents.
    unique: list[Path] = []
    seen: set[str] = set()
    for p in found:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def total_bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


class _Counting(io.RawIOBase):
    """Counts bytes read from the compressed file, so progress works for .gz and .zst too."""

    def __init__(self, raw: IO[bytes], state: ReadState) -> None:
        self._raw = raw
        self._state = state

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._state.bytes_done += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_text_stream(path: Path, state: ReadState) -> IO[bytes]:
    raw = io.BufferedReader(_Counting(open(path, "rb"), state), buffer_size=1 << 20)
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if name.endswith(".zst"):
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    return raw


def _document(
    fields: dict[str, Any], source: str, record: int, mapping: FieldMap | None = None
) -> dict[str, Any]:
    text, given, url = (mapping or FieldMap()).take(fields)
    return {
        "id": str(given) if given not in (None, "") else text_id(text),
        "text": text,
        "url": str(url) if url not in (None, "") else None,
        "source": source,
        "record": record,
        "meta": json.dumps(fields, ensure_ascii=False, sort_keys=True, default=str) if fields else None,
        "hidden": None,
        "crawl_cloaking_similarity": None,
        "crawl_tarpit_host": None,
    }


def read_jsonl(path: Path, state: ReadState) -> Iterator[dict[str, Any]]:
    source = display_name(path)
    line_no = 0
    empty = True
    try:
        with _open_text_stream(path, state) as stream:
            for line_no, raw_line in enumerate(stream, start=1):  # noqa: B007 (line_no used after loop)
                if not raw_line.strip():
                    continue
                empty = False
                try:
                    line = raw_line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    state.unreadable.append(
                        Unreadable(source, f"line {line_no}", f"not UTF-8 ({exc.reason} at byte {exc.start})")
                    )
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    state.unreadable.append(
                        Unreadable(
                            source, f"line {line_no}", f"malformed JSON: {exc.msg} at column {exc.colno}"
                        )
                    )
                    continue
                if not isinstance(obj, dict):
                    state.unreadable.append(Unreadable(source, f"line {line_no}", "not a JSON object"))
                    continue
                text = state.fields.text(obj)
                if not isinstance(text, str):
                    why = f"no {state.fields.text_key} field" if text is None else "text is not a string"
                    state.unreadable.append(Unreadable(source, f"line {line_no}", why))
                    if text is None:
                        state.note_missing_text(key_paths(obj))
                    continue
                yield _document(obj, source, line_no, state.fields)
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError, OSError) as exc:
        state.unreadable.append(
            Unreadable(source, f"after line {line_no}", f"truncated or corrupt compressed stream: {exc}")
        )
        return
    if empty:
        state.unreadable.append(Unreadable(source, "file", "empty file: no records"))


def _is_raw_crawl(schema: pa.Schema) -> bool:
    return "html" in schema.names and "status" in schema.names and "text" not in schema.names


def read_parquet(path: Path, state: ReadState, batch_rows: int) -> Iterator[dict[str, Any] | pa.Table]:
    """Rows of a corpus Parquet file as documents; raw crawl shards as whole converted tables."""
    source = display_name(path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        state.unreadable.append(Unreadable(source, "file", f"not a readable Parquet file: {exc}"))
        state.bytes_done += path.stat().st_size
        return
    schema = pf.schema_arrow
    if _is_raw_crawl(schema):
        from poisonguard.crawler.raw import raw_to_documents

        offset = 0
        for batch in pf.iter_batches(batch_size=batch_rows):
            state.bytes_done += path.stat().st_size * batch.num_rows // max(pf.metadata.num_rows, 1)
            docs = raw_to_documents(pa.Table.from_batches([batch]), source=source)
            # raw_to_documents numbers rows within the batch; `record` is the row within the shard.
            records = pc.add(docs.column("record").cast(pa.int64()), offset)
            docs = docs.set_column(docs.schema.get_field_index("record"), "record", records)
            offset += batch.num_rows
            yield docs
        return
    text_column = state.fields.text_column
    if text_column not in schema.names:
        state.unreadable.append(
            Unreadable(source, "file", f"no `{text_column}` column (columns: {', '.join(schema.names)})")
        )
        state.note_missing_text(_schema_paths(schema))
        state.bytes_done += path.stat().st_size
        return
    if pf.metadata.num_rows == 0:
        state.unreadable.append(Unreadable(source, "file", "empty file: no records"))
    row = 0
    size = path.stat().st_size
    for batch in pf.iter_batches(batch_size=batch_rows):
        state.bytes_done += size * batch.num_rows // max(pf.metadata.num_rows, 1)
        for rec in batch.to_pylist():
            row += 1
            if not isinstance(state.fields.text(rec), str):
                state.unreadable.append(Unreadable(source, f"row {row}", "no text (null)"))
                continue
            yield _document(rec, source, row, state.fields)


def _schema_paths(schema: pa.Schema) -> list[str]:
    """Column names, and the fields of struct columns as dotted paths."""
    paths: list[str] = []
    for f in schema:
        paths.append(f.name)
        if pa.types.is_struct(f.type):
            paths.extend(f"{f.name}.{f.type.field(i).name}" for i in range(f.type.num_fields))
    return paths


def read_warc(path: Path, state: ReadState) -> Iterator[dict[str, Any]]:
    """HTTP response records of a WARC file; HTML goes through the same HTML pass as the crawler."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    from poisonguard.crawler.html import extract

    source = display_name(path)
    count = 0
    offset = 0
    fh = open(path, "rb")  # FastWARC detects gzip by itself
    try:
        for rec in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True):
            count += 1
            offset = rec.stream_pos
            where = f"offset {offset}"
            url = rec.headers.get("WARC-Target-URI")
            http = rec.http_headers
            status = http.status_code if http is not None else None
            ctype = (http.get("Content-Type") if http is not None else None) or ""
            try:
                body = rec.reader.read()
            except Exception as exc:  # a record cut short inside its body
                state.unreadable.append(Unreadable(source, where, f"truncated record: {exc}"))
                continue
            if status is not None and not 200 <= status < 300:
                state.unreadable.append(Unreadable(source, where, f"HTTP status {status}, not a page"))
                continue
            if "html" in ctype.lower() or not ctype:
                ex = extract(body, ctype or None)
                doc = _document({"text": ex.text, "url": url, "title": ex.title}, source, count)
                doc["hidden"] = [{"channel": c, "text": t} for c, t in ex.hidden] or None
                yield doc
            elif ctype.lower().startswith("text/"):
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    state.unreadable.append(Unreadable(source, where, "text response is not UTF-8"))
                    continue
                yield _document({"text": text, "url": url}, source, count)
            else:
                state.unreadable.append(
                    Unreadable(source, where, f"not a text response ({ctype.split(';')[0]})")
                )
    except Exception as exc:
        state.unreadable.append(
            Unreadable(source, f"after offset {offset}", f"truncated or corrupt WARC: {exc}")
        )
    finally:
        fh.close()
        state.bytes_done += path.stat().st_size
    if count == 0:
        state.unreadable.append(Unreadable(source, "file", "no response records"))


def _conform(table: pa.Table) -> pa.Table:
    """A converted table in DOCUMENT_SCHEMA: missing optional columns become nulls."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in DOCUMENT_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=DOCUMENT_SCHEMA)


def _records(path: Path, state: ReadState, batch_rows: int) -> Iterator[dict[str, Any] | pa.Table]:
    kind = _suffix_kind(path)
    if kind == "jsonl":
        yield from read_jsonl(path, state)
    elif kind == "parquet":
        yield from read_parquet(path, state, batch_rows)
    elif kind == "warc":
        yield from read_warc(path, state)
    else:  # expand_inputs only lets known formats through
        raise InputError(f"{path}: unknown format")


def read_documents(
    paths: list[Path], batch_rows: int, state: ReadState, on_file: Callable[[Path], None] | None = None
) -> Iterator[pa.Table]:
    """Document tables of exactly `batch_rows` rows (the last may be shorter), in input order.

    The chunking depends only on the inputs and `batch_rows`, so chunk N is the same documents in
    every run: that is what lets an interrupted run resume from its finished chunks.
    """
    pending: list[dict[str, Any]] = []
    pending_tables: list[pa.Table] = []
    pending_rows = 0

    def flush() -> pa.Table:
        nonlocal pending, pending_tables, pending_rows
        parts = list(pending_tables)
        if pending:
            parts.append(pa.Table.from_pylist(pending, schema=DOCUMENT_SCHEMA))
        table = pa.concat_tables(parts) if parts else DOCUMENT_SCHEMA.empty_table()
        pending, pending_tables, pending_rows = [], [], 0
        return table

    for path in paths:
        if on_file is not None:
            on_file(path)
        for item in _records(path, state, batch_rows):
            if isinstance(item, pa.Table):
                if pending:  # keep input order: rows before this table first
                    pending_tables.append(pa.Table.from_pylist(pending, schema=DOCUMENT_SCHEMA))
                    pending = []
                table = _conform(item)
                start = 0
                while start < table.num_rows:
                    take = min(batch_rows - pending_rows, table.num_rows - start)
                    pending_tables.append(table.slice(start, take))
                    pending_rows += take
                    start += take
                    state.records += take
                    if pending_rows == batch_rows:
                        yield flush()
                continue
            pending.append(item)
            pending_rows += 1
            state.records += 1
            if pending_rows == batch_rows:
                yield flush()
    if pending_rows:
        yield flush()
    state.check_found_text()
