"""The train stage on several processes from the product (issue #28, item 1): ``adapt
--nproc-per-node 2`` runs training under torchrun (2 gloo processes on CPU), the other
stages once, and gives the losses and the model of one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.helpers import config
from transfer.errors import TrainingError
from transfer.train.launch import per_process_batch

STEPS, LR = 3, 5e-4


def test_each_process_takes_an_equal_share_of_a_step() -> None:
    assert per_process_batch(4, 1, 1) == (4, 1)
    assert per_process_batch(4, 1, 2) == (2, 1)
    assert per_process_batch(3, 4, 2) == (3, 2)  # the micro-batch does not divide: the accumulation
    with pytest.raises(TrainingError, match="must divide batch_size=3 or grad_accumulation=1"):
        per_process_batch(3, 1, 2)


def test_a_step_that_cannot_be_shared_is_refused_before_any_stage(tmp_path: Path, tiny_source: Path,
                                                                  tiny_corpus: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, batch_size=3, nproc_per_node=2)
    with pytest.raises(TrainingError, match="nproc_per_node=2 must divide"):
        plan_adaptation(cfg)
    assert not Path(cfg.cache_dir).exists()


def test_two_processes_from_the_cli_match_one(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                              one_torch_thread) -> None:
    from flows.cli import app
    from transfer.pipeline import run_adaptation

    def cfg(name: str, **kw):
        return config(tmp_path / name, tiny_source, tiny_corpus, train_steps=STEPS, learning_rate=LR,
                      batch_size=2, eval_texts=4, **kw)

    one = run_adaptation(cfg("one"))
    config_file = tmp_path / "two.json"
    config_file.write_text(cfg("two").model_dump_json())
    ran = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--no-prefect", "--nproc-per-node", "2"])
    assert ran.exit_code == 0, ran.output
    two = json.loads((Path(cfg("two").output_dir) / cfg("two").model_name() / "adaptation.json").read_text())
    assert two["train_log"]["world_size"] == 2 and one.train_log["world_size"] == 1
    assert two["stage_keys"] == one.stage_keys  # a speed setting: the same stages
    # float32 gradients all-reduced in another order: losses agree to rounding, amplified at
    # most by the few AdamW updates between them
    assert two["train_log"]["losses"] == pytest.approx(one.train_log["losses"], rel=1e-4)
    weights = [load_file(str(Path(folder) / "model.safetensors"))
               for folder in (one.model_dir, two["model_dir"])]
    for name, tensor in weights[0].items():
        # an AdamW step moves a weight by about lr at most, whatever its gradient's rounding
        assert torch.allclose(tensor, weights[1][name], rtol=0, atol=STEPS * LR), name
    assert two["scores"]["adapted_trained"] == pytest.approx(one.scores["adapted_trained"], rel=1e-3)
