"""perplexity detector: per-token negative log-likelihood under a small causal LM.

What it sees (docs/THREATS.md rows P-SUDO, P-SUDO-adapt, P-TARPIT, P-TRAP):

* P-SUDO (Souly et al. 2025, arXiv:2510.07192): natural text, a trigger, then tokens drawn uniformly
  from the vocabulary. Under any trained LM such tokens cost about ln(vocab) nats or more each, so the
  NLL curve has one sharp upward change-point right after the trigger.
* word salad / Markov babble (P-SUDO-adapt, tarpits): every token is a real word but the sequence is
  not language: mean NLL well above real text, below uniform gibberish.
* copyright traps (Meeus et al. 2024, arXiv:2402.09363): a made-up high-perplexity sequence repeated
  many times; after the first copy the LM copies it in context, so some windows have an NLL far below
  any natural text while the first copy is far above.

Signals (one row per document, nulls where the text has no scorable tokens):

``perplexity_mean_nll``            mean NLL (nats/token) over the scored tokens
``perplexity_max_window_nll``      highest mean NLL over `window` consecutive scored tokens
``perplexity_window_start/_end``   char offsets of that window in ``text`` (for the report)
``perplexity_min_window_nll``      lowest mean NLL over `window` tokens (copied/repeated text)
``perplexity_uniform_share``       share of tokens with NLL >= uniform_ratio * ln(vocab size)
``perplexity_changepoint_char``    char offset where the NLL level jumps up most (null: too short)
``perplexity_changepoint_jump``    mean NLL after minus mean NLL before that point
``perplexity_after_uniform_share`` uniform share of the tokens after the change-point
``perplexity_trigger_candidate``   the words just before (and at) the change-point
``perplexity_scored_tokens``       tokens scored (at most `max_tokens`: head, middle and tail windows)
``perplexity_context_gain``        mean NLL of a sample of scored tokens when each sees at most
                                   `context_chunk` tokens of context, minus their NLL with full context
                                   (null under `context_gain_min_tokens` scored tokens; with
                                   `context_gain_every` off, also where no verdict could turn on
                                   it: outside the incoherent band below, unless the combiner's
                                   lm model could reach its threshold with it)
``perplexity_context_gain_ratio``  the context gain / those tokens' short-context NLL
``perplexity_sentence_nll_std``    spread of the sentences' mean NLLs; with ``_sentence_end_nll`` and
``perplexity_sentence_start_nll``  ``_start_nll`` (NLL of sentence ends / starts above the document's
                                   mean) sentence-level grammaticality (:func:`sentence_signals`),
                                   read by the combiner (filters/combiner.py)

Reasons (``flag``): ``perplexity:gibberish_after_trigger`` (a jump to uniform-like tokens),
``perplexity:gibberish`` (uniform-like tokens throughout), ``perplexity:changepoint`` (a very large jump
alone), ``perplexity:repeated_sequence`` (a copyright trap: an unlikely span and a copied one),
``perplexity:babble`` (mean or window NLL above any clean text) and ``perplexity:incoherent``: word-level
babble whose NLL overlaps real text (an order-2 Markov chain, tarpit pages) but which has no long-range
coherence, so a long context helps the LM little: on the chunks the LM finds least predictable, real
text gains ~2 nats/token from context beyond `context_chunk` tokens (1.3 at the least on 600 clean
pages), Markov babble and tarpit pages under 1. The short-context pass costs at most `context_chunks` x
`context_chunk` tokens and runs only for documents that could be flagged: at least
`context_gain_min_tokens` scored tokens and a mean NLL from `context_gain_min_nll` (above the clean
median) to below `incoherent_max_nll` (above every clean document that long). Outside that band the
rule never fires: short documents have a short full context too (texts that discuss attacks, a few
lines long, gain as little as babble), and prose that quotes a long encoded payload (base32, ascii85)
gains little where it is least predictable but has a mean NLL above the band.

Cost is bounded per document (`max_tokens`), identical texts in a batch are scored once, windows are
packed end to end into rows (no padding; attention within each window only, see core/llama.py),
and only the positions that exist are sent through the output layer (the vocabulary projection is the
largest single matmul of a 135M model). `device` puts the model on a CUDA GPU when there is one.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.core import lm as lm_loader
from poisonguard.core.lm import cpu_has_native_bf16
from poisonguard.core.urls import host_of
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

PREFIX = "perplexity_"


class Config(DetectorConfig):
    route: Literal["all", "suspicious"] = Field(
        default="suspicious",
        description="all: every undecided document; suspicious: the most suspicious `budget` share "
        "(suspicion.route_score, filters/suspicion.py; the choice is pipelines/cascade.py)",
    )
    budget: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="route suspicious: share of each chunk's documents the LM scores at most",
    )
    model: str | None = Field(
        default=None,
        description="None: the shipped SmolLM2-135M GGUF; else a model folder, .gguf file or HF cache id",
    )
    engine: lm_loader.Engine = Field(
        default="auto",
        description="auto: the builtin Llama forward pass (core/llama.py, no transformers import) for Llama "
        "models in float32/bfloat16 on the CPU, transformers for the rest; transformers: always transformers",
    )
    dtype: Literal["float32", "bfloat16", "int8", "auto"] = Field(
        default="auto",
        description="auto: bfloat16 on a GPU and on CPUs with native bfloat16 (AVX512-BF16, AMX), else "
        "float32 (said in a log line); the thresholds hold for both (bench/RESULTS.md cascade)",
    )
    max_tokens: int = Field(default=512, ge=16, description="scored tokens per document (head, middle, tail)")
    batch_tokens: int = Field(
        default=2048, ge=64, description="tokens (rows x row length) per forward pass on the CPU"
    )
    batch_size: int = Field(default=32, ge=1, description="rows per forward pass at most")
    gpu_batch_tokens: int = Field(
        default=0, ge=0, description="tokens per forward pass on a GPU; 0 = sized from its free memory"
    )
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="auto: the first CUDA GPU when torch sees one, else cpu",
    )
    threads: int = Field(default=0, ge=0, description="torch threads; 0 = all cores")
    compile: bool = Field(
        default=False, description="torch.compile the model (fuses its many small ops; for GPUs, see RESULTS)"
    )
    window: int = Field(default=32, ge=4, description="tokens per sliding window")
    min_segment: int = Field(default=16, ge=2, description="tokens each side of a change-point")
    trigger_tokens: int = Field(
        default=6, ge=1, description="tokens before the change-point kept in the trigger candidate"
    )
    uniform_ratio: float = Field(
        default=0.8, gt=0, description="a token is uniform-like when its NLL >= uniform_ratio * ln(vocab)"
    )
    min_tokens: int = Field(
        default=32, ge=1, description="documents with fewer scored tokens are never flagged"
    )
    # Thresholds: calibrated on real clean text by bench/calibrate_perplexity.py (600 pages: Wikipedia
    # en/fr/es, Debian handbook de/ja/ru/en, Python docs; 0 false positives), see bench/RESULTS.md.
    gibberish_share: float = Field(
        default=0.35, ge=0, le=1, description="uniform share of the whole document"
    )
    changepoint_jump: float = Field(default=5.5, ge=0, description="NLL jump at the change-point (nats)")
    after_uniform_share: float = Field(
        default=0.4, ge=0, le=1, description="uniform share after the change-point"
    )
    strong_changepoint_jump: float = Field(
        default=6.5, ge=0, description="a jump this big is flagged on its own"
    )
    babble_mean_nll: float = Field(default=7.0, ge=0, description="mean NLL of word salad / Markov babble")
    babble_window_nll: float = Field(default=8.0, ge=0, description="max window NLL of word salad / babble")
    repeat_window_nll: float = Field(
        default=0.5,
        ge=0,
        description="min window NLL of a copied span; with a max window >= babble_window_nll: a trap",
    )
    # Context gain (perplexity:incoherent). The scoring settings bound its cost; the threshold is
    # calibrated like the others (bench/calibrate_perplexity.py).
    context_chunk: int = Field(default=16, ge=2, description="tokens per short-context chunk (its context)")
    context_chunks: int = Field(
        default=8, ge=1, description="short-context chunks scored per candidate document at most"
    )
    context_min_position: int = Field(
        default=64, ge=0, description="chunks start this many tokens or more into their scored window"
    )
    context_gain_min_nll: float = Field(
        default=3.5, ge=0, description="candidates (short-context pass, incoherent rule): mean NLL >= this"
    )
    context_gain_min_tokens: int = Field(
        default=128, ge=1, description="candidates: at least this many scored tokens"
    )
    incoherent_max_nll: float = Field(
        default=5.0, ge=0, description="candidates: mean NLL below this (above every clean long document's)"
    )
    context_gain_every: bool = Field(
        default=False,
        description="true: measure the context gain of every document with context_gain_min_tokens "
        "scored tokens; false: only where it can change a verdict: perplexity:incoherent candidates, "
        "and in the pipeline documents whose combiner lm-model verdict could turn on it (one short "
        "pass, context_chunks x context_chunk tokens per document)",
    )
    incoherent_context_gain: float = Field(
        default=1.05, description="context gain <= this (a candidate's) -> perplexity:incoherent"
    )


# ------------------------------------------------------------------------------- token planning


@dataclass
class _Plan:
    """The token windows scored for one distinct text."""

    # One entry per window (head, middle, tail): token ids, and (start, end) char spans in the full
    # text; lists, or numpy arrays when planned in a worker process.
    ids: list[Any] = field(default_factory=list)
    offsets: list[Any] = field(default_factory=list)


def _encode(tok: Any, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    if not texts:
        return []
    # The Rust tokenizer under a transformers fast tokenizer gives the same ids and offsets without
    # transformers' per-document conversion (a third of the tokenising time on short documents).
    raw = getattr(tok, "_tokenizer", tok)
    return [(e.ids, e.offsets) for e in raw.encode_batch(list(texts), add_special_tokens=False)]


def _plan_texts(tok: Any, texts: Sequence[str], max_tokens: int) -> list[_Plan]:
    """Choose at most `max_tokens` tokens per text: all of them, or head (1/2), middle and tail (1/4).

    Long texts are tokenised only around the three windows (a char slice ~16 chars/token wide), so a
    2 MB page costs no more to plan than a short one."""
    head_n = max_tokens // 2
    mid_n = max_tokens // 4
    tail_n = max_tokens - head_n - mid_n
    span = max_tokens * 16
    whole_idx = [i for i, t in enumerate(texts) if len(t) <= 3 * span]
    long_idx = [i for i, t in enumerate(texts) if len(t) > 3 * span]
    plans = [_Plan() for _ in texts]
    for i, (ids, offs) in zip(whole_idx, _encode(tok, [texts[i] for i in whole_idx]), strict=True):
        if len(ids) <= max_tokens:
            if ids:
                plans[i].ids.append(ids)
                plans[i].offsets.append(offs)
            continue
        # Windows never overlap (a token is scored once and offsets stay increasing).
        mid = max(head_n, len(ids) // 2 - mid_n // 2)
        for a, b in ((0, head_n), (mid, mid + mid_n), (max(mid + mid_n, len(ids) - tail_n), len(ids))):
            plans[i].ids.append(ids[a:b])
            plans[i].offsets.append(offs[a:b])
    slices: list[tuple[int, int, int]] = []  # (text index, char start, which window)
    for i in long_idx:
        n = len(texts[i])
        slices += [(i, 0, 0), (i, n // 2 - span // 2, 1), (i, n - span, 2)]
    encoded = _encode(tok, [texts[i][s : s + span] for i, s, _ in slices])
    for (i, s, which), (ids, offs) in zip(slices, encoded, strict=True):
        offs = [(a + s, b + s) for a, b in offs]
        if which == 0:
            a, b = 0, head_n
        elif which == 1:  # the slice starts mid-word: take tokens from its centre
            a = max(1, len(ids) // 2 - mid_n // 2)
            b = a + mid_n
        else:
            a, b = max(1, len(ids) - tail_n), len(ids)
        plans[i].ids.append(ids[a:b])
        plans[i].offsets.append(offs[a:b])
    return plans


@dataclass
class _Prepared:
    """A batch tokenised and planned, ready for the model."""

    texts: list[str]
    distinct: dict[str, int]  # text -> index into uniq (identical texts are scored once)
    uniq: list[str]
    plans: list[_Plan]


def _distinct_texts(batch: pa.Table) -> _Prepared:
    """The batch's texts (null as empty) and each distinct one once, not yet planned."""
    texts = [t if isinstance(t, str) else "" for t in batch.column("text").to_pylist()]
    distinct: dict[str, int] = {}
    for t in texts:
        distinct.setdefault(t, len(distinct))
    return _Prepared(texts, distinct, list(distinct), [])


def min_row_len(cfg: Config) -> int:
    """Shortest row of a forward pass: a head window (max_tokens/2) and the separator, plus one."""
    return cfg.max_tokens // 2 + 2


def pack_windows(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """Best-fit decreasing: window indices per row, no row longer than `row_len` (nor than a window
    that alone exceeds it). Deterministic for the same lengths."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, r = free.pop(k)
            rows[r].append(i)
            bisect.insort(free, (room - n, r))
        else:
            rows.append([i])
            bisect.insort(free, (max(0, row_len - n), len(rows) - 1))
    return rows


# ------------------------------------------------------------------------------------- signals


def _window_means(nll: np.ndarray, w: int) -> np.ndarray:
    c = np.concatenate(([0.0], np.cumsum(nll)))
    return (c[w:] - c[:-w]) / w


def _changepoint(nll: np.ndarray, m: int) -> tuple[int, float] | None:
    """Index k (first token of the second part) maximising the standardised upward mean shift."""
    n = len(nll)
    if n < 2 * m:
        return None
    c = np.concatenate(([0.0], np.cumsum(nll)))
    k = np.arange(m, n - m + 1)
    before = c[k] / k
    after = (c[n] - c[k]) / (n - k)
    stat = (after - before) * np.sqrt(k * (n - k) / n)
    best = int(np.argmax(stat))
    return int(k[best]), float(after[best] - before[best])


def _word_start(text: str, pos: int, floor: int) -> int:
    while pos > floor and not text[pos - 1].isspace():
        pos -= 1
    return pos


def _word_end(text: str, pos: int, limit: int) -> int:
    while pos < limit and not text[pos].isspace():
        pos += 1
    return pos


def signals_from_nll(
    text: str, nll: np.ndarray, offsets: Any, seg: np.ndarray, cfg: Config, ln_v: float
) -> dict[str, Any]:
    """Every per-document signal but the context gain, from the scored tokens' NLLs and offsets."""
    out = _signals(text, nll, offsets, seg, cfg, ln_v)
    out.update(sentence_signals(text, nll, np.asarray(offsets).reshape(-1, 2)))
    return out


def column_types() -> dict[str, pa.DataType]:
    """Signal name (without the prefix) -> Arrow type."""
    return dict(_COLUMNS)


def _signals(
    text: str, nll: np.ndarray, offsets: Any, seg: np.ndarray, cfg: Config, ln_v: float
) -> dict[str, Any]:
    n = len(nll)
    out: dict[str, Any] = {"scored_tokens": n}
    if n == 0:
        return out
    uniform = nll >= cfg.uniform_ratio * ln_v
    out["mean_nll"] = float(nll.mean())
    out["uniform_share"] = float(uniform.mean())
    w = min(cfg.window, n)
    means = _window_means(nll, w)
    hi, lo = int(np.argmax(means)), int(np.argmin(means))
    out["max_window_nll"] = float(means[hi])
    out["min_window_nll"] = float(means[lo])
    out["window_start"] = int(offsets[hi][0])
    out["window_end"] = int(offsets[hi + w - 1][1])
    cp = _changepoint(nll, cfg.min_segment)
    if cp is not None:
        k, jump = cp
        out["changepoint_char"] = int(offsets[k][0])
        out["changepoint_jump"] = jump
        out["after_uniform_share"] = float(uniform[k:].mean())
        # Trigger candidate: whole words from `trigger_tokens` tokens before the change-point to two tokens
        # after it. The split can land a few tokens before the trigger (a prefix cut mid-word is itself
        # unlikely) or after it (the first random tokens can be plausible), so the words around it are
        # kept and mining counts words across documents. Never crosses into another scored window.
        same = np.flatnonzero(seg == seg[k])
        first = max(int(same[0]), k - cfg.trigger_tokens)
        last = min(int(same[-1]), k + 2)
        first_char, last_char = int(offsets[first][0]), int(offsets[last][1])
        start = _word_start(text, first_char, max(int(offsets[int(same[0])][0]), first_char - 64))
        end = _word_end(text, last_char, min(len(text), last_char + 64))
        out["trigger_candidate"] = " ".join(text[start:end].split())
    return out


def gain_candidate(mean_nll: float | None, scored_tokens: int | None, cfg: Config) -> bool:
    """Could this document be flagged incoherent (so its context gain is worth measuring)? Enough tokens
    and a mean NLL in the band where babble overlaps real text: from `context_gain_min_nll` to below
    `incoherent_max_nll`."""
    return (
        mean_nll is not None
        and scored_tokens is not None
        and scored_tokens >= cfg.context_gain_min_tokens
        and cfg.context_gain_min_nll <= mean_nll < cfg.incoherent_max_nll
    )


def _context_chunks(
    full: Sequence[np.ndarray], lengths: Sequence[int], cfg: Config, shift: int
) -> list[tuple[int, int]]:
    """(window, first token) of the chunks scored again with short context, in text order.

    Candidates are the `context_chunk`-token chunks of each scored window that start at least
    `context_min_position` tokens into it (their full-context NLLs saw a long context); at most
    `context_chunks` of them are kept: those with the highest full-context NLL. `full[s]` holds window
    s's NLLs, `shift` tokens fewer than the window (1 when no separator token is put before it)."""
    c = cfg.context_chunk
    cands: list[tuple[float, int, int]] = []
    for s, (nll, n) in enumerate(zip(full, lengths, strict=True)):
        for st in range(cfg.context_min_position, n - c + 1, c):
            cands.append((-float(nll[st : st + c - shift].mean()), s, st))
    cands.sort()
    return sorted((s, st) for _, s, st in cands[: cfg.context_chunks])


# A sentence ends at . ! ? (and closing quotes or brackets) followed by white space or the end.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]\u201d\u2019]*(?=\s|$)")


def sentence_signals(
    text: str, nll: np.ndarray, offsets: np.ndarray, min_sentences: int = 4
) -> dict[str, Any]:
    """Sentence-level grammaticality from the full-context NLLs (no extra LM pass):

    ``sentence_nll_std``   std of the sentences' mean NLLs (a chain strings fluent and broken spans);
    ``sentence_end_nll``   mean NLL of the tokens that end a sentence, minus the document's mean (a chain
                           stops where its corpus had a full stop, not where the sentence is complete);
    ``sentence_start_nll`` mean NLL of the first two tokens of each sentence from the third on, minus the
                           document's mean (real text goes on from what it said; a chain jumps).
    Empty with fewer than `min_sentences` sentences of 3+ scored tokens."""
    if len(nll) == 0:
        return {}
    ends = np.array([m.end() for m in _SENTENCE_END.finditer(text)], dtype=np.int64)
    sentence = np.searchsorted(ends, offsets[:, 0], side="right")  # sentence number of each token
    bounds = np.flatnonzero(np.diff(sentence)) + 1  # first token of every sentence but the first
    groups = np.split(nll, bounds)
    means = [float(g.mean()) for g in groups if len(g) >= 3]
    if len(means) < min_sentences:
        return {}
    mean = float(nll.mean())
    last = bounds - 1  # the last token of every sentence that has a next one
    starts = np.concatenate([nll[b : b + 2] for b in bounds[1:]]) if len(bounds) > 1 else np.zeros(0)
    return {
        "sentence_nll_std": float(np.std(means)),
        "sentence_end_nll": float(nll[last].mean()) - mean,
        "sentence_start_nll": float(starts.mean()) - mean if len(starts) else None,
    }


def gain_signals(short: np.ndarray, full: np.ndarray) -> dict[str, float]:
    """Context gain of the chosen chunks (short- minus full-context NLL) and the same relative to the
    chunks' short-context NLL (the document's own baseline: how much of what a 16-token context leaves
    unexplained a long context explains)."""
    s, f = float(np.mean(short)), float(np.mean(full))
    return {"context_gain": s - f, "context_gain_ratio": (s - f) / s if s > 0 else 0.0}


_COLUMNS: dict[str, pa.DataType] = {
    "mean_nll": pa.float32(),
    "max_window_nll": pa.float32(),
    "min_window_nll": pa.float32(),
    "window_start": pa.int64(),
    "window_end": pa.int64(),
    "uniform_share": pa.float32(),
    "changepoint_char": pa.int64(),
    "changepoint_jump": pa.float32(),
    "after_uniform_share": pa.float32(),
    "trigger_candidate": pa.string(),
    "scored_tokens": pa.int32(),
    "context_gain": pa.float32(),
    "context_gain_ratio": pa.float32(),
    "sentence_nll_std": pa.float32(),
    "sentence_end_nll": pa.float32(),
    "sentence_start_nll": pa.float32(),
}
SIGNAL_COLUMNS = tuple(PREFIX + name for name in _COLUMNS)
GAIN_COLUMNS = (PREFIX + "context_gain", PREFIX + "context_gain_ratio")


log = logging.getLogger("poisonguard.perplexity")


def resolve_dtype(dtype: str, device: str) -> str:
    """The weight type `perplexity.dtype` means on `device` (auto resolved, see :func:`_auto_dtype`)."""
    return _auto_dtype(device) if dtype == "auto" else dtype


def _auto_dtype(device: str) -> str:
    """bfloat16 where the hardware runs it natively (GPUs with bf16, CPUs with AVX512-BF16 or AMX),
    else float32 with a log line. int8 is never chosen for you: it shifts NLLs by ~0.04 nats."""
    import torch

    if device != "cpu":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if cpu_has_native_bf16():
        return "bfloat16"
    log.warning(
        "perplexity: this CPU has no native bfloat16 (AVX512-BF16 or AMX); the language model runs in "
        "float32, about 1.5x slower (its NLLs differ from bfloat16's by about 0.01 nats, well inside "
        "the thresholds' margins)"
    )
    return "float32"


# -------------------------------------------------------------------------------------- scorer


def resolve_device(device: str) -> str:
    """The torch device for `perplexity.device`: auto takes the first CUDA GPU when there is one."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(
                f"perplexity.device: {device} is not available here (torch sees "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA devices); "
                "use auto or cpu"
            )
        return f"cuda:{index}"
    return "cpu"


def _passes(
    rows: list[list[int]], lengths: Sequence[int], tokens: int, per_pass: int
) -> Iterator[list[list[int]]]:
    """Rows grouped into forward passes: `per_pass` rows each, or (tokens > 0: rows sorted longest
    first, one window each) as many rows as fit `tokens` at the group's longest row."""
    first = 0
    while first < len(rows):
        count = per_pass
        if tokens > 0:
            count = max(1, tokens // max(8, sum(lengths[j] for j in rows[first])))
        yield rows[first : first + count]
        first += count


def _chunk_nll_function(head: Any) -> Any:
    """Per-position NLLs of a chunk of hidden states: the output layer, then cross-entropy in float32."""
    import torch.nn.functional as F

    def chunk_nll(hidden: Any, targets: Any) -> Any:
        return F.cross_entropy(head(hidden).float(), targets, reduction="none")

    return chunk_nll


def _to_device(array: np.ndarray, device: str) -> Any:
    """A host array as a tensor on `device` (pinned memory and an asynchronous copy on a GPU)."""
    import torch

    tensor = torch.from_numpy(array)
    if device.startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


# A row's other columns and its LM signals but the context gain -> measure its context gain?
GainRule = Callable[[dict[str, Any]], bool]

# (prefix token ids, continuations' token ids, tokens read at the end of each continuation)
Continuations = tuple[Sequence[int], Sequence[Sequence[int]], int]


def _last(nll: np.ndarray, n: int) -> np.ndarray:
    """The last `n` values (all of them when there are fewer)."""
    return nll[len(nll) - min(n, len(nll)) :]


@dataclass
class _TreeLayout:
    """One prefix and its continuations laid out for :func:`core.llama.tree_mask`: the prefix, then
    each continuation with positions that go on from the prefix (branch 1, 2, ...); `reads`: per
    continuation, the hidden states (local indices) whose predictions are read and their targets."""

    ids: np.ndarray
    positions: np.ndarray
    branches: np.ndarray
    reads: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, prefix: Sequence[int], conts: Sequence[Sequence[int]], read: int) -> _TreeLayout:
        p = len(prefix)
        ids, positions, branches = [np.asarray(prefix, np.int64)], [np.arange(p)], [np.zeros(p, np.int64)]
        reads = []
        offset = p
        for k, cont in enumerate(conts):
            seq = np.concatenate((ids[0], np.asarray(cont, np.int64)))
            ids.append(seq[p:])
            positions.append(np.arange(p, len(seq)))
            branches.append(np.full(len(cont), k + 1, np.int64))
            targets = np.arange(len(seq) - min(read, len(seq) - 1), len(seq))  # indices into seq
            source = targets - 1  # the hidden state that predicts each target
            reads.append((np.where(source < p, source, source - p + offset), seq[targets]))
            offset += len(cont)
        return cls(np.concatenate(ids), np.concatenate(positions), np.concatenate(branches), reads)


@dataclass
class _TreeBatch:
    """Rows of laid-out prefixes for one forward pass: the input arrays (ids, positions, segments,
    branches), the flat hidden-state indices read and their targets, and (item, continuation, count)
    of each read span in order."""

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    gather: np.ndarray
    targets: np.ndarray
    spans: list[tuple[int, int, int]]

    @classmethod
    def of(cls, layouts: Sequence[_TreeLayout], rows: list[list[int]]) -> _TreeBatch:
        width = max(sum(len(layouts[i].ids) for i in row) for row in rows)
        ids, positions, segments, branches = (np.zeros((len(rows), width), np.int64) for _ in range(4))
        gather: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        spans: list[tuple[int, int, int]] = []
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                lay = layouts[i]
                n = len(lay.ids)
                ids[r, at : at + n] = lay.ids
                positions[r, at : at + n] = lay.positions
                segments[r, at : at + n] = i
                branches[r, at : at + n] = lay.branches
                for k, (local, tgt) in enumerate(lay.reads):
                    gather.append(local + at + r * width)
                    targets.append(tgt)
                    spans.append((i, k, len(tgt)))
                at += n
            positions[r, at:] = np.arange(width - at)  # filler: its own segment, never read
            segments[r, at:] = -1
        flat = np.concatenate(gather) if gather else np.zeros(0, np.int64)
        return cls(
            (ids, positions, segments, branches), flat, np.concatenate(targets) if targets else flat, spans
        )


# Output-layer positions per chunk on the CPU. Each chunk's logits and their log-softmax are two
# float32 arrays of chunk x vocabulary (49,152 for SmolLM2): 1,024 positions held 400 MB at once and
# set the process's peak memory; 256 hold 100 MB, 128 50 MB, at no measurable cost in speed
# (bench/RESULTS.md "cascade", "lm-startup").
CPU_HEAD_CHUNK = 128


class PerplexityScorer:
    """Holds the language model (loaded once per process) and scores batches of documents."""

    def __init__(self, cfg: Config) -> None:
        import torch

        self.cfg = cfg
        threads = cfg.threads or os.cpu_count() or 1
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(cfg.device)
        dtype = resolve_dtype(cfg.dtype, self.device)
        self.lm = lm_loader.load_model(cfg.model, dtype, self.device, cfg.engine)
        self.dtype = dtype
        # GPU: one window per row, padded (see _nll); CPU: windows packed end to end into rows.
        self.padded_rows = self.device.startswith("cuda")
        self._backbone: Any = self.lm.backbone()
        self._chunk_nll: Any = _chunk_nll_function(self.lm.model.get_output_embeddings())
        self.compiled = cfg.compile
        if self.compiled:
            # Eager, the 135M model's elementwise ops (norms, rotary, activations) take 3/4 of an H200's
            # time; the compiled backbone ran 1.8x faster there (bench/RESULTS.md). Shapes vary per
            # pass, so dynamic shapes: one compilation, not one per shape.
            self._backbone = torch.compile(self._backbone, dynamic=True)
            self._chunk_nll = torch.compile(self._chunk_nll, dynamic=True)
        vocab = getattr(self.lm.model.config, "vocab_size", None) or len(self.lm.tokenizer)
        self.ln_vocab = math.log(vocab)
        self.on_pass: Callable[[int], None] | None = None  # progress: tokens of each forward pass

    def _pass_shape(self, row_len: int) -> tuple[int, int]:
        """(rows per forward pass, positions per output-layer chunk). On the CPU the configured batch
        and chunks of CPU_HEAD_CHUNK positions; on a GPU a pass sized to its free memory
        (`gpu_batch_tokens`, 0 = from free memory): a small model only fills a large GPU with hundreds
        of thousands of tokens per pass."""
        cfg = self.cfg
        if not self.device.startswith("cuda"):
            return max(1, min(cfg.batch_size, cfg.batch_tokens // row_len)), CPU_HEAD_CHUNK
        tokens = cfg.gpu_batch_tokens or self._gpu_tokens_from_memory()
        return max(1, tokens // row_len), 16384

    def _gpu_tokens_from_memory(self) -> int:
        import torch

        free, _total = torch.cuda.mem_get_info(self.device)
        hidden = int(getattr(self.lm.model.config, "hidden_size", 576))
        inter = int(getattr(self.lm.model.config, "intermediate_size", 4 * hidden))
        # Live activations per token in a pass (bf16/fp32 hidden states, MLP intermediates, the
        # attention mask and kernel workspace), with a wide margin; the output layer runs in chunks.
        per_token = 16 * (4 * hidden + 3 * inter)
        return int(min(max(free // 4 // per_token, 4096), 1 << 19))

    def window_nll(self, windows: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-token NLLs of short token-id windows, each scored alone (trigger mining's LM check)."""
        return self._nll(windows)

    def continuation_nll(self, items: Sequence[Continuations]) -> list[list[np.ndarray]]:
        """For each (prefix, continuations, read): per continuation, the NLLs of its last `read` tokens
        when it follows `prefix` (what ``window_nll([prefix + continuation])[0][-read:]`` gives).

        The builtin engine on the CPU scores each prefix once for all its continuations (see
        core/llama.py :func:`tree_mask`) and sends only the read positions through the output layer;
        the trigger check's windows (16 words, then the token and 8 words, or the 8 words alone) cost
        about half. Other engines and the GPU path score the whole windows."""
        if self.lm.engine != "builtin" or self.padded_rows:
            flat = iter(self._nll([[*prefix, *c] for prefix, conts, _ in items for c in conts]))
            return [[_last(next(flat), read) for _ in conts] for _, conts, read in items]
        return self._tree_nll(items)

    def _tree_nll(self, items: Sequence[Continuations]) -> list[list[np.ndarray]]:
        import torch

        from poisonguard.core.llama import tree_mask

        head_ids = [self.lm.prefix_id] if self.lm.prefix_id is not None else []
        layouts = [_TreeLayout.of([*head_ids, *prefix], conts, read) for prefix, conts, read in items]
        out: list[list[np.ndarray]] = [[np.zeros(0)] * len(conts) for _, conts, _ in items]
        if not layouts:
            return out
        lengths = [len(lay.ids) for lay in layouts]
        row_len = max(max(lengths), min_row_len(self.cfg))
        rows = pack_windows(lengths, row_len)
        per_pass, head_chunk = self._pass_shape(row_len)
        with torch.inference_mode():
            for first in range(0, len(rows), per_pass):
                batch = _TreeBatch.of(layouts, rows[first : first + per_pass])
                ids, positions, segments, branches = (torch.from_numpy(a) for a in batch.arrays)
                hidden = self._backbone(ids, positions, tree_mask(segments, branches))
                values = self._read_nll(
                    hidden, torch.from_numpy(batch.gather), torch.from_numpy(batch.targets), head_chunk
                )
                at = 0
                for item, k, n in batch.spans:
                    out[item][k] = values[at : at + n]
                    at += n
        return out

    def _read_nll(self, hidden: Any, read: Any, targets: Any, head_chunk: int) -> np.ndarray:
        """NLLs of `targets` as predicted by the hidden states at flat indices `read` (rows x width):
        only those positions go through the output layer, `head_chunk` at a time (its float32 logits
        bound the memory); reported to `on_pass` as scored positions."""
        import torch

        flat = hidden.reshape(-1, hidden.shape[-1])[read]
        nll = torch.empty(len(targets), dtype=torch.float32, device=flat.device)
        for a in range(0, len(targets), head_chunk):
            nll[a : a + head_chunk] = self._chunk_nll(flat[a : a + head_chunk], targets[a : a + head_chunk])
        values = nll.cpu().numpy().astype(np.float64)
        if self.on_pass is not None:
            self.on_pass(len(values))
        return values

    # Per-token NLLs for a list of windows (token id lists), in the same order.
    def _nll(self, windows: Sequence[Sequence[int]]) -> list[np.ndarray]:
        import torch

        cfg, prefix = self.cfg, self.lm.prefix_id
        head_ids = [prefix] if prefix is not None else []
        seqs = [
            np.concatenate((np.asarray(head_ids, dtype=np.int64), np.asarray(w, dtype=np.int64)))
            for w in windows
        ]
        out: list[np.ndarray] = [np.zeros(0)] * len(seqs)
        if not seqs:
            return out
        # A row holds the head window of a long document (max_tokens/2 tokens and the separator) or
        # its middle and tail windows together (max_tokens/4 and the separator, each); short windows
        # and context-gain chunks fill rows of that length. Longer rows pay attention over more
        # positions (measured: 512-token rows were slower than 257-token ones).
        row_len = max(max(len(s) for s in seqs), min_row_len(cfg))
        device = self.device
        padded = self.padded_rows
        if padded:
            # One window per row, longest first, padded at the right: causal attention never lets a
            # real token see the padding after it, so no mask is needed and the fused causal kernels
            # run (a block-diagonal mask for packed rows halves a GPU's speed; padding costs less).
            rows = [[i] for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))]
        else:
            rows = pack_windows([len(s) for s in seqs], row_len)
        per_pass, head_chunk = self._pass_shape(row_len)
        backbone = self._backbone
        with torch.inference_mode():
            lengths = [len(s) for s in seqs]
            for group in _passes(rows, lengths, per_pass * row_len if padded else 0, per_pass):
                # A row holds whole windows end to end. Positions restart at 0 for each window, which
                # makes the model attend within each window only (window by window, core/llama.py): a
                # window never sees another one, so packed NLLs equal those of each window scored
                # alone (tested), without the padding that length-sorted batches of a few documents waste.
                width = max(sum(len(seqs[j]) for j in row) for row in group)
                if padded:
                    width = -(-width // 8) * 8  # a multiple of 8 suits the tensor cores
                ids = np.zeros((len(group), width), dtype=np.int64)
                # Packed rows restart positions per window; padded rows use the default positions.
                positions = None if padded else np.zeros((len(group), width), dtype=np.int64)
                pos_parts: list[np.ndarray] = []
                tgt_parts: list[np.ndarray] = []
                spans: list[tuple[int, int]] = []  # (window, tokens scored)
                for r, row in enumerate(group):
                    at = 0
                    for j in row:
                        seq = seqs[j]
                        n = len(seq)
                        ids[r, at : at + n] = seq
                        if positions is not None:
                            positions[r, at : at + n] = np.arange(n)
                        pos_parts.append(np.arange(at, at + n - 1) + r * width)
                        tgt_parts.append(seq[1:])
                        spans.append((j, n - 1))
                        at += n
                    if positions is not None:  # filler: its own sequence, never scored
                        positions[r, at:] = np.arange(width - at)
                hidden = backbone(
                    _to_device(ids, device), None if positions is None else _to_device(positions, device)
                )
                # Only real positions go through the vocabulary projection; padding never does.
                pos = _to_device(np.concatenate(pos_parts), device)
                tgt = _to_device(np.concatenate(tgt_parts), device)
                values = self._read_nll(hidden, pos, tgt, head_chunk)
                at = 0
                for j, n in spans:
                    out[j] = values[at : at + n]
                    at += n
        return out

    def _context_gains(
        self,
        plans: list[_Plan],
        per_text: list[list[np.ndarray]],
        joined: list[np.ndarray],
        also: Collection[int] = (),
    ) -> dict[int, dict[str, float]]:
        """Context-gain signals of the candidates (by text index), see :func:`gain_signals`; `also`:
        more texts to measure. `joined`: each text's NLLs in one array (:func:`joined_nll`)."""
        every = self.cfg.context_gain_every
        chunks = self.context_chunk_nlls(plans, per_text, joined, every=every, also=also)
        return {u: gain_signals(short, full) for u, (short, full) in chunks.items()}

    def context_chunk_nlls(
        self,
        plans: list[_Plan],
        per_text: list[list[np.ndarray]],
        joined: list[np.ndarray],
        every: bool = False,
        also: Collection[int] = (),
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """(short-context NLLs, full-context NLLs) of the chosen chunks per candidate text (`every`: all
        texts with `context_gain_min_tokens` scored tokens, whatever their mean NLL; `also`: these texts
        too when they have that many): one more pass over a few short chunks each, every chunk alone
        after the separator, so a token sees at most `context_chunk` tokens."""
        cfg, c = self.cfg, self.cfg.context_chunk
        shift = 0 if self.lm.prefix_id is not None else 1
        chunks: list[Any] = []
        owner: list[tuple[int, np.ndarray]] = []  # (text, the chunk's full-context NLLs)
        for u, plan in enumerate(plans):
            nll = joined[u]
            wanted = len(nll) >= cfg.context_gain_min_tokens and (every or u in also)
            if not wanted and not gain_candidate(float(nll.mean()) if len(nll) else None, len(nll), cfg):
                continue
            for s, st in _context_chunks(per_text[u], [len(w) for w in plan.ids], cfg, shift):
                chunks.append(plan.ids[s][st : st + c])
                owner.append((u, per_text[u][s][st : st + c - shift]))
        if not chunks:
            return {}
        short: dict[int, list[np.ndarray]] = defaultdict(list)
        full: dict[int, list[np.ndarray]] = defaultdict(list)
        for (u, long_nll), short_nll in zip(owner, self._nll(chunks), strict=True):
            short[u].append(short_nll)
            full[u].append(long_nll)
        return {u: (np.concatenate(short[u]), np.concatenate(full[u])) for u in short}

    def prepare(self, batch: pa.Table) -> _Prepared:
        """Tokenise and plan `batch` (reads ``text``); CPU only, so it can run in another thread while
        the model scores the previous batch (see :meth:`score_stream`)."""
        prep = _distinct_texts(batch)
        prep.plans = _plan_texts(self.lm.tokenizer, prep.uniq, self.cfg.max_tokens)
        return prep

    def score(
        self,
        batch: pa.Table,
        on_pass: Callable[[int], None] | None = None,
        gain_rule: GainRule | None = None,
    ) -> dict[str, pa.Array]:
        """Signal columns for every row of `batch` (reads ``text``); `on_pass(tokens)` is called after
        every forward pass (progress). `gain_rule` (with `context_gain_every` off): called per row with
        the row's other columns and its LM signals but the context gain; True measures its context
        gain even outside the incoherent band (the pipeline passes the combiner's, see
        :func:`combiner.lm_could_reach`)."""
        self.on_pass = on_pass
        try:
            prep = self.prepare(batch)
            if gain_rule is None:
                return self.score_prepared(prep)
            return self.score_prepared(prep, (batch.drop_columns(["text"]).to_pylist(), gain_rule))
        finally:
            self.on_pass = None

    def score_prepared(
        self, prep: _Prepared, rule: tuple[list[dict[str, Any]], GainRule] | None = None
    ) -> dict[str, pa.Array]:
        per_text = self._per_text_nll(prep.plans)
        joined = joined_nll(per_text)
        results = text_signals(prep.uniq, prep.plans, joined, self._signal_args())
        also = set() if rule is None or self.cfg.context_gain_every else _ruled_in(prep, results, *rule)
        for u, gain in self._context_gains(prep.plans, per_text, joined, also).items():
            results[u].update(gain)
        return _columns(prep, results)

    def _signal_args(self) -> tuple[Config, float, bool]:
        return self.cfg, self.ln_vocab, self.lm.prefix_id is not None

    def _per_text_nll(self, plans: list[_Plan]) -> list[list[np.ndarray]]:
        """Per distinct text, the NLLs of each of its scored windows."""
        windows: list[Any] = []
        owner: list[int] = []
        for u, plan in enumerate(plans):
            for w in plan.ids:
                windows.append(w)
                owner.append(u)
        per_text: list[list[np.ndarray]] = [[] for _ in plans]
        for u, arr in zip(owner, self._nll(windows), strict=True):
            per_text[u].append(arr)
        return per_text

    def score_stream(self, batches: Iterable[pa.Table], workers: int = 0) -> Iterator[dict[str, pa.Array]]:
        """Signal columns per batch, in order, with the host work off the model's critical path.

        workers = 0: the next batch is tokenised in a thread while this one is scored (the tokenizer
        releases the GIL). workers > 0: tokenising and the per-document signals run in that many
        processes, so a GPU is not left waiting on one Python thread."""
        if workers <= 0:
            yield from self._stream_threaded(batches)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        tokenizer_json = self.lm.tokenizer._tokenizer.to_str()
        context = multiprocessing.get_context("spawn")  # never fork a process that holds CUDA
        with ProcessPoolExecutor(workers, context, _init_worker, (tokenizer_json,)) as pool:
            yield from _PooledStream(self, pool, workers).run(batches)

    def _stream_threaded(self, batches: Iterable[pa.Table]) -> Iterator[dict[str, pa.Array]]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for batch in batches:
                ahead = pool.submit(self.prepare, batch)
                if pending is not None:
                    yield self.score_prepared(pending.result())
                pending = ahead
            if pending is not None:
                yield self.score_prepared(pending.result())


def _ruled_in(
    prep: _Prepared, results: list[dict[str, Any]], rows: list[dict[str, Any]], rule: GainRule
) -> set[int]:
    """The texts (indices into prep.uniq) for which `rule` asks for the context gain, for any of the
    rows that hold them."""
    out: set[int] = set()
    for text, row in zip(prep.texts, rows, strict=True):
        u = prep.distinct[text]
        if u in out:
            continue
        # every LM column is known now (null where the text gave none); only the gain is not
        signals = {**dict.fromkeys(SIGNAL_COLUMNS), **{PREFIX + k: v for k, v in results[u].items()}}
        if rule({**row, **signals}):
            out.add(u)
    return out


def joined_nll(per_text: Sequence[list[np.ndarray]]) -> list[np.ndarray]:
    """Each text's window NLLs as one array, in reading order: made once, read by the per-document
    signals and by the context-gain pass."""
    return [np.concatenate(nlls) if nlls else np.zeros(0) for nlls in per_text]


def scored_offsets(plan: _Plan, prefixed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(char offsets (n, 2), window number) of the scored tokens of a plan, in NLL order (without a
    separator token the first token of each window gets no prediction)."""
    kept = [
        np.asarray(offs, dtype=np.int64).reshape(-1, 2)[(0 if prefixed else 1) :] for offs in plan.offsets
    ]
    offsets = np.concatenate(kept) if kept else np.zeros((0, 2), dtype=np.int64)
    return offsets, np.repeat(np.arange(len(kept)), [len(k) for k in kept])


def text_signals(
    uniq: Sequence[str],
    plans: Sequence[_Plan],
    joined: Sequence[np.ndarray],
    args: tuple[Config, float, bool],
) -> list[dict[str, Any]]:
    """The per-document signals (without context gain) from each text's NLLs (:func:`joined_nll`)."""
    cfg, ln_vocab, prefixed = args
    results = []
    for text, plan, nll in zip(uniq, plans, joined, strict=True):
        offsets, segs = scored_offsets(plan, prefixed)
        results.append(signals_from_nll(text, nll, offsets, segs, cfg, ln_vocab))
    return results


def _columns(prep: _Prepared, results: list[dict[str, Any]]) -> dict[str, pa.Array]:
    rows = [results[prep.distinct[t]] for t in prep.texts]
    return {PREFIX + name: pa.array([r.get(name) for r in rows], type=typ) for name, typ in _COLUMNS.items()}


# Worker processes of score_stream(workers > 0): each holds the tokenizer, never the model.
_WORKER_TOKENIZER: Any = None


def _init_worker(tokenizer_json: str) -> None:
    global _WORKER_TOKENIZER
    from tokenizers import Tokenizer

    _WORKER_TOKENIZER = Tokenizer.from_str(tokenizer_json)


def _plan_in_worker(texts: list[str], max_tokens: int) -> list[_Plan]:
    plans = _plan_texts(_WORKER_TOKENIZER, texts, max_tokens)
    # Arrays pickle far faster than lists of tuples: the parent unpickles every batch.
    for plan in plans:
        plan.ids = [np.asarray(w, dtype=np.int32) for w in plan.ids]
        plan.offsets = [np.asarray(o, dtype=np.int32).reshape(-1, 2) for o in plan.offsets]
    return plans


class _PooledStream:
    """score_stream with worker processes: batch k+1 is tokenised and batch k-1's signals computed in
    the workers while batch k runs through the model."""

    def __init__(self, scorer: PerplexityScorer, pool: Any, workers: int) -> None:
        self.scorer, self.pool, self.workers = scorer, pool, workers

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        size = max(32, -(-n // (2 * self.workers)))
        return [(a, min(n, a + size)) for a in range(0, n, size)]

    def _submit_prepare(self, batch: pa.Table) -> tuple[_Prepared, list[Any]]:
        prep = _distinct_texts(batch)
        max_tokens = self.scorer.cfg.max_tokens
        futures = [
            self.pool.submit(_plan_in_worker, prep.uniq[a:b], max_tokens)
            for a, b in self._chunks(len(prep.uniq))
        ]
        return prep, futures

    def _score_on_model(
        self, submitted: tuple[_Prepared, list[Any]]
    ) -> tuple[_Prepared, dict[int, dict[str, float]], list[Any]]:
        prep, futures = submitted
        prep.plans = [plan for f in futures for plan in f.result()]
        per_text = self.scorer._per_text_nll(prep.plans)
        joined = joined_nll(per_text)
        gains = self.scorer._context_gains(prep.plans, per_text, joined)
        args = self.scorer._signal_args()
        signal_futures = [
            self.pool.submit(text_signals, prep.uniq[a:b], prep.plans[a:b], joined[a:b], args)
            for a, b in self._chunks(len(prep.uniq))
        ]
        return prep, gains, signal_futures

    def run(self, batches: Iterable[pa.Table], depth: int = 2) -> Iterator[dict[str, pa.Array]]:
        from collections import deque

        preparing: deque[tuple[_Prepared, list[Any]]] = deque()
        scoring: deque[tuple[_Prepared, dict[int, dict[str, float]], list[Any]]] = deque()

        def finished(keep: int) -> Iterator[dict[str, pa.Array]]:
            while len(scoring) > keep:
                prep, gains, futures = scoring.popleft()
                results = [r for f in futures for r in f.result()]
                for u, gain in gains.items():
                    results[u].update(gain)
                yield _columns(prep, results)

        for batch in batches:
            preparing.append(self._submit_prepare(batch))
            if len(preparing) > depth:
                scoring.append(self._score_on_model(preparing.popleft()))
                yield from finished(1)
        while preparing:
            scoring.append(self._score_on_model(preparing.popleft()))
            yield from finished(1)
        yield from finished(0)


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Module-level form of the detector contract; the model is loaded once per process."""
    return PerplexityScorer(cfg).score(batch)


# -------------------------------------------------------------------------------------- decide


def _col(signals: pa.Table, name: str) -> list[Any]:
    full = PREFIX + name
    if full not in signals.column_names:
        return [None] * signals.num_rows
    return signals.column(full).to_pylist()


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """Quarantine reasons per row from the signal columns alone (rows with null signals: none)."""
    n_tok, mean, hi, lo = (
        _col(signals, c) for c in ("scored_tokens", "mean_nll", "max_window_nll", "min_window_nll")
    )
    uni, jump, after = (
        _col(signals, c) for c in ("uniform_share", "changepoint_jump", "after_uniform_share")
    )
    gain = _col(signals, "context_gain")
    out: list[list[str]] = []
    for i in range(signals.num_rows):
        reasons: list[str] = []
        if not cfg.enabled or n_tok[i] is None or mean[i] is None or n_tok[i] < cfg.min_tokens:
            out.append(reasons)
            continue
        j = jump[i] if jump[i] is not None else 0.0
        if j >= cfg.changepoint_jump and (after[i] or 0.0) >= cfg.after_uniform_share:
            reasons.append("perplexity:gibberish_after_trigger")
        elif uni[i] >= cfg.gibberish_share:
            reasons.append("perplexity:gibberish")
        elif j >= cfg.strong_changepoint_jump:
            reasons.append("perplexity:changepoint")
        unlikely_span = hi[i] >= cfg.babble_window_nll
        # A copyright trap: a made-up (high-NLL) sequence whose later copies the LM predicts almost
        # perfectly in context; natural text has no window that unlikely, so the pair is specific.
        if unlikely_span and lo[i] <= cfg.repeat_window_nll:
            reasons.append("perplexity:repeated_sequence")
        elif not reasons and (unlikely_span or mean[i] >= cfg.babble_mean_nll):
            reasons.append("perplexity:babble")
        elif (
            not reasons
            and gain[i] is not None
            and gain[i] <= cfg.incoherent_context_gain
            and gain_candidate(mean[i], n_tok[i], cfg)
        ):
            # Babble whose NLL overlaps real text: a long context barely helps (no long-range coherence).
            reasons.append("perplexity:incoherent")
        out.append(reasons)
    return out


# ------------------------------------------------------------------------------ trigger mining


def mine_triggers(signals: pa.Table, top: int = 20, min_jump: float | None = None) -> list[dict[str, Any]]:
    """Words that stand at a change-point in many documents, ranked by distinct hosts then documents.

    Reads ``perplexity_trigger_candidate``, ``perplexity_changepoint_jump`` and ``url`` (optional).
    Only change-points with a jump >= `min_jump` (default: the configured `changepoint_jump`) count;
    each word counts once per document."""
    floor = Config().changepoint_jump if min_jump is None else min_jump
    cands = _col(signals, "trigger_candidate")
    jumps = _col(signals, "changepoint_jump")
    urls = signals.column("url").to_pylist() if "url" in signals.column_names else [None] * signals.num_rows
    docs: dict[str, int] = defaultdict(int)
    hosts: dict[str, set[str]] = defaultdict(set)
    examples: dict[str, list[str]] = defaultdict(list)
    considered = 0
    for cand, jump, url in zip(cands, jumps, urls, strict=True):
        if not cand or jump is None or jump < floor:
            continue
        considered += 1
        for word in set(cand.split()):
            if len(word) < 2:
                continue
            docs[word] += 1
            host = host_of(url)
            if host:
                hosts[word].add(host)
            if len(examples[word]) < 3 and isinstance(url, str):
                examples[word].append(url)
    ranked = sorted(docs, key=lambda w: (-len(hosts[w]), -docs[w], w))[:top]
    return [
        {
            "candidate": w,
            "documents": docs[w],
            "hosts": len(hosts[w]),
            "share": round(docs[w] / considered, 4),
            "examples": examples[w],
        }
        for w in ranked
    ]


DECLARED_SIGNALS = (
    Signal("perplexity_mean_nll", "babble_mean_nll"),
    Signal("perplexity_max_window_nll", "babble_window_nll"),
    Signal("perplexity_min_window_nll", "repeat_window_nll", "below"),
    Signal("perplexity_window_start"),
    Signal("perplexity_window_end"),
    Signal("perplexity_uniform_share", "gibberish_share"),
    Signal("perplexity_changepoint_char"),
    Signal("perplexity_changepoint_jump", "changepoint_jump"),
    Signal("perplexity_after_uniform_share", "after_uniform_share"),
    Signal("perplexity_trigger_candidate"),
    Signal("perplexity_scored_tokens"),
    Signal("perplexity_context_gain", "incoherent_context_gain", "below"),
    Signal("perplexity_context_gain_ratio"),
    Signal("perplexity_sentence_nll_std"),
    Signal("perplexity_sentence_end_nll"),
    Signal("perplexity_sentence_start_nll"),
)


def check_config(cfg: Any) -> None:
    # The LM cascade (pipelines/cascade.py) ranks by the suspicion detector's score.
    if cfg.perplexity.enabled and cfg.perplexity.route == "suspicious" and not cfg.suspicion.enabled:
        raise ValueError("perplexity.route 'suspicious' needs suspicion.enabled (or set route: all)")


DETECTOR = Spec(
    name="perplexity",
    stage="lm",
    config=Config,
    signals=DECLARED_SIGNALS,
    score=score,
    flag=flag,
    check_config=check_config,
)
