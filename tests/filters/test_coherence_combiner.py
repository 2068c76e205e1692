"""coherence (long-range topic reuse) and combiner (weak signals add up)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from poisonguard.filters import coherence, combiner

ARTICLE = """The lighthouse at Carrick Point was built in 1858 to guard the narrow channel between the
harbour and the northern reefs. Its keepers lived in two cottages beside the tower and rowed to the
harbour for supplies every week.

In the storm of 1893 the lighthouse lamp failed for three nights. The keepers climbed the tower with
hand lanterns, and the harbour pilots steered the fishing boats past the reefs by their light.

The tower was automated in 1961, and the keepers' cottages became a museum. Visitors can climb the
lighthouse stairs in summer and look across the channel to the reefs and the harbour wall.

Today Carrick Point lighthouse is owned by the harbour trust, which repainted the tower in 2019 and
keeps the museum cottages open to visitors from May to September."""

OTHER_TEXTS = [
    "Parliament debated the budget until midnight while farmers protested about grain prices outside.",
    "The recipe needs flour, butter, sugar and three eggs whisked together before baking slowly.",
    "Configure the server by editing the settings file and restarting the daemon after changes.",
    "Her violin teacher insisted on scales every morning before any concerto practice began.",
    "Astronomers measured the comet's orbit and predicted its return within seventy years.",
    "The football season ended with a dramatic penalty shootout under floodlights in November.",
]


SYLLABLES = ("ka", "lo", "mer", "tin", "dra", "sel", "vo", "rum", "pel", "gan", "sor", "bi")


def babble(seed: int = 0, words: int = 220) -> str:
    """Word salad over a large corpus (as a tarpit's chain draws from one): these texts plus 1,728
    other words of 6-9 letters, function words as often as in prose; no subject."""
    rng = random.Random(seed)
    corpus_words = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]
    pool = " ".join(OTHER_TEXTS + [ARTICLE]).split() + corpus_words
    return " ".join(rng.choice(("the", "of", "and", "to", rng.choice(pool))) for _ in range(words))


def test_a_real_article_reuses_its_topic_words_and_babble_does_not() -> None:
    cfg = coherence.Config()
    real = coherence.measure(ARTICLE, cfg)
    salad = coherence.measure(babble(), cfg)
    assert real["topic_reuse"] > salad["topic_reuse"] + 0.15
    assert real["type_ratio"] < salad["type_ratio"]
    assert real["entity_reuse"] > 0.3  # Carrick Point, Today...


def test_short_text_gets_no_signals_and_score_keeps_row_order() -> None:
    cfg = coherence.Config()
    assert "topic_reuse" not in coherence.measure("A short note.", cfg)
    cols = coherence.score(pa.table({"text": [ARTICLE, "short", babble()]}), cfg)
    reuse = cols["coherence_topic_reuse"].to_pylist()
    assert reuse[1] is None and reuse[0] > reuse[2]
    assert coherence.flag(pa.table(cols), cfg) == [[], [], []]  # action off: measure only
    on = cfg.model_copy(update={"action": "quarantine", "max_topic_reuse": 0.2})
    assert coherence.flag(pa.table(cols), on) == [[], [], ["coherence:no_topic"]]


DIALOGUE = [
    '"Will you come to the harbour tomorrow?" asked Anne.',
    '"Only if the weather holds," said her brother. "The pilots say a storm is coming."',
    '"Then we shall go on Thursday," she replied, "and take the children."',
]


def test_quotations_out_of_order_are_counted_and_real_dialogue_has_none() -> None:
    assert coherence.quote_errors(DIALOGUE) == 0
    # a quotation reopened at a paragraph's start (fiction does that) is not an error
    assert coherence.quote_errors(['"The first part of a long speech,', '"and its end."']) == 0
    spliced = ['the harbour" asked Anne. She said "the pilots and "the storm came. The end."']
    assert coherence.quote_errors(spliced) == 2  # a close with none open; an open while one is open
    # the spaces around a mark tell its side, whatever the glyph (Arabic opens with ”, German with „)
    assert coherence.quote_errors(["“Curly marks.” And ”Arabic ones“ and „German ones“ too."]) == 0
    assert coherence.quote_errors(["a close first” then text"]) == 1
    assert coherence.quote_errors(['except for href="" and src="" in tags']) == 0
    # shell and config assignments, escaped marks in code, Arabic punctuation after a close
    assert coherence.quote_errors(['export EMAIL="a@b.org" NAME="Ann Lee"']) == 0
    assert coherence.quote_errors(['LogFormat "%h \\"%r\\" %b" vhost']) == 0
    assert coherence.quote_errors(["ملفات ”الوضع المحرفي“ و ملفات ”الوضع الكتلي“، وكل"]) == 0
    assert coherence.quote_errors(["ISO-8859-1 （即“Latin 1”）到 ISO-8859-15 （即“Latin 9”）的原因。"]) == 0


def test_brackets_unmatched_in_a_paragraph_are_counted_emoticons_and_list_markers_excused() -> None:
    assert coherence.bracket_errors(["Call f(a, b) once (see below).", "1) first 2) second b) third"]) == 0
    assert coherence.bracket_errors(["Nice work :-) and thanks ;) (really) (^_^)"]) == 0
    assert coherence.bracket_errors(["x", "f(a, b and then", "an aside) ends here", "y"]) == 2
    # a text cut at either end: a close in the first paragraph, an open in the last are excused
    assert coherence.bracket_errors(["king or queen). Beds", "Fine (closed).", "cut (like thi"]) == 0
    assert coherence.bracket_errors(["x", "chr(98) and (==) are not emoticons (a) :)"]) == 0
    assert coherence.bracket_errors(["x", "all parts (text, html, whatever :) into it", "y"]) == 0


def test_brackets_in_a_one_paragraph_page_are_judged() -> None:
    # one close at the start and one open at the end are what a cut leaves; a chain leaves more
    assert coherence.bracket_errors(["king or queen). Beds (made) and a cut (like thi"]) == 0
    babble = "the value) of the (list is returned by f(a, and the) keys (sorted by the (default"
    assert coherence.bracket_errors([babble]) == 2  # of 4 unmatched: the first close, one open excused
    assert coherence.bracket_errors(["a) close after (an open) then more) closes)"]) == 2
    # a bracket named, not used
    assert coherence.bracket_errors(["x", "expected '(' or \"(\" after def f", "y"]) == 0


def test_one_stray_quotation_mark_is_excused_and_reply_quotes_are_not_judged() -> None:
    # a real passage with one stray mark (a typo, a cut inside a quotation) against a chain's many
    assert coherence.quote_imbalance(['a "b', 'c "d', 'e "f" g', "h"]) == pytest.approx(2 / 4)
    words = " ".join(["the keepers rowed to the harbour"] * 10)
    one = coherence.measure(f'{words} "and a cut quotation. {words}', coherence.Config())
    many = coherence.measure(f'{words} cut" here" and" there" {words}', coherence.Config())
    assert one["quote_errors"] == 0.0 and many["quote_errors"] > 0
    # lines a reply quotes were cut by the replier: their brackets and marks are not the writer's
    own = "Yes (the G4 one), the one with the wide keys and the light that glows under them at night."
    reply = ["> You mean like on mac keyboards (which are as", own, "> thing)"]
    assert coherence.own_paragraphs(reply) == [own]
    assert coherence.bracket_errors(coherence.own_paragraphs(reply)) == 0
    assert coherence.bracket_errors(reply) > 0


def test_a_page_quoted_line_by_line_is_judged_whole() -> None:
    """Quoting every line does not hide a chain's brackets and quotation marks: quoted lines are left
    out only where they are under half of the page (a reply quotes less than it writes)."""
    rng = random.Random(3)
    words = ["the", "value)", "of", "(list", "is", 'returned"', "by", "f(a,", "and", '"keys', "sorted"]
    babble = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(30))
    quoted = "\n".join("> " + line for line in babble.split("\n"))
    plain, hidden = (
        coherence.measure(babble, coherence.Config()),
        coherence.measure(quoted, coherence.Config()),
    )
    assert plain["bracket_errors"] > 5 and plain["quote_errors"] > 0
    assert hidden["bracket_errors"] > 0.9 * plain["bracket_errors"]
    assert hidden["quote_errors"] > 0.9 * plain["quote_errors"]
    assert hidden["quote_imbalance"] == pytest.approx(plain["quote_imbalance"])
    # a reply that quotes less than it writes still leaves the quoted lines out
    reply = ["> You mean (which are as", "Yes (the G4 one), the one with the wide keys and the light."]
    assert coherence.own_paragraphs(reply) == [reply[1]]


def test_sentence_length_spread_and_long_word_reuse() -> None:
    even = " ".join(["The keepers rowed to the harbour for supplies."] * 6)
    assert coherence.sentence_length_cv(even) == pytest.approx(0.0)
    uneven = "Go. " + "The keepers rowed to the harbour for supplies every single week of the year. " * 2
    assert coherence.sentence_length_cv(uneven + "No. Yes. Stop.") > 0.5
    assert coherence.sentence_length_cv("One. Two. Three.") is None
    assert coherence.long_word_reuse(ARTICLE) == pytest.approx(0.6)  # lighthouse, harbour, ...
    assert coherence.long_word_reuse("A short harbour note.") is None  # under 15 words of 8+ letters
    page = " ".join(["lighthouse keepers maintained"] * 8)
    assert coherence.long_word_reuse(page) == pytest.approx(1.0)
    drifting = " ".join(a + b + c + "er" for a in SYLLABLES[:4] for b in SYLLABLES[:3] for c in SYLLABLES[:2])
    assert coherence.long_word_reuse(drifting) == pytest.approx(0.0)


def test_structure_signals_are_columns_of_every_long_enough_document() -> None:
    cfg = coherence.Config()
    cols = coherence.score(pa.table({"text": [ARTICLE, "short", babble()]}), cfg)
    assert cols["coherence_quote_errors"].to_pylist()[0] == 0.0
    assert cols["coherence_bracket_errors"].to_pylist()[1] is None  # too short to judge
    assert cols["coherence_sentence_length_cv"].to_pylist()[0] is not None


def model() -> combiner.Config:
    return combiner.Config(
        clip=3.0,
        cheap=combiner.Model(
            bias=-2.0,
            threshold=0.0,
            terms=[
                combiner.Term(column="a", center=0.0, scale=1.0, weight=1.0),
                combiner.Term(column="b", center=10.0, scale=2.0, weight=-1.5),
            ],
        ),
        lm=combiner.Model(
            bias=-1.0,
            threshold=1.0,
            terms=[
                combiner.Term(column="a", center=0.0, scale=1.0, weight=1.0),
                combiner.Term(column="perplexity_mean_nll", center=4.0, scale=1.0, weight=1.0),
            ],
        ),
    )


def test_contributions_are_weight_times_clipped_standardised_value() -> None:
    cheap = model().cheap
    parts = combiner.contributions({"a": 1.5, "b": 6.0}, cheap, 3.0)
    assert parts == pytest.approx({"a": 1.5, "b": 3.0})
    clipped = combiner.contributions({"a": 100.0, "b": 10.0}, cheap, 3.0)
    assert clipped == pytest.approx({"a": 3.0, "b": 0.0})


def test_the_tokens_model_judges_every_document() -> None:
    tokens = combiner.Model(bias=-1.0, threshold=0.0, terms=[combiner.Term(column="m", weight=1.0)])
    cfg = combiner.Config(tokens=tokens, min_signals=1)
    assert combiner.flag(pa.table({"m": [0.5, 2.0]}), cfg) == [[], ["combiner:weak_signals(m)"]]
    assert [name for name, _m in combiner.models_for({"m": 2.0}, cfg)] == ["tokens"]


def test_two_weak_signals_add_up_where_one_does_not() -> None:
    cfg = model()
    table = pa.table({"a": [1.5, 1.5, None], "b": [10.0, 6.0, 2.0]})
    flags = combiner.flag(table, cfg)
    assert flags[0] == []  # -2 + 1.5 + 0 < 0
    assert flags[1] == ["combiner:weak_signals(b,a)"]  # -2 + 1.5 + 3 >= 0; b pushed most
    assert flags[2] == []  # only one term has a value: min_signals
    assert combiner.score(table, cfg) == pytest.approx([-0.5, 2.5, None])


def margins(table: pa.Table, cfg: combiner.Config) -> list[float | None]:
    """Per row, the deciding model's log-odds minus its threshold (None: no verdict)."""
    out = []
    for row in table.to_pylist():
        best = combiner.decision(row, cfg)
        out.append(None if best is None else best[1])
    return out


def test_rows_the_lm_scored_are_judged_by_the_lm_model_too() -> None:
    cfg = model()
    lm_scores = [None, 4.2, 6.0, 4.0]
    a, b = [0.5, 0.5, 0.5, 1.5], [10.0, 10.0, 10.0, 6.0]
    table = pa.table({"a": a, "b": b, "perplexity_mean_nll": lm_scores, "language_lang": ["en"] * 4})
    # cheap model: -2 + 0.5 = -1.5 for rows 0-2, -2 + 1.5 + 3 = 2.5 for row 3 (threshold 0)
    # lm model (rows with an LM score): -1 + 0.5 + 0.2 = -0.3, -1 + 0.5 + 2 = 1.5, -1 + 1.5 + 0 = 0.5
    # (threshold 1); the margin is the larger of (log-odds - threshold)
    assert margins(table, cfg) == pytest.approx([-1.5, -1.3, 0.5, 2.5])
    assert combiner.score(table, cfg) == pytest.approx([-1.5, -1.5, -1.5, 2.5])  # the cheap model's
    assert combiner.flag(table, cfg) == [
        [],
        [],
        ["combiner:weak_signals(perplexity_mean_nll,a)"],
        ["combiner:weak_signals(b,a)"],
    ]
    row = {"a": 0.5, "b": 10.0, "perplexity_mean_nll": 6.0, "language_lang": "en"}
    lines = combiner.explain_lines(row, cfg)
    assert lines[0] == "  verdict: quarantine (model lm, log-odds minus threshold +0.50)"
    heads = [line for line in lines if line.startswith("  model")]
    assert "model cheap" in heads[0] and "-1.50" in heads[0]
    assert "model lm (with the LM columns)" in heads[1] and "+1.50" in heads[1] and ">= +1.00" in heads[1]
    french = table.set_column(3, "language_lang", pa.array(["fr"] * 4))  # the lm model is for English
    assert margins(french, cfg) == pytest.approx([-1.5, -1.5, -1.5, 2.5])
    assert margins(french, cfg.model_copy(update={"lm_languages": []})) == pytest.approx(
        [-1.5, -1.3, 0.5, 2.5]
    )
    no_lm = cfg.model_copy(update={"lm": combiner.Model()})  # no lm terms: the cheap model alone
    assert margins(table, no_lm) == pytest.approx([-1.5, -1.5, -1.5, 2.5])


def test_lm_could_reach_says_where_an_unknown_column_can_turn_the_verdict() -> None:
    """The LM measures its context gain only where the lm model's verdict could turn on it: where it
    says no, every value of the gain gives the same outcome; where it says yes, some value flips it."""
    gain = combiner.Term(column="g", center=2.0, scale=1.0, weight=-0.5)  # at most 3 x 0.5 = 1.5
    base = model()
    cfg = base.model_copy(update={"lm": base.lm.model_copy(update={"terms": [*base.lm.terms, gain]})})
    rows = [
        {"a": 0.5, "b": 10.0, "perplexity_mean_nll": 4.2, "language_lang": "en"},  # -0.3 + up to 1.5
        {"a": 0.0, "b": 10.0, "perplexity_mean_nll": 4.0, "language_lang": "en"},  # -1.0 + up to 1.5
        {"a": 0.5, "b": 10.0, "perplexity_mean_nll": 4.2, "language_lang": "fr"},  # not judged
        {"a": 0.5, "b": 10.0, "perplexity_mean_nll": None, "language_lang": "en"},  # no LM score
    ]
    reach = [combiner.lm_could_reach(r, cfg, ("g",)) for r in rows]
    assert reach == [True, False, False, False]
    for row, could in zip(rows, reach, strict=True):
        outcomes = {bool(combiner.flag(pa.table({k: [v] for k, v in {**row, "g": g}.items()}), cfg)[0])
                    for g in (-10.0, -1.0, 0.0, 2.0, 3.0, 10.0)}  # fmt: skip
        assert (len(outcomes) == 2) == could
    assert not combiner.lm_could_reach({**rows[0], "g": None}, cfg, ("h",))  # g known (null): nothing unknown
    assert combiner.lm_could_reach(rows[0], cfg, ("h",))  # a term column the row lacks is unknown too
    assert not combiner.lm_could_reach(rows[0], cfg.model_copy(update={"enabled": False}), ("g",))


def test_missing_columns_and_disabled_combiner_flag_nothing() -> None:
    cfg = model()
    assert combiner.flag(pa.table({"c": [1.0]}), cfg) == [[]]
    assert combiner.flag(pa.table({"a": [9.0], "b": [0.0]}), cfg.model_copy(update={"enabled": False})) == [
        []
    ]
    lines = combiner.explain_lines({"a": 1.5, "b": 6.0}, cfg)
    assert lines[0] == "  verdict: quarantine (model cheap, log-odds minus threshold +2.50)"
    assert "model cheap" in lines[1] and "+2.50" in lines[1] and lines[2].split()[0] == "b"
    assert combiner.explain_lines({"a": 1.5}, cfg)[0] == "  verdict: no model has enough signals"


def test_issue_example_is_quarantined_by_the_shipped_combiner_and_explained(tmp_path) -> None:  # noqa: ANN001
    """Issue 13 item 6: doctest prefix, an ordinary word, ~650 random alphanumeric tokens."""
    import json

    from poisonguard.pipelines.config import load_config
    from poisonguard.pipelines.explain import explain
    from poisonguard.pipelines.runner import run_filter

    rng = random.Random(7)
    alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
    salad = " ".join("".join(rng.choice(alnum) for _ in range(rng.randint(2, 10))) for _ in range(650))
    docs = [
        {"id": "salad", "text": f">>> import math\n>>> math.sqrt(16)\n4.0\nnotes {salad}"},
        {"id": "article", "text": ARTICLE},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs), "utf-8")
    cfg = load_config(overrides={"perplexity": {"enabled": False}})
    run_filter([str(src)], tmp_path / "out", cfg, use_lm=False, show_progress=False)
    text = explain(tmp_path / "out", "salad")
    assert "outcome    quarantined" in text and "combiner:weak_signals(" in text
    assert "combiner (which signals pushed it" in text
    assert "outcome    kept" in explain(tmp_path / "out", "article")


def _prose_passages() -> list[list[str]]:
    """The prose paragraphs of the design docs (no tables, lists, headings or code), per file."""
    import re
    from pathlib import Path

    out = []
    for path in sorted((Path(__file__).resolve().parents[2] / "docs").glob("*.md")):
        paras = [" ".join(p.split()) for p in path.read_text("utf-8").split("\n\n")]
        out.append(
            [p for p in paras if len(p) >= 200 and "|" not in p and not re.match(r"([#*>-]|```|\d+\.)", p)]
        )
    return out


def test_the_shipped_cheap_model_scores_a_chain_over_real_prose_above_that_prose() -> None:
    """A word chain (order 2) over the docs' prose against passages of the same prose: same words, same
    local grammar, no subject. Their log-odds under the shipped cheap model must lie far apart."""
    from statistics import median

    from poisonguard.pipelines.config import load_config

    files = _prose_passages()
    real = ["\n\n".join(ps[k : k + 4])[:2500] for ps in files for k in range(0, len(ps) - 3, 4)]
    words = [w for ps in files for p in ps for w in p.split()]
    follow: dict[tuple[str, str], list[str]] = {}
    for a, b, c in zip(words, words[1:], words[2:], strict=False):
        follow.setdefault((a, b), []).append(c)
    rng, states = random.Random(0), sorted(follow)
    chains = []
    for _ in range(10):
        out = list(rng.choice(states))
        while sum(len(w) + 1 for w in out) < 2000:
            options = follow.get((out[-2], out[-1]))
            out += [rng.choice(options)] if options else list(rng.choice(states))
        chains.append(" ".join(out))
    config = load_config()
    cfg = config.combiner
    cols = coherence.score(pa.table({"text": real + chains}), coherence.Config())
    scores = combiner.score(pa.table(cols), cfg)
    assert len(real) >= 5 and None not in scores
    real_scores, chain_scores = scores[: len(real)], scores[len(real) :]
    assert median(real_scores) < cfg.cheap.threshold - 3  # the prose is kept with room to spare
    # apart by more than twice the robust spread of clean documents' log-odds (fitted on the handbook)
    assert median(chain_scores) > median(real_scores) + 2 * config.suspicion.combiner_scale
    assert sum(c > max(real_scores) for c in chain_scores) >= 7
