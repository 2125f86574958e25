"""The train stage on several processes from the product (issue #28, item 1): ``adapt
--nproc-per-node 2`` runs training under torchrun (2 gloo processes on CPU), the other
stages once, and gives the losses and the model of one process, as DDP and sharded
(``--sharding fsdp``); several machines meet at a c10d rendezvous (``--nnodes``,
``--rdzv-endpoint``), refused before any stage without one; the Prefect flow's stages
run through the same builder, which launches torchrun with the same settings."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.helpers import config
from transfer.errors import TrainingError
from transfer.train.launch import Processes, per_process_batch, torchrun_command

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


def test_one_machine_is_standalone_several_meet_at_the_rendezvous() -> None:
    target = ["-m", "transfer.train.launch", "spec.json", "out"]
    assert torchrun_command(Processes(nproc_per_node=2), target) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *target]
    several = Processes(nproc_per_node=8, nnodes=2, rdzv_endpoint="node0:29400", rdzv_id="job-7")
    assert several.world_size == 16
    assert torchrun_command(several, target) == [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--rdzv-backend=c10d",
        "--rdzv-endpoint=node0:29400", "--rdzv-id=job-7", "--nproc-per-node=8", *target]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"nnodes": 2}, "nnodes=2 needs rdzv_endpoint, the host:port of the rendezvous"),
    ({"nnodes": 2, "rdzv_endpoint": "node0"}, "rdzv_endpoint 'node0' is not host:port"),
    ({"nnodes": 2, "rdzv_endpoint": "node0:99999"}, "rdzv_endpoint 'node0:99999' is not host:port"),
    ({"nnodes": 3, "rdzv_endpoint": "node0:29400", "nproc_per_node": 1},
     r"nproc_per_node=1 x nnodes=3 = 3 processes must divide batch_size=2"),
])
def test_several_machines_are_refused_before_any_stage_without_a_rendezvous(
        tmp_path: Path, tiny_source: Path, tiny_corpus: Path, overrides: dict, message: str) -> None:
    from transfer.planning.plan import plan_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, **overrides)
    with pytest.raises(TrainingError, match=message):
        plan_adaptation(cfg)
    assert not Path(cfg.cache_dir).exists()


def test_the_flow_form_reaches_the_launcher_with_its_settings(tmp_path: Path, tiny_source: Path,
                                                               tiny_corpus: Path, monkeypatch) -> None:
    """The Prefect flow runs each stage with ``execute`` on the plan's spec, as the CLI does:
    the train stage's builder is the one place that starts torchrun, and the form's fields
    reach it through the spec's runtime settings (outside the stage key)."""
    from flows.parameters import AdaptParameters
    from transfer.engine.stages import BuildContext, builder_of
    from transfer.planning.plan import plan_adaptation
    from transfer.train import launch

    form = AdaptParameters(**config(tmp_path, tiny_source, tiny_corpus, batch_size=4).model_dump())
    several = form.model_copy(update={"nproc_per_node": 2, "nnodes": 2, "rdzv_endpoint": "node0:29400",
                                      "rdzv_id": "job-7", "sharding": "fsdp", "activation_checkpointing": True})
    (train,) = [s.spec for s in plan_adaptation(several).stages if s.spec.stage == "train"]
    (alone,) = [s.spec for s in plan_adaptation(form).stages if s.spec.stage == "train"]
    assert train.key == alone.key  # how many processes, and how they share the model: speed only
    launched = []
    monkeypatch.setattr(launch, "launch_train_stage", lambda spec_json, out, processes: launched.append(
        (json.loads(spec_json)["runtime"], processes)))
    builder_of("train")(train, tmp_path / "out", BuildContext())
    ((runtime, processes),) = launched
    assert processes == Processes(nproc_per_node=2, nnodes=2, rdzv_endpoint="node0:29400", rdzv_id="job-7")
    assert runtime["sharding"] == "fsdp" and runtime["activation_checkpointing"] is True


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

    # sharded (FSDP2): the stages before training come from the two-process run's cache
    shutil.copytree(cfg("two").cache_dir, cfg("fsdp").cache_dir,
                    ignore=lambda folder, names: [n for n in names if n in ("train", "evaluate", "_checkpoints")])
    config_file.write_text(cfg("fsdp").model_dump_json())
    ran = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--no-prefect", "--nproc-per-node", "2",
                                   "--sharding", "fsdp"])
    assert ran.exit_code == 0, ran.output
    sharded = json.loads((Path(cfg("fsdp").output_dir) / cfg("fsdp").model_name() / "adaptation.json").read_text())
    assert sharded["train_log"]["sharding"] == "fsdp" and two["train_log"]["sharding"] == "ddp"
    assert not sharded["stages_cached"]["train"] and sharded["stages_cached"]["init"]
    assert sharded["train_log"]["losses"] == pytest.approx(one.train_log["losses"], rel=1e-4)
    # the export is one plain Hugging Face folder, whole, that transformers loads
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(sharded["model_dir"]).state_dict()
    for name, tensor in weights[0].items():
        assert torch.allclose(tensor, exported[name], rtol=0, atol=STEPS * LR), name
    assert sharded["scores"]["adapted_trained"] == pytest.approx(one.scores["adapted_trained"], rel=1e-3)
