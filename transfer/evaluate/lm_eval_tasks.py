"""lm-evaluation-harness (EleutherAI's ``lm-eval``, the optional extra ``lm-eval``) on our
models: which tasks a name means, whether their data can be had, and running them.

Our models are plain Hugging Face folders, each with its own tokenizer, so the harness's
``hf`` model (``HFLM``) loads them as they are; its loglikelihood scoring then compares
models with different tokenizers on the same documents (accuracy, not perplexity, so the
tokenizer does not enter the metric). A task is a harness name (task, group or tag), a
task YAML file of the user's, or a task of ``configs/lm_eval/`` (packaged with the project,
e.g. ``bible_continuation``, found by name).

Everything a run can check is checked before its first stage (``check_lm_eval_tasks``):
the harness is installed; every name is one the harness knows (its own index of task
YAML files, built once per harness version and kept in the stage cache, since building it
reads ~15,000 files); every task's data loads, through the harness itself, so offline
(``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``) a dataset not in the local cache is refused in
seconds, naming it.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.errors import VocabTransferError

#: the project's own harness tasks (``bible_continuation``), found by name
LOCAL_TASKS = Path(__file__).resolve().parents[2] / "configs" / "lm_eval"
EXTRA = "lm-eval"
_YAML_SUFFIXES = (".yaml", ".yml")


class LmEvalError(VocabTransferError):
    """An lm-evaluation-harness task cannot run: harness missing, unknown task, data missing."""


def harness_version() -> str | None:
    """The installed harness's version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def require_harness() -> str:
    version = harness_version()
    if version is None:
        raise LmEvalError(f"lm_eval_tasks: lm-evaluation-harness is not installed; install the optional extra "
                          f"'{EXTRA}' (pip install -e '.[{EXTRA}]'; `make setup` installs it from the lock)")
    return version


@dataclass(frozen=True)
class HarnessTask:
    """One requested task: as given, the harness's name for it, and the folders of task
    YAML files the harness must index to load it."""

    request: str
    name: str
    kind: str  # "task", "group", "tag" or "file"
    folders: tuple[str, ...]
    yaml_file: str | None = None  # a task file (the user's, or one of configs/lm_eval/)

    @property
    def load_name(self) -> str:
        """What the harness is handed: a file task by its path, the rest by name."""
        return self.yaml_file if self.kind == "file" else self.name


def _quiet_harness() -> None:
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _index(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """name -> {"kind", "folders"} of the task YAML files under ``paths``, by the harness's
    own indexer (what ``TaskManager`` builds on construction)."""
    from lm_eval.tasks._index import Kind, TaskIndex

    entries = TaskIndex.build([Path(p) for p in paths])
    folder = {name: str(e.yaml_path.parent) for name, e in entries.items() if e.yaml_path is not None}
    out = {}
    for name, entry in entries.items():
        if entry.kind == Kind.TAG:  # a tag has no file: its tasks' folders
            folders = sorted({folder[t] for t in entry.tags if t in folder})
        else:
            folders = [folder[name]] if name in folder else []
        out[name] = {"kind": entry.kind.name.lower().replace("py_task", "task"), "folders": folders}
    return out


def harness_index(cache_dir: Path | str | None) -> dict[str, dict[str, Any]]:
    """The harness's own tasks, groups and tags (name -> kind and folders), built once per
    harness version and kept in ``<cache_dir>/lm_eval/`` (building it reads every task
    file of the harness, ~20 s on 2 cores); the project's ``configs/lm_eval`` tasks on top."""
    import lm_eval.tasks

    version = require_harness()
    index: dict[str, dict[str, Any]] | None = None
    path = Path(cache_dir) / "lm_eval" / f"index-{version}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError):
            index = None
    if index is None:
        _quiet_harness()
        index = _index([Path(lm_eval.tasks.__file__).parent])
        if path is not None:
            from transfer.engine.cache import atomic_write

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(index, sort_keys=True) + "\n")
    if LOCAL_TASKS.is_dir():
        index = {**index, **_index([LOCAL_TASKS])}
    return index


def _is_file_request(request: str) -> bool:
    return request.endswith(_YAML_SUFFIXES) or os.sep in request or "/" in request


def _file_task(request: str) -> HarnessTask:
    from lm_eval.tasks._yaml_loader import load_yaml

    path = Path(request)
    if not path.is_file():
        raise LmEvalError(f"lm_eval_tasks: task file {request} does not exist")
    try:
        cfg = load_yaml(path.resolve(), resolve_func=False)
    except Exception as error:  # the harness's YAML loader: yaml errors, a missing include
        raise LmEvalError(f"lm_eval_tasks: task file {request} cannot be read as a harness task: {error}") from error
    name = cfg.get("task") or cfg.get("group") if isinstance(cfg, dict) else None
    if not isinstance(name, str):
        raise LmEvalError(f"lm_eval_tasks: task file {request} names no 'task' (or 'group')")
    return HarnessTask(request, name, "file", (str(path.resolve().parent),), str(path.resolve()))


def resolve_tasks(requests: Sequence[str], cache_dir: Path | str | None = None) -> list[HarnessTask]:
    """The tasks ``requests`` name: task YAML files, or names the harness (or
    ``configs/lm_eval/``) knows. An unknown name is refused with the closest of the
    harness's names and how to list them all."""
    require_harness()
    if not requests:
        return []
    repeated = sorted({r for r in requests if list(requests).count(r) > 1})
    if repeated:
        raise LmEvalError(f"lm_eval_tasks: {repeated} given more than once")
    index = harness_index(cache_dir) if any(not _is_file_request(r) for r in requests) else {}
    tasks, unknown = [], []
    for request in requests:
        if _is_file_request(request):
            tasks.append(_file_task(request))
        elif request in index:
            entry = index[request]
            tasks.append(HarnessTask(request, request, entry["kind"], tuple(entry["folders"])))
        else:
            unknown.append(request)
    if unknown:
        hints = "; ".join(f"{name!r}: closest {difflib.get_close_matches(name, list(index), n=5, cutoff=0.6)}"
                          for name in unknown)
        raise LmEvalError(
            f"lm_eval_tasks: {unknown} not among the {len(index):,} tasks, groups and tags of "
            f"lm-evaluation-harness {harness_version()} and configs/lm_eval ({hints}); `lm-eval ls tasks` lists "
            "them all, or give a task YAML file of your own")
    return tasks


def task_manager(tasks: Sequence[HarnessTask], metadata: Mapping[str, Any] | None = None):
    """A harness ``TaskManager`` over only the folders these tasks need (and
    ``configs/lm_eval``), so it indexes a few files instead of the harness's ~15,000;
    ``metadata`` reaches every task's data function (``bible`` for ``bible_continuation``)."""
    from lm_eval.tasks import TaskManager

    _quiet_harness()
    folders = sorted({f for task in tasks for f in task.folders} | ({str(LOCAL_TASKS)} if LOCAL_TASKS.is_dir() else set()))
    return TaskManager(include_defaults=False, include_path=folders, metadata=dict(metadata or {}))


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def _data_error(request: str, error: Exception) -> LmEvalError:
    mode = ("offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set) and not in the local datasets cache; run "
            "once with network (HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0) to cache it, or give a task of local "
            "files (configs/lm_eval/)") if _offline() else "(no network, or the dataset is gone)"
    return LmEvalError(f"lm_eval task {request!r}: its data cannot be loaded, {mode}: "
                       f"{type(error).__name__}: {error}")


def load_tasks(tasks: Sequence[HarnessTask], metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The harness's task objects of ``tasks`` (their data loaded), by name; a task whose
    data cannot be had is refused naming the dataset (a ConnectionError offline comes at
    once: the datasets library does not retry then)."""
    manager = task_manager(tasks, metadata)
    loaded: dict[str, Any] = {}
    for task in tasks:
        try:
            loaded.update(manager.load([task.load_name])["tasks"])
        except VocabTransferError as error:  # our own data functions (bible_continuation)
            raise LmEvalError(f"lm_eval task {task.request!r}: {error}") from error
        except (ConnectionError, OSError) as error:
            raise _data_error(task.request, error) from error
        except Exception as error:  # datasets' own errors (DatasetNotFoundError...) are not OSErrors
            if "dataset" in type(error).__name__.lower() or "offline" in str(error).lower():
                raise _data_error(task.request, error) from error
            raise LmEvalError(f"lm_eval task {task.request!r} cannot be loaded by the harness: "
                              f"{type(error).__name__}: {error}") from error
    return loaded


@functools.lru_cache(maxsize=32)
def _checked(requests: tuple[str, ...], cache_dir: str, metadata: str, offline: bool) -> None:
    load_tasks(resolve_tasks(requests, cache_dir), json.loads(metadata))


def run_metadata(cfg) -> dict[str, Any]:
    """What a run hands every task's data function: its target translation (for
    ``bible_continuation``), split fractions and normalization."""
    from transfer.corpus.bible_languages import bibles_of

    own = cfg.target_bible or bibles_of(cfg.target_language)
    return {"bible": own[0] if own else None, "dev_fraction": cfg.dev_fraction, "test_fraction": cfg.test_fraction,
            "normalization": cfg.normalization}


def _check_causal_source(source_model: str) -> None:
    """A local folder source must be a causal LM (a GGUF file always is; a hub id is
    checked by the stage, once its files are there)."""
    from transformers import AutoConfig

    from transfer.source.loading import resolve_source
    from transfer.source.objective import model_objective

    try:
        source = resolve_source(source_model)
    except VocabTransferError:
        return  # validation reports the source itself
    if source.kind == "folder" and model_objective(AutoConfig.from_pretrained(source.location)) != "causal":
        raise LmEvalError(f"lm_eval_tasks: the source {source_model} is a masked LM; lm-evaluation-harness tasks "
                          "score causal LMs")


def check_lm_eval_tasks(cfg) -> None:
    """Before the first stage (validation): the harness is there, every task is known, and
    its data loads. Remembered per process, so a comparison's runs check once."""
    if not cfg.lm_eval_tasks:
        return
    _check_causal_source(cfg.source_model)
    _checked(tuple(cfg.lm_eval_tasks), str(cfg.cache_dir), json.dumps(run_metadata(cfg), sort_keys=True), _offline())


def flat_results(results: Mapping[str, Any], tasks: Sequence[str] | None = None) -> dict[str, float]:
    """The harness's ``results`` as flat metrics ``lm_eval.<task>.<metric>`` (a filter
    other than ``none`` is kept: ``exact_match.strict-match``); standard errors and
    non-numbers dropped."""
    out = {}
    for task, metrics in results.get("results", {}).items():
        if tasks is not None and task not in tasks:
            continue
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if not filt or metric.endswith("_stderr") or isinstance(value, bool) or \
                    not isinstance(value, (int, float)):
                continue
            name = metric if filt == "none" else f"{metric}.{filt}"
            out[f"lm_eval.{task}.{name}"] = float(value)
    return out


def evaluate_model(model, tokenizer, tasks: Sequence[HarnessTask], *, metadata: Mapping[str, Any] | None = None,
                   device: str | None = None, batch_size: int = 16, limit: int | None = None,
                   num_fewshot: int | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Run ``tasks`` on a loaded causal model with its own tokenizer (``load_source``: a
    Hugging Face folder, ``smollm2``, a ``.gguf``, a hub id) through the harness's ``hf``
    model: the flat metrics and the harness's JSON-able summary (versions, sample counts,
    n-shot). ``limit``: the first N documents of each task (quick checks only)."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from transfer.source.objective import model_objective

    require_harness()
    if model_objective(model) != "causal":
        raise LmEvalError("lm-evaluation-harness tasks score causal LMs; this model is a masked LM")
    _quiet_harness()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    harness_model = HFLM(pretrained=model.to(device).eval(), tokenizer=tokenizer, device=device,
                         batch_size=batch_size)
    try:
        results = simple_evaluate(model=harness_model, tasks=[task.load_name for task in tasks], limit=limit,
                                  num_fewshot=num_fewshot, bootstrap_iters=0, log_samples=False,
                                  task_manager=task_manager(tasks, metadata))
    except ConnectionError as error:  # data the check before the run found, gone since
        raise _data_error(", ".join(t.request for t in tasks), error) from error
    del harness_model
    summary = {key: results.get(key) for key in ("versions", "n-shot", "n-samples", "higher_is_better",
                                                 "max_length")}
    summary["results"] = results.get("results", {})
    return flat_results(results), json.loads(json.dumps(summary, default=str))
