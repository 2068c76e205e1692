"""drift detector: content at a known URL that changes abruptly between nightly runs (P-SPLIT in
docs/THREATS.md).

Split-view poisoning (Carlini et al. 2023, arXiv:2302.10149) buys the expired domains behind URLs of
a published corpus and serves other content there. Its signature is a low MinHash similarity between
a URL's text tonight and the last version poisonguard accepted. Ordinary edits change pages too
(hash-only integrity checks see 5-15% benign mismatches, ibid.), so a change alone is only a signal
(``drift_changed``); the policy quarantines a drifted page when

* it also carries another suspicious signal (a reason from another detector, or one of the weak
  signals in ``Config.suspicious_signals`` that are below every other detector's own bar), or
* an abnormal share of its host's known pages drifted tonight (a re-registered domain rewrites every
  page at once; an editor rewrites a few), or
* it changed with no topical continuity: the new text shares little of its vocabulary with the last
  accepted text of the same URL (``drift_topic_similarity`` below ``topic_threshold``). A release of a
  documentation site rewrites sentences, renames options and moves sections, but a page about ThinLTO
  still talks about ThinLTO; a page swapped for other content (another site's page, spam, an injected
  article) talks about something else. Measured on real release pairs (bench/bench_split_view.py).
  The vocabulary is kept as a bottom-k sketch of the page's content words (:func:`topic_sketch`); a
  page of few words (8-19) keeps them all and is judged by the share of them tonight's text keeps.
* it changed into a copy of a text that another URL serves tonight without an abrupt change of its
  own (``drift:moved``): the text has a home whose history holds it, and this URL took it over. A
  page of a site swapped for another page of the same site keeps the site's vocabulary (the topic
  rule can miss it) but is exactly this. "A copy" is the dedup stage's cluster (exact or near
  duplicate; short texts have no similarity and never count as changed). Quarantining it loses no
  text: the copy at its home is the one dedup keeps (:meth:`DriftDetector.judge_clusters`, which
  also tells dedup which of the other copies has the better claim to the text: :func:`claim_ranks`).

Numbers are churn, not content: the similarity is measured on the text with its digit-only words
(line numbers, dates, version parts, counters) left out (:func:`drift_text`), so a source listing
whose line numbers all shifted, or a page whose dates moved, is the page it was; a swap replaces the
words and stays a change. A version stored before this (``Version.signature_of`` ``"text"``) is
compared the old way, with tonight's signature of the whole text, never across the two kinds.

The pure parts (:func:`similarity`, :func:`host_shares`, :func:`moved_from`, :func:`drift_reasons`)
work on arrays; the :class:`DriftDetector` follows the runner's ``ContextDetector`` protocol and gets
each URL's last accepted version from a ``lookup`` callable (the nightly state store).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from poisonguard.core import minhash
from poisonguard.core.urls import host_of
from poisonguard.filters import dedup

SIG_COLUMN = "_dedup_signature"  # the runner's internal MinHash column (pipelines/runner.py)

SIGNAL_SCHEMA = pa.schema(
    [
        ("drift_similarity", pa.float64()),  # vs. the last accepted version; null: no usable history
        ("drift_changed", pa.bool_()),  # similarity below the threshold
        ("drift_previous_date", pa.string()),  # date of the version compared with
        ("drift_host_share", pa.float64()),  # drifted / compared pages of the host tonight
        # content-word Jaccard with the last version (bottom-k sketches); null: no sketch on either side
        ("drift_topic_similarity", pa.float64()),
    ]
)

DEFAULT_SUSPICIOUS = [
    "triggers_hits",
    "triggers_special_tokens",
    "triggers_weak_distinct",
    "hidden_text_instructions",
    "unicode_tag_chars",
    "unicode_bidi_controls",
    "unicode_zero_width_in_words",
    "unicode_confusable_words",
]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="MinHash similarity to the last version below which a page drifted"
    )
    host_min_pages: int = Field(
        5, ge=1, description="a host needs this many pages with history tonight for the host-share rule"
    )
    host_share: float = Field(
        0.5, gt=0.0, le=1.0, description="share of a host's compared pages that drifted: abnormal at or above"
    )
    suspicious_signals: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SUSPICIOUS),
        description="signal columns whose non-zero / non-empty / true value makes a drifted page suspicious",
    )
    topic_threshold: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="a drifted page sharing less than this of the last version's content words quarantines",
    )
    campaign_domains: int = Field(
        2,
        ge=2,
        description="a drifted page whose new text sits on this many registrable domains is suspicious",
    )


WHOLE_TEXT, NO_NUMBERS = "text", "no-numbers"  # what a stored signature is the MinHash of


@dataclass(frozen=True)
class Version:
    """A URL's last accepted version, as the state store keeps it."""

    date: str
    sha256: str
    signature: np.ndarray  # MinHash (dedup settings of the state store) of what signature_of says
    topic: np.ndarray | None = None  # topic_sketch of the text; None for versions stored before it existed
    # NO_NUMBERS: of drift_text(text); WHOLE_TEXT: of the text itself (versions stored before NO_NUMBERS)
    signature_of: str = NO_NUMBERS


Lookup = Callable[[Sequence[str]], dict[str, Version]]


# ---------------------------------------------------------------------------------------------
# Pure parts


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_NUMBER_WORD = re.compile(r"(?<!\w)[0-9]+(?!\w)")  # a word of ASCII digits only, as MinHash splits words


def drift_text(text: str) -> str:
    """The text drift's similarity is measured on: its digit-only words left out (a number moves
    when a line is inserted above it or a release is dated; the words around it stay)."""
    return _NUMBER_WORD.sub(" ", text)


def drift_signatures(texts: Sequence[str], whole: np.ndarray | None, cfg: dedup.Config) -> np.ndarray:
    """MinHash of each text's :func:`drift_text`; ``whole`` (the texts' own signatures, or None)
    is reused for a text with no digit-only word, whose drift text gives the same shingles."""
    stripped = [drift_text(t) for t in texts]
    if whole is None:
        return np.asarray(dedup.signatures(stripped, cfg))
    out = np.array(whole, copy=True)
    redo = [i for i, (t, s) in enumerate(zip(texts, stripped, strict=True)) if s != t]
    if redo:
        out[redo] = np.asarray(dedup.signatures([stripped[i] for i in redo], cfg)).astype(
            out.dtype, copy=False
        )
    return out


def similarity(new_sha: str, new_sig: np.ndarray, old: Version, empty_value: int) -> float | None:
    """Estimated Jaccard similarity of the two versions; 1.0 for identical text; None when either
    sketch is empty (a text under ``dedup.min_words`` words: too short to tell an edit from a swap)."""
    if new_sha == old.sha256:
        return 1.0
    a = np.asarray(new_sig, dtype=np.uint64)
    b = np.asarray(old.signature, dtype=np.uint64)
    if a.shape != b.shape or not len(a):
        return None
    if bool(np.all(a == empty_value)) or bool(np.all(b == empty_value)):
        return None
    return float(np.count_nonzero(a == b)) / len(a)


TOPIC_SKETCH_SIZE = 128  # bottom-k hashes kept per version: 512 bytes, Jaccard error ~0.03 near 0.1
_TOPIC_WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)
# A sketch of fewer distinct content words holds every one of them (an exact set, not an estimate).
# From 20 on it is compared by Jaccard with a sketch of tonight's text; an old version of 8-19 words
# by containment: the share of its words that reappear in tonight's text (:func:`topic_similarity`).
# Under 8 no sketch: with the 0.25 bar a page of 8 words must lose 7 of them to count as off topic and
# a swap must keep 2 of them to pass; with fewer words one renamed word decides (a stub says nothing).
_TOPIC_MIN_WORDS = 8
_TOPIC_JACCARD_WORDS = 20


def topic_words(text: str) -> np.ndarray:
    """The sorted 32-bit hashes of the text's distinct content words (letters only, 4+ long, case-folded)."""
    words = {w.casefold() for w in _TOPIC_WORD.findall(text)}
    hashes = np.fromiter(
        (zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in words), np.uint32, len(words)
    )
    return np.unique(hashes)


def topic_sketch(text: str, size: int = TOPIC_SKETCH_SIZE) -> np.ndarray | None:
    """The ``size`` smallest of :func:`topic_words`; None when the text has fewer than 8 distinct
    content words. A text of fewer than ``size`` words keeps them all."""
    words = topic_words(text)
    return words[:size] if len(words) >= _TOPIC_MIN_WORDS else None


def topic_similarity(new: np.ndarray | None, old: np.ndarray | None) -> float | None:
    """Shared vocabulary of tonight's text (``new``: its :func:`topic_words`, or its sketch) with the
    last version (``old``: its stored sketch). An old version of 20+ words: the estimated Jaccard
    similarity of the two word sets from their bottom-k sketches (among the k smallest hashes of the
    union, the share present in both); None when tonight's text has under 20. A smaller old version
    (its sketch is its whole word set): the share of its words present in ``new`` (exact when ``new``
    is the whole word set). None when either is missing."""
    if new is None or old is None or not len(new) or not len(old):
        return None
    if len(old) < _TOPIC_JACCARD_WORDS:
        return float(np.count_nonzero(np.isin(old, new))) / len(old)
    if len(new) < _TOPIC_JACCARD_WORDS:
        return None
    k = min(len(new), len(old), TOPIC_SKETCH_SIZE)
    union = np.union1d(new, old)[:k]
    both = np.intersect1d(np.intersect1d(new, old), union, assume_unique=True)
    return float(len(both)) / len(union)


def host_shares(hosts: Iterable[str | None], changed: Iterable[bool | None]) -> dict[str, tuple[int, int]]:
    """host -> (drifted pages, compared pages); pages without usable history (None) do not count."""
    out: dict[str, tuple[int, int]] = {}
    for host, flag in zip(hosts, changed, strict=True):
        if host is None or flag is None:
            continue
        drifted, compared = out.get(host, (0, 0))
        out[host] = (drifted + int(flag), compared + 1)
    return out


def host_abnormal(drifted: int, compared: int, cfg: Config) -> bool:
    return compared >= cfg.host_min_pages and drifted / compared >= cfg.host_share


CONTINUOUS, NEW, DRIFTED = "continuous", "new", "drifted"  # a URL tonight against its own history


def moved_from(
    urls: Sequence[str | None], states: Sequence[str | None], clusters: Sequence[str | None]
) -> list[str | None]:
    """Per row that drifted into a copy of a text another URL serves tonight without an abrupt change
    of its own: that URL (the first such in row order); else None. ``states``: CONTINUOUS (compared
    with its own history, no abrupt change), NEW (no history), DRIFTED, or None (no URL, no usable
    similarity); ``clusters``: the dedup cluster of each row (rows of one cluster are copies of one
    text). Only a continuous URL is a home: its history holds the text."""
    homes: dict[str, str] = {}
    for url, state, cluster in zip(urls, states, clusters, strict=True):
        if state == CONTINUOUS and url and cluster is not None:
            homes.setdefault(cluster, url)
    out: list[str | None] = []
    for url, state, cluster in zip(urls, states, clusters, strict=True):
        home = homes.get(cluster) if state == DRIFTED and cluster is not None else None
        out.append(home if home != url else None)  # the same URL in another row is no other home
    return out


def claim_ranks(
    states: Sequence[str | None], condemned: Sequence[bool], clusters: Sequence[str | None]
) -> list[int]:
    """Per row, its claim to be its cluster's kept copy, lower first: 0 CONTINUOUS, NEW or not judged
    (nothing contradicts it), 1 DRIFTED (its history holds something else, on the same subject),
    2 DRIFTED and ``condemned`` (:meth:`DriftDetector.flag` quarantines it). A cluster that
    nothing supports (no CONTINUOUS member, no DRIFTED member left uncondemned) while one of its
    members is condemned holds a suspect text: all its rows rank 0, so input order decides and a
    condemned copy met first takes the others with it (a copy of a quarantined page).

    CONTINUOUS does not rank before NEW: a URL whose own stub page is replaced by a near-copy of
    another stub (0.3-0.4 similar, not a change by drift's measure) would then be kept before the
    new page whose text it serves (measured on LLVM's AMDGPU operand pages, bench/RESULTS.md)."""
    ranks = [2 if bad else 1 if state == DRIFTED else 0 for state, bad in zip(states, condemned, strict=True)]
    supported: set[str] = set()
    suspect: set[str] = set()
    for state, rank, cluster in zip(states, ranks, clusters, strict=True):
        if cluster is None:
            continue
        if state == CONTINUOUS or rank == 1:
            supported.add(cluster)
        elif rank == 2:
            suspect.add(cluster)
    return [0 if c in suspect and c not in supported else r for r, c in zip(ranks, clusters, strict=True)]


def _truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, list | tuple | str | dict):
        return len(value) > 0
    return bool(value)


def weak_signals(table: pa.Table, cfg: Config) -> list[list[str]]:
    """Per row, the names of the configured weak signals that are present."""
    out: list[list[str]] = [[] for _ in range(table.num_rows)]
    for name in cfg.suspicious_signals:
        if name not in table.column_names:
            continue
        for row, value in enumerate(table.column(name).to_pylist()):
            if _truthy(value):
                out[row].append(name)
    if "dedup_cluster_domains" in table.column_names:
        for row, value in enumerate(table.column("dedup_cluster_domains").to_pylist()):
            if value is not None and value >= cfg.campaign_domains:
                out[row].append("dedup_cluster_domains")
    return out


def drift_reasons(
    changed: Sequence[bool | None],
    sims: Sequence[float | None],
    host_counts: Sequence[tuple[int, int] | None],
    other_reasons: Sequence[list[str]],
    weak: Sequence[list[str]],
    cfg: Config,
    topics: Sequence[float | None] | None = None,
    moved: Sequence[str | None] | None = None,
) -> list[list[str]]:
    """Quarantine reasons: a drifted page with another suspicious signal, on an abnormal host, with
    no topical continuity (``topics``: drift_topic_similarity per row), or moved from another URL
    (``moved``: :func:`moved_from` per row)."""
    out: list[list[str]] = []
    topics = topics if topics is not None else [None] * len(changed)
    moved = moved if moved is not None else [None] * len(changed)
    for flag, sim, counts, others, signals, topic, home in zip(
        changed, sims, host_counts, other_reasons, weak, topics, moved, strict=True
    ):
        reasons: list[str] = []
        if flag:
            reasons = condemning_reasons(sim or 0.0, topic, counts, signals, bool(others), cfg)
            if home is not None:
                reasons.append(f"drift:moved(similarity {sim:.2f}; a copy of {home})")
        out.append(reasons)
    return out


def condemning_reasons(
    sim: float,
    topic: float | None,
    counts: tuple[int, int] | None,
    signals: list[str],
    others: bool,
    cfg: Config,
) -> list[str]:
    """The reasons the topic, content and host rules quarantine a drifted page for (none: drift
    keeps it unless it moved): shared vocabulary under the topic bar, a weak signal (``signals``)
    or another detector's reason (``others``), an abnormal host (``counts``: drifted, compared)."""
    reasons: list[str] = []
    if topic is not None and topic < cfg.topic_threshold:
        reasons.append(f"drift:topic_changed(similarity {sim:.2f}, shared vocabulary {topic:.2f})")
    if others or signals:
        why = ",".join(signals) if signals else "other_detectors"
        reasons.append(f"drift:content_changed(similarity {sim:.2f}; {why})")
    if counts is not None and host_abnormal(counts[0], counts[1], cfg):
        reasons.append(f"drift:host_changed({counts[0]} of {counts[1]} known pages)")
    return reasons


# ---------------------------------------------------------------------------------------------
# The context detector


class DriftDetector:
    """Runner ``ContextDetector``: compares every page tonight with its URL's last accepted version.

    ``lookup(urls)`` returns the known versions of those URLs (missing URLs are new). ``dedup_cfg``
    must be the dedup settings the versions' signatures were computed with. ``summary`` is filled as
    the run goes (counts for the report).
    """

    name = "drift"
    schema = SIGNAL_SCHEMA

    def __init__(self, cfg: Config, dedup_cfg: dedup.Config, lookup: Lookup) -> None:
        self.cfg = cfg
        self.dedup_cfg = dedup_cfg
        self.lookup = lookup
        self._empty = minhash.empty_value(dedup_cfg.scheme)
        # (id, url) -> (similarity, previous date); the runner gives score() the same chunks in order.
        self._seen: dict[tuple[str, str], tuple[float | None, str | None, float | None]] = {}
        self._hosts: dict[str, tuple[int, int]] = {}
        self._rows: list[tuple[str, str] | None] = []  # (id, url) of every row observed, in input order
        self._moved: dict[tuple[str, str], str] = {}  # (id, url) -> the URL whose text it took over
        self._weak: dict[tuple[str, str], list[str]] = {}  # (id, url) -> weak signals, drifted rows only
        self.summary: dict[str, Any] = {
            "compared": 0,
            "changed": 0,
            "new_urls": 0,
            "abnormal_hosts": [],
            "moved": 0,
        }

    def observe(self, table: pa.Table) -> None:
        if not self.cfg.enabled or table.num_rows == 0:
            return
        urls = table.column("url").to_pylist()
        ids = table.column("id").to_pylist()
        self._rows.extend((ids[i], u) if u else None for i, u in enumerate(urls))
        rows = [i for i, u in enumerate(urls) if u]
        if not rows:
            return
        texts = table.column("text").to_pylist()
        if SIG_COLUMN in table.column_names:
            sigs = np.asarray(table.column(SIG_COLUMN).combine_chunks().flatten()).reshape(table.num_rows, -1)
        else:  # dedup disabled: the runner computed no signatures
            sigs = np.asarray(dedup.signatures(texts, self.dedup_cfg))
        known = self.lookup([urls[i] for i in rows])
        sigs = self._comparable_signatures(texts, sigs, [known.get(urls[i]) for i in rows], rows)
        hosts: list[str | None] = []
        changed: list[bool | None] = []
        weak = weak_signals(table, self.cfg)
        for i in rows:
            url = urls[i]
            old = known.get(url)
            if old is None:
                self.summary["new_urls"] += 1
                sim: float | None = None
                prev = None
                topic = None
            else:
                sim = similarity(text_sha256(texts[i] or ""), sigs[i], old, self._empty)
                prev = old.date
                changed_text = sim is not None and sim < self.cfg.threshold
                topic = topic_similarity(topic_words(texts[i] or ""), old.topic) if changed_text else None
            self._seen[(ids[i], url)] = (sim, prev, topic)
            if sim is not None and sim < self.cfg.threshold and weak[i]:
                self._weak[(ids[i], url)] = weak[i]
            hosts.append(host_of(url))
            changed.append(None if sim is None else sim < self.cfg.threshold)
        for host, (d, c) in host_shares(hosts, changed).items():
            d0, c0 = self._hosts.get(host, (0, 0))
            self._hosts[host] = (d0 + d, c0 + c)
        self.summary["compared"] = sum(c for _, c in self._hosts.values())
        self.summary["changed"] = sum(d for d, _ in self._hosts.values())
        self.summary["abnormal_hosts"] = sorted(
            h for h, (d, c) in self._hosts.items() if host_abnormal(d, c, self.cfg)
        )

    def _comparable_signatures(
        self, texts: list[str | None], whole: np.ndarray, olds: list[Version | None], rows: list[int]
    ) -> np.ndarray:
        """Tonight's signatures, each of the same kind as its URL's stored version: of the drift
        text where the version's is (:func:`drift_signatures`), of the whole text where the version
        was stored before that (or there is none)."""
        redo = [
            i for i, old in zip(rows, olds, strict=True) if old is not None and old.signature_of == NO_NUMBERS
        ]
        if not redo:
            return whole
        out = np.array(whole, copy=True)
        out[redo] = drift_signatures([texts[i] or "" for i in redo], whole[redo], self.dedup_cfg)
        return out

    def judge_clusters(
        self, positions: Sequence[int], clusters: Sequence[str | None]
    ) -> tuple[list[bool], list[int]]:
        """Given the dedup cluster of rows (``positions``: their places in input order, as observed):
        (rows that moved, each row's rank as its cluster's kept copy, lower first).

        A row that moved (:func:`moved_from`; remembered for :meth:`flag`, which quarantines it
        whatever the other detectors say) is never its cluster's kept copy: the copy at its home is.
        Among the others, the copy kept is the one with the better claim to the text
        (:func:`claim_ranks`): a URL that did not drift (or is new tonight: no history contradicts
        it) before one that drifted into the text, and that before one :meth:`flag` will quarantine
        (:func:`condemning_reasons`, as far as it is known before the decision). Where nothing
        supports the text (its only copies are condemned or new), input order decides, as before: a
        condemned page met first takes its copies with it."""
        if not self.cfg.enabled:
            return [False] * len(positions), [0] * len(positions)
        keys = [self._rows[p] for p in positions]
        states = [self._state(key) for key in keys]
        homes = moved_from([k[1] if k else None for k in keys], states, clusters)
        for key, home in zip(keys, homes, strict=True):
            if key is not None and home is not None:
                self._moved[key] = home
        self.summary["moved"] = len(self._moved)
        condemned = [
            state == DRIFTED and self._condemned(key) for key, state in zip(keys, states, strict=True)
        ]
        return [home is not None for home in homes], claim_ranks(states, condemned, clusters)

    def _state(self, key: tuple[str, str] | None) -> str | None:
        """CONTINUOUS, NEW, DRIFTED or None (see :func:`moved_from`) for an observed row."""
        if key is None:
            return None
        sim, prev, _ = self._seen.get(key, (None, None, None))
        if prev is None:
            return NEW
        if sim is None:
            return None
        return DRIFTED if sim < self.cfg.threshold else CONTINUOUS

    def _condemned(self, key: tuple[str, str] | None) -> bool:
        """Whether :meth:`flag` quarantines this (drifted) row by the topic, content or host rule, as
        far as is known before the decision: the weak signals of the scored chunk count, the verdicts
        of the language model and the combiner (reached after dedup) cannot."""
        if key is None:
            return False
        sim, _, topic = self._seen.get(key, (None, None, None))
        counts = self._hosts.get(host_of(key[1]) or "")
        signals = self._weak.get(key, [])
        return bool(condemning_reasons(sim or 0.0, topic, counts, signals, False, self.cfg))

    def _lookup_rows(
        self, table: pa.Table
    ) -> tuple[list[float | None], list[str | None], list[str | None], list[float | None]]:
        ids = table.column("id").to_pylist()
        urls = table.column("url").to_pylist()
        sims: list[float | None] = []
        prevs: list[str | None] = []
        hosts: list[str | None] = []
        topics: list[float | None] = []
        for doc_id, url in zip(ids, urls, strict=True):
            sim, prev, topic = (
                self._seen.get((doc_id, url), (None, None, None)) if url else (None, None, None)
            )
            sims.append(sim)
            prevs.append(prev)
            hosts.append(host_of(url))
            topics.append(topic)
        return sims, prevs, hosts, topics

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        sims, prevs, hosts, topics = self._lookup_rows(table)
        shares: list[float | None] = []
        for host in hosts:
            counts = self._hosts.get(host) if host else None
            shares.append(counts[0] / counts[1] if counts and counts[1] else None)
        return {
            "drift_similarity": pa.array(sims, pa.float64()),
            "drift_changed": pa.array(
                [None if s is None else s < self.cfg.threshold for s in sims], pa.bool_()
            ),
            "drift_previous_date": pa.array(prevs, pa.string()),
            "drift_host_share": pa.array(shares, pa.float64()),
            "drift_topic_similarity": pa.array(topics, pa.float64()),
        }

    def flag(self, table: pa.Table, reasons: list[list[str]]) -> list[list[str]]:
        if not self.cfg.enabled:
            return [[] for _ in range(table.num_rows)]
        sims, _, hosts, topics = self._lookup_rows(table)
        changed = [None if s is None else s < self.cfg.threshold for s in sims]
        counts = [self._hosts.get(h) if h else None for h in hosts]
        weak = weak_signals(table, self.cfg)
        keys = zip(table.column("id").to_pylist(), table.column("url").to_pylist(), strict=True)
        moved = [self._moved.get((doc_id, url)) if url else None for doc_id, url in keys]
        return drift_reasons(changed, sims, counts, reasons, weak, self.cfg, topics, moved)
