"""Progress callbacks reach the train stage as arguments (``run_adaptation(callbacks=...)``
-> ``BuildContext`` -> builder), not through a process-wide list: the Prefect flow hands its
progress artifact's callback down this way, the CLI its progress bar."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import config
from transfer.pipeline import run_adaptation
from transfer.train import TrainingCallback


class Steps(TrainingCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step(self, step, metrics) -> None:
        self.steps.append(step)


def test_run_adaptation_hands_callbacks_to_the_train_stage(tmp_path: Path, tiny_source: Path,
                                                           tiny_corpus: Path) -> None:
    steps = Steps()
    run_adaptation(config(tmp_path, tiny_source, tiny_corpus, register_model=False, eval_texts=2),
                   callbacks=[steps])
    assert steps.steps == [1, 2]


def test_adapt_flow_reports_training_steps(prefect_harness, tmp_path: Path, tiny_source: Path,
                                           tiny_corpus: Path) -> None:
    from flows import reports
    from flows.adapt_flow import adapt_flow

    seen: list[str] = []
    observe = lambda artifact_id, percent, description: seen.append(description)
    reports.progress_observers.append(observe)
    try:
        state = adapt_flow(config(tmp_path, tiny_source, tiny_corpus, register_model=False, eval_texts=2),
                           return_state=True)
    finally:
        reports.progress_observers.remove(observe)
    assert state.is_completed(), state.message
    # TrainingProgress moved the artifact from inside the train stage's builder
    assert [d.split(",")[0] for d in seen if d.startswith("train (")] == [
        "train (embeddings): step 1/2", "train (embeddings): step 2/2"]
