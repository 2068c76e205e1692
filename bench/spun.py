"""Spun content-farm campaigns (docs/THREATS.md P-FARM-spun) and their benign look-alikes.

Two independent generators, each with its own carrier corpus, synonym source, spinning mechanism
and site chrome, so that a detector fitted on one can be tested on the other:

``A`` ("thesaurus spinner")
    Carriers: Wikipedia summaries (en), three consecutive summaries make one article.
    Synonyms: the OpenOffice/LibreOffice English thesaurus (Debian ``mythes-en-us``).
    Spinning: every copy swaps its own random 3-15% of the words for a random thesaurus synonym,
    and moves or drops 0-30% of its sentences. Chrome: a news site (masthead, section bar, byline,
    dateline, share bar, related stories, copyright line).
``B`` ("spintax spinner")
    Carriers: the Debian administrator's handbook (en), a window of paragraphs of one page.
    Synonyms: Princeton WordNet 3.0 (Debian ``wordnet-base``), lemmas of a word's most frequent
    sense. Spinning: one spintax template per campaign (``{word|syn1|syn2}`` slots on content
    words), resolved per copy so that 3-15% of the words change; 0-30% of the sentences dropped
    and paragraphs swapped. Chrome: a blog CMS (site name and tagline, breadcrumb, "Posted on",
    tags, share buttons, "You might also like", recent posts, "Powered by" footer).

Look-alikes (per source, same chrome families): a wire story syndicated on 2-9 domains, mirrors
of a page on 2-6 domains, sites on 20+ domains sharing one CMS theme (same navigation, cookie
banner and footer on every page, different articles; three pages per site, and one short page per
site on 40 more sites), forum quote chains on one domain, near-duplicate editions of one article on
one site, and (in bench/bench_spun.py only) legal notices shared by unrelated sites: a
privacy-policy template for A, a terms-of-use template for B, filled in per site on 30 domains, and
licence texts on 15 domains each (GPL-3 for A, Apache-2.0 and MPL-2.0 for B); for source B also
translations of one handbook page on 12-20 domains (one language each).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.corpus import _handbook_docs, _wiki, cache_dir, handbook_dir, html_to_text

Doc = dict[str, Any]

# docs/THREATS.md P-FARM-spun: 3-15% of the words swapped, 0-30% of the sentences moved or dropped, copies
# 0.35-0.75 apart in word 5-gram Jaccard. Each copy is spun from the original independently, so two
# copies differ by about twice one copy's edits: at the default intensity 0.5 a copy takes half of
# each rate and two copies differ by the published amounts (their measured Jaccard is in
# bench/RESULTS.md); intensity 1.0 spins every copy by the full rates (a harder variant).
SWAP_RATE = (0.03, 0.15)
SENTENCE_EDIT_RATE = (0.0, 0.30)
DEFAULT_INTENSITY = 0.5
CAMPAIGN_DOMAINS = (10, 50, 500)
SOURCES = ("A", "B")

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z]+")

_FIRST = ("Anna", "Mark", "Julia", "Peter", "Sofia", "Daniel", "Laura", "Victor", "Elena", "Tom", "Nina",
          "Paul", "Irina", "Oscar", "Maria", "Leo", "Clara", "Ivan", "Sara", "Felix")  # fmt: skip
_LAST = ("Novak", "Berg", "Costa", "Meyer", "Ivanova", "Laurent", "Rossi", "Kowalski", "Silva", "Lindqvist",
         "Horvat", "Petrov", "Dubois", "Weber", "Moreau", "Fischer", "Santos", "Keller")  # fmt: skip
_WORDS = ("daily", "news", "truth", "world", "report", "info", "today", "free", "voice", "press", "post",
          "herald", "wire", "pulse", "digest", "times", "insight", "media", "now", "hub", "central", "global",
          "patriot", "tribune", "observer", "ledger", "signal", "beacon", "courier", "gazette")  # fmt: skip
_TLDS = ("com", "net", "org", "info", "news", "ru", "fr", "de", "co.uk", "com.au", "xyz", "online", "site")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Synonym sources


def _data(*parts: str) -> Path:
    path = cache_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run `make bench-data` (python -m bench.data)")
    return path


@functools.lru_cache(maxsize=1)
def mythes_synonyms() -> dict[str, tuple[str, ...]]:
    """Single-word synonyms per lower-case word from the OpenOffice English thesaurus."""
    path = _data("mythes-en-us", "usr", "share", "mythes", "th_en_US_v2.dat")
    lines = path.read_text("utf-8", errors="replace").splitlines()[1:]
    out: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(lines):
        head, _, count = lines[i].partition("|")
        n = int(count) if count.isdigit() else 0
        syns: list[str] = []
        for line in lines[i + 1 : i + 1 + n]:
            for s in line.split("|")[1:]:
                if "(" not in s and s.isalpha() and s.islower() and s != head:
                    syns.append(s)
        if head.isalpha() and head.islower() and syns:
            out[head] = tuple(dict.fromkeys(syns))
        i += 1 + n
    return out


@functools.lru_cache(maxsize=1)
def wordnet_synonyms() -> dict[str, tuple[str, ...]]:
    """Lemmas of each word's most frequent WordNet 3.0 sense (single words), per lower-case word."""
    root = _data("wordnet-base", "usr", "share", "wordnet")
    out: dict[str, tuple[str, ...]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        synsets: dict[str, list[str]] = {}
        for line in (root / f"data.{pos}").read_text("utf-8", errors="replace").splitlines():
            if line.startswith("  "):
                continue
            f = line.split(" ")
            n_words = int(f[3], 16)
            synsets[f[0]] = [f[4 + 2 * k].split("(")[0] for k in range(n_words)]
        for line in (root / f"index.{pos}").read_text("utf-8", errors="replace").splitlines():
            if line.startswith("  "):
                continue
            f = line.split(" ")
            lemma, n_ptr = f[0], int(f[3])
            offsets = f[6 + n_ptr :]
            if not lemma.isalpha() or not offsets or lemma in out:
                continue
            syns = [w.lower() for w in synsets.get(offsets[0], []) if w.isalpha() and w.lower() != lemma]
            if syns:
                out[lemma] = tuple(dict.fromkeys(syns))
    return out


# ---------------------------------------------------------------------------------------------
# Carriers


@functools.lru_cache(maxsize=1)
def carriers_a() -> tuple[tuple[str, str], ...]:
    """(title, text) articles of source A: three consecutive Wikipedia summaries each."""
    wiki = _wiki("en")
    out = []
    for i in range(0, len(wiki) - 3, 3):
        title = wiki[i][0]
        text = "\n\n".join(t for _, t in wiki[i : i + 3])
        if 150 <= len(text.split()) <= 1200:
            out.append((title, text))
    return tuple(out)


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if len(p.split()) >= 12 and not p.strip()[:1].isdigit()]


@functools.lru_cache(maxsize=1)
def _carriers_b(part: int) -> tuple[tuple[str, str], ...]:
    out = []
    pages = _handbook_docs("en")
    # Handbook pages: even ones carry campaigns (part 0), pages 4k+3 the look-alikes (part 1);
    # pages 4k+1 are kept for the translations look-alike.
    for doc in pages[0::2] if part == 0 else pages[3::4]:
        paras = _paragraphs(doc["text"])
        title = doc["text"].split("\n", 1)[0].strip()
        cur: list[str] = []
        for p in paras:
            cur.append(p)
            if sum(len(x.split()) for x in cur) >= 150:
                out.append((f"{title} ({len(out) % 7 + 1})", "\n\n".join(cur)))
                cur = []
    return tuple(out)


def carriers_b() -> tuple[tuple[str, str], ...]:
    """(title, text) articles of source B: windows of 150+ words of handbook prose."""
    return _carriers_b(0) + _carriers_b(1)


# Shares of the benign carriers each look-alike family draws from (disjoint slices, so two
# families never publish the same article and add up to a campaign by accident).
_BENIGN_SLICES = {"wire": 0.12, "mirror": 0.08, "cms": 0.25, "forum": 0.1, "edition": 0.1, "background": 0.35}


_reserved: frozenset[str] = frozenset()


def reserve(texts: Sequence[str]) -> None:
    """Texts another part of a benchmark uses as clean documents (poisonbench's clean base): no
    carrier that contains one of their paragraphs is used, so that no clean document is the
    original of a campaign or of a look-alike."""
    global _reserved
    _reserved = frozenset(p.strip() for t in texts for p in t.split("\n\n") if len(p.split()) >= 12)


def carriers(source: str, role: str = "any") -> tuple[tuple[str, str], ...]:
    """Articles of ``source``. Campaigns draw from the "poison" half, look-alike family F from its
    own slice "benign:F" of the other half, so a benign page is never the original of a campaign
    (for source B the halves are whole handbook pages: even pages poison, pages 4k+3 benign)."""
    return _carriers(source, role, _reserved)


@functools.lru_cache(maxsize=64)
def _carriers(source: str, role: str, reserved: frozenset[str]) -> tuple[tuple[str, str], ...]:
    if source == "A":
        every = carriers_a()
        poison, benign = every[0::2], every[1::2]
    else:
        poison, benign = _carriers_b(0), _carriers_b(1)
    if reserved:
        poison, benign = (
            tuple(c for c in pool if not any(p.strip() in reserved for p in c[1].split("\n\n")))
            for pool in (poison, benign)
        )
    if role == "poison":
        return poison
    if role.startswith("benign:"):
        shuffled = list(benign)
        random.Random(f"benign-{source}").shuffle(shuffled)
        names = list(_BENIGN_SLICES)
        k = names.index(role.split(":", 1)[1])
        lo = round(sum(_BENIGN_SLICES[n] for n in names[:k]) * len(shuffled))
        hi = round(sum(_BENIGN_SLICES[n] for n in names[: k + 1]) * len(shuffled))
        return tuple(shuffled[lo:hi])
    return poison + benign


# ---------------------------------------------------------------------------------------------
# Spinning


def _sentences(paragraph: str) -> list[str]:
    return [s for s in _SENT.split(paragraph) if s.strip()]


def _swap_words(
    text: str, rate: float, pick: Callable[[str, random.Random], str | None], rng: random.Random
) -> str:
    """Replace about ``rate`` of the words of ``text`` with what ``pick`` offers (lower-case words
    only, so names stay)."""
    tokens = _TOKEN.findall(text)
    words = [i for i, t in enumerate(tokens) if t[:1].isalpha()]
    target = round(rate * len(words))
    order = rng.sample(words, len(words))
    done = 0
    for i in order:
        if done >= target:
            break
        t = tokens[i]
        if not t.islower() or len(t) < 3:
            continue
        new = pick(t, rng)
        if new:
            tokens[i] = new
            done += 1
    return "".join(tokens)


def _edit_sentences(
    paragraphs: list[list[str]], rate: float, rng: random.Random, move: bool
) -> list[list[str]]:
    """Drop (or, when ``move``, move half of them within their paragraph) ``rate`` of the sentences."""
    flat = [(p, s) for p, sents in enumerate(paragraphs) for s in range(len(sents))]
    chosen = set(rng.sample(flat, round(rate * len(flat))))
    out: list[list[str]] = []
    for p, sents in enumerate(paragraphs):
        keep = [s for k, s in enumerate(sents) if (p, k) not in chosen]
        moved = [s for k, s in enumerate(sents) if (p, k) in chosen and move and rng.random() < 0.5]
        for s in moved:
            keep.insert(rng.randint(0, len(keep)), s)
        if keep:
            out.append(keep)
    return out


def _rate(bounds: tuple[float, float], intensity: float, rng: random.Random) -> float:
    return rng.uniform(*bounds) * intensity


def spin_a(text: str, rng: random.Random, intensity: float = DEFAULT_INTENSITY) -> str:
    """Thesaurus spinner: independent synonym swaps and sentence moves/drops per copy."""
    syn = mythes_synonyms()

    def pick(word: str, r: random.Random) -> str | None:
        options = syn.get(word)
        return r.choice(options) if options else None

    paras = [_sentences(p) for p in text.split("\n\n") if p.strip()]
    paras = _edit_sentences(paras, _rate(SENTENCE_EDIT_RATE, intensity, rng), rng, move=True)
    body = "\n\n".join(" ".join(p) for p in paras)
    return _swap_words(body, _rate(SWAP_RATE, intensity, rng), pick, rng)


class Spintax:
    """Spinner B: one template per campaign; each slot offers the word and its WordNet synonyms."""

    def __init__(self, text: str, rng: random.Random) -> None:
        syn = wordnet_synonyms()
        self.paragraphs = [_sentences(p) for p in text.split("\n\n") if p.strip()]
        self.slots: dict[tuple[int, int, int], tuple[str, ...]] = {}
        for p, sents in enumerate(self.paragraphs):
            for s, sent in enumerate(sents):
                for t, tok in enumerate(_TOKEN.findall(sent)):
                    options = syn.get(tok) if tok.islower() and len(tok) >= 3 else None
                    if options and rng.random() < 0.5:
                        self.slots[(p, s, t)] = options[:3]

    def resolve(self, rng: random.Random, intensity: float = DEFAULT_INTENSITY) -> str:
        words = sum(len(s.split()) for sents in self.paragraphs for s in sents)
        rate = _rate(SWAP_RATE, intensity, rng)
        use = set(rng.sample(sorted(self.slots), min(len(self.slots), round(rate * words))))
        paras: list[list[str]] = []
        for p, sents in enumerate(self.paragraphs):
            out = []
            for s, sent in enumerate(sents):
                toks = _TOKEN.findall(sent)
                for t in range(len(toks)):
                    if (p, s, t) in use:
                        toks[t] = rng.choice(self.slots[(p, s, t)])
                out.append("".join(toks))
            paras.append(out)
        paras = _edit_sentences(paras, _rate(SENTENCE_EDIT_RATE, intensity, rng), rng, move=False)
        if len(paras) > 2 and rng.random() < 0.5:  # swap two neighbouring paragraphs
            k = rng.randrange(len(paras) - 1)
            paras[k], paras[k + 1] = paras[k + 1], paras[k]
        return "\n\n".join(" ".join(p) for p in paras)


# ---------------------------------------------------------------------------------------------
# Chrome


def fake_domain(rng: random.Random) -> str:
    a, b = rng.sample(_WORDS, 2)
    return f"{a}{rng.choice(('', '-'))}{b}{rng.randint(1, 9999)}.{rng.choice(_TLDS)}"


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _date(rng: random.Random) -> str:
    return f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.randint(2019, 2025)}"


def _site_name(domain: str) -> str:
    stem = re.sub(r"\d+", "", domain.split(".")[0]).replace("-", " ").strip()
    return stem.title() or "News"


def chrome_a(domain: str, headline: str, body: str, related: Sequence[str], rng: random.Random) -> str:
    """News-site chrome around ``body``."""
    name = _site_name(domain)
    sections = rng.sample(
        ("World", "Politics", "Business", "Tech", "Health", "Sports", "Culture", "Opinion"), 5
    )
    share = rng.sample(("Facebook", "X", "WhatsApp", "Telegram", "Email", "Print"), 4)
    lines = [
        f"THE {name.upper()} {rng.choice(('TIMES', 'POST', 'HERALD', 'TRIBUNE', 'DAILY'))}",
        " | ".join(["Home", *sections]),
        headline,
        f"By {_person(rng)}, {rng.choice(('Staff Writer', 'Correspondent', 'Editor', 'Contributor'))}",
        f"Published {_date(rng)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        "Share: " + " · ".join(share),
        body,
        "Related stories",
        *related,
        f"© {rng.randint(2019, 2025)} {name}. All rights reserved.",
    ]
    return "\n".join(lines)


def chrome_b(domain: str, headline: str, body: str, related: Sequence[str], rng: random.Random) -> str:
    """Blog-CMS chrome around ``body``."""
    name = _site_name(domain)
    cat = rng.choice(("Linux", "Guides", "Sysadmin", "Open Source", "Servers", "Tips"))
    tags = rng.sample(("debian", "linux", "apt", "server", "howto", "admin", "network", "security"), 3)
    lines = [
        f"{name} — " + rng.choice(("tips for admins", "daily tech", "open source notes", "tech and more")),
        f"Home » {cat} » {headline}",
        headline,
        f"Posted on {_date(rng)} by {_person(rng).split()[0].lower()} — {rng.randint(0, 40)} comments",
        body,
        "Tags: " + ", ".join(tags),
        "Share this: Twitter Facebook LinkedIn Reddit",
        "You might also like:",
        *related[:2],
        "Recent Posts",
        *related[2:],
        f"Copyright © {rng.randint(2019, 2025)} {name} | Powered by "
        + rng.choice(("WordPress", "Ghost", "Joomla", "Drupal"))
        + " | Theme: "
        + rng.choice(("Astra", "Neve", "Casper")),
    ]
    return "\n".join(lines)


def _headline(title: str, source: str, rng: random.Random) -> str:
    if source == "A":
        form = rng.choice(("{t}: what you need to know", "Inside {t}", "The truth about {t}", "{t} explained",
                           "Why {t} matters now", "{t} — the full story"))  # fmt: skip
    else:
        form = rng.choice(("{t}: a complete guide", "How to master {t}", "{t} in practice",
                           "Understanding {t}", "{t}: tips and tricks", "A first look at {t}"))  # fmt: skip
    return form.format(t=title)


def _doc(family: str, label: int, i: int, text: str, url: str, **extra: Any) -> Doc:
    return {"id": f"{family}-{i:05d}", "text": text, "url": url, "family": family, "label": label, **extra}


def _some(rng: random.Random, pool: Sequence[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """``n`` distinct articles of ``pool`` (all of them when it is smaller)."""
    return rng.sample(list(pool), min(n, len(pool)))


def _related(source: str, rng: random.Random, k: int = 4) -> list[str]:
    return [t for t, _ in rng.sample(carriers(source), k)]


# ---------------------------------------------------------------------------------------------
# Generators


def campaign(
    source: str, n_domains: int, seed: int = 0, index: int = 0, intensity: float = DEFAULT_INTENSITY
) -> list[Doc]:
    """One spun campaign of generator ``source`` ("A" or "B") on ``n_domains`` registrable domains."""
    rng = random.Random(f"{seed}:spun-{source}:{index}")
    title, text = rng.choice(carriers(source, "poison"))
    chrome = chrome_a if source == "A" else chrome_b
    spintax = Spintax(text, rng) if source == "B" else None
    domains: set[str] = set()
    while len(domains) < n_domains:
        domains.add(fake_domain(rng))
    out = []
    for k, domain in enumerate(sorted(domains)):
        body = spin_a(text, rng, intensity) if spintax is None else spintax.resolve(rng, intensity)
        page = chrome(domain, _headline(title, source, rng), body, _related(source, rng), rng)
        sub = rng.choice(("", "www.", "news.", "m.", "blog."))
        url = f"https://{sub}{domain}/{rng.randint(2019, 2025)}/{rng.randint(1000, 999999)}.html"
        out.append(_doc(f"P-FARM-spun-{source}", 1, index * 1000 + k, page, url, cluster=f"{source}{index}",
                        domains=n_domains))  # fmt: skip
    return out


def campaigns(
    source: str,
    seed: int = 0,
    sizes: Sequence[int] = (10, 10, 10, 50, 50, 500),
    intensity: float = DEFAULT_INTENSITY,
) -> list[Doc]:
    """The campaigns of one generator: by default three of 10 domains, two of 50, one of 500."""
    return [d for i, n in enumerate(sizes) for d in campaign(source, n, seed, i, intensity)]


def _light_edit(text: str, rng: random.Random) -> str:
    paras = text.split("\n\n")
    if len(paras) > 2 and rng.random() < 0.5:
        paras = paras[: rng.randint(2, len(paras))]  # trimmed for length
    return "\n\n".join(paras)


def wire_stories(source: str, n: int, seed: int = 0) -> list[Doc]:
    """A wire story syndicated on 2-9 domains, each with its own chrome, headline and trimming."""
    rng = random.Random(f"{seed}:wire-{source}")
    chrome = chrome_a if source == "A" else chrome_b
    pool = _some(rng, carriers(source, "benign:wire"), n)
    out: list[Doc] = []
    for s, (title, text) in enumerate(pool):
        for _ in range(rng.randint(2, 9)):
            domain = fake_domain(rng)
            page = chrome(
                domain, _headline(title, source, rng), _light_edit(text, rng), _related(source, rng), rng
            )
            out.append(
                _doc(f"wire-{source}", 0, len(out), page, f"https://www.{domain}/wire/{s}.html", story=s)
            )
    return out


def mirrors(source: str, n: int, seed: int = 0) -> list[Doc]:
    """One page copied verbatim on 2-6 mirror domains (plus the original)."""
    rng = random.Random(f"{seed}:mirror-{source}")
    out: list[Doc] = []
    for s, (title, text) in enumerate(_some(rng, carriers(source, "benign:mirror"), n)):
        page = f"{title}\n\n{text}"
        out.append(_doc(f"mirror-{source}", 0, len(out), page, f"https://origin{s}.example.org/{s}.html"))
        for m in range(rng.randint(2, 6)):
            out.append(
                _doc(f"mirror-{source}", 0, len(out), page, f"https://mirror{m}.{fake_domain(rng)}/{s}.html")
            )
    return out


_CMS_FOOTER = (
    "We use cookies to ensure that we give you the best experience on our website. If you continue to use "
    "this site we will assume that you are happy with it. Read our privacy policy to learn more about how "
    "we handle your personal data and how you can manage your preferences at any time.\n"
    "Subscribe to our newsletter and get the latest stories delivered straight to your inbox every single "
    "morning, with no spam and an easy way to unsubscribe whenever you want.\n"
    "About us | Contact | Advertise | Privacy policy | Terms of use | Sitemap\n"
    "This website is built with a theme that is free to use for personal and commercial projects, and "
    "all trademarks mentioned on this site belong to their respective owners."
)


def cms_sites(source: str, n_domains: int = 20, pages: int = 3, seed: int = 0) -> list[Doc]:
    """``n_domains`` sites on one CMS theme: the same navigation, cookie banner, newsletter box and
    footer on every page, a different article on each page."""
    rng = random.Random(f"{seed}:cms-{source}")
    arts = _some(rng, carriers(source, "benign:cms"), n_domains * pages)
    n_domains = len(arts) // pages
    out: list[Doc] = []
    for d in range(n_domains):
        domain = fake_domain(rng)
        for p in range(pages):
            title, text = arts[d * pages + p]
            page = "\n".join(["Home | News | About | Contact", title, text, _CMS_FOOTER])
            out.append(_doc(f"cms-{source}", 0, len(out), page, f"https://{domain}/post/{p}.html"))
    return out


def cms_single_pages(source: str, n_domains: int = 40, seed: int = 0) -> list[Doc]:
    """One short page on each of ``n_domains`` sites of one CMS theme: there is no second page of
    the host to tell its boilerplate from its content, and the shared banner and footer are a large
    part of every page."""
    rng = random.Random(f"{seed}:cms1-{source}")
    pool = sorted(carriers(source, "benign:cms"), key=lambda c: len(c[1]))
    out: list[Doc] = []
    for title, text in pool[:n_domains]:
        first = text.split("\n\n")[0]
        page = "\n".join(["Home | News | About | Contact", title, first, _CMS_FOOTER])
        out.append(_doc(f"cms1-{source}", 0, len(out), page, f"https://{fake_domain(rng)}/post.html"))
    return out


def forum_threads(source: str, n: int, seed: int = 0) -> list[Doc]:
    """Forum threads on one domain each; every reply page quotes the posts before it."""
    rng = random.Random(f"{seed}:forum-{source}")
    out: list[Doc] = []
    for t, (_, text) in enumerate(_some(rng, carriers(source, "benign:forum"), n)):
        domain = f"forum{t}.{fake_domain(rng)}"
        posts = [p for p in text.split("\n\n") if p.strip()]
        quoted = ""
        for k, post in enumerate(posts[: rng.randint(3, 8)]):
            user = _person(rng).split()[0].lower() + str(rng.randint(1, 99))
            page = (f"Re: thread {t}\n" if k else f"Thread {t}\n") + quoted + f"{user} wrote:\n{post}"
            out.append(_doc(f"forum-{source}", 0, len(out), page, f"https://{domain}/t/{t}?page={k}"))
            quoted += f"> {user} wrote:\n> " + post.replace("\n", "\n> ") + "\n"
    return out


def editions(source: str, n: int, seed: int = 0) -> list[Doc]:
    """Near-duplicate editions of one article on one site (updates, print and AMP versions)."""
    rng = random.Random(f"{seed}:edition-{source}")
    out: list[Doc] = []
    for s, (title, text) in enumerate(_some(rng, carriers(source, "benign:edition"), n)):
        domain = fake_domain(rng)
        for k in range(rng.randint(3, 10)):
            body = spin_a(text, rng) if rng.random() < 0.3 else _light_edit(text, rng)
            page = f"{title}\nUpdated {_date(rng)}\n{body}"
            kind = rng.choice(("", "print/", "amp/", f"v{k}/"))
            out.append(_doc(f"edition-{source}", 0, len(out), page, f"https://{domain}/{kind}{s}.html"))
    return out


def translations(n: int, seed: int = 0) -> list[Doc]:
    """Handbook pages in every language that translated them (up to 26; three pages of the pool
    have 11-13), each language on its own domain (source B only)."""
    rng = random.Random(f"{seed}:translations")
    base = Path(handbook_dir("en")).parent
    langs = sorted(p.name for p in base.iterdir() if p.is_dir() and "-" in p.name)
    # Handbook pages 4k+1: neither a campaign's nor another look-alike's carrier (see _carriers_b).
    names = [d["url"].rsplit("/", 1)[1] for d in _handbook_docs("en")[1::4]]
    out: list[Doc] = []
    for s, name in enumerate(rng.sample(names, min(n, len(names)))):
        english = set(html_to_text((base / "en-US" / name).read_text("utf-8", errors="replace")).split())
        for lang in langs:
            path = base / lang / name
            if not path.exists():
                continue
            text = html_to_text(path.read_text("utf-8", errors="replace"))
            words = set(text.split())
            # Pages left (partly) untranslated are copies of the English one, not translations.
            if lang != "en-US" and len(words & english) > 0.3 * max(1, len(words)):
                continue
            url = f"https://{lang.lower()}-{s}.{fake_domain(rng)}/{name}"
            out.append(_doc("translation-B", 0, len(out), text[:6000], url))
    return out


# Legal notices written for this bench (not any real service's text): the privacy policy is source A's,
# the terms of use source B's. Every site fills in its own name, e-mail address and date.
_PRIVACY_TEMPLATE_A = "\n".join(
    (
        "Privacy Policy",
        "Last updated: {date}",
        (
            "This Privacy Policy describes how {site} collects, uses and shares your personal information "
            "when you visit our website."
        ),
        (
            "By using the website you consent to the collection and use of your personal data in accordance "
            "with this policy."
        ),
        (
            "We collect the information you provide directly to us, such as your name and email address when "
            "you subscribe to our newsletter or contact us."
        ),
        (
            "We also collect certain information automatically, including your IP address, browser type, "
            "referring pages and the dates and times of your visits."
        ),
        (
            "We use cookies and similar tracking technologies to remember your preferences and to measure how"
            " visitors use the website."
        ),
        (
            "You can instruct your browser to refuse all cookies, but some parts of the website may not "
            "function properly without them."
        ),
        (
            "We use the personal data we collect to operate and improve the website, to respond to your "
            "requests and to send you updates you asked for."
        ),
        "We do not sell your personal information to third parties.",
        (
            "We may share your information with trusted service providers who process personal data on our "
            "behalf and under our instructions."
        ),
        (
            "We may disclose your personal data where required by law or in response to valid requests by "
            "public authorities."
        ),
        (
            "We retain personal data only for as long as is necessary for the purposes set out in this "
            "Privacy Policy."
        ),
        (
            "Under the General Data Protection Regulation you have the right to access, correct or erase the "
            "personal data we hold about you."
        ),
        (
            "You also have the right to object to processing, to request restriction of processing and to "
            "data portability."
        ),
        (
            "Where processing is based on your consent, you may withdraw that consent at any time without "
            "affecting the lawfulness of earlier processing."
        ),
        (
            "We take reasonable technical and organisational measures to protect your personal data against "
            "loss, misuse and unauthorised access."
        ),
        (
            "No method of transmission over the internet or method of electronic storage is completely "
            "secure, and we cannot guarantee absolute security."
        ),
        (
            "Our website may contain links to third-party websites whose privacy practices we do not control "
            "and for which we accept no liability."
        ),
        (
            "Our services are not directed to children under the age of 16, and we do not knowingly collect "
            "personal data from children."
        ),
        (
            "We may update this Privacy Policy from time to time, and the updated version will be indicated "
            "by the revised date above."
        ),
        "If you have any questions about this Privacy Policy, please contact us at {email}.",
    )
)

_TERMS_TEMPLATE_B = "\n".join(
    (
        "Terms of Use",
        "Effective date: {date}",
        "Welcome to {site}. Please read these Terms of Use carefully before using this site.",
        "By accessing or using the site you agree to be bound by these Terms and by our Privacy Notice.",
        "If you do not agree with any part of these Terms, you must not access or use the site.",
        (
            "All content on the site, including text, graphics, logos and software, is the property of {site}"
            " or its licensors and is protected by copyright and trademark laws."
        ),
        (
            "You are granted a limited, non-exclusive and revocable licence to access the site for your "
            "personal, non-commercial use."
        ),
        (
            "You may not copy, reproduce, republish, upload, transmit or distribute any content without our "
            "prior written permission."
        ),
        (
            "You agree not to use the site in any way that breaches any applicable local, national or "
            "international law or regulation."
        ),
        (
            "You are responsible for keeping the credentials of your account confidential and for all "
            "activity that occurs under your account."
        ),
        (
            "Any comments or materials you submit grant us a worldwide, royalty-free licence to use, "
            "reproduce and display them in connection with the site."
        ),
        (
            'The site and its content are provided on an "as is" and "as available" basis without warranties '
            "of any kind, either express or implied."
        ),
        (
            "To the fullest extent permitted by law, we disclaim all warranties, including implied warranties"
            " of merchantability and fitness for a particular purpose."
        ),
        (
            "In no event shall {site} be liable for any indirect, incidental, special or consequential "
            "damages arising out of your use of the site."
        ),
        (
            "You agree to indemnify and hold us harmless from any claims, losses and expenses arising from "
            "your breach of these Terms."
        ),
        (
            "We may suspend or terminate your access to the site at any time and without notice if you "
            "violate these Terms."
        ),
        (
            "These Terms are governed by the laws of the jurisdiction in which {site} is established, and the"
            " courts of that jurisdiction have exclusive jurisdiction."
        ),
        (
            "If any provision of these Terms is held to be invalid or unenforceable, the remaining provisions"
            " shall remain in full force and effect."
        ),
        (
            "We reserve the right to amend these Terms at any time, and your continued use of the site after "
            "a change constitutes acceptance of the new Terms."
        ),
        "Questions about these Terms may be sent to {email}.",
    )
)

# Licence texts shared verbatim by unrelated sites (a project's "License" page): Debian's copies.
_LICENCES = {"A": ("GPL-3",), "B": ("Apache-2.0", "MPL-2.0")}
_LICENCE_DIR = Path("/usr/share/common-licenses")


def legal_notices(
    source: str, template_domains: int = 30, licence_domains: int = 15, seed: int = 0
) -> list[Doc]:
    """Legal notices that unrelated sites share: one notice template (source A: a privacy policy,
    B: terms of use) filled in with each site's name, e-mail and date on ``template_domains``
    domains, and each licence text of the source (A: GPL-3, B: Apache-2.0 and MPL-2.0, read from
    /usr/share/common-licenses; skipped where that is missing) on ``licence_domains`` domains; each
    page in the source's site chrome. Many long sentences verbatim on many domains: what a copied
    article looks like to a rule that counts them."""
    rng = random.Random(f"{seed}:legal-{source}")
    chrome = chrome_a if source == "A" else chrome_b
    template = _PRIVACY_TEMPLATE_A if source == "A" else _TERMS_TEMPLATE_B
    out: list[Doc] = []
    for _ in range(template_domains):
        domain = fake_domain(rng)
        site = _site_name(domain)
        text = template.format(site=site, email=f"privacy@{domain}", date=_date(rng))
        headline, body = text.split("\n", 1)
        page = chrome(domain, headline, body, _related(source, rng), rng)
        out.append(
            _doc(
                f"legal-{source}", 0, len(out), page, f"https://{domain}/{headline.lower().replace(' ', '-')}"
            )
        )
    for name in _LICENCES[source]:
        path = _LICENCE_DIR / name
        if not path.exists():
            continue
        licence = path.read_text("utf-8", errors="replace")
        # Hard-wrapped plain text: one paragraph per blank-line block, each on one line.
        body = "\n\n".join(" ".join(block.split()) for block in licence.split("\n\n") if block.strip())
        for _ in range(licence_domains):
            domain = fake_domain(rng)
            page = chrome(domain, f"License ({name})", body, _related(source, rng), rng)
            out.append(_doc(f"legal-{source}", 0, len(out), page, f"https://{domain}/license.html"))
    return out


def background(source: str, n: int, seed: int = 0) -> list[Doc]:
    """Unrelated articles of the source, one site each: the clean background."""
    rng = random.Random(f"{seed}:background-{source}")
    chrome = chrome_a if source == "A" else chrome_b
    out = []
    pool = carriers(source, "benign:background")
    for title, text in rng.sample(pool, min(n, len(pool))):
        domain = fake_domain(rng)
        page = chrome(domain, title, text, _related(source, rng), rng)
        out.append(_doc(f"background-{source}", 0, len(out), page, f"https://{domain}/a/{len(out)}.html"))
    return out


def lookalikes(source: str, seed: int = 0, legal: bool = False) -> list[Doc]:
    """Every benign look-alike family of ``source`` (labels 0); the legal notices only with
    ``legal`` (bench/bench_spun.py, bench/bench_farm.py; both campaign rules exempt them,
    core/legal.py)."""
    docs = [
        *wire_stories(source, 30, seed),
        *mirrors(source, 20, seed),
        *cms_sites(source, 20, 3, seed),
        *cms_single_pages(source, 40, seed),
        *forum_threads(source, 15, seed),
        *editions(source, 15, seed),
        *background(source, 400, seed),
        *(legal_notices(source, seed=seed) if legal else []),
    ]
    if source == "B":
        docs += translations(40, seed)
    return docs
