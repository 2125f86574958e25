"""Refuse a run whose training would not fit in memory before its first stage.

The trainer checks its memory estimate (``transfer.train.memory``) when training starts,
which comes after the corpus, tokenizer and initialization stages: minutes to hours. The
same estimate needs only the shapes of the model the train stage will train: the source
architecture with the target vocabulary, built on the meta device from the source's
config (no weights read). ``check_training_memory`` compares it with the memory the
trainer would find (free GPU memory, or available RAM capped by a cgroup limit and by
``VOCAB_TRANSFER_MEMORY_LIMIT``) and refuses with the estimate, before any stage. The
plan (``transfer.planning.plan``) records this estimate, which validation checked, once.
"""

from __future__ import annotations

import copy
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.errors import MemoryBudgetError
from transfer.source.weight_files import gguf_header

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

    from transfer.settings.config import AdaptConfig
    from transfer.train.memory import MemoryEstimate


def source_model_config(cfg: AdaptConfig, source_folder: Path | None = None) -> PretrainedConfig | None:
    """The source model's config, read without loading weights: from the cached source
    copy if there is one, else from the source (a folder's config.json, the GGUF's
    header, a hub id's config); None when it cannot be read (a hub id offline)."""
    from transformers import AutoConfig

    from transfer.source.loading import resolve_source

    try:
        if source_folder is not None and (source_folder / "model" / "config.json").is_file():
            return AutoConfig.from_pretrained(source_folder / "model")
        spec = resolve_source(cfg.source_model)
        if spec.kind == "gguf":
            return gguf_model_config(Path(spec.location))
        revision = {"revision": spec.revision} if spec.revision else {}
        return AutoConfig.from_pretrained(spec.location, trust_remote_code=False, **revision)
    except (OSError, ValueError):
        return None


#: llama.cpp architecture names that transformers spells otherwise (its GGUF loader renames
#: them the same way, ``transformers.modeling_gguf_pytorch_utils``)
GGUF_ARCH_NAMES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
#: GGUF files of these architectures hold the text model only: its config is the text one,
#: not the multimodal wrapper with a default-sized text model and a vision tower (the
#: Gemma-3-270M estimate was 28 GiB from that wrapper)
GGUF_TEXT_MODEL_TYPES = {"gemma3": "gemma3_text", "gemma4": "gemma4_text"}


def gguf_model_config(path: Path) -> PretrainedConfig:
    """A GGUF model's config for the estimate: from its header (a tenth of a second), or by
    transformers' own loader for an architecture the header mapping does not cover."""
    from transformers import AutoConfig

    try:
        return gguf_shape_config(path)
    except (KeyError, ValueError, EOFError, struct.error):
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)


def gguf_shape_config(path: Path) -> PretrainedConfig:
    """The architecture of a GGUF model as a transformers config, from the header alone,
    with transformers' own GGUF key names (``GGUF_CONFIG_MAPPING``): what the memory
    estimate needs (layers, widths, heads, vocabulary, tied head) without the seconds
    ``AutoConfig.from_pretrained(gguf_file=...)`` spends parsing the tokenizer."""
    from transformers import AutoConfig
    from transformers.integrations.ggml import GGUF_CONFIG_DEFAULTS_MAPPING, GGUF_CONFIG_MAPPING

    header = gguf_header(path)
    fields, names = header.fields, header.tensors
    arch = str(fields["general.architecture"])  # llama.cpp's name: the prefix of its keys
    model_type = GGUF_ARCH_NAMES.get(arch, arch)
    mapping = GGUF_CONFIG_MAPPING[model_type]
    values: dict[str, Any] = dict(GGUF_CONFIG_DEFAULTS_MAPPING.get(model_type) or {})
    for key, value in fields.items():
        name = mapping.get(key.removeprefix(arch + ".")) if key.startswith(arch + ".") else None
        if name and name != -1 and not isinstance(value, tuple):  # -1: a key transformers skips
            values[name] = value
    if "vocab_size" not in values and isinstance(fields.get("tokenizer.ggml.tokens"), tuple):
        values["vocab_size"] = fields["tokenizer.ggml.tokens"][1]
    values["tie_word_embeddings"] = "output.weight" not in names
    return AutoConfig.for_model(GGUF_TEXT_MODEL_TYPES.get(model_type, model_type), **values)


def training_model_shape(cfg: AdaptConfig, config: PretrainedConfig) -> PreTrainedModel:
    """The model the train stage trains, as shapes only (meta device, no memory): the
    source architecture with the target vocabulary (``vocab_size`` rows, the budget)."""
    import torch

    from transfer.source.objective import auto_model_class

    config = copy.deepcopy(config)
    config.vocab_size = cfg.vocab_size
    with torch.device("meta"):
        return auto_model_class(config).from_config(config)


def training_memory_estimate(cfg: AdaptConfig, config: PretrainedConfig | None) -> MemoryEstimate | None:
    """The trainer's memory estimate for this run, with the inputs the trainer gives it:
    the largest estimate over its stages (embeddings with the body frozen, then the whole
    model when ``full_steps``), bf16 activations where it would autocast, fused attention on a GPU.
    None without a train stage or a readable config. (OFA trains a factorized embedding,
    fewer parameters: for it this is an upper bound.)"""
    if config is None or not cfg.total_train_steps:
        return None
    from transfer.engine.devices import pick_device
    from transfer.train.memory import estimate_for_run
    from transfer.train.run_inputs import uses_bf16

    model = training_model_shape(cfg, config)
    device = pick_device(cfg.device)
    return estimate_for_run(model, ["embeddings", "full"] if cfg.full_steps else ["embeddings"],
                            batch_size=cfg.batch_size, block_size=cfg.block_size, device=device,
                            bf16=uses_bf16(cfg.precision, device))


def check_training_memory(cfg: AdaptConfig) -> MemoryEstimate | None:
    """Raise :class:`MemoryBudgetError` (with the estimate, what is available and a
    configuration that would fit) when the run's training would not fit in memory; return
    the estimate otherwise (None: no training, or a source whose config is unreadable)."""
    from transfer.engine.devices import pick_device
    from transfer.train.memory import available_memory, check_memory

    if not cfg.total_train_steps:
        return None
    estimate = training_memory_estimate(cfg, source_model_config(cfg))
    if estimate is None:
        return None
    device = pick_device(cfg.device)
    available = available_memory(device)
    try:
        check_memory(estimate, available, device=device, batch_size=cfg.batch_size,
                     block_size=cfg.block_size, grad_accumulation=cfg.grad_accumulation)
    except MemoryBudgetError as error:
        # the trainer's message says what is needed, what is free and what would fit
        raise MemoryBudgetError(f"refused before the first stage: {error}") from error
    return estimate
