"""A run's evaluations by name: one table of their labels, what people call them, their
order, and which one is the run's final metric.

The pipeline scores the source model (with its own tokenizer) and the adapted model on
held-out texts and files each score under a label (``AdaptResult.bpb``). Every report of a
run (the CLI table, the Prefect summary, the model card, the registry's metrics, the
strategy comparison, the batch summary) names, orders and picks among those labels
through this module, so an evaluation is described once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

SOURCE_ON_SOURCE_LANGUAGE = "source_model_on_source_language"
SOURCE_ON_TARGET = "source_model_on_target"
SOURCE_ON_CURVE_TEXTS = "source_model_on_curve_texts"
ADAPTED_STEP0 = "adapted_step0"
ADAPTED_TRAINED = "adapted_trained"
# an extended vocabulary keeps the source's tokens: what it still knows of the source language
ADAPTED_STEP0_ON_SOURCE_LANGUAGE = "adapted_step0_on_source_language"
ADAPTED_TRAINED_ON_SOURCE_LANGUAGE = "adapted_trained_on_source_language"

#: What each metric is called: causal models are scored on bits per byte, masked LMs on
#: the masked-LM loss (the two never compare with each other).
METRIC_NAMES: dict[str, str] = {
    "bpb": "bits per byte",
    "mlm_loss": "masked-LM loss (nats per masked token)",
}

#: How the source model (the baseline of every comparison) is named in tables.
SOURCE_MODEL_TITLE = "source model, own tokenizer"


@dataclass(frozen=True)
class EvaluationLabel:
    """One evaluation of a run: its key in ``AdaptResult.bpb`` and how people read it.

    ``model`` may name the run's ``{strategy}`` and training ``{steps}`` (filled in by
    :meth:`title`); ``adapted`` tells the adapted model's scores from the baseline's.
    """

    key: str
    model: str
    texts: str
    adapted: bool

    def title(self, *, strategy: str = "", steps: int = 0) -> str:
        return self.model.format(strategy=strategy, steps=steps)


#: Every evaluation a run can have, in the order reports list them: the source model's
#: rows first (the line to beat), then the adapted model before and after training.
EVALUATIONS: tuple[EvaluationLabel, ...] = (
    EvaluationLabel(SOURCE_ON_SOURCE_LANGUAGE, SOURCE_MODEL_TITLE, "source language", adapted=False),
    EvaluationLabel(SOURCE_ON_TARGET, SOURCE_MODEL_TITLE, "target language", adapted=False),
    EvaluationLabel(SOURCE_ON_CURVE_TEXTS, SOURCE_MODEL_TITLE, "learning-curve dev texts", adapted=False),
    EvaluationLabel(ADAPTED_STEP0, "adapted ({strategy}), step 0 (initialization only)", "target language",
                    adapted=True),
    EvaluationLabel(ADAPTED_TRAINED, "adapted ({strategy}), after {steps} training steps", "target language",
                    adapted=True),
    EvaluationLabel(ADAPTED_STEP0_ON_SOURCE_LANGUAGE, "adapted ({strategy}), step 0 (initialization only)",
                    "source language", adapted=True),
    EvaluationLabel(ADAPTED_TRAINED_ON_SOURCE_LANGUAGE, "adapted ({strategy}), after {steps} training steps",
                    "source language", adapted=True),
)
_BY_KEY = {label.key: label for label in EVALUATIONS}

#: The run's final model is the trained one when it trained, else the initialized one.
FINAL_LABELS: tuple[str, ...] = (ADAPTED_TRAINED, ADAPTED_STEP0)

V = TypeVar("V")


#: the label an evaluation set's score borrows its model's title from
_SET_MODEL_LABELS = {"source_model": SOURCE_ON_TARGET, "adapted_step0": ADAPTED_STEP0,
                     "adapted_trained": ADAPTED_TRAINED}


#: a run of several target languages scores these on each language's texts, labelled
#: ``<model>_on_<lang>`` (``adapted_trained_on_sw``); the label itself is then their mean
#: weighted by each language's bytes (``language_means``)
LANGUAGE_MODELS: dict[str, str] = {SOURCE_ON_TARGET: "source_model", ADAPTED_STEP0: ADAPTED_STEP0,
                                   ADAPTED_TRAINED: ADAPTED_TRAINED}


def language_label(label: str, language: str) -> str:
    """``adapted_trained`` on Swahili's texts -> ``adapted_trained_on_sw``."""
    return f"{LANGUAGE_MODELS[label]}_on_{language}"


def parse_language_label(key: str) -> tuple[str, str] | None:
    """(the label it is a language's score of, the language), or None for another key."""
    import re

    for label, model in LANGUAGE_MODELS.items():
        rest = key.removeprefix(f"{model}_on_")
        if rest != key and rest != "target" and re.fullmatch(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*", rest):
            return label, rest
    return None


def language_means(scores: Mapping[str, float], weights: Mapping[str, float],
                   languages: list[str]) -> dict[str, float]:
    """Each of ``LANGUAGE_MODELS`` scored on every language: its mean over the languages
    weighted by ``weights`` (each evaluation's bytes), which for bits per byte is the bits of
    all the languages' texts over their bytes."""
    means = {}
    for label in LANGUAGE_MODELS:
        keys = [language_label(label, lang) for lang in languages]
        if keys and all(key in scores for key in keys):
            total = sum(weights.get(key, 1.0) for key in keys)
            means[label] = sum(scores[key] * weights.get(key, 1.0) for key in keys) / total
    return means


def language_scores(scores: Mapping[str, float], label: str, languages: list[str]) -> dict[str, float]:
    """``label``'s value on each language's texts (empty for a run of one language)."""
    found = {lang: scores.get(language_label(label, lang)) for lang in languages} if len(languages) > 1 else {}
    return {lang: value for lang, value in found.items() if value is not None}


def final_language_scores(scores: Mapping[str, float], languages: list[str]) -> dict[str, float]:
    """The final model's value on each language: after training when it trained, else at step 0."""
    trained = language_scores(scores, ADAPTED_TRAINED, languages)
    return trained or language_scores(scores, ADAPTED_STEP0, languages)


def evaluation_label(key: str) -> EvaluationLabel:
    """The label of ``key`` (an evaluation set's ``<model>_on_eval_<name>`` and a language's
    ``<model>_on_<lang>`` too); a key this table does not know is shown as it is."""
    from transfer.corpus.eval_sets import parse_eval_set_label

    if key in _BY_KEY:
        return _BY_KEY[key]
    by_language = parse_language_label(key)
    if by_language is not None:
        base = _BY_KEY[by_language[0]]
        return EvaluationLabel(key, base.model, f"target language {by_language[1]}", adapted=base.adapted)
    parsed = parse_eval_set_label(key)
    if parsed is not None:
        model, name = parsed
        base = _BY_KEY[_SET_MODEL_LABELS[model]]
        return EvaluationLabel(key, base.model, f"eval set {name}", adapted=base.adapted)
    return EvaluationLabel(key, key, "", adapted=key.startswith("adapted"))


def in_label_order(values: Mapping[str, V]) -> list[tuple[str, V]]:
    """A run's evaluations in :data:`EVALUATIONS` order (unknown keys last, as given)."""
    order = [label.key for label in EVALUATIONS]

    def position(key: str) -> tuple[int, int]:
        by_language = parse_language_label(key)  # a language's score right after the mean
        if by_language is not None:
            return order.index(by_language[0]), 1
        return (order.index(key) if key in order else len(order)), 0

    return sorted(values.items(), key=lambda kv: position(kv[0]))


def final_label(values: Mapping[str, float], prefix: str = "") -> str | None:
    """The key of the run's final metric among ``values`` (``prefix``: e.g. ``"bpb."`` for
    the registry's flat metrics), or None when the run has neither adapted evaluation."""
    for key in FINAL_LABELS:
        if prefix + key in values:
            return key
    return None


def final_metric(values: Mapping[str, float], prefix: str = "") -> float | None:
    """The run's final metric: after training when it trained, else at step 0."""
    key = final_label(values, prefix)
    return None if key is None else values[prefix + key]


#: the models a run's task evaluations (SR-B, lm-evaluation-harness) score, in report order
TASK_MODELS: tuple[str, ...] = ("source_model", "adapted_step0", "adapted_trained")
_SRB_DIRECTIONS = {"to_en": "target -> English", "from_en": "English -> target"}


def task_model_title(model: str, *, strategy: str = "", steps: int = 0) -> str:
    """How a task evaluation's model is named: as its bits-per-byte row names it."""
    label = _SET_MODEL_LABELS.get(model)
    return _BY_KEY[label].title(strategy=strategy, steps=steps) if label else model


def task_metric_title(metric: str) -> str:
    """``srb.to_en.top1`` -> ``SR-B top-1, target -> English``; ``lm_eval.<task>.<m>`` ->
    ``<task> <m> (lm-eval)``; anything else as it is."""
    parts = metric.split(".")
    if len(parts) == 3 and parts[0] == "srb" and parts[1] in _SRB_DIRECTIONS:
        return f"SR-B {parts[2].replace('top', 'top-')}, {_SRB_DIRECTIONS[parts[1]]}"
    if len(parts) >= 3 and parts[0] == "lm_eval":
        return f"{parts[1]} {'.'.join(parts[2:])} (lm-eval)"
    return metric


def final_task_scores(task_scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The final model's task scores: after training when the run trained, else at step 0."""
    for model in ("adapted_trained", "adapted_step0"):
        if model in task_scores:
            return dict(task_scores[model])
    return {}
