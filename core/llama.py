"""A Llama-architecture causal LM in plain torch: the forward pass the perplexity detector needs.

Why not transformers: the scorer needs one thing from the model, the last hidden states of rows of
token windows, and importing transformers' modules took ~80% of the language model's start-up
(bench/RESULTS.md "lm-startup"). This module reads a Llama checkpoint (``config.json`` and one
``model.safetensors``: a Hugging Face folder, or the dequantised copy core/lm.py keeps of a GGUF
model) and runs it with a handful of torch operations.

The architecture (Touvron et al. 2023, arXiv:2302.13971; SmolLM2 is one): token embeddings, then
per layer ``h += attn(rms_norm(h))`` and ``h += mlp(rms_norm(h))``, then a final RMS norm.
Attention is grouped-query (several query heads share one key/value head) with rotary position
embeddings (Su et al. 2021, arXiv:2104.09864) in the "half split" layout of Hugging Face checkpoints;
the MLP is ``down(silu(gate(x)) * up(x))``. The output layer is the embedding matrix when the
weights are tied, else ``lm_head``.

Rows may hold several windows end to end ("packed"): a token attends to the tokens before it in its
own window only. A window starts wherever a position does not continue the previous one (positions
restart at 0 for each window), the same rule Hugging Face uses for packed position ids. The matrix
products run over the packed rows; attention runs window by window, the windows of one length in one
causal call (:func:`window_groups`), or under an explicit mask when one is given (:func:`tree_mask`).
Without position ids a row is one sequence (plain causal attention, the layout of the GPU path).

Computations follow the reference numerics: norms in float32 and cast back, rotary tables computed in
float32 and cast to the weight type, attention by ``scaled_dot_product_attention``. Two changes that
only reorder floating-point work: the q/k/v projections run as one matrix product, and so do the
gate and up projections (fewer, larger products are faster on a CPU).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_FILE = "model.safetensors"


class UnsupportedModel(ValueError):
    """The checkpoint is not a plain Llama model this module can run (the caller uses transformers)."""


@dataclass(frozen=True)
class LlamaConfig:
    """The shape of a Llama model, read from its ``config.json``."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LlamaConfig:
        """The config, or UnsupportedModel naming what this module does not implement."""
        if raw.get("model_type") != "llama":
            raise UnsupportedModel(f"model_type {raw.get('model_type')!r} is not llama")
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        checks = {
            "hidden_act": raw.get("hidden_act", "silu") == "silu",
            "attention_bias": not raw.get("attention_bias", False),
            "mlp_bias": not raw.get("mlp_bias", False),
            "pretraining_tp": raw.get("pretraining_tp", 1) == 1,
            "rope_type": rope_type == "default",
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise UnsupportedModel(f"unsupported Llama settings: {', '.join(wrong)}")
        heads = int(raw["num_attention_heads"])
        hidden = int(raw["hidden_size"])
        kv_heads = int(raw.get("num_key_value_heads") or heads)
        if kv_heads < 1 or heads % kv_heads:  # grouped-query attention repeats each key/value head
            raise UnsupportedModel(f"{heads} attention heads do not share {kv_heads} key/value heads evenly")
        return cls(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(raw["intermediate_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=int(raw.get("head_dim") or hidden // heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", raw.get("rope_theta", 10000.0))),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        )


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) in float32, cast back to x's type, times the gain (in that order, like the reference).

    The float32 product is written straight in x's type and the gain applied in place: the reference's
    values (the same reduction, the same roundings) with two fewer passes over the activations. (A
    fused float32 norm, e.g. ``vector_norm``, sums in another order: rare one-unit differences in
    bfloat16 that 30 layers grow to 0.02 nats on a window's mean NLL.)"""
    x32 = x.float()
    scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True).add_(eps))
    return torch.mul(x32, scale, out=torch.empty_like(x)).mul_(weight)


def segment_ids(positions: torch.Tensor) -> torch.Tensor:
    """Per token, the number of the window it belongs to in its row: a new window starts wherever the
    position is not the previous token's plus one."""
    step = torch.diff(positions, prepend=positions[:, :1] - 1, dim=-1)
    return (step != 1).cumsum(-1)


def packed_causal_mask(positions: torch.Tensor) -> torch.Tensor:
    """(rows, 1, T, T) boolean mask: query i may see key j when j <= i and both are in one window. The
    forward pass no longer builds it (it attends window by window, :func:`window_groups`); passed as
    ``mask`` it gives the same attention, the reference the tests compare that path with."""
    seg = segment_ids(positions)
    width = positions.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=positions.device).tril()
    return ((seg[:, :, None] == seg[:, None, :]) & causal)[:, None]


# (window length, flat token indices (windows, length)): the packed windows of one length
WindowGroup = tuple[int, torch.Tensor]


def window_groups(positions: torch.Tensor) -> list[WindowGroup]:
    """The windows of packed rows (see :func:`segment_ids`) grouped by length, each window as the flat
    indices of its tokens in the (rows x T) layout, for attention window by window (:class:`Layer`).

    Why not one pass over each row with :func:`packed_causal_mask`: the CPU attention kernel then
    computes every (query, key) pair of the row, where a window needs only the causal half of its own
    block; on rows of a 257-token and two 129-token windows that was 2-3x the attention's work."""
    rows, width = positions.shape
    seg = segment_ids(positions).cpu().numpy()
    by_length: dict[int, list[int]] = {}
    for r in range(rows):
        starts = [0, *(np.flatnonzero(np.diff(seg[r])) + 1).tolist(), width]
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            by_length.setdefault(b - a, []).append(r * width + a)
    out = []
    for length, firsts in sorted(by_length.items()):
        index = torch.tensor(firsts)[:, None] + torch.arange(length)
        out.append((length, index.to(positions.device)))
    return out


def tree_mask(segments: torch.Tensor, branches: torch.Tensor) -> torch.Tensor:
    """(rows, 1, T, T) boolean mask of rows that hold shared prefixes with several continuations:
    query i may see key j when j <= i, both are in one segment, and j is in the prefix (branch 0) or
    in i's own continuation (the same branch). Each continuation is laid out after the previous one
    with positions that go on from the prefix, so it reads as if it followed the prefix alone: a
    prefix is computed once for all its continuations (as a key/value cache would, in one pass)."""
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    same = segments[:, :, None] == segments[:, None, :]
    visible = (branches[:, None, :] == 0) | (branches[:, :, None] == branches[:, None, :])
    return (same & visible & causal)[:, None]


class Layer(nn.Module):
    """One decoder layer: attention then MLP, each after an RMS norm and added to the residual."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
        self.attn_norm = nn.Parameter(torch.empty(cfg.hidden_size))
        self.qkv = nn.Parameter(torch.empty(q + 2 * kv, cfg.hidden_size))
        self.out = nn.Parameter(torch.empty(cfg.hidden_size, q))
        self.mlp_norm = nn.Parameter(torch.empty(cfg.hidden_size))
        self.gate_up = nn.Parameter(torch.empty(2 * cfg.intermediate_size, cfg.hidden_size))
        self.down = nn.Parameter(torch.empty(cfg.hidden_size, cfg.intermediate_size))

    def forward(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        windows: list[WindowGroup] | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        rows, width, _ = h.shape
        heads, kv_heads, dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        qkv = F.linear(rms_norm(h, self.attn_norm, cfg.rms_norm_eps), self.qkv)
        qk = rotate(qkv[..., : (heads + kv_heads) * dim].view(rows, width, heads + kv_heads, dim), cos, sin)
        value = qkv[..., (heads + kv_heads) * dim :]
        if windows is not None:
            attended = self._attend_windows(qk.view(rows * width, heads + kv_heads, dim), value, windows)
        else:
            attended = self._attend(qk, value.view(rows, width, kv_heads, dim).transpose(1, 2), mask)
        h = h + F.linear(attended.view(rows, width, heads * dim), self.out)
        gate, up = F.linear(rms_norm(h, self.mlp_norm, cfg.rms_norm_eps), self.gate_up).chunk(2, dim=-1)
        # In place on the gate/up product (a temporary): the same values, two fewer large allocations.
        return h + F.linear(F.silu(gate, inplace=True).mul_(up), self.down)

    def _sdpa(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any) -> torch.Tensor:
        """Attention of (batch, heads, T, dim) queries; `mask` None: causal. enable_gqa: each key/value
        head serves its query heads in the kernel (no repeated copies)."""
        cfg = self.cfg
        return F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            is_causal=mask is None,
            scale=1.0 / math.sqrt(cfg.head_dim),
            enable_gqa=cfg.num_key_value_heads != cfg.num_attention_heads,
        )

    def _attend(self, qk: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Whole rows at once: (rows, T, heads x dim)."""
        heads = self.cfg.num_attention_heads
        attended = self._sdpa(qk[:, :, :heads].transpose(1, 2), qk[:, :, heads:].transpose(1, 2), value, mask)
        return attended.transpose(1, 2).reshape(qk.shape[0], qk.shape[1], -1)

    def _attend_windows(
        self, qk: torch.Tensor, value: torch.Tensor, windows: list[WindowGroup]
    ) -> torch.Tensor:
        """Window by window (see :func:`window_groups`): the windows of one length gathered into one
        causal call, their outputs put back in place. `qk`: (rows x T, heads + kv heads, dim) rotated
        queries and keys; `value`: (rows, T, kv heads x dim)."""
        heads, kv_heads, dim = self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim
        flat_value = value.reshape(-1, kv_heads * dim)
        out = qk.new_empty(qk.shape[0], heads * dim)
        for length, index in windows:
            n = index.shape[0]
            group = qk[index]  # (windows, length, heads + kv heads, dim)
            attended = self._sdpa(
                group[:, :, :heads].transpose(1, 2),
                group[:, :, heads:].transpose(1, 2),
                flat_value[index].view(n, length, kv_heads, dim).transpose(1, 2),
                None,
            )
            out[index] = attended.transpose(1, 2).reshape(n, length, heads * dim)
        return out


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (rows, T, heads, head_dim), half split: x*cos + rotate_half(x)*sin with
    rotate_half(x) = (-x2, x1), computed per half as (x1*cos - x2*sin, x2*cos + x1*sin): the same
    products and sums, so the same values, without building rotate_half(x). `cos`, `sin`: (rows, T,
    1, head_dim / 2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty_like(x)
    torch.sub(x1 * cos, x2 * sin, out=out[..., :half])
    torch.add(x2 * cos, x1 * sin, out=out[..., half:])
    return out


class Backbone(nn.Module):
    """Embeddings, the decoder layers and the final norm: token ids -> last hidden states."""

    inv_freq: torch.Tensor  # rotary frequencies, a buffer (it follows the model to its device)

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size))
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = nn.Parameter(torch.empty(cfg.hidden_size))
        inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables (rows, T, 1, head_dim / 2) for these positions, made in float32 (both
        halves of a head use the same angles, see :func:`rotate`)."""
        angles = (positions.float()[..., None] * self.inv_freq)[:, :, None, :]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states (rows, T, hidden) of `input_ids` (rows, T). `position_ids`: the position of
        each token in its window (windows packed end to end, each attended alone: :func:`window_groups`);
        None: each row is one sequence from position 0. `mask`: who attends to whom when it is not that
        (with the positions, e.g. :func:`tree_mask`)."""
        h = F.embedding(input_ids, self.embed)
        windows = None
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        elif mask is None:
            windows = window_groups(position_ids)
        cos, sin = self.rotary(position_ids, h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, windows)
        return rms_norm(h, self.norm, self.cfg.rms_norm_eps)


class OutputLayer(nn.Module):
    """Hidden states -> vocabulary logits (the embedding matrix when tied)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight)


class LlamaLM(nn.Module):
    """The causal LM: ``model`` (the backbone) and the output layer, with the attributes the scorer
    reads from a Hugging Face model (``config``, ``dtype``, ``base_model``, ``get_output_embeddings``)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = (
            None if cfg.tie_word_embeddings else nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size))
        )

    @property
    def base_model(self) -> Backbone:
        return self.model

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed.dtype

    def get_output_embeddings(self) -> OutputLayer:
        return OutputLayer(self.model.embed if self.lm_head is None else self.lm_head)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (rows, T, vocabulary)."""
        return self.get_output_embeddings()(self.model(input_ids, position_ids))


def read_config(folder: Path) -> LlamaConfig:
    """The Llama config of a checkpoint folder (UnsupportedModel: not one this module runs)."""
    config = folder / "config.json"
    weights = folder / WEIGHTS_FILE
    if not config.is_file() or not weights.is_file():
        raise UnsupportedModel(f"{folder} has no config.json and single {WEIGHTS_FILE}")
    return LlamaConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))


# safetensors dtype names -> torch dtypes (the ones a float checkpoint uses)
_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


class _Weights:
    """Tensors of a ``.safetensors`` file, read with plain file reads into ordinary memory.

    The format (a little-endian u64 header length, a JSON header naming each tensor's dtype, shape
    and byte range, then the data) is read directly rather than memory-mapped: tensors backed by a
    mapping of the file count in the process's resident memory a second time once copied (fused) or
    touched, and the mapping stays as long as any tensor of it lives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("rb")
        size = int.from_bytes(self.file.read(8), "little")
        header = json.loads(self.file.read(size))
        header.pop("__metadata__", None)
        self.header: dict[str, Any] = header
        self.data_start = 8 + size

    def close(self) -> None:
        self.file.close()

    def shape(self, name: str) -> list[int]:
        if name not in self.header:
            raise UnsupportedModel(f"{self.path} lacks {name}")
        return list(self.header[name]["shape"])

    def read_into(self, name: str, out: torch.Tensor) -> None:
        """Copy tensor `name` into `out` (same number of elements, any float type)."""
        entry = self.header[name]
        file_dtype = _DTYPES.get(entry["dtype"])
        if file_dtype is None:
            raise UnsupportedModel(f"{self.path}: {name} is {entry['dtype']}, not a float type")
        begin, end = entry["data_offsets"]
        target = out if out.dtype == file_dtype else torch.empty(out.shape, dtype=file_dtype)
        raw = target.view(-1).view(torch.uint8).numpy()
        if end - begin != raw.nbytes:
            raise UnsupportedModel(f"{self.path}: {name} has {end - begin} bytes, expected {raw.nbytes}")
        self.file.seek(self.data_start + begin)
        if self.file.readinto(raw.data) != raw.nbytes:
            raise UnsupportedModel(f"{self.path} is truncated ({name})")
        if target is not out:
            out.copy_(target)

    def tensor(self, dtype: torch.dtype, *names: str) -> nn.Parameter:
        """The named tensors stacked along the first dimension (one tensor: itself), in `dtype`."""
        shapes = [self.shape(n) for n in names]
        rows = sum(s[0] for s in shapes)
        out = torch.empty([rows, *shapes[0][1:]], dtype=dtype)
        at = 0
        for name, shape in zip(names, shapes, strict=True):
            self.read_into(name, out[at : at + shape[0]])
            at += shape[0]
        return nn.Parameter(out, requires_grad=False)


def load(folder: Path, dtype: torch.dtype) -> LlamaLM:
    """The model of a checkpoint folder in `dtype`, on the CPU, in eval mode. Each weight is read
    straight into its place (the fused ones into their slice), so loading holds one copy of the model."""
    cfg = read_config(folder)
    lm = LlamaLM(cfg)
    weights = _Weights(folder / WEIGHTS_FILE)
    try:
        lm.model.embed = weights.tensor(dtype, "model.embed_tokens.weight")
        lm.model.norm = weights.tensor(dtype, "model.norm.weight")
        if lm.lm_head is not None:
            lm.lm_head = weights.tensor(dtype, "lm_head.weight")
        for i, layer in enumerate(lm.model.layers):
            p = f"model.layers.{i}."
            attn, mlp = p + "self_attn.", p + "mlp."
            layer.attn_norm = weights.tensor(dtype, p + "input_layernorm.weight")
            layer.qkv = weights.tensor(
                dtype, attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight"
            )
            layer.out = weights.tensor(dtype, attn + "o_proj.weight")
            layer.mlp_norm = weights.tensor(dtype, p + "post_attention_layernorm.weight")
            layer.gate_up = weights.tensor(dtype, mlp + "gate_proj.weight", mlp + "up_proj.weight")
            layer.down = weights.tensor(dtype, mlp + "down_proj.weight")
    finally:
        weights.close()
    return lm.eval()
