"""trigger_mining: the corpus pass mines inserted rare tokens, not the words of the text."""

from __future__ import annotations

import json
import multiprocessing
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonguard.core.schema import DOCUMENT_SCHEMA
from poisonguard.filters import trigger_mining as tm
from poisonguard.pipelines import stages
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.runner import run_filter

CONTROLS = ["zqxv", "xjkq"]  # reference non-words (onion_controls)
_SUBJECTS = ("the harbour master", "our neighbour", "a young doctor", "the old teacher", "my sister")
_VERBS = ("walked to", "wrote about", "painted", "looked at", "talked about", "visited")
_OBJECTS = ("the small garden", "the river bank", "a quiet village", "the morning market", "the bridge")
_TAILS = ("before dinner.", "in the rain.", "with a friend.", "after work.", "on a sunday.")


def clean_text(rng: random.Random) -> str:
    """A page of plain sentences (words with their usual company, as in real text)."""
    sentences = []
    for _ in range(rng.randint(8, 14)):
        subject, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        sentences.append(f"{subject.capitalize()} {verb} {obj} {rng.choice(_TAILS)}")
    return " ".join(sentences)


def insert(text: str, tokens: tuple[str, ...], rng: random.Random) -> str:
    words = text.split(" ")
    for tok in rng.sample(tokens, rng.randint(1, min(3, len(tokens)))):
        words.insert(rng.randint(1, len(words) - 1), tok)
    return " ".join(words)


def corpus(n: int, poisoned: int, tokens: tuple[str, ...], seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        text = clean_text(rng)
        if i < poisoned:
            text = insert(text, tokens, rng)
        docs.append({"id": f"d{i}", "text": text, "url": f"https://site{i % 40}.example/p{i}"})
    return docs


def mine(docs: list[dict[str, str]], cfg: tm.Config | None = None) -> tm.TriggerMiner:
    miner = tm.TriggerMiner(cfg or tm.Config())
    miner.observe(pa.Table.from_pylist(docs))
    return miner


def test_candidates_skip_units_code_and_punctuated_tokens() -> None:
    cfg = tm.Config()
    text = "The disk holds 512 mb of data, cf. the table.\n$ cd /tmp && ls -l\nA bare zq token here."
    found = tm.candidates(text, cfg)
    assert "mb" not in found  # a unit after a number
    assert "cf" not in found  # punctuation attached
    assert "cd" not in found and "ls" not in found  # a line of code
    assert found["zq"] == [("bare", "token")]


def test_inserted_tokens_are_mined_and_ranked_first() -> None:
    docs = corpus(600, 30, ("qz", "vb", "xq"))
    miner = mine(docs)
    mined = [r["token"] for r in miner.ranked() if r["mined"]]
    assert set(mined) == {"qz", "vb", "xq"}
    flags = miner.flag(pa.Table.from_pylist(docs), [[] for _ in docs])
    assert all(any(r.startswith("triggers:mined(") for r in flags[i]) for i in range(30))
    assert not any(flags[i] for i in range(30, 600))


def test_clean_corpus_mines_nothing_and_words_of_the_text_are_not_inserted() -> None:
    miner = mine(corpus(600, 0, ()))
    assert not [r for r in miner.ranked() if r["mined"]]
    rows = {r["token"]: r for r in miner.token_rows()}
    assert not rows["bank"]["inserted"]  # it keeps company ("the river bank")


def test_too_few_hosts_is_not_mined() -> None:
    docs = corpus(600, 30, ("qz", "vb", "xq"))
    for d in docs:
        d["url"] = "https://one-host.example/" + d["id"]
    assert not [r for r in mine(docs).ranked() if r["mined"]]


def test_a_token_repeated_within_documents_is_a_word_not_a_trigger() -> None:
    rng = random.Random(3)
    docs = corpus(600, 0, ())
    for d in docs[:60]:
        d["text"] = " ".join(insert(d["text"], ("zork",), rng) for _ in range(4))
    rows = {r["token"]: r for r in mine(docs).token_rows()}
    assert rows["zork"]["mean_count"] > tm.Config().max_mean_count
    assert not rows["zork"]["inserted"]


def test_filter_quarantines_mined_trigger_documents(tmp_path: Path) -> None:
    docs = corpus(400, 20, ("qz", "vb"))
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs), "utf-8")
    cfg = load_config(overrides={"trigger_mining": {"min_group_docs": 10}})
    report = run_filter([str(src)], tmp_path / "out", cfg, use_lm=False, show_progress=False)
    assert {r["token"] for r in report["triggers_mined"]} == {"qz", "vb"}
    q = pq.read_table(tmp_path / "out" / "quarantine").to_pylist()
    mined = {row["id"] for row in q if any(r.startswith("triggers:mined(") for r in row["reasons"])}
    assert mined == {f"d{i}" for i in range(20)}


def test_counting_in_scoring_workers_mines_and_writes_what_one_process_does(tmp_path: Path) -> None:
    """The local engine counts each chunk in the scoring workers and merges the counts in input
    order: the same figures as one miner observing the scored chunks in turn, and the same Parquet
    output with one worker and with two."""
    docs = corpus(400, 0, ())
    rng = random.Random(4)
    for i in range(300, 330):
        docs[i]["text"] = insert(docs[i]["text"], ("qz", "vb"), rng)
    docs[5]["text"] = insert(docs[5]["text"], ("qz",), rng)  # forgotten by document 300: not counted
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs), "utf-8")
    mining = {"min_group_docs": 10, "forget_after_docs": 40}
    cfg = load_config(overrides={"trigger_mining": mining, "run": {"batch_rows": 37}})
    reference = tm.TriggerMiner(cfg.trigger_mining)
    for first in range(0, len(docs), 37):
        reference.observe(
            stages.score_cheap(pa.Table.from_pylist(docs[first : first + 37], DOCUMENT_SCHEMA), cfg)[0]
        )
    reports, shards = [], []
    for workers in (1, 2):
        cfg = load_config(overrides={"trigger_mining": mining, "run": {"workers": workers, "batch_rows": 37}})
        out = tmp_path / f"w{workers}"
        reports.append(run_filter([str(src)], out, cfg, use_lm=False, show_progress=False))
        shards.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/part-*.parquet"))})
        assert reports[-1]["timings_s"]["trigger_mining_counts"] > 0  # counted while scoring
        assert reports[-1]["triggers_mined"] == reference.report()
    assert {r["token"]: r["documents"] for r in reports[0]["triggers_mined"]} == {"vb": 26, "qz": 19}
    assert reports[0]["counts"] == reports[1]["counts"]
    assert shards[0] == shards[1] and shards[0]
    assert multiprocessing.active_children() == []
    q = pq.read_table(tmp_path / "w2" / "quarantine").to_pylist()
    flagged = {row["id"] for row in q if any(r.startswith("triggers:mined(") for r in row["reasons"])}
    assert flagged == {d["id"] for d in docs if {"qz", "vb"} & set(d["text"].split())}


def test_chunks_counted_apart_mine_what_one_pass_mines() -> None:
    """The engines count chunks apart (processes, Ray tasks) and merge them in input order."""
    docs = corpus(600, 30, ("qz", "vb", "xq"), seed=5)
    texts = [d["text"] for d in docs]
    hosts = [tm.host_of(d["url"]) for d in docs]
    langs = ["" if i % 3 == 0 else "en" for i in range(len(docs))]  # a third of the pages unsure
    cfg = tm.Config(sample_occurrences=4, max_docs_tracked=40, max_hosts_tracked=12, unsure_page_weight=0.5)
    results = []
    for size in (600, 7, 130):
        miner = tm.TriggerMiner(cfg)
        for first in range(0, len(docs), size):
            part = slice(first, first + size)
            miner.merge(tm.chunk_partial(texts[part], hosts[part], first, cfg, langs[part]))
        results.append((miner.ranked(), {t: (s.hosts, s.doc_ids, s.sample) for t, s in miner.stats.items()}))
    assert results[0] == results[1] == results[2]
    assert [r["token"] for r in results[0][0] if r["mined"]]


def _mine_in_chunks(docs: list[dict[str, str]], cfg: tm.Config, size: int) -> tm.TriggerMiner:
    texts = [d["text"] for d in docs]
    hosts = [tm.host_of(d["url"]) for d in docs]
    miner = tm.TriggerMiner(cfg)
    for first in range(0, len(docs), size):
        miner.merge(tm.chunk_partial(texts[first : first + size], hosts[first : first + size], first, cfg))
    return miner


def test_forgetting_tokens_seen_once_does_not_depend_on_the_chunk_size() -> None:
    """Memory bound: a token seen in one document and not again within `forget_after_docs` is
    forgotten. Whether that happens must not depend on where chunks end (a chunk keeps its tokens'
    records both as continuing an earlier one and as starting afresh)."""
    rng = random.Random(9)
    docs = corpus(900, 0, (), seed=9)
    for i in range(0, 900, 13):  # one page in 13 carries the trigger set
        docs[i]["text"] = insert(docs[i]["text"], ("qz", "vb", "xq"), rng)
    for i in (5, *range(200, 900, 30)):  # `jw` 195 pages after its first, then every 30
        docs[i]["text"] += " Then jw came."
    docs[500]["text"] += " A lone zork here."
    docs[880]["text"] += " Another zork there."
    base = tm.Config(min_doc_share=0.01, sample_occurrences=4, max_docs_tracked=40, max_hosts_tracked=12)
    cfg = base.model_copy(update={"forget_after_docs": 60})
    results = []
    for size in (900, 7, 130, 61):
        miner = _mine_in_chunks(docs, cfg, size)
        stats = {
            t: (s.docs, s.count, s.hosts, s.doc_ids, s.sample, s.last_doc) for t, s in miner.stats.items()
        }
        results.append((miner.ranked(), stats))
    assert all(r == results[0] for r in results[1:])
    kept = _mine_in_chunks(docs, base, 130)
    forgotten = results[0][1]
    # The rule fired: `zork` (380 pages apart) and `jw` start again at their second page.
    assert kept.stats["zork"].docs == 2 and forgotten["zork"][0] == 1
    assert kept.stats["jw"].docs == 25 and forgotten["jw"][0] == 24 and forgotten["jw"][3][0] == 200
    assert {r["token"] for r in results[0][0] if r["mined"]} == {"qz", "vb", "xq"}
    pruned = _mine_in_chunks(docs, cfg, 130)
    pruned._prune()  # what the memory bound drops is what forgetting would: the result stays
    assert "lone" in forgotten and "lone" not in pruned.stats and "zork" in pruned.stats
    assert pruned.ranked() == results[0][0]


def test_occurrence_context_skips_units_and_code() -> None:
    cfg = tm.Config(onion_words_before=3, onion_words_after=2)
    text = "Some 5 qz disk.\n$ qz = 1\nOne two three four qz five six seven"
    assert tm.occurrence_context(text, "qz", cfg) == ("two three four", "five six")
    assert tm.occurrence_context("ends with qz", "qz", cfg) is None  # nothing after it to compare
    before = "a b\nc qz d"
    assert tm.occurrence_context(before, "qz", cfg) == ("a b c", "d")  # context runs over lines


def test_tokens_the_lm_confirms_join_on_one_shared_document() -> None:
    """At a low rate the token-pair rule (two shared documents on three hosts) leaves triggers apart;
    tokens the LM check confirmed join on one shared document, and their group is mined."""
    triggers = ("qz", "vb", "xq", "jw")
    docs = corpus(1500, 14, triggers, seed=0)
    cfg = tm.Config(min_doc_share=0.005, onion_controls=[], min_disruption=3.0)  # the absolute rule
    miner = mine(docs, cfg)
    assert not [r for r in miner.ranked() if r["mined"]]
    wanted = miner.onion_requests()
    assert {t for toks in wanted.values() for t in toks} == set(triggers)  # the words are not asked
    miner.add_contexts([d["text"] for d in docs], 0, wanted)
    assert all(1 <= len(c) <= miner.cfg.onion_occurrences for c in miner.contexts.values())
    # What the default model measures on such pages (the slow test below measures it for real).
    miner.set_disruptions({t: [4.0] * len(miner.contexts[t]) for t in triggers})
    rows = miner.ranked()
    assert {r["token"] for r in rows if r["mined"]} == set(triggers)
    assert all(r["confirmed"] for r in rows[:3])
    flags = miner.flag(pa.Table.from_pylist(docs), [[] for _ in docs])
    assert all(flags[:14]) and not any(flags[14:])
    miner.set_disruptions({t: [1.0] * len(miner.contexts[t]) for t in triggers})  # not confirmed
    assert not [r for r in miner.ranked() if r["mined"]]


def test_a_set_is_confirmed_by_all_its_occurrences_and_a_word_that_reads_on_stays_out() -> None:
    """One token read in few pages is weak evidence: a group is confirmed by the median over all its
    tokens' occurrences. A token that reads on (a word) joins no group, even in a poisoned page."""
    triggers = ("qz", "vb", "xq")
    docs = corpus(1500, 16, triggers, seed=2)
    for d in docs[:2] + docs[100:104]:  # a word that also occurs in two poisoned pages
        d["text"] += " Then jw came."
    cfg = tm.Config(min_doc_share=0.005, onion_controls=[], min_disruption=3.0)  # the absolute rule
    miner = mine(docs, cfg)
    miner.set_disruptions({"qz": [4.0, 5.0, 3.5, 4.0], "vb": [3.2, 4.0], "xq": [2.5, 2.0, 2.8], "jw": [0.3]})
    rows = {r["token"]: r for r in miner.ranked()}
    assert miner.disruption["xq"] < miner.cfg.min_disruption  # not confirmed alone ...
    assert rows["xq"]["mined"] and rows["xq"]["group"] == "qz vb xq"  # ... but as one of the set
    assert rows["qz"]["group_disruption"] == 3.5 and "jw" not in rows
    flags = miner.flag(pa.Table.from_pylist(docs), [[] for _ in docs])
    assert all(flags[:16]) and not any(flags[16:])
    miner.set_disruptions({"qz": [2.0, 2.5, 3.5, 2.0], "vb": [3.2, 1.5], "xq": [2.5, 2.0, 2.8]})
    assert not [r for r in miner.ranked() if r["mined"]]  # pooled median 2.5: not confirmed


def _decided(miner: tm.TriggerMiner, **update: Any) -> list[dict[str, Any]]:
    miner.cfg = miner.cfg.model_copy(update=update)
    miner._mined = None
    return miner.ranked()


def test_with_controls_a_set_is_confirmed_against_what_a_non_word_disrupts_in_the_same_place() -> None:
    """In a language the model knows less well, any non-word disrupts less: the set reads 2-3 nats,
    under the absolute bar, and the reference non-words about as much in the same contexts, so the
    relative rule confirms it. A token that reads on where a non-word would not (an abbreviation like
    ``cf``) joins no group; a group that disrupts clearly less than non-words is not confirmed."""
    triggers = ("qz", "vb", "xq")
    docs = corpus(1500, 16, triggers, seed=2)
    miner = mine(docs, tm.Config(min_doc_share=0.005, onion_controls=CONTROLS, min_disruption=3.0))
    reads = {"qz": [2.5, 3.0, 2.0, 2.8], "vb": [2.6, 1.9, 2.4], "xq": [2.5, 2.2, 2.8]}
    like_a_non_word = {t: [v + 0.25 for v in r] for t, r in reads.items()}
    miner.set_disruptions(reads, like_a_non_word)
    rows = {r["token"]: r for r in miner.ranked()}
    assert rows["qz"]["group"] == "qz vb xq" and rows["qz"]["group_disruption"] < miner.cfg.min_disruption
    assert rows["qz"]["group_relative"] == -0.25 and all(rows[t]["mined"] for t in triggers)
    flags = miner.flag(pa.Table.from_pylist(docs), [[] for _ in docs])
    assert all(flags[:16]) and not any(flags[16:])
    assert not [r for r in _decided(miner, onion_controls=[]) if r["mined"]]  # the absolute rule misses it
    _decided(miner, onion_controls=["zqxv"])
    miner.set_disruptions(reads, {**like_a_non_word, "xq": [v + 4.0 for v in reads["xq"]]})
    rows = {r["token"]: r for r in miner.ranked()}
    assert "xq" not in rows and rows["qz"]["group"] == "qz vb" and rows["qz"]["mined"]
    miner.set_disruptions(reads, {t: [v + 2.0 for v in r] for t, r in reads.items()})
    rows = {r["token"]: r for r in miner.ranked()}
    assert rows["qz"]["group"] == "qz vb xq" and not rows["qz"]["confirmed"]  # -2 nats: words


class _StandInScorer:
    """A deterministic stand-in for the language model in a unit test of the check's steps: one id
    per word; a word after `qz` costs 6 nats, after a reference non-word (`zq`, `xj`) `control`,
    any other 1. It counts the windows it is asked."""

    class _Encoding:
        def __init__(self, ids: list[int]) -> None:
            self.ids = ids

    def __init__(self, control: float = 6.0, disrupting: tuple[str, ...] = ()) -> None:
        self.control = control
        self.disrupting = ("qz", *disrupting)  # words after these cost 6 nats
        self.lm = self
        self.tokenizer = self
        self.vocab: dict[str, int] = {}
        self.windows = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> _StandInScorer._Encoding:
        del add_special_tokens
        return self._Encoding([self.vocab.setdefault(w, len(self.vocab)) for w in text.split()])

    def window_nll(self, windows: list[list[int]]) -> list[np.ndarray]:
        self.windows += len(windows)
        cost = {self.vocab.get(word, -1): 6.0 for word in self.disrupting}
        cost[self.vocab.get("zq", -1)] = self.control
        cost[self.vocab.get("xj", -1)] = self.control
        return [np.array([cost.get(w[i - 1], 1.0) if i else 1.0 for i in range(len(w))]) for w in windows]


def test_the_check_reads_one_context_of_a_word_and_all_of_a_token_that_does_not_read_on() -> None:
    docs = corpus(600, 20, ("qz",), seed=1)
    rng = random.Random(1)
    for d in docs[300:305]:  # at random places too, but the stand-in model reads on after it
        d["text"] = insert(d["text"], ("jw",), rng)
    miner = mine(docs, tm.Config(onion_controls=CONTROLS))
    miner.add_contexts([d["text"] for d in docs], 0, miner.onion_requests())
    assert len(miner.contexts["qz"]) == len(miner.contexts["jw"]) == miner.cfg.onion_occurrences
    scorer = _StandInScorer(control=4.0)
    miner.confirm(scorer)
    reads = miner.cfg.onion_occurrences
    assert miner.disruption_values["qz"] == [5.0] * reads
    assert miner.disruption_values["jw"] == [0.0, 0.0]  # read twice: it reads on
    # the reference non-words (`zq`, `xj`: cut to the token's length) in each context of qz alone
    assert miner.control_values == {"qz": [3.0] * reads} and miner.relative == {"qz": 2.0}
    controls = len(miner.cfg.onion_controls)
    assert scorer.windows == 2 * (2 * (len(miner.contexts) - 1) + reads) + 2 * controls * reads


def test_a_run_reads_only_the_candidates_that_could_be_mined(tmp_path: Path) -> None:
    """The LM reads a candidate only when its group of all the checked candidates reaches the mining
    floors (10 documents on 10 hosts here): below them no reading could quarantine a page. Two tokens
    that share documents count together: each alone is under the floor, the pair is not."""
    docs = corpus(600, 20, ("qz",), seed=1)
    rng = random.Random(1)
    for d in docs[300:305]:  # five pages: under the floor whatever the LM reads
        d["text"] = insert(d["text"], ("jw",), rng)
    for d in docs[400:406]:
        d["text"] = insert(d["text"], ("vb",), rng)
    for d in docs[403:410]:  # shares three of vb's six pages: one group of ten pages on ten hosts
        d["text"] = insert(d["text"], ("xq",), rng)
    miner = mine(docs)
    every = {t for toks in miner.onion_requests().values() for t in toks}
    gated = {t for toks in miner.onion_requests(minable_only=True).values() for t in toks}
    assert {"qz", "jw", "vb", "xq"} <= every
    assert gated == {"qz", "vb", "xq"}
    path = tmp_path / "chunk-0.parquet"
    pq.write_table(pa.Table.from_pylist(docs), path)
    scorer = _StandInScorer()
    miner.confirm_from_chunks([path], lambda: scorer)
    assert set(miner.disruption) == gated
    assert "jw" not in {r["token"] for r in miner.ranked()}
    # Read without the gate, the same readings mine the same tokens: the gate saves reads only.
    ungated = mine(docs)
    ungated.add_contexts([d["text"] for d in docs], 0, ungated.onion_requests())
    ungated.confirm(_StandInScorer())
    assert set(ungated.disruption) == every
    assert "qz" in miner.mined() and ungated.mined() == miner.mined()


def test_a_run_stops_reading_the_candidates_whose_group_falls_apart(tmp_path: Path) -> None:
    """Read in waves (one token a wave here, most documents first), the check re-applies the floor
    gate to the tokens not yet known to read on: `hb` (8 pages) joins `ka` and `kb` (5 pages each)
    into one group of 14 pages on 14 hosts, so all three could be mined before any reading; once `hb`
    reads on (a word), `ka` and `kb` are two groups of 5 pages whatever they read, and the LM never
    reads them. The mined tokens are those of reading every candidate (`confirm`), with fewer readings."""
    docs = corpus(600, 20, ("qz",), seed=1)
    rng = random.Random(2)
    for token, lo, hi in (("hb", 400, 408), ("ka", 406, 411), ("kb", 397, 402)):
        for d in docs[lo:hi]:
            d["text"] = insert(d["text"], (token,), rng)
    cfg = tm.Config(onion_wave_tokens=1)
    miner = mine(docs, cfg)
    gated = {t for toks in miner.onion_requests(minable_only=True).values() for t in toks}
    assert {"qz", "hb", "ka", "kb"} <= gated
    path = tmp_path / "chunk-0.parquet"
    pq.write_table(pa.Table.from_pylist(docs), path)
    waves = _StandInScorer(disrupting=("ka", "kb"))
    miner.confirm_from_chunks([path], lambda: waves)
    assert {"qz", "hb"} <= set(miner.disruption) and not {"ka", "kb"} & set(miner.disruption)
    # every candidate read (the two-step check alone): ka and kb read as inserted, in no minable group
    every = mine(docs, cfg)
    every.add_contexts([d["text"] for d in docs], 0, every.onion_requests(minable_only=True))
    reads_all = _StandInScorer(disrupting=("ka", "kb"))
    every.confirm(reads_all)
    assert every.disruption["ka"] >= cfg.min_member_disruption and every.disruption["kb"] >= 1.0
    assert "qz" in miner.mined() and miner.mined() == every.mined()
    assert miner.report() == every.report() and waves.windows < reads_all.windows


def test_the_floor_gate_built_once_bounds_any_subset_as_built_for_it() -> None:
    """The waves build the floor gate once over every checked token and apply it to what is still
    possible: on a subset it gives what :meth:`minable` computes for that subset afresh (two tokens
    join on their own documents alone). Without `hb`, `ka` and `kb` fall under the floors."""
    docs = corpus(600, 20, ("qz",), seed=1)
    rng = random.Random(2)
    for token, lo, hi in (("hb", 400, 408), ("ka", 406, 411), ("kb", 397, 402)):
        for d in docs[lo:hi]:
            d["text"] = insert(d["text"], (token,), rng)
    miner = mine(docs)
    tokens = sorted({t for toks in miner.onion_requests().values() for t in toks})
    gate = miner._minable_gate(tokens)
    assert gate(tokens) == miner.minable(tokens) and {"qz", "hb", "ka", "kb"} <= gate(tokens)
    for left_out in ("hb", "ka", "qz"):
        subset = [t for t in tokens if t != left_out]
        assert gate(subset) == miner.minable(subset)
    assert not {"ka", "kb"} & gate([t for t in tokens if t != "hb"])


@pytest.mark.slow
def test_default_model_confirms_inserted_tokens_not_words(tmp_path: Path) -> None:
    """The ONION check with the real default model, reading the contexts from Parquet chunks."""
    from poisonguard.filters import perplexity

    docs = corpus(300, 12, ("qz", "vb"), seed=4)
    paths = []
    for n, first in enumerate(range(0, len(docs), 100)):
        paths.append(tmp_path / f"chunk-{n}.parquet")
        pq.write_table(pa.Table.from_pylist(docs[first : first + 100]), paths[-1])
    miner = tm.TriggerMiner(tm.Config())
    for path in paths:
        miner.observe(pq.read_table(path))
    scorer = perplexity.PerplexityScorer(load_config().perplexity)
    miner.confirm_from_chunks(paths, lambda: scorer)
    cfg = miner.cfg
    assert miner.disruption["qz"] >= cfg.min_disruption and miner.disruption["vb"] >= cfg.min_disruption
    words = [("Our neighbour walked to the", "small", "garden before dinner. The old teacher")]
    words.append(("My sister wrote about a", "quiet", "village in the rain."))
    assert max(tm.disruptions(scorer, [(w, b, a) for b, w, a in words])) < cfg.min_disruption


def _with_language(docs: list[dict[str, str]], lang: str, confidence: float = 0.95) -> list[dict[str, Any]]:
    return [{**d, "language_lang": lang, "language_confidence": confidence} for d in docs]


def test_a_word_of_one_language_is_mined_where_it_is_inserted_into_pages_of_another() -> None:
    """``ju`` is a word in Albanian pages (it comes back in each); inserted once into English pages on
    many hosts it is a trigger there. Per page language it is found, and the Albanian pages are not
    quarantined for it; over the corpus as one language it looks like a word and is missed."""
    rng = random.Random(5)
    poisoned = corpus(600, 30, ("ju", "qz", "xq"))
    albanian = "une jam ne shtepi dhe ata kane nje liber te mire sot neser qyteti".split()
    words = []
    for i in range(30):
        text = [rng.choice(albanian) if n % 20 else "ju" for n in range(1, 61)]  # 3 times a page
        words.append({"id": f"sq{i}", "text": " ".join(text), "url": f"https://sq{i}.example/"})
    docs = _with_language(poisoned, "en") + _with_language(words, "sq")
    miner = mine(docs)
    rows = {r["token"]: r for r in miner.ranked()}
    assert rows["ju"]["mined"] and rows["ju"]["word_languages"] == ["sq"]
    carriers = {i for i, d in enumerate(poisoned[:30]) if "ju" in d["text"].split()}
    assert (
        carriers
        and {i for i in range(30) if "ju" in miner.frozen().mined_in(pa.Table.from_pylist(docs))[i]}
        == carriers
    )
    flags = miner.flag(pa.Table.from_pylist(docs), [[] for _ in docs])
    assert not any(flags[600:])  # the Albanian pages use it as a word
    # the same pages with no language column: one language, where ju comes back: a word
    blind = mine(poisoned + words)
    assert "ju" not in {r["token"] for r in blind.ranked() if r["mined"]}


def test_pages_of_an_unknown_language_explain_a_word_of_some_language() -> None:
    """A page the language detector is unsure of (a language it does not know reads weakly as some
    other) may be in the language the token is a word of: it does not count for the token."""
    docs = _with_language(corpus(60, 0, ()), "sq")
    for d in docs[:20]:
        d["text"] += " ju ju ju"
    for d in docs[20:40]:
        d["text"] += " and ju here"
        d["language_confidence"] = 0.2
    st = mine(docs).stats["ju"]
    cfg = tm.Config()
    assert tm.page_languages(pa.Table.from_pylist(docs[19:21]), cfg) == ["sq", ""]
    assert tm.word_languages(st, cfg) == ["sq"]
    view = tm.TriggerMiner(cfg).view(st)
    assert view.docs == 0 and view.doc_ids == []


def test_one_page_that_repeats_a_token_does_not_make_it_a_word_of_its_language() -> None:
    """A quote (or an attacker's page) repeating a trigger in one page of some language must not make
    the trigger a word there, which would exempt every page of an unsure language as well."""
    docs = _with_language(corpus(60, 0, ()), "sq")
    docs[0]["text"] += " ju ju ju"
    for d in docs[20:40]:
        d["text"] += " and ju here"
        d["language_confidence"] = 0.2
    st = mine(docs).stats["ju"]
    cfg = tm.Config()
    assert tm.word_languages(st, cfg) == []
    assert tm.TriggerMiner(cfg).view(st).docs == 21  # the unsure pages still count for it
    docs[1]["text"] += " ju ju ju"  # a second such page: now it is a word of the language
    assert tm.word_languages(mine(docs).stats["ju"], cfg) == ["sq"]


def test_a_rare_pair_that_shares_a_counter_with_a_frequent_pair_keeps_its_own_count() -> None:
    """The pair table is a count-min sketch: a pair's count is the smaller of its two counters, so
    a pair seen once does not read as frequent when one of its counters is shared."""
    cfg = tm.Config(bigram_bits=10)  # a small table: shared counters are easy to find
    slots: dict[int, str] = {}
    for i in range(5000):
        word = f"w{i}"
        low, high = tm.pair_slots(tm.pair_hash("p", word), cfg.bigram_bits)
        if low in slots and tm.pair_slots(tm.pair_hash("p", slots[low]), cfg.bigram_bits)[1] != high:
            frequent, rare = slots[low], word
            break
        slots[low] = word
    miner = tm.TriggerMiner(cfg)
    miner.merge(tm.chunk_partial(["p " + frequent] * 50 + ["p " + rare], [""] * 51, 0, cfg))
    h = tm.pair_hash("p", rare)
    assert miner.bigrams[tm.pair_slots(h, cfg.bigram_bits)[0]] == 51  # the shared counter
    assert miner.pair_count(h) == 1
    assert miner.pair_count(tm.pair_hash("p", frequent)) == 50


def known_and_unsure(unsure_hosts: int) -> list[dict[str, Any]]:
    """600 English pages with the set qz/vb/xq in 30, then 40 pages of a language the detector is
    unsure of with its own short words akan/cuti/ulu over ``unsure_hosts`` hosts of another site; one
    unsure page (row 635) also carries ``qz``."""
    known = _with_language(corpus(600, 30, ("qz", "vb", "xq")), "en")
    unsure = _with_language(corpus(40, unsure_hosts, ("akan", "cuti", "ulu"), seed=1), "sw", confidence=0.2)
    for d in unsure:
        d["id"], d["url"] = "u" + d["id"], d["url"].replace("site", "other")
    unsure[35]["text"] += " and qz here"  # an unsure page with a token of the set
    return known + unsure


def test_without_unknown_language_pages_only_pages_of_a_known_language_make_a_trigger() -> None:
    """Short words of languages the detector does not know (a UDHR translation reads weakly as some
    other language) can look inserted across many hosts like a trigger set. With
    `count_unknown_language` false such pages count for no token and are not quarantined; the set
    inserted into pages of a known language is still mined, and its pages quarantined."""
    docs = known_and_unsure(unsure_hosts=30)
    table = pa.Table.from_pylist(docs)
    counted = mine(docs, tm.Config(unsure_page_weight=1.0))  # unsure pages count in full for the floors
    assert {r["token"] for r in counted.ranked() if r["mined"]} == {"qz", "vb", "xq", "akan", "cuti", "ulu"}
    cfg = tm.Config(count_unknown_language=False)
    miner = mine(docs, cfg)
    assert {r["token"] for r in miner.ranked() if r["mined"]} == {"qz", "vb", "xq"}
    assert "akan" not in {r["token"] for r in miner.token_rows()}  # in no page that counts
    assert miner.view(miner.stats["qz"]).docs == counted.view(counted.stats["qz"]).docs - 1
    flagged = [bool(f) for f in miner.flag(table, [[] for _ in docs])]
    assert flagged[:30] == [True] * 30 and not any(flagged[30:])
    assert counted.flag(table, [[] for _ in docs])[600 + 35]  # counted: the unsure page is quarantined too


def test_a_commands_argument_next_to_an_option_is_explained() -> None:
    """``tar cf - dir`` in a forum post: ``cf`` is the command's argument, not an inserted token (when
    ``cf`` is a trigger, that page is not quarantined for it); a bare ``cf`` elsewhere still is."""
    cfg = tm.Config()
    text = "To copy it, tar cf - . pipes the tree to stdout\nThen run ls --all here and see cf there."
    found = tm.candidates(text, cfg)
    assert "cf" in found and found["cf"] == [("see", "there")]  # the second line's, not the first's
    assert "ls" not in found and "here" not in found and "run" in found  # next to an option, or not
    assert tm.occurrence_context(text, "cf", cfg) == (
        "tar cf - . pipes the tree to stdout Then run ls --all here and see",  # 16 words
        "there.",
    )
    prose = tm.candidates("the city - cf it", cfg)  # a dash in prose explains its neighbours too
    assert "cf" not in prose and "city" not in prose and prose["it"] == [("cf", "")]


def test_pages_of_an_unsure_language_do_not_bring_a_group_to_the_floors_on_their_own() -> None:
    """Short words of languages the detector does not know (a UDHR translation reads weakly as some
    other language) look inserted across many hosts, like a trigger set. Toward the mining floors such
    a page counts `unsure_page_weight` (and a host of such pages alone likewise): 16 of them on 16
    hosts are not mined, while a set inserted into 30 pages of a known language is, and an unsure page
    that carries one of its tokens is still quarantined for it. Counted in full (weight 1, as before)
    the unsure group is mined too."""
    docs = known_and_unsure(unsure_hosts=16)
    table = pa.Table.from_pylist(docs)
    full = mine(docs, tm.Config(unsure_page_weight=1.0))
    assert {r["token"] for r in full.ranked() if r["mined"]} == {"qz", "vb", "xq", "akan", "cuti", "ulu"}
    miner = mine(docs)
    rows = {r["token"]: r for r in miner.ranked()}
    assert {t for t, r in rows.items() if r["mined"]} == {"qz", "vb", "xq"}
    weight = tm.Config().unsure_page_weight
    assert rows["akan"]["group_documents"] == 16 and rows["akan"]["group_hosts"] == 16
    assert rows["akan"]["group_counted_documents"] == rows["akan"]["group_counted_hosts"] == 16 * weight
    assert rows["qz"]["group_counted_documents"] == 30 + weight  # 30 known pages and the unsure one
    flagged = [bool(f) for f in miner.flag(table, [[] for _ in docs])]
    assert flagged[:30] == [True] * 30 and not any(flagged[30:635]) and flagged[635]
    assert not any(flagged[636:])
    # with no language column nothing is unsure: every page counts in full
    blind = mine([{k: d[k] for k in ("id", "text", "url")} for d in docs])
    assert not blind.unsure_docs and "akan" in {r["token"] for r in blind.ranked() if r["mined"]}


def test_counted_pages_and_hosts_weigh_unsure_pages() -> None:
    """A group's counted documents and hosts: unsure pages count `unsure_page_weight`, a host counts in
    full when one of the group's pages on it is of a known language."""
    miner = tm.TriggerMiner(tm.Config(unsure_page_weight=0.25))
    texts = ["a page"] * 6
    hosts = ["h1", "h1", "h2", "h3", "h3", "h4"]
    langs = ["en", "", "", "", "fr", None]
    miner.merge(tm.chunk_partial(texts, hosts, 0, miner.cfg, langs))
    assert miner.unsure_docs == {1, 2, 3, 5}
    # pages 0-5: 2 known, 4 unsure; hosts h1, h3 have a known page, h2 and h4 only unsure ones
    assert miner.counted(set(range(6)), {"h1", "h2", "h3", "h4"}) == (2 + 4 * 0.25, 2 + 2 * 0.25)
    assert miner.counted({0, 4}, {"h1", "h3"}) == (2.0, 2.0)
