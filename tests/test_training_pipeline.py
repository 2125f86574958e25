"""The pipeline's train stage runs the staged trainer and leaves learning-curve files in
its stage folder; checkpoints go outside the stage folder (they must survive a crash)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache
from transfer.engine.stages import BuildContext, execute
from transfer.init.stage import init_spec
from transfer.settings.config import AdaptConfig
from transfer.source.stage import source_spec
from transfer.tokenizer.stage import tokenizer_spec
from transfer.train import TrainingCallback
from transfer.train.stage import train_spec


def test_train_stage_writes_curves_and_runs_both_stages(tmp_path: Path, tiny_source: Path, tiny_corpus: Path):
    cfg = AdaptConfig(
        source_model=str(tiny_source), target_language="de", target_bible=[], source_bible=[],
        target_files=[str(tiny_corpus)], vocab_size=350, train_steps=2, full_steps=2, batch_size=2,
        block_size=16, eval_texts=8, dev_fraction=0.1, test_fraction=0.1, device="cpu",
        cache_dir=tmp_path / "cache", output_dir=tmp_path / "models", eval_every=2, curve_texts=5,
        checkpoint_every=2, lr_schedule="cosine", warmup_steps=1, strategy="mean",
    )
    cache = StageCache(cfg.cache_dir)
    corpus, _ = execute(corpus_spec(cfg), cache)
    source, _ = execute(source_spec(cfg), cache)
    tokenizer, _ = execute(tokenizer_spec(cfg, corpus, source), cache)
    init, _ = execute(init_spec(cfg, source, tokenizer), cache)
    spec = train_spec(cfg, init, corpus)
    seen: list[int] = []

    class Steps(TrainingCallback):
        def on_step(self, step, metrics) -> None:
            seen.append(step)

    trained, cached = execute(spec, cache, BuildContext(callbacks=(Steps(),)))
    assert seen == [1, 2, 3, 4]
    assert not cached
    log = json.loads(trained.file("train_log.json").read_text())
    assert log["steps"] == 4 and len(log["losses"]) == 4
    assert [p["stage"] for p in log["curve"]["points"]] == ["embeddings", "embeddings", "full"]
    rows = list(csv.DictReader(trained.file("curve.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    # the curve's first and last points are the init and trained models scored on the
    # first 5 dev texts, recomputed here
    from transfer.corpus.stage import read_lines
    from transfer.evaluate.bpb import bits_per_byte
    from transfer.source.loading import load_source

    dev = read_lines(corpus.path / "dev.target.txt", 5)
    assert len(dev) == 5
    for row, folder in ((rows[0], init.path), (rows[-1], trained.path)):
        expected = bits_per_byte(*load_source(str(folder / "model")), dev).bpb
        # the same float32 weights (saved exactly) scored the same way; the CSV holds repr()
        assert float(row["dev_bpb"]) == pytest.approx(expected, rel=1e-4)
    assert trained.file("curve.png").exists() and trained.file("curve.json").exists()
    assert (trained.path / "model" / "model.safetensors").exists()
    assert (cfg.cache_dir / "_checkpoints" / "train" / spec.key / "latest.json").exists()
    # how-settings (device, checkpoint interval) stay out of the cache key; what-settings do not
    assert train_spec(cfg.model_copy(update={"checkpoint_every": 5}), init, corpus).key == spec.key
    assert train_spec(cfg.model_copy(update={"full_steps": 3}), init, corpus).key != spec.key
