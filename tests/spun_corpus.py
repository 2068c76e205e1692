"""A small spun-campaign corpus written by the tests themselves (no benchmark data needed).

Articles are random sentences over a fixed vocabulary, so unrelated articles share few word
3-grams; a campaign is one article spun (sentences dropped or moved, words swapped for synonyms)
and wrapped in per-site chrome on many registrable domains.
"""

from __future__ import annotations

import random

VOCAB = (
    "river city council budget school water energy market farmer bridge station museum garden "
    "harbour railway forest village teacher doctor nurse engineer festival library election "
    "minister report study survey winter summer storm flood drought harvest price wage tax "
    "company factory worker union contract road hospital clinic patient student exam grade "
    "season league match coach player stadium ticket crowd visitor tourist hotel museum painting"
).split()
SYNONYMS = {
    "city": "town", "council": "board", "budget": "funds", "school": "academy", "water": "supply",
    "market": "bazaar", "farmer": "grower", "station": "depot", "report": "account", "study": "analysis",
    "storm": "tempest", "price": "cost", "wage": "salary", "company": "firm", "worker": "employee",
    "road": "street", "patient": "case", "student": "pupil", "coach": "trainer", "crowd": "audience",
    "visitor": "guest", "hotel": "inn", "said": "stated", "new": "fresh", "large": "big",
}  # fmt: skip


def article(rng: random.Random, sentences: int = 14) -> list[str]:
    """Sentences of 9-16 words drawn from VOCAB (unrelated articles share few word 3-grams)."""
    out = []
    for _ in range(sentences):
        words = [rng.choice(VOCAB) for _ in range(rng.randint(9, 16))]
        out.append(" ".join(words).capitalize() + ".")
    return out


def spin(sentences: list[str], rng: random.Random, swap: float = 0.1, edit: float = 0.15) -> str:
    """A spun copy: sentences dropped or moved, about ``swap`` of the words swapped."""
    sents = [s for s in sentences if rng.random() > edit / 2]
    for _ in range(round(edit / 2 * len(sents))):
        sents.insert(rng.randrange(len(sents)), sents.pop(rng.randrange(len(sents))))
    out = []
    for s in sents:
        words = s.split()
        for i, w in enumerate(words):
            if w in SYNONYMS and rng.random() < swap * 4:
                words[i] = SYNONYMS[w]
        out.append(" ".join(words))
    return " ".join(out)


def chrome(domain: str, body: str, rng: random.Random) -> str:
    """Per-site chrome: masthead, byline, date, share links, related links, copyright."""
    return "\n".join(
        [
            f"The {domain.split('.')[0].title()} Post",
            f"Home | News | Sport | {rng.choice(['World', 'Local', 'Business'])}",
            f"Breaking story number {rng.randint(1, 999)}",
            f"By {rng.choice(['Ann', 'Bob', 'Eve'])} {rng.choice(['Lee', 'Ray', 'Kim'])}",
            f"March {rng.randint(1, 28)}, 2025",
            "Share: Facebook X Email",
            body,
            "Related: weather today",
            f"Copyright 2025 {domain}. All rights reserved.",
        ]
    )


def campaign_docs(n_domains: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    base = article(rng)
    docs = []
    for k in range(n_domains):
        domain = f"site{seed}x{k}.{('com', 'net', 'co.uk')[k % 3]}"
        docs.append(
            {
                "id": f"c{seed}-{k}",
                "url": f"https://www.{domain}/a.html",
                "text": chrome(domain, spin(base, rng), rng),
            }
        )
    return docs


def background(n: int, seed: int = 99) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {
            "id": f"b{i}",
            "url": f"https://bg{i}.org/p",
            "text": chrome(f"bg{i}.org", " ".join(article(rng)), rng),
        }
        for i in range(n)
    ]


def copied_farm(n_domains: int, seed: int = 4) -> list[dict[str, str]]:
    """One article copied verbatim on ``n_domains`` sites, each page in its own chrome with its own
    related headlines: the copies sit near 0.55 in word 5-gram Jaccard, under dedup's 0.8."""
    rng = random.Random(seed)
    body = " ".join(article(rng, 16))
    docs = []
    for k in range(n_domains):
        related = [" ".join(article(rng, 1)[0].split()[:8]) for _ in range(5)]
        page = chrome(f"farm{k}.info", body, rng) + "\nRead next:\n" + "\n".join(related)
        docs.append({"id": f"copy-{k}", "url": f"https://www.farm{k}.info/news/{k}", "text": page})
    return docs
