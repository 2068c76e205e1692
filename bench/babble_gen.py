"""P-BABBLE-X: Markov babble from chains trained on corpora the detectors never saw.

Word chains of order 1-3 (whitespace tokens, punctuation attached, as Nepenthes and iocaine build
theirs), each trained on the ``train`` half of one genre of :mod:`bench.babble_corpora`. A page is
700-3,000 characters in paragraphs of 2-6 sentences, with or without a real first sentence (taken
from a ``held`` document of the same genre, as a tarpit that opens with a real line would).
"""

from __future__ import annotations

import functools
import random
import re
import string
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench import babble_corpora, corpus

ORDERS = (1, 2, 3)
CHARS = (700, 3000)
_SENT_END = re.compile(r"[.!?][\"')\]]?$")
_FIRST_SENTENCE = re.compile(r"^(.{40,300}?[.!?])\s", re.S)

Doc = dict[str, Any]


class WordChain:
    """An order-k word Markov chain; on a dead end it restarts from a random state (as tarpits do)."""

    def __init__(self, texts: list[str], order: int) -> None:
        nxt: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for text in texts:
            words = text.split()
            for i in range(len(words) - order):
                nxt[tuple(words[i : i + order])].append(words[i + order])
        self.order = order
        self.next = dict(nxt)
        self.keys = sorted(self.next)
        self.starts = [k for k in self.keys if k[0][:1].isupper()] or self.keys

    def generate(self, rng: random.Random, chars: int) -> list[str]:
        state = rng.choice(self.starts)
        out = list(state)
        size = sum(len(w) + 1 for w in out)
        while size < chars:
            choices = self.next.get(state)
            if not choices:
                state = rng.choice(self.starts)
                words = list(state)
            else:
                words = [rng.choice(choices)]
                state = (*state[1:], words[0]) if self.order > 1 else (words[0],)
            out += words
            size += sum(len(w) + 1 for w in words)
        return out


@functools.lru_cache(maxsize=16)
def chain(genre: str, order: int) -> WordChain:
    return WordChain([t for _n, t in babble_corpora.genre_split(genre, "train")], order)


def paragraphs(words: list[str], rng: random.Random) -> str:
    """Words -> text with a paragraph break after every 2-6 sentence ends."""
    out, sentences, target = [], 0, rng.randint(2, 6)
    for w in words:
        out.append(w)
        if _SENT_END.search(w):
            sentences += 1
            if sentences >= target:
                out.append("\n\n")
                sentences, target = 0, rng.randint(2, 6)
    return " ".join(out).replace(" \n\n ", "\n\n").strip()


def first_sentence(text: str) -> str | None:
    m = _FIRST_SENTENCE.match(" ".join(text.split()))
    return m.group(1) if m else None


def p_babble_x(genre: str, n: int, seed: int = 0) -> list[Doc]:
    """`n` babble pages from the chains of one genre: orders 1-3 in turn, half of them opening with a
    real first sentence of a held-out document of that genre."""
    rng = random.Random(f"{seed}:P-BABBLE-X:{genre}")
    held = [t for _n, t in babble_corpora.genre_split(genre, "held")]
    return chain_pages(held, n, rng, genre, chain_for=lambda order: chain(genre, order))


# Chains over corpora of the clean base (bench/corpus.py), used only to fit the combiner: more kinds of
# chain (an encyclopedia, a technical handbook, French, Spanish, German, Russian text) than the five
# genres, so a fit that leaves one genre out still sees many chains. None is a genre the bench
# reports on, and a chain never trains on a page of the sample it is fitted with (`exclude`).
FIT_CHAIN_CATEGORIES = (
    "wiki-en",
    "handbook-en",
    "wiki-fr",
    "wiki-es",
    "handbook-de",
    "handbook-fr",
    "handbook-es",
    "handbook-ru",
)
_FIT_CHAIN_DOCS = 3000  # a chain's corpus: at most this many pages of its category


def p_babble_fit(category: str, n: int, seed: int, exclude: set[str]) -> list[Doc]:
    """`n` babble pages from chains over the clean-base pages of `category` whose text is not in
    `exclude` (the sample's own clean pages). Genre ``fit-<category>``: fitted on, never reported."""
    rng = random.Random(f"{seed}:P-BABBLE-X:fit:{category}")
    texts = [d["text"] for d in corpus.clean_base(only=[category]) if d["text"] not in exclude]
    rng.shuffle(texts)
    return chain_pages(texts[:_FIT_CHAIN_DOCS], n, rng, f"fit-{category}")


def chain_pages(
    texts: list[str],
    n: int,
    rng: random.Random,
    genre: str,
    chain_for: Callable[[int], WordChain] | None = None,
) -> list[Doc]:
    """`n` P-BABBLE-X pages of genre `genre` from chains of order 1-3 (in turn), half of them opening
    with a real first sentence of one of `texts`. `chain_for(order)`: the chain of that order (by
    default one over `texts`; P-BABBLE-X's own genres train theirs on the other half)."""
    if chain_for is None:
        chains = {order: WordChain(texts, order) for order in ORDERS}
        chain_for = chains.__getitem__
    out = []
    for i in range(n):
        order = ORDERS[i % len(ORDERS)]
        chars = rng.randint(*CHARS)
        opener = first_sentence(rng.choice(texts)) if i % 2 == 0 else None
        body = paragraphs(chain_for(order).generate(rng, chars - len(opener or "")), rng)
        text = f"{opener} {body}" if opener else body
        out.append(
            {
                "id": f"P-BABBLE-X-{genre}-{i:04d}",
                "text": text[: CHARS[1]],
                "url": f"http://{genre}-{rng.getrandbits(24):06x}.example/{rng.getrandbits(32):08x}.html",
                "label": 1,
                "family": "P-BABBLE-X",
                "variant": f"{genre}/order{order}/{'opener' if opener else 'plain'}",
                "genre": genre,
                "order": order,
                "trigger": None,
            }
        )
    return out


def clean_genre_docs(genre: str, n: int, seed: int = 0) -> list[Doc]:
    """`n` clean pages of a genre's held half: a passage of 700-3,000 chars cut at paragraph ends
    (short documents whole)."""
    rng = random.Random(f"{seed}:clean:{genre}")
    held = babble_corpora.genre_split(genre, "held")
    out = []
    for i, (name, text) in enumerate(rng.sample(held, min(n, len(held)))):
        paras = text.split("\n\n")
        start = rng.randrange(len(paras))
        limit = rng.randint(*CHARS)
        passage: list[str] = []
        for p in paras[start:] + paras[:start]:
            if passage and sum(len(x) + 2 for x in passage) + len(p) > limit:
                break
            passage.append(p)
        out.append(
            {
                "id": f"clean-{genre}-{i:04d}",
                "text": "\n\n".join(passage)[: CHARS[1]],
                "url": f"http://{genre}.example/{name}",
                "label": 0,
                "category": f"prose-{genre}",
            }
        )
    return out


def poetry_docs(n: int, seed: int = 0) -> list[Doc]:
    """Pages of 700-3,000 chars of poems and songs (fortunes songs-poems, love), blank-line separated."""
    rng = random.Random(f"{seed}:clean:poetry")
    poems = babble_corpora.fortunes("songs-poems") + babble_corpora.fortunes("love")
    out = []
    for i in range(n):
        limit, parts = rng.randint(*CHARS), []
        while sum(len(p) + 2 for p in parts) < limit:
            parts.append(rng.choice(poems))
        out.append(
            {
                "id": f"clean-poetry-{i:04d}",
                "text": "\n\n".join(parts)[: CHARS[1]],
                "url": f"http://poems{i % 13}.example/{i}",
                "label": 0,
                "category": "prose-poetry",
            }
        )
    return out


def dialogue_docs(n: int, seed: int = 0) -> list[Doc]:
    """Pages of 700-3,000 chars of dialogue: runs of consecutive paragraphs that hold a quotation mark,
    from the held halves of Austen and Brown fiction (people talking, replies short, few topic words)."""
    rng = random.Random(f"{seed}:clean:dialogue")
    runs: list[tuple[str, list[str]]] = []
    for genre in ("austen", "fiction"):
        for name, text in babble_corpora.genre_split(genre, "held"):
            run: list[str] = []
            for para in [*text.split("\n\n"), ""]:
                if para.count('"') >= 2:
                    run.append(para.strip())
                    continue
                if sum(len(p) for p in run) >= CHARS[0]:
                    runs.append((name, run))
                run = []
    out = []
    for i, (name, run) in enumerate(rng.sample(runs, min(n, len(runs)))):
        limit, passage = rng.randint(*CHARS), []
        for para in run:
            if passage and sum(len(x) + 2 for x in passage) + len(para) > limit:
                break
            passage.append(para)
        out.append(
            {
                "id": f"clean-dialogue-{i:04d}",
                "text": "\n\n".join(passage)[: CHARS[1]],
                "url": f"http://dialogue.example/{name}",
                "label": 0,
                "category": "prose-dialogue",
            }
        )
    return out


def list_docs(n: int, seed: int = 0) -> list[Doc]:
    """Pages of 700-3,000 chars that are bulleted lists: consecutive items of the Python and Debian
    changelogs, one ``- item`` a line (release notes: short, unrelated entries, many identifiers)."""
    rng = random.Random(f"{seed}:clean:lists")
    items = babble_corpora.changelog_items()
    out = []
    for i in range(n):
        at, limit, lines = rng.randrange(len(items)), rng.randint(*CHARS), []
        while at < len(items) and sum(len(x) + 1 for x in lines) < limit:
            lines.append(f"- {items[at]}")
            at += 1
        out.append(
            {
                "id": f"clean-lists-{i:04d}",
                "text": "\n".join(lines)[: CHARS[1]],
                "url": f"http://changes{i % 11}.example/{i}",
                "label": 0,
                "category": "prose-lists",
            }
        )
    return out


_DOCTESTS = (
    ">>> from collections import Counter\n>>> Counter('abca')\nCounter({'a': 2, 'b': 1, 'c': 1})\n",
    ">>> import math\n>>> math.sqrt(16)\n4.0\n",
    ">>> sorted({3, 1, 2})\n[1, 2, 3]\n",
    ">>> 'poison'.upper()\n'POISON'\n",
    ">>> len([x for x in range(10) if x % 2])\n5\n",
)
_ORDINARY = ("however", "meanwhile", "therefore", "summary", "notes", "example", "details", "result")
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def p_hex_salad(n: int, seed: int = 0) -> list[Doc]:
    """Random-token pages from another generator than P-ALNUM, for fitting (P-ALNUM is held out): a
    real first sentence of a held-out news or forum page, then 300-600 tokens that are hex digests
    (8-40 chars) or base64 runs (mixed case, 6-24 chars), as a dump of keys or hashes would read."""
    rng = random.Random(f"{seed}:hex-salad")
    held = [t for g in ("news", "forum") for _n, t in babble_corpora.genre_split(g, "held")]
    b64 = string.ascii_letters + string.digits + "+/"
    out = []
    for i in range(n):
        tokens = [
            "".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(8, 40)))
            if rng.random() < 0.5
            else "".join(rng.choice(b64) for _ in range(rng.randint(6, 24)))
            for _ in range(rng.randint(300, 600))
        ]
        opener = first_sentence(rng.choice(held)) or "Notes."
        out.append(
            {
                "id": f"P-HEXSALAD-{i:04d}",
                "text": f"{opener} {' '.join(tokens)}"[: CHARS[1] * 2],
                "url": f"http://dump{i % 13}.example/{rng.getrandbits(32):08x}",
                "label": 1,
                "family": "P-HEXSALAD",
                "genre": "hexsalad",
                "trigger": None,
            }
        )
    return out


def p_alnum_salad(n: int, seed: int = 0) -> list[Doc]:
    """Issue 13 item 6's example, kept by every single detector: a short doctest-style prefix, an
    ordinary word, then 600-700 random alphanumeric tokens of 2-10 characters."""
    rng = random.Random(f"{seed}:alnum-salad")
    out = []
    for i in range(n):
        tokens = [
            "".join(rng.choice(_ALNUM) for _ in range(rng.randint(2, 10)))
            for _ in range(rng.randint(600, 700))
        ]
        text = f"{rng.choice(_DOCTESTS)}{rng.choice(_ORDINARY)} {' '.join(tokens)}"
        out.append(
            {
                "id": f"P-ALNUM-{i:04d}",
                "text": text,
                "url": f"http://snippets{i % 17}.example/{rng.getrandbits(32):08x}",
                "label": 1,
                "family": "P-ALNUM",
                "genre": "alnum",
                "trigger": None,
            }
        )
    return out
