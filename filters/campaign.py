"""campaign detector: spun content-farm campaigns (docs/THREATS.md P-FARM-spun).

A spun campaign republishes one article on many registrable domains, but every copy wears its own
site chrome (masthead, byline, date, share and related links, copyright line), a rewritten headline,
synonym swaps and reordered or dropped sentences. Copies end up 0.35-0.75 apart in word 5-gram
Jaccard, under the 0.8 that dedup needs, so they are neither duplicates nor a ``dedup:campaign``.

What survives spinning is a *shared core*: most of the body's short word n-grams. The detector:

1. Per batch (pure, :func:`sketch`): keep the document's *body*, the sentences of at least
   ``min_sentence_words`` words (chrome lines are short: mastheads, bylines, dates, share and
   related links, copyright lines), hash its word ``shingle_words``-grams, and keep
   (a) a MinHash signature of them and (b) their ``sketch_size`` smallest hashes (a bottom-k
   sketch: a feature small enough to be kept is kept in every document that has it, so sketches
   of different documents can be compared feature by feature). A body that reads as a legal
   notice (core/legal.py, the config's `legal` section: most sentences carry a legal term, and it
   addresses its reader, as licences, privacy policies and terms of use do; the scoring stage
   passes its flags in) is left out like a short one: unrelated
   sites share those texts verbatim by the thousand, and they are not articles.
2. Over the whole input (:class:`CampaignIndex`): a low-threshold MinHash LSH only *proposes*
   candidate groups (connected components of pairs whose estimated Jaccard reaches
   ``candidate_threshold``). Groups on fewer than ``min_domains`` domains are dropped at once.
3. Confirmation, per candidate group: features a host repeats on most of its pages are removed
   (shared CMS footers and navigation), the group's *core* is the set of features found on
   ``core_min_domains`` or more of its registrable domains, and a member is a confirmed copy when
   its *containment* reaches ``min_containment``: the share of its body features that lie in the
   core times the share of its text that is body (so that a page whose body is a small part of
   it, say a few shared command lines in a translated manual, is not confirmed by that part).
   At least ``min_varied_containment`` of it must also lie outside the sentences found verbatim
   on ``shared_sentence_share`` of the group's domains: one CMS theme's cookie banner and footer
   are verbatim on every site, a spun copy rewrites most of its sentences. That second test is
   waived when the group's core holds ``verbatim_core_sentences`` or more of those verbatim
   sentences: a theme's banner and footer are a handful, an article copied word for word onto many
   sites (each copy in its own chrome, so under dedup's near-duplicate threshold) is many; such a
   copy is quarantined as ``campaign:copied(N domains)``. A group whose
   confirmed copies span ``min_domains`` registrable domains is a campaign: each confirmed copy
   is quarantined as ``campaign:spun(N domains)``. Containment is measured on a sample of each
   copy's features, so a campaign on barely ``min_domains`` domains would be lost to one copy a
   little under the bar: once copies at the full bar span ``established_share`` of
   ``min_domains``, the members at ``relaxed_share`` of both bars are copies too
   (:func:`campaign_domains`).

Benign look-alikes stay below the bar: a wire story syndicated on a few domains has a core on too
few domains; mirrors of one page on a few sites likewise; translations share few word n-grams;
sites that share CMS boilerplate lose it as host boilerplate (several pages per host) or as
shared sentences (one page per host); forum quote chains and near-duplicate editions live on one
domain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.core import legal, minhash
from poisonguard.core.legal import body_text
from poisonguard.core.urls import host_of
from poisonguard.filters import dedup
from poisonguard.filters.contract import DetectorConfig, Signal, Spec

REASON = "campaign:spun"
COPIED_REASON = "campaign:copied"

SIGNAL_SCHEMA = pa.schema(
    [
        ("campaign_group_id", pa.string()),
        ("campaign_group_domains", pa.int64()),
        ("campaign_core_domains", pa.int64()),
        ("campaign_containment", pa.float64()),
        ("campaign_varied_containment", pa.float64()),
        ("campaign_verbatim_sentences", pa.int64()),
    ]
)

SIG_COLUMN = "_campaign_signature"
SKETCH_COLUMN = "_campaign_sketch"
OWNER_COLUMN = "_campaign_sentence"
BODY_SHARE_COLUMN = "_campaign_body_share"


class Config(DetectorConfig):
    min_sentence_words: int = Field(6, ge=1, description="shorter sentences are chrome, not body")
    shingle_words: int = Field(3, ge=1, description="words per body feature")
    min_features: int = Field(20, ge=1, description="documents with fewer body features are skipped")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations of the candidate LSH")
    seed: int = Field(7, ge=0, description="seed of the permutations (not dedup's)")
    candidate_threshold: float = Field(
        0.2, gt=0.0, le=1.0, description="estimated Jaccard of body features for a candidate pair"
    )
    sketch_size: int = Field(128, ge=8, le=4096, description="bottom-k features kept per document")
    core_min_domains: int = Field(4, ge=2, description="a core feature is on this many domains of the group")
    min_containment: float = Field(
        0.4, gt=0.0, le=1.0, description="share of a page in the core to confirm it as a copy"
    )
    min_domains: int = Field(10, ge=2, description="confirmed copies on this many domains are a campaign")
    boilerplate_min_pages: int = Field(3, ge=2, description="hosts with fewer pages have no boilerplate")
    boilerplate_share: float = Field(
        0.5, gt=0.0, le=1.0, description="a feature on this share of a host's pages is boilerplate"
    )
    max_bucket_exemplars: int = Field(32, ge=1, description="bound on checks per LSH bucket member")
    shared_sentence_share: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="a sentence verbatim on this share of a group's domains is shared",
    )
    min_varied_containment: float = Field(
        0.2, ge=0.0, le=1.0, description="share of a copy in the core outside the shared sentences"
    )
    verbatim_core_sentences: int | None = Field(
        10,
        ge=1,
        description="a group whose core holds this many shared sentences is an article copied verbatim",
    )
    established_share: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="a group whose copies at the full bar span this share of min_domains is an established "
        "campaign, whose members at relaxed_share of the bar are copies too",
    )
    relaxed_share: float = Field(
        0.75,
        gt=0.0,
        le=1.0,
        description="share of min_containment and min_varied_containment a member of an established "
        "campaign needs to be one of its copies",
    )


# ---------------------------------------------------------------------------------------------
# Per batch (pure)


def _bottom_k(
    hashes: np.ndarray, owners: np.ndarray, counts: np.ndarray, k: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per document, its ``k`` smallest distinct feature hashes and the sentence each came from."""
    sketches: list[np.ndarray] = []
    sentences: list[np.ndarray] = []
    start = 0
    for c in counts.tolist():
        values, first = np.unique(hashes[start : start + c], return_index=True)
        sketches.append(values[:k])
        sentences.append(owners[start : start + c][first[:k]])
        start += c
    return sketches, sentences


def sketch(
    texts: Sequence[str], cfg: Config, legal_notices: Sequence[bool] | None = None
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """(MinHash signatures of the body features, shape (n, num_perm) uint32; bottom-k sketches,
    one sorted uint64 array per document; share of each text's characters that are body; for each
    sketch feature, the hash of the sentence it comes from). Features are word n-grams within one
    sentence. Documents with fewer than ``min_features`` body features, and legal notices
    (``legal_notices``: core/legal.py's flags; None: computed here with the shipped `legal`
    settings), get the empty signature and an empty sketch: they never join a campaign."""
    if legal_notices is not None and len(legal_notices) != len(texts):
        raise ValueError(f"campaign.sketch: {len(texts)} texts but {len(legal_notices)} legal-notice flags")
    bodies = [body_text(t, cfg.min_sentence_words) for t in texts]
    # Legal notices are shared verbatim by unrelated sites: not a campaign's copies.
    if legal_notices is None:
        legal_notices = legal.flags(texts, legal.Config())
    bodies = ["" if is_legal else b for b, is_legal in zip(bodies, legal_notices, strict=True)]
    shares = np.array([len(b) / len(t) if t else 0.0 for b, t in zip(bodies, texts, strict=True)], np.float64)
    sentences = [b.split("\n") if b else [] for b in bodies]
    flat = [x for sents in sentences for x in sents]
    per_doc = np.array([len(x) for x in sentences], dtype=np.int64)
    hashes, per_sentence = minhash.shingle_hashes(flat, cfg.shingle_words)
    # One "shingle" as long as the sentence: the hash of its whole normalised word sequence.
    whole, whole_counts = minhash.shingle_hashes(flat, 1 << 30)
    sentence_hash = np.zeros(len(flat), dtype=np.uint64)
    sentence_hash[whole_counts > 0] = whole
    owners = np.repeat(sentence_hash, per_sentence)
    doc_of_sentence = np.repeat(np.arange(len(texts)), per_doc)
    counts = np.bincount(doc_of_sentence, weights=per_sentence, minlength=len(texts)).astype(np.int64)
    short = counts < cfg.min_features
    if short.any():
        keep = np.repeat(~short, counts)
        hashes, owners = hashes[keep], owners[keep]
        counts = np.where(short, 0, counts)
    sigs = minhash.signatures_from_hashes(hashes, counts, cfg.num_perm, cfg.seed, "affine32")
    sketches, sketch_owners = _bottom_k(hashes, owners, counts, cfg.sketch_size)
    return sigs, sketches, np.minimum(shares, 1.0), sketch_owners


def _list_column(arrays: Sequence[np.ndarray]) -> pa.Array:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else np.zeros(0, np.uint64)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint64()))


def _list_values(column: pa.ChunkedArray, n: int) -> list[np.ndarray]:
    arr = column.combine_chunks()
    offsets = np.asarray(arr.offsets)
    values = np.asarray(arr.values, dtype=np.uint64) if len(arr.values) else np.zeros(0, np.uint64)
    return [values[offsets[i] : offsets[i + 1]] for i in range(n)]


def sketch_columns(
    texts: Sequence[str], cfg: Config, legal_notices: Sequence[bool] | None = None
) -> dict[str, pa.Array]:
    """:func:`sketch` as the internal columns the runner keeps in its work files."""
    sigs, sketches, shares, owners = sketch(texts, cfg, legal_notices)
    flat = pa.array(sigs.astype(np.uint64, copy=False).reshape(-1), pa.uint64())
    return {
        SIG_COLUMN: pa.FixedSizeListArray.from_arrays(flat, cfg.num_perm),
        SKETCH_COLUMN: _list_column(sketches),
        BODY_SHARE_COLUMN: pa.array(shares, pa.float64()),
        OWNER_COLUMN: _list_column(owners),
    }


def read_columns(table: pa.Table) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """What :func:`sketch` returned, back from a work table's internal columns."""
    n = table.num_rows
    sig_col = table.column(SIG_COLUMN).combine_chunks()
    sigs = np.asarray(sig_col.flatten(), dtype=np.uint32).reshape(n, -1)
    shares = np.asarray(table.column(BODY_SHARE_COLUMN).to_numpy(zero_copy_only=False), dtype=np.float64)
    sketches = _list_values(table.column(SKETCH_COLUMN), n)
    return sigs, sketches, shares, _list_values(table.column(OWNER_COLUMN), n)


# ---------------------------------------------------------------------------------------------
# Decision rule (shared by the index and by flag)


def is_copy(
    containment: np.ndarray, varied: np.ndarray, verbatim: np.ndarray, cfg: Config, bar: float = 1.0
) -> np.ndarray:
    """Per member: a confirmed copy. Most of the page is in the core, and that core is either
    rewritten (spun: ``varied``) or a long article found verbatim on nearly every domain
    (``verbatim`` shared sentences; a theme's banner and footer are a handful of sentences).
    ``bar`` scales both shares (``relaxed_share`` for the members of an established campaign)."""
    long_copy = np.zeros(len(verbatim), dtype=bool)
    if cfg.verbatim_core_sentences is not None:
        long_copy = verbatim >= cfg.verbatim_core_sentences
    spun_or_long = (varied >= bar * cfg.min_varied_containment) | long_copy
    return (containment >= bar * cfg.min_containment) & spun_or_long


def campaign_domains(strict_domains: int, relaxed_domains: int, cfg: Config) -> int:
    """The domains a group's copies span, as the campaign test counts them. Copies at the full bar
    must span ``established_share`` of ``min_domains``; then the members at ``relaxed_share`` of
    the bar count too. Each member's containment is measured on a sample of its features, so in a
    campaign on barely ``min_domains`` domains one copy a little under the bar would otherwise
    clear all the others."""
    if strict_domains >= math.ceil(cfg.established_share * cfg.min_domains):
        return relaxed_domains  # the relaxed copies include the strict ones
    return strict_domains


# ---------------------------------------------------------------------------------------------
# The index


@dataclass
class _Group:
    members: np.ndarray  # positions, ascending
    domains: int  # distinct registrable domains among all members


class CampaignIndex:
    """Per document: signature, sketch, host and domain codes (no text); see the module docstring."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.bands, self.rows = dedup._optimal_params(cfg.candidate_threshold, cfg.num_perm, 0.5)
        self._ids: list[str] = []
        self._sigs: list[np.ndarray] = []
        self._sketches: list[np.ndarray] = []
        self._shares: list[float] = []
        self._owners: list[np.ndarray] = []
        self._hosts: list[int] = []
        self._domains: list[int] = []
        self._host_codes: dict[str, int] = {}
        self._domain_codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(
        self,
        ids: Sequence[str],
        urls: Sequence[str | None],
        sigs: np.ndarray,
        sketches: Sequence[np.ndarray],
        body_shares: Sequence[float] | np.ndarray,
        owners: Sequence[np.ndarray] | None = None,
    ) -> None:
        """``owners``: per sketch feature, the hash of its sentence (see :func:`sketch`); without
        them no sentence is recognised as boilerplate shared across domains."""
        if not (len(ids) == len(urls) == len(sigs) == len(sketches) == len(body_shares)):
            raise ValueError(
                f"CampaignIndex.add: {len(ids)} ids, {len(urls)} urls, {len(sigs)} signatures, "
                f"{len(sketches)} sketches, {len(body_shares)} body shares"
            )
        if len(sigs) and (sigs.ndim != 2 or sigs.shape[1] != self.cfg.num_perm):
            raise ValueError(
                f"CampaignIndex.add: signatures of shape {sigs.shape}, expected (n, {self.cfg.num_perm})"
            )
        self._ids.extend(ids)
        self._sigs.append(np.asarray(sigs, dtype=np.uint32))
        self._sketches.extend(np.asarray(s, dtype=np.uint64) for s in sketches)
        self._shares.extend(float(x) for x in body_shares)
        if owners is None:
            owners = [np.zeros(len(s), np.uint64) for s in sketches]
        self._owners.extend(np.asarray(o, dtype=np.uint64) for o in owners)
        for url in urls:
            host, domain = host_of(url), dedup.registrable_domain(url)
            self._hosts.append(
                -1 if host is None else self._host_codes.setdefault(host, len(self._host_codes))
            )
            self._domains.append(
                -1 if domain is None else self._domain_codes.setdefault(domain, len(self._domain_codes))
            )

    def add_table(self, table: pa.Table) -> None:
        """Add one scored work table (``id``, ``url`` and the internal columns)."""
        sigs, sketches, shares, owners = read_columns(table)
        ids, urls = table.column("id").to_pylist(), table.column("url").to_pylist()
        self.add(ids, urls, sigs, sketches, shares, owners)

    # -- candidates -------------------------------------------------------------------------------

    def _candidate_groups(self, sigs: np.ndarray, domains: np.ndarray) -> list[_Group]:
        n = len(sigs)
        uf = dedup.UnionFind(n)
        empty = np.all(sigs == minhash.empty_value("affine32"), axis=1)
        cand = np.flatnonzero(~empty)
        need = math.ceil(self.cfg.candidate_threshold * self.cfg.num_perm - 1e-9)
        if len(cand) > 1:
            cand_sigs = sigs[cand]
            for band in range(self.bands):
                keys = dedup._band_keys(cand_sigs, band, self.rows)
                srt = np.argsort(keys, kind="stable")
                sk = keys[srt]
                bounds = np.flatnonzero(np.diff(sk)) + 1
                starts = np.concatenate(([0], bounds))
                ends = np.concatenate((bounds, [len(sk)]))
                for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                    if e - s < 2:
                        continue
                    members = cand[srt[s:e]]
                    edges, _ = dedup.verify_bucket(sigs[members], need, self.cfg.max_bucket_exemplars)
                    for a, b in edges:
                        uf.union(int(members[a]), int(members[b]))
        roots = np.fromiter((uf.find(i) for i in range(n)), dtype=np.int64, count=n)
        groups: list[_Group] = []
        order = np.argsort(roots, kind="stable")
        bounds = np.flatnonzero(np.diff(roots[order])) + 1
        for members in np.split(order, bounds) if n else []:
            if len(members) < self.cfg.min_domains:
                continue
            doms = domains[members]
            n_domains = len(np.unique(doms[doms >= 0]))
            if n_domains >= self.cfg.min_domains:
                groups.append(_Group(np.sort(members), n_domains))
        return groups

    # -- confirmation -----------------------------------------------------------------------------

    def _boilerplate(self, hosts: np.ndarray, wanted: set[int]) -> dict[int, set[int]]:
        """Features each wanted host repeats on at least ``boilerplate_share`` of its pages."""
        out: dict[int, set[int]] = {}
        positions: dict[int, list[int]] = {}
        for i, h in enumerate(hosts.tolist()):
            if h in wanted:
                positions.setdefault(h, []).append(i)
        for h, pos in positions.items():
            if len(pos) < self.cfg.boilerplate_min_pages:
                continue
            values, counts = np.unique(np.concatenate([self._sketches[i] for i in pos]), return_counts=True)
            need = max(2, math.ceil(self.cfg.boilerplate_share * len(pos)))
            out[h] = set(values[counts >= need].tolist())
        return out

    def _shared_sentences(self, group: _Group, domains: np.ndarray) -> np.ndarray:
        """Sentences found verbatim on ``shared_sentence_share`` of the group's domains: a theme's
        cookie banner or footer on every site. A spun copy rewrites or drops most of its sentences,
        so few of a campaign's survive on nearly every domain."""
        pairs = {
            (int(o), int(domains[i]))
            for i in group.members.tolist()
            if domains[i] >= 0
            for o in np.unique(self._owners[i]).tolist()
            if o
        }
        owners, counts = np.unique(np.array([o for o, _ in pairs], dtype=np.uint64), return_counts=True)
        return owners[counts >= self.cfg.shared_sentence_share * group.domains]

    def _confirm(
        self, group: _Group, hosts: np.ndarray, domains: np.ndarray, boiler: dict[int, set[int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(containment of each member, the part of it outside the shared sentences, how many
        distinct shared sentences the group's core features come from (one count for the whole
        group, given to each member), distinct domains of the confirmed members)."""
        shared = self._shared_sentences(group, domains)
        feats: list[np.ndarray] = []
        in_shared: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for i in group.members.tolist():
            sk = self._sketches[i]
            keep = np.ones(len(sk), dtype=bool)
            drop = boiler.get(int(hosts[i]))
            if drop:
                keep &= ~np.isin(sk, np.fromiter(drop, dtype=np.uint64, count=len(drop)))
            feats.append(sk[keep])
            owners.append(self._owners[i][keep])
            in_shared.append(np.isin(owners[-1], shared))
        # Core: features present on core_min_domains distinct domains of the group. Boilerplate
        # features stay in each copy's denominator: a page that is mostly boilerplate has no core.
        per_feature: dict[int, set[int]] = {}
        for i, fs in zip(group.members.tolist(), feats, strict=True):
            d = int(domains[i])
            if d >= 0:
                for f in fs.tolist():
                    per_feature.setdefault(f, set()).add(d)
        core = {f for f, ds in per_feature.items() if len(ds) >= self.cfg.core_min_domains}
        containment = np.zeros(len(feats), dtype=np.float64)
        varied = np.zeros(len(feats), dtype=np.float64)
        verbatim = np.zeros(len(feats), dtype=np.int64)
        verbatim_owners: list[np.ndarray] = []
        for j, fs in enumerate(feats):
            i = int(group.members[j])
            total = len(self._sketches[i])
            if total:
                hit = np.fromiter((f in core for f in fs.tolist()), dtype=bool, count=len(fs))
                containment[j] = hit.sum() / total * self._shares[i]
                varied[j] = (hit & ~in_shared[j]).sum() / total * self._shares[i]
                verbatim_owners.append(owners[j][hit & in_shared[j]])
        # The group's verbatim core: shared sentences that hold core features of some copy.
        n_verbatim = len(np.unique(np.concatenate(verbatim_owners))) if verbatim_owners else 0
        verbatim[:] = n_verbatim

        def spanned(confirmed: np.ndarray) -> int:
            doms = domains[group.members[confirmed]]
            return len(np.unique(doms[doms >= 0]))

        strict = spanned(is_copy(containment, varied, verbatim, self.cfg))
        relaxed = spanned(is_copy(containment, varied, verbatim, self.cfg, self.cfg.relaxed_share))
        return containment, varied, verbatim, campaign_domains(strict, relaxed, self.cfg)

    def assign(self) -> pa.Table:
        """SIGNAL_SCHEMA columns for every document, in the order added."""
        n = len(self._ids)
        sigs = np.concatenate(self._sigs) if self._sigs else np.zeros((0, self.cfg.num_perm), np.uint32)
        hosts = np.array(self._hosts, dtype=np.int64)
        domains = np.array(self._domains, dtype=np.int64)
        group_id: list[str | None] = [None] * n
        group_domains = np.zeros(n, dtype=np.int64)
        core_domains = np.zeros(n, dtype=np.int64)
        containment = np.zeros(n, dtype=np.float64)
        varied = np.zeros(n, dtype=np.float64)
        verbatim = np.zeros(n, dtype=np.int64)
        groups = self._candidate_groups(sigs, domains)
        wanted = {int(h) for g in groups for h in hosts[g.members].tolist() if h >= 0}
        boiler = self._boilerplate(hosts, wanted)
        for group in groups:
            cont, var, verb, n_core = self._confirm(group, hosts, domains, boiler)
            first = self._ids[int(group.members[0])]
            for j, i in enumerate(group.members.tolist()):
                group_id[i] = first
                group_domains[i] = group.domains
                core_domains[i] = n_core
                containment[i] = cont[j]
                varied[i] = var[j]
                verbatim[i] = verb[j]
        return pa.table(
            {
                "campaign_group_id": pa.array(group_id, pa.string()),
                "campaign_group_domains": pa.array(group_domains, pa.int64()),
                "campaign_core_domains": pa.array(core_domains, pa.int64()),
                "campaign_containment": pa.array(np.round(containment, 4), pa.float64()),
                "campaign_varied_containment": pa.array(np.round(varied, 4), pa.float64()),
                "campaign_verbatim_sentences": pa.array(verbatim, pa.int64()),
            },
            schema=SIGNAL_SCHEMA,
        )


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    """Campaigns within `batch` alone. The pipelines find them across the whole input instead: the
    scoring stage adds the sketch columns to every chunk, and one index sees them all."""
    texts = [t or "" for t in batch.column("text").to_pylist()]
    table = batch.select(["id", "url"]) if "url" in batch.column_names else batch.select(["id"])
    if "url" not in table.column_names:
        table = table.append_column("url", pa.nulls(batch.num_rows, pa.string()))
    for name, values in sketch_columns(texts, cfg).items():
        table = table.append_column(name, values)
    index = CampaignIndex(cfg)
    index.add_table(table)
    found = index.assign()
    return {name: found.column(name).combine_chunks() for name in found.column_names}


# ---------------------------------------------------------------------------------------------
# Decision


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    """``campaign:spun(N domains)`` for every confirmed copy of a campaign on ``min_domains`` or more
    registrable domains; ``campaign:copied(N domains)`` where the copy's core is confirmed by the
    length of the article it repeats verbatim rather than by rewritten sentences."""
    needed = ("campaign_core_domains", "campaign_containment", "campaign_varied_containment")
    if not cfg.enabled or any(c not in signals.column_names for c in needed):
        return [[] for _ in range(signals.num_rows)]
    n = signals.num_rows

    def column(name: str, dtype: type) -> np.ndarray:
        if name not in signals.column_names:
            return np.zeros(n, dtype=dtype)
        values = signals.column(name).to_pylist()
        return np.array([0 if v is None else v for v in values], dtype=dtype)

    core = column("campaign_core_domains", np.int64)
    cont = column("campaign_containment", np.float64)
    varied = column("campaign_varied_containment", np.float64)
    verbatim = column("campaign_verbatim_sentences", np.int64)
    # core >= min_domains only for an established campaign (campaign_domains), whose members at the
    # relaxed bar are copies.
    copy = is_copy(cont, varied, verbatim, cfg, cfg.relaxed_share) & (core >= cfg.min_domains)
    spun = varied >= cfg.relaxed_share * cfg.min_varied_containment
    return [
        [f"{REASON if s else COPIED_REASON}({d} domains)"] if c else []
        for c, s, d in zip(copy.tolist(), spun.tolist(), core.tolist(), strict=True)
    ]


DECLARED_SIGNALS = (
    Signal("campaign_group_id"),
    Signal("campaign_group_domains"),
    Signal("campaign_core_domains", "min_domains"),
    Signal("campaign_containment", "min_containment"),
    Signal("campaign_varied_containment", "min_varied_containment"),
    Signal("campaign_verbatim_sentences", "verbatim_core_sentences"),
)
DETECTOR = Spec(
    name="campaign", stage="corpus", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
