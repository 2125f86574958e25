"""The dry-run plan's peak memory is the trainer's own estimate for the model it will train
(the source's real layer count and widths), not a formula of its own with 32 layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.plan import plan_adaptation
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute
from transfer.settings.config import AdaptConfig
from transfer.source.loading import load_source
from transfer.source.stage import source_spec
from transfer.train.memory import estimate_training_memory


def _config(tmp_path: Path, source: Path, corpus: Path, **overrides) -> AdaptConfig:
    settings = {
        "source_model": str(source), "target_language": "de", "target_bible": [], "source_bible": [],
        "target_files": [str(corpus)], "vocab_size": 350, "train_steps": 2, "full_steps": 2,
        "batch_size": 4, "block_size": 32, "device": "cpu", "precision": "fp32", "strategy": "mean",
        "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "models",
    }
    return AdaptConfig(**{**settings, **overrides})


def _trainer_estimate(source: Path, cfg: AdaptConfig, *, full: bool) -> int:
    """What the trainer estimates for the 2-layer source with the target vocabulary."""
    model, _ = load_source(str(source))
    assert model.config.num_hidden_layers == 2
    model.resize_token_embeddings(cfg.vocab_size)
    if full:
        trainable = sum(p.numel() for p in model.parameters())
    else:  # tied head: the input embedding is all that trains
        trainable = model.get_input_embeddings().weight.numel()
    return estimate_training_memory(model, batch_size=cfg.batch_size, block_size=cfg.block_size,
                                    trainable_parameters=trainable).total


@pytest.mark.parametrize("full_steps", [2, 0])
def test_plan_memory_is_the_trainers_estimate(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                              full_steps: int) -> None:
    cfg = _config(tmp_path, tiny_source, tiny_corpus, full_steps=full_steps)
    expected = _trainer_estimate(tiny_source, cfg, full=bool(full_steps))
    # from the source folder's config (source stage not built yet) ...
    assert plan_adaptation(cfg, measure=False).peak_memory_bytes == expected
    # ... and from the cached source stage's copy
    execute(source_spec(cfg), StageCache(cfg.cache_dir))
    plan = plan_adaptation(cfg, measure=False)
    assert next(s for s in plan.stages if s.stage == "source").cached
    assert plan.peak_memory_bytes == expected


def test_no_train_stage_no_memory_estimate(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = _config(tmp_path, tiny_source, tiny_corpus, train_steps=0, full_steps=0)
    assert plan_adaptation(cfg, measure=False).peak_memory_bytes is None
