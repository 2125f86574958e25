"""Refuse a run whose training would not fit in memory before its first stage.

The trainer checks its memory estimate (``transfer.train.memory``) when training starts,
which comes after the corpus, tokenizer and initialization stages: minutes to hours. The
same estimate needs only the shapes of the model the train stage will train: the source
architecture with the target vocabulary, built on the meta device from the source's
config (no weights read; a folder with only ``config.json`` and a tokenizer is enough).
``check_training_memory`` compares it with the memory the trainer would find (free GPU
memory, or available RAM capped by a cgroup limit and by ``VOCAB_TRANSFER_MEMORY_LIMIT``)
and refuses with the estimate, before any stage. The plan (``transfer.planning.plan``)
records this estimate, which validation checked, once.

The estimate is one device's, for each training stage (:class:`MemoryPlan`, built by
``transfer.train.memory_plan.device_memory_plan``, which the trainer calls with its own model),
with the run's layout on the devices:

- the loss: the chosen ``loss_kernel``'s figure (``loss_memory_bytes``: chunk x vocabulary
  for the chunked kernel, tokens x vocabulary for the whole logits);
- sharding over ``nproc_per_node x nnodes`` processes (``transfer.train.sharding``): under
  fsdp weights, gradients and AdamW moments are divided by the world size, plus the groups
  gathered whole at a time; under ddp every device holds all of them; each process's
  micro-batch is its share of the step (``per_process_batch``);
- activation checkpointing: each layer's input (the float32 residual stream) kept for every
  layer, and one layer's activations at a time, recomputed in the backward pass;
- the stage: the embeddings-only stage's trainable parameters are the embedding rows (with
  their gradients and moments), the whole-model stage's everything.
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
    from transfer.train.memory_plan import MemoryPlan


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


def training_stages(cfg: AdaptConfig) -> list[str]:
    """The trainer's stages for ``cfg``: embeddings with the body frozen, then the whole
    model when ``full_steps``."""
    return ["embeddings", "full"] if cfg.full_steps else ["embeddings"]


def training_memory_plan(cfg: AdaptConfig, config: PretrainedConfig | None, *, device_type: str | None = None,
                         bf16: bool | None = None, available: int | None = None) -> MemoryPlan | None:
    """One device's memory for each training stage of this run, with the inputs the trainer
    gives it: bf16 activations where it would autocast, fused attention on a GPU, the run's
    processes, sharding, activation checkpointing and loss kernel. ``device_type``, ``bf16``
    and ``available`` default to this machine's (a plan for other machines gives them).
    None without a train stage or a readable config. (OFA trains a factorized embedding,
    fewer parameters: for it this is an upper bound.)"""
    if config is None or not cfg.total_train_steps:
        return None
    from transfer.engine.devices import pick_device
    from transfer.train.launch import per_process_batch
    from transfer.train.memory_plan import device_memory_plan
    from transfer.train.run_inputs import uses_bf16

    if device_type is None:
        device = pick_device(cfg.device)
        device_type = device.type
        bf16 = uses_bf16(cfg.precision, device) if bf16 is None else bf16
    if bf16 is None:
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device_type == "cuda")
    world = cfg.nproc_per_node * cfg.nnodes
    micro, accumulation = per_process_batch(cfg.batch_size, cfg.grad_accumulation, world)
    model = training_model_shape(cfg, config)
    return device_memory_plan(
        model, training_stages(cfg), micro_batch=micro, block_size=cfg.block_size,
        grad_accumulation=accumulation, device_type=device_type, bf16=bf16,
        world_size=world, sharding=cfg.sharding,
        activation_checkpointing=cfg.activation_checkpointing, loss_kernel=cfg.loss_kernel,
        distills=cfg.objective != "next_token", compiles=bool(cfg.compile), available=available)


def training_memory_estimate(cfg: AdaptConfig, config: PretrainedConfig | None) -> MemoryEstimate | None:
    """The largest stage's estimate of :func:`training_memory_plan` on this machine."""
    plan = training_memory_plan(cfg, config)
    return plan.peak if plan is not None else None


def planning_device(cfg: AdaptConfig, *, planning_only: bool = False) -> tuple[str, int]:
    """(device type, bytes one training device has) for the plan. With ``device_memory``
    and ``planning_only`` (a dry run) the declared hardware, not this machine's: a laptop
    can plan an 8-GPU run. Otherwise the device the trainer would use here and its measured
    memory (``available_memory``), capped by ``device_memory`` when given."""
    import torch

    from transfer.engine.devices import pick_device
    from transfer.train.memory import available_memory, parse_bytes

    declared = parse_bytes(cfg.device_memory) if cfg.device_memory else None
    if declared is not None and planning_only:
        return (torch.device(cfg.device).type if cfg.device else "cuda"), declared
    device = pick_device(cfg.device)
    available = available_memory(device)
    return device.type, min(available, declared) if declared is not None else available


def planned_memory(cfg: AdaptConfig, source_folder: Path | None = None, *,
                   planning_only: bool = False) -> tuple[MemoryPlan, int] | None:
    """The run's :class:`MemoryPlan` on the device the trainer would use (``planning_device``),
    and the bytes one such device has; None without training or a readable source config.
    The refusal and the dry run's table both ask here."""
    if not cfg.total_train_steps:
        return None
    config = source_model_config(cfg, source_folder)
    if config is None:
        return None
    device_type, available = planning_device(cfg, planning_only=planning_only)
    plan = training_memory_plan(cfg, config, device_type=device_type, available=available)
    return (plan, available) if plan is not None else None


def check_training_memory(cfg: AdaptConfig, *, planning_only: bool = False) -> MemoryEstimate | None:
    """Raise :class:`MemoryBudgetError` (with the estimate, what is available and a
    configuration that would fit) when the run's training would not fit in one device's
    memory; return the estimate otherwise (None: no training, or a source whose config is
    unreadable). ``planning_only``: a dry run, planned for ``device_memory``'s hardware."""
    from transfer.train.memory import check_memory

    planned = planned_memory(cfg, planning_only=planning_only)
    if planned is None:
        return None
    plan, available = planned
    try:
        # each process's micro-batch: the hint's batch_size and grad_accumulation are per process
        import torch

        check_memory(plan.peak, available, device=torch.device(plan.device_type), batch_size=plan.batch_size,
                     block_size=cfg.block_size, grad_accumulation=plan.grad_accumulation)
    except MemoryBudgetError as error:
        # the trainer's message says what is needed, what is free and what would fit
        raise MemoryBudgetError(f"refused before the first stage: {error}") from error
    return plan.peak
