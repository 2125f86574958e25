"""Stage ``lm_eval``: one model scored on the run's lm-evaluation-harness tasks
(``lm_eval_tasks``, issue #30), beside bits per byte.

A run with ``lm_eval_tasks`` scores the source model, the adapted model at step 0 and after
training, each a plain Hugging Face folder with its own tokenizer, through the harness's
``hf`` model (``transfer.evaluate.lm_eval_tasks``). The key holds the harness version,
the tasks as given and the content of every task file the run reads (the user's YAML,
``configs/lm_eval/``), and the metadata the tasks' data functions get; ``scores.json``
holds the flat metrics (``lm_eval.<task>.<metric>``), ``lm_eval.json`` the harness's
summary (versions, sample counts, n-shot).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.engine.cache import StageOutput
from transfer.engine.stages import BuildContext, StageSpec, builder, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig

SCORES_FILE = "scores.json"


def _folder_digest(folder: Path) -> str:
    """sha256 of a task folder's YAML and Python files (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".py")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def lm_eval_spec(cfg: AdaptConfig, model: StageOutput) -> StageSpec:
    """The run's harness tasks on the model stage ``model`` (validation has resolved them)."""
    from transfer.evaluate.lm_eval_tasks import (
        LOCAL_TASKS,
        harness_version,
        resolve_tasks,
        run_metadata,
    )

    tasks = resolve_tasks(cfg.lm_eval_tasks, cfg.cache_dir)
    inputs, upstream = upstream_of(model=model)
    local = str(LOCAL_TASKS)
    for i, task in enumerate(tasks):
        # a harness task is named by the harness version; a task file's folder by its content
        for j, folder in enumerate(f for f in task.folders if task.kind == "file" or f.startswith(local)):
            inputs[f"task{i}.{j}"] = _folder_digest(Path(folder))
    return StageSpec(
        stage="lm_eval",
        params={"tasks": list(cfg.lm_eval_tasks), "harness": harness_version(), "metadata": run_metadata(cfg),
                "limit": cfg.lm_eval_limit, "num_fewshot": None},
        inputs=inputs,
        upstream=upstream,
        runtime={"device": cfg.device, "batch_size": cfg.eval_batch_size, "cache_dir": str(cfg.cache_dir)},
    )


@builder("lm_eval")
def build_lm_eval(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Run the harness on the model folder (loaded as every stage loads one: safetensors, no
    remote code); a masked LM is refused (the harness's tasks score causal models)."""
    from transfer.evaluate import lm_eval_bible  # noqa: F401  (the packaged task's data: in this stage's code version)
    from transfer.evaluate.lm_eval_tasks import evaluate_model, resolve_tasks
    from transfer.source.loading import load_source

    p = spec.params
    tasks = resolve_tasks(p["tasks"], spec.runtime.get("cache_dir"))
    model, tokenizer = load_source(str(spec.upstream_path("model") / "model"))
    scores, summary = evaluate_model(model, tokenizer, tasks, metadata=p["metadata"], device=spec.runtime.get("device"),
                                     batch_size=spec.runtime.get("batch_size", 16), limit=p["limit"],
                                     num_fewshot=p["num_fewshot"])
    write_json(out / "lm_eval.json", {"tasks": p["tasks"], "harness": p["harness"], **summary})
    write_json(out / SCORES_FILE, scores)
