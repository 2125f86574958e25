"""One device's training memory for each stage (``transfer/train/memory_plan.py``, planned from a
config by ``transfer/settings/memory_budget.py``):
the loss kernel's figure, sharding over the processes, activation checkpointing, and the
dry run's per-device table, for a model given by its config alone (no weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import LlamaConfig

from tests.helpers import config
from transfer.settings.config import AdaptConfig
from transfer.settings.memory_budget import source_model_config, training_memory_plan
from transfer.train.linear_cross_entropy import chunk_rows
from transfer.train.memory_plan import checkpointed_activations

GB80 = 80 * 10**9  # one 80 GB GPU


def llama_8b() -> LlamaConfig:
    """Llama-3.1-8B's shape (its config.json's sizes)."""
    return LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       intermediate_size=14336, vocab_size=128_256, tie_word_embeddings=False,
                       max_position_embeddings=131_072, architectures=["LlamaForCausalLM"])


def _cfg(**overrides) -> AdaptConfig:
    """8 GPUs on one machine, 8 x 4096 tokens a step (one sequence per process), both stages."""
    values = {"source_model": "smollm2", "vocab_size": 128_256, "train_steps": 100, "full_steps": 100,
              "batch_size": 8, "block_size": 4096, "nproc_per_node": 8, "precision": "bf16"}
    return AdaptConfig(**{**values, **overrides})


def test_llama_8b_on_8_x_80gb_fits_sharded_not_replicated() -> None:
    sharded = training_memory_plan(_cfg(sharding="fsdp"), llama_8b(), device_type="cuda", available=GB80)
    replicated = training_memory_plan(_cfg(sharding="ddp"), llama_8b(), device_type="cuda", available=GB80)
    assert sharded.sharding == "fsdp" and replicated.sharding == "ddp"
    assert [s.stage for s in sharded.stages] == ["embeddings", "full"]
    assert sharded.batch_size == 1 and sharded.world_size == 8  # each process's share of the step
    assert sharded.peak.total <= GB80 < replicated.peak.total
    full_sharded, full_replicated = sharded.stages[1].estimate, replicated.stages[1].estimate
    # AdamW's moments of 8.03B float32 weights: 64 GB whole, an eighth of it per process
    assert full_replicated.optimizer == pytest.approx(8 * 8.03e9, rel=0.01)
    assert full_sharded.optimizer == pytest.approx(full_replicated.optimizer / 8, rel=1e-6)
    # the weights' shard plus what is gathered at a time: embeddings, head and a layer, twice
    assert full_replicated.weights / 8 < full_sharded.weights < full_replicated.weights / 2
    # the embeddings-only stage trains the embedding and the untied head: 2 x 128,256 x 4,096
    embeddings = replicated.stages[0].estimate
    assert embeddings.optimizer == 8 * 2 * 128_256 * 4096
    assert embeddings.total < full_replicated.total
    # 'auto' shards exactly because the whole model per device does not fit
    assert training_memory_plan(_cfg(), llama_8b(), device_type="cuda", available=GB80).sharding == "fsdp"
    big = 10**13
    assert training_memory_plan(_cfg(), llama_8b(), device_type="cuda", available=big).sharding == "ddp"


def test_loss_term_is_the_kernels() -> None:
    chunked = training_memory_plan(_cfg(sharding="fsdp"), llama_8b(), device_type="cuda", available=GB80)
    full = training_memory_plan(_cfg(sharding="fsdp", loss_kernel="full"), llama_8b(), device_type="cuda",
                                available=GB80)
    assert chunked.loss_kernel == "chunked" and full.loss_kernel == "full"
    tokens, vocab = 4096, 128_256
    assert full.peak.logits == 3 * tokens * vocab * 4
    # one chunk's float32 logits x 3, plus the head cast to bf16 and a chunk's bf16 weight gradient
    assert chunked.peak.logits == 3 * chunk_rows(vocab) * vocab * 4 + 2 * vocab * 4096 * 2
    assert chunked.peak.total < full.peak.total
    # distillation scores the whole logits whatever the kernel (transfer/train/distill.py)
    distilled = training_memory_plan(_cfg(sharding="ddp", objective="distill"), llama_8b(), device_type="cuda",
                                     available=GB80)
    assert distilled.loss_kernel == "full"


def test_activation_checkpointing_keeps_layer_inputs_and_one_layer() -> None:
    plain = training_memory_plan(_cfg(sharding="fsdp"), llama_8b(), device_type="cuda", available=GB80)
    kept = training_memory_plan(_cfg(sharding="fsdp", activation_checkpointing=True), llama_8b(),
                                device_type="cuda", available=GB80)
    layers, tokens, hidden = 32, 4096, 4096
    for before, after in zip(plain.stages, kept.stages, strict=True):
        per_layer = before.estimate.activations // layers
        assert after.estimate.activations == layers * tokens * hidden * 4 + per_layer
        assert after.estimate.total < before.estimate.total
    assert checkpointed_activations(100, layers=1, tokens=10, hidden=10) == 100  # never more than without


def test_one_process_is_the_trainers_estimate(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    # one process, the whole logits: the plan is the per-phase estimate, nothing on top

    from transfer.settings.memory_budget import training_model_shape
    from transfer.train.memory import estimate_for_phases

    cfg = config(tmp_path, tiny_source, tiny_corpus, full_steps=2, loss_kernel="full")
    source = source_model_config(cfg)
    plan = training_memory_plan(cfg, source)
    assert plan.sharding == "none" and plan.world_size == 1
    trainer = estimate_for_phases(training_model_shape(cfg, source), ["embeddings", "full"], batch_size=cfg.batch_size,
                                  block_size=cfg.block_size)
    assert plan.peak == trainer


COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "meta-llama/Llama-3.1-8B"


@pytest.fixture()
def config_only_hub_source(tmp_path: Path, tiny_source: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Llama-3.1-8B in an offline Hub cache as ``hf download REPO config.json tokenizer.json
    ...`` leaves it: config and tokenizer files, no weights (the tokenizer is the tiny one)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    llama_8b().save_pretrained(snapshot)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_source / name).is_file():
            shutil.copy(tiny_source / name, snapshot / name)
    assert not list(snapshot.glob("*.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return REPO


def test_dry_run_prints_each_stage_per_device(tmp_path: Path, config_only_hub_source: str, tiny_corpus: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    cfg = config(tmp_path, Path(config_only_hub_source), tiny_corpus, source_model=config_only_hub_source,
                 vocab_size=128_256, train_steps=100, full_steps=100, batch_size=8, block_size=4096,
                 nproc_per_node=8, precision="bf16", sharding="fsdp")
    assert source_model_config(cfg).num_hidden_layers == 32  # from the config alone
    # the planning machine is this CPU one: give it the memory of one 80 GB GPU per process
    monkeypatch.setattr("transfer.train.memory.available_memory", lambda device, limit=None: GB80)
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    dry = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    text = " ".join(dry.output.split())
    assert "training memory per device: 8 process(es)" in text and "sharding fsdp" in text
    assert "loss chunked" in text and "1 x 4096 tokens per micro-batch" in text
    rows = [line for line in dry.output.splitlines() if line.strip("│┃ ").startswith(("embeddings", "full"))]
    assert len(rows) == 2 and "GiB" in rows[1], dry.output
    assert "fits" in text and "does not fit" not in text
    # the same run replicated on every device is refused before any stage
    config_file.write_text(cfg.model_copy(update={"sharding": "ddp"}).model_dump_json())
    refused = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--dry-run"])
    assert refused.exit_code != 0 and "refused before the first stage" in " ".join(refused.output.split())


def test_dry_run_plans_for_hardware_this_machine_lacks(tmp_path: Path, config_only_hub_source: str,
                                                       tiny_corpus: Path) -> None:
    """A CPU laptop plans Llama-3.1-8B on 8 x 80 GB GPUs from the config alone: --device cuda
    and --device-memory declare the hardware (no monkeypatching of what is measured here);
    the same settings without --dry-run are refused, since the GPUs are not here."""
    from typer.testing import CliRunner

    from flows.cli import app

    cfg = config(tmp_path, Path(config_only_hub_source), tiny_corpus, source_model=config_only_hub_source,
                 vocab_size=128_256, train_steps=100, full_steps=100, batch_size=8, block_size=4096,
                 nproc_per_node=8, precision="bf16", sharding="auto", device="cuda")
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    dry = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--device-memory", "80GiB", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    text = " ".join(dry.output.split())
    assert "8 process(es) on cuda" in text and "sharding fsdp" in text, text  # auto: one GPU cannot hold it
    assert "does not fit" not in text
    real = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--device-memory", "80GiB",
                                    "--no-prefect"])
    assert real.exit_code != 0 and "CUDA" in real.output
