"""``loss_kernel`` from the config reaches the trainer (issue #28, item 3): the whole-logits
and the chunked loss train the same model within tolerance, the chosen kernel is the one
that ran, and 'fused' on a CPU is refused before the first stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import config
from transfer.errors import TrainingError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_setting_reaches_the_trainer(tmp_path: Path, tiny_source: Path, tiny_corpus: Path, monkeypatch) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation
    from transfer.train import trainer

    seen: list[str] = []
    real = trainer.loss_sum

    def spy(model, batch, objective, *, kernel="auto"):
        seen.append(kernel)
        return real(model, batch, objective, kernel=kernel)

    monkeypatch.setattr(trainer, "loss_sum", spy)
    losses = {}
    for kernel in ("full", "chunked"):
        cfg = config(tmp_path / kernel, tiny_source, tiny_corpus, loss_kernel=kernel, train_steps=2)
        plan = plan_adaptation(cfg)
        run_adaptation(plan)
        log = json.loads((Path(plan.stage("train").path) / "train_log.json").read_text())
        losses[kernel] = log["losses"]
        assert seen and set(seen) == {kernel}
        seen.clear()
    assert len(losses["full"]) == 2
    assert losses["full"] == pytest.approx(losses["chunked"], rel=1e-5)


def test_fused_on_cpu_is_refused_before_the_first_stage(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    with pytest.raises(TrainingError, match="runs on CUDA only"):
        plan_adaptation(config(tmp_path, tiny_source, tiny_corpus, loss_kernel="fused"))
    assert not (tmp_path / "cache" / "corpus").exists()
