"""Choosing where tensors live: a CUDA GPU when there is one, else the CPU.

The pipeline picks the device by itself, but a caller can ask for ``"cpu"`` or ``"cuda"`` /
``"cuda:N"`` explicitly. Asking for a GPU that is not there is an error, never a silent
fall-back to the CPU: a run that the user expected to take minutes should not quietly take
hours.
"""

from __future__ import annotations

import torch

from transfer.errors import VocabTransferError


class DeviceError(VocabTransferError):
    """The requested device does not exist on this machine or is not supported."""


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    ``None`` gives ``cuda`` when a CUDA GPU is visible, else ``cpu``. ``"cpu"``, ``"cuda"``
    and ``"cuda:N"`` are honoured; asking for CUDA without a usable GPU raises
    :class:`DeviceError`.
    """
    if preferred is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(
            f"device={preferred!r} is not a device name; use 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"device={preferred!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device={preferred!r} was requested but no CUDA GPU is available "
            "(is the CUDA build of torch installed?); use device='cpu' or leave it unset"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(f"device={preferred!r} does not exist: this machine has {count} GPU(s)")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def place_model(model: torch.nn.Module, device: str | torch.device | None = None) -> torch.device:
    """Move ``model`` to the device to use and return that device.

    With an explicit ``device`` the model is moved there. With ``None`` a model that already
    sits on a GPU stays where it is (the caller placed it on purpose, possibly sharded with
    a device map); a CPU model goes to :func:`pick_device`'s choice.
    """
    if device is None:
        current = model_device(model)
        if current.type != "cpu" or getattr(model, "hf_device_map", None):
            return current
    target = pick_device(device)
    model.to(target)
    return target
