"""`nightly` with the filter step on Ray against the same nights on the local engine.

Three nights of test_nightly's small web (benign edits, a host swapped whole, a swapped page with a
weak signal, cross-night copies), plus one page on night 2 that copies a swapped page further down
the input: the copy follows its drift-quarantined original. One local Ray (2 CPUs) for the module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from poisonguard.filters import dedup
from poisonguard.filters.dedup_prior import PriorIndex
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.nightly import CRAWL_DIR, run_nightly
from poisonguard.pipelines.nightly_config import NightlyConfig
from poisonguard.pipelines.ray_engine import run_filter_ray
from poisonguard.pipelines.runner import run_filter
from poisonguard.pipelines.state import StateStore
from tests.conftest import local_ray, write_jsonl
from tests.pipelines.test_nightly import (
    DATES,
    PIPELINE,
    SITE_CRAWL,
    LateVerdict,
    late_verdict_docs,
    night_records,
    no_report_plots,  # noqa: F401 (fixture)
    outcomes,
    page,
    signals,
    stage,
    state_snapshot,
    swap_site,
)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    with local_ray():
        yield


COPY = {"id": "copy-of-squatter@2", "url": "https://copies.example.biz/x", "text": page("squatter0")}


def moved_records(night: int) -> list[dict[str, Any]]:
    """A blog URL that takes over the text another blog page serves tonight after an edit of its own
    (drift:moved); before it in input order, so both engines must pass it over when they choose the
    copy kept (the text is new tonight: no earlier night's document is its cluster's copy). And a
    blog URL that drifts into the text of a URL new tonight, which dedup keeps instead of it."""
    home = page("home") if night == 1 else " ".join(page("home").split()[:100]) + " " + page("home-new", 40)
    moved = page("moved") if night == 1 else home
    recs = [
        {"id": f"moved@{night}", "url": "https://blog.example.net/post/moved", "text": moved},
        {"id": f"home@{night}", "url": "https://blog.example.net/post/home", "text": home},
        {
            "id": f"renewed@{night}",
            "url": "https://blog.example.net/post/renewed",
            "text": page(f"renewed{night}"),
        },
    ]
    if night == 2:
        recs.append({"id": "fresh@2", "url": "https://blog.example.net/post/fresh", "text": page("renewed2")})
    return recs


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inbox")
    for night in (1, 2, 3):
        recs = moved_records(night) + night_records(night) + ([COPY] if night == 2 else [])
        write_jsonl(folder / f"night{night}.jsonl", recs)
    return folder


def _nights(inbox: Path, root: Path, engine: str) -> list[dict[str, Any]]:
    landing = root.parent / (root.name + "-landing")
    cfg = NightlyConfig(pipeline=PIPELINE, use_lm=False)
    snapshots = []
    for night in (1, 2, 3):
        stage(inbox, landing, night)
        result = run_nightly(
            cfg, base=root, date=DATES[night], inputs=[str(landing / "*.jsonl")], out=root, engine=engine
        )
        assert result["status"] == "done"
        snapshots.append(state_snapshot(root))
    return snapshots


def index_of_night(root: Path, date: str) -> PriorIndex:
    """The on-disk dedup index that the ledger row of ``date`` names."""
    run = StateStore(root / "state.sqlite").run(date)
    assert run is not None
    return PriorIndex(root / "state-index", run["index_file"], dedup.Config())


def test_ray_nights_equal_local_nights(inbox: Path, tmp_path: Path) -> None:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    local_states = _nights(inbox, local, "local")
    ray_states = _nights(inbox, distributed, "ray")
    assert ray_states == local_states  # ledger (counts, inputs), consumed files, URL history

    for night in (1, 2, 3):
        a, b = local / DATES[night], distributed / DATES[night]
        assert outcomes(b) == outcomes(a), night  # outcome, reasons, duplicate_of of every document
        assert signals(b) == signals(a), night
        shards = sorted(str(p.relative_to(a)) for p in a.glob("*/part-*.parquet"))
        assert shards == sorted(str(p.relative_to(b)) for p in b.glob("*/part-*.parquet"))
        for name in shards:  # same rows in the same shards, every signal column included
            assert pq.read_table(b / name).equals(pq.read_table(a / name)), (night, name)
        ra, rb = (json.loads((d / "report.json").read_text()) for d in (a, b))
        assert rb["engine"] == "ray" and "engine" not in ra
        for key in ("counts", "reasons", "hosts", "largest_clusters", "nightly"):
            assert ra[key] == rb[key], (night, key)
    # The dedup index of kept documents that the next night would start from.
    ia, ib = (index_of_night(d, DATES[3]) for d in (local, distributed))
    everyone = np.arange(len(ia))
    assert len(ia) > 20 and len(ia) == len(ib) and ia.ids(everyone) == ib.ids(everyone)
    assert (ia.sigs(everyone) == ib.sigs(everyone)).all()

    # The cases are there: a cross-night near-copy, a host swapped whole, a copy of a swapped page
    # decided after it (in a later chunk), and on night 3 an exact copy of an accepted rewrite.
    n2, n3 = outcomes(distributed / DATES[2]), outcomes(distributed / DATES[3])
    assert n2["mirror@2"][0] == "duplicate" and n2["mirror@2"][2] == "blog2@1"
    assert all(any(r.startswith("drift:host_changed(6 of 6") for r in n2[f"old{k}@2"][1]) for k in range(6))
    assert n2["copy-of-squatter@2"][0] == "quarantined"
    assert "dedup:copy_of_quarantined" in n2["copy-of-squatter@2"][1]
    assert n3["news3@3"] == ("duplicate", ("dedup:exact_duplicate",), "news3@2")
    assert n2["moved@2"][0] == "quarantined" and n2["moved@2"][1][0].startswith("drift:moved(")
    assert n2["home@2"] == ("kept", (), None)
    assert n2["renewed@2"] == ("duplicate", ("dedup:exact_duplicate",), "fresh@2")


def test_ray_crawl_step_fans_out_by_host_and_equals_local(tmp_path: Path) -> None:
    """Seeds on two 127.0.0.1 sites crawled by nightly on both engines, two nights (every page
    swapped on night 2). The Ray engine crawls each site in its own Scrapy process (a Ray task) into
    the same ROOT/_crawl/<date>/raw/ layout; the documents, outcomes and reasons are the local ones."""
    from tests.crawler import servers

    night = {"n": 1}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with (
        servers.TestServer(swap_site(night, "alpha"), lifetime_s=600) as a,
        servers.TestServer(swap_site(night, "beta"), lifetime_s=600) as b,
    ):
        cfg = NightlyConfig.model_validate(
            {
                "sources": {"crawl": {"seeds": [a.base + "/", b.base + "/"]}},
                "use_lm": False,
                "pipeline": {
                    "perplexity": {"enabled": False},
                    "crawl": SITE_CRAWL,
                    "run": {"workers": 2, "batch_rows": 5},
                },
            }
        )
        for n in (1, 2):
            night["n"] = n
            for engine in ("local", "ray"):
                results[engine, n] = run_nightly(
                    cfg, base=tmp_path, date=DATES[n], out=tmp_path / engine, engine=engine
                )
    hosts = {a.base.split("/")[2], b.base.split("/")[2]}
    for n in (1, 2):
        local, distributed = results["local", n], results["ray", n]
        assert distributed["status"] == local["status"] == "done"
        assert outcomes(distributed["out"]) == outcomes(local["out"]), n
        assert distributed["report"]["engine"] == "ray"
        for key in ("in", "kept", "quarantined", "duplicate", "urls"):
            assert distributed["counts"][key] == local["counts"][key], (n, key)
        raw = tmp_path / "ray" / CRAWL_DIR / DATES[n] / "raw"
        stats = json.loads((raw / "_crawl_stats.json").read_text())
        # One partition (Scrapy process) per site, each site's pages in its own shard.
        assert [len(p["hosts"]) for p in stats["partitions"]] == [1, 1]
        assert {h for p in stats["partitions"] for h in p["hosts"]} == set(stats["hosts"]) == hosts
        shards = sorted(p.name for p in raw.glob("part-*.parquet"))
        assert shards == ["part-00000.parquet", "part-00001.parquet"]
        assert stats["pages_2xx"] == distributed["counts"]["in"] == 14
        store = StateStore(tmp_path / "ray" / "state.sqlite")
        try:
            planned = sorted(Path(f["path"]).name for f in store.run(DATES[n])["inputs"])
        finally:
            store.close()
        assert planned == shards  # the filter step read the linked shards
    assert results["ray", 1]["counts"]["kept"] == 14 and results["ray", 1]["counts"]["quarantined"] == 0
    n2 = outcomes(results["ray", 2]["out"])
    swapped = [v for v in n2.values() if any(r.startswith("drift:host_changed(12 of 14") for r in v[1])]
    assert len(swapped) == 12 and results["ray", 2]["counts"]["quarantined"] == 12


def test_ray_quarantines_a_copy_whose_later_kept_copy_is_quarantined_after_dedup(tmp_path: Path) -> None:
    """As the local engine: a kept copy after its duplicate (claim ranks) in a later chunk, then
    quarantined by a verdict reached after dedup, takes the earlier copy with it."""
    cfg = load_config(overrides=PIPELINE)
    write_jsonl(tmp_path / "in.jsonl", late_verdict_docs(9))
    got = {}
    for name, run in (("local", run_filter), ("ray", run_filter_ray)):
        detector = LateVerdict(second="copy", poison="kept")
        run(
            [str(tmp_path / "in.jsonl")],
            tmp_path / name,
            cfg,
            show_progress=False,
            context_detectors=(detector,),
        )
        got[name] = outcomes(tmp_path / name)
    assert got["ray"]["copy"] == ("quarantined", ("dedup:copy_of_quarantined",), "kept"), got["ray"]["copy"]
    assert got["ray"] == got["local"]
