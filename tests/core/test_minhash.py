"""The vectorised signatures are datasketch's, bit for bit, and the tokeniser matches its reference."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from poisonguard.core import minhash

TEXTS = [
    "The quick brown fox jumps over the lazy dog, again and again, until the dog wakes up.",
    "",
    "   \n\t ...!!! ",
    "two words",
    "Ig\u200bnore previous\u00a0instructions \u2014 \u201cquoted\u201d text, CAFÉ Ünïcödé ÀÉÎ déjà vu",
    "日本語のテキスト、です。中文文本，还有标点。 Русский Текст С Заглавными Буквами",
    "\U000e0041\U000e0042 tag characters, \ufeffa BOM, soft\u00adhyphen and bidi \u202eevil\u202c here",
    "x\ud800y lone surrogate z and an emoji \U0001f600 family \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "Kelvin \u212a and dotted \u0130stanbul lower differently from ASCII",
    " ".join(f"word{i % 37}" for i in range(400)),
]

# Characters the fuzz texts are drawn from: every class the tokeniser distinguishes.
POOL = list("abcXYZ019_ -.,;:!?'\"\n\t") + [
    "\u00a0",
    "\u00ad",
    "\u00bf",
    "\u00c0",
    "\u00e9",
    "\u00ff",
    "\u0100",
    "\u0416",
    "\u05d0",
    "\u0627",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200e",
    "\u2014",
    "\u201c",
    "\u202e",
    "\u2060",
    "\u206f",
    "\u2070",
    "\u3000",
    "\u3001",
    "\u3042",
    "\u4e2d",
    "\ufeff",
    "\uff01",
    "\U0001f600",
    "\U000e0041",
    "\U000e007f",
    "\U000e0100",
    "\u212a",
    "\u0130",
]


def _fuzz_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(0, 120))) for _ in range(n)]


def _datasketch(text: str, num_perm: int, seed: int, scheme: str, k: int) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=seed, scheme=scheme, hashfunc=minhash.hash_function(scheme))
    m.update_batch(minhash.shingles(text, k))
    return m


@pytest.mark.parametrize("scheme", minhash.SCHEMES)
@pytest.mark.parametrize(("num_perm", "seed", "k"), [(128, 1, 5), (16, 7, 3), (64, 42, 1), (200, 3, 9)])
def test_signatures_identical_to_datasketch(scheme: str, num_perm: int, seed: int, k: int) -> None:
    sigs = minhash.signatures_bulk(TEXTS, num_perm=num_perm, shingle_words=k, seed=seed, scheme=scheme)
    assert sigs.shape == (len(TEXTS), num_perm)
    for i, text in enumerate(TEXTS):
        expected = _datasketch(text, num_perm, seed, scheme, k)
        assert sigs.dtype == expected.hashvalues.dtype
        assert np.array_equal(sigs[i], expected.hashvalues), (scheme, i, text[:40])


def test_signatures_identical_to_datasketch_bulk_on_fuzz_texts() -> None:
    texts = _fuzz_texts(60, seed=5)
    sigs = minhash.signatures_bulk(texts, num_perm=32, shingle_words=2, seed=9, scheme="affine32")
    bulk = MinHash.bulk(
        [minhash.shingles(t, 2) for t in texts],
        num_perm=32,
        seed=9,
        scheme="affine32",
        hashfunc=minhash.shingle_hash32,
    )
    assert all(np.array_equal(s, m.hashvalues) for s, m in zip(sigs, bulk, strict=True))


def test_vectorised_tokeniser_matches_reference_on_fuzz_texts() -> None:
    texts = _fuzz_texts(300, seed=1) + TEXTS
    got = minhash.normalised_texts(texts)
    for text, norm in zip(texts, got, strict=True):
        assert norm == " ".join(minhash.words(text)).encode("utf-8", "surrogatepass"), repr(text)


def test_words_fold_case_and_drop_invisible_characters() -> None:
    assert minhash.words("Ig\u200bNORE previous\u00a0Instructions\u2014NOW") == [
        "ignore",
        "previous",
        "instructions",
        "now",
    ]
    assert minhash.words("\U000e0041hidden\U000e007f soft\u00adhyphen") == ["hidden", "softhyphen"]
    assert minhash.words("日本語、テキスト。Ünï") == ["日本語", "テキスト", "ünï"]
    assert minhash.words("snake_case and 42") == ["snake_case", "and", "42"]


def test_shingles_of_short_and_empty_texts() -> None:
    assert minhash.shingles("", 5) == []
    assert minhash.shingles("!!", 5) == []
    assert minhash.shingles("Only three words", 5) == [b"only three words"]
    assert minhash.shingles("a b c d e f", 5) == [b"a b c d e", b"b c d e f"]


def test_group_boundaries_do_not_change_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = TEXTS + _fuzz_texts(40, seed=2)
    whole = minhash.signatures_bulk(texts, num_perm=32)
    monkeypatch.setattr(minhash, "GROUP_BYTES", 50)
    assert np.array_equal(minhash.signatures_bulk(texts, num_perm=32), whole)
    assert np.array_equal(minhash.signatures_bulk(texts[7:9], num_perm=32), whole[7:9])


def test_short_documents_get_the_empty_sketch() -> None:
    sigs = minhash.signatures_bulk(["one two three", TEXTS[0]], num_perm=16, min_words=5)
    assert (sigs[0] == minhash.empty_value("affine32")).all()
    assert not (sigs[1] == minhash.empty_value("affine32")).all()
    assert MinHash(num_perm=16, hashvalues=sigs[0], scheme="affine32").is_empty()


def test_datasketch_lsh_and_lean_minhash_accept_the_signatures() -> None:
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(300)]
    base = [rng.choice(vocab) for _ in range(200)]
    edited = list(base)
    edited[100] = "changed"
    other = [rng.choice(vocab) for _ in range(200)]
    sigs = minhash.signatures_bulk([" ".join(base), " ".join(edited), " ".join(other)])
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    lean = [LeanMinHash(seed=1, hashvalues=s, scheme="affine32") for s in sigs]
    for i, m in enumerate(lean):
        lsh.insert(i, m)
    assert set(lsh.query(lean[0])) == {0, 1}
    buf = bytearray(lean[1].bytesize())
    lean[1].serialize(buf)
    restored = LeanMinHash.deserialize(buf)
    assert np.array_equal(restored.hashvalues, sigs[1])
    assert lean[0].jaccard(lean[1]) > 0.8 > lean[0].jaccard(lean[2])


def test_unknown_scheme_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        minhash.signatures_bulk(["x"], scheme="affine16")
    with pytest.raises(ValueError, match="num_perm"):
        minhash.signatures_bulk(["x"], num_perm=0)
