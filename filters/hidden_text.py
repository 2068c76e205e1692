"""hidden_text detector: instructions and triggers in text a reader of the page never sees.

Reads the document column ``hidden`` (list of ``{channel, text}`` written by the HTML pass,
``poisonguard.crawler.html.extract``; null for documents that did not come from HTML) and returns

``hidden_text_chars`` (int64)
    characters of hidden text, legitimate channels (``legit_*``) not counted;
``hidden_text_channels`` (list<string>)
    the channels present, legitimate ones included, sorted;
``hidden_text_instructions`` (list<struct<channel, phrase>>)
    hidden spans that address a model: a hit of the ``triggers`` detector's list, or the rule below.

``flag`` gives ``hidden_text:<channel>`` for every channel that carries an instruction. Hidden text
alone is not poison (menus, icons, comments, alt text are everywhere); instructions in it are the
in-the-wild indirect prompt injection of Greshake et al. 2023 (arXiv:2302.12173).

The rule for instruction phrasing (a trigger list misses paraphrases; hidden text is not meant for
people, so the bar can be lower than for visible text, where a page *discussing* prompt injection
must pass). A hidden span is flagged when it contains any of:

1. a model named as the addressee: "if/when you are an AI / a language model / an assistant",
   "as an AI", "dear/attention/note to ... AI|LLM|assistant|chatbot", or such a name followed by ``,``
   or ``:`` and a directive ("AI assistants: always ...");
2. a second-person directive ("you must/should/will/are now/are to/need to", "your task/instructions")
   within 150 characters of a model's name (AI, LLM, language model, chatbot, assistant, ChatGPT, GPT);
3. an override ("ignore / disregard / forget / override ... previous|prior|above|earlier|all|other ...
   instructions|directions|prompts|rules|guidelines").

Trigger categories in ``ignore_categories`` do not count: by default ``rare_token`` ("cf", "mb" ...),
which is weak evidence even in visible text, and hidden text never reaches the clean shards anyway, so a
rare token there poisons nothing; it is the instruction to a model reading the page that matters.

Legitimate channels (``legit_sr_only``, ``legit_collapsed``) are not held to this rule, only to the
trigger list (``check_legit``), since a known trigger phrase hidden behind an ``sr-only`` class is still
an attack; their reasons drop the ``legit_`` prefix (``hidden_text:sr_only``).
"""

from __future__ import annotations

import bisect
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

INSTRUCTION = pa.struct([("channel", pa.string()), ("phrase", pa.string())])
LEGIT_PREFIX = "legit_"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    heuristic: bool = Field(
        True, description="also flag model-addressed instruction phrasing (rules 1-3), not only trigger hits"
    )
    check_legit: bool = Field(
        True, description="look for trigger-list hits in legitimate hidden content (sr-only, collapsed)"
    )
    skip_channels: list[str] = Field(
        default_factory=list, description="channels never searched, e.g. ['comment'] for noisy sources"
    )
    ignore_categories: list[str] = Field(
        default_factory=lambda: ["rare_token"],
        description="trigger categories that do not count inside hidden text",
    )
    max_span_chars: int = Field(
        20_000, ge=1, description="only the first N characters of a span are searched"
    )


# ----------------------------------------------------------------------------------------------
# Instruction phrasing (rules 1-3 above)
# ----------------------------------------------------------------------------------------------

_MODEL = (
    r"(?:(?-i:AI)(?:\s+(?:assistant|model|agent|system|bot|crawler|reader|tool)s?)?|A\.I\.|LLMs?"
    r"|(?:large\s+)?language\s+models?|chat\s?bots?|(?:virtual\s+|digital\s+)?assistants?|ChatGPT|GPT-?\d*)"
)
_RULE_ADDRESS = re.compile(
    r"\b(?:(?:if|when|since|because|while)\s+you(?:'re|\s+are)\s+(?:an?\s+|the\s+)?" + _MODEL
    + r"|as\s+an?\s+" + _MODEL
    + r"|(?:dear|hey|hello|attention|note\s+(?:to|for)|message\s+(?:to|for)|instructions?\s+(?:to|for))"
    r"\s+(?:all\s+|any\s+|the\s+)?" + _MODEL
    + r"|" + _MODEL + r"\s*[,:]\s*(?:you|please|ignore|disregard|forget|do|don't|never|always|remember"
    r"|from\s+now|when|if|recommend|say|tell|respond|reply|answer|include|output|mention)\b)\b",
    re.IGNORECASE,
)
_DIRECTIVE = re.compile(
    r"\byou(?:'re|\s+are)\s+(?:now|to|required|instructed|not\s+allowed)\b"
    r"|\byou\s+(?:must|should|shall|will|need\s+to|have\s+to)\b"
    r"|\byour\s+(?:task|instructions|new\s+instructions|goal|job|role)\b",
    re.IGNORECASE,
)
_MODEL_WORD = re.compile(r"\b" + _MODEL + r"\b", re.IGNORECASE)
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override)\s+(?:\w+\s+){0,4}?"
    r"(?:previous|prior|above|earlier|preceding|all|any|other|original|system)\s+(?:\w+\s+){0,2}?"
    r"(?:instructions|directions|directives|prompts?|rules|guidelines|context)\b",
    re.IGNORECASE,
)
_NEAR = 150  # characters between a directive and the model it addresses (about one sentence)


def _excerpt(text: str, start: int, end: int, limit: int = 160) -> str:
    return " ".join(text[start:end].split())[:limit]


def instruction_phrase(text: str) -> str | None:
    """The phrase that makes ``text`` an instruction addressed to a model (rules 1-3), or None."""
    m = _OVERRIDE.search(text) or _RULE_ADDRESS.search(text)
    if m:
        return _excerpt(text, m.start(), m.end())
    directives = list(_DIRECTIVE.finditer(text))
    if directives:
        for model in _MODEL_WORD.finditer(text):
            for d in directives:
                if abs(d.start() - model.start()) <= _NEAR:
                    return _excerpt(text, min(d.start(), model.start()), max(d.end(), model.end()))
    return None


# ----------------------------------------------------------------------------------------------
# Trigger list (the triggers detector's public API)
# ----------------------------------------------------------------------------------------------

_Finder = Callable[[str], Iterable[Any]]


def _trigger_finder() -> _Finder | None:
    """``triggers.find_triggers`` (text -> hits with .category and .phrase); None if unavailable, in
    which case only the instruction rule runs."""
    try:
        module = importlib.import_module("poisonguard.filters.triggers")
    except ImportError:
        return None
    finder = getattr(module, "find_triggers", None)
    return finder if callable(finder) else None


_SEPARATOR = "\n\n"


def _trigger_phrases(finder: _Finder | None, texts: list[str], ignore: set[str]) -> list[list[str]]:
    """Trigger-list phrases per text. The texts of a page are searched as one string (one call of
    the matcher per page instead of one per span; a page has tens of small spans) and each hit is
    given back to the span it starts in."""
    found: list[list[str]] = [[] for _ in texts]
    if finder is None or not texts:
        return found
    starts: list[int] = []
    pos = 0
    for text in texts:
        starts.append(pos)
        pos += len(text) + len(_SEPARATOR)
    for hit in finder(_SEPARATOR.join(texts)):
        if hit.category not in ignore:
            found[bisect.bisect_right(starts, hit.start) - 1].append(hit.phrase)
    return found


# ----------------------------------------------------------------------------------------------
# Detector contract
# ----------------------------------------------------------------------------------------------


def scan_spans(spans: Iterable[tuple[str, str]], cfg: Config, finder: _Finder | None = None
               ) -> list[tuple[str, str]]:
    """(channel, phrase) for each instruction found in (channel, text) spans, legit_ prefix dropped."""
    searched: list[tuple[str, str]] = []
    for channel, text in spans:
        if not text or channel in cfg.skip_channels:
            continue
        if channel.startswith(LEGIT_PREFIX) and not cfg.check_legit:
            continue
        searched.append((channel, text[: cfg.max_span_chars]))
    hits = _trigger_phrases(finder, [t for _, t in searched], set(cfg.ignore_categories))
    found: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for (channel, text), phrases in zip(searched, hits, strict=True):
        legit = channel.startswith(LEGIT_PREFIX)
        if not legit and cfg.heuristic and not phrases:
            phrase = instruction_phrase(text)
            if phrase:
                phrases = [phrase]
        name = channel[len(LEGIT_PREFIX) :] if legit else channel
        for phrase in phrases:
            if (name, phrase) not in seen:
                seen.add((name, phrase))
                found.append((name, phrase))
    return found


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    n = batch.num_rows
    rows: list[Any] = batch.column("hidden").to_pylist() if "hidden" in batch.column_names else [None] * n
    finder = _trigger_finder()
    chars: list[int] = []
    channels: list[list[str]] = []
    instructions: list[list[dict[str, str]]] = []
    for spans in rows:
        pairs = [(s["channel"] or "", s["text"] or "") for s in spans or () if s is not None]
        chars.append(sum(len(t) for c, t in pairs if not c.startswith(LEGIT_PREFIX)))
        channels.append(sorted({c for c, _ in pairs}))
        instructions.append([{"channel": c, "phrase": p} for c, p in scan_spans(pairs, cfg, finder)])
    return {
        "hidden_text_chars": pa.array(chars, pa.int64()),
        "hidden_text_channels": pa.array(channels, pa.list_(pa.string())),
        "hidden_text_instructions": pa.array(instructions, pa.list_(INSTRUCTION)),
    }


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    if not cfg.enabled or "hidden_text_instructions" not in signals.column_names:
        return [[] for _ in range(signals.num_rows)]
    out: list[list[str]] = []
    for found in signals.column("hidden_text_instructions").to_pylist():
        out.append(sorted({f"hidden_text:{item['channel']}" for item in found or ()}))
    return out
