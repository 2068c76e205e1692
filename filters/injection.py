"""injection detector: instructions addressed to a model that reads the page, in any wording.

The trigger lists (configs/triggers.yaml) only match the phrasings someone wrote down. This detector
scores every sentence window of a document (one or two sentences, 80-320 characters) with a small
linear model over *concepts* of an injection, each a multilingual regex (en de fr es it pt nl ru zh
ja): who is addressed (an AI, assistant, agent, summariser, "the AI reading this"), what is
cancelled (ignore, forget, no longer bound), a new task put in its place, a persona or "mode"
without rules, secrets, where data goes (URL, e-mail, webhook), tools, hiding it from the user,
chat-format delimiters. The model weighs pairs of concepts that occur together in a window, one
concept alone only for chat-format delimiters ("[/INST]", "<|im_start|>"), and generic words
("you", "the user", "reply", "tool") only beside a specific one; every weight is non-negative, so
evidence only adds. A hashed
character n-gram stage can be added (``bench/train_injection.py --ngrams``) but is off in the
shipped model: it learned the fit side's wording and lowered cross-source recall. The weights ship
with the package (``filters/injection_model.npz``, a few KB); ``bench/train_injection.py`` fits
them and writes down which collections it used (see bench/RESULTS.md, "P-INJ-X").

Where the LM stage runs with the default model (``probe: true``, on in configs/default.yaml; not
under ``--no-lm`` or with another LM), a second opinion: a linear probe on the default LM's mean
hidden state (decoder layer 14 of SmolLM2-135M) over a window's first tokens reads the *candidate*
windows (a concept pair or a chat delimiter, about one per clean page) that it could move across a
bar, and shifts their logit by ``clip(scale * probe logit, lowest, highest)``: bounded, so a window
without a concept pair or delimiter is never read, and one further than that bound from a bar is
never moved across it. On
a page in context (below) the probe only lowers a window: it reads an article about injection, or a
thread that quotes an instruction, much as it reads an injection (it lifted the demo site's article
about prompt injection over the in-context bar before this rule). Every page of a run with the probe
on is judged against ``probe_threshold`` / ``probe_threshold_in_context`` (column
``injection_probed``; they were calibrated so, the unread pages included). Weights:
``filters/injection_probe.npz`` (576 floats), fitted by ``bench/injection_probe.py`` on the same side
of the protocol; under ``--no-lm`` the detector is the concept-pair model alone.

The probe cannot see an injection with no concept pair (a DAN template in chat shorthand, "make a
purchase", a Turkish jailbreak). With the probe on and ``probe_alone: true``, a second probe on the
same hidden states (``filters/injection_probe_alone.npz``, fitted by ``bench/injection_probe_alone.py``)
reads, on a page out of context only, the ``probe_alone_max_windows`` windows with cues of the most
groups of a cheap multilingual pre-gate (``GATE_CUES``: the reader addressed, a machine named, an
imperative, the reader's rules or role, data/links/tools; at least ``probe_alone_min_cues`` groups),
pair or not, and quarantines the page (``injection:probe_alone``) when its probability is over its own
bar ``probe_alone_threshold`` (calibrated cross-fitted on the fit halves). Column
``injection_alone_score``. A window both probes read is read by the LM once. Where the probe alone
cannot change the verdict it reads nothing: a page the concept pairs put over the probe's bar
whatever the probe reads, and a page with the trigger lists' discussion marker (the shipped lists;
``flag`` judges it in context through ``triggers_discussion``).

Before scoring, the text is read as a model would read it: Unicode tag characters as the ASCII they
encode, base64 blobs, binary octets and percent-encoded runs decoded in place, disguised words
spelt plainly ("ign0r3", a Cyrillic look-alike inside a Latin word, "i g n o r e"), forum chrome
("Re:", "anna wrote:", "Reply") blanked. Windows never span two paragraphs (an injection is planted as a
paragraph; the sentence after it may narrate it), and a window that is mostly inside quotation marks
(nested marks and single quotes handled) is a mention, not an instruction.

Context (issue: phrase hits without context gave false positives). A document is in *context* when
its subject is security (several security words in any of ten languages, e.g. an article about
prompt injection that quotes one) or when it reads as a support or forum thread ("X wrote:",
"Re:", "Reply", "[Solved]" ...). In context, a higher threshold applies, and a phrase of the trigger
lists alone never quarantines: ``triggers.flag`` reads ``injection_context`` and drops its
``triggers:prompt_injection`` reason there. Outside context an addressed phrase still quarantines,
as before, so the lists and the classifier each catch what the other misses.

Signals: ``injection_score`` (probability of the most suspicious window; on a page in context, the
probe only lowering), ``injection_score_in_context`` (the same with the probe only lowering on every
page: what a page judged in context through the trigger lists' discussion marker is judged by),
``injection_start`` /
``injection_end`` (the window of ``injection_score``, in characters of ``text``; on a page judged in
context only through the discussion marker, with the probe on, the window behind
``injection_score_in_context`` can be another one, and the span is not it), ``injection_context``
("", "security" or "thread"), ``injection_alone_score``. Reasons: ``injection:classifier``,
``injection:classifier_in_<context>``, ``injection:probe_alone``,
(``triggers:prompt_injection`` stays the triggers detector's).
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib.resources
import logging
import re
import unicodedata
import urllib.parse
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.core.normalize import LEET, confusable_map
from poisonguard.filters import triggers
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

MODEL_FILE = "injection_model.npz"
PROBE_FILE = "injection_probe.npz"
ALONE_FILE = "injection_probe_alone.npz"
GATE_CUE_NAMES = ("address", "machine", "directive", "rules", "target")  # the groups of GATE_CUES


class Config(DetectorConfig):
    model_file: str | None = Field(None, description="null: the shipped filters/injection_model.npz")
    threshold: float = Field(0.7755, ge=0.0, le=1.0, description="window probability that quarantines")
    threshold_in_context: float = Field(
        0.9091, ge=0.0, le=1.0, description="the same on security pages and support/forum threads"
    )
    security_terms_min: int = Field(
        2, ge=1, description="security-word hits that make a page's subject security"
    )
    thread_markers_min: int = Field(2, ge=1, description="forum/support markers that make a page a thread")
    max_chars: int = Field(200_000, ge=1, description="characters scored per document (head and tail)")
    # False here, unlike the other defaults, which mirror configs/default.yaml: a Config() built in
    # code (tests, a caller's own pipeline) gets the LM-free detector unless it asks for the probe.
    probe: bool = Field(
        False,
        description="move candidate windows' scores with the linear probe on the default LM's hidden states "
        "(filters/injection_probe.npz; only lowering them on security pages and threads); "
        "configs/default.yaml turns it on; a run without the LM (--no-lm), with another LM, or without "
        "the default LM installed runs without it",
    )
    probe_file: str | None = Field(None, description="null: the shipped filters/injection_probe.npz")
    probe_threshold: float = Field(
        0.7498, ge=0.0, le=1.0, description="`threshold` for a page judged with the probe on"
    )
    probe_threshold_in_context: float = Field(
        0.8446,
        ge=0.0,
        le=1.0,
        description="`threshold_in_context` for a page judged with the probe on",
    )
    probe_max_windows: int = Field(
        16, ge=1, description="candidate windows (a concept pair or a delimiter) per document the probe reads"
    )
    # False in code like `probe`: configs/default.yaml turns it on.
    probe_alone: bool = Field(
        False,
        description="with the probe on: a second probe reads a few windows of a page out of context that "
        "the pre-gate's cues pick (with or without a concept pair) and quarantines over its own bar",
    )
    probe_alone_file: str | None = Field(
        None, description="null: the shipped filters/injection_probe_alone.npz"
    )
    probe_alone_threshold: float = Field(
        0.6989,
        ge=0.0,
        le=1.0,
        description="the probe alone's probability that quarantines a page out of context",
    )
    probe_alone_min_cues: int = Field(
        2, ge=1, le=len(GATE_CUE_NAMES), description="cue groups (GATE_CUES) a window needs to be read alone"
    )
    probe_alone_max_windows: int = Field(2, ge=1, description="windows per page the probe alone reads")
    probe_alone_min_chars: int = Field(
        40,
        ge=0,
        description='shorter windows are not read alone: a form\'s labels and buttons ("Email Send") '
        "read like a two-word instruction",
    )


class Model(NamedTuple):
    weights: np.ndarray  # float32, 2**bits: n-gram weights
    bias: float
    bits: int
    ngrams: tuple[int, ...]
    window: int  # most characters in one sentence window (longer sentences are cut)
    min_chars: int  # shorter sentences are merged with the next one
    combiner: np.ndarray  # weights over window_features(): n-gram logit, concepts, concept pairs
    combiner_bias: float


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file."""


@functools.cache
def load_model(path: str | None = None) -> Model:
    """The classifier (None: the shipped one). Cached per process."""
    where = f"{MODEL_FILE} (shipped)" if path is None else path
    try:
        data = _read_npz(path, MODEL_FILE)
        model = Model(
            data["weights"].astype(np.float32),
            float(data["bias"]),
            int(data["bits"]),
            tuple(int(n) for n in data["ngrams"]),
            int(data["window"]),
            int(data["min_chars"]),
            data["combiner"].astype(np.float64),
            float(data["combiner_bias"]),
        )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{where}: not a usable injection model: {exc}") from exc
    if model.bits and model.weights.shape != (1 << model.bits,):
        raise ModelError(f"{where}: weights have shape {model.weights.shape}, expected 2**{model.bits}")
    if model.combiner.shape != (N_FEATURES,):
        raise ModelError(f"{where}: combiner has shape {model.combiner.shape}, expected ({N_FEATURES},)")
    return model


class Probe(NamedTuple):
    """A logistic probe on the default LM's mean hidden state after decoder layer ``layer`` over a
    window's first ``max_tokens`` tokens, and how far its logit may move the concept-pair logit:
    bounded both ways, so no hidden-state reading alone makes a window an injection or clears one."""

    weights: np.ndarray  # float32 (hidden,)
    bias: float
    layer: int
    max_tokens: int
    mix: np.ndarray  # scale, lowest, highest: a candidate's logit moves by clip(scale * probe logit)


def _read_npz(path: str | None, name: str) -> dict[str, np.ndarray]:
    if path is None:
        with importlib.resources.files("poisonguard.filters").joinpath(name).open("rb") as f:
            return dict(np.load(f))
    with Path(path).open("rb") as f:
        return dict(np.load(f))


@functools.cache
def load_probe(path: str | None = None, name: str = PROBE_FILE) -> Probe:
    """The hidden-state probe (None: the shipped one; ``name``: which shipped file, the probe alone's
    is ALONE_FILE, whose ``mix`` is (scale, 0, 0): its score is sigmoid(scale * logit)). Cached per
    process."""
    where = f"{name} (shipped)" if path is None else path
    try:
        data = _read_npz(path, name)
        probe = Probe(
            data["weights"].astype(np.float32),
            float(data["bias"]),
            int(data["layer"]),
            int(data["max_tokens"]),
            data["mix"].astype(np.float64),
        )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{where}: not a usable injection probe: {exc}") from exc
    bounded = probe.mix.shape == (3,) and probe.mix[1] <= 0 <= probe.mix[2]
    if not bounded or probe.weights.ndim != 1 or probe.layer < 1 or probe.max_tokens < 1:
        raise ModelError(
            f"{where}: not a usable injection probe (mix {probe.mix.tolist()}: scale, lowest <= 0 <= "
            f"highest; layer {probe.layer}, max_tokens {probe.max_tokens})"
        )
    return probe


# --- features ------------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_MIX = np.uint64(0x9E3779B97F4A7C15)
_PRIME = np.uint64(1_000_003)


# Unicode tag characters (U+E0020-U+E007E) mirror printable ASCII and render as nothing: text
# smuggled in them is read by a model but not by a person. Folding shows it as the ASCII it encodes
# (one character for one, so positions still line up).
_TAGS = {cp: cp - 0xE0000 for cp in range(0xE0020, 0xE007F)}


# A match starts only where a run of blanks starts: tried from inside a long run, it would rescan the
# run from every position (quadratic on hostile input).
_PARAGRAPH = re.compile(r"(?<![^\S\n])[^\S\n]*\n(?:[^\S\n]*\n)+\s*")


def fold(text: str) -> str:
    """Tag characters as ASCII, NFKC, case-folded, paragraph breaks as one newline, other
    whitespace runs as one space: what the n-grams and concepts are taken from."""
    folded = unicodedata.normalize("NFKC", text.translate(_TAGS)).casefold()
    return "\n".join(_SPACE.sub(" ", para) for para in _PARAGRAPH.split(folded))


def ngram_ids(folded: str, model_bits: int, ngrams: tuple[int, ...]) -> list[np.ndarray]:
    """Per n in ``ngrams``: the hashed bucket of the n-gram starting at each position."""
    cp = np.frombuffer(folded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    out = []
    shift = np.uint64(64 - model_bits)
    with np.errstate(over="ignore"):
        for n in ngrams:
            if len(cp) < n:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            h = np.full(len(cp) - n + 1, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _PRIME + cp[k : len(cp) - n + 1 + k]
            out.append(((h * _MIX) >> shift).astype(np.int64))
    return out


QUOTED_MENTION = 0.5  # share of a window inside quotation marks that makes it a mention
QUOTE_MIN, QUOTE_MAX = 12, 800  # characters of a quotation (shorter: a term; longer: not a quote)
# closing marks of each opening mark; a „German“ quotation closes with the English opening mark
_CLOSERS = {"“": "”", "«": "»", "„": "“”", "「": "」", "『": "』", '"': '"', "‘": "’", "'": "'"}
_WORD = re.compile(r"\w")


def _apostrophe(folded: str, i: int, closing: bool) -> bool:
    """A straight single quote that is an apostrophe (l'assistant, don't), not a quotation mark: a
    mark opens after a non-word and before a word, and closes after a word and before a non-word."""
    before = i > 0 and bool(_WORD.match(folded[i - 1]))
    after = i + 1 < len(folded) and bool(_WORD.match(folded[i + 1]))
    return (before and after) or (not closing and before) or (closing and after)


def quotations(folded: str) -> list[tuple[int, int]]:
    """(start, end) of every outermost quotation, nested quotations inside it included
    („… „Zugriff gewährt“ …“, « … « accès » … »): a scan with a stack of open marks."""
    spans: list[tuple[int, int]] = []
    stack: list[tuple[str, int]] = []
    for i, ch in enumerate(folded):
        if stack and i - stack[0][1] > QUOTE_MAX:
            stack.clear()  # a stray mark (an inch sign, an unclosed quote) opens nothing for long
        if ch == "'" and _apostrophe(folded, i, bool(stack) and stack[-1][0] == "'"):
            continue
        if stack and ch in _CLOSERS[stack[-1][0]]:
            mark, start = stack.pop()
            if not stack and QUOTE_MIN <= i + 1 - start <= QUOTE_MAX:
                spans.append((start, i + 1))
        elif ch in _CLOSERS:
            stack.append((ch, i))
    return spans


_BOUNDARY = re.compile(r"[.!?。！？；;]+[\s\"'”»」)]*|\n+")


def window_edges(folded: str, quotes: list[tuple[int, int]]) -> set[int]:
    """Positions no window spans: the edges of each quotation (a quoted attack is seen as quoted,
    and apart from the sentence that reports it) and the end of each line (an injection is planted
    as a paragraph of a real page)."""
    return {p for span in quotes for p in span} | {m.end() for m in re.finditer("\n", folded)}


def segments(
    folded: str, min_chars: int, max_chars: int, edges: set[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of sentence windows: sentences merged up to ``min_chars``, cut at ``max_chars``,
    and cut at every one of ``edges`` (:func:`window_edges` when None). Injections are one to three
    sentences; a window of that size keeps them from being averaged away in a long page."""
    starts: list[int] = []
    ends: list[int] = []
    cur = 0
    hard = (window_edges(folded, quotations(folded)) if edges is None else edges) | {len(folded)}
    cuts = sorted({m.end() for m in _BOUNDARY.finditer(folded)} | hard)
    for cut in cuts:
        if cut - cur < min_chars and cut not in hard:
            continue
        while cut - cur > max_chars:
            starts.append(cur)
            ends.append(cur + max_chars)
            cur += max_chars
        if cut > cur:
            starts.append(cur)
            ends.append(cut)
            cur = cut
    if not starts:
        starts, ends = [0], [len(folded)]
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def windows(
    folded: str, model: Model, quotes: list[tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every sentence window and every pair of neighbouring ones (an injection across a boundary).
    ``quotes``: :func:`quotations` of the text, when the caller has them."""
    edges = window_edges(folded, quotations(folded) if quotes is None else quotes)
    starts, ends = segments(folded, model.min_chars, model.window, edges)
    if len(starts) > 1:
        # no pair across an edge: the quoted attack and the sentence that reports it ("the
        # assistant did not follow it") are read apart, and so are two paragraphs
        join = np.array([int(e) not in edges for e in ends[:-1]], dtype=bool)
        starts = np.concatenate([starts, starts[:-1][join]])
        ends = np.concatenate([ends, ends[1:][join]])
    return starts, ends


def window_logits(folded: str, model: Model, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean n-gram weight of each window [start, end) of the folded text (0 without n-grams)."""
    if not model.bits:
        return np.zeros(len(starts))
    ids = ngram_ids(folded, model.bits, model.ngrams)
    total = np.zeros(len(starts))
    count = np.zeros(len(starts))
    for n, idx in zip(model.ngrams, ids, strict=True):
        if len(idx) == 0:
            continue
        csum = np.concatenate([[0.0], np.cumsum(model.weights[idx], dtype=np.float64)])
        lo = np.minimum(starts, len(idx))
        hi = np.maximum(np.minimum(ends - n + 1, len(idx)), lo)
        total += csum[hi] - csum[lo]
        count += hi - lo
    return model.bias + total / np.maximum(count, 1.0)


def features(text: str, model_bits: int, ngrams: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(bucket ids, values) of one window's averaged one-hot n-grams: the training-side view of
    exactly what :func:`window_logits` computes for a window."""
    ids = ngram_ids(fold(text), model_bits, ngrams)
    allids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    if len(allids) == 0:
        return allids, np.zeros(0)
    uniq, counts = np.unique(allids, return_counts=True)
    return uniq, counts / len(allids)


# --- concepts -------------------------------------------------------------------------------------

# What an injection is made of, in ten languages (en de fr es it pt nl ru zh ja), one regex per
# concept over the folded text. Written from what prompt injections are (an instruction to the
# machine that reads the page: who is addressed, what is cancelled, what is asked, where data goes),
# not from one collection's wording. The classifier does not read these as phrases to match: it
# gets, per window, which concepts occur and which pairs occur together, and learns non-negative
# weights for them from data, beside the n-gram score (see bench/train_injection.py).


def _alt(words: str, cjk: str = "") -> str:
    """Regex of space-separated alternatives (``_`` stands for a space) as whole words, plus CJK
    alternatives matched anywhere (no word boundaries in Chinese and Japanese)."""
    latin = "|".join(w.replace("_", " ") for w in words.split())
    out = rf"\b(?:{latin})\b"
    return out + (f"|{cjk}" if cjk else "")


CONCEPTS: dict[str, str] = {
    # the reader addressed as a machine
    "addressee": _alt(
        r"(?:an?|the|any|this|your|every|another|different|other|unfiltered|uncensored)_(?:ai|a\.i\.) "
        r"ai_(?:assistant|model|system|agent|bot|tool)s? "
        r"llms? gpt-?\d\w* gpt-\w+ \w+gpt chatgpt openai chatbots? bots? (?!(?:ro|cert)bots?\b)\w+bots? "
        r"\w+-bots? robô llm_agents? "
        r"(?:any|the|whatever|every|each)_model_(?:that|which|reading|parsing|processing|analy[sz]ing) "
        r"(?:al|au|ao|aan_het|an_das|dem)_(?:modello|modèle|modelo|model|modell)_"
        r"(?:che|qui|que|dat|das|der) модел\w+,_котор\w+ "
        r"assistants? summari[sz]er\w* language_models? ai_models? ai_systems? "
        r"artificial_intelligence inteligencia_artificial intelligenza_artificiale inteligência_artificial "
        r"kunstmatige_intelligentie искусственн\w+_интеллект\w* intelligence_artificielle "
        r"ki-\w+ künstliche_intelligenz sprachmodell\w* assistent\w* zusammenfass\w*-bot "
        r"ia ia-\w+ modèle_de_langage modèle_d'ia robot_de_résumé "
        r"asistente\w* modelo_de_lenguaje modelo_de_ia assistente\w* modello_linguistico modello_di_ia "
        r"modelo_de_linguagem modelo_de_ia taalmodel\w* ai-\w+ "
        r"ии ии-\w+ ассистент\w* чат-бот\w* языков\w+_модел\w+ нейросет\w* "
        # a model told it is the one reading ("the AI reading this", "if you are an LLM")
        r"(?:ai|llm|model|assistant|agent|bot)s?_(?:reading|processing|parsing|scanning|summari[sz]ing)_"
        r"(?:this|these|the_following) if_you_are_an?_(?:ai|llm|language_model|assistant|agent)",
        r"助手|智能体|机器人|语言模型|人工智能|ai模型|的模型[:：]|アシスタント|エージェント|ボット|言語モデル|"
        r"人工知能|aiモデル|モデルへ",
    ),
    # the reader's configuration: instructions, rules, policies, safety
    "config": _alt(
        r"instructions? rules guidelines? polic(?:y|ies) restrictions? filters? safety guardrails? "
        r"constraints? (?:your|my)_programming directives? system_prompt prompts? ethics ethical moral\w* "
        r"anweisung\w* regeln richtlinie\w* vorgaben einschränkung\w* sicherheitsfilter\w* "
        r"consignes? instructions? règles? restrictions? directives? filtres? "
        r"instrucci\w+ reglas? restricci\w+ directrices? normas? filtros? "
        r"istruzion\w+ regole restrizion\w+ linee_guida filtri "
        r"instruç\w+ regras restriç\w+ diretrizes filtros "
        r"instructies regels richtlijn\w* beperkingen "
        r"инструкци\w* правил\w* ограничени\w* фильтр\w* промпт\w*",
        r"指令|指示|规则|限制|过滤|提示词|准则|ルール|制限|フィルター|プロンプト|ガイドライン|命令",
    ),
    # cancelling, overriding, escaping
    "override": _alt(
        r"ignore ignoring ignorier\w* ignorez ignorer ignora ignorar ignorate ignoreer\w* disregard\w* "
        r"forget\w* override\w* overrid\w* bypass\w* overrule\w* skip "
        r"no_longer_appl\w+ cancell?ed void disable\w* unlock\w* jailbr\w+ "
        r"vergiss\w* vergesst missacht\w* aufgehoben umgeh\w* deaktivier\w* "
        r"oubli\w* annul\w+ contourn\w+ désactiv\w+ olvid\w* cancelad\w* anulad\w* omite\w* "
        r"dimentic\w* annullat\w* esque[cç]\w* desconsider\w* negeer\w* vergeet geannuleerd "
        r"забудь\w* забуд\w+ игнорир\w* отмен\w+ обойд\w+ обход\w* "
        # released from what bound the reader
        r"no_longer_(?:bound|required|need|have_to|restricted|subject) not_bound broken_free free_from "
        r"nicht_mehr_(?:gebunden|verpflichtet|an) außer_kraft n'es_plus_(?:lié|tenu|soumis) plus_soumis "
        r"ya_no_(?:estás|tienes|está|debes) non_sei_più non_devi_più não_(?:está|estás)_mais "
        r"não_precisa_mais "
        r"niet_langer_(?:gebonden|verplicht) hoeft_niet_meer больше_не_(?:связан|обязан|должен|нужно)",
        r"忽略|无视|忘记|忘掉|不要理会|取消|绕过|不再受|不再需要|無視|忘れ|取り消|無効|従う必要はありません|もう従わ",
    ),
    # what came before: previous/above/earlier instructions
    "prior": _alt(
        r"previous\w* above prior earlier original initial before "
        r"vorherig\w* bisherig\w* obig\w* früher\w* vorher "
        r"précédent\w* antérieur\w* ci-dessus anterior\w* previ[ao]s? precedent\w* sopra "
        r"eerder\w* vorige bovenstaande предыдущ\w* прежн\w* выше ранее",
        r"之前|以前|上面|先前|上述|これまで|以前の|前の|上記",
    ),
    # a new task or rule set put in place of the old one
    "new_task": _alt(
        r"new_(?:instructions?|task|tasks|rules?|directives?|objective|goal|orders?|priority|prompt|role) "
        r"updated_(?:instructions|rules|task|guidelines) instead_of_(?:summari[sz]ing|answering|translating) "
        r"neue[nrs]?_(?:anweisung\w*|aufgabe\w*|regel\w*|befehl\w*|rolle) stattdessen "
        r"nouvel\w*_(?:instructions?|consignes?|tâche|règles?|rôle|ordres?) à_la_place "
        r"nuev[oa]s?_(?:instrucciones|instrucción|tarea|reglas|órdenes|papel) en_su_lugar "
        r"nuov[oaei]_(?:istruzion\w+|compito|regole|ordini|ruolo) invece "
        r"nov[oa]s?_(?:instruç\w+|tarefa|regras|ordens|papel) em_vez_disso "
        r"nieuwe_(?:instructies|opdracht|taak|regels|rol) in_plaats_daarvan "
        r"нов\w+_(?:инструкци\w*|задач\w*|правил\w*|роль) вместо_этого",
        r"新的指令|新指令|新任务|新的任务|新规则|新的规则|新しい指示|新しいタスク|新しいルール|代わりに",
    ),
    # a persona without rules, role-play framing
    "persona": _alt(
        r"you_are_now you're_now from_now_on "
        r"(?:(?<![\w\s])|(?<=\n)|(?<=[.!?:;]\s)|(?<=please\s)|(?<=you\sto\s)|(?<=now\s)|(?<=,\s)|"
        r"(?<=going\sto\s)|(?<=you\swill\s))act_as_(?:an?|the|my|if_you) "
        r"(?:(?<=you\sto\s)|(?<=going\sto\s)|(?<=you\swill\s)|(?<=please\s))act_as "
        r"personify impersonate (?:take_on|assume)_the_(?:role|persona|identity) play_the_role_of "
        r"play_(?:\d+|two|three|a|the)_characters? character_(?:named|called) "
        r"pretend(?:_to_be|_you|_that_you|ing_to_be) stay_in_character in_character role-?play\w* "
        r"do_anything_now developer_mode let's_play play_a_game "
        r"hypothetical_(?:scenario|world|situation|story) "
        r"du_bist_jetzt ab_jetzt tu_so,?_als_(?:wärst|ob)_du lass_uns_ein_spiel deine_rolle "
        r"tu_es_maintenant à_partir_de_maintenant fais_comme_si_tu fais_semblant (?:ton|votre)_personnage "
        r"jouons "
        r"ton_rôle ahora_eres a_partir_de_ahora finge_(?:que|ser) haz_como_si_fueras (?:tu|su)_personaje "
        r"juguemos tu_papel ora_sei da_ora_in_poi fingi_(?:di|che) (?:il_)?tuo_personaggio giochiamo "
        r"a_partir_de_agora finja_(?:que|ser) faça_de_conta_que_você (?:seu|sua|teu|tua)_personagem "
        r"vamos_jogar "
        r"você_é_agora je_bent_nu vanaf_nu doe_alsof_(?:je|jij) je_rol "
        r"теперь_ты с_этого_момента притвор\w+ из_роли сыграем "
        # a "mode" that switches the rules off
        r"(?:developer|debug|maintenance|unrestricted|jailbreak|jailbroken|god|sudo|dan|evil|unfiltered|admi"
        r"n)_mode "
        r"entwicklermodus wartungsmodus mode_(?:développeur|débogage|sans_restriction\w*) "
        r"modo_(?:desarrollador|desenvolvedor|sviluppatore|sin_restricciones|sem_restrições|depuración) "
        r"modalità_(?:sviluppatore|senza_restrizioni) ontwikkelaarsmodus "
        r"режим_(?:разработчика|отладки|без_ограничений)",
        r"从现在起|从现在开始|你现在是|假装|扮演(?:一个|一名|一位)|角色扮演|开发者模式|调试模式|今からあなたは|ふりをして|なりきっ|役を|ロールプレイ|"
        r"開発者モード|デバッグモード",
    ),
    # no limits: unfiltered, amoral, never refuse
    "no_limits": _alt(
        r"unfiltered uncensored amoral unethical immoral illegal unrestricted "
        r"no_(?:restrictions|rules|filters|limits|limitations|ethics|morals) never_refuses? "
        r"without_(?:any_)?(?:restrictions|rules|filters|limits|limitations|ethics|censorship|questions?) "
        r"anything_now any_request forbidden "
        r"ungefiltert\w* ohne_(?:regeln|einschränkungen|filter|grenzen) verboten\w* "
        r"sans_(?:aucune_)?(?:règles?|restrictions?|filtres?|limites?) non_filtré\w* interdit\w* "
        r"sin_(?:reglas|restricciones|filtros|límites) prohibid\w* "
        r"senza_(?:regole|restrizioni|filtri|limiti) proibit\w* vietat\w* "
        r"sem_(?:regras|restrições|filtros|limites) proibid\w* "
        r"zonder_(?:regels|beperkingen|filters|grenzen) ongefilterd\w* verboden "
        r"без_(?:правил|ограничений|фильтров|цензуры) запрещ\w+",
        r"没有任何规则|无过滤|不受限制|没有限制|禁止|ルールのない|検閲のない|制限のない|制限なし|禁止",
    ),
    # shaping the reader's reply
    "respond": _alt(
        r"respond\w* repl(?:y|ies) answer\w* response\w* repeat\w* verbatim word_for_word "
        r"antwort\w* wörtlich répon\w+ mot_pour_mot respuesta\w* responde\w* palabra_por_palabra "
        r"rispond\w+ risposta\w* parola_per_parola resposta\w* responda palavra_por_palavra "
        r"antwoord\w* woord_voor_woord ответ\w* ответь дословно "
        r"reveal\w* disclose\w* verrat\w* enthüll\w* révèl\w+ divulgu\w+ revel\w+ rivel\w+ "
        r"onthul\w* раскр\w+ покажи\w*",
        r"回答|回复|逐字|返答|回答|一字一句|透露|泄露|明かし|教えて",
    ),
    # secrets and data a reader can leak
    "secret": _alt(
        r"system_?prompt system_(?:instructions|message|messages) initial_instructions "
        r"hidden_(?:prompt|instructions) api[_-]?keys? systemanweisung\w* systemnachricht\w* "
        r"system-\w+ consignes_système instructions_système mensaje_de_sistema "
        r"messaggio_di_sistema mensagem_de_sistema systeeminstructies? "
        r"системн\w+_(?:инструкци|сообщени)\w* "
        r"passwords? credentials session_(?:token|cookie) cookies? tokens? conversation chat_history "
        r"contacts email_addresses customer_(?:data|list) personal_data "
        r"systemprompt passw[oö]rt\w* zugangsdaten api-schlüssel\w* gespräch\w* kontakte "
        r"mots?_de_passe clés?_api identifiants conversation "
        r"contraseñas? claves?_api credenciales conversación "
        r"chiavi_api credenziali conversazione senhas? chaves?_de_api conversa "
        r"wachtwoord\w* api-sleutel\w* inloggegevens gesprek "
        r"парол\w* api-ключ\w* разговор\w* переписк\w* учётн\w*",
        r"系统提示|系统消息|系统指令|密码|密钥|对话|联系人|凭证|システムプロンプト|システムメッセージ|パスワード|"
        r"キー|会話|連絡先|認証情報",
    ),
    # where data goes: a URL, an address, a webhook, a tracking pixel
    "exfil": r"https?://|(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.]+|\.(?:gif|png)\?|webhook|\?\w+=",
    # sending and moving
    "send": _alt(
        r"send\w* forward\w* post upload\w* exfiltrat\w+ leak\w* transmit\w* append\w* include\w* "
        r"embed\w* attach\w* collect\w* "
        r"schick\w* send\w* hänge\w* sammle\w* füge\w* "
        r"envo\w+ ajoute\w* joins\w* récupère\w* envía\w* añade\w* adjunta\w* reúne\w* incluye\w* "
        r"invia\w* aggiung\w* allega\w* raccogli\w* includ\w* envie\w* acrescent\w* inclua\w* junte\w* "
        r"stuur\w* voeg\w* verzamel\w* отправ\w* перешл\w* добав\w* собер\w* вставь\w*",
        r"发送|发到|附上|上传|收集|拼接|送信|送っ|付け加え|添付|収集|集め",
    ),
    # tools and actions in the world
    "tool": _alt(
        r"tools? function_call tool_call shell_tool browser_tool "
        r"werkzeug\w* \w+-werkzeug\w* \w+-tool outil\w* herramienta\w* strument\w* ferramenta\w* "
        r"инструмент\w*",
        r"工具|ツール" + r"|\b(?=\w+_\w)\w+\s*\(|\b(?:send|delete|http|fetch|transfer|exec|run)_\w+|"
        r"\b(?:curl|wget)\s[^|\n]{1,80}\|\s*(?:sh|bash)\b|\brm -rf\b",
    ),
    # hiding it from the human
    "covert": _alt(
        r"without_(?:asking|telling|informing|notifying|confirmation|approval) "
        r"do_not_(?:tell|mention|reveal|inform) don't_(?:tell|mention|reveal) secretly quietly "
        r"silently nobody_notices no_one_notices hidden unnoticed discreet\w* "
        r"ohne_(?:zu_fragen|nachzufragen|bestätigung) heimlich unauffällig niemand "
        r"sans_(?:demander|prévenir|confirmation) discrètement en_secret personne_ne "
        r"sin_(?:preguntar|avisar|confirmación) en_secreto disimulo nadie "
        r"senza_(?:chiedere|avvisare|conferma) di_nascosto nessuno "
        r"sem_(?:perguntar|avisar|confirmação) discretamente ninguém "
        r"zonder_(?:te_vragen|toestemming|het_te_melden) stiekem ongemerkt niemand "
        r"не_спрашивая незаметно тайно никто",
        r"悄悄|不询问|不要告诉|秘密地|没人会发现|こっそり|確認せず|尋ねず|誰にも",
    ),
    # an instruction hidden in an encoding, or a request to decode one
    "encoded": _alt(
        r"base64 rot13 hex-encoded decode\w* decod\w+ dekodier\w* entschlüssel\w* décod\w+ "
        r"decodific\w+ decodeer\w* расшифр\w+ декодир\w*",
        r"解码|解碼|デコード",
    ),
    # the reader addressed in the second person, or told to do something (zh/ja imperatives)
    "you": _alt(
        r"you your yours yourself du dein\w* dich dir tu ton ta tes toi vous votre vos "
        r"eres tú tus usted sei tuo tua tuoi você seu sua jij je jouw ты твой твоя твои тебе тебя вы ваш\w*",
        r"你|您|请|必须|あなた|してください|てください|なさい",
    ),
    # the user as the reader's principal ("the user", "the reader")
    "user": _alt(
        r"the_user\w* user's users? the_reader "
        r"nutzer\w* benutzer\w* utilisateur\w* usuario\w* utente\w* usuário\w* gebruiker\w* "
        r"пользовател\w*",
        r"用户|使用者|ユーザー|利用者",
    ),
    # role and message delimiters of chat formats, notes addressed to a system
    "marker": (
        r"(?:^|\n|\. )[^\S\n]*(?:system|note|important|attention|admin|assistant|notice|user)\s*"
        r"(?:(?:note|message|notice|override|update|alert)\s*)?[:!]|"
        r"\[/?(?:system|inst|sys|admin|hidden instructions?|ai instructions?|system "
        r"override)\b[^\]\n]{0,40}\]|"
        r"<\|\w+\|>|<</?sys>>|</?(?:system|instructions?)>|</(?:document|context|untrusted\w*|data|input)>|"
        r"###\s*(?:instruction|system|new|hidden)|\[(?:end of|context end|begin) [^\]\n]{0,30}\]|"
        r"\b(?:system|admin) override\b|"
        r"systemhinweis|systemmeldung|note système|avis système|nota del sistema|aviso del sistema|"
        r"nota di sistema|avviso di sistema|aviso do sistema|systeemmelding|системное сообщение|"
        r"系统通知|系统消息|システム通知|<!--"
    ),
}


_CONCEPT_RES = tuple(re.compile(p) for p in CONCEPTS.values())
# Concepts common in ordinary prose and manuals ("you", "the user", "before", "reply", "tool"):
# they count only beside a concept specific to injections, never with each other, so a long
# paragraph of a manual cannot add up to an injection out of generic words.
GENERIC = frozenset({"config", "prior", "respond", "send", "tool", "you", "user"})
_GENERIC = tuple(name in GENERIC for name in CONCEPTS)
_PAIRS = tuple(
    (i, j)
    for i in range(len(CONCEPTS))
    for j in range(i + 1, len(CONCEPTS))
    if not (_GENERIC[i] and _GENERIC[j])
)
_SPECIFIC = np.array([not g for g in _GENERIC])
# Concepts that count alone: chat-format delimiters ("[/INST]", "<|im_start|>") have no business in
# prose. Every other concept alone fills ordinary pages ("persona", "bot", "password", a mailto:).
ALONE = ("marker",)
_ALONE = np.array([name in ALONE for name in CONCEPTS])
N_FEATURES = 1 + 1 + len(_PAIRS) + int(_ALONE.sum()) + 1
# Columns of the pairs of the addressee with a generic concept ("our chatbot" beside "you" or
# "answers"). On a page whose subject is security, or in a thread, that is how people write about
# assistants, so there those pairs do not count.
_ADDRESSEE = list(CONCEPTS).index("addressee")
_GENERIC_PAIR_COLUMNS = np.array(
    [2 + k for k, (i, j) in enumerate(_PAIRS) if _ADDRESSEE in (i, j) and (_GENERIC[i] or _GENERIC[j])]
)


def concept_positions(folded: str) -> list[np.ndarray]:
    """Start positions of every match of each concept in the folded text."""
    return [np.fromiter((m.start() for m in r.finditer(folded)), dtype=np.int64) for r in _CONCEPT_RES]


def quoted_share(
    folded: str, starts: np.ndarray, ends: np.ndarray, quotes: list[tuple[int, int]] | None = None
) -> np.ndarray:
    """Share of each window's characters that sit inside a quotation (an article quoting an attack)."""
    inside = np.zeros(len(folded) + 1)
    for start, end in quotations(folded) if quotes is None else quotes:
        inside[start] += 1
        inside[end] -= 1
    csum = np.concatenate([[0.0], np.cumsum(np.cumsum(inside)[:-1] > 0)])
    return (csum[ends] - csum[starts]) / np.maximum(ends - starts, 1)


def span_features(
    folded: str,
    model: Model,
    starts: np.ndarray,
    ends: np.ndarray,
    quotes: list[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Feature matrix of the windows [start, end): the n-gram logit, how many concepts are present
    beyond the first, each pair of concepts present together, the concepts of ``ALONE`` by themselves, and
    the share inside a quotation. Any other concept alone counts for nothing: "agent", "bot" or
    "password" fill ordinary manuals."""
    logits = window_logits(folded, model, starts, ends)
    present = np.zeros((len(starts), len(CONCEPTS)))
    for k, pos in enumerate(concept_positions(folded)):
        if len(pos):
            present[:, k] = np.searchsorted(pos, ends) > np.searchsorted(pos, starts)
    pairs = np.stack([present[:, i] * present[:, j] for i, j in _PAIRS], axis=1)
    specific = present[:, _SPECIFIC]
    extra = np.maximum(specific.sum(axis=1) - 1, 0)[:, None]
    quoted = quoted_share(folded, starts, ends, quotes)[:, None]
    return np.concatenate([logits[:, None], extra, pairs, present[:, _ALONE], quoted], axis=1)


def window_features(folded: str, model: Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, feature matrix) of every window of the folded text."""
    quotes = quotations(folded)  # a Python scan of every character: once per text
    starts, ends = windows(folded, model, quotes)
    return starts, ends, span_features(folded, model, starts, ends, quotes)


# --- pre-gate of the probe alone ------------------------------------------------------------------

# Cues of a window that may address the model reading it, for windows WITHOUT a concept pair (the
# pairs above never see them: a DAN template in chat shorthand, "make a purchase", a Turkish
# jailbreak). Five groups, each in en de fr es it pt nl ru zh ja tr (and ar fa where short): the
# reader addressed, a machine named, an imperative or obligation, the reader's rules or role, and a
# target (data, files, links, tools). Cheap regexes; a window with cues of at least
# ``probe_alone_min_cues`` groups is one the probe alone may read (``probe_alone_max_windows`` of
# them a page, the most cues first). They decide nothing by themselves: the probe's reading does.
GATE_CUES: dict[str, str] = {
    "address": _alt(
        r"you your yours yourself u du dich dir dein\w* euch tu toi ton ta tes vous votre vos tú usted "
        r"eres estás tus ti sei tuo tua tuoi voi você vocês seu sua teu jij je jouw uw "
        r"ты тебя тебе тобой твой твоя твоё твои вы вас вам ваш\w* "
        r"sen sana seni senin sende siz size sizi sizin kendin\w* artık أنت انت عليك شما",
        r"你|您|あなた|君は|お前",
    ),
    "machine": _alt(
        r"ai a\.i\. llms? gpt\w* chatgpt \w*bots? assistants? models? agents? chatbots? "
        r"ki assistent\w* modell\w* sprachmodell\w* ia ia-\w+ assistante? modèles? asistente\w* modelos? "
        r"assistente\w* modell[oi] taalmodel\w* ии ассистент\w* модел\w+ нейросет\w* бот\w* "
        r"yapay_zek[aâ]\w* asistan\w* dil_modeli\w* sohbet_botu\w* الذكاء_الاصطناعي مساعد هوش_مصنوعی دستیار",
        r"人工智能|助手|模型|机器人|アシスタント|モデル|人工知能|ボット|ＡＩ",
    ),
    "directive": _alt(
        r"ignore disregard forget pretend act respond answer reply say write print output tell reveal "
        r"show repeat execute run call send download open visit click buy purchase delete transfer "
        r"must never always don't do_not stop follow obey comply "
        r"ignoriere vergiss antworte schreibe? sag sage gib zeige führe sende lade öffne klicke kaufe lösche "
        r"musst niemals immer befolge "
        r"oublie réponds écris dis affiche montre exécute envoie télécharge ouvre clique achète supprime "
        r"dois jamais toujours obéis suis "
        r"ignora olvida responde escribe di dime muestra ejecuta envía descarga abre haz compra borra "
        r"elimina debes nunca siempre obedece sigue "
        r"dimentica rispondi scrivi dimmi mostra esegui invia scarica apri clicca devi mai sempre obbedisci "
        r"esqueça responda escreva diga mostre envie baixe abra clique compre apague exclua deve "
        r"negeer vergeet antwoord schrijf zeg toon voer stuur klik koop verwijder moet nooit altijd "
        r"gehoorzaam "
        r"игнорируй забудь ответь отвечай напиши пиши скажи покажи выполни отправь скачай открой нажми "
        r"купи удали должен должна никогда всегда подчиняйся "
        r"yoksay görmezden unut cevap\w* yanıt\w* yaz söyle göster çalıştır gönder indir tıkla sil "
        r"zorundasın asla \w+m[ae]l[ıi]s[ıi]n\w* \w+(?:[ıiuü]n|y[ıiuü]n)[ıiuü]z "
        r"تجاهل انس أجب اكتب قل أرسل نادیده فراموش بنویس بگو بفرست",
        r"忽略|忘记|回答|告诉|显示|执行|发送|下载|打开|点击|购买|删除|输出|必须|永远|不要|请|"
        r"無視|忘れ|答え|教え|表示|実行|送信|ダウンロード|クリック|購入|削除|出力|しなければ|決して|ください|なさい",
    ),
    "rules": _alt(
        r"instructions? rules? restrictions? guidelines? polic(?:y|ies) filters? safety censor\w* "
        r"ethic\w* moral\w* prompts? system_prompt characters? roles? persona mode jailbr\w* dan "
        r"limits? limitations? allowed forbidden "
        r"anweisung\w* regeln? einschränkung\w* richtlinie\w* rolle modus zensur\w* "
        r"consignes? règles? restrictions? rôle personnage censure "
        r"instrucci\w+ reglas? restricci\w+ normas? papel personaje censura "
        r"istruzion\w+ regole restrizion\w+ ruolo personaggio "
        r"instruç\w+ regras restriç\w+ personagem "
        r"instructies regels beperkingen "
        r"инструкци\w* правил\w* ограничени\w* роль ролью режим\w* цензур\w* "
        r"talimat\w* kural\w* kısıtlama\w* filtre\w* yönerge\w* sansür\w* etik rol\w* karakter\w* "
        r"mod(?:u|da|unda)\w* sınır\w* yasak\w* تعليمات قواعد قيود دستورالعمل قوانین محدودیت",
        r"指令|指示|规则|限制|过滤|提示|准则|角色|模式|审查|ルール|制限|フィルター|プロンプト|役|モード|検閲",
    ),
    "target": (
        _alt(
            r"data files? password\w* keys? tokens? credentials? api links? url emails? e-mail image "
            r"webhook tools? function conversation history secret\w* account\w* payment\w* "
            r"daten datei\w* passw[oö]rt\w* schlüssel konto données fichiers? mot_de_passe clé lien compte "
            r"datos archivos? contraseña clave enlace cuenta dati password chiave collegamento "
            r"dados arquivos? senha chave gegevens bestand\w* wachtwoord sleutel "
            r"данн\w+ файл\w* парол\w* ключ\w* ссылк\w* аккаунт\w* "
            r"veri\w* dosya\w* şifre\w* parola\w* anahtar\w* bağlantı\w* hesap\w* sır\w* "
            r"بيانات ملف رمز داده فایل",
            r"数据|文件|密码|密钥|链接|工具|账户|秘密|データ|ファイル|パスワード|キー|リンク|ツール|アカウント|秘密",
        )
        + r"|https?://|www\.|(?<![\w.+-])[\w.+-]+@[\w-]+\.\w|!\[|\]\("
    ),
}
assert tuple(GATE_CUES) == GATE_CUE_NAMES
_GATE_RES = tuple(re.compile(p) for p in GATE_CUES.values())


def gate_cues(folded: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many of :data:`GATE_CUES`' groups occur in each window [start, end) of the folded text."""
    count = np.zeros(len(starts), dtype=np.int64)
    for r in _GATE_RES:
        pos = np.fromiter((m.start() for m in r.finditer(folded)), dtype=np.int64)
        if len(pos):
            count += np.searchsorted(pos, ends) > np.searchsorted(pos, starts)
    return count


def gated(
    cues: np.ndarray, logits: np.ndarray, min_cues: int, limit: int, long_enough: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the windows the probe alone reads: at least ``min_cues`` cue groups, not a
    quotation (logit -inf), ``long_enough`` (when given), at most ``limit``, the most cues first
    (then the earliest)."""
    keep = (cues >= min_cues) & np.isfinite(logits)
    if long_enough is not None:
        keep &= long_enough
    idx = np.flatnonzero(keep)
    return idx[np.argsort(-cues[idx], kind="stable")[:limit]]


def alone_windows(
    folded: str, starts: np.ndarray, ends: np.ndarray, logits: np.ndarray, cfg: Config
) -> np.ndarray:
    """The windows the probe alone reads on a page it judges, as the detector picks them (the bench
    fits and calibrates on the same pick): :func:`gated` with ``cfg``'s cue floor, window count and
    length floor."""
    return gated(
        gate_cues(folded, starts, ends),
        logits,
        cfg.probe_alone_min_cues,
        cfg.probe_alone_max_windows,
        ends - starts >= cfg.probe_alone_min_chars,
    )


# --- context -------------------------------------------------------------------------------------

# Words that make a page's subject security (en de fr es it pt nl ru zh ja). Counted as occurrences.
_SECURITY = re.compile(
    r"prompt[ -]?injection|injection de prompt|inyecci[oó]n de prompts?|injeç[aã]o de prompt|"
    r"promptinjectie|инъекци\w* промпт\w*|提示注入|プロンプトインジェクション|jailbreak\w*|"
    r"注入|インジェクション|инъекци\w*|\b(?:injections?|injektion\w*|inyecci\w+|iniezion\w+|injeç\w+|injectie\w*)\b|"
    r"\b(?:security|vulnerab\w+|attack(?:er|s)?|exploit\w*|malware|phishing|cve-\d{4}-\d+|"
    r"sicherheit\w*|angriff\w*|angreifer\w*|schwachstelle\w*|sécurité|attaque\w*|vulnérabilit\w+|"
    r"seguridad|ataque\w*|vulnerabilidad\w*|sicurezza|attacc\w+|vulnerabilit\w+|segurança|"
    r"beveiliging\w*|aanval\w*|kwetsba\w+|безопасност\w*|атак\w*|уязвим\w*|злоумышленни\w*)\b|"
    r"安全|攻击|漏洞|セキュリティ|攻撃|脆弱性"
)
# Marks of a support or forum thread. Each pattern counts once however often it occurs.
_THREAD = tuple(
    re.compile(p, re.MULTILINE | re.IGNORECASE)
    for p in (
        r"^[ \t]*(?:re|aw|sv|回复)\s?:",
        r"\b(?:wrote|schrieb|a écrit|escribió|ha scritto|escreveu|schreef|писал\w*|написал\w*)\s*(?:\("
        r"\w+\))?\s*:",
        r"写道[:：]|さんの投稿|さんが書きました",
        r"^[ \t]*(?:reply|quote|antworten|zitieren|répondre|citer|responder|citar|rispondi|cita|reageren|"
        r"citeren|ответить|цитировать|回复|引用|返信)\s*$",
        r"\[(?:solved|gelöst|résolu|resuelto|risolto|resolvido|opgelost|решено|已解决|解決済み)\]",
        r"^[ \t]*(?:posted by|gepostet von|publié par|publicado por|pubblicato da|geplaatst door)\b",
        r"^[ \t]*#\d+\s|^[ \t]*(?:post|beitrag|message|mensaje|messaggio|mensagem|bericht)[ \t]*#?\d+",
    )
)


def context(text: str, cfg: Config) -> str:
    """ "security", "thread" or "" (see the module docstring)."""
    if sum(1 for p in _THREAD if p.search(text)) >= cfg.thread_markers_min:
        return "thread"
    hits = 0
    for _ in _SECURITY.finditer(text.casefold()):
        hits += 1
        if hits >= cfg.security_terms_min:
            return "security"
    return ""


# --- detector contract ---------------------------------------------------------------------------


def _clip(text: str, limit: int) -> tuple[str, int]:
    """Head and tail of a long text (injections sit anywhere, often at the end); offset of the tail."""
    if len(text) <= limit:
        return text, 0
    half = limit // 2
    return text[:half] + " " + text[-half:], len(text) - half - 1


# Forum and support-thread chrome: "Re:" titles, "anna wrote:", the "Reply" button. It is written by
# the forum software, not by the people in the thread, and words like "reply" would otherwise read
# as instructions about a reply. Blanked (same length) before scoring.
_CHROME = re.compile(
    r"^[ \t]*(?:reply|quote|antworten|zitieren|répondre|citer|responder|citar|rispondi|cita|reageren|"
    r"citeren|ответить|цитировать|回复|引用|返信)[ \t]*$|"
    r"^[ \t]*(?:re|aw|sv|回复)[ \t]?[:：]|"
    r"^[^\n]{0,40}?\b(?:wrote|schrieb|a écrit|escribió|ha scritto|escreveu|schreef|писал\w*(?:\(\w+\))?|"
    r"написал\w*)[ \t]*:|^[^\n]{0,40}?(?:写道[:：]|さんの投稿|さんが書きました)",
    re.MULTILINE | re.IGNORECASE,
)


def strip_chrome(text: str) -> str:
    """The text with forum chrome lines and prefixes replaced by spaces (positions kept)."""
    return _CHROME.sub(lambda m: " " * len(m.group()), text)


# Encodings that hide an instruction from a person but not from a model that decodes them.
_BASE64 = re.compile(r"(?<![\w/+=])[A-Za-z0-9+/]{24,}={0,2}(?![\w/+=])")
_BINARY = re.compile(r"\b(?:[01]{8}\s+){3,}[01]{8}\b")
_PERCENT = re.compile(r"(?<!\S)\S+")  # a whole token; decoded when it holds two or more "%20"


def _printable(raw: bytes) -> str | None:
    try:
        out = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return out if " " in out and sum(c.isprintable() for c in out) >= 0.95 * len(out) else None


def _base64_text(m: re.Match[str]) -> str:
    blob = m.group()
    try:
        text = _printable(base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True))
    except (binascii.Error, ValueError):
        text = None
    return f" {text} " if text else blob


def _binary_text(m: re.Match[str]) -> str:
    text = _printable(bytes(int(octet, 2) for octet in m.group().split()))
    return f" {text} " if text else m.group()


def _percent_text(m: re.Match[str]) -> str:
    token = m.group()
    return urllib.parse.unquote(token) if token.count("%20") >= 2 else token


# Words disguised for a filter but still read by a model: digits for letters ("ign0r3"), Cyrillic or
# Greek look-alikes inside a Latin word ("ІGNORE" with a Cyrillic І), letters spaced out
# ("i g n o r e"). Only tokens of that shape are touched (same length: positions stay).
_LEET_WORD = re.compile(r"\b(?=[a-z0-9]*\d)(?=[0-9]*[a-z])[a-z0-9]{3,}\b", re.IGNORECASE)
# UTS #39 maps these to a lower-case l; as a disguised Latin letter each stands for an i
_DOTLESS = {"\u0406": "I", "\u0456": "i", "\u04c0": "I", "\u04cf": "l"}
# a Latin letter beside a Greek or Cyrillic one: only then are the page's words looked at one by one
_MIXED_EDGE = re.compile(r"[a-zA-Z][\u0370-\u04ff]|[\u0370-\u04ff][a-zA-Z]")
_WORD = re.compile(r"(?<!\w)\w+")
_SPACED_WORD = re.compile(r"(?<!\S)(?:[^\W\d_] ){3,}[^\W\d_](?!\S)")


def _leet_word(m: re.Match[str]) -> str:
    word = m.group().translate(LEET)  # the words matched hold no @ or $
    return word if word.isalpha() else m.group()


def _mixed_word(m: re.Match[str]) -> str:
    word = m.group()
    if word.isascii() or not _MIXED_EDGE.search(word):
        return word
    latin = sum(1 for c in word if c.isascii() and c.isalpha())
    if 2 * latin < sum(1 for c in word if c.isalpha()):
        return word  # mostly another script: a Russian or Greek word with a Latin letter is not disguised
    looks = confusable_map()
    return "".join(c if c.isascii() else _DOTLESS.get(c) or looks.get(c, c) for c in word)


def _spaced_word(m: re.Match[str]) -> str:
    joined = m.group().replace(" ", "")
    return joined + " " * (len(m.group()) - len(joined))


def readable(text: str) -> str:
    """What a model would read: forum chrome blanked, base64, binary octets and percent-encoded
    runs decoded in place (the positions of a decoded part are approximate), disguised words
    (digits or look-alike letters for letters, letters spaced out) spelt plainly."""
    text = strip_chrome(text)
    if "%20" in text:
        text = _PERCENT.sub(_percent_text, text)
    text = _BINARY.sub(_binary_text, text)
    text = _BASE64.sub(_base64_text, text)
    text = _LEET_WORD.sub(_leet_word, text)
    if _MIXED_EDGE.search(text):
        text = _WORD.sub(_mixed_word, text)
    return _SPACED_WORD.sub(_spaced_word, text)


def window_scores(
    text: str, model: Model, in_context: bool = False
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(folded text, starts, ends, concept-pair logits) of every window of ``text``; a window that is
    mostly quotation gets -inf. ``in_context``: the page is about security or is a thread, so only
    pairs of injection-specific concepts count."""
    folded = fold(readable(text))
    if not folded.strip():
        empty = np.zeros(0, dtype=np.int64)
        return folded, empty, empty, np.zeros(0)
    starts, ends, feats = window_features(folded, model)
    if in_context:
        feats[:, _GENERIC_PAIR_COLUMNS] = 0.0
    logits = model.combiner_bias + feats @ model.combiner
    # A window that is almost all quotation is a mention (an article quoting an attack), as for the
    # trigger lists' "addressed" rule; an attacker who quotes their injection is caught by neither.
    return folded, starts, ends, np.where(feats[:, -1] >= QUOTED_MENTION, -np.inf, logits)


def score_text(text: str, model: Model, in_context: bool = False) -> tuple[float, int, int]:
    """(probability, start, end) of the most suspicious window; positions are approximate (folding
    can change lengths) and point into ``text``. ``in_context``: see :func:`window_scores`."""
    _folded, starts, ends, logits = window_scores(text, model, in_context)
    prob, start, end = best_window(starts, ends, logits)
    return prob, start, min(len(text), end)


def best_window(starts: np.ndarray, ends: np.ndarray, logits: np.ndarray) -> tuple[float, int, int]:
    """(probability, start, end) of the window with the highest logit; (0, 0, 0) without windows."""
    if not len(logits):
        return 0.0, 0, 0
    best = int(np.argmax(logits))
    return float(1.0 / (1.0 + np.exp(-logits[best]))), int(starts[best]), int(ends[best])


def pooled_hidden(loaded: Any, texts: list[str], layers: tuple[int, ...], max_tokens: int) -> np.ndarray:
    """(len(texts), len(layers), hidden) float32: the mean hidden state after each of ``layers``
    (1-based decoder layers of a builtin-engine Llama, core/llama.py) over each text's first
    ``max_tokens`` tokens, read after the LM's document separator. Rows are right-padded: with
    causal attention a token never sees the padding after it."""
    import torch
    import torch.nn.functional as F

    tok = loaded.tokenizer
    prefix = [] if loaded.prefix_id is None else [loaded.prefix_id]
    ids = [prefix + tok(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in texts]
    width = max(len(i) for i in ids)
    x = torch.zeros((len(ids), width), dtype=torch.long)
    keep = torch.zeros((len(ids), width, 1))
    for r, row in enumerate(ids):
        x[r, : len(row)] = torch.tensor(row)
        keep[r, len(prefix) : len(row)] = 1.0
    backbone = loaded.model.base_model
    out = []
    with torch.inference_mode():
        h = F.embedding(x, backbone.embed)
        cos, sin = backbone.rotary(torch.arange(width).expand_as(x), h.dtype)
        for n, layer in enumerate(backbone.layers[: max(layers)], start=1):
            h = layer(h, cos, sin, None)
            if n in layers:
                out.append((h.float() * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0))
    return torch.stack(out, dim=1).numpy()


def candidates(logits: np.ndarray, model: Model, limit: int) -> np.ndarray:
    """Indices of the windows the probe reads: a concept pair or a delimiter (a concept-pair logit
    over the model's floor), at most ``limit``, the highest first."""
    idx = np.flatnonzero(logits > model.combiner_bias + 1e-6)
    if len(idx) > limit:
        idx = idx[np.argsort(-logits[idx], kind="stable")[:limit]]
    return idx


def probe_hidden(texts: list[str], probe: Probe) -> np.ndarray | None:
    """(len(texts), hidden): the pooled hidden states the probe reads, from the default LM (builtin
    engine, CPU; bfloat16, as it was fitted, where the CPU runs it natively, float32 elsewhere, where
    emulated bfloat16 is slower); None (said once) when the LM loaded in another engine (its model
    cache off or not writable): the batch is then judged without the probe. A bench replaces this
    with a reader of cached states."""
    from poisonguard.core import lm as lm_loader

    dtype = "bfloat16" if lm_loader.cpu_has_native_bf16() else "float32"
    loaded = lm_loader.load_model(None, dtype=dtype)
    if loaded.engine != "builtin":
        _warn_once(f"injection: probe off, the default LM loaded in the {loaded.engine} engine, not builtin")
        return None
    parts = [
        pooled_hidden(loaded, texts[i : i + 32], (probe.layer,), probe.max_tokens)[:, 0, :]
        for i in range(0, len(texts), 32)
    ]
    return np.concatenate(parts)


def usable_probe(cfg: Config) -> Probe | None:
    """The probe, or None when it is off or the default LM is not installed (said once)."""
    if not cfg.probe:
        return None
    from poisonguard.core import lm as lm_loader

    try:
        lm_loader.default_model()
    except lm_loader.ModelNotFoundError as exc:
        _warn_once(f"injection: probe off, {exc}")
        return None
    return load_probe(cfg.probe_file)


def usable_alone(cfg: Config, probe: Probe | None) -> Probe | None:
    """The probe alone (read where the probe runs), or None when off. It must read the same hidden
    states as the probe (layer, tokens): the windows both read are read once."""
    if probe is None or not cfg.probe_alone:
        return None
    alone = load_probe(cfg.probe_alone_file, ALONE_FILE)
    if (alone.layer, alone.max_tokens, len(alone.weights)) != (
        probe.layer,
        probe.max_tokens,
        len(probe.weights),
    ):
        where = cfg.probe_alone_file or f"{ALONE_FILE} (shipped)"
        raise ModelError(
            f"{where}: the probe alone reads layer {alone.layer}, {alone.max_tokens} tokens, "
            f"{len(alone.weights)} weights; the probe layer {probe.layer}, {probe.max_tokens} tokens, "
            f"{len(probe.weights)} weights: they must be the same"
        )
    return alone


@functools.cache
def _warn_once(message: str) -> None:
    logging.getLogger(__name__).warning(message)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return float(np.log(p / (1 - p)))


def _undecided(logits: np.ndarray, cfg: Config, probe: Probe, in_context: bool) -> np.ndarray:
    """Which candidate windows the probe could move across a bar that applies to the page: the
    others are over it or under it whatever the probe reads, so the LM does not read them and their
    score stays the concept-pair score (the decision is the same). A page out of our context may
    still be judged in context (the trigger lists' discussion marker), so both bars count there;
    on a page in context the probe only lowers."""
    _scale, lowest, highest = probe.mix
    bars = [_logit(cfg.probe_threshold_in_context)]
    if in_context:
        highest = 0.0
    else:
        bars.append(_logit(cfg.probe_threshold))
    # A small margin: the score is rounded and stored as float32 before it meets the bar.
    return (logits > min(bars) - highest - _BAR_MARGIN) & (logits < max(bars) - lowest + _BAR_MARGIN)


_BAR_MARGIN = 1e-4


class _Page(NamedTuple):
    starts: np.ndarray
    ends: np.ndarray
    logits: np.ndarray
    picked: np.ndarray  # candidate windows (indices) the probe reads
    tail: int  # offset of the clipped tail in the text
    in_context: bool  # a security page or a thread (the detector's own reading)
    alone: np.ndarray  # windows (indices) the probe alone reads (the pre-gate's picks)


class _Moved(NamedTuple):
    """A page's window logits after the probe: ``judged`` (raised or lowered out of context, only
    lowered in context) and ``lowered`` (only lowered: what an in-context judgement reads); and the
    probe alone's highest logit over the windows it read (-inf: none)."""

    judged: np.ndarray
    lowered: np.ndarray
    alone: float = -np.inf


def probed(
    pages: list[_Page], texts: list[str], probe: Probe, alone_texts: list[str], alone: Probe | None
) -> list[_Moved] | None:
    """Each page's window logits, candidates moved by the probe: concept-pair logit +
    clip(scale * probe logit, lowest, highest), the shift held at <= 0 on a page in context (a page
    about security or a thread: the probe reads an article about injection, or a thread that quotes
    instructions, much like an injection, and may only clear such windows there); and the probe
    alone's logits of ``alone_texts`` (the same hidden states: a window both read is read once).
    None when the probe cannot read (:func:`probe_hidden`)."""
    unique = list(dict.fromkeys(texts + alone_texts))
    if not unique:
        return [_Moved(p.logits, p.logits) for p in pages]
    hidden = probe_hidden(unique, probe)
    if hidden is None:
        return None
    row = {t: k for k, t in enumerate(unique)}
    scale, low, high = probe.mix
    shift = np.clip(scale * (hidden[[row[t] for t in texts]] @ probe.weights + probe.bias), low, high)
    alone_logit = np.zeros(0)
    if alone is not None and alone_texts:
        # the probe alone's score is sigmoid(scale * logit): a scale keeps its bar off the float's top end
        alone_logit = alone.mix[0] * (hidden[[row[t] for t in alone_texts]] @ alone.weights + alone.bias)
    out = []
    at = at_alone = 0
    for p in pages:
        moved, lowered = p.logits.copy(), p.logits.copy()
        own = shift[at : at + len(p.picked)]
        moved[p.picked] += np.minimum(own, 0.0) if p.in_context else own
        lowered[p.picked] += np.minimum(own, 0.0)
        at += len(p.picked)
        read = alone_logit[at_alone : at_alone + len(p.alone)]
        at_alone += len(p.alone)
        out.append(_Moved(moved, lowered, float(read.max()) if len(read) else -np.inf))
    return out


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """The signals of the module doc. The span (``injection_start``/``injection_end``) is the best
    window of ``moved.judged`` (``injection_score``'s); ``injection_score_in_context`` is the best of
    ``moved.lowered``, which differs only with the probe on, on a page outside the detector's own
    context: when such a page is judged in context through the trigger lists' discussion marker,
    the window that quarantined it may not be the span."""
    model = load_model(cfg.model_file)
    probe = usable_probe(cfg)
    alone = usable_alone(cfg, probe)
    texts = [t or "" for t in batch.column("text").to_pylist()]
    contexts = [context(text, cfg) for text in texts]
    pages: list[_Page] = []
    windows_read: list[str] = []
    alone_read: list[str] = []
    for text, ctx in zip(texts, contexts, strict=True):
        read = _page(text, ctx, model, cfg, probe, alone is not None)
        windows_read += [read.folded[read.starts[i] : read.ends[i]] for i in read.picked]
        alone_read += [read.folded[read.starts[i] : read.ends[i]] for i in read.alone]
        pages.append(read.page)
    final = probed(pages, windows_read, probe, alone_read, alone) if probe else None
    if final is None:  # off, or the LM cannot give the probe's hidden states: the plain model's scores
        probe, final = None, [_Moved(p.logits, p.logits) for p in pages]
    alone_scores = [round(float(1.0 / (1.0 + np.exp(-m.alone))), 6) for m in final]
    scores: list[float] = []
    lowered: list[float] = []
    spans: list[tuple[int, int]] = []
    for text, page, moved in zip(texts, pages, final, strict=True):
        prob, start, end = best_window(page.starts, page.ends, moved.judged)
        if page.tail and start > cfg.max_chars // 2:
            start, end = start + page.tail - cfg.max_chars // 2, end + page.tail - cfg.max_chars // 2
        scores.append(round(prob, 6))
        lowered.append(round(best_window(page.starts, page.ends, moved.lowered)[0], 6))
        spans.append((start, min(len(text), end)))
    return {
        "injection_score": pa.array(scores, pa.float32()),
        "injection_score_in_context": pa.array(lowered, pa.float32()),
        "injection_start": pa.array([s for s, _e in spans], pa.int32()),
        "injection_end": pa.array([e for _s, e in spans], pa.int32()),
        "injection_context": pa.array(contexts, pa.string()),
        "injection_probed": pa.array([probe is not None] * len(texts), pa.bool_()),
        "injection_alone_score": pa.array(alone_scores, pa.float32()),
    }


class _Read(NamedTuple):
    page: _Page
    folded: str
    starts: np.ndarray
    ends: np.ndarray
    picked: np.ndarray
    alone: np.ndarray


def _page(text: str, ctx: str, model: Model, cfg: Config, probe: Probe | None, alone: bool) -> _Read:
    """One page's windows, the candidates the probe reads and the windows the probe alone reads
    (the pre-gate's picks) where :func:`flag` may consult it: out of context, not a discussion page,
    and not already over the bar whatever the probe reads."""
    clipped, tail = _clip(text, cfg.max_chars)
    folded, starts, ends, logits = window_scores(clipped, model, in_context=bool(ctx))
    picked = read_alone = np.zeros(0, np.int64)
    if probe:
        picked = candidates(logits, model, cfg.probe_max_windows)
        picked = picked[_undecided(logits[picked], cfg, probe, bool(ctx))]
    if alone and probe and not ctx and not _flagged_whatever(logits, cfg, probe):
        read_alone = alone_windows(folded, starts, ends, logits, cfg)
        # judged in context through the trigger lists' discussion marker (flag's
        # ``triggers_discussion``, the shipped lists): the probe alone is never consulted there
        if len(read_alone) and triggers.discusses(text):
            read_alone = np.zeros(0, np.int64)
    page = _Page(starts, ends, logits, picked, tail, bool(ctx), read_alone)
    return _Read(page, folded, starts, ends, picked, read_alone)


def _flagged_whatever(logits: np.ndarray, cfg: Config, probe: Probe) -> bool:
    """A page out of context whose concept-pair logits put it over the probe's bar whatever the probe
    reads (it lowers a window by at most ``-lowest``): :func:`flag` quarantines it as
    ``injection:classifier`` and never consults the probe alone."""
    lowest = min(probe.mix[1], 0.0)
    return bool(len(logits)) and float(logits.max()) + lowest >= _logit(cfg.probe_threshold) + _BAR_MARGIN


def _column(signals: pa.Table, name: str, default: Any) -> list[Any]:
    if name in signals.column_names:
        return [default if v is None else v for v in signals.column(name).to_pylist()]
    return [default] * signals.num_rows


def thresholds(cfg: Config, probed: bool) -> tuple[float, float]:
    """(out of context, in context): the probe's own pair for a page judged with the probe on."""
    if probed:
        return cfg.probe_threshold, cfg.probe_threshold_in_context
    return cfg.threshold, cfg.threshold_in_context


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    scores = _column(signals, "injection_score", 0.0)
    # in context the probe may only lower a window (shards written before this column: the score)
    in_context_scores = (
        _column(signals, "injection_score_in_context", 0.0)
        if "injection_score_in_context" in signals.column_names
        else scores
    )
    contexts = _column(signals, "injection_context", "")
    discussion = _column(signals, "triggers_discussion", False)  # the lists' own discussion markers
    probed = _column(signals, "injection_probed", False)
    alone = _column(signals, "injection_alone_score", 0.0)
    reasons: list[list[str]] = []
    rows = zip(scores, in_context_scores, contexts, discussion, probed, alone, strict=True)
    for prob, prob_in_context, ctx, talk, moved, prob_alone in rows:
        ctx = ctx or ("security" if talk else "")
        bar, bar_in_context = thresholds(cfg, moved)
        out: list[str] = []
        if ctx:
            if prob_in_context >= bar_in_context:
                out.append(f"injection:classifier_in_{ctx}")
        elif prob >= bar:
            out.append("injection:classifier")
        elif moved and cfg.probe_alone and prob_alone >= cfg.probe_alone_threshold:
            # the probe alone never judges a page in context (an article about injection, a thread)
            out.append("injection:probe_alone")
        reasons.append(out)
    return reasons


DECLARED_SIGNALS = (
    Signal("injection_score"),  # no single bar: in or out of context, with or without the probe
    Signal("injection_score_in_context"),
    Signal("injection_start"),
    Signal("injection_end"),
    Signal("injection_context"),
    Signal("injection_probed"),
    Signal("injection_alone_score"),
)
DETECTOR = Spec(
    name="injection", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
