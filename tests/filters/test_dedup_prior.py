"""The on-disk index of earlier nights gives DedupIndex.assign's columns, night after night."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


def test_key_filter_holds_every_key_and_few_others(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    keys = rng.integers(0, 2**64 - 1, size=50_000, dtype=np.uint64)
    dedup_prior._write_raw(tmp_path / "t.bloom", dedup_prior.bloom_build(keys))
    assert dedup_prior.bloom_check(
        tmp_path / "t.bloom", dedup_prior.KeyMasks.of(keys)
    ).all()  # no false negative
    others = rng.integers(0, 2**64 - 1, size=50_000, dtype=np.uint64)
    false_positive = dedup_prior.bloom_check(tmp_path / "t.bloom", dedup_prior.KeyMasks.of(others)).mean()
    assert 0.0001 < false_positive < 0.004  # about 0.1% at 16 bits a key


def random_docs(rng: np.random.Generator, night: int, n: int) -> dict:
    return {
        "ids": [f"n{night}-{i}" for i in range(n)],
        "urls": [None] * n,
        "keys": [rng.bytes(16) for _ in range(n)],
        "sigs": rng.integers(0, 2**32 - 1, size=(n, 128), dtype=np.uint32),
    }


def test_the_key_filter_reads_less_and_changes_nothing(tmp_path: Path) -> None:
    """Tonight's lookups through the key filters give the same columns as probing every table,
    and read a fraction of the bytes: most of tonight's keys are in no earlier segment, and the
    filter drops them before any key block is read."""
    cfg = dedup.Config()
    rng = np.random.default_rng(12)
    prior = PriorIndex(tmp_path, None, cfg)
    nights = [random_docs(rng, night, 40_000) for night in (1, 2)]
    for night, part in enumerate(nights, start=1):
        prior = prior.append(Docs.build(**part), f"night{night}.json")
    tonight = random_docs(rng, 3, 1000)
    tonight["sigs"][:20] = nights[0]["sigs"][:20]  # near copies of the first night's documents
    tonight["sigs"][:20, :3] = 7
    tables, read = [], []
    for use_filter in (True, False):
        index = PriorIndex(tmp_path, "night2.json", cfg, use_filter=use_filter)
        dedup_prior.IO.reset()
        night = NightIndex(index)
        night.prefetch_ids(tonight["ids"])
        night.add(tonight["ids"], tonight["urls"], tonight["keys"], tonight["sigs"])
        tables.append(night.assign())
        read.append(dedup_prior.IO.bytes_read)
    assert tables[0].equals(tables[1])
    clusters = tables[0].column("dedup_cluster_id").to_pylist()
    assert clusters[:20] == nights[0]["ids"][:20] and clusters[20:] == tonight["ids"][20:]
    assert read[0] < read[1] / 2, read


def test_a_truncated_key_filter_or_table_is_refused_not_read_short(tmp_path: Path) -> None:
    """A filter or table file cut short would map keys to the wrong blocks and silently miss
    copies; the lookup refuses it, naming the table."""
    cfg = dedup.Config()
    rng = np.random.default_rng(13)
    part = random_docs(rng, 1, 2000)
    PriorIndex(tmp_path, None, cfg).append(Docs.build(**part), "night1.json")
    tonight = random_docs(rng, 2, 50)
    tonight["sigs"][:5] = part["sigs"][:5]
    seg = next((tmp_path / "segments").iterdir())
    for suffix in (".bloom", ".rows"):
        victim = sorted(seg.glob(f"*{suffix}"))[0]
        whole = victim.read_bytes()
        victim.write_bytes(whole[:-64])
        night = NightIndex(PriorIndex(tmp_path, "night1.json", cfg))
        night.prefetch_ids(tonight["ids"])
        night.add(tonight["ids"], tonight["urls"], tonight["keys"], tonight["sigs"])
        with pytest.raises(PriorIndexError, match="disagree in size"):
            night.assign()
        victim.write_bytes(whole)


def _as_format_1(root: Path, manifest: str, bands: int, urls: list[list[str | None]] | None = None) -> None:
    """Rewrite an index as the first on-disk format wrote it: no key filters, a fence of every
    4,096th key, no block or night list in the segment, the format inside the settings, domains as
    codes into a list of names (from each segment's ``urls``; none given: no domains)."""
    data = json.loads((root / manifest).read_text())
    for s, name in enumerate(data["segments"]):
        folder = root / "segments" / name
        n = (folder / "domain_hash").stat().st_size // 8
        domains = [dedup.registrable_domain(u) for u in urls[s]] if urls else [None] * n
        names: dict[str, int] = {}
        codes = [names.setdefault(d, len(names)) if d is not None else -1 for d in domains]
        np.array(codes, np.int32).tofile(folder / "domains")
        (folder / "domain_hash").unlink()
        for table in dedup_prior.table_names(bands):
            (folder / f"{table}.bloom").unlink()
            keys = np.fromfile(folder / f"{table}.keys", dtype=np.uint64)
            keys[:: dedup_prior.OLD_BLOCK].tofile(folder / f"{table}.fence")
        meta = json.loads((folder / "meta.json").read_text())
        meta = {k: v for k, v in meta.items() if k not in ("block", "nights")} | {"format": 1}
        meta["domain_names"] = list(names)
        (folder / "meta.json").write_text(json.dumps(meta))
    data = {k: v for k, v in data.items() if k != "first"} | {"format": 1}
    data["settings"] = {"format": 1, **data["settings"]}
    (root / manifest).write_text(json.dumps(data))


def test_an_index_of_the_first_format_is_upgraded_in_place(tmp_path: Path) -> None:
    cfg = dedup.Config()
    rng = np.random.default_rng(13)
    first = night_docs(rng, 1, [], 400)
    second = night_docs(rng, 2, list(first["sigs"]), 400)
    reference = dedup.DedupIndex(cfg)
    add_prior(reference, [first])
    reference.add(second["ids"], second["urls"], second["keys"], second["sigs"])
    PriorIndex(tmp_path, None, cfg).append(Docs.build(**first), "a.json")
    bands, _ = dedup.lsh_params(cfg)
    _as_format_1(tmp_path, "a.json", bands, [first["urls"]])
    segment = next((tmp_path / "segments").iterdir())
    assert not list(segment.glob("*.bloom"))
    prior = PriorIndex(tmp_path, "a.json", cfg)  # upgraded here, not refused
    assert len(list(segment.glob("*.bloom"))) == bands + 2
    # Domain names became hashes (a list of names would grow with the history's domains).
    assert not (segment / "domains").exists() and "domain_names" not in json.loads(
        (segment / "meta.json").read_text()
    )
    want = dedup_prior.domain_hashes([dedup.registrable_domain(u) for u in first["urls"]])
    assert np.array_equal(prior.domain_hashes(np.arange(400)), want) and (want == 0).sum() > 10
    assert json.loads((segment / "meta.json").read_text())["format"] == dedup_prior.FORMAT
    assert prior.segments[0].block == dedup_prior.OLD_BLOCK
    night = NightIndex(prior)
    night.prefetch_ids(second["ids"])
    night.add(second["ids"], second["urls"], second["keys"], second["sigs"])
    assert night.assign().equals(reference.assign())
    # The next night appends a segment of the current format beside the upgraded one.
    later = prior.append(Docs.build(**second), "b.json")
    assert [s.block for s in PriorIndex(tmp_path, "b.json", cfg).segments] == [
        dedup_prior.OLD_BLOCK,
        dedup_prior.BLOCK,
    ]
    assert len(later) == 800
    # A kill inside an upgrade leaves temporary files in the kept segment; clean-up removes them only.
    leftover = segment / ".t0.bloom.0badc0de.tmp"
    leftover.write_bytes(b"partial")
    (segment / "notes.txt").write_text("the user's")
    assert collect_garbage(tmp_path, ["a.json", "b.json"]) == 1
    assert not leftover.exists() and (segment / "notes.txt").exists()
    assert len(list(segment.glob("*.bloom"))) == bands + 2


def assign_against(prior: PriorIndex, part: dict) -> Any:
    night = NightIndex(prior)
    night.prefetch_ids(part["ids"])
    night.add(part["ids"], part["urls"], part["keys"], part["sigs"])
    return night.assign()


def near_copy(sig: np.ndarray) -> np.ndarray:
    out = sig.copy()
    out[:4] += 1  # 124 of 128 permutations equal: estimated Jaccard 0.97
    return out


def test_a_copy_of_a_document_from_30_nights_ago_is_found_after_merges(tmp_path: Path) -> None:
    cfg = dedup.Config()
    rng = np.random.default_rng(14)
    prior = PriorIndex(tmp_path, None, cfg)
    nights = []
    for night in range(1, 31):
        part = random_docs(rng, night, 200)
        nights.append(part)
        prior = prior.append(Docs.build(**part), f"night{night}.json")
        prior.cache_rows = 700  # merges a key range of 700 keys at a time, lookups 2 blocks at a time
        prior = prior.compact(3, f"night{night}.json")
        assert len(prior.segments) <= 3
    assert len(prior) == 6000 and [n for s in prior.segments for n, _ in s.nights] == [
        f"night{k}" for k in range(1, 31)
    ]
    tonight = random_docs(rng, 31, 100)
    tonight["sigs"][0] = near_copy(nights[0]["sigs"][5])  # night 1
    tonight["sigs"][1] = near_copy(nights[29]["sigs"][7])  # last night
    tonight["keys"][2] = nights[14]["keys"][9]  # an exact copy from night 15
    tonight["sigs"][2] = nights[14]["sigs"][9]
    reference = dedup.DedupIndex(cfg)
    add_prior(reference, nights)
    reference.add(tonight["ids"], tonight["urls"], tonight["keys"], tonight["sigs"])
    got = assign_against(prior, tonight)
    assert got.equals(reference.assign())
    assert got.column("dedup_cluster_id").to_pylist()[:3] == ["n1-5", "n30-7", "n15-9"]
    assert got.column("dedup_exact_of").to_pylist()[2] == "n15-9"
    # A merge writes each filter in key order, a key range at a time: the same bits as built whole.
    merged = max(prior.segments, key=lambda seg: seg.n).folder
    for table in dedup_prior.table_names(dedup.lsh_params(cfg)[0]):
        keys = np.fromfile(merged / f"{table}.keys", dtype=np.uint64)
        assert (
            np.fromfile(merged / f"{table}.bloom", dtype=np.uint64) == dedup_prior.bloom_build(keys)
        ).all()
    # The merged segments read the same through a reopened manifest, their ids and domains included.
    reopened = PriorIndex(tmp_path, "night30.json", cfg)
    everyone = np.arange(6000)
    assert reopened.ids(everyone) == [i for part in nights for i in part["ids"]]
    assert (reopened.sigs(everyone) == np.concatenate([p["sigs"] for p in nights])).all()


def test_the_layout_of_merged_segments_is_known_without_writing_it(tmp_path: Path) -> None:
    # The benchmark builds a long history in the layout that nights of its size would leave.
    cfg = dedup.Config()
    rng = np.random.default_rng(15)
    sizes = [50, 80, 20, 200, 30, 30, 90, 10, 60, 40, 40, 5]
    prior = PriorIndex(tmp_path, None, cfg)
    for night, n in enumerate(sizes, start=1):
        prior = prior.append(Docs.build(**random_docs(rng, night, n)), f"night{night}.json")
        prior = prior.compact(3, f"night{night}.json")
        assert [s.n for s in prior.segments] == dedup_prior.segment_sizes(sizes[:night], 3)
    assert [s.n for s in prior.segments] == [350, 300, 5]
    assert dedup_prior.segment_sizes(sizes, 0) == sizes  # 0: never merge
    assert dedup_prior.merge_start([17, 8, 4, 2, 1, 1]) == 1  # 1 + 1 + 2 + 4 + 8 < 17
    assert dedup_prior.merge_start([16, 8, 4, 2, 1, 1]) == 0
    assert dedup_prior.merge_start([16, 8, 4, 3, 1, 1]) == 4


def test_a_crash_inside_a_merge_leaves_the_index_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dedup.Config()
    rng = np.random.default_rng(15)
    prior = PriorIndex(tmp_path, None, cfg)
    nights = [random_docs(rng, night, 300) for night in (1, 2, 3)]
    for night, part in enumerate(nights, start=1):
        prior = prior.append(Docs.build(**part), f"night{night}.json")
    tonight = random_docs(rng, 4, 50)
    tonight["sigs"][0] = near_copy(nights[0]["sigs"][0])
    want = assign_against(prior, tonight)
    replace = os.replace

    def die_at_rename(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(".night3-") and Path(src).is_dir():
            raise KeyboardInterrupt  # stands for a kill between the merged files and their rename
        replace(src, dst)

    monkeypatch.setattr(dedup_prior.os, "replace", die_at_rename)
    with pytest.raises(KeyboardInterrupt):
        prior.compact(1, "night3.json")
    monkeypatch.undo()
    again = PriorIndex(tmp_path, "night3.json", cfg)
    assert len(again.segments) == 3 and assign_against(again, tonight).equals(want)
    # A kill -9 leaves the temporary folder: the clean-up removes it, the merge then succeeds.
    (tmp_path / "segments" / ".night3-0a1b2c3d.tmp").mkdir()
    manifests = ["night1.json", "night2.json", "night3.json"]
    assert collect_garbage(tmp_path, manifests) == 1
    merged = again.compact(1, "night3.json")
    assert len(merged.segments) == 1 and assign_against(merged, tonight).equals(want)
    assert collect_garbage(tmp_path, manifests[2:]) == 5  # two manifests, the three merged segments


def test_retention_drops_exactly_the_old_nights(tmp_path: Path) -> None:
    cfg = dedup.Config()
    rng = np.random.default_rng(16)
    prior = PriorIndex(tmp_path, None, cfg)
    nights = [random_docs(rng, night, 300) for night in range(1, 6)]
    for night, part in enumerate(nights, start=1):
        manifest = f"night{night}.json"
        prior = prior.append(Docs.build(**part), manifest).expire(3, manifest).compact(2, manifest)
    assert [n for n, _, _ in prior.night_ranks()] == ["night3", "night4", "night5"]
    assert prior.first == 600 and prior.documents == 900 and len(prior) == 1500
    assert len(NightIndex(prior)) == 900  # what nightly reports as the earlier documents
    tonight = random_docs(rng, 6, 60)
    for night in range(5):  # a near copy and an exact copy of a document of every night
        tonight["sigs"][2 * night] = near_copy(nights[night]["sigs"][1])
        tonight["keys"][2 * night + 1] = nights[night]["keys"][2]
        tonight["sigs"][2 * night + 1] = nights[night]["sigs"][2]
    reference = dedup.DedupIndex(cfg)
    add_prior(reference, nights[2:])
    reference.add(tonight["ids"], tonight["urls"], tonight["keys"], tonight["sigs"])
    got = assign_against(prior, tonight)
    assert got.equals(reference.assign())
    clusters = got.column("dedup_cluster_id").to_pylist()[:10]
    assert clusters == ["n6-0", "n6-1", "n6-2", "n6-3"] + [f"n{k}-{j}" for k in (3, 4, 5) for j in (1, 2)]
    # Nothing of the expired nights is read: not even their ids.
    assert NightIndex(prior).prior.known_ids(["n1-0", "n2-0", "n3-0"]) == {"n3-0"}
    # The merged segment holds only the kept nights' documents once merged again.
    merged = prior.compact(1, "night5.json")
    assert [(s.start, s.n) for s in merged.segments] == [(600, 900)]
    assert assign_against(merged, tonight).equals(got)
    # A night that kept nothing is a night too.
    nothing = Docs.build([], [], [], np.zeros((0, 128), np.uint32))
    later = merged.append(nothing, "night6.json").expire(3, "night6.json")
    assert [n for n, _, _ in later.night_ranks()] == ["night4", "night5", "night6"]
    assert later.first == 900 and assign_against(later, tonight).column("dedup_cluster_id").to_pylist()[
        :8
    ] == [f"n6-{j}" for j in range(6)] + ["n4-1", "n4-2"]


def test_an_index_from_before_the_forest_settings_were_recorded_is_upgraded_when_it_can_be(
    tmp_path: Path,
) -> None:
    """Indexes written before ``threshold`` and ``max_bucket_exemplars`` were recorded (and before
    the key filters) open once their forest shows nothing depends on them; else they are refused."""
    cfg = dedup.Config()
    bands, _ = dedup.lsh_params(cfg)
    rng = np.random.default_rng(17)
    plain, clustered = tmp_path / "plain", tmp_path / "clustered"
    PriorIndex(plain, None, cfg).append(Docs.build(**random_docs(rng, 1, 500)), "a.json")
    # Every document of a night with planted copies: its clusters are stored as a forest.
    with_copies = PriorIndex(clustered, None, cfg).append(Docs.build(**night_docs(rng, 1, [], 300)), "a.json")
    assert len(with_copies._forest) > 0
    for root in (plain, clustered):
        _as_format_1(root, "a.json", bands)
        data = json.loads((root / "a.json").read_text())
        for key in ("threshold", "max_bucket_exemplars"):
            del data["settings"][key]
        (root / "a.json").write_text(json.dumps(data))
    with pytest.raises(PriorIndexError, match="unknown values"):
        PriorIndex(clustered, "a.json", cfg)
    upgraded = PriorIndex(plain, "a.json", cfg)
    recorded = json.loads((plain / "a.json").read_text())["settings"]
    assert recorded["threshold"] == cfg.threshold and recorded["max_bucket_exemplars"] == 32
    assert len(upgraded) == 500 and upgraded.known_ids(["n1-7", "n2-7"]) == {"n1-7"}
    with pytest.raises(PriorIndexError, match="other settings"):  # now recorded: a change is refused
        PriorIndex(plain, "a.json", dedup.Config(max_bucket_exemplars=8))


def test_domain_codes_become_hashes_a_chunk_at_a_time_and_a_short_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dedup.Config()
    rng = np.random.default_rng(17)
    first = night_docs(rng, 1, [], 300)
    bands, _ = dedup.lsh_params(cfg)
    want = dedup_prior.domain_hashes([dedup.registrable_domain(u) for u in first["urls"]])
    monkeypatch.setattr(dedup_prior, "UPGRADE_CHUNK", 7)  # many chunks, the last one short
    for root, cut in ((tmp_path / "whole", False), (tmp_path / "short", True)):
        PriorIndex(root, None, cfg).append(Docs.build(**first), "a.json")
        _as_format_1(root, "a.json", bands, [first["urls"]])
        segment = next((root / "segments").iterdir())
        if cut:  # a copy that lost its tail: refused, naming the file, and the old format is kept
            (segment / "domains").write_bytes((segment / "domains").read_bytes()[:-8])
            with pytest.raises(PriorIndexError, match="domains.*truncated"):
                PriorIndex(root, "a.json", cfg)
            assert json.loads((segment / "meta.json").read_text())["format"] == 1
            assert not (segment / "domain_hash").exists()
        else:
            prior = PriorIndex(root, "a.json", cfg)
            assert np.array_equal(prior.domain_hashes(np.arange(300)), want)


def test_lookups_read_a_cache_at_a_time_and_find_the_same(tmp_path: Path) -> None:
    """A table probed with a cache far smaller than its key filter and fence (mapped a few blocks
    or one query at a time) finds the same (query, row) pairs as with the whole of them at once."""
    rng = np.random.default_rng(23)
    keys = rng.integers(0, 2**64 - 1, size=20_000, dtype=np.uint64)
    keys[5_000:5_600] = keys[100]  # a key whose equal copies run over several fence blocks
    dedup_prior.write_table(tmp_path, "t", keys, np.arange(len(keys), dtype=np.uint32))
    sampled = np.concatenate([[keys[100]], keys[rng.choice(len(keys), 3_000)]])
    query = np.unique(np.concatenate([sampled, rng.integers(0, 2**64 - 1, 3_000, np.uint64)]))
    srt = np.sort(keys)
    pairs = (np.searchsorted(srt, query, "right") - np.searchsorted(srt, query, "left")).sum()
    big = dedup_prior.probe_table(tmp_path, "t", query, cache_rows=1 << 20)
    small = dedup_prior.probe_table(tmp_path, "t", query, cache_rows=dedup_prior.BLOCK)  # 3 KB
    assert all(np.array_equal(a, b) for a, b in zip(big, small, strict=True))
    assert len(big[0]) == pairs > len(np.unique(sampled)) + 599  # every copy of the long run too
    masks = dedup_prior.KeyMasks.of(query)
    whole = dedup_prior.bloom_check(tmp_path / "t.bloom", masks)
    assert np.array_equal(whole, dedup_prior.bloom_check(tmp_path / "t.bloom", masks, cache_bytes=64))
    shuffled = rng.permutation(len(query))  # unsorted queries come back in their own order
    got = dedup_prior.bloom_check(tmp_path / "t.bloom", dedup_prior.KeyMasks.of(query[shuffled]), 640)
    assert np.array_equal(got, whole[shuffled])


def test_the_blocks_a_probe_needs_are_sized_by_the_queries() -> None:
    rng = np.random.default_rng(29)
    first = np.sort(rng.integers(0, 10**12, size=500))
    last = first + rng.integers(0, 3, size=500)
    want = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last, strict=True)]))
    assert np.array_equal(dedup_prior._block_union(first, last), want)  # no 10**12-long array
    assert len(dedup_prior._block_union(np.zeros(0, np.int64), np.zeros(0, np.int64))) == 0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.skipif(
    dedup_prior._malloc_trim() is None or not Path("/proc/self/status").exists(), reason="glibc on Linux only"
)
def test_freed_heap_is_handed_back_after_a_night() -> None:
    """Heap that a night freed below live data stays in the process until released: 2,000 blocks
    of 64 KB (below glibc's mmap threshold) freed under a block still in use."""
    chunks = [b"x" * 65536 for _ in range(2000)]
    pinned = b"y" * 65536
    del chunks
    kept = _rss_mb()
    dedup_prior.release_free_heap()
    assert kept - _rss_mb() > 60  # of the 125 MB freed
    assert pinned[:1] == b"y"


def test_rows_are_read_in_runs_in_any_order_and_a_short_file_is_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(31)
    table = rng.integers(0, 2**32 - 1, size=(5_000, 16), dtype=np.uint32)
    dedup_prior._write_raw(tmp_path / "sigs", table)
    rows = np.concatenate([rng.integers(0, 5_000, 300), np.arange(100, 400), [7, 7, 4_999]])
    assert np.array_equal(dedup_prior._gather_raw(tmp_path / "sigs", np.uint32, rows, 16), table[rows])
    flat = table.reshape(-1)
    assert np.array_equal(dedup_prior._gather_raw(tmp_path / "sigs", np.uint32, rows), flat[rows])
    with pytest.raises(PriorIndexError, match="sigs.*shorter"):
        dedup_prior._gather_raw(tmp_path / "sigs", np.uint32, np.array([5_000]), 16)
