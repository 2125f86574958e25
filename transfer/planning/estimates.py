"""Rough estimates of a run's stages before it runs: the source model's size (read from
file headers), the device's matmul throughput, and each stage's time from those; the
plan (``transfer.planning.plan``) attaches them to its stages for ``--dry-run``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from transfer.engine.stage_table import is_training_stage
from transfer.settings.config import AdaptConfig
from transfer.source.weight_files import gguf_header, safetensors_parameters

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
_BIBLE_BYTES = 4_000_000  # one translation's text (docs/DESIGN.md)
# fastText skipgram (one thread, dim 100, 10 epochs) on the shared 2-core machine, 2026-12-08: the
# three English Bibles (12.5 MB) in 118 s, 1.06 MB a second an epoch; the sampled text of five
# Bibles (sw, id, tr, vi, pl; 19.3 MB, longer words, more n-grams a byte) in 420 s, 0.46 MB/s.
# Their geometric mean: each within 1.5x
_FASTTEXT_BYTES_PER_SECOND = 0.7e6


@dataclass
class SourceSize:
    """What the time estimate needs to know about the source model (read from file headers)."""

    parameters: int | None = None


def _safetensors_size(folder: Path) -> SourceSize:
    """Parameter count from safetensors headers (no weights read)."""
    total = sum(safetensors_parameters(path) for path in sorted(folder.glob("*.safetensors")))
    return SourceSize(total or None)


def _gguf_size(path: Path) -> SourceSize:
    return SourceSize(sum(gguf_header(path).tensors.values()))


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


def stage_seconds(stage: str, cfg: AdaptConfig, size: SourceSize, flops: float, corpus_bytes: int,
                  label: str = "", params_of_stage: dict | None = None) -> float:
    """Rough seconds to build one stage of ``cfg``'s run on a device of ``flops`` FLOP/s;
    ``label`` names the stage in the run (``fasttext.source``), ``params_of_stage`` its spec's
    parameters (an align stage that induces its dictionary runs eflomal)."""
    params = size.parameters or 0
    model_bytes = 4 * params
    io = 2 * model_bytes / _LOAD_SAVE_BYTES_PER_SECOND
    if stage == "source":
        return _SOURCE_LOAD_SECONDS + io
    if stage == "corpus":
        return 1.0 + corpus_bytes / 50e6
    if stage == "tokenizer":
        return 2.0 + corpus_bytes / 2e6  # BPE training, a few MB/s on 2 cores
    if stage == "evaluate":
        tokens = cfg.eval_texts * _TOKENS_PER_EVAL_TEXT
        return io + _EVAL_FLOPS_PER_PARAM_TOKEN * params * tokens / flops
    if stage == "links":
        rel = float(cfg.strategy_params.get("align_rel_iterations", 1.0))
        return io + 2.0 + _ALIGN_SECONDS_PER_SQRT_PAIR * rel * math.sqrt(parallel_pairs_estimate(cfg))
    if stage == "fasttext":
        side = "source" if label.endswith("source") else "target"
        return 2.0 + fasttext_bytes(cfg, side) * cfg.vector_epochs / _FASTTEXT_BYTES_PER_SECOND
    if stage == "align":
        if "induced" in str((params_of_stage or {}).get("dictionaries", "")):
            return 5.0 + _ALIGN_SECONDS_PER_SQRT_PAIR * math.sqrt(parallel_pairs_estimate(cfg))
        return 5.0  # Procrustes on a dictionary: seconds
    if is_training_stage(stage):
        tokens = cfg.total_train_steps * cfg.batch_size * cfg.block_size
        return io + _TRAIN_FLOPS_PER_PARAM_TOKEN * params * tokens / flops
    return io  # init, surgery and stages that land later: loading and saving dominate


def parallel_pairs_estimate(cfg: AdaptConfig) -> int:
    """About how many sentence pairs an eflomal stage aligns: for each target language (a run of
    several pairs each one's own), the train verses of its first Bible with each source Bible
    translation, or its parallel files' text size (gzip counted at 3x) over ~250 bytes a pair;
    each source capped at ``parallel_max_pairs``."""
    from transfer.corpus.languages import language_corpora

    cap = cfg.parallel_max_pairs or float("inf")
    total = 0
    for corpus in language_corpora(cfg):
        if not corpus.parallel:
            # a run of one language pairs its Bible text (the config's default Bibles included)
            if corpus.bible or not cfg.several_languages:
                total += int(min(_BIBLE_TRAIN_VERSES, cap) * len(cfg.source_train_bible))
            continue
        total += _parallel_files_pairs(cfg, corpus.language, corpus.parallel, cap)
    return total


def _parallel_files_pairs(cfg: AdaptConfig, language: str, entries: list[str], cap: float) -> int:
    from transfer.corpus.parallel_files import resolve_parallel
    from transfer.errors import ParallelCorpusError

    total = 0
    for entry in entries:
        try:  # the files the corpus stage will read (a Moses prefix names exactly two)
            files = resolve_parallel(entry, cfg.parallel_source_language, language, cfg.parallel_fields).files
        except ParallelCorpusError:
            continue  # validation refuses the entry with its own message
        text_bytes = sum(Path(f).stat().st_size * (_GZIP_RATIO if f.endswith(".gz") else 1) for f in files)
        total += int(min(text_bytes / _BYTES_PER_PARALLEL_PAIR, cap))
    return total


def fasttext_bytes(cfg: AdaptConfig, side: str) -> int:
    """About the bytes a fastText stage reads an epoch: the source side's train Bibles
    (``source_train_bible``), or the target corpus; each Bible capped at ``vector_max_verses``."""
    per_bible = _BIBLE_BYTES if cfg.vector_max_verses is None else min(_BIBLE_BYTES, cfg.vector_max_verses * 130)
    if side == "source":
        return per_bible * len(cfg.source_train_bible)
    return corpus_bytes(cfg) - (_BIBLE_BYTES - per_bible) * len(cfg.target_bible)


def corpus_bytes(cfg: AdaptConfig) -> int:
    """Approximate size of the target corpus (Bible: ~4 MB per translation, docs/DESIGN.md)."""
    total = _BIBLE_BYTES * len(cfg.target_bible)
    for path in cfg.target_files:
        p = Path(path)
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total
