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
DEFAULT_MAX_RECORD_BYTES = 64 << 20
UTF8_BOM = b"\xef\xbb\xbf"
# Files that mark a folder as the output of a run; such a folder is never read as corpus silently.
RUN_MARKERS = ("_SUCCESS", "_work")


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
    # A record (JSONL line, Parquet text, WARC body) longer than this is listed as too large, so a
    # decompression bomb costs time but never memory (config run.max_record_bytes).
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
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


def expand_inputs(inputs: Iterable[str], skipped: list[str] | None = None) -> list[Path]:
    """Files, directories (searched recursively for known formats) and globs, in a stable order.

    Files a directory holds but that are not read (unknown suffix, bookkeeping names, the output
    folder of a run) are appended to `skipped` as "path (why)", so nothing is left out unsaid.
    """
    found: list[Path] = []
    for item in inputs:
        if any(ch in item for ch in "*?[") and not Path(item).exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"{item}: no file matches this pattern")
            found.extend(Path(m) for m in matches if Path(m).is_file())
            continue
        path = Path(item)
        if path.is_dir():
            found.extend(_directory_files(path, skipped if skipped is not None else []))
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


def is_run_output(folder: Path) -> bool:
    """Whether `folder` is (or was being written as) the output folder of a run."""
    return any((folder / marker).exists() for marker in RUN_MARKERS)


def _directory_files(path: Path, skipped: list[str]) -> list[Path]:
    if is_run_output(path):
        raise InputError(
            f"{path}: is the output folder of a poisonguard run (it holds _SUCCESS or _work); "
            "name its clean/ folder to read its kept documents"
        )
    files: list[Path] = []
    runs: set[Path] = set()
    folders: dict[Path, int] = {}  # bookkeeping folders (a crawl's _job/): named once, with a count
    for p in sorted(path.rglob("*")):
        if p.is_dir():
            if is_run_output(p):
                runs.add(p)
            continue
        rel = p.relative_to(path)
        hidden = [i for i, part in enumerate(rel.parts) if part.startswith(("_", "."))]
        if any(parent in runs for parent in p.parents):
            skipped.append(f"{p} (inside {next(r for r in p.parents if r in runs)}, a run's output)")
        elif hidden and hidden[0] < len(rel.parts) - 1:
            folder = path.joinpath(*rel.parts[: hidden[0] + 1])
            folders[folder] = folders.get(folder, 0) + 1
        elif hidden:
            # Names starting with "_" or "." are bookkeeping (crawl stats, job state, temp files),
            # as in Hadoop/Spark output folders.
            skipped.append(f"{p} (bookkeeping name: starts with _ or .)")
        elif _suffix_kind(p) is None:
            skipped.append(f"{p} (unknown format)")
        else:
            files.append(p)
    skipped.extend(f"{f}/ ({n} files; bookkeeping folder: starts with _ or .)" for f, n in folders.items())
    if not files:
        raise InputError(f"{path}: directory holds no .jsonl, .parquet or .warc file")
    return files


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


# Never swallowed by a reader: the user or the interpreter is stopping the run.
STOP_EXCEPTIONS = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)


class TruncatedInput(ValueError):
    """A compressed stream that ends before its end marker: the file was cut."""


class _ZstdFrames(io.RawIOBase):
    """Decompressed bytes of a .zst file, frame after frame.

    zstandard's stream reader ends quietly when the input stops inside a frame; this one raises
    TruncatedInput instead, so a cut file is listed, not silently shortened.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._in_frame = False
        self._out = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._pos >= len(self._out):
            # Small input pieces bound what one call can expand to (zstd's best ratio is ~32,000:1).
            chunk = self._raw.read(1 << 10)
            if not chunk:
                if self._in_frame:
                    raise TruncatedInput("zstd stream ends inside a frame")
                return 0
            self._out, self._pos = b"", 0
            self._feed(chunk)
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def _feed(self, chunk: bytes) -> None:
        while chunk:
            self._in_frame = True
            self._out += self._frame.decompress(chunk)
            if not self._frame.eof:
                return
            chunk = self._frame.unused_data
            self._frame = self._decompressor.decompressobj()
            self._in_frame = False

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_text_stream(path: Path, state: ReadState) -> IO[bytes]:
    raw = io.BufferedReader(_Counting(open(path, "rb"), state), buffer_size=1 << 20)
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdFrames(raw), buffer_size=1 << 20)
    return raw


def _bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """The stream's lines; None for a line longer than `limit` bytes, which is skipped unread."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):  # drain the rest of the long line in pieces
            line = stream.readline(1 << 20)
        yield None


def _document(
    fields: dict[str, Any], source: str, record: int, mapping: FieldMap | None = None
) -> dict[str, Any]:
    text, given, url = (mapping or FieldMap()).take(fields)
    if isinstance(text, bytes):  # a binary text column; callers check the bytes are UTF-8 first
        text = text.decode("utf-8")
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


def _not_storable(doc: dict[str, Any]) -> str | None:
    """Why a document cannot be written as UTF-8 (a lone surrogate from a JSON `\\ud800` escape)."""
    for name in ("text", "id", "url", "meta"):
        value = doc.get(name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"`{name}` holds a lone surrogate (U+{ord(value[exc.start]):04X} at char {exc.start})"
    return None


def _parse_jsonl_line(raw_line: bytes, state: ReadState) -> tuple[dict[str, Any] | None, str]:
    """One JSONL line -> (object with a string text, "") or (None, why it is unreadable)."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "JSON nested too deeply"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    text = state.fields.text(obj)
    if not isinstance(text, str):
        if text is None:
            state.note_missing_text(key_paths(obj))
        return None, f"no {state.fields.text_key} field" if text is None else "text is not a string"
    return obj, ""


def jsonl_document(raw_line: bytes, source: str, line_no: int, state: ReadState) -> dict[str, Any] | str:
    """A document from one JSONL line, or the reason it is unreadable."""
    obj, why = _parse_jsonl_line(raw_line, state)
    if obj is None:
        return why
    try:
        doc = _document(obj, source, line_no, state.fields)
    except (RecursionError, ValueError, TypeError) as exc:
        return f"cannot store its fields: {type(exc).__name__}"
    return _not_storable(doc) or doc


def read_jsonl(path: Path, state: ReadState) -> Iterator[dict[str, Any]]:
    source = display_name(path)
    line_no = 0
    empty = True
    limit = state.max_record_bytes
    try:
        with _open_text_stream(path, state) as stream:
            for line_no, raw_line in enumerate(_bounded_lines(stream, limit), start=1):  # noqa: B007
                if raw_line is None:
                    empty = False
                    state.unreadable.append(
                        Unreadable(source, f"line {line_no}", f"too large: over {limit:,} bytes")
                    )
                    continue
                if line_no == 1 and raw_line.startswith(UTF8_BOM):
                    raw_line = raw_line[len(UTF8_BOM) :]
                if not raw_line.strip():
                    continue
                empty = False
                doc = jsonl_document(raw_line, source, line_no, state)
                if isinstance(doc, str):
                    state.unreadable.append(Unreadable(source, f"line {line_no}", doc))
                    continue
                yield doc
    except (EOFError, TruncatedInput, gzip.BadGzipFile, zlib.error, zstandard.ZstdError, OSError) as exc:
        state.unreadable.append(
            Unreadable(source, f"after line {line_no}", f"truncated or corrupt compressed stream: {exc}")
        )
        return
    if empty:
        state.unreadable.append(Unreadable(source, "file", "empty file: no records"))


RAW_CRAWL_COLUMNS = ("url", "final_url", "status", "html")


def _is_raw_crawl(schema: pa.Schema) -> bool:
    return "html" in schema.names and "status" in schema.names and "text" not in schema.names


def _parquet_problem(schema: pa.Schema, text_column: str) -> str | None:
    """Why a Parquet file's columns cannot give documents, or None."""
    if _is_raw_crawl(schema):
        missing = [c for c in RAW_CRAWL_COLUMNS if c not in schema.names]
        return f"raw crawl shard without columns {', '.join(missing)}" if missing else None
    if text_column not in schema.names:
        return f"no `{text_column}` column (columns: {', '.join(schema.names)})"
    return None


def _schema_paths(schema: pa.Schema) -> list[str]:
    """Column names, and the fields of struct columns as dotted paths."""
    paths: list[str] = []
    for f in schema:
        paths.append(f.name)
        if pa.types.is_struct(f.type):
            paths.extend(f"{f.name}.{f.type.field(i).name}" for i in range(f.type.num_fields))
    return paths


def _batch_rows(batch: pa.RecordBatch) -> list[dict[str, Any] | None]:
    """A batch's rows as dicts; a row whose values cannot be converted (bad UTF-8) is None."""
    try:
        return batch.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException):
        rows: list[dict[str, Any] | None] = []
        for i in range(batch.num_rows):
            try:
                rows.append(batch.slice(i, 1).to_pylist()[0])
            except (UnicodeDecodeError, pa.ArrowException):
                rows.append(None)
        return rows


def parquet_document(
    rec: dict[str, Any] | None, text_type: pa.DataType, source: str, row: int, state: ReadState
) -> dict[str, Any] | str:
    """A document from one Parquet row, or the reason it is unreadable."""
    if rec is None:
        return "a value is not valid UTF-8"
    limit = state.max_record_bytes
    text = state.fields.text(rec)
    if isinstance(text, bytes):  # a binary text column: fine if the bytes are UTF-8
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"text is binary and not UTF-8 ({exc.reason} at byte {exc.start})"
    if text is None:
        return "no text (null)"
    if not isinstance(text, str):
        return f"text is {text_type}, not a string"
    if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
        return f"too large: over {limit:,} bytes"
    try:
        doc = _document(rec, source, row, state.fields)
    except (RecursionError, ValueError, TypeError) as exc:
        return f"cannot store its fields: {type(exc).__name__}"
    return _not_storable(doc) or doc


def _read_raw_crawl(
    pf: pq.ParquetFile, source: str, state: ReadState, batch_rows: int, size: int
) -> Iterator[pa.Table]:
    from poisonguard.crawler.raw import raw_to_documents

    offset = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        state.bytes_done += size * batch.num_rows // max(pf.metadata.num_rows, 1)
        docs = raw_to_documents(pa.Table.from_batches([batch]), source=source)
        # raw_to_documents numbers rows within the batch; `record` is the row within the shard.
        records = pc.add(docs.column("record").cast(pa.int64()), offset)
        docs = docs.set_column(docs.schema.get_field_index("record"), "record", records)
        offset += batch.num_rows
        yield docs


def read_parquet(path: Path, state: ReadState, batch_rows: int) -> Iterator[dict[str, Any] | pa.Table]:
    """Rows of a corpus Parquet file as documents; raw crawl shards as whole converted tables.

    A row group that breaks (a corrupt page) is listed with the rows it lost; the others are read."""
    source = display_name(path)
    size = path.stat().st_size
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        state.unreadable.append(Unreadable(source, "file", f"not a readable Parquet file: {exc}"))
        state.bytes_done += size
        return
    problem = _parquet_problem(schema, state.fields.text_column)
    if problem:
        state.unreadable.append(Unreadable(source, "file", problem))
        if not _is_raw_crawl(schema):
            state.note_missing_text(_schema_paths(schema))
        state.bytes_done += size
        return
    total = pf.metadata.num_rows
    if _is_raw_crawl(schema):
        yield from _read_raw_crawl(pf, source, state, batch_rows, size)
        return
    if total == 0:
        state.unreadable.append(Unreadable(source, "file", "empty file: no records"))
    text_type = schema.field(state.fields.text_column).type
    row = 0
    for group in range(pf.num_row_groups):
        group_rows = pf.metadata.row_group(group).num_rows
        first, row = row, row + group_rows  # rows first+1 .. row are this group's
        done = first
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group]):
                state.bytes_done += size * batch.num_rows // max(total, 1)
                for rec in _batch_rows(batch):
                    done += 1
                    doc = parquet_document(rec, text_type, source, done, state)
                    if isinstance(doc, str):
                        state.unreadable.append(Unreadable(source, f"row {done}", doc))
                        continue
                    yield doc
        except (pa.ArrowException, OSError, ValueError) as exc:
            # Only this row group is lost; the next one has its own pages.
            state.unreadable.append(
                Unreadable(source, f"rows {done + 1}-{row}", f"corrupt Parquet row group {group}: {exc}")
            )


class _Tolerant(io.RawIOBase):
    """A decompressing stream that ends (rather than raises) where its input is cut or corrupt.

    FastWARC reads ahead; an exception inside its read would lose the records already buffered.
    Here the records before the fault are parsed and the fault is kept in `error` to be listed.
    """

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self._inner = inner
        self._pos = 0
        self.error: str | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Forward only (FastWARC asks for its position and skips record bodies)."""
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._pos:
            raise io.UnsupportedOperation("this stream only seeks forward")
        while self._pos < target and self.read(min(target - self._pos, 1 << 20)):
            pass
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self.error is not None:
            return 0
        try:
            # read1: one decompression step, so a fault loses only the bytes of that step
            data = self._inner.read1(len(buffer))
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            self.error = str(exc) or type(exc).__name__
            return 0
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


def _warc_body(rec: Any, limit: int) -> bytes | str:
    """The HTTP body of a response record, or why it cannot be read (cut short, too large)."""
    declared = rec.headers.get("Content-Length")
    if declared is None or not declared.strip().isdigit():
        return "truncated record: no Content-Length (record header cut short)"
    if int(declared) != rec.content_length:
        return f"truncated record: header cut short (Content-Length {declared})"
    if int(declared) > limit:
        return f"too large: over {limit:,} bytes"
    rec.parse_http()
    expected = rec.content_length
    body = rec.reader.read()
    if len(body) < expected:
        return f"truncated record: body has {len(body)} of {expected} bytes"
    return bytes(body)


def warc_document(rec: Any, body: bytes, source: str, count: int) -> dict[str, Any] | str:
    """A document from one WARC response, or why it is not one."""
    from poisonguard.crawler.html import extract

    url = rec.headers.get("WARC-Target-URI")
    http = rec.http_headers
    status = http.status_code if http is not None else None
    ctype = (http.get("Content-Type") if http is not None else None) or ""
    if status is not None and not 200 <= status < 300:
        return f"HTTP status {status}, not a page"
    if "html" in ctype.lower() or not ctype:
        ex = extract(body, ctype or None)
        doc = _document({"text": ex.text, "url": url, "title": ex.title}, source, count)
        doc["hidden"] = [{"channel": c, "text": t} for c, t in ex.hidden] or None
        return _not_storable(doc) or doc
    if ctype.lower().startswith("text/"):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "text response is not UTF-8"
        return _not_storable(doc := _document({"text": text, "url": url}, source, count)) or doc
    return f"not a text response ({ctype.split(';')[0]})"


def read_warc(path: Path, state: ReadState) -> Iterator[dict[str, Any]]:
    """HTTP response records of a WARC file; HTML goes through the same HTML pass as the crawler.

    A record cut short (its header or body) and a gzip stream that ends early are listed, never
    turned into an empty document or dropped without a word."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    source = display_name(path)
    count = 0
    offset = 0
    fh = open(path, "rb", buffering=0)
    inner = gzip.GzipFile(fileobj=fh) if path.name.lower().endswith(".gz") else io.BufferedReader(fh)
    stream = _Tolerant(inner)
    try:
        for rec in ArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=False):
            count += 1
            offset = rec.stream_pos
            body = _warc_body(rec, state.max_record_bytes)
            doc = body if isinstance(body, str) else warc_document(rec, body, source, count)
            if isinstance(doc, str):
                state.unreadable.append(Unreadable(source, f"offset {offset}", doc))
                continue
            yield doc
    except BaseException as exc:  # FastWARC's Rust panics are BaseExceptions
        if isinstance(exc, STOP_EXCEPTIONS):
            raise
        state.unreadable.append(
            Unreadable(source, f"after offset {offset}", f"truncated or corrupt WARC: {exc}")
        )
    finally:
        fh.close()
        state.bytes_done += path.stat().st_size
    cut_listed = bool(state.unreadable) and state.unreadable[-1] == Unreadable(
        source, f"offset {offset}", state.unreadable[-1].why
    )
    if stream.error is not None and not cut_listed:  # the cut record already says it
        state.unreadable.append(
            Unreadable(source, f"after offset {offset}", f"truncated or corrupt gzip stream: {stream.error}")
        )
    elif count == 0:
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


def _guarded_records(path: Path, state: ReadState, batch_rows: int) -> Iterator[dict[str, Any] | pa.Table]:
    """A file's records; a fault no reader foresaw lists the file (and how far it got), never
    stops the run: the other inputs are still read."""
    done = 0
    try:
        for item in _records(path, state, batch_rows):
            done += item.num_rows if isinstance(item, pa.Table) else 1
            yield item
    except (InputError, *STOP_EXCEPTIONS):
        raise
    except BaseException as exc:  # includes panics of the Rust WARC parser
        state.unreadable.append(
            Unreadable(
                display_name(path), f"after record {done}", f"unreadable file: {type(exc).__name__}: {exc}"
            )
        )


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
        for item in _guarded_records(path, state, batch_rows):
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
