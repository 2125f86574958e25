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
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from transfer.engine.cache import atomic_write, replacing_directory
from transfer.errors import CheckpointError

LATEST = "latest.json"


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


def restore_rng(path: Path) -> None:
    """Set the torch generators to the states stored in checkpoint ``path``."""
    states = load_file(str(path / "rng.safetensors"))
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
    for old in sorted(directory.glob("step-*"))[:-keep] if keep > 0 else []:
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)
    return final


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
