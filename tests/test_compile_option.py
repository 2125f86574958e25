"""``compile``: torch.compile for training is a speed setting. It trains the same numbers
(up to float rounding), keeps the run's identity (a compiled run resumes an uncompiled
one's checkpoint and shares the stage cache), and refuses up front where it cannot work."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.tiny import tiny_llama
from transfer.errors import TrainingError
from transfer.settings.config import AdaptConfig
from transfer.train import PackedData, PhaseConfig, TrainingConfig, train
from transfer.train import run_inputs as trainer_module
from transfer.train.stage import train_params, train_spec, training_config


def _config(compile_model: bool | str) -> TrainingConfig:
    return TrainingConfig(phases=[PhaseConfig("embeddings", 2, 1e-2), PhaseConfig("full", 1, 1e-3)],
                          batch_size=2, eval_at_start=False, eval_at_end=False, precision="fp32",
                          compile=compile_model)


def _data() -> PackedData:
    blocks = torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(0))
    return PackedData(blocks=blocks, n_documents=8, n_bytes=blocks.numel() * 3, n_tokens=blocks.numel())


def test_compiled_training_matches_eager_training() -> None:
    # aot_eager: dynamo's graph capture and AOTAutograd's joint forward/backward graph, the
    # parts every backend shares, without inductor's C++ build (tens of seconds on 2 cores);
    # inductor itself runs in benchmarks/train_throughput.py on the GPU
    torch._dynamo.reset()
    # float64: a graph that reorders a sum (a decomposition, a fused op) changes float32
    # rounding, which AdamW's m/(sqrt(v)+eps) scales by up to lr/eps = 1e6 where a gradient is
    # near zero, so no float32 atol on the weights is safe (1.3e-5 seen for another summation
    # order, tests/test_training_core.py). In float64 the same effect is ~1e-14.
    model = tiny_llama(64).double()
    eager, compiled = copy.deepcopy(model), copy.deepcopy(model)
    eager_result = train(eager, _data(), _config(False), device="cpu")
    compiled_result = train(compiled, _data(), _config("aot_eager"), device="cpu")
    # both stages ran compiled (the second recompiles for its own trainable set)
    assert len(compiled_result.losses) == 3
    # the trainer sums a step's loss in a float32 tensor: a few float32 ulps (~1e-7 relative)
    assert compiled_result.losses == pytest.approx(eager_result.losses, rel=1e-4, abs=1e-5)
    for (name, a), (_, b) in zip(eager.state_dict().items(), compiled.state_dict().items(), strict=True):
        assert a.dtype == torch.float64, name
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9, msg=name)
    # the compiled wrapper did not leak into the model's parameter names
    assert list(compiled.state_dict()) == list(model.state_dict())


def test_compile_is_not_part_of_the_identity_or_the_cache_key(tmp_path) -> None:
    assert _config(True).identity() == _config(False).identity()
    cfg = AdaptConfig(cache_dir=tmp_path)
    assert train_params(cfg.model_copy(update={"compile": True})) == train_params(cfg)
    assert training_config(train_params(cfg), compile_model=True).compile is True
    assert training_config(train_params(cfg)).compile is False


def test_train_stage_hands_compile_to_the_trainer_at_run_time(tmp_path) -> None:
    from transfer.engine.cache import StageOutput

    cfg = AdaptConfig(cache_dir=tmp_path, compile=True)
    fake = StageOutput(stage="x", key="k" * 16, path=tmp_path)
    spec = train_spec(cfg, init=fake, corpus=fake)
    assert spec.runtime["compile"] is True and "compile" not in spec.params


def test_compile_on_a_cpu_without_a_compiler_is_refused_before_training(monkeypatch) -> None:
    monkeypatch.setattr(trainer_module.shutil, "which", lambda name: None)
    model = tiny_llama(64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingError, match="compile=True on a CPU needs a C/C\\+\\+ compiler"):
        train(model, _data(), _config(True), device="cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_unknown_compile_backend_is_refused_with_the_known_ones() -> None:
    with pytest.raises(TrainingError, match="unknown torch.compile backend; known: .*inductor"):
        train(tiny_llama(64), _data(), _config("inductr"), device="cpu")


def test_a_run_that_cannot_compile_is_refused_before_any_stage(tmp_path, monkeypatch) -> None:
    from transfer.settings.validate import validate_config

    monkeypatch.setattr(trainer_module.shutil, "which", lambda name: None)
    cfg = AdaptConfig(cache_dir=tmp_path / "cache", device="cpu", compile=True)
    with pytest.raises(TrainingError, match="compile=True on a CPU needs a C/C\\+\\+ compiler"):
        validate_config(cfg)
    assert not (tmp_path / "cache").exists()
    validate_config(cfg.model_copy(update={"compile": False}))  # the same run without it is fine
