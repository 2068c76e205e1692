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
   instructions|directions|prompts|rules|guidelines"), also in German, French, Spanish and Italian;
4. what only makes sense said to an agent that reads the page and acts: chat-role markers
   ("### System:", "[SYSTEM]"), jailbreak personas ("developer mode", "you have no restrictions"),
   requests for its prompt or secrets, tool calls ("call delete_file on ..."), sending customer data or
   keys away, edits to its replies or memory ("append ZX-1 to every reply"), "decode this and do what
   it says".

Each rule is also tried on other readings of the span, as a model would read them: Unicode tag
characters decoded, URL encoding, base64/base32/hex/binary/escaped-codepoint blobs, reversed text, rot13,
leetspeak, letter-spaced words; the phrase then names the reading ("encoded: ignore all previous
instructions"). Measured on bastioncorpus 0.6.0 (the rules were written while looking at it, so this
is not a held-out number): 107 of its 118 malicious rows (en, de, fr, es, it) are caught when hidden,
none of its 63 benign look-alikes ("disregard the typo in line 3", "act as a friendly tutor"), and
none of the 10,099 distinct hidden spans of the Python 3.11 docs and the Debian handbook (26
languages). Misses: Ascii85/base85 and Morse blobs, instructions with no imperative or addressee.

Trigger categories in ``ignore_categories`` do not count: by default ``rare_token`` ("cf", "mb" ...),
which is weak evidence even in visible text, and hidden text never reaches the clean shards anyway, so a
rare token there poisons nothing; it is the instruction to a model reading the page that matters.

Legitimate channels (``legit_sr_only``, ``legit_collapsed``) are not held to this rule, only to the
trigger list (``check_legit``), since a known trigger phrase hidden behind an ``sr-only`` class is still
an attack; their reasons drop the ``legit_`` prefix (``hidden_text:sr_only``).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import functools
import importlib
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
from pydantic import Field

from poisonguard.core.normalize import LEET
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

INSTRUCTION = pa.struct([("channel", pa.string()), ("phrase", pa.string())])
LEGIT_PREFIX = "legit_"


class Config(DetectorConfig):
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
    r"(?:(?-i:AI)(?:\s+(?:coding\s+)?(?:assistant|model|agent|system|bot|crawler|reader|tool)s?)?|A\.I\.|LLMs?"
    r"|(?:large\s+)?language\s+models?|chat\s?bots?|bots?|(?:virtual\s+|digital\s+)?assistants?|ChatGPT|GPT-?\d*)"
)
# Rule 1: a model named as the addressee.
_RULE_ADDRESS = re.compile(
    r"\b(?:(?:if|when|since|because|while)\s+you(?:'re|\s+are)\s+(?:an?\s+|the\s+)?"
    + _MODEL
    + r"|as\s+(?:an?|the)\s+"
    + _MODEL
    + r"|(?:dear|hey|hello|attention|note|notice|message|instructions?|important)\s+(?:to|for)"
    r"\s+(?:all\s+|any\s+|the\s+)?"
    + _MODEL
    + r"|(?:dear|hey|hello|attention)\s+"
    + _MODEL
    + r"|"
    + _MODEL
    + r"\s*[,:]\s*(?:you|please|ignore|disregard|forget|do|don't|never|always|remember"
    r"|from\s+now|when|if|recommend|say|tell|respond|reply|answer|include|output|mention)\b"
    + r"|"
    + _MODEL
    + r"\s+(?:\w+\s+){0,4}?(?:should|must|need\s+to|are\s+(?:required|instructed)\s+to)"
    r"\s+(?:first|always|never|now|immediately|also|\w+)\b)\b",
    re.IGNORECASE,
)
# Rule 2: a second-person directive near a model's name.
_DIRECTIVE = re.compile(
    r"\byou(?:'re|\s+are)\s+(?:now|to|required|instructed|not\s+allowed)\b"
    r"|\byou\s+(?:must|should|shall|will|need\s+to|have\s+to)\b"
    r"|\byour\s+(?:task|instructions|new\s+instructions|goal|job|role)\b",
    re.IGNORECASE,
)
_MODEL_WORD = re.compile(r"\b" + _MODEL + r"\b", re.IGNORECASE)
# Rule 3: overriding earlier instructions, or the model's rules (en, de, fr, es, it).
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:\w+\s+){0,4}?"
    r"(?:previous|prior|above|earlier|preceding|all|any|other|original|system|your)\s+(?:\w+\s+){0,2}?"
    r"(?:instructions?|directions?|directives?|prompts?|rules|guidelines|context|content\s+polic(?:y|ies)"
    r"|safety\s+\w+)\b"
    r"|\b(?:ignore|disregard|forget)\s+everything\s+(?:above|before|we\s+discussed|you\s+were\s+told)\b"
    r"|\bsupersedes?\s+all\s+(?:prior|previous|earlier)\b"
    r"|\b(?:ignoriere|ignorieren\s+sie|vergiss|vergessen\s+sie|missachte)\b[^.]{0,40}"
    r"\b(?:anweisungen|richtlinien|regeln|alles)\b"
    r"|\b(?:ignore[zs]?|oublie[zs]?)\b[^.]{0,40}\b(?:instructions|consignes|r[eè]gles)\b"
    r"|\b(?:ignora|ignore|olvida|olvide|dimentica)\b[^.]{0,40}"
    r"\b(?:instrucciones|reglas|istruzioni|regole)\b",
    re.IGNORECASE,
)
# Rule 4: what only makes sense addressed to an agent that reads the page and acts: chat-role
# markers, jailbreak personas, requests for its prompt or secrets, tool calls, exfiltration, edits to
# its replies or memory, "decode this and do what it says". (Measured against bastioncorpus's
# malicious and benign look-alike rows and the hidden spans of two real documentation sites; see
# tests/filters/test_hidden_text.py and bench/bench_html.py.)
_AGENT = re.compile(
    r"(?:\[|#{2,}\s*|-{2,}\s*|<|\()(?:system|assistant|developer)\b[^\n]{0,3}?[:\]>)]"
    r"|(?:^|\n)\s*(?:(?:important|urgent|new)\s+)?(?:system|assistant|developer)(?:\s+\w+)?\s*:\s"
    r"(?=[^.]{0,60}\b(?:you|your|ignore|grant|user|instructions?|reveal|call|must|required|cleanup|sure|here\s+is"
    r"|override|disable[ds]?|allow)\b)"
    r"|\bsystem\s*(?:hinweis|anweisung)|\bnote\s+syst[eè]me\b|\bnota\s+(?:del|di)\s+sistema\b"
    r"|\bfrom\s+now\s+on\b[^.]{0,60}\b(?:you|respond|answer|reply|ignore|no\s+\w+)"
    r"|\bab\s+jetzt\b|\bd[ée]sormais\b|\bahora\s+eres\b|\bora\s+sei\b"
    r"|\b(?:you\s+(?:now\s+)?have|with|without(?:\s+any)?|no)\s+(?:content\s+)?"
    r"(?:rules|restrictions|limits|filters?|content\s+polic(?:y|ies)|censorship)\b[^.]{0,40}"
    r"\b(?:answer|respond|reply|comply|proceed|you)\b"
    r"|\byou\s+(?:now\s+)?have\s+no\s+(?:\w+\s+)?(?:rules|restrictions|limits|filters?)\b"
    r"|\b(?:sans|sin|senza|keine|ohne)\s+(?:restrictions|restricciones|restrizioni|regeln|einschr[aä]nkungen"
    r"|filtro|filter)\b"
    r"|\b(?:developer|god|jailbreak|unrestricted|DAN)\s+mode\b|\bmodo\s+desarrollador\b"
    r"|\b(?:pretend|act|behave)\s+(?:that\s+)?(?:you\s+are|as\s+(?:if|an?)|like\s+an?)\b[^.]{0,40}"
    r"\b(?:no|without|uncensored|unrestricted|unfiltered|jailbroken|anything)\b"
    r"|\b(?:reveal|print|show|output|repeat|tell\s+me|dump|leak|list|verrate|r[ée]v[eè]le|revela|rivela|mostra)"
    r"\b[^.]{0,50}\b(?:system\s+(?:prompt|message)|(?:initial|original|hidden|operating|secret|exact)\s+"
    r"(?:instructions|prompt)|instructions\s+you\s+were\s+given|credentials|api\s+keys?|passwords?"
    r"|environment\s+variables|context\s+window|internal\s+configuration|systemanweisungen"
    r"|instructions\s+syst[eè]me|instrucciones\s+del\s+sistema|prompt\s+di\s+sistema|istruzioni\s+di\s+sistema)"
    r"|\brepeat\s+the\s+words\s+above\b"
    r"|\b(?:decode|translate|deobfuscate)\b[^.]{0,60}\b(?:and|then)\b[^.]{0,30}"
    r"\b(?:do|follow|execute|run|obey)\b|\bdo\s+(?:exactly\s+)?what\s+it\s+says\b"
    r"|\b(?:call|use|invoke|run)\s+(?:the\s+)?[a-z]+_[a-z_]+\b(?:\s+(?:tool|function))?[^.]{0,40}"
    r"\b(?:on|to|with|and)\b"
    r"|\b(?:send|e-?mail|forward|post|upload|copy)\b[^.]{0,60}\b(?:customer|user|order|personal|client)s?"
    r"\s+(?:data|list|emails?|records?|database)|\b(?:send|e-?mail|forward)\b[^.]{0,60}\b(?:api\s+keys?"
    r"|credentials|passwords?)\b"
    r"|\b(?:include|append|add|insert|mention|save|put|write|repeat)\b[^.]{0,80}\b(?:in|to|at)(?:\s+the\s+end\s+of)?"
    r"\s+(?:your|every|each|any|all)\s+(?:\w+\s+)?(?:reply|replies|response|responses|answer|answers|summary"
    r"|summaries|output|memory|report)\b"
    r"|\bbefore\s+(?:you\s+)?(?:answer|respond|reply|responding|answering|replying)\b"
    r"|\b(?:grant|give)\s+(?:this|the)\s+user\s+admin\b|\bthe\s+user\s+is\s+(?:an?\s+)?admin\b"
    r"|\bsafety\s+(?:protocols|checks|filters|guidelines)\s+(?:are\s+)?(?:disabled|off|not\s+meant|do\s+not)"
    r"|\b(?:skip|disregard|ignore)\s+(?:all\s+)?(?:safety|the\s+content\s+policy|confirmations)\b",
    re.IGNORECASE,
)
_NEAR = 150  # characters between a directive and the model it addresses (about one sentence)


def _excerpt(text: str, start: int, end: int, limit: int = 160) -> str:
    return " ".join(text[start:end].split())[:limit]


def _rules(text: str) -> str | None:
    m = _OVERRIDE.search(text) or _RULE_ADDRESS.search(text) or _AGENT.search(text)
    if m:
        return _excerpt(text, m.start(), m.end())
    directives = list(_DIRECTIVE.finditer(text))
    if directives:
        for model in _MODEL_WORD.finditer(text):
            for d in directives:
                if abs(d.start() - model.start()) <= _NEAR:
                    return _excerpt(text, min(d.start(), model.start()), max(d.end(), model.end()))
    return None


# Encoded blobs an agent can be told to decode: base64/base32/hex runs, 8-bit binary, \uXXXX escapes.
_BLOB = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}|(?:[01]{8}\s+){3,}[01]{8}|(?:\\u[0-9a-fA-F]{4}){4,}")
_SPACED = re.compile(r"\b(\w) (?=\w\b)")


def _decode_blob(blob: str) -> str | None:
    raw: bytes | None = None
    try:
        if blob[0] in "01" and " " in blob:
            raw = bytes(int(b, 2) for b in blob.split())
        elif blob.startswith("\\u"):
            return codecs.decode(blob, "unicode_escape")
        elif re.fullmatch(r"(?:[0-9a-fA-F]{2})+", blob):
            raw = bytes.fromhex(blob)
        elif re.fullmatch(r"[A-Z2-7]+=*", blob):
            raw = base64.b32decode(blob + "=" * (-len(blob) % 8))
        else:
            raw = base64.b64decode(blob.replace("-", "+").replace("_", "/") + "=" * (-len(blob) % 4))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    text = raw.decode("utf-8", errors="replace") if raw else ""
    # Only text that reads as text: random bytes (ids, hashes, keys) decode to control characters.
    return text if text and " " in text and sum(c.isprintable() for c in text) >= 0.95 * len(text) else None


def _views(text: str) -> Iterator[tuple[str, str]]:
    """Other readings of a hidden span that a model would follow as easily as plain text: tag
    characters (docs/THREATS.md P-UNI), URL encoding, encoded blobs, reversed, rot13, leetspeak and
    letter-spaced text (the obfuscations of bastioncorpus's malicious rows)."""
    if any("\U000e0020" <= ch <= "\U000e007e" for ch in text):
        yield (
            "tag_chars",
            "".join(chr(ord(ch) - 0xE0000) if "\U000e0020" <= ch <= "\U000e007e" else ch for ch in text),
        )
    if "%2" in text:
        yield "url_encoded", urllib.parse.unquote(text)
    for m in _BLOB.finditer(text):
        decoded = _decode_blob(m.group())
        if decoded:
            yield "encoded", decoded
    if len(text) < _MIN_OBFUSCATED:
        return
    yield "reversed", text[::-1]
    yield "rot13", codecs.encode(text, "rot13")
    for name, view in (("leetspeak", text.translate(LEET)), ("spaced", _SPACED.sub(r"\1", text))):
        if view != text:
            yield name, view


# Stems every rule needs one of; a reading without any is not searched further (most are not).
_STEMS = re.compile(
    r"ignor|instruc|disregard|forget|vergiss|oubli|olvid|dimentic|syst|sistem|prompt|translat|execut|assist|\bai\b|llm|model"
    r"|bot|gpt|a\.i\.|\byou|send|mail|call|use|reveal|show|print|decode|mode|rule|restrict|regel|r[eè]gl|polic|admin"
    r"|includ|append|memory|answer|respon|repl|safety|supersed|desormais|désormais|ahora|jetzt|sans|senza|sin\b",
    re.IGNORECASE,
)
_MIN_OBFUSCATED = 20  # shorter spans (labels, icons) are not searched for obfuscated readings


@functools.lru_cache(maxsize=1 << 16)  # sites repeat their hidden labels on every page
def instruction_phrase(text: str) -> str | None:
    """The phrase that makes ``text`` an instruction addressed to a model (rules 1-4, in the text or
    in one of its decoded readings, then prefixed with the reading's name), or None."""
    found = _rules(text) if _STEMS.search(text) else None
    if found:
        return found
    for name, view in _views(text):
        found = _rules(view) if _STEMS.search(view) else None
        if found:
            return f"{name}: {found}"
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


def scan_spans(
    spans: Iterable[tuple[str, str]], cfg: Config, finder: _Finder | None = None
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


DECLARED_SIGNALS = (
    Signal("hidden_text_chars"),
    Signal("hidden_text_channels"),
    Signal("hidden_text_instructions"),
)

DETECTOR = Spec(
    name="hidden_text", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
