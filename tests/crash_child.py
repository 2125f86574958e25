"""The child process of the kill/resume and concurrency tests (not a test module).

``run_child`` (in a forked process: no second import of torch) or
``python -m tests.crash_child CONFIG.json EVENTS [--pause STAGE --signal FILE]`` runs
``transfer.pipeline.run_adaptation`` on the config and appends one line per stage event
(``label status``, then ``done <model dir>`` or ``failed <traceback>``) to EVENTS. With ``--pause STAGE`` the child stops inside that stage at a
point the test controls, writes FILE and sleeps until the test kills it:

- a cached stage (corpus, source, tokenizer, init, evaluate, fasttext, align): the stage's
  real builder has written every file into the stage's temporary folder, which is not yet
  renamed into the cache (the worst moment: a whole folder that is not an entry);
- ``train``: inside the trainer, at step ``--step`` (a ``TrainingCallback``), after the
  checkpoints of the steps before it were written.

The pause wraps the registered builder from outside (``transfer.engine.stages.builder``),
so the library carries no test hook.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _signal_and_wait(signal_file: Path, payload: dict[str, Any]) -> None:
    signal_file.write_text(json.dumps(payload))
    while True:  # the test sends SIGKILL or SIGINT (KeyboardInterrupt out of sleep)
        time.sleep(0.05)


def run_child(config: Path, events: Path, pause: str | None = None, signal_file: Path | None = None,
              step: int = 2) -> None:
    """Run the pipeline on the config file, logging stage events; pause as the module says."""
    import signal

    # A forked child inherits the parent's handlers (pytest's, a Prefect harness's); Ctrl-C
    # in a real CLI process meets Python's default one, which raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from transfer.engine.stages import BuildContext, StageSpec, builder, builder_of
    from transfer.pipeline import run_adaptation
    from transfer.settings.config import AdaptConfig
    from transfer.train.callbacks import TrainingCallback

    cfg = AdaptConfig.model_validate_json(config.read_text())
    callbacks: list[TrainingCallback] = []
    if pause == "train":

        class PauseAtStep(TrainingCallback):
            def on_step(self, at: int, metrics: dict[str, Any]) -> None:
                if at == step:
                    _signal_and_wait(signal_file, {"stage": "train", "step": at})

        callbacks.append(PauseAtStep())
    elif pause:
        real = builder_of(pause)

        def paused(spec: StageSpec, out: Path, context: BuildContext) -> None:
            real(spec, out, context)
            _signal_and_wait(signal_file, {"stage": spec.stage, "key": spec.key, "tmp": str(out)})

        builder(pause)(paused)

    def listener(label: str, status: str) -> None:
        with open(events, "a") as handle:
            handle.write(f"{label} {status}\n")

    try:
        result = run_adaptation(cfg, listener=listener, callbacks=callbacks)
    except BaseException:
        with open(events, "a") as handle:
            handle.write("failed " + traceback.format_exc().replace("\n", " | ") + "\n")
        raise
    with open(events, "a") as handle:
        handle.write(f"done {result.model_dir}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("events", type=Path)
    parser.add_argument("--pause", default=None)
    parser.add_argument("--signal", type=Path, default=None)
    parser.add_argument("--step", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    run_child(args.config, args.events, args.pause, args.signal, args.step)


if __name__ == "__main__":
    sys.exit(main())
