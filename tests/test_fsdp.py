"""Sharded training (issue #28, item 2): FSDP2 on 2 gloo CPU processes gives DDP's losses and
weights (tied and untied heads, OFA's factorized embedding, frozen source rows, the
embeddings-only stage then the full one, dev evaluations), activation checkpointing changes
nothing, a sharded run SIGKILLed after a checkpoint resumes to exactly the uninterrupted
run, the exported folder loads with plain transformers, and what fsdp cannot do is refused
before the first stage.

Two torchrun launches serve the whole module (``runs``): the one that is killed
(standalone), then one that resumes it and runs every other case, started as two machines
of one process each meeting at a c10d rendezvous on this host (the ``nnodes`` path of
``transfer/train/launch.py``). This file is also the worker script.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FROZEN = 40  # source rows kept in the frozen-rows case
KILL_AFTER = 3  # the killed run stops for good after this step's checkpoint
CASES = ("tied", "untied", "factorized")
JOBS = ("resume", *(f"{case}-{how}" for case in CASES for how in ("ddp", "fsdp")), "tied-fsdp-ac")


# ---------------------------------------------------------------- the worker (under torchrun)

def _run_job(job: str, out: Path) -> None:
    import torch
    import torch.distributed as torch_dist

    from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.init.factorized import factorize_model, save_factorized
    from transfer.source.loading import save_model
    from transfer.train import (
        PhaseConfig,
        TrainingCallback,
        TrainingConfig,
        dev_evaluator,
        pack_train_split,
        train,
    )

    rank, world = torch_dist.get_rank(), torch_dist.get_world_size()
    case, how, *extra = ("tied", "fsdp") if job in ("kill", "resume") else job.split("-")
    tokenizer = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 350)
    # float64: DDP and FSDP sum gradients in other orders, and AdamW scales that rounding by up
    # to lr/eps where a gradient is near zero (tests/test_training_distributed.py)
    model = tiny_llama(len(tokenizer), tie=case != "untied", seed=0).double()
    if case == "factorized":
        factorize_model(model, rank=8)
    data = pack_train_split(tokenizer, [f"{s} ({i})" for i in range(6) for s in GERMAN_SENTENCES], 16)
    config = TrainingConfig(
        phases=[PhaseConfig("embeddings", 2, 1e-2), PhaseConfig("full", 2, 1e-3, weight_decay=0.1)],
        batch_size=2 // world, grad_accumulation=2, seed=1, eval_every=2,
        frozen_rows=FROZEN if case == "untied" else 0,
        checkpoint_every=1 if job in ("kill", "resume") else 0)
    start = model.get_input_embeddings().weight.detach().clone() if case == "untied" else None
    calls: list[int] = []  # a layer's inner module: once per forward, again when recomputed
    model.model.layers[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))

    class StopForGood(TrainingCallback):  # the killed run: waits after its checkpoint for SIGKILL
        def on_checkpoint(self, step: int, path: str) -> None:
            if step == KILL_AFTER:
                (out / "killed-run-paused").write_text(path)
                time.sleep(600)

    result = train(model, data, config, tokenizer=tokenizer, device="cpu", sharding=how,
                   evaluate=dev_evaluator(tokenizer, GERMAN_SENTENCES[:3], device="cpu"),
                   checkpoint_dir=out / "checkpoints" if job in ("kill", "resume") else None,
                   callbacks=[StopForGood()] if job == "kill" else [], activation_checkpointing="ac" in extra)
    if rank != 0:
        return
    record = {"losses": result.losses, "sharding": result.sharding, "evaluations": result.evaluations,
              "resumed_from": result.resumed_from, "world_size": result.world_size, "mlp_calls": len(calls),
              "activation_checkpointing": result.activation_checkpointing}
    if start is not None:
        record["frozen_rows_kept"] = bool(torch.equal(model.get_input_embeddings().weight[:FROZEN], start[:FROZEN]))
    (save_factorized if case == "factorized" else save_model)(model, tokenizer, out / job)
    (out / f"{job}.json").write_text(json.dumps(record))


def worker(out: Path, jobs: list[str]) -> None:
    import torch
    import torch.distributed as torch_dist

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo")  # one group for every job (the trainer joins it)
    # torchrun starts each worker in a session of its own: the test kills them by their ids
    (out / f"worker-{torch_dist.get_rank()}.pid").write_text(str(os.getpid()))
    try:
        for job in jobs:
            _run_job(job, out)
    finally:
        torch_dist.destroy_process_group()


# ---------------------------------------------------------------- the launches

def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(processes, out: Path, jobs: tuple[str, ...]) -> subprocess.Popen:
    from transfer.train.launch import torchrun_command

    command = torchrun_command(processes, [str(Path(__file__).resolve()), "--out", str(out), *jobs])
    # a session of its own: the kill below ends the launcher and its workers at once
    return subprocess.Popen(command, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transfer.train.launch import Processes

    out = tmp_path_factory.mktemp("fsdp")
    killed = _launch(Processes(nproc_per_node=2), out, ("kill",))
    deadline = time.monotonic() + 240
    while not (out / "killed-run-paused").exists():
        if killed.poll() is not None or time.monotonic() > deadline:
            for pid_file in out.glob("worker-*.pid"):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            os.killpg(killed.pid, signal.SIGKILL)
            pytest.fail(f"the run to kill ended or never reached step {KILL_AFTER}: {killed.communicate()[0][-4000:]}")
        time.sleep(0.05)
    workers = [int((out / f"worker-{rank}.pid").read_text()) for rank in range(2)]
    for pid in workers:  # both training processes, with no clean-up, then their launcher
        os.kill(pid, signal.SIGKILL)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert all(_gone(pid) for pid in workers)
    assert not (out / "kill.json").exists()

    # the rest as two machines of one process each, meeting at a c10d rendezvous
    machines = Processes(nproc_per_node=1, nnodes=2, rdzv_endpoint=f"localhost:{_free_port()}", rdzv_id="fsdp-test")
    launches = [_launch(machines, out, JOBS) for _ in range(2)]
    outputs = [launch.communicate(timeout=400)[0] for launch in launches]
    for launch, output in zip(launches, outputs, strict=True):
        assert launch.returncode == 0, output[-6000:]
    return out


def _gone(pid: int, wait: float = 30.0) -> bool:
    """Whether process ``pid`` ends (or is a zombie, killed but not yet reaped) within ``wait`` s."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _record(out: Path, job: str) -> dict:
    return json.loads((out / f"{job}.json").read_text())


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("case", CASES)
def test_fsdp_gives_the_losses_and_weights_of_ddp(runs: Path, case: str) -> None:
    import torch

    ddp, fsdp = _record(runs, f"{case}-ddp"), _record(runs, f"{case}-fsdp")
    assert (ddp["sharding"], fsdp["sharding"]) == ("ddp", "fsdp") and fsdp["world_size"] == 2
    assert len(fsdp["losses"]) == 4  # 2 embeddings-only steps, then 2 of the whole model
    # float64 throughout: the two reduce gradients in other orders, a few ulps apart
    assert fsdp["losses"] == pytest.approx(ddp["losses"], rel=1e-9)
    assert fsdp["evaluations"] == pytest.approx(ddp["evaluations"], rel=1e-9)  # dev curve at 0, 2, 4
    one, other = _weights(runs / f"{case}-ddp"), _weights(runs / f"{case}-fsdp")
    assert one.keys() == other.keys()
    for name, tensor in one.items():
        assert torch.allclose(tensor, other[name], rtol=0, atol=1e-9), name
    if case == "untied":
        assert fsdp["frozen_rows_kept"] and ddp["frozen_rows_kept"]  # bitwise, on each process's shard


def test_activation_checkpointing_changes_nothing_under_fsdp(runs: Path) -> None:
    plain, recomputed = _record(runs, "tied-fsdp"), _record(runs, "tied-fsdp-ac")
    assert recomputed["activation_checkpointing"] and not plain["activation_checkpointing"]
    # one more forward of each layer per training micro-batch (4 steps x 2): the recomputation
    assert recomputed["mlp_calls"] - plain["mlp_calls"] == 4 * 2
    assert recomputed["losses"] == plain["losses"]
    assert _weights(runs / "tied-fsdp-ac").keys() == _weights(runs / "tied-fsdp").keys()


def test_a_sharded_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run(runs: Path) -> None:
    import torch

    resumed, uninterrupted = _record(runs, "resume"), _record(runs, "tied-fsdp")
    assert resumed["resumed_from"] == KILL_AFTER  # inside the full stage: its optimizer state restored
    shards = sorted(p.name for p in (runs / "checkpoints").glob("step-*/shards/*.safetensors"))
    assert shards and not list((runs / "checkpoints").glob("step-*/shards/.metadata"))  # nothing pickled
    assert resumed["losses"] == uninterrupted["losses"]  # bit-exact
    assert resumed["evaluations"] == uninterrupted["evaluations"]
    one, other = _weights(runs / "resume"), _weights(runs / "tied-fsdp")
    assert all(torch.equal(tensor, other[name]) for name, tensor in one.items())


def test_the_exported_folder_is_a_plain_hugging_face_model(runs: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 5, 9, 20, 33]])
    for case in CASES:
        ddp, fsdp = (AutoModelForCausalLM.from_pretrained(runs / f"{case}-{how}").eval() for how in ("ddp", "fsdp"))
        with torch.no_grad():
            assert torch.allclose(ddp(input_ids=ids).logits, fsdp(input_ids=ids).logits, atol=1e-6), case


# ---------------------------------------------------------------- refusals and the rule of 'auto'

def test_auto_shards_only_what_one_device_cannot_hold() -> None:
    from transfer.errors import TrainingError
    from transfer.train.sharding import resolve_sharding

    assert resolve_sharding("auto", 1, needed=10, available=1) == "none"  # one process: nothing to share
    assert resolve_sharding("fsdp", 1, needed=1, available=10) == "none"
    assert resolve_sharding("auto", 2, needed=5, available=10) == "ddp"
    assert resolve_sharding("auto", 2, needed=50, available=10) == "fsdp"
    assert resolve_sharding("auto", 2, needed=50, available=10, problem="distills") == "ddp"
    assert resolve_sharding("ddp", 2, needed=50, available=10) == "ddp"
    with pytest.raises(TrainingError, match="distills"):
        resolve_sharding("fsdp", 2, needed=1, available=10, problem="distills")


def test_the_per_device_estimate_divides_what_is_sharded() -> None:
    from transfer.train.memory import MemoryEstimate
    from transfer.train.sharding import per_device_estimate

    whole = MemoryEstimate(weights=800, gradients=400, optimizer=800, activations=100, logits=60)
    shared = per_device_estimate(whole, 4, gathered_bytes=50)
    assert (shared.weights, shared.gradients, shared.optimizer) == (250, 100, 200)
    assert (shared.activations, shared.logits) == (100, 60)  # each process's own


@pytest.mark.parametrize(("overrides", "message"), [
    ({"objective": "distill"}, "sharding 'fsdp' with objective 'distill' or 'both' is not supported"),
    ({"compile": True}, "sharding 'fsdp' with compile is not supported"),
])
def test_what_fsdp_cannot_do_is_refused_before_any_stage(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                         overrides: dict, message: str) -> None:
    from tests.helpers import config
    from transfer.errors import TrainingError
    from transfer.planning.plan import plan_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, nproc_per_node=2, sharding="fsdp", **overrides)
    with pytest.raises(TrainingError, match=message):
        plan_adaptation(cfg)
    assert not Path(cfg.cache_dir).exists()


def test_a_model_without_repeated_layers_cannot_be_sharded() -> None:
    import torch

    from transfer.errors import TrainingError
    from transfer.train.sharding import check_shardable

    with pytest.raises(TrainingError, match="needs the model's repeated layers"):
        check_shardable(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_activation_checkpointing_in_one_process_gives_the_same_training(one_torch_thread) -> None:
    import torch

    from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.train import PhaseConfig, TrainingConfig, pack_train_split, train
    from transfer.train.sharding import is_checkpointing_activations

    tokenizer = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 350)
    data = pack_train_split(tokenizer, GERMAN_SENTENCES * 3, 16)
    config = TrainingConfig(phases=[PhaseConfig("embeddings", 1, 1e-2), PhaseConfig("full", 2, 1e-3)],
                            batch_size=2, seed=1, eval_at_start=False, eval_at_end=False)
    models, results, forwards = [], [], []
    for recompute in (False, True):
        models.append(tiny_llama(len(tokenizer), seed=0))
        calls: list[int] = []
        # inside the layer, and before its last saved tensor (recomputation stops early after that)
        models[-1].model.layers[0].mlp.register_forward_pre_hook(lambda *_, seen=calls: seen.append(1))
        results.append(train(models[-1], data, config, device="cpu", activation_checkpointing=recompute))
        forwards.append(len(calls))
    assert forwards == [3, 6]  # each layer's forward ran again in the backward pass of each step
    assert results[1].activation_checkpointing and results[1].losses == results[0].losses
    assert not is_checkpointing_activations(models[1])  # handed back as it came
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b), name


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("jobs", nargs="+")
    arguments = parser.parse_args()
    worker(arguments.out, arguments.jobs)
