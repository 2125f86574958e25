"""The plan of a run without running it (``--dry-run``): its stages, which are cached, and
a rough estimate of time and memory.

Stage keys are content addresses computed from parameters and upstream keys only, so the
whole chain of keys is known before anything is built: a stage that is not built yet is
given the folder it *would* have (``StageCache.path``). The walk is the pipeline's own
(``transfer.pipeline.walk_stages``), so plan and run visit the same stages with the same
keys; ``tests/test_cli.py`` checks that against a real run. The peak memory is the
trainer's own estimate (``transfer.train.memory.estimate_training_memory``) for the model
the train stage will train, built from the source's config on the meta device (no weights).
"""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from transfer import pipeline
from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.stages import StageSpec
from transfer.settings.config import AdaptConfig
from transfer.settings.memory_budget import source_model_config as source_config
from transfer.settings.memory_budget import training_memory_estimate
from transfer.settings.validate import validate_config

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# Rough sizes behind the estimate (documented so a user can judge it).
_TOKENS_PER_EVAL_TEXT = 64  # a Bible verse is ~30 words, ~1.2-2.2 tokens per word
_TRAIN_FLOPS_PER_PARAM_TOKEN = 6  # forward + backward (the body's backward is still needed)
_EVAL_FLOPS_PER_PARAM_TOKEN = 2
_LOAD_SAVE_BYTES_PER_SECOND = 200e6
_SOURCE_LOAD_SECONDS = 20.0  # de-quantizing the packaged GGUF on 2 cores (docs/DESIGN.md)
# eflomal in the links stage runs ~5000/sqrt(n) sampler iterations over n pairs (its default
# schedule, transfer/vectors/eflomal_process.py), so its time grows with sqrt(n): the demo's
# 84,142 verse pairs took 137 s and 240 s on 2 cores shared with other benchmarks (0.47 and
# 0.83 s per sqrt(pair)); 0.6 for a machine of its own
_ALIGN_SECONDS_PER_SQRT_PAIR = 0.6
_BIBLE_TRAIN_VERSES = 28_000  # train verses of one translation (about 90% of 31,102)
_BYTES_PER_PARALLEL_PAIR = 250  # both sides of a sentence pair, UTF-8
_GZIP_RATIO = 3  # gzip's usual ratio on sentence text: a .gz holds about 3x its size


@dataclass
class PlannedStage:
    """One stage of the plan: its label, its key and folder, whether it is cached."""

    label: str
    stage: str
    key: str
    path: str
    cached: bool
    seconds: float = 0.0  # rough estimate of the build; 0 when cached


@dataclass
class SourceSize:
    """What the time estimate needs to know about the source model (read from file headers)."""

    parameters: int | None = None


@dataclass
class Plan:
    """The stages of a run in order, and rough totals for the stages still to build."""

    stages: list[PlannedStage] = field(default_factory=list)
    source: SourceSize = field(default_factory=SourceSize)
    flops_per_second: float = 0.0
    peak_memory_bytes: int | None = None

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def to_build(self) -> list[PlannedStage]:
        return [s for s in self.stages if not s.cached]


def _safetensors_size(folder: Path) -> SourceSize:
    """Parameter count from safetensors headers (no weights read)."""
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            shape = info["shape"]
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return SourceSize(total or None)


def _gguf_size(path: Path) -> SourceSize:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return SourceSize(sum(int(t.n_elements) for t in reader.tensors))


def source_size(cfg: AdaptConfig, source_folder: Path | None) -> SourceSize:
    """Read the size from the cached source copy if there is one, else from the source."""
    from transfer.source.loading import resolve_source

    if source_folder is not None and (source_folder / "model").is_dir():
        return _safetensors_size(source_folder / "model")
    spec = resolve_source(cfg.source_model)
    if spec.kind == "gguf":
        return _gguf_size(Path(spec.location))
    if spec.kind == "folder":
        return _safetensors_size(Path(spec.location))
    return SourceSize()  # a hub id: nothing local to read


def measure_flops_per_second(device: str | None) -> float:
    """Sustained fp32 matmul throughput of the device the run would use (a ~0.2 s probe)."""
    import torch

    from transfer.engine.devices import pick_device

    target = pick_device(device)
    size = 512
    a = torch.randn(size, size, device=target)
    b = torch.randn(size, size, device=target)
    a @ b  # warm-up
    repeats = 0
    started = time.perf_counter()
    while time.perf_counter() - started < 0.2:
        a @ b
        repeats += 1
    if target.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def _estimate(stage: PlannedStage, spec: StageSpec, cfg: AdaptConfig, size: SourceSize,
              flops: float, corpus_bytes: int) -> float:
    params = size.parameters or 0
    model_bytes = 4 * params
    io = 2 * model_bytes / _LOAD_SAVE_BYTES_PER_SECOND
    if stage.stage == "source":
        return _SOURCE_LOAD_SECONDS + io
    if stage.stage == "corpus":
        return 1.0 + corpus_bytes / 50e6
    if stage.stage == "tokenizer":
        return 2.0 + corpus_bytes / 2e6  # BPE training, a few MB/s on 2 cores
    if stage.stage == "evaluate":
        tokens = cfg.eval_texts * _TOKENS_PER_EVAL_TEXT
        return io + _EVAL_FLOPS_PER_PARAM_TOKEN * params * tokens / flops
    if stage.stage == "links":
        rel = float(cfg.strategy_params.get("align_rel_iterations", 1.0))
        return io + 2.0 + _ALIGN_SECONDS_PER_SQRT_PAIR * rel * math.sqrt(parallel_pairs_estimate(cfg))
    if "train" in stage.stage:
        tokens = cfg.total_train_steps * cfg.batch_size * cfg.block_size
        return io + _TRAIN_FLOPS_PER_PARAM_TOKEN * params * tokens / flops
    return io  # init, surgery and stages that land later: loading and saving dominate


def _peak_memory(cfg: AdaptConfig, config: PretrainedConfig | None) -> int | None:
    """The trainer's memory estimate for this run (``transfer.settings.memory_budget``,
    which also refuses a run that would not fit before its first stage)."""
    estimate = training_memory_estimate(cfg, config)
    return estimate.total if estimate is not None else None


def plan_adaptation(cfg: AdaptConfig, *, measure: bool = True) -> Plan:
    """Every stage ``run_adaptation(cfg)`` would run, in order, with keys and cache state."""
    validate_config(cfg)
    cache = StageCache(cfg.cache_dir)
    plan = Plan()

    def add(spec: StageSpec, label: str) -> StageOutput:
        cached = cache.is_complete(spec.stage, spec.key)
        path = cache.path(spec.stage, spec.key)
        # two labels can name one stage (the source model's evaluation on texts that are
        # also the learning curve's): it runs once, so it is planned once
        if not any(p.stage == spec.stage and p.key == spec.key for p in plan.stages):
            plan.stages.append(PlannedStage(label, spec.stage, spec.key, str(path), cached))
        return StageOutput(spec.stage, spec.key, path)

    specs: dict[str, StageSpec] = {}

    def stage(spec: StageSpec, label: str) -> StageOutput:
        specs[label] = spec
        return add(spec, label)

    source = pipeline.walk_stages(cfg, stage).source
    source_done = cache.get(source.stage, source.key)
    source_folder = source_done.path if source_done else None
    plan.source = source_size(cfg, source_folder)
    plan.peak_memory_bytes = _peak_memory(cfg, source_config(cfg, source_folder))
    if measure and plan.to_build:
        plan.flops_per_second = measure_flops_per_second(cfg.device)
        corpus_bytes = _corpus_bytes(cfg)
        for planned in plan.to_build:
            planned.seconds = _estimate(planned, specs[planned.label], cfg, plan.source,
                                        plan.flops_per_second, corpus_bytes)
    return plan


def parallel_pairs_estimate(cfg: AdaptConfig) -> int:
    """About how many sentence pairs the links stage aligns: the train verses of each source
    Bible translation, or the parallel files' text size (gzip counted at 3x) over ~250
    bytes a pair; each source capped at ``parallel_max_pairs``."""
    cap = cfg.parallel_max_pairs or float("inf")
    if not cfg.parallel_files:
        return int(min(_BIBLE_TRAIN_VERSES, cap) * len(cfg.source_train_bible))
    from transfer.corpus.parallel_files import resolve_parallel
    from transfer.errors import ParallelCorpusError

    total = 0
    for entry in cfg.parallel_files:
        try:  # the files the corpus stage will read (a Moses prefix names exactly two)
            files = resolve_parallel(entry, cfg.parallel_source_language, cfg.target_language,
                                     cfg.parallel_fields).files
        except ParallelCorpusError:
            continue  # validation refuses the entry with its own message
        text_bytes = sum(Path(f).stat().st_size * (_GZIP_RATIO if f.endswith(".gz") else 1) for f in files)
        total += int(min(text_bytes / _BYTES_PER_PARALLEL_PAIR, cap))
    return total


def _corpus_bytes(cfg: AdaptConfig) -> int:
    """Approximate size of the target corpus (Bible: ~4 MB per translation, docs/DESIGN.md)."""
    total = 4_000_000 * len(cfg.target_bible)
    for path in cfg.target_files:
        p = Path(path)
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total
