"""trigger_mining: the corpus pass mines inserted rare tokens, not the words of the text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa

from poisonguard.filters import trigger_mining as tm
from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.runner import run_filter

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
    import pyarrow.parquet as pq

    q = pq.read_table(tmp_path / "out" / "quarantine").to_pylist()
    mined = {row["id"] for row in q if any(r.startswith("triggers:mined(") for r in row["reasons"])}
    assert mined == {f"d{i}" for i in range(20)}
