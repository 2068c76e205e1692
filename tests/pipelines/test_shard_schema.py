"""One shard schema: the output folder opens as one table in the tools people use (pyarrow, duckdb,
Hugging Face datasets), with or without the language model, and files get the umask's mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.runner import run_filter
from poisonguard.pipelines.shard_schema import lm_signal_schema, shard_schema
from poisonguard.pipelines.writers import SUCCESS
from tests.conftest import DEMO_CORPUS, write_jsonl


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from poisonguard.pipelines.config import load_config

    cfg = load_config(overrides={"perplexity": {"enabled": False}, "run": {"batch_rows": 7}})
    folder = tmp_path_factory.mktemp("schema") / "out"
    old = os.umask(0o027)
    try:
        run_filter([str(DEMO_CORPUS)], folder, cfg, show_progress=False)
    finally:
        os.umask(old)
    return folder


def counts(out: Path) -> dict[str, int]:
    report = json.loads((out / "report.json").read_text())
    return {k: v for k, v in report["counts"].items() if k in ("kept", "duplicate", "quarantined") and v}


def test_clean_and_quarantine_have_one_schema_with_lm_columns_null(out: Path) -> None:
    clean, quarantine = pq.read_table(out / "clean"), pq.read_table(out / "quarantine")
    assert clean.schema.equals(quarantine.schema)
    assert clean.schema.equals(shard_schema())
    assert set(clean.column("outcome").to_pylist()) == {"kept"}
    assert all(r == [] for r in clean.column("reasons").to_pylist())
    assert clean.column("duplicate_of").null_count == clean.num_rows
    for name in lm_signal_schema().names:  # --no-lm: the columns are there, null
        assert quarantine.column(name).null_count == quarantine.num_rows


def test_pyarrow_dataset_and_duckdb_read_both_folders_as_one(out: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    table = ds.dataset(sorted(str(p) for p in out.glob("*/*.parquet")), format="parquet").to_table()
    assert table.num_rows == sum(counts(out).values())
    rows = duckdb.sql(
        f"SELECT outcome, count(*) FROM read_parquet('{out}/*/*.parquet') GROUP BY 1"
    ).fetchall()
    assert dict(rows) == counts(out)


def test_hf_datasets_loads_the_two_folders_and_the_output_folder(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    files = {"clean": str(out / "clean" / "*.parquet"), "quarantine": str(out / "quarantine" / "*.parquet")}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert {k: v.num_rows for k, v in loaded.items()} == {
        "clean": counts(out)["kept"],
        "quarantine": sum(counts(out).values()) - counts(out)["kept"],
    }
    # The output folder itself: its dataset card maps the folders to splits; _SUCCESS is not read.
    assert (out / SUCCESS).exists()
    whole = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache2"))
    assert {k: v.num_rows for k, v in whole.items()} == {k: v.num_rows for k, v in loaded.items()}


def test_files_get_the_umask_mode(out: Path) -> None:
    for path in [*out.glob("*/*.parquet"), out / "report.json", out / "manifest.json", out / "README.md"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


@pytest.mark.slow
def test_schema_is_the_same_with_the_language_model(tmp_path: Path, fast_config: PipelineConfig) -> None:
    """The real default model on three documents: same columns as a --no-lm run, LM columns filled."""
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": f"d{i}", "text": f"The river {i} flows past the old mill and into the quiet sea."}
            for i in range(3)
        ],
    )
    lm_cfg = fast_config.model_copy(
        update={"perplexity": fast_config.perplexity.model_copy(update={"enabled": True})}
    )
    run_filter([str(src)], tmp_path / "lm", lm_cfg, use_lm=True, show_progress=False)
    run_filter([str(src)], tmp_path / "nolm", lm_cfg, use_lm=False, show_progress=False)
    with_lm, without = pq.read_table(tmp_path / "lm" / "clean"), pq.read_table(tmp_path / "nolm" / "clean")
    assert with_lm.schema.equals(without.schema)
    assert with_lm.column("perplexity_scored_tokens").null_count < with_lm.num_rows
