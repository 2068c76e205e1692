"""Field mapping: --text-key/--id-key/--url-key, presets, and corpora written by other tools."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.config import ConfigError, load_config
from poisonguard.pipelines.fields import FieldMap, InputConfig, pop_path
from poisonguard.pipelines.readers import NoTextError, ReadState, expand_inputs, read_documents
from poisonguard.pipelines.runner import run_filter
from tests.conftest import DEMO_CORPUS, write_jsonl
from tests.pipelines.test_cli import poisonguard

FAST = "perplexity:\n  enabled: false\n"


def read_all(paths: list[str], fields: FieldMap) -> list[dict]:
    state = ReadState(fields=fields)
    return [row for t in read_documents(expand_inputs(paths), 50, state) for row in t.to_pylist()]


def demo_records() -> list[dict]:
    return [json.loads(line) for line in DEMO_CORPUS.read_text("utf-8").splitlines() if line.strip()]


def test_pop_path_removes_nested_keys_and_empty_parents() -> None:
    record = {"text": "t", "metadata": {"url": "https://a.example/", "dump": "CC-2024"}, "x": {"y": 1}}
    assert pop_path(record, "metadata.url") == "https://a.example/"
    assert pop_path(record, "x.y") == 1
    assert pop_path(record, "metadata.absent") is None and pop_path(record, "text.deeper") is None
    assert record == {"text": "t", "metadata": {"dump": "CC-2024"}}


def test_presets_and_keys_resolve_with_keys_winning() -> None:
    fields = FieldMap.from_config(InputConfig(preset="datatrove"))
    assert (fields.text_key, fields.id_key, fields.url_key) == ("text", "id", "metadata.url")
    fields = FieldMap.from_config(InputConfig(preset="redpajama", url_key="meta.source_url"))
    assert (fields.text_key, fields.id_key, fields.url_key) == ("raw_content", "digest", "meta.source_url")
    assert FieldMap.from_config(InputConfig()).describe() == FieldMap().describe()


@pytest.mark.parametrize(
    ("section", "message"),
    [({"preset": "nosuch"}, "unknown preset"), ({"url_key": "metadata..url"}, "input.url_key")],
)
def test_bad_input_section_is_a_config_error(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"input": section})


def test_jsonl_and_parquet_with_nested_keys(tmp_path: Path) -> None:
    records = [
        {"content": f"page {i}", "meta": {"url": f"https://h{i}.example/", "lang": "en"}, "key": f"k{i}"}
        for i in range(3)
    ]
    write_jsonl(tmp_path / "a.jsonl", records)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "b.parquet")
    fields = FieldMap(text_key="content", id_key="key", url_key="meta.url")
    rows = read_all([str(tmp_path / "a.jsonl"), str(tmp_path / "b.parquet")], fields)
    assert [r["id"] for r in rows] == ["k0", "k1", "k2"] * 2
    assert [r["url"] for r in rows[:3]] == [f"https://h{i}.example/" for i in range(3)]
    assert rows[0]["text"] == "page 0" and rows[3]["text"] == "page 0"
    # what the mapping took is gone from meta; the rest of the nested object stays
    assert json.loads(rows[0]["meta"]) == {"meta": {"lang": "en"}}


def test_no_record_with_the_text_field_names_the_keys_seen(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"content": "x", "metadata": {"url": "u"}}] * 3)
    with pytest.raises(NoTextError) as err:
        read_all([str(tmp_path / "a.jsonl")], FieldMap())
    assert "'text'" in str(err.value) and "content" in str(err.value) and "metadata.url" in str(err.value)
    pq.write_table(pa.table({"body": ["x"], "meta": [{"url": "u"}]}), tmp_path / "b.parquet")
    with pytest.raises(NoTextError, match="body, meta, meta.url"):
        read_all([str(tmp_path / "b.parquet")], FieldMap())


def test_cli_exit_1_when_no_record_has_text(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"content": "Some words here.", "url": "https://a.example/"}] * 4)
    (tmp_path / "fast.yaml").write_text(FAST)
    args = [str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "fast.yaml")]
    result = poisonguard("filter", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert "content" in result.stderr and "--text-key" in result.stderr
    result = poisonguard("filter", *args, "--out", str(tmp_path / "out2"), "--text-key", "content")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out2" / "report.json").read_text())["counts"]["kept"] >= 1


def write_with_datatrove(folder: Path) -> None:
    """The demo corpus as datatrove documents, written by datatrove's own JsonlWriter: the URL and
    the label go under `metadata`, as every datatrove reader and extractor puts them."""
    datatrove = pytest.importorskip("datatrove")
    from datatrove.data import Document
    from datatrove.pipeline.writers import JsonlWriter

    assert datatrove
    with JsonlWriter(str(folder)) as writer:
        for rec in demo_records():
            metadata = {k: v for k, v in rec.items() if k not in ("id", "text")}
            writer.write(Document(text=rec["text"], id=rec["id"], metadata=metadata), rank=0)


def quarantine_reasons(out: Path) -> dict[str, list[str]]:
    table = pq.read_table(out / "quarantine")
    return dict(zip(table.column("id").to_pylist(), table.column("reasons").to_pylist(), strict=True))


def test_datatrove_folder_campaign_is_quarantined(tmp_path: Path) -> None:
    folder = tmp_path / "dt"
    write_with_datatrove(folder)
    assert list(folder.glob("*.jsonl.gz")), "datatrove wrote no file"
    farm = [r for r in demo_records() if r["id"].startswith("farm-")]
    assert len({r["url"].split("/")[2] for r in farm}) >= 12
    (tmp_path / "fast.yaml").write_text(FAST)
    base = ["filter", str(folder), "--config", str(tmp_path / "fast.yaml"), "-q"]

    result = poisonguard(*base, "--out", str(tmp_path / "out"), "--preset", "datatrove")
    assert result.returncode == 0, result.stderr
    reasons = quarantine_reasons(tmp_path / "out")
    for rec in farm:
        assert any(r.startswith("dedup:campaign") for r in reasons.get(rec["id"], [])), rec["id"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any(h["host"].endswith("farm0.example") for h in report["hosts"])
    clean = pq.read_table(tmp_path / "out" / "clean")
    assert all(u is not None for u in clean.column("url").to_pylist())

    # the same folder read without the mapping: no URLs, so the campaign is not seen
    run_filter([str(folder)], tmp_path / "plain", load_config(tmp_path / "fast.yaml"), show_progress=False)
    plain = quarantine_reasons(tmp_path / "plain")
    assert not any(r.startswith("dedup:campaign") for rs in plain.values() for r in rs)
