"""The campaign detector: spun copies of one article on many domains, and what must stay apart."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from poisonguard.core import legal
from poisonguard.filters import campaign
from tests.spun_corpus import article, background, campaign_docs, chrome, copied_farm


def run(
    docs: list[dict[str, str]], cfg: campaign.Config | None = None, legal_cfg: legal.Config | None = None
) -> tuple[pa.Table, list[list[str]]]:
    cfg = cfg or campaign.Config()
    texts = [d["text"] for d in docs]
    notices = None if legal_cfg is None else legal.flags(texts, legal_cfg)
    index = campaign.CampaignIndex(cfg)
    index.add([d["id"] for d in docs], [d["url"] for d in docs], *campaign.sketch(texts, cfg, notices))
    table = index.assign()
    return table, campaign.flag(table, cfg)


def test_body_keeps_long_sentences_and_drops_chrome_lines() -> None:
    text = (
        "The Daily Post\nBy Ann Lee\nShare: Facebook X\n"
        "The council approved the new budget for the city schools today. Short one."
    )
    assert campaign.body_text(text, 6) == "The council approved the new budget for the city schools today."


def test_sketch_ignores_chrome_and_skips_short_documents() -> None:
    rng = random.Random(1)
    body = " ".join(article(rng))
    a, b = chrome("one.com", body, rng), chrome("two.net", body, rng)
    sigs, sketches, shares, _ = campaign.sketch([a, b, "Too short to say anything."], campaign.Config())
    assert np.array_equal(sigs[0], sigs[1]) and np.array_equal(sketches[0], sketches[1])
    assert 0.6 < shares[0] < 1.0 and shares[2] == 0.0  # chrome is not body
    assert len(sketches[0]) == campaign.Config().sketch_size
    assert len(sketches[2]) == 0 and np.all(sigs[2] == np.iinfo(np.uint32).max)
    assert np.all(np.diff(sketches[0].astype(np.float64)) > 0)  # sorted, distinct


def test_columns_round_trip() -> None:
    docs = campaign_docs(3) + [{"id": "s", "url": None, "text": "tiny"}]
    cfg = campaign.Config()
    cols = campaign.sketch_columns([d["text"] for d in docs], cfg)
    sigs, sketches, shares, owners = campaign.sketch([d["text"] for d in docs], cfg)
    back_sigs, back_sketches, back_shares, back_owners = campaign.read_columns(pa.table(cols))
    assert np.array_equal(back_sigs, sigs) and np.array_equal(back_shares, shares)
    assert all(np.array_equal(x, y) for x, y in zip(back_owners, owners, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(back_sketches, sketches, strict=True))


def test_spun_copies_on_twelve_domains_are_a_campaign() -> None:
    docs = campaign_docs(12) + background(40)
    table, reasons = run(docs)
    assert all(r == ["campaign:spun(12 domains)"] for r in reasons[:12])
    assert not any(reasons[12:])
    assert set(table.column("campaign_group_id").to_pylist()[:12]) == {"c0-0"}
    assert min(table.column("campaign_containment").to_pylist()[:12]) >= campaign.Config().min_containment


def test_the_copies_are_not_near_duplicates() -> None:
    """Guard on the fixture: the copies are spun well below dedup's 0.8 (else the test proves little)."""
    from poisonguard.core import minhash

    docs = campaign_docs(12)
    sets = [set(minhash.shingles(d["text"], 5)) for d in docs]
    sims = [len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1 :]]
    assert max(sims) < 0.8 and np.median(sims) < 0.7


@pytest.mark.parametrize("n_domains", [3, 9])
def test_syndication_on_fewer_domains_is_kept(n_domains: int) -> None:
    _, reasons = run(campaign_docs(n_domains) + background(20))
    assert not any(reasons)


def test_one_site_editions_and_quote_chains_are_kept() -> None:
    docs = [dict(d, url=f"https://forum.example.com/t/{i}") for i, d in enumerate(campaign_docs(15))]
    _, reasons = run(docs + background(10))
    assert not any(reasons)


def test_shared_cms_boilerplate_is_not_a_core() -> None:
    rng = random.Random(5)
    footer = " ".join(article(random.Random(77), 6))  # the same long footer on every page
    docs = []
    for d in range(15):
        for p in range(3):
            docs.append({"id": f"cms{d}-{p}", "url": f"https://www.cms{d}.net/p{p}",
                         "text": " ".join(article(rng, 8)) + "\n" + footer})  # fmt: skip
    table, reasons = run(docs)
    assert not any(reasons)
    assert max(table.column("campaign_containment").to_pylist()) < campaign.Config().min_containment


def test_one_short_page_per_cms_site_is_not_a_campaign() -> None:
    """No second page per host to learn the boilerplate from, and the footer is most of each page:
    the footer's sentences are verbatim on every domain, which a spun copy's sentences are not."""
    rng = random.Random(6)
    footer = " ".join(article(random.Random(78), 8))
    docs = [
        {
            "id": f"one{d}",
            "url": f"https://one{d}.com/p",
            "text": " ".join(article(rng, 4)) + "\n" + footer,
        }
        for d in range(30)
    ]
    table, reasons = run(docs + campaign_docs(12))
    assert not any(reasons[:30])
    cont = table.column("campaign_containment").to_pylist()[:30]
    varied = table.column("campaign_varied_containment").to_pylist()[:30]
    assert max(cont) >= 0.4 and max(varied) < 0.1  # mostly shared text, but none of it rewritten
    assert all(reasons[30:])  # a campaign among them is still one


def test_an_article_copied_verbatim_is_a_campaign() -> None:
    """Every sentence verbatim on every domain, like a theme's footer, but many of them."""
    table, reasons = run(copied_farm(12) + background(20))
    assert all(r == ["campaign:copied(12 domains)"] for r in reasons[:12])
    assert not any(reasons[12:])
    assert max(table.column("campaign_varied_containment").to_pylist()[:12]) < 0.05
    assert min(table.column("campaign_verbatim_sentences").to_pylist()[:12]) >= 12
    assert not any(campaign.flag(table, campaign.Config(verbatim_core_sentences=None)))
    assert not any(campaign.flag(table, campaign.Config(verbatim_core_sentences=40)))


def test_flag_rereads_thresholds() -> None:
    table, reasons = run(campaign_docs(12))
    assert all(reasons)
    assert not any(campaign.flag(table, campaign.Config(min_domains=13)))
    # flag applies the relaxed bar (members of an established campaign): both shares scale it.
    assert not any(campaign.flag(table, campaign.Config(min_varied_containment=0.95, relaxed_share=1.0)))
    assert not any(campaign.flag(table, campaign.Config(enabled=False)))


def test_add_rejects_mismatched_inputs() -> None:
    index = campaign.CampaignIndex(campaign.Config())
    with pytest.raises(ValueError, match="1 ids, 2 urls"):
        index.add(["a"], ["u", "v"], np.zeros((1, 128), np.uint32), [np.zeros(0, np.uint64)], [1.0])
    with pytest.raises(ValueError, match="expected"):
        index.add(["a"], ["u"], np.zeros((1, 64), np.uint32), [np.zeros(0, np.uint64)], [1.0])


def test_a_copy_just_under_the_bar_stays_in_an_established_campaign() -> None:
    """10 domains, one copy diluted under the bar: the other 9 establish the campaign, and it keeps
    that copy; measured member by member only (relaxed_share 1.0), the whole campaign was lost."""
    docs = campaign_docs(10, seed=3)
    cfg = campaign.Config()
    table, _ = run(docs, cfg)
    # Dilute one copy with chrome (short lines: not body) until its containment falls between the bars.
    original = docs[0]["text"]
    diluted = None
    for extra in range(10, 400, 10):
        menu = "\n".join(f"Menu item {i}" for i in range(extra))
        docs[0] = dict(docs[0], text=original + "\n" + menu)
        table, reasons = run(docs, cfg)
        cont = table.column("campaign_containment").to_pylist()[0]
        if cfg.relaxed_share * cfg.min_containment <= cont < cfg.min_containment:
            diluted = reasons
            break
    assert diluted is not None, "fixture: no dilution put the copy between the bars"
    assert all(r == ["campaign:spun(10 domains)"] for r in diluted)
    strict = campaign.Config(relaxed_share=1.0)
    assert not any(run(docs, strict)[1])


def _notice(site: str, rng: random.Random) -> str:
    """A privacy notice as a template fills it in (written for this test), in the site's chrome."""
    lines = [
        f"This privacy policy explains how {site} collects and uses your personal data when you visit.",
        "By using the website you consent to the processing of your personal data under this policy.",
        "We use cookies to remember your preferences, and you can refuse cookies in your browser settings.",
        "We may share your personal information with third parties that process it on our behalf.",
        "You have the right to access, correct or erase the personal data we hold about you at any time.",
        "We retain your personal data only as long as the law requires or our legitimate interests allow.",
        "Where we rely on your consent, you may withdraw it without affecting earlier lawful processing.",
        "We take reasonable measures to protect your data, but we cannot guarantee absolute security.",
        "Our website may link to third-party sites whose privacy practices we do not control.",
        "We do not knowingly collect personal data from children under the age of sixteen years.",
        "We may change this privacy policy, and the date above shows when it was last updated.",
        f"If you have questions about this policy or your rights, write to privacy@{site}.",
    ]
    return chrome(site, " ".join(lines), rng)


def test_a_legal_notice_shared_by_unrelated_sites_is_not_a_copied_article() -> None:
    rng = random.Random(8)
    notices = [{"id": f"n{k}", "url": f"https://legal{k}.org/privacy", "text": _notice(f"legal{k}.org", rng)}
               for k in range(15)]  # fmt: skip
    table, reasons = run(notices + copied_farm(12) + background(10))
    assert not any(reasons[:15]) and all(reasons[15:27]) and not any(reasons[27:])
    # Without the exemption the same notices were a copied article on 15 domains.
    _, unexempt = run(notices + background(10), legal_cfg=legal.Config(sentence_share=None))
    assert all(r and r[0].startswith("campaign:") for r in unexempt[:15])


def test_legal_notice_needs_legal_sentences_and_an_addressed_reader() -> None:
    cfg = legal.Config()
    rng = random.Random(2)

    def notice(body: str) -> bool:
        return legal.legal_notice(body, cfg.sentence_share, cfg.address_density)

    body = legal.body_text(_notice("x.org", rng), cfg.min_sentence_words)
    assert notice(body)
    law_article = (
        "A contract is an agreement that creates legally binding obligations between the parties.\n"
        "Courts in most jurisdictions enforce the terms of a contract unless it breaches the law.\n"
        "The rights of third parties under a contract differ between legal systems.\n"
        "Damages are the usual remedy for a breach, and specific performance is rare."
    )
    assert not notice(law_article)  # about law, not addressed to its reader
    story = legal.body_text(" ".join(article(random.Random(4), 10)), cfg.min_sentence_words)
    banner = "We use cookies to give you the best experience, and you consent to our privacy policy."
    assert not notice(story + "\n" + banner)  # a cookie banner on an article
