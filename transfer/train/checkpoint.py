"""Atomic training checkpoints for exact resume.

A checkpoint folder ``step-00000040/`` holds

- ``model.safetensors``: every weight (shared/tied tensors handled by safetensors' helpers);
- ``optimizer.safetensors`` + the JSON part of the optimizer state (moments, step counts);
- ``rng.safetensors``: the torch CPU (and CUDA) generator states;
- ``state.json``: step, stage, position in the data order, the log so far, and the
  *identity* of the run (model, tokenizer, data, settings) that a resume must match.

Written into a temporary folder and renamed, then ``latest.json`` is replaced atomically,
so a crash (even SIGKILL) leaves either the previous checkpoint or the new one, never a
half one. Only safetensors and JSON: nothing is ever unpickled.

A sharded run (``sharding: fsdp``) writes every process's shards with
``torch.distributed.checkpoint`` into ``shards/`` in the safetensors form
(``HuggingFaceStorageWriter``, one file per process; the tensors' places in the whole
weights are in each file's JSON header, so no pickled metadata file is written or read),
each process's generators into ``rng.rank<r>.safetensors``, and the optimizer's
non-tensor part (its parameter groups, by parameter name) into ``optimizer.json``. Every
process writes into the temporary folder rank 0 made, then rank 0 renames it: with several
machines the checkpoint folder must be one they all see.
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from transfer.engine.cache import atomic_write, replacing_directory
from transfer.errors import CheckpointError

if TYPE_CHECKING:
    from transfer.train.distributed import DistContext

LATEST = "latest.json"
SHARDS = "shards"  # a sharded checkpoint's torch.distributed.checkpoint files


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, values in state["state"].items():
        entry: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
                entry[key] = {"tensor": f"{pid}.{key}", "device": str(value.device)}
            else:
                entry[key] = value
        plain["state"][str(pid)] = entry
    return tensors, plain


def _join_optimizer_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, values in plain["state"].items():
        entry = {}
        for key, value in values.items():
            if isinstance(value, dict) and "tensor" in value:
                entry[key] = tensors[value["tensor"]].to(value["device"])
            else:
                entry[key] = value
        state[int(pid)] = entry
    groups = []
    for group in plain["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda.{index}"] = state
    return states


def _rng_file(rank: int | None) -> str:
    return "rng.safetensors" if rank is None else f"rng.rank{rank}.safetensors"


def restore_rng(path: Path, rank: int = 0) -> None:
    """Set the torch generators to the states stored in checkpoint ``path`` (a sharded
    checkpoint's own states of process ``rank``)."""
    own = Path(path) / _rng_file(rank)
    states = load_file(str(own if own.exists() else Path(path) / _rng_file(None)))
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted(k for k in states if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def save_checkpoint(
    directory: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest.json`` at it, keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:08d}"
    for stale in directory.glob(".step-*.tmp-*"):  # left by a process killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    with replacing_directory(final) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        plain: dict[str, Any] = {}
        if optimizer is not None:
            tensors, plain = _split_optimizer_state(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
        save_file(_rng_tensors(), str(tmp / "rng.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(plain))
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
    atomic_write(directory / LATEST, json.dumps({"checkpoint": final.name, "step": step}), fsync=True)
    _prune(directory, final, keep)
    return final


def _prune(directory: Path, final: Path, keep: int) -> None:
    for old in sorted(directory.glob("step-*"))[:-keep] if keep > 0 else []:
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)


def save_sharded_checkpoint(
    directory: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    ctx: DistContext,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` of a sharded (FSDP) model and its optimizer: a collective,
    every process calls it; rank 0 makes the temporary folder, every process writes its
    shards and generator states into it, rank 0 renames it and points ``latest.json`` at it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from transfer.train.distributed import barrier, broadcast_object

    directory = Path(directory)
    final = directory / f"step-{step:08d}"
    if ctx.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".step-*.tmp-*"):  # left by a process killed while saving
            shutil.rmtree(stale, ignore_errors=True)
    with (replacing_directory(final) if ctx.is_main else nullcontext(None)) as made:
        tmp = Path(broadcast_object(str(made) if made is not None else None, ctx))
        model_state, optim_state = get_state_dict(model, optimizer)
        tensors, plain = _flat_sharded_state(model, model_state, optim_state)
        dcp.save(tensors, storage_writer=HuggingFaceStorageWriter(str(tmp / SHARDS), save_distributed=True))
        save_file(_rng_tensors(), str(tmp / _rng_file(ctx.rank)))
        barrier(ctx)  # every process's files are written before rank 0 renames the folder
        if ctx.is_main:
            (tmp / "optimizer.json").write_text(json.dumps(plain))
            (tmp / "state.json").write_text(json.dumps({**state, "step": step, "format": "sharded"}, indent=1))
    if ctx.is_main:
        atomic_write(directory / LATEST, json.dumps({"checkpoint": final.name, "step": step}), fsync=True)
        _prune(directory, final, keep)
    return final


def _flat_sharded_state(model: torch.nn.Module, model_state: dict[str, Any],
                        optim_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(every tensor under one flat name: ``model.<key>`` once per weight, a tied alias
    left out; ``optim.<param>.<key>``, the JSON rest: parameter groups and non-tensor state)."""
    from transfer.train.sharding import unique_state_keys

    tensors = {f"model.{key}": model_state[key] for key in unique_state_keys(model) if key in model_state}
    plain: dict[str, Any] = {"param_groups": optim_state["param_groups"], "state": {}}
    for name, values in optim_state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{name}.{key}"] = value
            else:
                plain["state"].setdefault(name, {})[key] = value
    return tensors, plain


def is_sharded(path: Path) -> bool:
    """Whether checkpoint ``path`` was written by :func:`save_sharded_checkpoint`."""
    return (Path(path) / SHARDS).is_dir()


def load_sharded_weights(path: Path, model: torch.nn.Module) -> None:
    """Load a sharded checkpoint's weights into the sharded ``model`` (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        set_model_state_dict,
    )

    from transfer.train.sharding import unique_state_keys

    state = get_model_state_dict(model)
    keys = [key for key in unique_state_keys(model) if key in state]
    tensors = {f"model.{key}": state[key] for key in keys}
    _dcp_load(dcp, tensors, HuggingFaceStorageReader(str(Path(path) / SHARDS)), path)
    set_model_state_dict(model, {key: tensors[f"model.{key}"] for key in keys},
                         options=StateDictOptions(strict=False))  # a tied alias comes with its weight


def load_sharded_optimizer(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a sharded checkpoint's optimizer state into ``optimizer`` of the sharded
    ``model`` (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_optimizer_state_dict

    plain = json.loads((Path(path) / "optimizer.json").read_text())
    _, optim_state = get_state_dict(model, optimizer)  # the state's shapes (torch makes them)
    tensors = {f"optim.{name}.{key}": value for name, values in optim_state["state"].items()
               for key, value in values.items() if isinstance(value, torch.Tensor)}
    _dcp_load(dcp, tensors, HuggingFaceStorageReader(str(Path(path) / SHARDS)), path)
    for name, values in optim_state["state"].items():
        for key in list(values):
            if f"optim.{name}.{key}" in tensors:
                values[key] = tensors[f"optim.{name}.{key}"]
        values.update(plain["state"].get(name, {}))
    groups = []
    for group in plain["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optim_state["param_groups"] = groups
    set_optimizer_state_dict(model, optimizer, optim_state)


def _dcp_load(dcp: Any, tensors: dict[str, torch.Tensor], reader: Any, path: Path) -> None:
    try:
        dcp.load(tensors, storage_reader=reader)
    except Exception as exc:  # torch's CheckpointException wraps every process's error
        raise CheckpointError(f"{path}: the sharded checkpoint does not fit this run's model and optimizer "
                              f"({str(exc).splitlines()[0][:300]})") from exc


def latest_checkpoint(directory: Path | None) -> Path | None:
    """The checkpoint ``latest.json`` points at, or None when there is none."""
    if directory is None:
        return None
    pointer = Path(directory) / LATEST
    if not pointer.exists():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{pointer} is not a checkpoint pointer: {exc}") from exc
    path = Path(directory) / name
    if not (path / "state.json").exists():
        raise CheckpointError(f"{pointer} points at {path}, which is not a complete checkpoint")
    return path


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "state.json").read_text())


def check_identity(path: Path, expected: dict[str, str]) -> dict[str, Any]:
    """Refuse a checkpoint whose model, tokenizer, data or settings differ from this run's."""
    state = read_state(path)
    stored = state.get("identity", {})
    differing = [k for k in expected if stored.get(k) != expected[k]]
    if differing:
        raise CheckpointError(
            f"checkpoint {path} belongs to another run: its {', '.join(differing)} differ(s) "
            "from this run's; resuming it would mix two trainings. Remove the checkpoint folder "
            "or point checkpoint_dir elsewhere to start afresh"
        )
    return state


def load_weights(path: Path, model: torch.nn.Module) -> None:
    missing, unexpected = load_model(model, str(Path(path) / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    plain = json.loads((Path(path) / "optimizer.json").read_text())
    if not plain:
        return
    tensors = load_file(str(Path(path) / "optimizer.safetensors"))
    optimizer.load_state_dict(_join_optimizer_state(tensors, plain))
