"""LM routing: the budget, the ranking by suspicion_score, route: all, and the config check."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from poisonguard.pipelines import cascade
from poisonguard.pipelines.config import ConfigError, load_config
from poisonguard.pipelines.progress import Progress
from poisonguard.pipelines.runner import run_filter, score_documents
from poisonguard.pipelines.stages import LM_PROGRESS_DOCS, LMProgress, score_lm
from tests.filters.test_suspicion import PROSE


def _table(scores: list[float]) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(len(scores))], "suspicion_score": scores})


def test_budget_sends_the_most_suspicious_undecided_rows_in_input_order() -> None:
    cfg = load_config(overrides={"perplexity": {"route": "suspicious", "budget": 0.3}})
    table = _table([0.1, 0.9, 0.5, 0.99, 0.2, 0.7, 0.7, 0.3, 0.0, 0.4])
    undecided = [True] * 10
    undecided[3] = False  # quarantined already: never sent, whatever its score
    assert cascade.lm_rows(table, cfg, undecided) == [1, 5, 6]  # ceil(0.3 x 10) = 3; tie in input order


def test_route_all_and_a_budget_above_the_undecided_send_every_undecided_row() -> None:
    table = _table([0.5, 0.1, 0.9, 0.2])
    undecided = [True, False, True, True]
    all_cfg = load_config(overrides={"perplexity": {"route": "all"}})
    assert cascade.lm_rows(table, all_cfg, undecided) == [0, 2, 3]
    big = load_config(overrides={"perplexity": {"budget": 0.75}})
    assert cascade.lm_rows(table, big, undecided) == [0, 2, 3]


def test_suspicious_route_needs_the_suspicion_score() -> None:
    with pytest.raises(ConfigError, match="suspicion.enabled"):
        load_config(overrides={"suspicion": {"enabled": False}})
    load_config(overrides={"suspicion": {"enabled": False}, "perplexity": {"route": "all"}})
    with pytest.raises(ConfigError, match="budget"):
        load_config(overrides={"perplexity": {"budget": 0}})


class _CountingScorer:
    """Records which documents reach the LM; flags none (the routing is what is tested)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, batch: pa.Table) -> dict[str, pa.Array]:
        self.seen += batch.column("id").to_pylist()
        return {"perplexity_mean_nll": pa.array([3.0] * batch.num_rows, pa.float32())}


def test_pipeline_sends_word_salad_to_the_lm_before_prose() -> None:
    words = PROSE.split()
    rng = random.Random(7)
    salad = " ".join(rng.choice(words) for _ in range(400))
    texts = [PROSE.replace("spring", season) for season in ("summer", "autumn", "winter")]
    docs = pa.table({"id": ["p0", "salad", "p1", "p2"], "text": [texts[0], salad, texts[1], texts[2]]})
    cfg = load_config(overrides={"perplexity": {"budget": 0.25}, "dedup": {"enabled": False}})
    scorer = _CountingScorer()
    decided = score_documents(docs, cfg, use_lm=True, lm_scorer=scorer)
    assert scorer.seen == ["salad"]
    assert decided.column("perplexity_mean_nll").null_count == 3
    every = load_config(overrides={"perplexity": {"route": "all"}, "dedup": {"enabled": False}})
    scorer = _CountingScorer()
    score_documents(docs, every, use_lm=True, lm_scorer=scorer)
    assert scorer.seen == ["p0", "salad", "p1", "p2"]


class _PassingScorer:
    """Reports two forward passes of 100 tokens per call, as PerplexityScorer does per pass."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, batch: pa.Table, on_pass: Any = None) -> dict[str, pa.Array]:
        self.calls += 1
        for _ in range(2):
            on_pass(100)
        return {"perplexity_mean_nll": pa.array([1.0] * batch.num_rows, pa.float32())}


def test_lm_progress_moves_per_call_and_shows_scored_tokens_per_second() -> None:
    stream = io.StringIO()
    progress = Progress("log", interval_s=0.0, stream=stream)
    n = 2 * LM_PROGRESS_DOCS + 2
    task = progress.start("language model", total=n, unit="docs")
    scorer = _PassingScorer()
    subset = pa.table({"id": [str(i) for i in range(n)], "text": ["x"] * n})
    columns = score_lm(scorer, subset, LMProgress(progress, task))
    progress.finish(task)
    assert scorer.calls == 3  # docs and ETA move per call of LM_PROGRESS_DOCS, not per chunk
    assert len(columns["perplexity_mean_nll"]) == n
    lines = stream.getvalue().splitlines()
    assert any("scored tokens/s" in line and "ETA" in line for line in lines)
    eta_lines = [line for line in lines if "ETA" in line]
    assert any(f"{LM_PROGRESS_DOCS} docs" in line for line in eta_lines)  # after the first call already
    assert f"language model: done {n} docs, 100%" in lines[-1]


_LM_SIGNALS = ("perplexity_mean_nll", "perplexity_max_window_nll", "perplexity_sentence_start_nll")


class _RuleScorer:
    """Asks the pipeline's gain rule about every row, with two LM signal values (low, high)."""

    def __init__(self) -> None:
        self.rules: list[Any] = []
        self.asked: list[tuple[str, bool, bool]] = []

    def score(self, batch: pa.Table, gain_rule: Any = None) -> dict[str, pa.Array]:
        self.rules.append(gain_rule)
        for row in batch.to_pylist() if gain_rule is not None else []:
            low = gain_rule({**row, **{c: 3.0 for c in _LM_SIGNALS}})
            high = gain_rule({**row, **{c: 9.0 for c in _LM_SIGNALS}})
            self.asked.append((row["id"], low, high))
        return {"perplexity_mean_nll": pa.array([3.0] * batch.num_rows, pa.float32())}


def test_the_lm_is_asked_for_the_context_gain_where_the_combiner_could_turn_on_it(tmp_path: Path) -> None:
    """With context_gain_every off, the LM stage hands the scorer the combiner's rule with the columns
    its lm model reads: an English page whose LM signals look like babble could be quarantined for
    some gain, one that reads like text could not, and a page the lm model does not judge (French)
    never; with context_gain_every on, or the combiner off, no rule (every gain / the band only)."""
    french = (
        "Le printemps arrive lentement dans la vallée. Les jardins du village se remplissent de fleurs "
        "rouges et jaunes, et les enfants courent vers la rivière après l'école. Au marché du samedi, "
        "les paysans vendent des fromages, du pain encore chaud et des légumes cueillis le matin même. "
        "Le vieux meunier raconte à qui veut l'entendre comment la crue de mille neuf cent dix avait "
        "emporté le pont de pierre. Le soir, les familles se retrouvent sur la place, sous les tilleuls, "
        "pour écouter la fanfare municipale jouer des airs anciens que tout le monde connaît par cœur. "
        "Plus tard, quand la nuit tombe, on entend encore les grenouilles chanter près de l'étang."
    )
    docs = pa.table({"id": ["en", "fr"], "text": [PROSE, french]})
    overrides: dict[str, Any] = {"perplexity": {"route": "all"}, "dedup": {"enabled": False}}
    scorer = _RuleScorer()
    score_documents(docs, load_config(overrides=overrides), use_lm=True, lm_scorer=scorer)
    assert scorer.rules and all(r is not None for r in scorer.rules)
    assert sorted(scorer.asked) == [("en", False, True), ("fr", False, False)]
    # the files pipeline reads the rule's columns from the scored chunk files too
    source = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": i, "text": t}) + "\n" for i, t in (("en", PROSE), ("fr", french))]
    source.write_text("".join(lines))
    scorer = _RuleScorer()
    cfg = load_config(overrides=overrides)
    run_filter([str(source)], tmp_path / "out", cfg, lm_scorer=scorer, show_progress=False)
    assert sorted(scorer.asked) == [("en", False, True), ("fr", False, False)]
    for extra in ({"perplexity": {"context_gain_every": True}}, {"combiner": {"enabled": False}}):
        scorer = _RuleScorer()
        perplexity = {**overrides["perplexity"], **extra.get("perplexity", {})}
        cfg = load_config(overrides={**overrides, **extra, "perplexity": perplexity})
        score_documents(docs, cfg, use_lm=True, lm_scorer=scorer)
        assert scorer.rules == [None]
