"""What a run produced (``AdaptResult``) and where its stage folders are."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field

from transfer.publish.registry_records import Registration
from transfer.settings.config import AdaptConfig


class AdaptResult(BaseModel):
    """What a run produced: metrics, where things are, and which stages were cached."""

    config: AdaptConfig
    code_version: str
    model_dir: str
    stage_keys: dict[str, str]  # label -> key (or 'stage:key'), e.g. "align", "fasttext:source"
    stages_cached: dict[str, bool]
    # every evaluation's value of ``metric`` (bits per byte, or a masked LM's loss); results
    # written before the field had this name called it "bpb"
    scores: dict[str, float] = Field(validation_alias=AliasChoices("scores", "bpb"))
    metric: Literal["bpb", "mlm_loss"] = "bpb"
    fertility: dict[str, dict[str, float]]
    init_report: dict[str, Any]
    train_log: dict[str, Any] | None
    seconds: float
    registration: Registration | None = None
    # opt-in task evaluations (SR-B, lm-evaluation-harness): model ("source_model",
    # "adapted_step0", "adapted_trained") -> metric ("srb.to_en.top1", "lm_eval.<task>.acc") -> value
    task_scores: dict[str, dict[str, float]] = Field(default_factory=dict)


def task_scores_of(lineage: Mapping[str, str], cache_dir: Path | str) -> dict[str, dict[str, float]]:
    """The task scores a run's stages wrote (``scores.json`` of every stage kind the stage
    table marks ``task_scores``), by the model its label names (``srb.adapted_step0``);
    ``lineage``: label -> ``stage:key``, as the run's graph gives it."""
    from transfer.engine.stage_table import writes_task_scores

    scores: dict[str, dict[str, float]] = {}
    for label, value in lineage.items():
        stage, _, key = value.partition(":")
        if writes_task_scores(stage) and "." in label:
            path = Path(cache_dir) / stage / key / "scores.json"
            scores.setdefault(label.split(".", 1)[1], {}).update(json.loads(path.read_text()))
    return scores


def stage_of(result: AdaptResult, label: str) -> str:
    """The stage (cache folder) behind one of a run's stage labels: ``final`` is the train
    stage when the run trained, else init; ``fasttext:source`` (or ``fasttext.source``) and
    ``evaluate.x`` name theirs."""
    if label == "final":
        return "train" if result.train_log is not None else "init"
    return label.split(":", 1)[0].split(".", 1)[0]


def _manifest_stage_keys(result: AdaptResult) -> dict[str, str]:
    """The stage keys the run manifest beside the exported model records, if there is one."""
    from transfer.publish.manifest import MANIFEST_FILE

    try:
        return dict(json.loads((Path(result.model_dir) / MANIFEST_FILE).read_text()).get("stage_keys", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def qualified_stage_keys(result: AdaptResult) -> dict[str, str]:
    """label -> ``stage:key`` for every stage the result names (keys given bare or qualified)."""
    out = {}
    for label, value in result.stage_keys.items():
        out[label] = value if ":" in value else f"{stage_of(result, label)}:{value}"
    return out


def stage_folder(result: AdaptResult, label: str) -> Path | None:
    """The cache folder of the run's stage ``label`` (e.g. ``align``), read from the result's
    stage keys, else from its run manifest; None when the run had no such stage or the
    folder is gone."""
    # labels are spelled with dots ("fasttext.source"); results written before the stage
    # table spelled the graph's with colons ("fasttext:source")
    spellings = (label, label.replace(":", "."), label.replace(".", ":", 1))
    keys = qualified_stage_keys(result)
    value = next((keys[s] for s in spellings if s in keys), None)
    if value is None:
        manifest = _manifest_stage_keys(result)
        value = next((manifest[s] for s in spellings if s in manifest), None)
    if not value or ":" not in value:
        return None
    stage, _, key = value.partition(":")
    path = Path(result.config.cache_dir) / stage / key
    return path if path.is_dir() else None


def stage_record(result: AdaptResult, label: str, name: str) -> dict[str, Any] | None:
    """A JSON record a stage wrote into its folder (``align.json``, ``source.json``...)."""
    folder = stage_folder(result, label)
    if folder is None:
        return None
    try:
        record = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def trainer_curve_file(result: AdaptResult) -> Path | None:
    """The trainer's dev-BPB learning curve (``curve.json`` in the train stage folder), when
    the run trained and wrote one."""
    if result.train_log is None:
        return None
    folder = stage_folder(result, "final")
    path = folder / "curve.json" if folder is not None else None
    return path if path is not None and path.is_file() else None
