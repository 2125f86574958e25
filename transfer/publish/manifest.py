"""Run manifest: the full resolved configuration plus the environment it ran in.

Saved as ``run_manifest.json`` in every exported model folder (and so in the registry's
artifacts), so a run can be reproduced: ``vocab-transfer adapt --config run_manifest.json``
reads the ``config`` part back (``load_config_file``) and, with the same code and inputs,
lands on the same stage keys. The environment part (installed package versions, Python,
device, code version) says what else has to match; ``environment_differences`` lists what
does not.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from transfer.engine.cache import atomic_write
from transfer.engine.code_version import code_version
from transfer.errors import VocabTransferError
from transfer.settings.config import AdaptConfig

MANIFEST_KIND = "vocab-transfer/run-manifest"
MANIFEST_FILE = "run_manifest.json"
SCHEMA_VERSION = 1
# the packages whose versions change numbers; differences in these are worth a warning
KEY_PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "scipy", "fasttext", "gensim",
                "eflomal", "entmax", "faiss-cpu", "sentencepiece", "safetensors")


class ConfigFileError(VocabTransferError):
    """A configuration or manifest file cannot be read."""


class DeviceInfo(BaseModel):
    """The device the run computed on."""

    requested: str | None
    resolved: str
    cuda_available: bool
    gpus: list[str] = Field(default_factory=list)
    torch_cuda: str | None = None


class EnvironmentInfo(BaseModel):
    """Where the run happened: interpreter, machine, device and every installed package."""

    python: str
    platform: str
    machine: str
    cpu_count: int | None
    memory_gb: float | None
    device: DeviceInfo
    code_version: str
    packages: dict[str, str]


class RunManifest(BaseModel):
    """What ``adapt --config`` needs to run it again, and what it ran on."""

    kind: Literal["vocab-transfer/run-manifest"] = MANIFEST_KIND
    schema_version: int = SCHEMA_VERSION
    created_at: str
    config: dict[str, Any] = Field(description="AdaptConfig, fully resolved (every default filled in)")
    environment: EnvironmentInfo
    stage_keys: dict[str, str] = Field(default_factory=dict, description="label -> 'stage:key'")
    plan: dict[str, Any] | None = Field(None, description="the run's plan: stages in order, memory estimate, notes")
    command: list[str] = Field(default_factory=list)


def _device_info(requested: str | None) -> DeviceInfo:
    import torch

    from transfer.engine.devices import DeviceError, pick_device

    try:
        resolved = str(pick_device(requested))
    except DeviceError:
        resolved = str(requested)
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return DeviceInfo(requested=requested, resolved=resolved, cuda_available=cuda, gpus=gpus,
                      torch_cuda=torch.version.cuda)


def installed_packages() -> dict[str, str]:
    """name -> version of every installed distribution (like ``pip freeze``)."""
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower()] = dist.version
    return dict(sorted(packages.items()))


def collect_environment(device: str | None = None) -> EnvironmentInfo:
    """Describe this interpreter, machine and device."""
    import psutil

    return EnvironmentInfo(
        python=sys.version.split()[0],
        platform=platform.platform(),
        machine=platform.machine(),
        cpu_count=psutil.cpu_count(logical=True),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        device=_device_info(device),
        code_version=code_version(),
        packages=installed_packages(),
    )


def pinned_config(cfg: AdaptConfig, stage_keys: dict[str, str] | None = None) -> dict[str, Any]:
    """``cfg`` as JSON with a hub source pinned: ``source_revision`` becomes the commit the
    source stage loaded (its ``source.json``), so a rerun from the manifest loads the same
    weights even after the branch moved (and lands on the same source stage key)."""
    config = cfg.model_dump(mode="json")
    stage, _, key = (stage_keys or {}).get("source", "").partition(":")
    record = Path(cfg.cache_dir) / stage / key / "source.json" if key else None
    if record is not None and record.is_file():
        source = json.loads(record.read_text())
        if source.get("revision"):
            config["source_model"], config["source_revision"] = source["source_model"], source["revision"]
    return config


def build_manifest(cfg: AdaptConfig, *, stage_keys: dict[str, str] | None = None,
                   plan: dict[str, Any] | None = None) -> RunManifest:
    """The manifest of a run of ``cfg`` in this environment (``plan``: the run plan's record)."""
    return RunManifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config=pinned_config(cfg, stage_keys),
        environment=collect_environment(cfg.device),
        stage_keys=dict(stage_keys or {}),
        plan=plan,
        command=list(sys.argv),
    )


def write_manifest(manifest: RunManifest, folder: Path) -> Path:
    """Write ``run_manifest.json`` into ``folder`` atomically."""
    path = Path(folder) / MANIFEST_FILE
    atomic_write(path, manifest.model_dump_json(indent=2) + "\n")
    return path


def read_manifest(path: Path) -> RunManifest:
    try:
        return RunManifest.model_validate_json(Path(path).read_text())
    except (OSError, ValidationError) as error:
        raise ConfigFileError(f"{path}: not a readable run manifest: {error}") from error


def is_manifest(values: Any) -> bool:
    return isinstance(values, dict) and values.get("kind") == MANIFEST_KIND


def environment_differences(manifest: RunManifest) -> list[str]:
    """What differs from the manifest's environment in ways that can change results."""
    notes = []
    current = code_version()
    if manifest.environment.code_version != current:
        notes.append(f"code version {current} differs from the manifest's "
                     f"{manifest.environment.code_version}: stages whose code changed will be rebuilt")
    installed = installed_packages()
    for name in KEY_PACKAGES:
        then, now = manifest.environment.packages.get(name), installed.get(name)
        if then != now:
            notes.append(f"{name} {now or 'not installed'} differs from the manifest's {then or 'none'}")
    return notes


def load_config_file(path: Path, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """AdaptConfig values from a JSON or YAML config file, or from a run manifest (its
    ``config`` part; ``warn`` gets the environment differences)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigFileError(f"config file {path}: {error.strerror or error}") from error
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigFileError(f"config file {path}: not valid YAML: {error}") from error
    else:
        try:
            values = json.loads(text)
        except ValueError as error:
            raise ConfigFileError(f"config file {path}: not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ConfigFileError(f"config file {path}: expected a mapping of AdaptConfig fields")
    if is_manifest(values):
        manifest = read_manifest(path)
        if warn is not None:
            for note in environment_differences(manifest):
                warn(note)
        return dict(manifest.config)
    return values
