"""Causal or masked LM: the one place that tells a model's (or checkpoint's) objective.

The objective decides everything downstream of loading: which ``AutoModelFor...`` class
loads the checkpoint, which loss the trainer minimizes (next token vs BERT's 80/10/10
masking) and which metric scores the model. DESIGN ("Metric"): bits per byte for causal
LMs, the masked-LM loss with a fixed seed and rate for masked LMs (BERT, RoBERTa, XLM-R),
which have no left-to-right likelihood.
"""

from __future__ import annotations

from typing import Literal

from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from transfer.errors import ModelLoadError

Objective = Literal["causal", "masked"]
#: The metric each objective is scored by (the names evaluate's metrics.json and the
#: learning curves record).
METRIC_OF: dict[Objective, str] = {"causal": "bpb", "masked": "mlm_loss"}

_CAUSAL_CLASSES = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
_MASKED_CLASSES = frozenset(MODEL_FOR_MASKED_LM_MAPPING_NAMES.values())


def _by_class_name(name: str, config: PretrainedConfig) -> Objective | None:
    causal = name in _CAUSAL_CLASSES or name.endswith(("ForCausalLM", "LMHeadModel"))
    masked = name in _MASKED_CLASSES or name.endswith("ForMaskedLM")
    if causal and masked:  # one head class for both (XLM's): the decoder flag decides
        return "causal" if getattr(config, "is_decoder", False) else "masked"
    if causal:
        return "causal"
    return "masked" if masked else None


def _by_model_type(config: PretrainedConfig) -> Objective | None:
    # BERT-like types have both head classes; their causal one needs is_decoder=True.
    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and (
        not getattr(config, "is_decoder", False) or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    ):
        return "masked"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return None


def model_objective(model_or_config: PreTrainedModel | PretrainedConfig) -> Objective:
    """``"causal"`` or ``"masked"`` for a loaded model (by its class) or a checkpoint's
    config (by its ``architectures``, then its ``model_type``)."""
    if isinstance(model_or_config, PretrainedConfig):
        config, names = model_or_config, list(model_or_config.architectures or [])
    else:
        config, names = model_or_config.config, [type(model_or_config).__name__]
    for name in names:
        found = _by_class_name(name, config)
        if found is not None:
            return found
    found = _by_model_type(config)
    if found is None:
        raise ModelLoadError(
            f"cannot tell whether {names or getattr(config, 'model_type', '?')} is a causal or a masked LM "
            "(neither head class is known); the trainer takes objective='causal' or 'masked' explicitly"
        )
    return found


def auto_model_class(config: PretrainedConfig) -> type:
    """The ``AutoModelFor...`` class that loads a checkpoint with this config."""
    return AutoModelForMaskedLM if model_objective(config) == "masked" else AutoModelForCausalLM
