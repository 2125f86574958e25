"""The pipeline's stages as data: one row per stage (its cache folder name, the module
that holds its spec and builder, whether it trains) and the one spelling of run labels.

It imports nothing of ours, so the cache, the code version and the builder registry can
all read it without importing each other (they once formed an import cycle through
``STAGE_MODULES``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageKind:
    """One kind of stage: ``name`` is its cache folder (``artifacts/cache/<name>/<key>``)."""

    name: str
    module: str  # holds the stage's spec function and its ``@builder``
    trains: bool = False  # takes the worker's training slot and reports training progress
    # writes scores.json (metric -> value) of one model's task evaluation, read into the
    # run's task_scores under the label's qualifier (SR-B, lm-evaluation-harness)
    task_scores: bool = False


STAGE_TABLE: dict[str, StageKind] = {kind.name: kind for kind in (
    StageKind("corpus", "transfer.corpus.stage"),
    StageKind("source", "transfer.source.stage"),
    StageKind("tokenizer", "transfer.tokenizer.stage"),
    StageKind("fasttext", "transfer.vectors.stage"),
    StageKind("pretrained_vectors", "transfer.vectors.stage"),
    StageKind("align", "transfer.vectors.stage"),
    StageKind("links", "transfer.init.links"),
    StageKind("init", "transfer.init.stage"),
    StageKind("train", "transfer.train.stage", trains=True),
    # trans-tokenization's Hydra: one body trained with a table and head per language (issue #29)
    StageKind("hydra", "transfer.hydra.stage", trains=True),
    StageKind("evaluate", "transfer.evaluate.stage"),
    StageKind("srb", "transfer.evaluate.srb_stage", task_scores=True),
    StageKind("lm_eval", "transfer.evaluate.lm_eval_stage", task_scores=True),
)}

#: Label of a run's trained-or-initialized model in lineages (the train stage, else init).
FINAL = "final"


def stage_label(stage: str, qualifier: str | None = None) -> str:
    """A stage's label in a run: the stage name, or ``<stage>.<qualifier>`` for a stage a run
    has several of (``fasttext.source``, ``evaluate.adapted_step0``). The graph, the
    manifest, the registry and the model card all use this one spelling."""
    return f"{stage}.{qualifier}" if qualifier else stage


def stage_of_label(label: str) -> str:
    """The stage behind a label (``fasttext.source`` -> ``fasttext``); older results wrote
    ``fasttext:source``, which is read the same way."""
    return label.split(":", 1)[0].split(".", 1)[0]


def is_training_stage(stage: str) -> bool:
    kind = STAGE_TABLE.get(stage)
    return kind is not None and kind.trains


def writes_task_scores(stage: str) -> bool:
    kind = STAGE_TABLE.get(stage)
    return kind is not None and kind.task_scores
