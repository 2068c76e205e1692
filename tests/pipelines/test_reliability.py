"""Hostile input, faults and concurrency: each case here once lost data or crashed a run (issue #15).

Every test names the fault it plays; docs/RELIABILITY.md lists them all in one table.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from poisonguard.pipelines import nightly, stages
from poisonguard.pipelines.config import ConfigError, PipelineConfig, load_config
from poisonguard.pipelines.explain import explain
from poisonguard.pipelines.locks import LOCK_FILE, hold_lock
from poisonguard.pipelines.readers import InputError, ReadState, expand_inputs, read_documents
from poisonguard.pipelines.runner import run_filter
from poisonguard.pipelines.stages import WORK, OutputError
from poisonguard.pipelines.writers import SUCCESS
from tests.conftest import DEMO_CORPUS, write_jsonl
from tests.pipelines.test_cli import poisonguard
from tests.pipelines.test_runner import read_outcomes

GOOD = "Tomatoes grow best in full sun with at least six hours of direct light a day, and straw mulch helps."


def demo(doc_id: str) -> dict[str, Any]:
    for line in DEMO_CORPUS.read_text("utf-8").splitlines():
        rec = json.loads(line)
        if rec["id"] == doc_id:
            return dict(rec)
    raise KeyError(doc_id)


def unreadable_lines(out: Path) -> list[dict[str, str]]:
    path = out / "unreadable.jsonl"
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()] if path.exists() else []


def conserved(report: dict[str, Any]) -> bool:
    c = report["counts"]
    return c["in"] == c["kept"] + c["duplicate"] + c["quarantined"] + c["filtered"] + c["unreadable"]


# --- 1. one bad record never aborts a run -----------------------------------------------------


def test_lone_surrogates_and_deep_nesting_become_unreadable_lines(
    tmp_path: Path, fast_config: PipelineConfig
) -> None:
    lines = [
        json.dumps({"text": GOOD, "id": "ok-1"}),
        '{"text": "bad \\ud800 text"}',
        '{"text": "fine", "id": "\\udfff"}',
        '{"text": "fine", "url": "https://e.org/\\ud800"}',
        '{"text": "fine", "meta": {"k": "\\ud800"}}',
        '{"text": "deep", "x": ' + "[" * 3000 + "]" * 3000 + "}",
        json.dumps({"text": GOOD + " again", "id": "ok-2"}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    out = tmp_path / "out"
    report = run_filter([str(tmp_path / "in.jsonl")], out, fast_config, show_progress=False)
    assert (out / SUCCESS).exists() and conserved(report)
    assert set(read_outcomes(out)) == {"ok-1", "ok-2"}
    why = {u["where"]: u["why"] for u in unreadable_lines(out)}
    assert set(why) == {"line 2", "line 3", "line 4", "line 5", "line 6"}
    assert "`text` holds a lone surrogate" in why["line 2"]
    assert "`id`" in why["line 3"] and "`url`" in why["line 4"] and "`meta`" in why["line 5"]
    assert why["line 6"] == "JSON nested too deeply"
    assert all(u["file"].endswith("in.jsonl") for u in unreadable_lines(out))


# --- 2. one bad file never loses the other inputs ---------------------------------------------


def _corrupt_second_row_group(path: Path) -> int:
    """Overwrite the page header of the second row group; returns the rows of the first."""
    pf = pq.ParquetFile(path)
    first_rows = pf.metadata.row_group(0).num_rows
    offset = pf.metadata.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 24] = b"\xff" * 24
    path.write_bytes(bytes(data))
    return first_rows


def test_corrupt_parquet_and_raw_shard_without_columns_are_listed(
    tmp_path: Path, fast_config: PipelineConfig
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    texts = [f"{GOOD} Row {i} of the shard, with its own words {i * 7}." for i in range(40)]
    pq.write_table(
        pa.table({"text": texts, "id": [f"p{i}" for i in range(40)]}),
        inputs / "a.parquet",
        row_group_size=10,
        compression="none",
    )
    first_rows = _corrupt_second_row_group(inputs / "a.parquet")
    pq.write_table(pa.table({"html": [b"<p>x</p>"], "status": [200]}), inputs / "b.parquet")
    write_jsonl(inputs / "c.jsonl", [{"text": GOOD, "id": "c1"}])
    out = tmp_path / "out"
    report = run_filter([str(inputs)], out, fast_config, show_progress=False)
    assert (out / SUCCESS).exists() and conserved(report)
    # only the broken row group is lost: the rows before and after it are read
    lost = {f"p{i}" for i in range(first_rows, 2 * first_rows)}
    assert set(read_outcomes(out)) == {"c1"} | {f"p{i}" for i in range(40)} - lost
    listed = {Path(u["file"]).name: u for u in unreadable_lines(out)}
    assert listed["a.parquet"]["where"] == f"rows {first_rows + 1}-{2 * first_rows}"
    assert "corrupt Parquet row group 1" in listed["a.parquet"]["why"]
    assert "without columns url, final_url" in listed["b.parquet"]["why"]


# --- 3. truncation is detected, never silent ---------------------------------------------------


def _warc(path: Path, pages: int) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=path.name.endswith(".gz"))
        for i in range(pages):
            body = f"<html><body><p>Page {i}. {GOOD * 3}</p></body></html>".encode()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                f"https://e.org/{i}", "response", payload=io.BytesIO(body), http_headers=headers
            )
            writer.write_record(record)


@pytest.mark.parametrize("name", ["cut.warc", "cut.warc.gz"])
def test_truncated_warc_lists_the_cut_record(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _warc(path, 3)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 200])
    state = ReadState()
    rows = [r for t in read_documents([path], 10, state) for r in t.to_pylist()]
    assert len(rows) == 2 and all(r["text"] for r in rows)  # no empty document from the cut record
    assert len(state.unreadable) == 1 and "truncated" in state.unreadable[0].why


def test_zst_cut_inside_its_frame_is_listed(tmp_path: Path) -> None:
    body = b"".join(json.dumps({"text": f"{GOOD} {i}"}).encode() + b"\n" for i in range(20_000))
    frame = zstandard.ZstdCompressor(level=1).compress(body)
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(frame[: len(frame) // 2])
    state = ReadState()
    rows = sum(t.num_rows for t in read_documents([path], 5000, state))
    assert 0 < rows < 20_000
    assert [u.why for u in state.unreadable] == [
        "truncated or corrupt compressed stream: zstd stream ends inside a frame"
    ]
    assert state.unreadable[0].where == f"after line {rows}"


# --- 4. duplicate ids never share an outcome ---------------------------------------------------


def test_documents_sharing_an_id_keep_their_own_outcomes(tmp_path: Path, fast_config: PipelineConfig) -> None:
    poison = demo("poison-injection")
    benign = demo("garden-tomatoes")
    copy = dict(benign, id="copy-of-benign", text=benign["text"].replace("six hours", "6 hours"))
    write_jsonl(tmp_path / "a.jsonl", [dict(poison, id="same")])
    write_jsonl(tmp_path / "b.jsonl", [dict(benign, id="same"), copy])
    out = tmp_path / "out"
    report = run_filter(
        [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], out, fast_config, show_progress=False
    )
    rows = {
        (r["source"].rsplit("/", 1)[1], r["id"]): r
        for folder in ("clean", "quarantine")
        for shard in (out / folder).glob("part-*.parquet")
        for r in pq.read_table(shard).to_pylist()
    }
    assert rows[("a.jsonl", "same")]["outcome"] == "quarantined"
    assert rows[("b.jsonl", "same")]["outcome"] == "kept"
    copy_row = rows[("b.jsonl", "copy-of-benign")]
    assert copy_row["outcome"] == "duplicate" and copy_row["duplicate_of"] == "same"
    assert report["duplicate_ids"]["documents"] == 1
    assert report["duplicate_ids"]["examples"] == [{"id": "same", "extra_copies": 1}]
    assert "1 more document(s) carry this id" in explain(out, "same")


# --- 5, 6. locks --------------------------------------------------------------------------------


def test_filter_exits_75_while_another_run_holds_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with hold_lock(out / LOCK_FILE, "test"):
        for extra in ([], ["--resume"]):
            result = poisonguard("filter", str(DEMO_CORPUS), "--out", str(out), "--no-lm", "-q", *extra)
            assert result.returncode == 75, result.stderr
            assert "holds the lock" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing was written


def test_nightly_state_store_is_locked_whatever_the_root(tmp_path: Path, monkeypatch: Any) -> None:
    """Run A (root A, store A/state.sqlite) is under way; run B (root B, same store) must wait."""
    store = tmp_path / "a" / "state.sqlite"
    seen: list[BaseException] = []
    inner_run = nightly._Night.run

    def during_a(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            nightly.run_nightly(cfg, base=tmp_path, inputs=[], out=tmp_path / "b", state=store)
        except nightly.NightlyError as exc:
            seen.append(exc)
        return inner_run(self, *args, **kwargs)

    cfg = nightly.NightlyConfig(use_lm=False, pipeline={"perplexity": {"enabled": False}})
    monkeypatch.setattr(nightly._Night, "run", during_a)
    nightly.run_nightly(cfg, base=tmp_path, date="2026-01-01", inputs=[], out=tmp_path / "a", state=store)
    assert len(seen) == 1 and isinstance(seen[0], nightly.NightlyLocked)
    assert "state.sqlite.lock" in str(seen[0])


# --- 7. OUT inside an input folder --------------------------------------------------------------


def test_out_inside_the_input_folder_is_refused_before_anything_is_touched(
    tmp_path: Path, fast_config: PipelineConfig
) -> None:
    corpus = tmp_path / "in"
    corpus.mkdir()
    shutil.copy(DEMO_CORPUS, corpus / "demo.jsonl")
    (corpus / "notes.txt").write_text("not a corpus")
    (corpus / "old.jsonl.bz2").write_bytes(b"BZh")
    finished = tmp_path / "elsewhere"
    run_filter([str(corpus)], finished, fast_config, show_progress=False)
    shutil.copytree(finished, corpus / "out")  # a finished run inside the input folder
    before = sorted(p.relative_to(corpus) for p in corpus.rglob("*"))
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="inside the input folder"):
            run_filter([str(corpus)], corpus / "out", fast_config, overwrite=overwrite, show_progress=False)
    assert sorted(p.relative_to(corpus) for p in corpus.rglob("*")) == before
    # A run's output folder is never read as corpus without a word: nested ones are skipped and named,
    # one given by name is refused.
    with pytest.raises(InputError, match="output folder of a poisonguard run"):
        expand_inputs([str(corpus / "out")])
    report = run_filter([str(corpus)], tmp_path / "o2", fast_config, show_progress=False)
    assert report["inputs"] == [str(corpus / "demo.jsonl")]
    skipped = " ".join(report["skipped_inputs"])
    assert "notes.txt (unknown format)" in skipped and "old.jsonl.bz2 (unknown format)" in skipped
    assert "a run's output" in skipped and report["skipped_inputs_total"] >= 5


# --- 8. user strings on the console -------------------------------------------------------------


def test_brackets_and_escapes_in_paths_ids_and_config_names(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "[b]dir"
    folder.mkdir(parents=True)
    write_jsonl(folder / "a.jsonl", [{"text": GOOD, "id": "evil\x1b[31mred\x1b[0m"}, {"text": "x", "id": 5}])
    conf = tmp_path / "c[1].yaml"
    conf.write_text("perplexity:\n  enabled: false\nrun:\n  workerz: 2\n")
    bad = poisonguard("filter", str(folder), "--out", str(tmp_path / "o"), "--config", str(conf))
    assert bad.returncode == 2 and "c[1].yaml" in bad.stderr, bad.stderr
    conf.write_text("perplexity:\n  enabled: false\n")
    missing = poisonguard("filter", str(folder / "[x].jsonl"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "in/[b]dir/[x].jsonl: no file matches" in missing.stderr
    out = tmp_path / "o[2]"
    ok = poisonguard("filter", str(folder), "--out", str(out), "--config", str(conf))
    assert ok.returncode == 0, ok.stderr
    assert str(out / "report.html") in ok.stdout
    explained = poisonguard("explain", str(out), "evil\x1b[31mred\x1b[0m")
    assert explained.returncode == 0, explained.stderr
    assert "\x1b" not in explained.stdout and "evil<U+001B>[31mred" in explained.stdout
    absent = poisonguard("explain", str(out), "no[such]\x1b[2Jid")
    assert absent.returncode == 2 and "\x1b" not in absent.stderr and "no[such]" in absent.stderr


# --- 9. report and explain on a damaged OUT ------------------------------------------------------


def test_report_and_explain_on_corrupt_files_give_one_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok = poisonguard("filter", str(DEMO_CORPUS), "--out", str(out), "--no-lm", "-q")
    assert ok.returncode == 0, ok.stderr
    (out / SUCCESS).unlink()
    warned = poisonguard("explain", str(out), "bread")
    assert warned.returncode == 0 and "did not finish" in warned.stderr
    for shard in (out / "clean").glob("part-*.parquet"):
        shard.write_bytes(b"PAR1 not really")
    broken = poisonguard("explain", str(out), "bread")
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    (out / "report.json").write_text('{"counts": ')
    report = poisonguard("report", str(out))
    assert report.returncode == 2 and "Traceback" not in report.stderr and "report.json" in report.stderr
    assert len([x for x in report.stderr.splitlines() if "error" in x]) == 1


# --- risky: file modes, record size, commit, resume, types, config ------------------------------


def test_output_files_follow_the_umask(tmp_path: Path, fast_config: PipelineConfig) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        run_filter([str(DEMO_CORPUS)], out, fast_config, show_progress=False)
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files), [
        (p.name, oct(p.stat().st_mode)) for p in files
    ]


def test_a_huge_record_is_listed_as_too_large(tmp_path: Path) -> None:
    cfg = load_config(overrides={"perplexity": {"enabled": False}, "run": {"max_record_bytes": 1 << 20}})
    zeros = tmp_path / "zeros.jsonl.gz"
    with gzip.open(zeros, "wb") as fh:  # one 8 MB line, from a 8 KB file
        fh.write(b'{"text": "' + b"0" * (8 << 20) + b'"}\n')
        fh.write(json.dumps({"text": GOOD, "id": "after"}).encode() + b"\n")
    out = tmp_path / "out"
    report = run_filter([str(zeros)], out, cfg, show_progress=False)
    assert conserved(report) and set(read_outcomes(out)) == {"after"}
    assert unreadable_lines(out) == [
        {"file": str(zeros), "where": "line 1", "why": "too large: over 1,048,576 bytes"}
    ]


def test_resume_finishes_a_commit_killed_between_work_and_success(
    tmp_path: Path, fast_config: PipelineConfig
) -> None:
    out = tmp_path / "out"
    first = run_filter([str(DEMO_CORPUS)], out, fast_config, show_progress=False)
    shards = {p: p.read_bytes() for p in out.glob("*/part-*.parquet")}
    (out / SUCCESS).unlink()  # killed after _work went, before _SUCCESS (as older versions committed)
    assert not (out / WORK).exists()
    again = run_filter([str(DEMO_CORPUS)], out, fast_config, resume=True, show_progress=False)
    assert (out / SUCCESS).exists() and again["counts"] == first["counts"]
    assert {p: p.read_bytes() for p in out.glob("*/part-*.parquet")} == shards
    # killed after _SUCCESS, before _work went (the order now): --resume tidies up
    (out / WORK).mkdir()
    # the run fingerprints the config it scores with (the probe off without the LM), as here
    effective = stages.probe_config(fast_config, None)
    fingerprint = stages._fingerprint(expand_inputs([str(DEMO_CORPUS)]), effective, False)
    (out / WORK / "fingerprint").write_text(fingerprint)
    third = run_filter([str(DEMO_CORPUS)], out, fast_config, resume=True, show_progress=False)
    assert third["counts"] == first["counts"] and not (out / WORK).exists()
    with pytest.raises(OutputError, match="finished run"):
        run_filter([str(DEMO_CORPUS)], out, fast_config, resume=True, show_progress=False)


def test_parquet_binary_text_bom_and_empty_texts(tmp_path: Path, fast_config: PipelineConfig) -> None:
    corpus = tmp_path / "in"
    corpus.mkdir()
    pq.write_table(
        pa.table(
            {"text": pa.array([GOOD.encode(), b"\xff\xfe bad", None], pa.binary()), "id": ["b1", "b2", "b3"]}
        ),
        corpus / "bin.parquet",
    )
    pq.write_table(pa.table({"text": [1, 2], "id": ["i1", "i2"]}), corpus / "int.parquet")
    (corpus / "bom.jsonl").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"text": "A byte order mark opens it.", "id": "bom"}).encode() + b"\n"
        + json.dumps({"text": "   \n\t ", "id": "blank"}).encode() + b"\n"
        + json.dumps({"text": "", "id": "empty"}).encode() + b"\n"
    )  # fmt: skip
    out = tmp_path / "out"
    report = run_filter([str(corpus)], out, fast_config, show_progress=False)
    outcomes = read_outcomes(out)
    assert outcomes["b1"][0] == "kept" and outcomes["bom"][0] == "kept"
    assert outcomes["blank"][:2] == ("filtered", ["policy:empty"])
    assert outcomes["empty"][:2] == ("filtered", ["policy:empty"])
    why = {(Path(u["file"]).name, u["where"]): u["why"] for u in unreadable_lines(out)}
    assert why[("bin.parquet", "row 2")].startswith("text is binary and not UTF-8")
    assert why[("bin.parquet", "row 3")] == "no text (null)"
    assert why[("int.parquet", "row 1")] == "text is int64, not a string"
    assert conserved(report)


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("run:\n  workers: 1000\n", "run.workers"),
        ("run:\n  workers: true\n", "run.workers: expected a number"),
        ("policy:\n  min_chars: false\n", "policy.min_chars: expected a number"),
        ("run:\n  workers: 2\n  workers: 3\n", "duplicate key 'workers'"),
        ("triggers:\n  lists_file: /nonexistent/lists.yaml\n", "triggers.lists_file"),
    ],
)
def test_config_mistakes_are_refused_at_start(tmp_path: Path, text: str, wanted: str) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=wanted.replace(".", r"\.")):
        load_config(conf)


def test_missing_lists_file_stops_before_out_exists(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("triggers:\n  lists_file: absent.yaml\n")
    result = poisonguard("filter", str(DEMO_CORPUS), "--out", str(tmp_path / "out"), "--config", str(conf))
    assert result.returncode == 2 and "triggers.lists_file" in result.stderr
    assert not (tmp_path / "out").exists()


class _StandInLM:
    """Stand-in for the language model (the real one is tested elsewhere): fixed, ordinary signals.
    With `fail_after` it raises on that call, like a run killed during the LM stage."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def score(self, batch: pa.Table) -> dict[str, pa.Array]:
        from poisonguard.filters import perplexity

        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        n = batch.num_rows
        values = {
            "mean_nll": 3.0, "max_window_nll": 4.0, "min_window_nll": 2.0, "window_start": 0, "window_end": 1,
            "uniform_share": 0.0, "changepoint_char": 0, "changepoint_jump": 0.0, "after_uniform_share": 0.0,
            "scored_tokens": 100, "context_gain": 1.0,
        }  # fmt: skip
        return {
            perplexity.PREFIX + name: pa.array([values.get(name)] * n, typ)
            for name, typ in perplexity._COLUMNS.items()
        }


def test_lm_scored_docs_counts_both_parts_of_a_resumed_run(tmp_path: Path) -> None:
    cfg = load_config(overrides={"run": {"batch_rows": 5}})
    out = tmp_path / "out"
    whole = run_filter(
        [str(DEMO_CORPUS)], tmp_path / "whole", cfg, lm_scorer=_StandInLM(), show_progress=False
    )
    with pytest.raises(KeyboardInterrupt):
        run_filter([str(DEMO_CORPUS)], out, cfg, lm_scorer=_StandInLM(fail_after=2), show_progress=False)
    resumed = run_filter(
        [str(DEMO_CORPUS)], out, cfg, resume=True, lm_scorer=_StandInLM(), show_progress=False
    )
    assert whole["lm_scored_docs"] > 0
    assert resumed["lm_scored_docs"] == whole["lm_scored_docs"]
