"""dedup: exact and verified near-duplicate clusters, domains, campaigns, the prior index."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasketch import LeanMinHash, MinHashLSH
from pydantic import ValidationError

from poisonguard.core import legal
from poisonguard.filters import dedup

CFG = dedup.Config()
VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "su", "ti", "vo", "ze") for b in range(60)]


def article(seed: int, n: int = 200) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) for _ in range(n)]


def edit(words: list[str], positions: list[int], tag: str) -> str:
    out = list(words)
    for p in positions:
        out[p] = f"{tag}{p}"
    return " ".join(out)


def run(
    texts: list[str], urls: Sequence[str | None], cfg: dedup.Config = CFG, ids: list[str] | None = None
) -> pa.Table:
    index = dedup.DedupIndex(cfg)
    ids = ids or [f"d{i}" for i in range(len(texts))]
    index.add(ids, urls, dedup.content_keys(texts), dedup.signatures(texts, cfg))
    return index.assign()


def test_config_validates_lsh_parameters() -> None:
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    assert dedup.lsh_params(CFG) == (lsh.b, lsh.r)
    assert dedup.lsh_params(dedup.Config(bands=16, rows=8)) == (16, 8)
    with pytest.raises(ValidationError, match="together"):
        dedup.Config(bands=16)
    with pytest.raises(ValidationError, match="exceeds num_perm"):
        dedup.Config(bands=20, rows=8)
    with pytest.raises(ValidationError):
        dedup.Config(scheme="sha1")
    entry = dedup.manifest_entry(CFG)
    assert entry["scheme"] == "affine32" and entry["bands"] * entry["rows"] <= entry["num_perm"]


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://www.news.example.co.uk/a?b=1", "example.co.uk"),
        ("http://user.github.io/page", "user.github.io"),
        ("https://news-3.farm3.example/article", "farm3.example"),
        ("http://127.0.0.1:8080/x", "127.0.0.1"),
        ("http://[::1]:8080/x", "::1"),
        ("https://EXAMPLE.com./", "example.com"),
        ("localhost:8000/page", "localhost"),
        (None, None),
        ("", None),
        ("not a url", None),
    ],
)
def test_registrable_domain(url: str | None, domain: str | None) -> None:
    assert dedup.registrable_domain(url) == domain


def test_near_copies_form_one_cluster_with_their_earliest_member() -> None:
    base = article(1)
    texts = [
        " ".join(article(2)),
        " ".join(base),
        edit(base, [50, 150], "x"),
        " ".join(article(3)),
        edit(base, [20, 120], "y"),
    ]
    urls = [
        "https://a.example.com/1",
        "https://b.example.org/1",
        "https://c.example.net/1",
        None,
        "https://www.b.example.org/2",
    ]
    table = run(texts, urls).to_pylist()
    assert [r["dedup_cluster_id"] for r in table] == ["d0", "d1", "d1", "d3", "d1"]
    assert [r["dedup_cluster_size"] for r in table] == [1, 3, 3, 1, 3]
    assert table[1]["dedup_cluster_domains"] == 2  # b.example.org twice, c.example.net
    assert table[3]["dedup_cluster_domains"] == 0  # a null url is no domain
    assert table[2]["dedup_max_similarity"] >= 0.8 and table[0]["dedup_max_similarity"] == 0.0
    assert all(r["dedup_exact_of"] is None for r in table)


def test_exact_duplicates_are_found_by_content_before_minhash() -> None:
    text = " ".join(article(4))
    texts = [text, text.upper().replace(" ", "  ,"), " ".join(article(5)), text]
    table = run(texts, [None] * 4).to_pylist()
    assert [r["dedup_exact_of"] for r in table] == [None, "d0", None, "d0"]
    assert [r["dedup_cluster_id"] for r in table] == ["d0", "d0", "d2", "d0"]
    assert table[1]["dedup_max_similarity"] == 1.0 and table[0]["dedup_max_similarity"] == 1.0


def test_a_weak_lsh_match_does_not_join_clusters() -> None:
    """A and B are near-copies; C shares one LSH band with B (a candidate) but little else: an
    unverified union would put C with A and B, the similarity check keeps it apart."""
    bands, rows = dedup.lsh_params(CFG)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32 - 1, CFG.num_perm, dtype=np.uint64).astype(np.uint32)
    b = a.copy()
    b[rows : rows + 10] ^= 1  # 10 of 128 differ, none in band 0: similarity 0.92
    c = rng.integers(0, 2**32 - 1, CFG.num_perm, dtype=np.uint64).astype(np.uint32)
    c[:rows] = b[:rows]  # band 0 equal: an LSH candidate of A and B, similarity 13/128
    sigs = np.stack([a, b, c])
    lsh = MinHashLSH(threshold=CFG.threshold, num_perm=CFG.num_perm)
    for i, s in enumerate(sigs):
        lsh.insert(i, LeanMinHash(seed=CFG.seed, hashvalues=s, scheme=CFG.scheme))
    assert 1 in lsh.query(LeanMinHash(seed=CFG.seed, hashvalues=c, scheme=CFG.scheme))
    index = dedup.DedupIndex(CFG)
    keys = [bytes([i + 1]) * 16 for i in range(3)]
    index.add(["A", "B", "C"], [None] * 3, keys, sigs)
    table = index.assign().to_pylist()
    assert [r["dedup_cluster_id"] for r in table] == ["A", "A", "C"]
    assert table[2]["dedup_cluster_size"] == 1
    assert 0.05 < table[2]["dedup_max_similarity"] < 0.2  # compared, and rejected


def test_campaign_over_many_domains_is_flagged_and_a_local_reprint_is_not() -> None:
    base = article(6)
    farm = [edit(base, [10 + 15 * k], f"f{k}") for k in range(12)]
    farm_urls = [f"https://news-{k}.farm{k}.example/article" for k in range(12)]
    reprint_base = article(7)
    reprints = [" ".join(reprint_base), edit(reprint_base, [60, 160], "r"), edit(reprint_base, [5, 95], "s")]
    reprint_urls = [
        "https://kitchen.example.com/bread",
        "https://kitchen.example.com/bread?print=1",
        "https://blog.kitchen.example.com/bread",
    ]
    small = [edit(article(8), [50 * k], f"m{k}") for k in range(3)]
    small_urls = [f"https://site{k}.example/x" for k in range(3)]
    table = run(farm + reprints + small, farm_urls + reprint_urls + small_urls)
    flags = dedup.flag(table, CFG)
    assert all(f == ["dedup:campaign(12 domains)"] for f in flags[:12])
    assert flags[12:] == [[]] * 6
    rows = table.to_pylist()
    assert {r["dedup_cluster_id"] for r in rows[:12]} == {"d0"} and rows[0]["dedup_cluster_domains"] == 12
    assert [r["dedup_cluster_size"] for r in rows[12:15]] == [3, 3, 3]
    assert rows[12]["dedup_cluster_domains"] == 1
    assert rows[15]["dedup_cluster_domains"] == 3
    assert dedup.flag(table, dedup.Config(campaign_min_domains=3))[15] == ["dedup:campaign(3 domains)"]
    assert dedup.flag(table, dedup.Config(enabled=False)) == [[]] * 18


def test_short_pages_are_exact_duplicates_but_never_a_campaign() -> None:
    texts = ["404 Not Found"] * 15 + ["404 Not Found nginx"]
    urls = [f"https://site{k}-example.org/missing" for k in range(16)]
    table = run(texts, urls)
    rows = table.to_pylist()
    assert rows[14]["dedup_exact_of"] == "d0" and rows[0]["dedup_cluster_domains"] == 15
    assert rows[15]["dedup_cluster_size"] == 1  # short: no near-duplicate matching
    assert all(r["dedup_short"] for r in rows)
    assert dedup.flag(table, CFG) == [[]] * 16


def test_prior_index_round_trip(tmp_path: Path) -> None:
    base, other = article(9), article(10)
    night1 = [" ".join(base), " ".join(other), " ".join(article(11))]
    index = dedup.DedupIndex(CFG)
    index.add(
        ["n1-a", "n1-b", "n1-c"],
        ["https://one.example/a", None, None],
        dedup.content_keys(night1),
        dedup.signatures(night1, CFG),
    )
    index.assign()
    path = tmp_path / "dedup-index.npz"
    index.save(path, keep={"n1-a", "n1-b"})  # n1-c was not kept by night 1
    assert not (tmp_path / "dedup-index.npz.tmp").exists()

    loaded = dedup.DedupIndex.load(path, CFG)
    assert len(loaded) == 2 and loaded.is_prior("n1-a") and not loaded.is_prior("n1-c")
    night2 = [edit(base, [30, 130], "z"), " ".join(other), " ".join(article(11)), " ".join(article(12))]
    loaded.add(
        ["n2-a", "n2-b", "n2-c", "n2-d"],
        ["https://two.example/a", None, None, None],
        dedup.content_keys(night2),
        dedup.signatures(night2, CFG),
    )
    rows = loaded.assign().to_pylist()
    assert len(rows) == 4  # prior documents get no rows
    assert [r["dedup_cluster_id"] for r in rows] == ["n1-a", "n1-b", "n2-c", "n2-d"]
    assert rows[0]["dedup_cluster_domains"] == 2 and rows[0]["dedup_cluster_size"] == 2
    assert rows[1]["dedup_exact_of"] == "n1-b"
    assert not loaded.is_prior("n2-a")
    # Saving again keeps night 1's documents and adds night 2's.
    loaded.save(path)
    assert len(dedup.DedupIndex.load(path, CFG)) == 6

    with pytest.raises(ValueError, match=r"dedup-index\.npz.*num_perm"):
        dedup.DedupIndex.load(path, dedup.Config(num_perm=64))
    (tmp_path / "broken.npz").write_bytes(b"not an index")
    with pytest.raises(ValueError, match="broken.npz"):
        dedup.DedupIndex.load(tmp_path / "broken.npz", CFG)


def test_prior_members_name_the_cluster_even_when_added_later() -> None:
    text = " ".join(article(13))
    index = dedup.DedupIndex(CFG)
    index.add(["new"], [None], dedup.content_keys([text]), dedup.signatures([text], CFG))
    index.add(["old"], [None], dedup.content_keys([text]), dedup.signatures([text], CFG), prior=True)
    rows = index.assign().to_pylist()
    assert rows == [
        {
            "dedup_cluster_id": "old",
            "dedup_cluster_size": 2,
            "dedup_cluster_domains": 0,
            "dedup_exact_of": "old",
            "dedup_max_similarity": 1.0,
            "dedup_short": False,
            "dedup_legal": False,
        }
    ]


def test_deterministic_and_independent_of_batching() -> None:
    texts, urls = [], []
    for k in range(30):
        texts.append(edit(article(k % 7), [6 * k], "e"))
        urls.append(f"https://s{k % 5}.example.com/{k}")
    ids = [f"d{i}" for i in range(len(texts))]
    one = run(texts, urls, ids=ids)
    assert one.equals(run(texts, urls, ids=ids))
    index = dedup.DedupIndex(CFG)
    for lo in range(0, 30, 7):
        chunk = texts[lo : lo + 7]
        index.add(
            ids[lo : lo + 7], urls[lo : lo + 7], dedup.content_keys(chunk), dedup.signatures(chunk, CFG)
        )
    assert index.assign().equals(one)
    assert len({r["dedup_cluster_id"] for r in one.to_pylist()}) == 7


def test_add_accepts_runner_uint64_signatures_and_refuses_mismatches() -> None:
    texts = [" ".join(article(14))]
    sigs = dedup.signatures(texts, CFG)
    index = dedup.DedupIndex(CFG)
    index.add(["a"], [None], dedup.content_keys(texts), sigs.astype(np.uint64))
    assert index.state_bytes() >= CFG.num_perm * 4
    assert np.array_equal(index.lean_minhash(0).hashvalues, sigs[0])
    with pytest.raises(ValueError, match="shape"):
        index.add(["b"], [None], [b""], np.zeros((1, 64), np.uint32))
    with pytest.raises(ValueError, match="2 ids but 1 urls"):
        index.add(["b", "c"], [None], [b"", b""], np.zeros((2, 128), np.uint32))
    with pytest.raises(ValueError, match="fit scheme"):
        index.add(["b"], [None], [b""], np.full((1, 128), 2**40, np.uint64))


def test_empty_index_assigns_an_empty_table() -> None:
    table = dedup.DedupIndex(CFG).assign()
    assert table.num_rows == 0 and table.schema == dedup.SIGNAL_SCHEMA
    assert dedup.flag(table, CFG) == []


# Licence notices as projects really ship them (the GPL-3.0 and Apache-2.0 notices are meant to be
# copied verbatim), and a privacy-policy template with the site's name filled in.
GPL_NOTICE = (
    "This program is free software: you can redistribute it and/or modify it under the terms of the GNU "
    "General Public License as published by the Free Software Foundation, either version 3 of the License, "
    "or (at your option) any later version. This program is distributed in the hope that it will be "
    "useful, but WITHOUT ANY WARRANTY; without even the implied warranty of MERCHANTABILITY or FITNESS "
    "FOR A PARTICULAR PURPOSE. See the GNU General Public License for more details. You should have "
    "received a copy of the GNU General Public License along with this program. If not, see "
    "<https://www.gnu.org/licenses/>."
)
APACHE_NOTICE = (
    'Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in '
    "compliance with the License. You may obtain a copy of the License at "
    "http://www.apache.org/licenses/LICENSE-2.0 Unless required by applicable law or agreed to in "
    'writing, software distributed under the License is distributed on an "AS IS" BASIS, WITHOUT '
    "WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the specific "
    "language governing permissions and limitations under the License."
)
# The MIT licence never addresses its reader: it reads as a legal notice by its drafting words.
MIT_LICENCE = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and "
    'associated documentation files (the "Software"), to deal in the Software without restriction, '
    "including without limitation the rights to use, copy, modify, merge, publish, distribute, "
    "sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is "
    "furnished to do so, subject to the following conditions:\n\nThe above copyright notice and this "
    "permission notice shall be included in all copies or substantial portions of the Software.\n\n"
    'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT '
    "NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND "
    "NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES "
    "OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN "
    "CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE."
)
PRIVACY_TEMPLATE = (
    "This privacy policy explains how {site} collects and uses your personal data when you visit our "
    "website. We collect the information you give us when you subscribe, and cookies record how you use "
    "our pages. We process your personal data only with your consent or where the law permits it. You "
    "have the right to access, correct or delete your data, and you may withdraw your consent at any time. "
    "We do not sell your personal information to third parties, and we keep it only as long as the law "
    "requires. If you have questions about this policy or your rights, contact us by email."
)
ARTICLE = (
    "The river authority opened the new flood barrier on Tuesday after four years of construction. "
    "Engineers say the barrier can hold back a surge two metres higher than the one that flooded the "
    "old town in the winter of 2013. Residents gathered on the embankment to watch the first test, "
    "in which the steel gates rose from the riverbed in under ten minutes. The project cost more than "
    "expected because the contractor had to replace the foundations of the western pier. Shop owners "
    "near the harbour said they hoped insurance premiums would now fall."
)


def licence_pages(n_domains: int) -> tuple[list[str], list[str]]:
    """Each notice on `n_domains` unrelated domains, each copy with its site's copyright line."""
    texts, urls = [], []
    for k in range(n_domains):
        site = f"project{k}-{k % 3}.org"
        texts.append(f"Copyright (C) 2024 {site}\n{GPL_NOTICE}")
        urls.append(f"https://{site}/COPYING")
        texts.append(f"Copyright 2023 {site}\n{APACHE_NOTICE}")
        urls.append(f"https://code.{site}/LICENSE")
        texts.append(PRIVACY_TEMPLATE.format(site=site))
        urls.append(f"https://www.{site}/privacy")
        texts.append(f"MIT License\n\nCopyright (c) 2022 {site}\n\n{MIT_LICENCE}")
        urls.append(f"https://docs.{site}/license.txt")
    return texts, urls


def test_licences_on_many_domains_are_duplicates_not_a_campaign_but_an_article_still_is() -> None:
    licences, licence_urls = licence_pages(12)
    farm = [f"Daily Courier {k}\n{ARTICLE}" for k in range(12)]
    farm_urls = [f"https://courier{k}.example/flood-barrier" for k in range(12)]
    texts, urls = licences + farm, licence_urls + farm_urls
    index = dedup.DedupIndex(CFG)
    ids = [f"d{i}" for i in range(len(texts))]
    keys, sigs = dedup.content_keys(texts), dedup.signatures(texts, CFG)
    index.add(ids, urls, keys, sigs, legal_notices=legal.flags(texts, legal.Config()))
    table = index.assign()
    rows = table.to_pylist()
    n = len(licences)
    # Four clusters (one per notice) of 12 domains each: the size of a campaign, yet legal notices.
    assert len({r["dedup_cluster_id"] for r in rows[:n]}) == 4
    assert all(r["dedup_cluster_domains"] == 12 and r["dedup_legal"] for r in rows[:n])
    assert not any(r["dedup_legal"] for r in rows[n:])
    flags = dedup.flag(table, CFG)
    assert flags[:n] == [[]] * n
    assert all(f == ["dedup:campaign(12 domains)"] for f in flags[n:])
    # Without the exemption the notices were quarantined as campaigns.
    plain = legal.flags(texts, legal.Config(sentence_share=None))
    assert not any(plain)
    assert all(dedup.flag(table.drop_columns(["dedup_legal"]), CFG)[:n])


def test_a_licence_reads_as_legal_by_address_or_drafting_an_article_about_law_does_not() -> None:
    def notice(text: str) -> bool:
        return legal.flags([text], legal.Config())[0]

    assert notice(GPL_NOTICE) and notice(APACHE_NOTICE) and notice(MIT_LICENCE)  # you / hereby
    assert notice(PRIVACY_TEMPLATE.format(site="x.org"))
    law_article = (
        "A licence is a legal permission that lets a person use a work protected by copyright. "
        "Courts in most jurisdictions enforce the terms of a licence unless it breaches the law. "
        "The rights of third parties under a licence differ between legal systems and their courts. "
        "Damages are the usual remedy for a breach, and an injunction against the licensee is rare."
    )
    assert not notice(law_article)  # about law: neither addressed to its reader nor a grant
    assert not notice(ARTICLE)
    assert not any(legal.flags([GPL_NOTICE, MIT_LICENCE], legal.Config(sentence_share=None)))
