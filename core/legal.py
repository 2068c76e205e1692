"""Legal notices: licences, privacy policies and terms of use.

Unrelated sites share such texts verbatim by the thousand (the GPL, the Apache and MIT licences, a
privacy-policy generator's template with the site's name filled in). To a rule that counts one text
on many registrable domains they look like a campaign's copies, so both corpus-level detectors that
count domains (filters/dedup.py, filters/campaign.py) ask the same question. One test, one set of
settings (the config's `legal` section, :class:`Config`), computed once per document by the scoring
stage (:func:`flags`) and read by both, so the two detectors cannot part on what a legal notice is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    """The `legal` section: what reads as a legal notice (set on spun generator A's notices, bench
    "spun"; tested on generator B's)."""

    model_config = ConfigDict(extra="forbid")
    sentence_share: float | None = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="a body whose sentences carry a legal term at this share, addressed to the reader "
        "(address_density), is a legal notice: never a campaign (null: nothing is)",
    )
    address_density: float = Field(
        0.015,
        ge=0.0,
        le=1.0,
        description="share of words addressing the reader (you, we) or of licence drafting (hereby)",
    )
    min_sentence_words: int = Field(
        6, ge=1, description="shorter sentences (chrome) are left out of the test"
    )


# A sentence ends at . ! ? (or their CJK forms) followed by spaces, and at every line break.
_SENTENCE_END = re.compile(r"([.!?\u3002\uff01\uff1f])[ \t]+")

_WORD = re.compile(r"\w+")


def body_text(text: str, min_sentence_words: int) -> str:
    """The document's body: its sentences of at least ``min_sentence_words`` words (runs of word
    characters, so the bars of a navigation line are not words), in order, one per line."""
    n = min_sentence_words
    sentences = _SENTENCE_END.sub("\\1\n", text).splitlines()
    # The whitespace count is an upper bound of the word count and cheap: most lines stop there.
    return "\n".join(s.strip() for s in sentences if len(s.split()) >= n and len(_WORD.findall(s)) >= n)


# Legal register: terms of licences, privacy policies and terms of use, in the languages of the CMS
# templates most sites use (whole words, or word stems). A notice addresses its reader ("you agree",
# "we collect"); an article about law does not, so the second list keeps encyclopaedic text about
# contracts or rights out.
_LEGAL_WORDS = frozenset(
    "liable merchantability trademark trademarks patent patents hereby herein hereunder hereof thereof "
    "therein pursuant notwithstanding jurisdiction jurisdictions governing terms conditions privacy "
    "personal cookies gdpr royalty shall damages statutory provision provisions law laws right rights "
    "permission permitted notice notices applicable accordance obligation obligations claim claims "
    "haftung gewährleistung nutzungsbedingungen gemäß einwilligung bedingungen recht rechte garantie "
    "garanties responsabilité données droit droits conformément consentement licencia licencias garantía "
    "garantías responsabilidad datos términos derechos conforme consentimiento".split()
)
_LEGAL_STEMS = (
    "licen", "sublicens", "warrant", "liabilit", "indemnif", "copyright", "consent", "redistribut",
    "infring", "disclaim", "enforceab", "lawful", "legal", "prohibit", "agree", "breach", "waive",
    "terminat", "lizenz", "datenschutz", "personenbezogen", "urheberrecht",
)  # fmt: skip
_ADDRESS_WORDS = frozenset(
    "you your yours we our us ours du dein deine deinen deiner sie ihr ihre ihren ihrer wir unser unsere "
    "unseren unserer vous votre vos nous notre nos usted ustedes nosotros nuestro nuestra nuestros "
    "nuestras".split()
)

# The drafting register of a licence grant: a licence that never says "you" (MIT, BSD: "Permission
# is hereby granted...", "Redistributions of source code must retain...") is written in these.
_DRAFTING_WORDS = frozenset(
    "hereby herein hereunder hereof thereof therein thereto hereinafter whereas merchantability "
    "noninfringement sublicense sublicensable redistribution redistributions".split()
)
_MIN_DRAFTING_KINDS = 2  # distinct drafting words: one "hereby" in an article is not a licence grant

_NOT_WORD = re.compile(r"[^\w\s]+")  # punctuation to spaces: then str.split() gives the words


def _is_legal_word(word: str) -> bool:
    return word in _LEGAL_WORDS or word.startswith(_LEGAL_STEMS)


def _drafted(words: list[str], need: float) -> bool:
    """Whether the words read as a licence grant's drafting: ``need`` of them drafting words, of at
    least two kinds."""
    found = [w for w in words if w in _DRAFTING_WORDS]
    return len(found) >= need and len(set(found)) >= _MIN_DRAFTING_KINDS


def legal_notice(body: str, sentence_share: float | None, address_density: float) -> bool:
    """Whether a body (one sentence a line, :func:`body_text`) reads as a legal notice (a licence, a
    privacy policy, terms of use): at least ``sentence_share`` of its sentences carry a legal term
    and at least ``address_density`` of its words address the reader (you, your, we, our...) or, in
    a licence that never says "you" (MIT, BSD), are words of a licence grant's drafting (hereby,
    herein, merchantability, sublicense, redistributions...). A cookie banner on a short page is a
    minority of its sentences; an article about law neither addresses its reader nor is drafted as
    a grant. ``sentence_share`` None: nothing is a legal notice."""
    if sentence_share is None or not body:
        return False
    lower = _NOT_WORD.sub(" ", body.lower())
    words = lower.split()
    # Most bodies neither address their reader nor read as a licence grant: that test first, and cheap.
    need = address_density * len(words)
    if not words or (sum(map(_ADDRESS_WORDS.__contains__, words)) < need and not _drafted(words, need)):
        return False
    sentences = lower.split("\n")
    legal = sum(1 for s in sentences if any(_is_legal_word(w) for w in s.split()))
    return legal >= sentence_share * len(sentences)


def flags(texts: Sequence[str], cfg: Config) -> list[bool]:
    """Per document, whether it reads as a legal notice (:func:`legal_notice` of its body)."""
    if cfg.sentence_share is None:
        return [False] * len(texts)
    return [
        legal_notice(body_text(t, cfg.min_sentence_words), cfg.sentence_share, cfg.address_density)
        for t in texts
    ]
