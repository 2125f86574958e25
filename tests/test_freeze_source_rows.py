"""Frozen source rows under vocabulary extension (issue 17, ``freeze_source_rows``): the
source's own rows (input embedding, untied head) stay bitwise the init's through both
training stages, AdamW weight decay included, while the appended rows train; exact resume
and the distillation objective keep them too; the option needs ``vocab_mode='extend'`` and
enters the train stage's key only when set."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tests.tiny import (
    GERMAN,
    tiny_bert,
    tiny_byte_bpe_tokenizer,
    tiny_llama,
    tiny_wordpiece_tokenizer,
)
from transfer.errors import TrainingError
from transfer.settings.config import AdaptConfig
from transfer.train import PhaseConfig, TrainingCallback, TrainingConfig, pack_train_split, train
from transfer.train.row_freeze import check_frozen_rows, vocabulary_tensors

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [f"{s} ({i})" for i in range(6) for s in GERMAN]
N_OLD = 300  # "source" ids 0..299 of the tiny tokenizer; the rest play the appended tokens


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_byte_bpe_tokenizer(GERMAN, 350)


@pytest.fixture(scope="module")
def data(tokenizer):
    packed = pack_train_split(tokenizer, TEXTS, 16)
    ids = packed.blocks.unique()
    assert (ids < N_OLD).any() and (ids >= N_OLD).any()  # the text uses old and new ids
    return packed


def _config(frozen_rows: int, **kw) -> TrainingConfig:
    # stage two decays matrices: a zeroed gradient alone would still let decay move old rows
    stages = [PhaseConfig("embeddings", 3, 1e-2, schedule="constant"),
              PhaseConfig("full", 2, 1e-2, schedule="constant", weight_decay=0.5)]
    return TrainingConfig(phases=stages, batch_size=2, seed=0, precision="fp32", eval_at_start=False,
                          eval_at_end=False, frozen_rows=frozen_rows, **kw)


def _matrices(model) -> dict[str, torch.Tensor]:
    found = {"input": model.get_input_embeddings().weight}
    if model.get_output_embeddings().weight is not found["input"]:
        found["head"] = model.get_output_embeddings().weight
    return {name: weight.detach().clone() for name, weight in found.items()}


@pytest.mark.parametrize("tie", [True, False])
def test_old_rows_stay_bitwise_and_new_rows_train(tokenizer, data, tie: bool) -> None:
    model = tiny_llama(len(tokenizer), tie=tie)
    init = _matrices(model)
    assert set(init) == ({"input"} if tie else {"input", "head"})
    result = train(model, data, _config(N_OLD), tokenizer=tokenizer, device="cpu")
    assert result.frozen_rows == N_OLD and result.steps == 5
    after = _matrices(model)
    for name in init:
        assert torch.equal(after[name][:N_OLD], init[name][:N_OLD]), name
        assert not torch.equal(after[name][N_OLD:], init[name][N_OLD:]), name

    # the same run without freezing moves the old rows: the check above can fail
    unfrozen = tiny_llama(len(tokenizer), tie=tie)
    train(unfrozen, data, _config(0), tokenizer=tokenizer, device="cpu")
    for name, rows in _matrices(unfrozen).items():
        assert not torch.equal(rows[:N_OLD], init[name][:N_OLD]), name


def test_frozen_run_resumes_exactly(tokenizer, data, tmp_path: Path) -> None:
    class Crash(TrainingCallback):
        def on_checkpoint(self, step: int, path: str) -> None:
            if step == 2:
                raise RuntimeError("crash after the step-2 checkpoint")

    def run(callbacks=(), checkpoint_dir=None):
        model = tiny_llama(len(tokenizer), tie=False, attention_dropout=0.2)  # the RNG state matters
        result = train(model, data, _config(N_OLD, checkpoint_every=2), tokenizer=tokenizer, device="cpu",
                       callbacks=callbacks, checkpoint_dir=checkpoint_dir)
        return model, result

    init = _matrices(tiny_llama(len(tokenizer), tie=False, attention_dropout=0.2))
    straight_model, straight = run()
    with pytest.raises(RuntimeError, match="crash"):
        run((Crash(),), tmp_path / "ckpt")
    resumed_model, resumed = run(checkpoint_dir=tmp_path / "ckpt")
    assert resumed.resumed_from == 2 and resumed.losses == straight.losses
    straight_state, resumed_state = straight_model.state_dict(), resumed_model.state_dict()
    for name, tensor in straight_state.items():
        assert torch.equal(resumed_state[name], tensor), name
    for name, rows in _matrices(resumed_model).items():
        assert torch.equal(rows[:N_OLD], init[name][:N_OLD]), name
    # a checkpoint of the unfrozen run is another run's: refused, not silently continued
    from transfer.errors import CheckpointError

    with pytest.raises(CheckpointError, match="settings"):
        train(tiny_llama(len(tokenizer), tie=False, attention_dropout=0.2), data,
              _config(0, checkpoint_every=2), tokenizer=tokenizer, device="cpu", checkpoint_dir=tmp_path / "ckpt")


def test_distillation_keeps_frozen_rows(tokenizer, data) -> None:
    from transfer.train.distill import Distillation

    teacher = tiny_llama(len(tokenizer), seed=0)
    student = copy.deepcopy(teacher)
    with torch.no_grad():  # a student that differs from its teacher, so distillation has a gradient
        weight = student.get_input_embeddings().weight
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(3)) * weight.std() * 10)
    init = _matrices(student)
    config = TrainingConfig(phases=[PhaseConfig("embeddings", 2, 1e-2, schedule="constant")], batch_size=2,
                            precision="fp32", eval_at_start=False, eval_at_end=False, frozen_rows=N_OLD)
    result = train(student, data, config, tokenizer=tokenizer, device="cpu",
                   distill=Distillation(teacher, tokenizer, mode="both"))
    assert result.teacher_forward_passes == 2
    rows = _matrices(student)["input"]
    assert torch.equal(rows[:N_OLD], init["input"][:N_OLD])
    assert not torch.equal(rows[N_OLD:], init["input"][N_OLD:])


def test_vocabulary_tensors_of_each_head_kind(tokenizer) -> None:
    def names(model) -> list[str]:
        return [t.name for t in vocabulary_tensors(model)]

    assert names(tiny_llama(len(tokenizer), tie=True)) == ["input embedding"]
    assert names(tiny_llama(len(tokenizer), tie=False)) == ["input embedding", "output head"]
    bert_tok = tiny_wordpiece_tokenizer(GERMAN, 200)
    assert names(tiny_bert(len(bert_tok))) == ["input embedding", "output bias"]  # tied decoder, own bias
    with pytest.raises(TrainingError, match="frozen_rows=9999 but the model's input embedding has only"):
        check_frozen_rows(tiny_llama(len(tokenizer)), 9999)


# ---------------------------------------------------------------- settings and the stage key


def test_freezing_needs_extend_mode(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="freeze_source_rows needs vocab_mode='extend'"):
        AdaptConfig(freeze_source_rows=True, cache_dir=tmp_path)
    AdaptConfig(freeze_source_rows=True, vocab_mode="extend", cache_dir=tmp_path)  # accepted
    # a model_copy skips pydantic's validators: validation before the first stage refuses it
    from transfer.settings.validate import validate_config

    copied = AdaptConfig(cache_dir=tmp_path).model_copy(update={"freeze_source_rows": True})
    with pytest.raises(TrainingError, match="freeze_source_rows needs vocab_mode='extend'"):
        validate_config(copied)


def test_train_key_changes_only_with_the_flag(tmp_path: Path) -> None:
    from transfer.engine.cache import StageOutput
    from transfer.train.stage import train_params, train_spec

    cfg = AdaptConfig(vocab_mode="extend", cache_dir=tmp_path / "cache")
    init, corpus, source, tok = (StageOutput(stage, f"k{i}", tmp_path / stage)
                                 for i, stage in enumerate(("init", "corpus", "source", "tokenizer")))
    plain = train_spec(cfg, init, corpus, source, tok)
    assert "freeze_source_rows" not in train_params(cfg) and "tokenizer" not in plain.inputs
    assert plain.key == train_spec(cfg, init, corpus).key  # earlier runs keep their keys
    frozen_cfg = cfg.model_copy(update={"freeze_source_rows": True})
    frozen = train_spec(frozen_cfg, init, corpus, source, tok)
    assert frozen.key != plain.key and frozen.params["freeze_source_rows"] is True
    assert frozen.inputs["tokenizer"] == "tokenizer:k3"
    with pytest.raises(TrainingError, match="tokenizer"):
        train_spec(frozen_cfg, init, corpus, source)


# ---------------------------------------------------------------- the pipeline and the CLI


def test_extend_run_with_frozen_rows_end_to_end(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    import json

    from typer.testing import CliRunner

    from flows.cli import app
    from transfer.pipeline import run_adaptation
    from transfer.source.loading import load_source
    from transfer.tokenizer.extension_record import read_first_new_id

    cfg = AdaptConfig(
        source_model=str(tiny_source), target_language="de", target_bible=[], source_bible=[],
        target_files=[str(tiny_corpus)], vocab_mode="extend", added_tokens=30, freeze_source_rows=True,
        strategy="fvt", train_steps=2, full_steps=1, weight_decay=0.5, learning_rate=1e-2, batch_size=2,
        block_size=16, eval_texts=4, curve_texts=0, dev_fraction=0.1, test_fraction=0.1, device="cpu",
        cache_dir=tmp_path / "cache", output_dir=tmp_path / "models", register_model=False,
    )
    result = run_adaptation(cfg)
    n_old = read_first_new_id(cfg.cache_dir / "tokenizer" / result.stage_keys["tokenizer"])
    init_model, _ = load_source(str(cfg.cache_dir / "init" / result.stage_keys["init"] / "model"))
    final = cfg.cache_dir / "train" / result.stage_keys["final"]
    trained, _ = load_source(str(final / "model"))
    before, after = init_model.get_input_embeddings().weight, trained.get_input_embeddings().weight
    assert torch.equal(after[:n_old], before[:n_old])
    assert not torch.equal(after[n_old:], before[n_old:])
    assert json.loads((final / "train_log.json").read_text())["frozen_rows"] == n_old

    config_file = tmp_path / "run.json"
    config_file.write_text(cfg.model_copy(update={"vocab_mode": "replace", "freeze_source_rows": False})
                           .model_dump_json())
    runner = CliRunner()
    same = runner.invoke(app, ["adapt", "--config", str(config_file), "--mode", "extend", "--freeze-source-rows",
                               "--dry-run"])
    assert same.exit_code == 0, same.output
    cached = same.output.replace("\n", " ").split(" stages cached")[0].split()[-1]
    done, total = cached.split("/")
    assert done == total, same.output  # the flag is the run above: every stage is cached
    refused = runner.invoke(app, ["adapt", "--config", str(config_file), "--freeze-source-rows", "--dry-run"])
    assert refused.exit_code == 2 and "freeze_source_rows" in refused.output


def test_frozen_rows_do_not_count_in_the_clipping_norm(tokenizer, data) -> None:
    class Norms(TrainingCallback):
        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_step(self, step, metrics) -> None:
            self.norms.append(metrics["grad_norm"])

    def norms(frozen_rows: int) -> list[float]:
        seen = Norms()
        config = TrainingConfig(phases=[PhaseConfig("embeddings", 2, 1e-2, schedule="constant")], batch_size=2,
                                precision="fp32", eval_at_start=False, eval_at_end=False, frozen_rows=frozen_rows)
        train(tiny_llama(len(tokenizer)), data, config, tokenizer=tokenizer, device="cpu", callbacks=[seen])
        return seen.norms

    # a tied model's embedding stage trains one matrix: with every row frozen nothing is left
    assert norms(len(tokenizer)) == [0.0, 0.0]
    assert all(norm > 0 for norm in norms(N_OLD))
