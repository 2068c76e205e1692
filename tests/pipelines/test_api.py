"""The Python API: docs/API.md's examples run as written; score_table, the datatrove step and the Ray
recipe give the outcomes of a full run when they see the whole corpus in one batch."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.api import TableScorer, filter_corpus, score_table
from poisonguard.pipelines.readers import NoTextError
from poisonguard.pipelines.runner import run_filter
from tests.conftest import DEMO_CORPUS, REPO, local_ray

FAST = {"perplexity": {"enabled": False}}


def doc_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "docs" / "API.md").read_text("utf-8"), flags=re.DOTALL)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, list[str]]]:
    """id -> (outcome, reasons) of `poisonguard filter` on the demo corpus."""
    from poisonguard.pipelines.config import load_config

    out = tmp_path_factory.mktemp("api") / "out"
    run_filter([str(DEMO_CORPUS)], out, load_config(overrides=FAST), show_progress=False)
    found = {}
    for folder in ("clean", "quarantine"):
        for row in pq.read_table(out / folder, columns=["id", "outcome", "reasons"]).to_pylist():
            found[row["id"]] = (row["outcome"], row["reasons"])
    return found


def demo_rows() -> list[dict]:
    return [json.loads(line) for line in DEMO_CORPUS.read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture
def in_examples_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out like the repository root (examples/corpus), as the examples expect."""
    shutil.copytree(REPO / "examples" / "corpus", tmp_path / "examples" / "corpus")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_api_md_has_the_four_examples() -> None:
    blocks = doc_examples()
    for needle in ("filter_corpus(", "score_table(", "PoisonGuardStep(", "map_batches("):
        assert any(needle in b for b in blocks), needle


@pytest.mark.parametrize("index", range(3))
def test_doc_example_runs(index: int, in_examples_dir: Path) -> None:
    block = [b for b in doc_examples() if "map_batches(" not in b][index]
    exec(compile(block, f"docs/API.md example {index + 1}", "exec"), {})
    if "filter_corpus(" in block:
        assert (in_examples_dir / "api-out" / "_SUCCESS").exists()
    if "PoisonGuardStep(" in block:
        written = [json.loads(line) for line in (in_examples_dir / "datatrove-out" / "00000.jsonl").open()]
        assert len(written) == len(demo_rows())
        assert all("poisonguard_outcome" in d["metadata"] for d in written)


def test_score_table_equals_a_full_run_on_the_whole_corpus(full_run: dict) -> None:
    import pyarrow as pa

    scored = score_table(pa.Table.from_pylist(demo_rows()), FAST)
    got = {
        r["id"]: (r["outcome"], r["reasons"]) for r in scored.select(["id", "outcome", "reasons"]).to_pylist()
    }
    assert got == full_run
    assert "label" in scored.column_names  # the input's other columns follow


def test_score_table_without_dedup_and_without_text(full_run: dict) -> None:
    import pyarrow as pa

    scored = score_table(pa.Table.from_pylist(demo_rows()), FAST, dedup=False)
    outcomes = dict(zip(scored.column("id").to_pylist(), scored.column("outcome").to_pylist(), strict=True))
    assert full_run["farm-03"][0] == "quarantined" and outcomes["farm-03"] == "kept"  # campaigns need dedup
    assert outcomes["poison-tags"] == "quarantined"  # one-document detectors do not
    with pytest.raises(ValueError, match="no text column 'text'"):
        score_table(pa.table({"body": ["x"]}), FAST)


def test_filter_corpus_uses_the_field_mapping(tmp_path: Path) -> None:
    rows = [{"content": r["text"], "key": r["id"], "meta": {"url": r.get("url")}} for r in demo_rows()]
    with gzip.open(tmp_path / "in.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    with pytest.raises(NoTextError):
        filter_corpus(tmp_path / "in.jsonl.gz", tmp_path / "o1", FAST)
    cfg = {**FAST, "input": {"text_key": "content", "id_key": "key", "url_key": "meta.url"}}
    report = filter_corpus([tmp_path / "in.jsonl.gz"], tmp_path / "o2", cfg)
    assert report["reasons"].get("dedup:campaign", 0) >= 12


def _datatrove_pipeline(src: Path, out: Path, tmp_path: Path, **step: object) -> list[dict]:
    pytest.importorskip("datatrove")
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from poisonguard.pipelines.datatrove_step import PoisonGuardStep

    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(str(src)),
            PoisonGuardStep(FAST, **step),
            JsonlWriter(str(out), compression=None),
        ],
        tasks=1,
        logging_dir=str(tmp_path / f"logs-{out.name}"),
    ).run()
    return [json.loads(line) for path in sorted(out.glob("*.jsonl")) for line in path.open()]


def test_datatrove_step_drops_what_a_full_run_drops(tmp_path: Path, full_run: dict) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DEMO_CORPUS, src / "demo.jsonl")
    kept = _datatrove_pipeline(src, tmp_path / "dropped", tmp_path, mode="drop")
    assert {d["id"] for d in kept} == {i for i, (o, _) in full_run.items() if o == "kept"}
    annotated = _datatrove_pipeline(
        src, tmp_path / "annotated", tmp_path, mode="annotate", signals=("dedup_cluster_domains",)
    )
    got = {
        d["id"]: (d["metadata"]["poisonguard_outcome"], d["metadata"]["poisonguard_reasons"])
        for d in annotated
    }
    assert got == full_run
    farm = next(d for d in annotated if d["id"] == "farm-00")
    assert farm["metadata"]["dedup_cluster_domains"] >= 12
    stats = json.loads((tmp_path / "logs-annotated" / "stats.json").read_text())
    names = {s["name"] for s in stats} if isinstance(stats, list) else set()
    assert any("poisonguard" in str(n) for n in names), names


def test_datatrove_step_rejects_an_unknown_mode() -> None:
    pytest.importorskip("datatrove")
    from poisonguard.pipelines.datatrove_step import PoisonGuardStep

    with pytest.raises(ValueError, match="mode"):
        PoisonGuardStep(FAST, mode="delete")


@pytest.mark.slow
def test_ray_recipe_runs_and_gives_the_full_run_outcomes(
    full_run: dict, in_examples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/API.md's Ray example as written, then the same recipe compared with a full run (one
    local Ray for both: starting Ray is the slow part)."""
    ray = pytest.importorskip("ray")
    (block,) = [b for b in doc_examples() if "map_batches(" in b]
    with local_ray():
        exec(compile(block, "docs/API.md Ray example", "exec"), {})
        dataset = ray.data.read_json(str(DEMO_CORPUS))
        scored = dataset.map_batches(
            TableScorer,
            fn_constructor_kwargs={"config": FAST},
            batch_format="pyarrow",
            batch_size=10_000,
            concurrency=1,
        )
        rows = scored.select_columns(["id", "outcome", "reasons"]).take_all()
    assert re.search(r"^\d+ of 35 kept$", capsys.readouterr().out, flags=re.MULTILINE)
    assert {r["id"]: (r["outcome"], list(r["reasons"])) for r in rows} == full_run
