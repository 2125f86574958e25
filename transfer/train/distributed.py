"""Several processes (GPUs, or CPU workers with gloo) through the standard launchers.

``torchrun --nproc_per_node=N`` and ``accelerate launch`` both start N copies of the
script with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in the
environment; we read those, join the process group (NCCL on GPUs, gloo on CPUs) and wrap
the model in PyTorch's ``DistributedDataParallel``, or shard it with FSDP2
(``transfer/train/sharding.py``). No home-made distribution layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we created the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def writes_node_files(self) -> bool:
        """Whether this process writes its machine's copy of a stage folder: the first
        process of each machine (with several machines each has its own output folder)."""
        return self.local_rank == 0


def context_from_env(device_type: str = "cpu") -> DistContext:
    """Join the process group described by the launcher's environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        owns = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, owns_group=owns)


def wrap_model(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` over the currently trainable parameters (or the model itself)."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else ctx.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


@contextmanager
def _fsdp_no_sync(model: torch.nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def no_sync(wrapped: torch.nn.Module, skip: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on accumulation
    micro-steps before the last one."""
    if not skip:
        return nullcontext()
    if hasattr(wrapped, "set_requires_gradient_sync"):  # an FSDP2 module
        return _fsdp_no_sync(wrapped)
    return wrapped.no_sync() if hasattr(wrapped, "no_sync") else nullcontext()


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_max(value: float, ctx: DistContext) -> float:
    """The largest of every process's ``value`` (a decision all processes must share)."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every process (a path, a small record)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def _collective_device() -> torch.device:
    """Where small collectives' tensors live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
