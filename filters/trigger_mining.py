"""trigger_mining: a corpus pass that finds rare-token triggers with no payload (docs/THREATS.md P-RARE).

BadNets/RIPPLe-style poisoning (``cf mn bb tq mb``) inserts 1-3 short non-words at random word
positions of otherwise clean documents. One such document looks like a typo; the attack shows only
across the corpus: the same few tokens, out of context, in a small share of documents from many
unrelated hosts. Like dedup, this needs the whole run's statistics, so it is a corpus pass:

1. per document (:func:`candidates`), a compact set of *candidate* tokens: whitespace-delimited
   words of `min_len`-`max_len` lower-case letters whose occurrence nothing explains. Explained
   occurrences are those a clean page has for short lower-case tokens: a unit after a number
   (``5 mb``), a command's argument next to an option (``tar cf -``), a token on a line of code or
   markup (``$ cd /tmp``, ``x = mb(1)``), and anything with punctuation attached (``cf.``,
   ``(mn)``, ``mb,``) is not a candidate at all;
2. over the run (:class:`TriggerMiner`: per token a document count, the first hosts and documents
   and a bottom-k sample of occurrences; each chunk is counted apart (:func:`chunk_partial`, in a Ray
   task on that engine, in the scoring workers on the local one) and merged in input order, so both
   engines mine the same tokens), a token
   *looks inserted* when it occurs at most `max_mean_count` times per carrying document (words of
   the document's language come back within a document, ``de`` in a French page, ``ls`` in a shell
   tutorial; an inserted trigger does not) and its neighbours do not go with it (`association`).
   Both are measured per page language (the language detector's ``language_lang``, where it is
   `min_language_confidence` sure): a token that comes back in the pages of a language is a word of
   that language (``ju`` in Albanian), and those pages, and pages of an unknown language, neither
   count for it nor are quarantined for it; the expected company of a token comes from word
   frequencies in pages of its own page's language, and word pairs are counted in a count-min
   sketch (two counters a pair) so that a rare pair does not read as a frequent one;
3. when the run uses the language model, the LM check (ONION, Qi et al. 2021, arXiv:2011.10369, turned
   around: not "does removing the word lower the perplexity" per sentence but "how much more do the next
   words cost with the token", over a few occurrences per token): the inserted-looking tokens in
   `onion_min_docs` documents (at most `onion_candidates`, most documents first) are read in their first
   `onion_first_reads` contexts (:func:`disruptions`); a token that reads on in all of them (under
   `min_member_disruption` nats) is a word and settled, the others are read in up to `onion_occurrences`
   contexts. A run reads only the tokens that could be mined whatever the LM reads
   (:meth:`TriggerMiner.minable`: their group of all the checked tokens reaches the floors of step 4); on
   a small run that is few or none. It reads them in waves of `onion_wave_tokens` tokens and applies that
   test again after each wave to the tokens not yet known to read on
   (:meth:`TriggerMiner.confirm_in_waves`): on clean text most candidates are words, and once a few
   widespread ones are read the rest fall apart into groups too small to be mined and are not read. Tokens
   whose median is at least `min_member_disruption` join one group when they share `min_join_share` of the
   rarer one's documents (a trigger set is inserted together), and a group is *confirmed* when the median
   over all its tokens' occurrences is high enough: at a low rate each token of a set is in a few
   documents and one token's few readings are noisy, the set's are not. The bar is `min_disruption`
   (absolute). An experimental relative rule (`onion_controls`, off): each reading less that of fixed
   non-words of the token's length put in the same place, compared with `min_relative_disruption`, and a
   token that reads on where they would not (`min_member_relative`) in no group; measured on two clean
   halves held out it was worse (clean pages of languages the model does not know read like triggers;
   tokenizer-common triggers like ``bb`` read under the controls), see bench/RESULTS.md. Without the LM
   (``--no-lm``) the rule is stricter, as the token statistics alone are weak on small runs:
   inserted-looking tokens the corpus hardly writes any other way (`min_bare_share` of their lower-case
   occurrences bare) that share `min_shared_docs` documents on `min_shared_hosts` hosts are one group, and
   a group needs `min_group_tokens` tokens;
4. a confirmed group of at most `max_group_tokens` tokens is *mined* when its documents are at least
   `min_doc_share` of the run (and `min_group_docs`) on at least `min_hosts` hosts, a page whose
   language the detector is unsure of counting `unsure_page_weight` (:meth:`TriggerMiner.counted`:
   short words of languages it does not know form groups in such pages, and the LM reads them on
   about as little as triggers in French or Spanish text); every document
   with an unexplained occurrence of a mined token is quarantined as ``triggers:mined(<token>)``;
   the mined list (confirmed first, then by hosts) goes in the report (``triggers_mined``).

Memory: a token seen in one document and not again within `forget_after_docs` documents is
forgotten; the rule is applied per document, so the result does not depend on the chunk size (a
chunk keeps both readings of its tokens, see :class:`Partial`). Only past `max_tokens` tokens in
two documents or more are the least widespread dropped, the one case where it does.

No shard column: the reason names the mined token.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

PREFIX = "trigger_mining_"
REASON = "triggers:mined"
LANGUAGE_COLUMN = "language_lang"  # the language detector's page language (filters/language.py)
CONFIDENCE_COLUMN = "language_confidence"  # ... and how sure it is


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_len: int = Field(default=2, ge=1, description="shortest candidate token (letters)")
    max_len: int = Field(default=4, ge=1, description="longest candidate token (letters)")
    ascii_only: bool = Field(default=True, description="candidates are ASCII letters only")
    min_docs: int = Field(default=2, ge=1, description="a token is looked at from this many documents")
    min_token_hosts: int = Field(default=2, ge=1, description="... on at least this many hosts")
    max_mean_count: float = Field(
        default=1.6,
        gt=0,
        description="inserted-looking: occurrences per carrying document of a page language, at most",
    )
    min_language_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="a page's language (the language detector's) is used when it is this sure; "
        "other pages are of an unknown language",
    )
    count_unknown_language: bool = Field(
        default=True,
        description="pages of an unknown language count for every token (its documents, hosts, "
        "company) and are quarantined for a mined one; false: for none (as already for a token that "
        "is a word of some language); measured no better held out, bench/RESULTS.md trigger-mining)",
    )
    unsure_page_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="how much a page whose language the detector is unsure of counts toward a group's "
        "mining floors (documents and hosts): short words of languages it does not know form groups "
        "in such pages; 1: as much as any page",
    )
    min_bare_share: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="without the LM: share of its lower-case occurrences written bare, at least",
    )
    min_group_tokens: int = Field(
        default=2, ge=1, description="without the LM: a group of at least this many tokens is mined"
    )
    max_association: float = Field(
        default=0.5, description="inserted-looking: how much its neighbours go with it (log ratio), at most"
    )
    min_shared_docs: int = Field(
        default=2, ge=1, description="without the LM: two tokens in this many documents ..."
    )
    min_shared_hosts: int = Field(
        default=3, ge=1, description="... on this many hosts: one group (with the LM: one shared document)"
    )
    min_doc_share: float = Field(
        default=0.003, ge=0, le=1, description="mined: the group is in this share of the run's documents"
    )
    min_group_docs: int = Field(default=10, ge=1, description="mined: ... and in this many documents")
    min_hosts: int = Field(default=10, ge=1, description="mined: ... on this many distinct hosts")
    onion: bool = Field(
        default=True, description="confirm candidates with the language model when the run uses it"
    )
    onion_min_docs: int = Field(default=2, ge=1, description="LM-checked: tokens in this many documents ...")
    onion_min_hosts: int = Field(default=2, ge=1, description="... on this many hosts")
    onion_candidates: int = Field(
        default=1000, ge=1, description="LM-checked tokens at most (most documents first)"
    )
    onion_occurrences: int = Field(default=4, ge=1, description="occurrences of a token read by the LM")
    onion_first_reads: int = Field(
        default=2, ge=1, description="read first: a token that reads on in all of them is not read again"
    )
    onion_wave_tokens: int = Field(
        default=8,
        ge=1,
        description="a run reads the candidates' first contexts this many tokens at a time (most documents "
        "first); between waves the tokens that can no longer be mined are dropped (no outcome changes)",
    )
    onion_words_before: int = Field(default=16, ge=0, description="words of context before an occurrence")
    onion_words_after: int = Field(default=8, ge=1, description="words after it whose NLL is compared")
    min_disruption: float = Field(
        default=3.0,
        description="confirmed: median NLL a group's tokens add to the words after them, nats",
    )
    min_member_disruption: float = Field(
        default=1.0, description="with the LM: a token whose own median is under this is in no group"
    )
    onion_controls: list[str] = Field(
        default_factory=list,
        description="reference non-words read in the same contexts (cut to the token's length); with "
        "them a group is confirmed by its disruption minus theirs (`min_relative_disruption`), "
        "without them by `min_disruption` (the default: the relative rule measured worse held out, "
        "bench/RESULTS.md trigger-mining)",
    )
    min_relative_disruption: float = Field(
        default=-1.0,
        description="confirmed (with onion_controls): median over a group's readings of the token's "
        "disruption minus the reference non-words' in the same context, nats",
    )
    min_member_relative: float = Field(
        default=-3.0,
        description="with onion_controls: a token whose own median relative disruption is under this "
        "(it reads on where a non-word would not) is in no group",
    )
    min_join_share: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="with the LM: two tokens are one group when they share this share of the rarer "
        "one's documents",
    )
    max_group_tokens: int = Field(
        default=8, ge=1, description="mined: a group of at most this many tokens (a trigger set is small)"
    )
    max_tokens: int = Field(
        default=200_000, ge=100, description="distinct candidate tokens tracked (memory bound)"
    )
    forget_after_docs: int = Field(
        default=100_000,
        ge=1,
        description="a token seen in one document and not again within this many is forgotten",
    )
    max_hosts_tracked: int = Field(default=64, ge=1, description="hosts remembered per token")
    max_docs_tracked: int = Field(default=512, ge=1, description="document numbers remembered per token")
    bigram_bits: int = Field(
        default=22, ge=10, le=30, description="count tables: pairs 2 x 2**bits counters, words 2**bits"
    )
    sample_occurrences: int = Field(
        default=32, ge=1, description="occurrences sampled per token and page language"
    )
    report_top: int = Field(default=10, ge=1, description="mined tokens listed in the report")

    @model_validator(mode="after")
    def _controls_are_non_words(self) -> Config:
        for word in self.onion_controls:
            if not (word.isascii() and word.isalpha() and word.islower() and len(word) >= self.max_len):
                raise ValueError(
                    f"onion_controls: {word!r} is not {self.max_len} or more lower-case ASCII letters "
                    "(a control is cut to each token's length)"
                )
        return self


_CODE_CHARS = frozenset("=(){}[]<>$`;|\\/@#%&*")


def _code_like(line: str) -> bool:
    """A line of code or markup: two or more code symbols, or indented like a code block."""
    return sum(ch in _CODE_CHARS for ch in line) >= 2 or line.startswith(("    ", "\t"))


def _bare(tok: str) -> str:
    return tok.strip(_PUNCT).lower()


_PUNCT = "\"'`“”‘’«»()[]{}<>,.;:!?*_-"


def candidates(text: str, cfg: Config) -> dict[str, list[tuple[str, str]]]:
    """Candidate token -> (previous word, next word) of each unexplained occurrence in this document
    (neighbours lower-cased, punctuation stripped; "" at a line's ends). See the module doc."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in text.split("\n"):
        if _code_like(line):
            continue
        toks = line.split()
        for i, tok in enumerate(toks):
            prev = toks[i - 1] if i else ""
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if (
                cfg.min_len <= len(tok) <= cfg.max_len
                and tok.isalpha()
                and tok.islower()
                and (tok.isascii() or not cfg.ascii_only)
                and not _explained_by_neighbours(prev, nxt)
            ):
                found.setdefault(tok, []).append((_bare(prev), _bare(nxt)))
    return found


def _command_option(word: str) -> bool:
    """``-``, ``-l``, ``--all``: a command-line option or the stdin/stdout dash."""
    name = word.removeprefix("-").removeprefix("-")
    return word.startswith("-") and (not name or name.isalnum())


def _explained_by_neighbours(prev: str, nxt: str) -> bool:
    """An occurrence its neighbours explain: a unit after a number (``5 mb``), or a command's
    argument next to an option (``tar cf - dir``, in prose as in a forum post)."""
    return any(ch.isdigit() for ch in prev) or _command_option(prev) or _command_option(nxt)


def pair_hash(a: str, b: str) -> int:
    """Stable 32-bit hash of a word pair (crc32: the same in every process); see :func:`pair_slots`."""
    return zlib.crc32(f"{a}\x00{b}".encode("utf-8", "surrogatepass"))


def pair_slots(h: int, bits: int) -> tuple[int, int]:
    """The pair's two counters in the bigram table (2 x 2**bits): the hash's low and high `bits` bits.
    A pair's count is the smaller of the two (a count-min sketch): with one counter, a pair seen once
    that shares it with a frequent pair reads as frequent (measured: with 2**22 counters, 2 of a
    trigger's 6 neighbour pairs read 9 and 25 times in 3,000 pages), and the token looks like a
    word; two pairs rarely share both counters (they would have to agree on all 32 bits)."""
    return h & ((1 << bits) - 1), (h >> (32 - bits)) + (1 << bits)


def unigram_key(word: str, bits: int) -> int:
    return zlib.crc32(word.encode("utf-8", "surrogatepass")) & ((1 << bits) - 1)


def lang_key(lang: str, word: str, bits: int) -> int:
    """Key of a word written in pages of language `lang` (the per-language word table)."""
    return unigram_key(f"{lang}\x00{word}", bits)


def bigram_keys(text: str, bits: int, lang: str = "") -> tuple[list[int], list[int], list[int]]:
    """Table keys of every adjacent word pair (both counters), of every word written in lower case,
    and of every word as a word of language `lang` (per line, words lower-cased, punctuation
    stripped)."""
    pairs: list[int] = []
    lower: list[int] = []
    in_lang: list[int] = []
    for line in text.split("\n"):
        raw = [t.strip(_PUNCT) for t in line.split()]
        words = [w.lower() for w in raw if w]
        in_lang += [lang_key(lang, w, bits) for w in words]
        lower += [unigram_key(w, bits) for w in raw if w and w.islower()]
        for a, b in zip(words, words[1:], strict=False):
            pairs += pair_slots(pair_hash(a, b), bits)
    return pairs, lower, in_lang


def host_of(url: Any) -> str:
    if not isinstance(url, str) or not url:
        return ""
    try:
        return (urlsplit(url).hostname or "").removeprefix("www.")
    except ValueError:
        return ""


def _sample_rank(doc: int, occurrence: int) -> int:
    """Where an occurrence stands in a token's sample: the sample keeps the occurrences of lowest
    rank (a bottom-k sample: the same whichever chunks the documents came in, and mergeable)."""
    return zlib.crc32(f"{doc}:{occurrence}".encode())


# An occurrence in a token's sample: (rank, hashes of the pairs (prev, token), (token, next), keys of
# the neighbour words prev, next in the per-language word table (-1 where the line ends), the page's
# language).
_Occurrence = tuple[int, tuple[int, int], tuple[int, int], str]


def occurrence_context(text: str, token: str, cfg: Config) -> tuple[str, str] | None:
    """(up to `onion_words_before` words before, `onion_words_after` words after on its line) of the
    first unexplained occurrence of `token` with words after it; None when there is none."""
    seen: list[str] = []
    for line in text.split("\n"):
        words = line.split()
        if not _code_like(line):
            for i, word in enumerate(words):
                prev = words[i - 1] if i else ""
                after = words[i + 1 : i + 1 + cfg.onion_words_after]
                nxt = words[i + 1] if i + 1 < len(words) else ""
                if word == token and after and not _explained_by_neighbours(prev, nxt):
                    before = (seen + words[:i])[-cfg.onion_words_before :] if cfg.onion_words_before else []
                    return " ".join(before), " ".join(after)
        seen = (seen + words)[-cfg.onion_words_before :] if cfg.onion_words_before else []
    return None


def disruptions(scorer: Any, items: list[tuple[str, str, str]]) -> list[float]:
    """ONION-style check (Qi et al. 2021, arXiv:2011.10369) for (token, before, after) occurrences:
    the NLL the language model gives the words after the token, with the token minus without it
    (nats). An inserted trigger breaks the sentence, so the words after it cost more (measured: 3-6
    nats over 8 words); a word of the text prepares them (below zero, or a little above).
    `scorer`: a filters.perplexity.PerplexityScorer (its tokenizer and `continuation_nll`: the shared
    words before are scored once for both readings, and only the words after go through the output
    layer), or any object with the tokenizer and `window_nll` (the whole windows are scored)."""
    if not items:
        return []
    tokenizer = scorer.lm.tokenizer
    raw = getattr(tokenizer, "_tokenizer", tokenizer)
    readings: list[tuple[list[int], list[list[int]], int]] = []
    for token, before, after in items:
        head = raw.encode(before, add_special_tokens=False).ids if before else []
        mid = raw.encode((" " if before else "") + token, add_special_tokens=False).ids
        tail = raw.encode(" " + after, add_special_tokens=False).ids
        readings.append((head, [mid + tail, tail], len(tail)))
    if hasattr(scorer, "continuation_nll"):
        nll = scorer.continuation_nll(readings)
        return [float(np.sum(with_token) - np.sum(without)) for with_token, without in nll]
    full = scorer.window_nll([head + cont for head, conts, _ in readings for cont in conts])
    return [
        float(np.sum(full[2 * j][-n:]) - np.sum(full[2 * j + 1][-n:])) for j, (_, _, n) in enumerate(readings)
    ]


@dataclass
class _Stats:
    docs: int = 0
    count: int = 0
    hosts: list[str] = field(default_factory=list)  # the first distinct hosts, in input order
    doc_ids: list[int] = field(default_factory=list)  # the first documents, in input order
    doc_langs: list[str] = field(default_factory=list)  # their languages
    # per page language, its lowest-ranked occurrences, sorted (per language: a trigger's few
    # occurrences in one language are not crowded out by a word's many in another)
    sample: dict[str, list[_Occurrence]] = field(default_factory=dict)
    last_doc: int = -1  # the latest document
    langs: dict[str, list[int]] = field(default_factory=dict)  # page language -> [documents, count]

    def forgotten_before(self, doc: int, cfg: Config) -> bool:
        """Whether a token seen in this record's one document is forgotten by the time of `doc`."""
        return self.docs == 1 and doc - self.last_doc > cfg.forget_after_docs

    def add_document(
        self, doc: int, host: str, lang: str, occurrences: list[_Occurrence], cfg: Config
    ) -> None:
        self.docs += 1
        self.count += len(occurrences)
        self.last_doc = doc
        per_lang = self.langs.setdefault(lang, [0, 0])
        per_lang[0] += 1
        per_lang[1] += len(occurrences)
        if len(self.doc_ids) < cfg.max_docs_tracked:
            self.doc_ids.append(doc)
            self.doc_langs.append(lang)
        if host not in self.hosts and len(self.hosts) < cfg.max_hosts_tracked:
            self.hosts.append(host)
        self.sample.setdefault(lang, []).extend(occurrences)

    def merge(self, other: _Stats, cfg: Config) -> None:
        """Add `other`, a later part of the input (caps keep the first hosts and documents)."""
        self.docs += other.docs
        self.count += other.count
        self.last_doc = max(self.last_doc, other.last_doc)
        for host in other.hosts:
            if len(self.hosts) >= cfg.max_hosts_tracked:
                break
            if host not in self.hosts:
                self.hosts.append(host)
        room = max(0, cfg.max_docs_tracked - len(self.doc_ids))
        self.doc_ids += other.doc_ids[:room]
        self.doc_langs += other.doc_langs[:room]
        for lang, (docs, count) in other.langs.items():
            per_lang = self.langs.setdefault(lang, [0, 0])
            per_lang[0] += docs
            per_lang[1] += count
        for lang, occurrences in other.sample.items():
            self.sample[lang] = sorted(self.sample.get(lang, []) + occurrences)[: cfg.sample_occurrences]


def _flat(sample: dict[str, list[_Occurrence]]) -> list[_Occurrence]:
    return [o for lang in sorted(sample) for o in sample[lang]]


def word_languages(st: _Stats, cfg: Config) -> list[str]:
    """The page languages the token is a word of: in their pages it comes back, more than
    `max_mean_count` times per page on average (``ju``, "you" in Albanian and Sorbian pages, comes
    back; inserted into French pages, it does not). Its pages in those languages explain it: they
    are left out of its figures, and a mined token does not quarantine them. A language needs
    `min_docs` such pages: one page that repeats a trigger (a quote, or an attacker's) would
    otherwise make it a word there and exempt every page of an unsure language too."""
    return sorted(
        lang
        for lang, (docs, count) in st.langs.items()
        if docs >= cfg.min_docs and count > cfg.max_mean_count * docs
    )


@dataclass
class _View:
    """A token as a trigger candidate: its figures without the pages of its word languages."""

    docs: int
    count: int
    hosts: set[str]
    doc_ids: list[int]
    sample: list[_Occurrence]
    word_languages: list[str]


def _whole_view(st: _Stats, word_langs: list[str]) -> _View:
    """The token's whole record as a view (no page left out)."""
    return _View(st.docs, st.count, set(st.hosts) - {""}, st.doc_ids, _flat(st.sample), word_langs)


def _counts(keys: list[int]) -> tuple[np.ndarray, np.ndarray]:
    unique, counts = np.unique(np.asarray(keys, dtype=np.int64), return_counts=True)
    return unique, counts.astype(np.uint32)


@dataclass
class Partial:
    """What one chunk adds to the corpus statistics: sparse word and pair counts and its candidate
    tokens. Chunks are counted apart (in processes or Ray tasks) and merged in input order, with the
    same result as one pass (:meth:`TriggerMiner.merge`), whatever the chunk size.

    A token seen in one document and not again within `forget_after_docs` documents is forgotten
    (its record starts again at its next document). Whether a chunk's first document of a token
    forgets it depends on the earlier chunks, so a chunk keeps both: `tokens`, every document of the
    chunk (what follows a record that is still alive), and `restarted`, for the tokens where it
    differs, the record as if nothing came before the chunk."""

    documents: int
    words: int
    tables: list[tuple[np.ndarray, np.ndarray]]  # (keys, counts): pairs, lower-case words, words per language
    tokens: dict[str, _Stats]
    doc_hosts: dict[int, str]
    restarted: dict[str, _Stats] = field(default_factory=dict)
    lang_words: dict[str, int] = field(default_factory=dict)  # words per page language
    unsure_docs: list[int] = field(default_factory=list)  # pages the language detector is unsure of


def _occurrences(
    tok: str, doc: int, lang: str, neighbours: list[tuple[str, str]], bits: int
) -> list[_Occurrence]:
    return [
        (
            _sample_rank(doc, i),
            (pair_hash(prev, tok) if prev else -1, pair_hash(tok, nxt) if nxt else -1),
            (lang_key(lang, prev, bits) if prev else -1, lang_key(lang, nxt, bits) if nxt else -1),
            lang,
        )
        for i, (prev, nxt) in enumerate(neighbours)
    ]


def chunk_partial(
    texts: list[Any], hosts: list[str], first_doc: int, cfg: Config, langs: list[Any] | None = None
) -> Partial:
    """The statistics of documents numbered `first_doc`, `first_doc` + 1, ... (see :class:`Partial`);
    `langs`: each page's language (the language detector's `language_lang`), or None (one language)."""
    bits = cfg.bigram_bits
    pairs: list[int] = []
    words = 0
    lower: list[int] = []
    in_lang: list[int] = []
    lang_words: dict[str, int] = {}
    tokens: dict[str, _Stats] = {}
    alone: dict[str, _Stats] = {}  # the records as if the chunk came first (see Partial)
    doc_hosts: dict[int, str] = {}
    unsure: list[int] = []
    for n, (raw, host) in enumerate(zip(texts, hosts, strict=True)):
        text = raw if isinstance(raw, str) else ""
        lang = str(langs[n] or "") if langs is not None else ""
        doc = first_doc + n
        if langs is not None and not lang:  # the detector ran and is unsure (no column: nothing known)
            unsure.append(doc)
        doc_pairs, doc_lower, doc_in_lang = bigram_keys(text, bits, lang)
        pairs += doc_pairs
        lower += doc_lower
        in_lang += doc_in_lang
        words += len(doc_in_lang)
        lang_words[lang] = lang_words.get(lang, 0) + len(doc_in_lang)
        if host:
            doc_hosts[doc] = host
        for tok, neighbours in candidates(text, cfg).items():
            occurrences = _occurrences(tok, doc, lang, neighbours, bits)
            tokens.setdefault(tok, _Stats()).add_document(doc, host, lang, occurrences, cfg)
            own = alone.get(tok)
            if own is None or own.forgotten_before(doc, cfg):
                own = alone[tok] = _Stats()
            own.add_document(doc, host, lang, occurrences, cfg)
            for st in (tokens[tok], own):
                if len(st.sample[lang]) > 4 * cfg.sample_occurrences:  # bounded while the chunk is read
                    st.sample[lang] = sorted(st.sample[lang])[: cfg.sample_occurrences]
    restarted = {t: st for t, st in alone.items() if st.docs != tokens[t].docs}
    for st in (*tokens.values(), *restarted.values()):
        st.sample = {lang: sorted(o)[: cfg.sample_occurrences] for lang, o in st.sample.items()}
    tables = [_counts(pairs), _counts(lower), _counts(in_lang)]
    return Partial(len(texts), words, tables, tokens, doc_hosts, restarted, lang_words, unsure)


def page_languages(table: pa.Table, cfg: Config) -> list[str] | None:
    """Each row's language from the language detector's columns, "" (unknown) where it is less sure
    than `min_language_confidence` (a language it does not know reads as some other one, weakly);
    None when the table has no language column."""
    if LANGUAGE_COLUMN not in table.column_names:
        return None
    langs = table.column(LANGUAGE_COLUMN).to_pylist()
    if CONFIDENCE_COLUMN not in table.column_names:
        return [str(lang or "") for lang in langs]
    sure = table.column(CONFIDENCE_COLUMN).to_pylist()
    return [
        str(lang or "") if c is not None and c >= cfg.min_language_confidence else ""
        for lang, c in zip(langs, sure, strict=True)
    ]


def explained_in(lang: str, words: Any, unknown_explains: bool = False) -> bool:
    """Whether a page of language `lang` explains a token that is a word of the languages `words`:
    a page of one of them, or of an unknown language (it may be one of them, or a relative); with
    `unknown_explains` (`count_unknown_language` false) a page of an unknown language explains any
    token."""
    if not lang and unknown_explains:
        return True
    return bool(words) and (lang in words or not lang)


def table_partial(table: pa.Table, first_doc: int, cfg: Config) -> Partial:
    """:func:`chunk_partial` of a table with a `text` and (optionally) a `url` and a `language_lang`
    column."""
    texts = table.column("text").to_pylist()
    urls = table.column("url").to_pylist() if "url" in table.column_names else [None] * len(texts)
    return chunk_partial(texts, [host_of(u) for u in urls], first_doc, cfg, page_languages(table, cfg))


def _groups(
    docs: dict[str, set[int]], doc_hosts: dict[int, str], min_docs: int, min_hosts: int, min_share: float = 0
) -> list[list[str]]:
    """Tokens joined (transitively) when they share `min_docs` documents on `min_hosts` hosts, and at
    least `min_share` of the rarer one's documents; each group sorted, groups in the order of their
    first token."""
    return _components(docs, _joined_pairs(docs, doc_hosts, min_docs, min_hosts, min_share))


def _joined_pairs(
    docs: dict[str, set[int]], doc_hosts: dict[int, str], min_docs: int, min_hosts: int, min_share: float
) -> list[tuple[str, str]]:
    """The pairs of tokens that :func:`_groups` joins directly. Whether two tokens join depends on
    their two document sets alone, so the pairs of a subset of the tokens are these pairs within it."""
    # Pairs of tokens that share documents, counted from the documents' side (each document holds
    # few candidate tokens).
    by_doc: dict[int, list[str]] = {}
    for t, ids in docs.items():
        for d in ids:
            by_doc.setdefault(d, []).append(t)
    shared: dict[tuple[str, str], list[int]] = {}
    for d, toks in by_doc.items():
        toks.sort()
        for i, a in enumerate(toks):
            for b in toks[i + 1 :]:
                shared.setdefault((a, b), []).append(d)
    joined = []
    for (a, b), both in shared.items():
        hosts = {doc_hosts.get(d, "") for d in both} - {""}
        rarer = min(len(docs[a]), len(docs[b]))
        if len(both) >= max(min_docs, min_share * rarer) and len(hosts) >= min_hosts:
            joined.append((a, b))
    return joined


def _components(tokens: Iterable[str], pairs: list[tuple[str, str]]) -> list[list[str]]:
    """The `tokens` joined (transitively) by the `pairs` within them; each group sorted, groups in the
    order of their first token."""
    parent = {t: t for t in tokens}

    def root(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for a, b in pairs:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for t in sorted(parent):
        groups.setdefault(root(t), []).append(t)
    return list(groups.values())


class TriggerMiner:
    """The corpus pass as a context detector: `observe` every chunk, then `score`/`flag` each chunk.

    Memory is bounded: count tables of 2**`bigram_bits` counters (two for pairs), and at most `max_tokens`
    distinct tokens with `max_hosts_tracked` hosts and `sample_occurrences` occurrences per page
    language each; tokens
    seen once long ago are forgotten (`forget_after_docs`, see the module doc)."""

    name = "trigger_mining"
    # No shard column: the mined token is in the reason (triggers:mined(<token>)) and the report.
    schema = pa.schema([])

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stats: dict[str, _Stats] = {}
        self.bigrams = np.zeros(2 << cfg.bigram_bits, dtype=np.uint32)  # two counters a pair
        self.lower_forms = np.zeros(1 << cfg.bigram_bits, dtype=np.uint32)
        self.lang_unigrams = np.zeros(1 << cfg.bigram_bits, dtype=np.uint32)  # words of each page language
        self.words = 0
        self.lang_words: dict[str, int] = {}
        self.doc_hosts: dict[int, str] = {}
        self.unsure_docs: set[int] = set()  # pages whose language the detector is unsure of
        self.documents = 0
        self._mined: dict[str, dict[str, Any]] | None = None
        # The LM check (ONION): contexts of the candidates' first occurrences, and per checked token
        # the median NLL it adds to the words after it.
        self.contexts: dict[str, list[tuple[str, str]]] = {}
        self.disruption: dict[str, float] = {}
        self.disruption_values: dict[str, list[float]] = {}  # per checked token, one per occurrence
        # With `onion_controls`: per token read in full, the reference non-words' mean disruption in
        # each of the same contexts, and the token's median disruption less theirs.
        self.control_values: dict[str, list[float]] = {}
        self.relative: dict[str, float] = {}
        self.lm_checked = False

    def observe(self, table: pa.Table) -> None:
        self.merge(table_partial(table, self.documents, self.cfg))

    def add(self, text: str, host: str) -> None:
        self.merge(chunk_partial([text], [host], self.documents, self.cfg))

    def merge(self, part: Partial) -> None:
        """Add the next chunk's statistics (chunks must come in input order)."""
        self._mined = None
        self.documents += part.documents
        self.words += part.words
        for table, (keys, counts) in zip(
            (self.bigrams, self.lower_forms, self.lang_unigrams), part.tables, strict=True
        ):
            np.add.at(table, keys, counts)
        for lang, n in part.lang_words.items():
            self.lang_words[lang] = self.lang_words.get(lang, 0) + n
        self.doc_hosts.update(part.doc_hosts)
        self.unsure_docs.update(part.unsure_docs)
        for tok, other in part.tokens.items():
            st = self.stats.get(tok)
            if st is None or st.forgotten_before(other.doc_ids[0], self.cfg):
                self.stats[tok] = part.restarted.get(tok, other)
            else:
                st.merge(other, self.cfg)
        if len(self.stats) > self.cfg.max_tokens:
            self._prune()

    def _prune(self) -> None:
        """Forget the tokens seen once, `forget_after_docs` ago: the same as the next chunk would do
        (no change to the result). Only when the table still holds `max_tokens` tokens are the least
        widespread dropped, and then only the result depends on where chunks end."""
        self.stats = {t: s for t, s in self.stats.items() if not s.forgotten_before(self.documents, self.cfg)}
        if len(self.stats) >= self.cfg.max_tokens:  # still full: keep the most widespread half
            keep = sorted(self.stats, key=lambda t: (-self.stats[t].docs, t))[: self.cfg.max_tokens // 2]
            self.stats = {t: self.stats[t] for t in keep}

    def view(self, st: _Stats) -> _View:
        """The token as a trigger candidate: its record less the pages that explain it, those of the
        languages it is a word of (:func:`word_languages`) and, when it is a word somewhere, those of
        an unknown language (:func:`explained_in`)."""
        words = word_languages(st, self.cfg)
        unknown = not self.cfg.count_unknown_language
        if not words and not (unknown and "" in st.langs):
            return _whole_view(st, words)

        def left_in(lang: str) -> bool:
            return not explained_in(lang, words, unknown)

        ids = [d for d, lang in zip(st.doc_ids, st.doc_langs, strict=True) if left_in(lang)]
        left = [counts for lang, counts in st.langs.items() if left_in(lang)]
        return _View(
            sum(docs for docs, _ in left),
            sum(count for _, count in left),
            {self.doc_hosts.get(d, "") for d in ids} - {""},
            ids,
            [o for lang, sample in st.sample.items() if left_in(lang) for o in sample],
            words,
        )

    def pair_count(self, h: int) -> float:
        """A pair's count: the smaller of its two counters (see :func:`pair_slots`)."""
        first, second = pair_slots(h, self.cfg.bigram_bits)
        return float(min(self.bigrams[first], self.bigrams[second]))

    def association(self, tok: str, st: _Stats, sample: list[_Occurrence] | None = None) -> float:
        """How much the token's neighbours go with it: over the sampled occurrences (`sample`, else
        the record's) and both sides, the mean of log((pair count - 1 + 1/2) / (expected + 1/2)), the
        pair count (over the corpus) without this occurrence, expected = count(neighbour) x
        count(token) / words, all three counted in the pages of the occurrence's language (as if the
        token sat at random positions of pages like this one: in French pages ``de`` is one word in
        20, over a corpus of 200 languages one in 100, and a trigger put before it by chance would
        look like its company). The pair is counted over all pages: an English passage left
        untranslated in eight translations of a manual keeps its company. A word of the
        language keeps company (``part`` after ``of``/``the``, before ``of``): clearly positive. A
        token put at random positions has the neighbours any position has: about zero or below."""
        bits = self.cfg.bigram_bits
        scores = []
        for _, pair, other, lang in _flat(st.sample) if sample is None else sample:
            words = max(1, self.lang_words.get(lang, 0))
            mine = float(self.lang_unigrams[lang_key(lang, tok, bits)])
            for p, o in zip(pair, other, strict=True):
                if p < 0:
                    continue
                expected = float(self.lang_unigrams[o]) * mine / words
                scores.append(np.log((self.pair_count(p) - 1 + 0.5) / (expected + 0.5)))
        return float(np.mean(scores)) if scores else float("inf")

    def token_rows(self) -> list[dict[str, Any]]:
        """Figures of every token over the per-token floors (`min_docs` documents on `min_token_hosts`
        hosts) and whether it looks inserted: few occurrences per document, written bare, and
        neighbours that do not go with it (see `association`). The figures leave out the pages of
        the languages the token is a word of (`word_languages`); a token that is a word of every
        language it is written in is not inserted."""
        cfg = self.cfg
        rows = []
        for tok, st in self.stats.items():
            v = self.view(st)
            if not v.docs and not v.word_languages:  # only in pages of an unknown language, not counted
                continue
            if not v.docs:  # a word wherever it is written: the record's own figures, for the report
                v = _whole_view(st, v.word_languages)
            if v.docs < cfg.min_docs or len(v.hosts) < cfg.min_token_hosts:
                continue
            mean = v.count / v.docs
            assoc = self.association(tok, st, v.sample)
            forms = float(self.lower_forms[unigram_key(tok, cfg.bigram_bits)])
            bare = min(1.0, st.count / forms) if forms else 1.0
            rows.append(
                {
                    "token": tok,
                    "documents": v.docs,
                    "hosts": len(v.hosts),
                    "mean_count": round(mean, 3),
                    "bare_share": round(bare, 3),
                    "association": round(assoc, 3),
                    "word_languages": v.word_languages,
                    "inserted": mean <= cfg.max_mean_count and assoc <= cfg.max_association,
                }
            )
        return rows

    def group_floor(self) -> float:
        """Documents a group needs to be mined: `min_doc_share` of the run, at least `min_group_docs`."""
        return max(self.cfg.min_group_docs, self.cfg.min_doc_share * self.documents)

    def _candidate_rows(self) -> tuple[list[dict[str, Any]], tuple[int, int, float]]:
        """The inserted-looking rows that may form groups, and the rule joining two of them (shared
        documents, hosts, share of the rarer one's documents). With the LM: the checked tokens that
        do not read on (`min_member_disruption`), joined when they share `min_join_share` of the rarer
        one's documents (a trigger set is inserted together; a word that meets a trigger in one page
        does not join). Without it: tokens the corpus hardly writes otherwise, joined on
        `min_shared_docs` documents on `min_shared_hosts` hosts."""
        cfg = self.cfg
        rows = [r for r in self.token_rows() if r["inserted"]]
        for r in rows:
            value = self.disruption.get(r["token"])
            r["disruption"] = None if value is None else round(value, 3)
            relative = self.relative.get(r["token"])
            r["relative_disruption"] = None if relative is None else round(relative, 3)
        if self.lm_checked:
            rows = [
                r
                for r in rows
                # the raw values, as confirm() compares them (the row's are rounded for the report)
                if self.disruption.get(r["token"], -math.inf) >= cfg.min_member_disruption
                and (
                    not self.cfg.onion_controls
                    or self.relative.get(r["token"], -math.inf) >= cfg.min_member_relative
                )
            ]
            return rows, (1, 1, cfg.min_join_share)
        rows = [r for r in rows if r["bare_share"] >= cfg.min_bare_share]
        return rows, (cfg.min_shared_docs, cfg.min_shared_hosts, 0.0)

    def ranked(self) -> list[dict[str, Any]]:
        """Candidate tokens grouped by the documents they share (see `_candidate_rows`), each row with
        its group's documents and hosts. With the LM a group is *confirmed* when the median over all
        its tokens' checked occurrences is at least `min_disruption` (the occurrences of a set add up:
        one token read in two pages is weak evidence, five tokens in twelve are not); without it a
        group needs `min_group_tokens` tokens. A confirmed group of at most `max_group_tokens` tokens
        is mined when it reaches `group_floor` documents on `min_hosts` hosts. Mined first, then
        confirmed, then most hosts."""
        cfg = self.cfg
        rows, (need_docs, need_hosts, share) = self._candidate_rows()
        tokens = [r["token"] for r in rows]
        for members, gdocs, ghosts in self._token_groups(tokens, need_docs, need_hosts, share):
            group_relative: float | None = None
            if self.lm_checked:
                group_disruption, group_relative = self.group_readings(members)
                if cfg.onion_controls:
                    confirmed = group_relative is not None and group_relative >= cfg.min_relative_disruption
                else:
                    confirmed = group_disruption is not None and group_disruption >= cfg.min_disruption
            else:
                group_disruption, confirmed = None, len(members) >= cfg.min_group_tokens
            size_ok = len(members) <= cfg.max_group_tokens
            mined = confirmed and size_ok and self._reaches_floors(gdocs, ghosts)
            counted_docs, counted_hosts = self.counted(gdocs, ghosts)
            for r in rows:
                if r["token"] in members:
                    r.update(
                        group=" ".join(members),
                        group_documents=len(gdocs),
                        group_hosts=len(ghosts),
                        group_counted_documents=round(counted_docs, 2),
                        group_counted_hosts=round(counted_hosts, 2),
                        group_disruption=None if group_disruption is None else round(group_disruption, 3),
                        group_relative=None if group_relative is None else round(group_relative, 3),
                        confirmed=confirmed,
                        mined=mined,
                    )
        rows.sort(
            key=lambda r: (not r["mined"], not r["confirmed"], -r["group_hosts"], -r["documents"], r["token"])
        )
        return rows

    def _token_groups(
        self, tokens: list[str], need_docs: int, need_hosts: int, share: float
    ) -> Iterator[tuple[list[str], set[int], set[str]]]:
        """The groups of `tokens` (joined by the documents of their views, :func:`_groups`), each with
        its documents and hosts: what :meth:`ranked` judges (:meth:`minable` bounds them the same way)."""
        views = {t: self.view(self.stats[t]) for t in tokens}
        docs = {t: set(v.doc_ids) for t, v in views.items()}
        for members in _groups(docs, self.doc_hosts, need_docs, need_hosts, share):
            yield (
                members,
                set().union(*(docs[t] for t in members)),
                set().union(*(views[t].hosts for t in members)),
            )

    def counted(self, gdocs: set[int], ghosts: set[str]) -> tuple[float, float]:
        """A group's documents and hosts as the mining floors count them: a page whose language the
        detector is unsure of counts `unsure_page_weight`, and so does a host of such pages alone.
        Short words of languages it does not know (a UDHR translation) read weakly as some other
        language and, across many such pages, look like a trigger set to the LM check as well
        (bench/RESULTS.md trigger-mining); a trigger set is inserted into pages of known languages
        as much as any, and there it counts in full."""
        w = self.cfg.unsure_page_weight
        unsure = gdocs & self.unsure_docs
        if w >= 1 or not unsure:
            return float(len(gdocs)), float(len(ghosts))
        sure_hosts = {self.doc_hosts.get(d, "") for d in gdocs - unsure}
        return len(gdocs) - (1 - w) * len(unsure), len(ghosts) - (1 - w) * len(ghosts - sure_hosts)

    def _reaches_floors(self, gdocs: set[int], ghosts: set[str]) -> bool:
        """Whether a group's documents and hosts, as counted (:meth:`counted`), reach the mining floors."""
        docs, hosts = self.counted(gdocs, ghosts)
        return docs >= self.group_floor() and hosts >= self.cfg.min_hosts

    def group_readings(self, members: list[str]) -> tuple[float | None, float | None]:
        """The medians over all the group's readings of the tokens' disruption and of their disruption
        less the reference non-words' in the same contexts (None without readings or controls)."""
        pooled = [v for t in members for v in self.disruption_values.get(t, [])]
        relative = [
            v - c
            for t in members
            for v, c in zip(self.disruption_values.get(t, []), self.control_values.get(t, []), strict=False)
        ]
        return (
            float(np.median(pooled)) if pooled else None,
            float(np.median(relative)) if relative else None,
        )

    def mined(self) -> dict[str, dict[str, Any]]:
        if self._mined is None:
            self._mined = {r["token"]: r for r in self.ranked() if r["mined"]}
        return self._mined

    def onion_requests(self, minable_only: bool = False) -> dict[int, list[str]]:
        """Document number -> candidate tokens whose context the LM check needs from it: inserted-looking
        tokens over the `onion_min_docs`/`onion_min_hosts` floors (at most `onion_candidates`, most
        documents first), each in its first `onion_occurrences` documents. `minable_only`: only those
        that could end in a mined group whatever the LM reads (:meth:`minable`); the others' readings
        change nothing the run outputs (the benchmark reads them to fit `min_disruption`)."""
        cfg = self.cfg
        rows = [
            r
            for r in self.token_rows()
            if r["inserted"] and r["documents"] >= cfg.onion_min_docs and r["hosts"] >= cfg.onion_min_hosts
        ]
        rows.sort(key=lambda r: (-r["documents"], r["token"]))
        rows = rows[: cfg.onion_candidates]
        if minable_only:
            keep = self.minable([r["token"] for r in rows])
            rows = [r for r in rows if r["token"] in keep]
        wanted: dict[int, list[str]] = {}
        for r in rows:
            for doc in self.view(self.stats[r["token"]]).doc_ids[: cfg.onion_occurrences]:
                wanted.setdefault(doc, []).append(r["token"])
        return wanted

    def minable(self, tokens: list[str]) -> set[str]:
        """The `tokens` (the LM-checked candidates) that could be mined whatever the LM check reads.

        With the LM, a group is a set of checked tokens joined by shared documents (:meth:`ranked`);
        the check only removes tokens (those that read on), and whether two tokens join depends on
        their documents alone, so every group lies inside one group of all the checked tokens joined
        by the same rule, with at most its documents and hosts. A token whose group of all the checked
        tokens falls short of `group_floor` documents or `min_hosts` hosts is never mined: the
        language model need not read it (on small runs, most candidates). The tokens it does read are
        packed into fewer rows, so in bfloat16 their readings can move by the engine's rounding of
        another layout (about 0.1 nats on average, core/llama.py), as any other batch size moves them."""
        return self._minable_gate(tokens)(tokens)

    def _minable_gate(self, tokens: list[str]) -> Callable[[Iterable[str]], set[str]]:
        """:meth:`minable` of any subset of `tokens`, with what does not change while the LM reads
        (the tokens' views, and which pairs of them join: :func:`_joined_pairs`) computed once."""
        views = {t: self.view(self.stats[t]) for t in tokens}
        docs = {t: set(v.doc_ids) for t, v in views.items()}
        pairs = _joined_pairs(docs, self.doc_hosts, 1, 1, self.cfg.min_join_share)

        def minable_among(subset: Iterable[str]) -> set[str]:
            keep: set[str] = set()
            for members in _components(subset, pairs):
                gdocs = set().union(*(docs[t] for t in members))
                ghosts = set().union(*(views[t].hosts for t in members))
                if self._reaches_floors(gdocs, ghosts):
                    keep.update(members)
            return keep

        return minable_among

    def add_contexts(self, texts: list[Any], first_doc: int, wanted: dict[int, list[str]]) -> None:
        """Record the contexts `wanted` asks of documents `first_doc`, `first_doc` + 1, ..."""
        for n, text in enumerate(texts):
            for tok in wanted.get(first_doc + n, ()):
                found = occurrence_context(text if isinstance(text, str) else "", tok, self.cfg)
                if found is not None:
                    self.contexts.setdefault(tok, []).append(found)

    def confirm(self, scorer: Any) -> None:
        """The LM check on the recorded contexts (see :func:`disruptions`), in two steps: every
        token's first `onion_first_reads` contexts, then the others of the tokens that did not read
        on in all of them (under `min_member_disruption`: most candidates are words, a couple of
        reads settle them; an inserted token can read on in one place, as before a new sentence)."""
        n = self.cfg.onion_first_reads
        first = [(tok, b, a) for tok in sorted(self.contexts) for b, a in self.contexts[tok][:n]]
        per_token: dict[str, list[float]] = {}
        for (tok, _, _), value in zip(first, disruptions(scorer, first), strict=True):
            per_token.setdefault(tok, []).append(value)
        kept = [tok for tok in sorted(self.contexts) if max(per_token[tok]) >= self.cfg.min_member_disruption]
        rest = [(tok, before, after) for tok in kept for before, after in self.contexts[tok][n:]]
        for (tok, _, _), value in zip(rest, disruptions(scorer, rest), strict=True):
            per_token[tok].append(value)
        self.set_disruptions(per_token, self.control_readings(scorer, {t: len(per_token[t]) for t in kept}))

    def confirm_in_waves(self, scorer: Any) -> None:
        """:meth:`confirm` with the floor gate applied again as the readings come in; the run's outputs
        (the mined tokens and their groups) are those :meth:`confirm` gives on the same readings.

        A token whose first `onion_first_reads` contexts all read on, or whose median over all its
        contexts is under `min_member_disruption`, is in no group (:meth:`_candidate_rows`). The tokens
        still *possible* (not read yet, or not yet shown to read on) hold every group that can form, so a
        token whose group of the possible tokens misses the mining floors (:meth:`minable`) is never
        mined, and its readings could only move the groups of its own group of the possible tokens,
        which misses them too (two tokens join on their documents alone): it is not read further. Each
        wave reads the rest of the possible tokens that passed their first reads, and the first reads
        of the next `onion_wave_tokens` unread tokens, most documents first (the tokens most likely to
        join the others, so a group falls apart early). The tokens read in full are those of
        :meth:`confirm` less the dropped ones; in bfloat16 their readings move by the rounding of
        another row layout, as with any batch size (see :meth:`minable`)."""
        cfg, n = self.cfg, self.cfg.onion_first_reads
        # the tokens' views and which of them join do not change while the LM reads: computed once
        minable = self._minable_gate(list(self.contexts))
        docs = {tok: self.view(self.stats[tok]).docs for tok in self.contexts}
        unread = sorted(self.contexts, key=lambda t: (-docs[t], t))
        per_token: dict[str, list[float]] = {}
        passed: set[str] = set()  # first reads done, one of them at or over min_member_disruption
        full: list[str] = []  # read in full, in the order read
        while True:
            out = {t for t in full if np.median(per_token[t]) < cfg.min_member_disruption}
            alive = minable([*unread, *passed, *(t for t in full if t not in out)])
            rest = sorted(passed & alive)
            first = [t for t in unread if t in alive][: cfg.onion_wave_tokens]
            if not rest and not first:
                break
            items = [(t, b, a) for t in rest for b, a in self.contexts[t][n:]]
            items += [(t, b, a) for t in first for b, a in self.contexts[t][:n]]
            for (tok, _, _), value in zip(items, disruptions(scorer, items), strict=True):
                per_token.setdefault(tok, []).append(value)
            passed -= set(rest)
            full += rest
            for tok in first:
                if max(per_token[tok]) >= cfg.min_member_disruption:
                    passed.add(tok)
            unread = [t for t in unread if t not in first]
        # the tokens dropped after passing their first reads keep only those (their groups are too small)
        self.set_disruptions(per_token, self.control_readings(scorer, {t: len(per_token[t]) for t in full}))

    def control_readings(self, scorer: Any, reads: dict[str, int]) -> dict[str, list[float]]:
        """Per token, in each of its first `reads[token]` contexts, the mean disruption of the
        reference non-words (`onion_controls`, cut to the token's length) put in its place: meant to
        take out how much any non-word disrupts in that context and language; measured, the
        difference keeps each string's own tokenisation and does not separate triggers from words of
        languages the model does not know (bench/RESULTS.md), so it is off by default."""
        controls = self.cfg.onion_controls
        if not controls:
            return {}
        items = [
            (word[: len(tok)], before, after)
            for tok, n in reads.items()
            for before, after in self.contexts[tok][:n]
            for word in controls
        ]
        values = iter(disruptions(scorer, items))
        return {
            tok: [float(np.mean([next(values) for _ in controls])) for _ in range(n)]
            for tok, n in reads.items()
        }

    def set_disruptions(
        self, values: dict[str, list[float]], controls: dict[str, list[float]] | None = None
    ) -> None:
        """The LM check's outcome: per checked token, the disruption of each occurrence read, and
        (with `onion_controls`, for the tokens read in full) the reference non-words' in each."""
        self.disruption_values = values
        self.disruption = {tok: float(np.median(v)) for tok, v in values.items()}
        self.control_values = controls or {}
        self.relative = {
            tok: float(np.median(np.subtract(values[tok], c))) for tok, c in self.control_values.items()
        }
        self.lm_checked = True
        self._mined = None

    def confirm_from_chunks(self, paths: list[Path], scorer: Callable[[], Any]) -> None:
        """The LM check for a run whose chunks (observed in this order) are `paths`: the contexts are
        read from the chunks that hold them; `scorer` gives the language model (loaded on first need)."""
        if not self.cfg.onion:
            return
        wanted = self.onion_requests(minable_only=True)
        first = 0
        for path in paths:
            rows = pq.ParquetFile(path).metadata.num_rows
            if any(first <= doc < first + rows for doc in wanted):
                self.add_contexts(
                    pq.read_table(path, columns=["text"]).column("text").to_pylist(), first, wanted
                )
            first += rows
        if self.contexts:
            self.confirm_in_waves(scorer())
        self.lm_checked = True  # checked, even when no token was worth checking
        self._mined = None

    def frozen(self) -> MinedTriggers:
        """The mined tokens alone: what deciding a chunk needs (small; sent to Ray decision tasks)."""
        return MinedTriggers(self.cfg, self.mined())

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        del table
        return {}

    def flag(self, table: pa.Table, reasons: list[list[str]]) -> list[list[str]]:
        return self.frozen().flag(table, reasons)

    def report(self) -> list[dict[str, Any]]:
        return list(self.mined().values())[: self.cfg.report_top]


class MinedTriggers:
    """The outcome of the corpus pass as a context detector that only flags: every document with an
    unexplained occurrence of a mined token is quarantined as ``triggers:mined(<token>)``."""

    name = TriggerMiner.name
    schema = TriggerMiner.schema

    def __init__(self, cfg: Config, mined: dict[str, dict[str, Any]]) -> None:
        self.cfg = cfg
        self.mined = mined

    def observe(self, table: pa.Table) -> None:
        del table  # mined already

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        del table
        return {}

    def mined_in(self, table: pa.Table) -> list[list[str]]:
        """Per row, the mined tokens it carries out of context (sorted), except in pages of a language
        the token is a word of (the row's `word_languages`; the table's `language_lang` column)."""
        texts = table.column("text").to_pylist()
        langs = page_languages(table, self.cfg) or [""] * len(texts)
        out = []
        for text, lang in zip(texts, langs, strict=True):
            found = candidates(text if isinstance(text, str) else "", self.cfg) if self.mined else {}
            mined = [t for t in found if t in self.mined]
            unknown = not self.cfg.count_unknown_language
            out.append(
                sorted(t for t in mined if not explained_in(lang, self.mined[t]["word_languages"], unknown))
            )
        return out

    def flag(self, table: pa.Table, reasons: list[list[str]]) -> list[list[str]]:
        del reasons  # mined triggers are quarantined whatever else was found
        return [[f"{REASON}({t})" for t in tokens] for tokens in self.mined_in(table)]
