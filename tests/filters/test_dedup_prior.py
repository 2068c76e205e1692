"""The on-disk index of earlier nights gives DedupIndex.assign's columns, night after night."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from poisonguard.filters import dedup, dedup_prior
from poisonguard.filters.dedup_prior import Docs, NightIndex, PriorIndex, PriorIndexError, collect_garbage
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.nightly_history import open_prior

EMPTY = np.uint32(0xFFFFFFFF)


def night_docs(rng: np.random.Generator, night: int, earlier: list[np.ndarray], n: int) -> dict:
    """Random sketches with planted near copies (of earlier nights' and tonight's documents), weak
    matches, exact copies (shared content key), short documents and shared domains."""
    sigs = rng.integers(0, 2**32 - 1, size=(n, 128), dtype=np.uint32)
    keys = [rng.bytes(16) for _ in range(n)]
    pool = list(earlier)
    for i in range(n):
        kind = rng.random()
        if pool and kind < 0.45:
            base = pool[rng.integers(len(pool))]
            flip = rng.choice(128, size=int(rng.choice([3, 12, 24, 40])), replace=False)
            sigs[i] = base
            sigs[i, flip] = rng.integers(0, 2**32 - 1, size=len(flip), dtype=np.uint32)
        elif kind < 0.5 and i:
            j = int(rng.integers(i))
            sigs[i], keys[i] = sigs[j], keys[j]
        elif kind < 0.53:
            sigs[i] = EMPTY
        elif kind < 0.55:
            keys[i] = b""
        pool.append(sigs[i])
    ids = [f"n{night}-{i}" for i in range(n)]
    urls = [
        f"https://site{rng.integers(12)}.example/{night}/{i}" if rng.random() < 0.9 else None
        for i in range(n)
    ]
    return {"ids": ids, "urls": urls, "keys": keys, "sigs": sigs}


def add_prior(index: dedup.DedupIndex, kept: list[dict]) -> None:
    for part in kept:
        index.add(part["ids"], part["urls"], part["keys"], part["sigs"], prior=True)


def select(part: dict, rows: np.ndarray) -> dict:
    idx = rows.tolist()
    return {
        "ids": [part["ids"][i] for i in idx],
        "urls": [part["urls"][i] for i in idx],
        "keys": [part["keys"][i] for i in idx],
        "sigs": part["sigs"][rows],
    }


@pytest.mark.parametrize("exemplars", [32, 2])
def test_nights_on_disk_equal_the_in_memory_index(tmp_path: Path, exemplars: int) -> None:
    cfg = dedup.Config(max_bucket_exemplars=exemplars)
    rng = np.random.default_rng(7 + exemplars)
    kept: list[dict] = []
    earlier: list[np.ndarray] = []
    prior = PriorIndex(tmp_path, None, cfg, cache_mb=1)
    for night in range(1, 5):
        part = night_docs(rng, night, earlier, 400)
        reference = dedup.DedupIndex(cfg)
        add_prior(reference, kept)
        reference.add(part["ids"], part["urls"], part["keys"], part["sigs"])
        want = reference.assign()
        tonight = NightIndex(prior)
        tonight.prefetch_ids(part["ids"])
        tonight.add(part["ids"], part["urls"], part["keys"], part["sigs"])
        got = tonight.assign()
        assert got.equals(want), f"night {night}"
        for cid in set(got.column("dedup_cluster_id").to_pylist()):
            assert tonight.is_prior(cid) == reference.is_prior(cid)
        assert want.column("dedup_cluster_size").to_numpy().max() > 2
        # Keep the first of each cluster and a share of the others too, so that earlier documents
        # form clusters among themselves (the forest the replay needs).
        first = np.array(want.column("dedup_cluster_id").to_pylist()) == np.array(part["ids"])
        rows = np.flatnonzero(first & (rng.random(len(first)) < 0.8) | (rng.random(len(first)) < 0.15))
        kept.append(select(part, rows))
        earlier.extend(part["sigs"][rows])
        prior = prior.append(
            Docs.build(**{k: kept[-1][k] for k in ("ids", "urls", "keys", "sigs")}), f"night{night}.json"
        )
        assert len(prior) == sum(len(k["ids"]) for k in kept)
    # The forest holds clusters of earlier documents, and reopening from the manifest gives them.
    reopened = PriorIndex(tmp_path, "night4.json", cfg)
    assert len(reopened._forest) > 0 and len(reopened) == len(prior)


def test_a_tonight_id_that_an_earlier_document_has_is_known(tmp_path: Path) -> None:
    cfg = dedup.Config()
    rng = np.random.default_rng(1)
    part = night_docs(rng, 1, [], 50)
    prior = PriorIndex(tmp_path, None, cfg).append(Docs.build(**part), "a.json")
    night = NightIndex(prior)
    night.prefetch_ids(["n1-3", "n1-49", "other", "n1-3"])
    assert night.is_prior("n1-3") and night.is_prior("n1-49") and not night.is_prior("other")


def test_incomplete_or_foreign_index_is_refused(tmp_path: Path) -> None:
    cfg = dedup.Config()
    part = night_docs(np.random.default_rng(2), 1, [], 30)
    PriorIndex(tmp_path, None, cfg).append(Docs.build(**part), "a.json")
    with pytest.raises(PriorIndexError, match="other settings"):
        PriorIndex(tmp_path, "a.json", dedup.Config(threshold=0.7))
    # Same bands and rows, but the stored edges were verified with another threshold or exemplar bound.
    bands, rows = dedup.lsh_params(cfg)
    for other in (dedup.Config(threshold=0.75, bands=bands, rows=rows), dedup.Config(max_bucket_exemplars=8)):
        assert dedup.lsh_params(other) == (bands, rows)
        with pytest.raises(PriorIndexError, match="other settings"):
            PriorIndex(tmp_path, "a.json", other)
    manifest = json.loads((tmp_path / "a.json").read_text())
    for key in ("segments", "n"):
        damaged = {k: v for k, v in manifest.items() if k != key}
        (tmp_path / "b.json").write_text(json.dumps(damaged))
        with pytest.raises(PriorIndexError, match="lacks its segment list or document count"):
            PriorIndex(tmp_path, "b.json", cfg)
    (tmp_path / "b.json").unlink()
    seg = next((tmp_path / "segments").iterdir())
    meta = json.loads((seg / "meta.json").read_text())
    (seg / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "n"}))
    with pytest.raises(PriorIndexError, match="lacks its count"):
        PriorIndex(tmp_path, "a.json", cfg)
    (seg / "meta.json").write_text(json.dumps(meta))
    sigs = seg / "sigs"
    sigs.write_bytes(sigs.read_bytes()[:-4])
    with pytest.raises(PriorIndexError, match="truncated"):
        PriorIndex(tmp_path, "a.json", cfg)


def test_an_interrupted_append_leaves_the_committed_state_and_is_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dedup.Config()
    rng = np.random.default_rng(3)
    first = night_docs(rng, 1, [], 60)
    one = PriorIndex(tmp_path, None, cfg).append(Docs.build(**first), "one.json")
    before = sorted(p.name for p in tmp_path.rglob("*"))

    write_json = dedup_prior._write_json_atomic

    def die(path: Path, data: object) -> None:
        if path.name == "two.json":
            raise KeyboardInterrupt  # stands for a kill while the manifest is written
        write_json(path, data)

    second = night_docs(rng, 2, list(first["sigs"]), 60)
    monkeypatch.setattr("poisonguard.filters.dedup_prior._write_json_atomic", die)
    with pytest.raises(KeyboardInterrupt):
        one.append(Docs.build(**second), "two.json")
    monkeypatch.undo()
    assert not (tmp_path / "two.json").exists()  # nothing names the half-done night's files
    assert PriorIndex(tmp_path, "one.json", cfg).segments == one.segments
    # The folder is the user's choice: what this module did not write stays.
    theirs = [tmp_path / "notes.json", tmp_path / ".edit.tmp", tmp_path / "comps" / "mine.npz"]
    for path in theirs:
        path.write_text("{}")
    (tmp_path / "segments" / "mine").mkdir()
    (tmp_path / ".two.json.0a1b2c3d.tmp").write_text("{")  # a manifest being written when killed
    assert collect_garbage(tmp_path, ["one.json"]) == 3  # its segment, its component file, the temp
    assert all(p.exists() for p in theirs) and (tmp_path / "segments" / "mine").is_dir()
    for path in theirs:
        path.unlink()
    (tmp_path / "segments" / "mine").rmdir()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    # Resume: the night is appended again from the same committed state.
    two = one.append(Docs.build(**second), "two.json")
    assert len(two) == 120 and json.loads((tmp_path / "two.json").read_text())["n"] == 120
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))
    assert os.listdir(tmp_path / "segments") and len(os.listdir(tmp_path / "segments")) == 2


def test_a_snapshot_of_the_former_in_memory_format_is_converted_once(tmp_path: Path) -> None:
    """A state store from before the on-disk index names a ``.npz`` snapshot: it is read once into
    a segment, and tonight's result is the in-memory index's."""
    pcfg = load_config()
    rng = np.random.default_rng(5)
    first = night_docs(rng, 1, [], 300)
    old = dedup.DedupIndex(pcfg.dedup)
    old.add(first["ids"], first["urls"], first["keys"], first["sigs"], prior=True)
    old.save(tmp_path / "2025-01-01.npz")
    second = night_docs(rng, 2, list(first["sigs"]), 300)
    prior = open_prior(tmp_path, "2025-01-01.npz", pcfg)
    assert len(prior) == 300 and (tmp_path / "2025-01-01.json").exists()
    night = NightIndex(prior)
    night.add(second["ids"], second["urls"], second["keys"], second["sigs"])
    reference = dedup.DedupIndex.load(tmp_path / "2025-01-01.npz", pcfg.dedup)
    reference.add(second["ids"], second["urls"], second["keys"], second["sigs"])
    assert night.assign().equals(reference.assign())
    segments = sorted((tmp_path / "segments").iterdir())
    assert open_prior(tmp_path, "2025-01-01.npz", pcfg).segments[0].folder == segments[0]  # not again
