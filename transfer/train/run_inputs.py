"""What the trainer checks and fixes before its first step: the data's form, the device's
precision and compile settings, and the fingerprints that make up a run's identity (a
resumed run must match them)."""

from __future__ import annotations

import hashlib
import json
import shutil

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.errors import TrainingError
from transfer.train.data import PackedData


def short_sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:24]


def model_fingerprint(model: torch.nn.Module) -> str:
    """Class, config and the starting weights (names, shapes and bytes)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(json.dumps(config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase | None) -> str:
    if tokenizer is None:
        return "none"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return short_sha(backend.to_str())
    return short_sha(json.dumps(sorted(tokenizer.get_vocab().items())))


def as_packed(data: PackedData | torch.Tensor) -> PackedData:
    if isinstance(data, PackedData):
        return data
    if not isinstance(data, torch.Tensor) or data.dim() != 2 or data.size(0) == 0:
        raise TrainingError("blocks must be a non-empty (n_blocks, block_size) tensor of token ids")
    # Without byte counts, bytes seen is unknown: count it as 0 bytes per token.
    return PackedData(blocks=data, n_documents=0, n_bytes=0, n_tokens=data.numel())


def check_data(model: PreTrainedModel, data: PackedData) -> None:
    # a token file's memory map holds uint16/uint32 by construction; a tensor must be long
    if isinstance(data.blocks, torch.Tensor) and data.blocks.dtype != torch.long:
        raise TrainingError(f"blocks must hold token ids as torch.long, got {data.blocks.dtype}")
    if data.block_size < 2:
        raise TrainingError(f"blocks must have block_size >= 2, got {data.block_size}")
    rows = model.get_input_embeddings().num_embeddings if hasattr(model.get_input_embeddings(), "num_embeddings") \
        else model.config.vocab_size
    low, high = data.id_range()
    if high >= rows or low < 0:
        raise TrainingError(
            f"blocks hold ids outside 0..{rows - 1}, the model's embedding rows; "
            "were they packed with the model's tokenizer?"
        )


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run with ``precision`` on ``device`` trains under bf16 autocast (the
    trainer's rule, which the dry-run plan's memory estimate follows too)."""
    if precision == "bf16":
        return True
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return False


def compile_backend(compile_model: bool | str) -> str:
    """The torch.compile backend of a ``compile`` setting (True: the default, inductor)."""
    return "inductor" if compile_model is True else str(compile_model)


def check_compile(compile_model: bool | str, device: torch.device) -> None:
    """Refuse a ``compile`` setting that cannot work, before the first step: an unknown
    backend, or inductor on a CPU (it compiles C++ there and needs a compiler on PATH)."""
    if compile_model is False:
        return
    backend = compile_backend(compile_model)
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise TrainingError(f"compile={compile_model!r}: unknown torch.compile backend; known: {', '.join(known)}")
    if backend == "inductor" and device.type == "cpu" and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang", "g++")):
        raise TrainingError("compile=True on a CPU needs a C/C++ compiler on PATH (torch.compile builds "
                            "C++ kernels there); install gcc or train without compile")


def prefer_sdpa(model: PreTrainedModel) -> str | None:
    """Switch an eager-attention model to PyTorch's SDPA kernels when it supports them."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current == "eager" and hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, ImportError, NotImplementedError):
            return current
    return getattr(config, "_attn_implementation", None)
