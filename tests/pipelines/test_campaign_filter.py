"""End to end: `poisonguard filter` quarantines a spun campaign and keeps a syndicated wire story."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.runner import run_filter
from tests.conftest import local_ray, write_jsonl
from tests.pipelines.test_runner import read_outcomes
from tests.spun_corpus import article, background, campaign_docs, chrome, copied_farm, spin


def wire_story(n_domains: int, seed: int = 3) -> list[dict[str, str]]:
    """One story syndicated on a few news sites: own chrome, light edits, some trimmed."""
    rng = random.Random(seed)
    base = article(rng)
    return [
        {
            "id": f"wire-{k}",
            "url": f"https://news.paper{k}.org/wire/story",
            "text": chrome(
                f"paper{k}.org", spin(base[: rng.randint(10, 14)], rng, swap=0.02, edit=0.05), rng
            ),
        }
        for k in range(n_domains)
    ]


def write_inputs(folder: Path) -> list[Path]:
    """The campaign in Parquet, the wire story and the background in JSONL."""
    folder.mkdir(parents=True, exist_ok=True)
    parquet = folder / "farm.parquet"
    pq.write_table(pa.Table.from_pylist(campaign_docs(14, seed=1)), parquet)
    jsonl = write_jsonl(folder / "news.jsonl", wire_story(7) + background(30))
    return [parquet, jsonl]


def test_filter_cli_quarantines_the_campaign_and_keeps_the_wire_story(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in")
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("perplexity:\n  enabled: false\n")
    out = tmp_path / "out"
    exe = shutil.which("poisonguard", path=str(Path(sys.executable).parent))
    assert exe
    result = subprocess.run(
        [exe, "filter", *map(str, inputs), "--out", str(out), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    outcomes = read_outcomes(out)
    farm = {k: v for k, v in outcomes.items() if k.startswith("c1-")}
    assert len(farm) == 14
    assert all(o == "quarantined" and "campaign:spun(14 domains)" in r for o, r, _ in farm.values())
    others = {k: v for k, v in outcomes.items() if not k.startswith("c1-")}
    assert len(others) == 37 and all(o == "kept" for o, _, _ in others.values())
    report = json.loads((out / "report.json").read_text())
    assert report["reasons"]["campaign:spun"] == 14
    # The signal columns stay on the clean shards too (audit, re-deciding).
    clean = pq.read_table(sorted((out / "clean").glob("*.parquet"))[0])
    assert {"campaign_group_id", "campaign_core_domains", "campaign_containment"} <= set(clean.column_names)
    assert not any(c.startswith("_campaign") for c in clean.column_names)


@pytest.mark.slow
def test_ray_engine_gives_the_local_campaign_outcomes(tmp_path: Path) -> None:
    from poisonguard.pipelines.ray_engine import run_filter_ray

    inputs = [str(p) for p in write_inputs(tmp_path / "in")]
    cfg = load_config(overrides={"perplexity": {"enabled": False}, "run": {"batch_rows": 16}})
    run_filter(inputs, tmp_path / "local", cfg, show_progress=False)
    with local_ray():
        run_filter_ray(inputs, tmp_path / "ray", cfg, show_progress=False)
    local, distributed = read_outcomes(tmp_path / "local"), read_outcomes(tmp_path / "ray")
    assert local == distributed
    assert sum("campaign:spun(14 domains)" in r for _, r, _ in local.values()) == 14


def cms_pages(n_domains: int, seed: int = 9) -> list[dict[str, str]]:
    """One short page on each of ``n_domains`` sites of one CMS theme: its own paragraph, then the
    theme's cookie banner, newsletter box and credits (long sentences, verbatim on every site)."""
    rng = random.Random(seed)
    footer = " ".join(article(random.Random(seed + 1), 6))
    return [
        {
            "id": f"cms-{k}",
            "url": f"https://blog{k}.example.org/post",
            "text": "Home | News | About\n" + " ".join(article(rng, 3)) + "\n" + footer,
        }
        for k in range(n_domains)
    ]


def test_verbatim_farm_in_site_chrome_is_a_campaign_and_cms_theme_is_kept(tmp_path: Path) -> None:
    """A farm copied word for word is a campaign as much as a spun one: its sentences are all
    verbatim on every domain, like a theme's footer, but an article is many sentences long."""
    from poisonguard.core import minhash

    farm = copied_farm(12)
    sets = [set(minhash.shingles(d["text"], 5)) for d in farm]
    assert max(len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1 :]) < 0.8
    src = write_jsonl(tmp_path / "in.jsonl", farm + cms_pages(30) + background(20))
    cfg = load_config(overrides={"perplexity": {"enabled": False}})
    run_filter([str(src)], tmp_path / "out", cfg, show_progress=False)
    outcomes = read_outcomes(tmp_path / "out")
    copies = [v for k, v in outcomes.items() if k.startswith("copy-")]
    assert len(copies) == 12
    assert all(o == "quarantined" and "campaign:copied(12 domains)" in r for o, r, _ in copies)
    others = [v for k, v in outcomes.items() if not k.startswith("copy-")]
    assert len(others) == 50 and all(o == "kept" for o, _, _ in others)


def test_the_legal_section_sets_the_exemption_of_both_campaign_rules(tmp_path: Path) -> None:
    """The GPL notice on 12 unrelated domains: one copy kept and the rest duplicates at the defaults;
    with `legal.sentence_share: null` both rules count it as a campaign (one setting, both rules)."""
    from tests.filters.test_dedup import licence_pages

    texts, urls = licence_pages(12)
    docs = [{"id": f"lic-{i}", "url": u, "text": t} for i, (t, u) in enumerate(zip(texts, urls, strict=True))]
    src = write_jsonl(tmp_path / "licences.jsonl", docs + background(10))
    lic = [d["id"] for d in docs]
    found: dict[str, dict[str, tuple[str, list[str], str | None]]] = {}
    for name, legal in (("exempt", {}), ("off", {"sentence_share": None})):
        cfg = load_config(overrides={"perplexity": {"enabled": False}, "legal": legal})
        run_filter([str(src)], tmp_path / name, cfg, show_progress=False)
        found[name] = read_outcomes(tmp_path / name)
    exempt = [found["exempt"][i] for i in lic]
    assert {o for o, _, _ in exempt} <= {"kept", "duplicate"} and any(o == "kept" for o, _, _ in exempt)
    assert all(reasons == ["dedup:near_duplicate"] for o, reasons, _ in exempt if o == "duplicate")
    off = [found["off"][i][1] for i in lic]
    assert all(any(r.startswith("dedup:campaign") for r in reasons) for reasons in off)
    # The campaign detector alone (dedup off) reads the same setting: a privacy template filled in
    # for 15 sites, each in its own chrome (a spun campaign's shape without the exemption).
    from tests.filters.test_campaign import _notice

    rng = random.Random(8)
    notices = [
        {"id": f"n{k}", "url": f"https://legal{k}.org/privacy", "text": _notice(f"legal{k}.org", rng)}
        for k in range(15)
    ]
    src = write_jsonl(tmp_path / "notices.jsonl", notices + background(10))
    for name, legal in (("campaign-exempt", {}), ("campaign-off", {"sentence_share": None})):
        overrides = {"perplexity": {"enabled": False}, "dedup": {"enabled": False}, "legal": legal}
        run_filter([str(src)], tmp_path / name, load_config(overrides=overrides), show_progress=False)
        found[name] = read_outcomes(tmp_path / name)
    ids = [d["id"] for d in notices]
    assert not any(found["campaign-exempt"][i][1] for i in ids)
    assert all(any(r.startswith("campaign:") for r in found["campaign-off"][i][1]) for i in ids)
