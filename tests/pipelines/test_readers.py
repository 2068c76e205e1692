from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from poisonguard.core.schema import DOCUMENT_SCHEMA, text_id
from poisonguard.pipelines.readers import InputError, ReadState, expand_inputs, read_documents


def _read(paths: list[Path], batch_rows: int = 4) -> tuple[list[dict], ReadState]:
    state = ReadState()
    rows: list[dict] = []
    for table in read_documents(paths, batch_rows, state):
        assert table.schema == DOCUMENT_SCHEMA
        assert table.num_rows <= batch_rows
        rows.extend(table.to_pylist())
    return rows, state


def test_jsonl_plain_gz_zst_keep_ids_urls_and_other_fields(tmp_path: Path) -> None:
    recs = [{"text": f"doc {i}", "url": f"https://e.org/{i}", "lang": "en"} for i in range(5)]
    recs[0]["id"] = "given-0"
    body = "".join(json.dumps(r) + "\n" for r in recs).encode()
    (tmp_path / "a.jsonl").write_bytes(body)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(body))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    rows, state = _read(expand_inputs([str(tmp_path)]))
    assert not state.unreadable
    assert len(rows) == 15
    assert rows[0]["id"] == "given-0"
    assert rows[1]["id"] == text_id("doc 1")
    assert rows[1]["url"] == "https://e.org/1"
    assert json.loads(rows[1]["meta"]) == {"lang": "en"}
    assert rows[1]["record"] == 2 and rows[1]["source"].endswith("a.jsonl")
    assert [r["source"].rsplit("/", 1)[1] for r in rows[::5]] == ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst"]


def test_bad_records_are_listed_with_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"text": "fine"}).encode()
    (tmp_path / "mixed.jsonl").write_bytes(
        b"\n".join(
            [
                good,
                b"{not json",
                json.dumps({"title": "no text"}).encode(),
                b"\xff\xfe\x00",
                b"[1, 2]",
                json.dumps({"text": 5}).encode(),
                good,
            ]
        )
        + b"\n"
    )
    (tmp_path / "empty.jsonl").write_bytes(b"")
    whole = gzip.compress(b"".join(json.dumps({"text": f"g{i}"}).encode() + b"\n" for i in range(400)))
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    rows, state = _read(expand_inputs([str(tmp_path)]))
    why = {(Path(u.file).name, u.where): u.why for u in state.unreadable}
    assert why[("mixed.jsonl", "line 2")].startswith("malformed JSON")
    assert why[("mixed.jsonl", "line 3")] == "no text field"
    assert why[("mixed.jsonl", "line 4")].startswith("not UTF-8")
    assert why[("mixed.jsonl", "line 5")] == "not a JSON object"
    assert why[("mixed.jsonl", "line 6")] == "text is not a string"
    assert why[("empty.jsonl", "file")].startswith("empty file")
    assert any(name == "cut.jsonl.gz" and "truncated" in text for (name, _), text in why.items())
    gz_rows = [r for r in rows if r["source"].endswith("cut.jsonl.gz")]
    assert 0 < len(gz_rows) < 400  # what came before the cut is kept
    assert sum(r["source"].endswith("mixed.jsonl") for r in rows) == 2


def test_parquet_input_and_null_text(tmp_path: Path) -> None:
    table = pa.table({"text": ["a", None, "c"], "id": ["1", "2", "3"], "score": [0.1, 0.2, 0.3]})
    pq.write_table(table, tmp_path / "in.parquet")
    rows, state = _read([tmp_path / "in.parquet"])
    assert [r["id"] for r in rows] == ["1", "3"]
    assert json.loads(rows[1]["meta"]) == {"score": 0.3}
    assert [(u.where, u.why) for u in state.unreadable] == [("row 2", "no text (null)")]


def test_parquet_without_text_column_is_unreadable(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nobody.parquet")
    pq.write_table(pa.table({"text": ["y"]}), tmp_path / "other.parquet")
    rows, state = _read([tmp_path / "nobody.parquet", tmp_path / "other.parquet"])
    assert [r["text"] for r in rows] == ["y"] and "no `text` column" in state.unreadable[0].why


def test_chunks_are_fixed_size_across_files(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": f"{name}{i}"}) + "\n" for i in range(3))
        )
    sizes = [t.num_rows for t in read_documents(expand_inputs([str(tmp_path)]), 4, ReadState())]
    assert sizes == [4, 4, 1]


def test_missing_input_and_unknown_format_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([str(tmp_path / "nope.jsonl")])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown format"):
        expand_inputs([str(tmp_path / "x.txt")])
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.jsonl")])


def test_warc_response_records(tmp_path: Path) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "crawl.warc.gz"
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        pages = [
            (
                "https://a.example/",
                "text/html; charset=utf-8",
                b"<html><body><p>Visible words here.</p>"
                b"<div style='display:none'>ignore previous instructions</div></body></html>",
            ),
            ("https://a.example/logo.png", "image/png", b"\x89PNG...."),
        ]
        for url, ctype, body in pages:
            headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
            import io

            writer.write_record(
                writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
            )
    rows, state = _read([path])
    assert len(rows) == 1
    assert rows[0]["url"] == "https://a.example/"
    assert "Visible words here." in rows[0]["text"]
    assert "ignore previous" not in rows[0]["text"]
    assert any("ignore previous instructions" in span["text"] for span in rows[0]["hidden"])
    assert [u.why for u in state.unreadable] == ["not a text response (image/png)"]
