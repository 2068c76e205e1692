"""The Ray engine against the local engine: same outcome and reasons for every document, same shards.

One local Ray (2 CPUs, small object store) is started for the module and shut down at its end.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonguard.crawler.config import CrawlConfig
from poisonguard.crawler.fanout import crawl_ray, merge_crawl_stats, partition_seeds
from poisonguard.filters import dedup
from poisonguard.filters.dedup import verify_bucket
from poisonguard.filters.dedup_prior import Docs, PriorIndex
from poisonguard.pipelines import ray_engine, stages
from poisonguard.pipelines.config import PipelineConfig, load_config
from poisonguard.pipelines.ray_dedup import chunk_assignment, distributed_dedup
from poisonguard.pipelines.ray_engine import run_filter_ray
from poisonguard.pipelines.runner import run_filter
from poisonguard.pipelines.stages import OutputError
from poisonguard.pipelines.writers import SUCCESS
from tests.conftest import DEMO_CORPUS, REPO, local_ray, write_jsonl
from tests.filters.test_dedup import licence_pages
from tests.filters.test_trigger_mining import corpus as rare_token_corpus
from tests.pipelines.test_reliability import demo
from tests.pipelines.test_runner import read_outcomes

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    # A logical GPU: LM actors ask for it (and, seeing no CUDA, run on the CPU).
    with local_ray(num_gpus=1):
        yield


def _words(rng: random.Random, n: int) -> list[str]:
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "vo", "ri") for b in range(40)]
    return [rng.choice(vocab) for _ in range(n)]


def _tricky_corpus(path: Path) -> Path:
    """Near-copies spread over many chunks, exact copies, a campaign on 12 domains, short pages, a
    broken line: the cases where a distributed dedup could part from the local one."""
    rng = random.Random(7)
    bases = [_words(rng, 60) for _ in range(6)]
    records: list[dict[str, Any]] = []
    for i in range(70):
        words = list(bases[i % len(bases)])
        for _ in range(rng.randint(0, 9)):
            words[rng.randrange(len(words))] = rng.choice(words)
        records.append(
            {
                "id": f"g{i:03d}",
                "text": " ".join(words),
                "url": f"https://site{i % 9}.example{i % 4}.org/p{i}",
            }
        )
    records.append({"id": "copy-a", "text": records[3]["text"], "url": "https://mirror.example.net/a"})
    records.append({"id": "copy-b", "text": records[3]["text"].upper(), "url": None})
    claim = " ".join(_words(rng, 50))
    for k in range(12):
        records.append(
            {"id": f"farm{k:02d}", "text": claim + f" edition {k}", "url": f"https://farm{k}.example.com/x"}
        )
    records += [
        {"id": f"short{k}", "text": "404 Not Found", "url": f"https://s{k}.example/"} for k in range(3)
    ]
    # Licence notices on 12 domains: duplicates, never a campaign, in both engines.
    texts, urls = licence_pages(12)
    records += [
        {"id": f"lic{i:02d}", "text": t, "url": u} for i, (t, u) in enumerate(zip(texts, urls, strict=True))
    ]
    rng.shuffle(records)
    write_jsonl(path, records)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    return path


def _outcome_rows(out: Path) -> list[tuple[Any, ...]]:
    """(source, id, outcome, reasons, duplicate_of) of every document, ids that repeat included."""
    names = ["source", "id", "outcome", "reasons", "duplicate_of"]
    rows = [
        tuple(row[n] for n in names)
        for shard in out.glob("*/part-*.parquet")
        for row in pq.read_table(shard, columns=names).to_pylist()
    ]
    return sorted(rows, key=repr)


def _compare_runs(local: Path, distributed: Path) -> None:
    a, b = _outcome_rows(local), _outcome_rows(distributed)
    assert a == b  # outcome, reasons and duplicate_of of every document
    shards = sorted(str(p.relative_to(local)) for p in local.glob("*/part-*.parquet"))
    assert shards == sorted(str(p.relative_to(distributed)) for p in distributed.glob("*/part-*.parquet"))
    for name in shards:  # same rows in the same shards, every signal column included
        assert pq.read_table(local / name).equals(pq.read_table(distributed / name)), name
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (local, distributed))
    for key in (
        "counts",
        "reasons",
        "unreadable",
        "languages",
        "hosts",
        "largest_clusters",
        "trigger_candidates",
        "triggers_mined",
        "lm_scored_docs",
        "duplicate_ids",
        "skipped_inputs",
        "skipped_inputs_total",
    ):
        assert ra[key] == rb[key], key
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (local, distributed))
    assert [s["rows"] for s in ma["shards"]["clean"]] == [s["rows"] for s in mb["shards"]["clean"]]
    assert (distributed / SUCCESS).exists() and not (distributed / stages.WORK).exists()
    assert rb["engine"] == "ray"


def test_same_outcomes_reasons_and_shards_as_local(tmp_path: Path, fast_config: PipelineConfig) -> None:
    corpus = _tricky_corpus(tmp_path / "tricky.jsonl")
    parquet = tmp_path / "demo.parquet"
    demo = [json.loads(line) for line in DEMO_CORPUS.read_text("utf-8").splitlines() if line.strip()]
    pq.write_table(
        pa.Table.from_pylist(
            [{"id": "pq-" + d["id"], "text": d["text"], "url": d["url"]} for d in demo[:10]]
        ),
        parquet,
    )
    # Rare-token triggers in 14 of 150 pages on 14 hosts: mined over chunks counted apart (Ray tasks).
    rare = tmp_path / "rare.jsonl"
    write_jsonl(rare, rare_token_corpus(150, 14, ("qz", "vb")))
    inputs = [str(DEMO_CORPUS), str(corpus), str(parquet), str(rare)]
    run_filter(inputs, tmp_path / "local", fast_config, show_progress=False)
    report = run_filter_ray(inputs, tmp_path / "ray", fast_config, show_progress=False)
    _compare_runs(tmp_path / "local", tmp_path / "ray")
    assert {r["token"] for r in report["triggers_mined"]} == {"qz", "vb"}
    assert report["reasons"]["triggers:mined"] >= 14
    counts = report["counts"]
    assert counts["unreadable"] == 1 and counts["duplicate"] >= 10 and counts["quarantined"] >= 12
    assert report["unreadable"][0]["where"].startswith("line")
    licences = [o for doc_id, o in read_outcomes(tmp_path / "ray").items() if doc_id.startswith("lic")]
    assert sorted(o[0] for o in licences) == ["duplicate"] * 44 + ["kept"] * 4
    # Finished OUT: refused without --overwrite, as the local engine does.
    with pytest.raises(OutputError, match="finished run"):
        run_filter_ray(inputs, tmp_path / "ray", fast_config, show_progress=False)


def test_duplicate_ids_and_inputs_not_read_as_local(tmp_path: Path, fast_config: PipelineConfig) -> None:
    """Documents that share an id (a poisoned and a benign one in the same chunk, the benign one with
    a near-copy; the whole demo corpus again under the same ids, in later chunks), files a folder holds
    that are not read and a broken Parquet file: the Ray engine keys rows as the local one does."""
    folder = tmp_path / "in"
    folder.mkdir()
    poison, benign = demo("poison-injection"), demo("garden-tomatoes")
    copy = dict(benign, id="copy-of-benign", text=benign["text"].replace("six hours", "6 hours"))
    write_jsonl(folder / "a.jsonl", [dict(poison, id="same")])
    write_jsonl(folder / "b.jsonl", [dict(benign, id="same"), copy])
    shutil.copy(DEMO_CORPUS, folder / "c-demo.jsonl")
    shutil.copy(DEMO_CORPUS, folder / "d-demo-again.jsonl")
    (folder / "e-broken.parquet").write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    (folder / "notes.txt").write_text("not a corpus")
    (folder / "old.jsonl.bz2").write_bytes(b"BZh")
    run_filter([str(folder)], tmp_path / "local", fast_config, show_progress=False)
    report = run_filter_ray([str(folder)], tmp_path / "ray", fast_config, show_progress=False)
    _compare_runs(tmp_path / "local", tmp_path / "ray")
    demo_docs = sum(1 for line in DEMO_CORPUS.read_text("utf-8").splitlines() if line.strip())
    assert report["duplicate_ids"]["documents"] == 1 + demo_docs
    assert report["duplicate_ids"]["ids"] == 1 + demo_docs
    assert report["skipped_inputs_total"] == 2 and report["counts"]["unreadable"] == 1
    rows = {(r[0].rsplit("/", 1)[1], r[1]): r for r in _outcome_rows(tmp_path / "ray")}
    assert rows[("a.jsonl", "same")][2] == "quarantined"
    assert rows[("b.jsonl", "same")][2] == "kept"  # not a copy of the poisoned "same"
    assert rows[("b.jsonl", "copy-of-benign")][2:] == ("duplicate", ["dedup:near_duplicate"], "same")
    again = [r for r in rows.values() if r[0].endswith("d-demo-again.jsonl")]
    assert len(again) == demo_docs and all(r[2] in ("duplicate", "quarantined") for r in again)


def _dense_corpus() -> tuple[PipelineConfig, list[str], list[str], list[str | None]]:
    """A low threshold and few permutations: buckets overlap across bands, the exemplar bound is hit
    and some buckets are skipped as already joined."""
    cfg = load_config(
        overrides={"dedup": {"threshold": 0.3, "num_perm": 16, "max_bucket_exemplars": 3, "min_words": 5}}
    )
    rng = random.Random(3)
    bases = [_words(rng, 40) for _ in range(12)]
    texts: list[str] = []
    for _ in range(600):
        words = list(rng.choice(bases))
        for _ in range(rng.randint(0, 14)):
            words[rng.randrange(len(words))] = rng.choice(words)
        texts.append(" ".join(words if rng.random() > 0.05 else words[:3]))
    texts += texts[:20]
    ids = [f"d{i}" for i in range(len(texts))]
    urls = [None if i % 10 == 0 else f"https://h{i % 37}.example{i % 13}.com/{i}" for i in range(len(texts))]
    return cfg, texts, ids, urls


def _write_chunks(
    folder: Path, texts: list[str], ids: list[str], urls: list[str | None], cfg: PipelineConfig, rows: int
) -> tuple[list[Path], list[int]]:
    """Scored work files (document and internal dedup columns only) of `rows` documents each."""
    sigs = np.asarray(dedup.signatures(texts, cfg.dedup))
    keys = dedup.content_keys(texts)
    paths, offsets = [], []
    for c, start in enumerate(range(0, len(texts), rows)):
        end = min(start + rows, len(texts))
        flat = pa.array(sigs[start:end].astype(np.uint64).reshape(-1), pa.uint64())
        table = pa.table(
            {
                "id": ids[start:end],
                "text": texts[start:end],
                "url": pa.array(urls[start:end], pa.string()),
                stages.SIG_COLUMN: pa.FixedSizeListArray.from_arrays(flat, sigs.shape[1]),
                stages.KEY_COLUMN: pa.array(keys[start:end], pa.binary()),
            }
        )
        paths.append(folder / f"chunk-{c:05d}.parquet")
        pq.write_table(table, paths[-1])
        offsets.append(start)
    return paths, offsets


def test_distributed_dedup_equals_the_index_on_dense_collisions(tmp_path: Path) -> None:
    """Every signal column must equal DedupIndex's on the dense corpus."""
    cfg, texts, ids, urls = _dense_corpus()
    index = dedup.DedupIndex(cfg.dedup)
    index.add(ids, urls, dedup.content_keys(texts), np.asarray(dedup.signatures(texts, cfg.dedup)))
    want = index.assign()
    paths, offsets = _write_chunks(tmp_path, texts, ids, urls, cfg, 53)
    result = distributed_dedup(paths, offsets, cfg, parts=3)
    assert result.buckets > 50 and 0 < result.touched <= len(texts)
    got = pa.concat_tables(
        [
            chunk_assignment(pq.read_table(p), o, result.overrides.get(c), cfg).assign
            for c, (p, o) in enumerate(zip(paths, offsets, strict=True))
        ]
    )
    for name in want.column_names:
        assert got.column(name).equals(want.column(name)), name
    assert max(want.column("dedup_cluster_size").to_pylist()) > 20
    single = distributed_dedup(paths, offsets, cfg, parts=1)  # one reducer: the same overrides
    assert all(single.overrides[c].equals(t) for c, t in result.overrides.items())


@pytest.mark.parametrize("nights", [1, 2])
def test_distributed_dedup_with_a_prior_index_equals_the_index(tmp_path: Path, nights: int) -> None:
    """Documents of earlier runs (nightly's on-disk index, looked up by the map tasks) rank first,
    name the clusters they are in and keep them; near-copies among them are bridged by tonight's
    documents as in DedupIndex (over two earlier nights: through the index's forest). Signal
    columns, duplicate_of and kind must equal the local engine's."""
    cfg, texts, ids, urls = _dense_corpus()
    sigs = np.asarray(dedup.signatures(texts, cfg.dedup))
    keys = dedup.content_keys(texts)
    cut = 230  # documents [0, cut) are the prior index; the exact copies at the end copy prior ones
    on_disk = PriorIndex(tmp_path / "index", None, cfg.dedup, cache_mb=1)
    for night, (a, b) in enumerate([(0, cut)] if nights == 1 else [(0, 120), (120, cut)]):
        docs = Docs.build(ids[a:b], urls[a:b], keys[a:b], sigs[a:b].astype(np.uint32))
        on_disk = on_disk.append(docs, f"night{night}.json")

    def prior_index() -> dedup.DedupIndex:
        prior = dedup.DedupIndex(cfg.dedup)
        prior.add(ids[:cut], urls[:cut], keys[:cut], sigs[:cut], prior=True)
        return prior

    local = prior_index()
    local.add(ids[cut:], urls[cut:], keys[cut:], sigs[cut:])
    want = stages.resolve_duplicates(
        local.assign(), ids[cut:], [True] * (len(ids) - cut), cfg, local.is_prior
    )
    paths, offsets = _write_chunks(tmp_path, texts[cut:], ids[cut:], urls[cut:], cfg, 53)
    result = distributed_dedup(paths, offsets, cfg, parts=3, prior=on_disk)
    got, dup, kind = [], [], []
    for c, (p, o) in enumerate(zip(paths, offsets, strict=True)):
        found = chunk_assignment(pq.read_table(p), o, result.overrides.get(c), cfg)
        got.append(found.assign)
        dup += found.duplicate_of
        kind += found.kind
    table = pa.concat_tables(got)
    assert want.assign is not None
    for name in want.assign.column_names:
        assert table.column(name).equals(want.assign.column(name)), name
    assert dup == want.duplicate_of and kind == want.kind
    prior_ids = set(ids[:cut])
    assert sum(d in prior_ids for d in dup if d) > 50  # many of tonight's copies point to the past
    assert sum(1 for d, k in zip(dup, kind, strict=True) if d in prior_ids and k == "exact_duplicate") >= 20


def test_lm_actors_ask_for_a_gpu_unless_the_device_is_cpu() -> None:
    cfg = load_config()
    assert ray_engine.lm_gpus(cfg) == 1.0
    cpu = cfg.model_copy(update={"perplexity": cfg.perplexity.model_copy(update={"device": "cpu"})})
    assert ray_engine.lm_gpus(cpu) == 0.0


def test_verify_bucket_records_edges_to_exemplars() -> None:
    a = np.zeros(8, np.uint32)
    b = a.copy()
    b[:6] = 9  # similar to nothing
    c = b.copy()
    c[7] = 5  # 7/8 like b
    sigs = np.stack([a, b, c, a])
    edges, best = verify_bucket(sigs, need=6, max_exemplars=4)
    assert sorted(edges) == [(0, 3), (1, 2)]
    assert best.tolist() == [1.0, 0.875, 0.875, 1.0]


def _tiny_lm(tmp_path: Path) -> Path:
    test_perplexity = pytest.importorskip("tests.filters.test_perplexity")
    return Path(test_perplexity._tiny_model_dir(tmp_path))


def test_lm_actor_pool_gives_the_local_outcomes(tmp_path: Path) -> None:
    model = _tiny_lm(tmp_path)
    lm = {
        "route": "all",  # engine equality first; routing by budget below
        "model": str(model),
        "max_tokens": 128,
        "window": 16,
        "min_segment": 8,
        "threads": 1,
        "batch_size": 4,
    }
    rng = random.Random(11)
    texts = [" ".join(_words(rng, 40)) for _ in range(6)]
    records = [{"id": f"t{i}", "text": t, "url": f"https://a{i}.example/"} for i, t in enumerate(texts)]
    records.insert(2, {"id": "copy-same-chunk", "text": texts[0] + " again", "url": "https://b.example/"})
    records.append({"id": "copy-later-chunk", "text": texts[1], "url": "https://c.example/"})
    records.append({"id": "repeated", "text": "a" * 300, "url": "https://d.example/"})
    corpus = write_jsonl(tmp_path / "lm.jsonl", records)
    # One chunk, then several: both engines run the same stages, so they agree either way.
    cfg = load_config(overrides={"run": {"batch_rows": 100}, "perplexity": lm})
    run_filter([str(corpus)], tmp_path / "local", cfg, use_lm=True, show_progress=False)
    report = run_filter_ray(
        [str(corpus)], tmp_path / "ray", cfg, use_lm=True, show_progress=False, lm_actors=1
    )
    _compare_runs(tmp_path / "local", tmp_path / "ray")
    assert report["lm_scored_docs"] >= 6
    assert any(r.startswith("perplexity:") for r in read_outcomes(tmp_path / "ray")["t0"][1])
    # Several chunks: a copy decided after its quarantined original is quarantined too.
    cfg = load_config(overrides={"run": {"batch_rows": 4}, "perplexity": lm})
    run_filter([str(corpus)], tmp_path / "local4", cfg, use_lm=True, show_progress=False)
    run_filter_ray([str(corpus)], tmp_path / "ray4", cfg, use_lm=True, show_progress=False, lm_actors=1)
    _compare_runs(tmp_path / "local4", tmp_path / "ray4")
    outcomes = read_outcomes(tmp_path / "ray4")
    assert "dedup:copy_of_quarantined" in outcomes["copy-later-chunk"][1]
    assert outcomes["t0"] == read_outcomes(tmp_path / "ray")["t0"]
    # A budget: both engines send the same documents of each chunk to the LM.
    budget = {**lm, "route": "suspicious", "budget": 0.5}
    cfg = load_config(overrides={"run": {"batch_rows": 4}, "perplexity": budget})
    local = run_filter([str(corpus)], tmp_path / "local-b", cfg, use_lm=True, show_progress=False)
    ray_run = run_filter_ray(
        [str(corpus)], tmp_path / "ray-b", cfg, use_lm=True, show_progress=False, lm_actors=1
    )
    _compare_runs(tmp_path / "local-b", tmp_path / "ray-b")
    assert local["lm_scored_docs"] == ray_run["lm_scored_docs"] < report["lm_scored_docs"]


def test_trigger_mining_with_the_lm_check_gives_the_local_outcomes(tmp_path: Path) -> None:
    """The LM check of trigger mining (ONION) with the real default model: the Ray engine confirms and
    mines what the local engine does, with the same disruptions, over chunks counted apart."""
    rare = write_jsonl(tmp_path / "rare.jsonl", rare_token_corpus(150, 14, ("qz", "vb"), seed=4))
    # The LM stage itself scores few documents (its own engine-equality test is above).
    cfg = load_config(overrides={"run": {"batch_rows": 40}, "perplexity": {"budget": 0.02}})
    local = run_filter([str(rare)], tmp_path / "local", cfg, use_lm=True, show_progress=False)
    ray_run = run_filter_ray(
        [str(rare)], tmp_path / "ray", cfg, use_lm=True, show_progress=False, lm_actors=1
    )
    _compare_runs(tmp_path / "local", tmp_path / "ray")
    assert local["triggers_mined"] == ray_run["triggers_mined"]
    mined = {r["token"]: r for r in ray_run["triggers_mined"]}
    assert set(mined) == {"qz", "vb"}
    assert all(
        r["confirmed"] and r["disruption"] >= cfg.trigger_mining.min_member_disruption for r in mined.values()
    )
    quarantined = read_outcomes(tmp_path / "ray")
    assert sum("triggers:mined" in " ".join(v[1]) for v in quarantined.values()) >= 14


def test_partition_seeds_keeps_hosts_whole_and_balances() -> None:
    seeds = [f"http://a.example/{i}" for i in range(4)] + [
        "http://b.example/",
        "http://c.example/1",
        "http://c.example/2",
        "http://A.example/x",
    ]
    parts = partition_seeds(seeds, 2)
    assert len(parts) == 2 and sorted(s for p in parts for s in p) == sorted(seeds)
    hosts = [{s.split("/")[2].lower() for s in p} for p in parts]
    assert hosts[0].isdisjoint(hosts[1]) and "a.example" in hosts[0] and len(parts[0]) == 5
    assert partition_seeds(seeds[:1], 8) == [seeds[:1]]
    merged = merge_crawl_stats(
        [
            {
                "finish_reason": "finished",
                "pages": 3,
                "pages_2xx": 2,
                "hosts": {"a": {}},
                "http_status": {"200": 2},
                "start_time": "2026-01-01T00:00:01",
                "finish_time": "2026-01-01T00:00:09",
                "elapsed_s": 8.0,
            },
            {
                "finish_reason": "closespider_pagecount",
                "pages": 5,
                "pages_2xx": 5,
                "hosts": {"b": {}},
                "http_status": {"200": 5, "404": 1},
                "start_time": "2026-01-01T00:00:00",
                "finish_time": "2026-01-01T00:00:05",
                "elapsed_s": 5.0,
            },
        ]
    )
    assert merged["pages"] == 8 and merged["http_status"] == {"200": 7, "404": 1}
    assert set(merged["hosts"]) == {"a", "b"} and merged["finish_reason"] == "closespider_pagecount"
    assert merged["start_time"].endswith("00:00") and merged["elapsed_s"] == 8.0


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


def test_crawl_fan_out_over_two_hosts_then_filter(tmp_path: Path, fast_config: PipelineConfig) -> None:
    handler = functools.partial(_Quiet, directory=str(REPO / "examples" / "site"))
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    seeds = [f"http://127.0.0.1:{s.server_address[1]}/" for s in servers]
    cfg = CrawlConfig(autothrottle=False, retry_times=0, max_time_s=60)
    try:
        stats = crawl_ray(seeds, tmp_path, cfg, workers=2)
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    raw = tmp_path / "raw"
    assert len(stats["partitions"]) == 2 and all(p["error"] is None for p in stats["partitions"])
    assert set(stats["hosts"]) == {seed.split("/")[2] for seed in seeds}
    per_host = [h["ok"] for h in stats["hosts"].values()]
    assert per_host[0] == per_host[1] > 5 and stats["pages_2xx"] == sum(per_host)
    assert sorted(p.name for p in raw.glob("part-*.parquet"))[0] == "part-00000.parquet"
    assert json.loads((raw / "_crawl_stats.json").read_text())["pages_2xx"] == stats["pages_2xx"]
    report = run_filter_ray([str(raw)], tmp_path, fast_config, show_progress=False)
    # Both hosts serve the same pages: at most one copy of each is kept.
    assert report["counts"]["in"] == stats["pages_2xx"]
    assert report["counts"]["duplicate"] >= 1 and report["counts"]["kept"] <= stats["pages_2xx"] // 2
