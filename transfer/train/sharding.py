"""Sharded training with PyTorch FSDP2 (``fully_shard``), and what it needs around it.

With ``sharding: fsdp`` every process holds only its share (1/N) of each weight, its
gradient and its AdamW moments instead of the whole model (ZeRO-3, Rajbhandari et al. 2020,
as PyTorch's FSDP2 implements it with DTensors sharded on their first dimension). Each
repeated block of the model (a decoder layer) is one FSDP group whose weights are gathered
just before it runs and freed after it; the root group holds what is left: the input
embedding, the output head (a tied head *is* the embedding, so both must be in one group:
the root) and the final norm. Gradients are reduce-scattered in float32 also when the
parameters are gathered in bfloat16 (``MixedPrecisionPolicy``).

``resolve_sharding`` is the rule of ``sharding: auto``: with several processes, fsdp when
the memory estimate of the run (``transfer.train.memory``) exceeds what one device has,
else ddp; with one process, neither. ``per_device_estimate`` is that estimate under fsdp.

What fsdp cannot do is refused before the first stage (``fsdp_problem``): distillation
(its step skips, per process, a micro-batch whose blocks hold no text, while every forward
of a sharded model is a collective all processes must run) and ``torch.compile``.

The trainer shards a copy of the caller's model (the caller's stays whole, on the CPU:
each process holds one whole copy in RAM, two for a moment while sharding, as each holds one
under DDP), and at the end writes the trained weights back into it one tensor at a time
(``gather_into``), so the caller saves a plain Hugging Face folder as with one process. A
sharded model's forward pass is a collective: the dev evaluations run on every process
(the main one records), and after a forward pass without a backward one the shards are put
back as the parameters (``reshard``). Frozen vocabulary rows (``freeze_source_rows``) are
kept on each process's local shard (``ShardedFrozenRows``). Activation checkpointing
(``enable_activation_checkpointing``) is transformers' own, non-reentrant: it recomputes
each decoder layer in the backward pass, with or without sharding (transformers checkpoints
a layer's ``forward``, so FSDP's gathering hooks stay outside the recomputation).
Checkpoints of a sharded run: ``transfer/train/checkpoint.py``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from transfer.errors import TrainingError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from transfer.train.memory import MemoryEstimate

Sharding = Literal["auto", "ddp", "fsdp"]
#: what a run trained with: one process ("none"), every process the whole model ("ddp"),
#: or sharded ("fsdp")
Resolved = Literal["none", "ddp", "fsdp"]


# ---------------------------------------------------------------- the choice

def fsdp_problem(*, distills: bool, compiles: bool) -> str | None:
    """Why a run cannot train sharded, or None (the one list of refused combinations)."""
    if distills:
        return ("sharding 'fsdp' with objective 'distill' or 'both' is not supported: the distillation "
                "step skips, on each process alone, a micro-batch whose blocks hold no text, and every "
                "forward pass of a sharded model is a collective step all processes must take; use "
                "sharding 'ddp' (the teacher is then a frozen copy on every process)")
    if compiles:
        return ("sharding 'fsdp' with compile is not supported (torch.compile of the sharded model is "
                "untested here); use sharding 'ddp' or leave compile off")
    return None


def resolve_sharding(requested: Sharding, world_size: int, *, needed: int, available: int,
                     problem: str | None = None) -> Resolved:
    """What ``requested`` becomes: one process trains plainly ("none"); several processes
    train as asked, and 'auto' is fsdp exactly when the run's memory estimate ``needed``
    (bytes, ``MemoryEstimate.total``) exceeds the ``available`` bytes of one device and
    nothing forbids it (``problem``, from :func:`fsdp_problem`), else ddp."""
    if requested not in ("auto", "ddp", "fsdp"):
        raise TrainingError(f"sharding must be 'auto', 'ddp' or 'fsdp', got {requested!r}")
    if world_size <= 1:
        return "none"
    if requested == "fsdp":
        if problem:
            raise TrainingError(problem)
        return "fsdp"
    if requested == "auto" and needed > available and not problem:
        return "fsdp"
    return "ddp"


def per_device_estimate(estimate: MemoryEstimate, world_size: int, *, gathered_bytes: int = 0) -> MemoryEstimate:
    """The memory estimate of one process under fsdp: weights, gradients and AdamW moments
    divided among ``world_size`` processes, plus ``gathered_bytes`` (the weights and
    gradients gathered whole at a time: the root group and one layer,
    :func:`gathered_bytes`); activations and logits are each process's own, unchanged."""
    from transfer.train.memory import MemoryEstimate

    def share(n: int) -> int:
        return math.ceil(n / max(world_size, 1))

    return MemoryEstimate(weights=share(estimate.weights) + gathered_bytes, gradients=share(estimate.gradients),
                          optimizer=share(estimate.optimizer), activations=estimate.activations,
                          logits=estimate.logits)


def gathered_bytes(model: nn.Module, *, bytes_per_value: int = 4) -> int:
    """Bytes of weights (and gradients) a process holds whole at one time under fsdp: the
    root group (everything outside the layers: embeddings, head, norms), which FSDP keeps
    gathered between the forward and the backward pass, plus the largest layer."""
    layers = decoder_layers(model)
    inside = {id(p) for layer in layers for p in layer.parameters()}
    root = sum(p.numel() for p in model.parameters() if id(p) not in inside)
    largest = max((sum(p.numel() for p in layer.parameters()) for layer in layers), default=0)
    return 2 * (root + largest) * bytes_per_value


# ---------------------------------------------------------------- the groups

def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks, one FSDP group each: the children of its ``ModuleList``s
    whose class transformers names as not to be split (``_no_split_modules``:
    ``LlamaDecoderLayer``, ``GPT2Block``, ``BertLayer`` ...); without that list, the
    children of the longest ``ModuleList``."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if names:
        found = [child for lst in lists for child in lst if type(child).__name__ in names]
        if found:
            return found
    if not lists:
        return []
    return list(max(lists, key=len))


def _check_groups(model: nn.Module, layers: list[nn.Module]) -> None:
    """Refuse a model whose layers share a weight with another group (a weight tied across
    layers, or a layer's weight tied to the embedding): FSDP shards each group's weights
    once, so a shared weight must stay inside one group."""
    owner: dict[int, int] = {}
    for index, layer in enumerate(layers):
        for param in layer.parameters():
            if owner.setdefault(id(param), index) != index:
                raise TrainingError(f"sharding 'fsdp': layers {owner[id(param)]} and {index} of "
                                    f"{type(model).__name__} share a weight; use sharding 'ddp'")
    inside = set(owner)
    in_layers = {id(m) for layer in layers for m in layer.modules()}
    for module in model.modules():
        if id(module) in in_layers:
            continue
        for name, param in module.named_parameters(recurse=False):
            if id(param) in inside:
                raise TrainingError(f"sharding 'fsdp': {type(module).__name__}.{name} of {type(model).__name__} "
                                    "is a layer's weight used outside that layer; use sharding 'ddp'")


def check_shardable(model: nn.Module) -> list[nn.Module]:
    """The layers :func:`shard_model` makes groups of; refuse a model without repeated
    layers, or whose layers share a weight with another group."""
    layers = decoder_layers(model)
    if not layers:
        raise TrainingError(f"sharding 'fsdp' needs the model's repeated layers; {type(model).__name__} has no "
                            "ModuleList of blocks: use sharding 'ddp'")
    _check_groups(model, layers)
    return layers


def shard_model(model: PreTrainedModel, device: torch.device, *, bf16: bool,
                activation_checkpointing: bool = False) -> PreTrainedModel:
    """A sharded copy of ``model`` on ``device``: ``fully_shard`` on every decoder layer,
    then on the root (embeddings, head, final norm), over all processes of the group;
    bf16 parameters with float32 gradient reduction when ``bf16``. ``model`` is left as
    it is (whole, where it was)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    check_shardable(model)
    copied = copy.deepcopy(model)
    if activation_checkpointing:
        enable_activation_checkpointing(copied)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    for layer in decoder_layers(copied):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(copied, mesh=mesh, mp_policy=policy)
    # (fully_shard moved the shards and the buffers of every group to the mesh's device)
    # FSDP sets itself up on the first forward pass; under inference mode (the dev
    # evaluation at step 0) that would make the shards inference tensors, which cannot
    # train: one forward of one token, without gradients, sets it up first
    # (in eval mode: no dropout draw from the caller's generator)
    was_training = copied.training
    with torch.no_grad():
        copied.eval()(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device))
    copied.train(was_training)
    reshard(copied)
    return copied


def reshard(model: nn.Module) -> None:
    """Put every group's shards back as the model's parameters. FSDP leaves the root group
    gathered after a forward pass (for the backward that usually follows): after a forward
    without one (an evaluation), the parameters the optimizer holds, the shards, would not
    be the ones the model computes with until the next backward pass."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@torch.no_grad()
def gather_into(sharded: nn.Module, plain: nn.Module) -> None:
    """Write ``sharded``'s weights into the whole ``plain`` model of the same architecture,
    one tensor at a time (each gathered from every process, then copied to ``plain``'s
    device): a collective, every process calls it, and every process ends with the whole
    trained model."""
    from torch.distributed.tensor import DTensor

    targets = plain.state_dict(keep_vars=True)
    for name, value in sharded.state_dict().items():
        if name not in targets:
            raise TrainingError(f"sharded model has {name!r}, which the model it was copied from has not")
        whole = value.full_tensor() if isinstance(value, DTensor) else value
        targets[name].data.copy_(whole.to(targets[name].device))


def unique_state_keys(model: nn.Module) -> list[str]:
    """The state-dict keys of ``model`` without the aliases of a tied weight (a tied head's
    ``lm_head.weight`` is the embedding's): what a checkpoint stores once."""
    seen: set[int] = set()
    keys = []
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    for key in model.state_dict(keep_vars=True):
        tensor = tensors.get(key)
        if tensor is not None and id(tensor) in seen:
            continue
        if tensor is not None:
            seen.add(id(tensor))
        keys.append(key)
    return keys


# ---------------------------------------------------------------- during the step

def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """FSDP's gradient reduction on or off (off on accumulation micro-steps but the last)."""
    model.set_requires_gradient_sync(enabled)  # type: ignore[operator]


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder layer's activations in the backward pass (transformers'
    gradient checkpointing, non-reentrant: it also works with the body frozen)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise TrainingError(f"activation_checkpointing: {type(model).__name__} does not support gradient "
                            "checkpointing in transformers; turn activation_checkpointing off")
    # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # a cache is useless in training and conflicts with recomputation


def is_checkpointing_activations(model: nn.Module) -> bool:
    """Whether some layer of ``model`` recomputes its activations in the backward pass."""
    return any(getattr(module, "gradient_checkpointing", False) is True for module in model.modules())


def disable_activation_checkpointing(model: nn.Module) -> None:
    if is_checkpointing_activations(model):
        disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        disable()


def _local_rows(param: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(this process's local shard, the global index of its first row along dim 0)."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(param, DTensor):
        return param, 0
    if tuple(param.placements) != (Shard(0),):
        raise TrainingError(f"freeze_source_rows under fsdp expects weights sharded on their first dimension, "
                            f"got {param.placements}")
    local = param.to_local()
    rank = param.device_mesh.get_local_rank()
    # FSDP2 shards like torch.chunk: equal chunks of ceil(rows / N), the last ones shorter or empty
    chunk = math.ceil(param.shape[0] / param.device_mesh.size())
    start = min(rank * chunk, param.shape[0])
    if local.shape[0] != max(0, min(chunk, param.shape[0] - start)):
        raise TrainingError(f"freeze_source_rows under fsdp: a local shard of {local.shape[0]} rows does not "
                            f"follow torch.chunk's layout")
    return local, start


@dataclass
class _LocalSlice:
    param: torch.nn.Parameter
    axis: int
    start: int  # first frozen index in the local tensor along ``axis``
    length: int

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.narrow(self.axis, self.start, self.length)


@dataclass
class ShardedFrozenRows:
    """:class:`transfer.train.row_freeze.FrozenRows` on sharded weights: each process keeps
    the frozen rows that lie in its own shard (a shard is a range of rows; a tensor whose
    vocabulary axis is not the sharded one has all of it in every shard)."""

    n_rows: int
    slices: list[_LocalSlice]
    saved: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls, model: PreTrainedModel, n_rows: int) -> ShardedFrozenRows | None:
        from transfer.train.row_freeze import check_frozen_rows, vocabulary_tensors

        if n_rows == 0:
            return None
        check_frozen_rows(model, n_rows)
        slices = []
        for tensor in vocabulary_tensors(model):
            if not tensor.param.requires_grad:
                continue
            local, first = _local_rows(tensor.param.data)
            if tensor.axis == 0:
                length = max(0, min(n_rows - first, local.shape[0]))
                slices.append(_LocalSlice(tensor.param, 0, 0, length))
            else:
                slices.append(_LocalSlice(tensor.param, tensor.axis, 0, n_rows))
        saved = [s.view(_local_rows(s.param.data)[0]).detach().clone() for s in slices]
        return cls(n_rows, slices, saved)

    def zero_gradients(self) -> None:
        for piece in self.slices:
            if piece.param.grad is not None and piece.length:
                piece.view(_local_rows(piece.param.grad)[0]).zero_()

    @torch.no_grad()
    def restore(self) -> None:
        for piece, saved in zip(self.slices, self.saved, strict=True):
            if piece.length:
                piece.view(_local_rows(piece.param.data)[0]).copy_(saved)
