"""The builtin Llama forward pass (core/llama.py) against transformers' own implementation.

Fast tests use a small random Llama made with transformers (attention and MLP switched on); the slow
test runs the real default model (SmolLM2-135M) on the shipped multilingual calibration text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poisonguard.core import llama
from poisonguard.core import lm as lm_loader
from poisonguard.filters import perplexity as ppl

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _random_llama(root: Path, **config: object) -> Path:
    """A 3-layer Llama with random weights (grouped-query attention: 4 query heads, 2 key/value heads)
    and the tokenizer of core/lm_calibration.txt's characters, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{ch: i + 1 for i, ch in enumerate(alphabet)}}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>")
    settings: dict[str, object] = dict(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=500.0,
    )  # fmt: skip
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**(settings | config)))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    out = root / "random-llama"
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def test_segments_start_where_positions_do_not_continue() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 6, 7]])
    assert llama.segment_ids(positions).tolist() == [[0, 0, 0, 1, 1, 2, 3, 3], [0] * 8]
    mask = llama.packed_causal_mask(positions)[0, 0]
    assert mask[4].tolist() == [False, False, False, True, True, False, False, False]
    assert mask[2].tolist() == [True, True, True, False, False, False, False, False]


def test_window_groups_gather_the_windows_of_each_length() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 0, 1, 2, 3, 0, 1]])
    groups = {length: index.tolist() for length, index in llama.window_groups(positions)}
    assert groups == {1: [[5]], 2: [[3, 4], [6, 7], [8, 9], [14, 15]], 3: [[0, 1, 2]], 4: [[10, 11, 12, 13]]}


def test_attention_window_by_window_equals_the_block_diagonal_mask(tmp_path: Path) -> None:
    """Packed rows (windows of several lengths, some alike across rows, a filler at a row's end): the
    windows' causal attention one length at a time gives the hidden states of the whole rows under
    the block-diagonal mask (float32; in bfloat16 the two differ by rounding only)."""
    model = llama.load(_random_llama(tmp_path), torch.float32)
    lengths = [[12, 7, 7, 4], [12, 9, 3, 6], [30]]
    positions = torch.stack([torch.cat([torch.arange(n) for n in row]) for row in lengths])
    ids = torch.randint(1, 200, positions.shape, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        by_window = model.model(ids, positions)
        masked = model.model(ids, positions, llama.packed_causal_mask(positions))
    assert torch.allclose(by_window, masked, atol=1e-5), float((by_window - masked).abs().max())


def test_tree_mask_lets_each_continuation_see_its_prefix_and_itself() -> None:
    # one row: segment 0 = prefix (3 tokens), continuation 1 (2), continuation 2 (2); segment 1 alone
    segments = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 1]])
    branches = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 0, 0]])
    mask = llama.tree_mask(segments, branches)[0, 0]
    assert mask[4].tolist() == [True, True, True, True, True, False, False, False, False]
    assert mask[6].tolist() == [True, True, True, False, False, True, True, False, False]
    assert mask[2].tolist() == [True, True, True, False, False, False, False, False, False]
    assert mask[8].tolist() == [False] * 7 + [True, True]


def test_continuations_in_one_tree_row_equal_each_sequence_alone(tmp_path: Path) -> None:
    """A prefix laid out once with two continuations (positions going on from the prefix, the tree
    mask) gives each continuation's hidden states of prefix + continuation scored as one sequence."""
    model = llama.load(_random_llama(tmp_path), torch.float32)
    gen = torch.Generator().manual_seed(3)
    prefix, first, second = (torch.randint(1, 200, (n,), generator=gen) for n in (11, 6, 4))
    ids = torch.cat((prefix, first, second))[None]
    positions = torch.cat((torch.arange(11), torch.arange(11, 17), torch.arange(11, 15)))[None]
    branches = torch.tensor([[0] * 11 + [1] * 6 + [2] * 4])
    with torch.inference_mode():
        tree = model.model(ids, positions, llama.tree_mask(torch.zeros_like(ids), branches))[0]
        alone_first = model.model(torch.cat((prefix, first))[None])[0]
        alone_second = model.model(torch.cat((prefix, second))[None])[0]
    assert torch.allclose(tree[:17], alone_first, atol=1e-5)
    assert torch.allclose(tree[17:], alone_second[11:], atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_builtin_logits_equal_transformers_on_packed_and_plain_rows(tmp_path: Path, dtype: str) -> None:
    folder = _random_llama(tmp_path)
    torch_dtype = getattr(torch, dtype)
    ours = llama.load(folder, torch_dtype)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype).eval()
    ids = torch.randint(1, 200, (3, 40), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([list(range(15)) + list(range(25))] * 2 + [list(range(40))])
    with torch.inference_mode():
        for pos in (positions, None):
            got = ours(ids, pos).float()
            # use_cache=False: with a cache, transformers ignores the restarts of packed position ids.
            want = ref(input_ids=ids, position_ids=pos, use_cache=False).logits.float()
            tol = 1e-4 if dtype == "float32" else 0.05 * float(want.abs().max())
            assert torch.allclose(got, want, atol=tol), float((got - want).abs().max())


def test_models_the_builtin_engine_cannot_run_go_to_transformers(tmp_path: Path) -> None:
    scaled = _random_llama(tmp_path, rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert json.loads((scaled / "config.json").read_text())["rope_parameters"]["rope_type"] == "linear"
    loaded = lm_loader.load_model(str(scaled), "float32")
    assert loaded.engine == "transformers"
    plain = _random_llama(tmp_path / "plain")
    assert lm_loader.load_model(str(plain), "float32").engine == "builtin"
    assert lm_loader.load_model(str(plain), "int8").engine == "transformers"
    assert lm_loader.load_model(str(plain), "float32", engine="transformers").engine == "transformers"


def test_a_config_the_forward_pass_does_not_implement_is_refused_by_name() -> None:
    base = {"model_type": "llama", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    assert llama.LlamaConfig.from_dict(base).num_key_value_heads == 2
    with pytest.raises(llama.UnsupportedModel, match="key/value heads"):
        llama.LlamaConfig.from_dict(base | {"num_key_value_heads": 3})
    with pytest.raises(llama.UnsupportedModel, match="rope_type"):
        llama.LlamaConfig.from_dict(base | {"rope_scaling": {"rope_type": "yarn"}})


def _check_continuations(scorer: ppl.PerplexityScorer, ids: list[int], dtype: str) -> None:
    """The trigger check's fast path (a prefix computed once for two continuations, the output layer
    only where read) against the whole windows: float32 within 1e-3 nats per token; bfloat16 within
    its rounding: on this text either path's reading sums are 0.19-0.22 nats from float32's on
    average (up to 0.84), and the two differ by 0.13 (up to 0.65) since the whole windows attend
    window by window and the tree rows under a mask (bench/RESULTS.md lm-speed, round 4)."""
    items: list[ppl.Continuations] = []
    for n, a in enumerate(range(0, min(3000, len(ids) - 40), 100)):
        p, m, t = 16 + n % 14, 1 + n % 3, 8 + n % 9  # like 16 words before, the token, 8 words after
        items.append((ids[a : a + p], [ids[a + p : a + p + m + t], ids[a + p + m : a + p + m + t]], t))
    fast = scorer.continuation_nll(items)
    whole = scorer.window_nll([[*prefix, *c] for prefix, conts, _ in items for c in conts])
    sums = []
    for j, (_, _, read) in enumerate(items):
        for k in range(2):
            want, got = whole[2 * j + k][-read:], fast[j][k]
            if dtype == "float32":
                assert np.abs(want - got).max() < 1e-3
            sums.append(abs(float(want.sum() - got.sum())))
    assert np.mean(sums) < (1e-3 if dtype == "float32" else 0.2) and max(sums) < 0.9


@pytest.mark.slow
def test_real_model_builtin_nlls_match_transformers() -> None:
    """SmolLM2-135M on real text in six languages, code and a table: float32 NLLs of the two engines
    within 1e-3 nats per token; bfloat16 within 0.05 nats of float32 on average, and of each other.
    The builtin engine's continuations (the trigger check's fast path) give the whole windows' NLLs."""
    try:
        lm_loader.default_model()
    except lm_loader.ModelNotFoundError as exc:
        pytest.skip(str(exc))
    text = (Path(lm_loader.__file__).with_name(lm_loader.CALIBRATION_TEXT)).read_text("utf-8")
    nll: dict[tuple[str, str], list[np.ndarray]] = {}
    windows: list[list[int]] = []
    for engine in ("transformers", "auto"):  # transformers first: it keeps the copy auto reads
        for dtype in ("float32", "bfloat16"):
            scorer = ppl.PerplexityScorer(ppl.Config(engine=engine, dtype=dtype, batch_size=4))
            assert scorer.lm.engine == ("builtin" if engine == "auto" else "transformers")
            ids = scorer.lm.tokenizer(text, add_special_tokens=False)["input_ids"]
            cut = [ids[a : a + 200] for a in range(0, len(ids), 500)][:4]
            cut += [ids[a : a + 20] for a in range(250, 250 + 20 * 6, 20)]  # short ones packed together
            assert not windows or cut == windows  # both tokenizers give the same ids
            windows = cut
            nll[engine, dtype] = scorer._nll(windows)
            if engine == "auto":
                _check_continuations(scorer, ids, dtype)
            del scorer
            lm_loader._CACHE.clear()
    for a, b in zip(nll["transformers", "float32"], nll["auto", "float32"], strict=True):
        assert np.abs(a - b).max() < 1e-3
    for engine in ("transformers", "auto"):
        for a, b in zip(nll[engine, "float32"], nll[engine, "bfloat16"], strict=True):
            assert abs(a.mean() - b.mean()) < 0.05
    for a, b in zip(nll["transformers", "bfloat16"], nll["auto", "bfloat16"], strict=True):
        assert abs(a.mean() - b.mean()) < 0.02
