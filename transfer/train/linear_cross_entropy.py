"""Cross-entropy of a linear output head without the whole logits (a chunked linear
cross-entropy), and the choice of the training loss's kernel.

The next-token loss of a large vocabulary is dominated by its logits: ``tokens x vocab``
float32 values, their log-softmax and their gradient (19 GB of SmolLM2's 48 GB peak at
32 x 1024 on an H200; a 262,144-token vocabulary at 8 x 4096 would need 34 GB for the logits
alone). The loss needs only two numbers per position, the log-sum-exp of its logits and the
target's logit, so :func:`linear_cross_entropy` computes the head's matmul and the loss one
chunk of positions at a time, keeps the per-position log-sum-exp (one float each) and the
inputs (hidden states, head weight, bias) for the backward pass, and recomputes each chunk's
logits there to form its gradients: peak memory O(chunk x vocab), not O(tokens x vocab), for
one more head matmul (the forward's, again). The same idea as Liger Kernel's fused linear
cross-entropy (Hsu et al. 2024) and Apple's Cut Cross-Entropy (Wijmans et al. 2025), in
plain PyTorch, so it runs (and is tested) on a CPU; on a GPU those libraries' fused
kernels are used when installed (``loss_kernel: fused``, or ``auto``).

Numerics follow the whole-logits path exactly where it matters: the head's matmul runs in
the dtype the whole path's ``F.linear`` would use (the autocast dtype under autocast, else
the promoted dtype of hidden states and weight), and everything after it, log-sum-exp,
softmax and the sums, in float32.

:func:`choose_loss_kernel` says which kernel a model trains with: the whole logits for a
masked LM (its head has a transform before the decoder and scores 15% of positions), and
for a head that post-processes its logits (Gemma-2's final soft-capping, Cohere's logit
scale, Granite's logit scaling: a wrong loss is worse than a slow one); the chunked kernel
otherwise, or a fused one on CUDA when asked or ``auto`` finds one installed.
:func:`loss_memory_bytes` is each kernel's figure for the memory estimate.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from transfer.errors import TrainingError

IGNORE_INDEX = -100  # label of unscored positions (the convention of transformers' losses)
LossKernel = Literal["auto", "chunked", "fused", "full"]
Resolved = Literal["chunked", "fused", "full"]

#: float32 logits of one chunk: 256 MiB (1,365 positions of a 49,152-token vocabulary,
#: 256 of 262,144), small next to a GPU's memory, large enough to keep its matmuls efficient
CHUNK_LOGITS_BYTES = 256 << 20
_MIN_CHUNK, _MAX_CHUNK = 64, 8192
#: the whole-logits path and the chunked one alike: float32 logits, their exponentials or
#: log-softmax, and their gradient, per position of a chunk (or of the batch)
_LOGIT_COPIES = 3
#: config fields of heads whose logits are changed after the output projection (the
#: model's forward does it after ``lm_head``): the chunked kernel does not see that
HEAD_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                       "lm_head_multiplier", "logit_softcapping")
#: fused kernels, by preference: (import name, what the choice note calls it)
FUSED_LIBRARIES = (("liger_kernel", "Liger Kernel"), ("cut_cross_entropy", "cut-cross-entropy"))


def chunk_rows(vocab: int, budget: int | None = None) -> int:
    """Positions per chunk: about ``budget`` (default ``CHUNK_LOGITS_BYTES``) bytes of
    float32 logits, from 64 to 8,192 positions."""
    budget = CHUNK_LOGITS_BYTES if budget is None else budget
    return max(_MIN_CHUNK, min(_MAX_CHUNK, budget // (4 * max(vocab, 1))))


def matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the whole-logits path's ``F.linear`` computes in: the autocast dtype under
    autocast (CUDA or CPU), else the promoted dtype of its inputs."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            dtype: torch.dtype) -> torch.Tensor:
    """One chunk's logits in float32, computed as ``F.linear`` in ``dtype`` would."""
    return F.linear(hidden.to(dtype), weight, None if bias is None else bias.to(dtype)).float()


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T + bias`` against ``labels``, chunk by chunk.

    Saves the inputs and one log-sum-exp per position; the backward pass recomputes each
    chunk's logits: ``softmax - onehot`` is the logits' gradient, then
    ``grad_hidden = g @ W``, ``grad_weight = g.T @ hidden`` and ``grad_bias = sum(g)``.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, chunk: int, dtype: torch.dtype) -> torch.Tensor:
        rows = hidden.size(0)
        lse = torch.empty(rows, dtype=torch.float32, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)  # cast once, as autocast caches it for the whole path
            for start in range(0, rows, chunk):
                stop = min(start + chunk, rows)
                z = _logits(hidden[start:stop], w, bias, dtype)
                target = labels[start:stop]
                valid = target != IGNORE_INDEX
                lse[start:stop] = torch.logsumexp(z, dim=-1)
                picked = z.gather(1, target.clamp(min=0)[:, None]).squeeze(1)
                total += torch.where(valid, lse[start:stop] - picked, 0.0).sum()
                del z
        ctx.save_for_backward(hidden, weight, bias, labels, lse)
        ctx.chunk, ctx.dtype = chunk, dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, bias, labels, lse = ctx.saved_tensors
        chunk, dtype = ctx.chunk, ctx.dtype
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        # sums over chunks in float32 at least (float64 for a float64 model)
        acc = torch.promote_types(weight.dtype, torch.float32)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_weight else None
        grad_bias = (torch.zeros(bias.shape, dtype=acc, device=bias.device)
                     if need_bias and bias is not None else None)
        scale = grad_out.float()
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for start in range(0, hidden.size(0), chunk):
                stop = min(start + chunk, hidden.size(0))
                h = hidden[start:stop].to(dtype)
                target = labels[start:stop]
                valid = target != IGNORE_INDEX
                # softmax - onehot, zero on unscored positions, times the incoming gradient
                g = _logits(h, w, bias, dtype).sub_(lse[start:stop, None]).exp_()
                rows = torch.arange(stop - start, device=g.device)
                g[rows, target.clamp(min=0)] -= 1.0
                g.mul_((valid * scale)[:, None])
                if grad_bias is not None:
                    grad_bias += g.sum(0, dtype=acc)
                g_low = g.to(dtype)
                del g
                if grad_hidden is not None:
                    grad_hidden[start:stop] = (g_low @ w).to(hidden.dtype)
                if grad_weight is not None:
                    if dtype == acc:
                        grad_weight.addmm_(g_low.T, h)
                    else:  # a low-precision matmul, accumulated in float32 across chunks
                        grad_weight += (g_low.T @ h).to(acc)
        return (grad_hidden,
                None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(bias.dtype),
                None, None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         bias: torch.Tensor | None = None, *, chunk_size: int | None = None) -> torch.Tensor:
    """Summed cross-entropy (nats, float32) of the logits ``hidden @ weight.T + bias``
    against ``labels`` (``IGNORE_INDEX`` unscored), never holding more than ``chunk_size``
    positions' logits (default :func:`chunk_rows` of the vocabulary)."""
    width = hidden.size(-1)
    if weight.dim() != 2 or weight.size(1) != width:
        raise TrainingError(f"head weight {tuple(weight.shape)} does not take hidden states of width {width}")
    flat, targets = hidden.reshape(-1, width), labels.reshape(-1)
    if flat.size(0) != targets.size(0):
        raise TrainingError(f"{flat.size(0)} positions but {targets.size(0)} labels")
    chunk = chunk_size or chunk_rows(weight.size(0))
    if chunk < 1:
        raise TrainingError(f"chunk_size must be >= 1, got {chunk_size}")
    return _ChunkedLinearCrossEntropy.apply(flat, weight, bias, targets, chunk, matmul_dtype(flat, weight))


# ------------------------------------------------------------------ fused CUDA kernels

def fused_library() -> str | None:
    """The import name of the first fused linear cross-entropy library installed, or None."""
    for name, _ in FUSED_LIBRARIES:
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                               bias: torch.Tensor | None = None, *, library: str) -> torch.Tensor:
    """The summed cross-entropy by an installed fused kernel (CUDA only), with the inputs in
    the dtype the whole-logits path's matmul would use."""
    width = hidden.size(-1)
    dtype = matmul_dtype(hidden, weight)
    flat, targets = hidden.reshape(-1, width).to(dtype), labels.reshape(-1)
    w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
    if library == "liger_kernel":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        loss = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")(w, flat, targets, b)
        loss = loss[0] if isinstance(loss, tuple) else loss
    elif library == "cut_cross_entropy":
        from cut_cross_entropy import linear_cross_entropy as cce

        # filter_eps=None: exact gradients (its default skips tiny softmax entries)
        loss = cce(flat, w, targets, **({"bias": b} if b is not None else {}), ignore_index=IGNORE_INDEX,
                   reduction="sum", filter_eps=None)
    else:
        raise TrainingError(f"unknown fused loss library {library!r}")
    return loss.float()


# ------------------------------------------------------------------ which kernel

@dataclass(frozen=True)
class KernelChoice:
    """The loss kernel a model trains with, the fused library when fused, and why when it
    is not the one asked for (a note for the train log)."""

    kernel: Resolved
    library: str | None = None
    note: str | None = None


def _text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def head_postprocessing(config: Any) -> str | None:
    """The config field by which the model changes its logits after the head, or None."""
    text = _text_config(config)
    for name in HEAD_POSTPROCESSING:
        value = getattr(text, name, None)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float) and value != 1:
            return f"{name}={value}"
    return None


def head_weights(head: torch.nn.Module | None) -> tuple[torch.nn.Module | None, str | None]:
    """The module whose ``weight`` (vocab x width) and optional ``bias`` are the output
    projection: the head itself for a linear head, the embedding for OFA's factorized head
    (its coordinates; the input is first projected by the primitives); None and why for
    anything else."""
    if head is None:
        return None, "the model has no output head"
    embedding = getattr(head, "embedding", None)
    if embedding is not None and hasattr(embedding, "coordinates") and hasattr(embedding, "primitives"):
        return head, None  # FactorizedHead: duck-typed, so training does not import the init package
    weight = getattr(head, "weight", None)
    if isinstance(head, torch.nn.Linear) or (isinstance(weight, torch.Tensor) and weight.dim() == 2
                                              and type(head).forward is torch.nn.Linear.forward):
        return head, None
    return None, f"the output head is a {type(head).__name__}, not a linear layer"


def choose_loss_kernel(requested: LossKernel, *, objective: str, config: Any, head: torch.nn.Module | None,
                       device_type: str) -> KernelChoice:
    """What ``loss_kernel`` becomes for this model on this device (see the module doc).
    'fused' without CUDA or without a library is refused; every other fall-back to the
    whole logits says why in ``note``."""
    if requested not in ("auto", "chunked", "fused", "full"):
        raise TrainingError(f"loss_kernel must be 'auto', 'chunked', 'fused' or 'full', got {requested!r}")
    if requested == "full":
        return KernelChoice("full")
    library = fused_library()
    if requested == "fused":
        if device_type != "cuda":
            raise TrainingError(f"loss_kernel 'fused' needs a CUDA device (training runs on {device_type}); "
                                "use 'chunked' or 'auto'")
        if library is None:
            raise TrainingError("loss_kernel 'fused' needs Liger Kernel or cut-cross-entropy installed "
                                "(pip install 'vocab-transfer[gpu]', or pip install liger-kernel); "
                                "use 'chunked' or 'auto'")
    why = None
    if objective != "causal":
        why = f"the {objective} objective's head has its own transform"
    else:
        post = head_postprocessing(config)
        _, bad_head = head_weights(head)
        why = (f"the model changes its logits after the head ({post})" if post else bad_head)
    if why:
        note = None if requested == "auto" else f"loss_kernel {requested!r}: whole logits instead, since {why}"
        return KernelChoice("full", note=note)
    if library is not None and device_type == "cuda":
        return KernelChoice("fused", library=library)
    return KernelChoice("chunked")


def loss_memory_bytes(kernel: Resolved, *, tokens: int, vocab: int, width: int, matmul_bytes: int = 4,
                      chunk: int | None = None) -> int:
    """Bytes the loss adds at its peak, for the memory estimate: the whole path's float32
    logits, log-softmax and gradient (``3 x tokens x vocab x 4``); the chunked kernel's
    same three for one chunk of positions, plus, when its matmul is in a low precision, the
    head weight cast once and the per-chunk weight gradient before it is added in float32
    (``2 x vocab x width x matmul_bytes``). A fused kernel is counted as the chunked one
    (Liger's chunks are smaller: an upper bound)."""
    if kernel == "full":
        return _LOGIT_COPIES * tokens * vocab * 4
    rows = min(tokens, chunk or chunk_rows(vocab))
    low = 2 * vocab * width * matmul_bytes if matmul_bytes < 4 else 0
    return _LOGIT_COPIES * rows * vocab * 4 + low
