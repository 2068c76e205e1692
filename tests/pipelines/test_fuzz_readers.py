"""Property-based fuzzing of every reader (JSONL plain/.gz/.zst, Parquet, WARC plain/.gz).

Random bytes and valid files with random mutations (flipped bytes, cut tails, inserted junk) must
never crash a read or a run, and nothing may vanish: every record is a document or a named
unreadable entry (file, where, why), and a run's counts add up (in = kept + duplicate + quarantined +
filtered + unreadable).

`make test` runs a fixed, derandomised sample (a few thousand cases, well under a minute);
`make fuzz` runs the `fuzz` profile: many more cases, new ones every time
(POISONGUARD_FUZZ_EXAMPLES scales both).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poisonguard.core.schema import DOCUMENT_SCHEMA
from poisonguard.pipelines.config import PipelineConfig, load_config
from poisonguard.pipelines.readers import NoTextError, ReadState, read_documents
from poisonguard.pipelines.runner import run_filter

SCALE = float(os.environ.get("POISONGUARD_FUZZ_EXAMPLES", "1"))
settings.register_profile(
    "default",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("POISONGUARD_FUZZ_PROFILE", "default"))
FUZZ = os.environ.get("POISONGUARD_FUZZ_PROFILE") == "fuzz"


def examples(n: int) -> int:
    """`n` cases in `make test`; 10 times as many under `make fuzz`; scaled by the env variable."""
    return max(1, int(n * SCALE * (10 if FUZZ else 1)))


# --- what a record can hold ----------------------------------------------------------------------

# Text that exercises escapes, surrogates (as JSON escapes), invisible and wide characters.
TRICKY = list('aZ 0.,é€中\n\t\\"{}[]\x00\x1b\u200b\u202e\ufeff\U0001f600\U000e0041')
tricky_text = st.text(alphabet=st.sampled_from(TRICKY), max_size=60)
json_values = st.none() | st.booleans() | st.integers() | tricky_text | st.lists(tricky_text, max_size=2)


@st.composite
def jsonl_lines(draw: Any) -> bytes:
    """Mostly records, some with a lone-surrogate escape, deep nesting, no text or junk."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["doc", "doc", "doc", "surrogate", "deep", "notext", "junk", "blank"]))
        if kind == "doc":
            rec = {"text": draw(tricky_text), "id": draw(st.none() | tricky_text | st.integers())}
            rec.update(
                draw(st.dictionaries(st.sampled_from(["url", "meta", "lang"]), json_values, max_size=2))
            )
            lines.append(json.dumps(rec, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"))
        elif kind == "surrogate":
            field = draw(st.sampled_from(["text", "id", "url"]))
            rec = {"text": "t", field: "x\\ud800y"}
            lines.append(json.dumps(rec).replace("\\\\ud800", "\\ud800").encode())
        elif kind == "deep":
            depth = draw(st.integers(500, 4000))
            lines.append(b'{"text": "d", "x": ' + b"[" * depth + b"]" * depth + b"}")
        elif kind == "notext":
            lines.append(json.dumps({"title": draw(tricky_text)}).encode())
        elif kind == "junk":
            lines.append(draw(st.binary(max_size=40)).replace(b"\n", b" "))
        else:
            lines.append(draw(st.sampled_from([b"", b"   ", b"\t"])))
    body = b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")
    return (b"\xef\xbb\xbf" + body) if draw(st.booleans()) else body


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """`data` with a few random edits: flipped bytes, a cut tail, deleted or inserted junk."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "delete", "insert"]))
        if not out and op != "insert":
            continue
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "flip":
            out[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del out[at:]
        elif op == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        else:
            out[at:at] = draw(st.binary(min_size=1, max_size=32))
    return bytes(out)


def _compress(body: bytes, suffix: str) -> bytes:
    if suffix.endswith(".gz"):
        return gzip.compress(body, mtime=0)
    if suffix.endswith(".zst"):
        return zstandard.ZstdCompressor(level=1).compress(body)
    return body


@st.composite
def parquet_files(draw: Any) -> bytes:
    n = draw(st.integers(0, 8))
    text_type = draw(st.sampled_from([pa.string(), pa.large_string(), pa.binary(), pa.int64()]))
    if pa.types.is_integer(text_type):
        texts: list[Any] = draw(st.lists(st.none() | st.integers(-5, 5), min_size=n, max_size=n))
    elif pa.types.is_binary(text_type):
        texts = draw(st.lists(st.none() | st.binary(max_size=40), min_size=n, max_size=n))
    else:
        texts = draw(st.lists(st.none() | tricky_text, min_size=n, max_size=n))
    columns: dict[str, pa.Array] = {"text": pa.array(texts, text_type)}
    if draw(st.booleans()):
        columns["id"] = pa.array(draw(st.lists(st.none() | tricky_text, min_size=n, max_size=n)), pa.string())
    if draw(st.booleans()):
        columns["score"] = pa.array(draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n)))
    if draw(st.booleans()):
        columns = {"html": columns["text"], "status": pa.array([200] * n, pa.int32())}
    sink = io.BytesIO()
    pq.write_table(
        pa.table(columns),
        sink,
        row_group_size=draw(st.integers(1, 4)),
        compression=draw(st.sampled_from(["none", "zstd", "snappy"])),
    )
    return sink.getvalue()


@st.composite
def warc_files(draw: Any, gz: bool) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    sink = io.BytesIO()
    writer = WARCWriter(sink, gzip=gz)
    for i in range(draw(st.integers(0, 5))):
        status = draw(st.sampled_from(["200 OK", "200 OK", "404 Not Found", "301 Moved"]))
        ctype = draw(st.sampled_from(["text/html", "text/plain", "application/pdf", ""]))
        body = draw(st.binary(max_size=200)) if draw(st.booleans()) else draw(tricky_text).encode("utf-8")
        if ctype == "text/html" and draw(st.booleans()):
            body = b"<html><body><p>" + body + b"</p></body></html>"
        headers = [("Content-Type", ctype)] if ctype else []
        http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
        fixed = {
            "WARC-Date": "2026-01-01T00:00:00Z",
            "WARC-Record-ID": f"<urn:uuid:{i:08d}-0000-4000-8000-000000000000>",
        }
        record = writer.create_warc_record(
            f"https://e.org/{i}",
            "response",
            payload=io.BytesIO(body),
            http_headers=http,
            warc_headers_dict=fixed,
        )
        writer.write_record(record)
    return sink.getvalue()


# --- the properties ---------------------------------------------------------------------------------


def read_all(path: Path, batch_rows: int = 16) -> tuple[int, ReadState]:
    """Read `path` as a run would; every batch must be in the document schema."""
    state = ReadState(max_record_bytes=4096)
    rows = 0
    try:
        for table in read_documents([path], batch_rows, state):
            assert table.schema == DOCUMENT_SCHEMA
            assert 0 < table.num_rows <= batch_rows
            for text in table.column("text").to_pylist():
                assert isinstance(text, str)
                text.encode("utf-8")  # storable: no lone surrogate got through
            rows += table.num_rows
    except NoTextError:  # by design: no record had the text field, so the mapping is likely wrong
        assert rows == 0 and state.records == 0
    for u in state.unreadable:
        assert u.file == str(path) and u.where and u.why
    return rows, state


def _nonblank_lines(body: bytes) -> int:
    lines = body.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    return sum(1 for line in lines if line.strip())


def _scratch(suffix: str, data: bytes) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    folder = tempfile.TemporaryDirectory(prefix="pg-fuzz-")
    path = Path(folder.name) / f"input{suffix}"
    path.write_bytes(data)
    return folder, path


@settings(max_examples=examples(250))
@given(body=jsonl_lines())
def test_plain_jsonl_every_line_is_a_document_or_named(body: bytes) -> None:
    folder, path = _scratch(".jsonl", body)
    with folder:
        rows, state = read_all(path)
    expected = _nonblank_lines(body)
    assert rows + len(state.unreadable) == (expected or 1)  # an empty file is one named entry


@settings(max_examples=examples(250))
@given(data=st.data(), suffix=st.sampled_from([".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson.gz"]))
def test_mutated_jsonl_never_crashes_a_read(data: Any, suffix: str) -> None:
    whole = _compress(data.draw(jsonl_lines()), suffix)
    folder, path = _scratch(suffix, data.draw(mutated(whole)))
    with folder:
        read_all(path)


@settings(max_examples=examples(300))
@given(
    raw=st.binary(max_size=300),
    suffix=st.sampled_from([".jsonl.gz", ".jsonl.zst", ".parquet", ".warc", ".warc.gz"]),
)
def test_random_bytes_never_crash_a_read(raw: bytes, suffix: str) -> None:
    folder, path = _scratch(suffix, raw)
    with folder:
        rows, state = read_all(path)
    assert rows or state.unreadable  # never silently nothing


@settings(max_examples=examples(150))
@given(data=parquet_files())
def test_valid_parquet_every_row_is_a_document_or_named(data: bytes) -> None:
    folder, path = _scratch(".parquet", data)
    with folder:
        rows, state = read_all(path)
        meta = pq.ParquetFile(path)
        n = meta.metadata.num_rows
        raw = "html" in meta.schema_arrow.names
    if not raw:  # raw crawl shards: rows that are not pages stay in raw/ by design
        file_notes = sum(1 for u in state.unreadable if u.where == "file")
        assert rows + len(state.unreadable) - file_notes == n


@settings(max_examples=examples(200))
@given(data=st.data())
def test_mutated_parquet_never_crashes_a_read(data: Any) -> None:
    folder, path = _scratch(".parquet", data.draw(mutated(data.draw(parquet_files()))))
    with folder:
        read_all(path)


@settings(max_examples=examples(250))
@given(data=st.data(), gz=st.booleans())
def test_mutated_warc_never_crashes_a_read(data: Any, gz: bool) -> None:
    whole = data.draw(warc_files(gz))
    edited = data.draw(mutated(whole))
    folder, path = _scratch(".warc.gz" if gz else ".warc", edited)
    with folder:
        rows, state = read_all(path)
        if edited == whole and whole:
            assert not any("truncated" in u.why or "corrupt" in u.why for u in state.unreadable)


# --- whole runs: conservation ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_config() -> PipelineConfig:
    return load_config(
        overrides={"perplexity": {"enabled": False}, "run": {"batch_rows": 5, "max_record_bytes": 4096}}
    )


@settings(
    max_examples=examples(3),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_run_over_hostile_files_conserves_every_document(data: Any, run_config: PipelineConfig) -> None:
    with tempfile.TemporaryDirectory(prefix="pg-fuzz-run-") as tmp:
        corpus = Path(tmp) / "in"
        corpus.mkdir()
        (corpus / "a.jsonl").write_bytes(data.draw(jsonl_lines()))
        (corpus / "b.jsonl.gz").write_bytes(data.draw(mutated(_compress(data.draw(jsonl_lines()), ".gz"))))
        (corpus / "c.parquet").write_bytes(data.draw(mutated(data.draw(parquet_files()))))
        (corpus / "d.warc.gz").write_bytes(data.draw(mutated(data.draw(warc_files(True)))))
        out = Path(tmp) / "out"
        try:
            report = run_filter([str(corpus)], out, run_config, show_progress=False)
        except NoTextError:  # by design when no record of any file has a text field
            return
        counts = report["counts"]
        parts = ("kept", "duplicate", "quarantined", "filtered", "unreadable")
        assert counts["in"] == sum(counts[k] for k in parts)
        shard_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("*/part-*.parquet"))
        assert shard_rows == counts["in"] - counts["unreadable"]
        listed = (out / "unreadable.jsonl").read_text("utf-8").splitlines() if counts["unreadable"] else []
        assert len(listed) == counts["unreadable"]
        for line in listed:
            entry = json.loads(line)
            assert Path(entry["file"]).parent == corpus and entry["where"] and entry["why"]
