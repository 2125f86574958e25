"""Which parameters train in each stage.

Stage one trains only the vocabulary-specific parameters: the input embeddings, an untied
output head and an output bias, with the transformer body frozen (de Vries & Nissim 2021,
"As good as new"; WECHSEL and OFA train this way first). The parameters are found
generically, through ``get_input_embeddings()`` (whatever module it is: a plain
``nn.Embedding`` or OFA's factorized coordinates x primitives) and ``get_output_embeddings()``,
so any architecture and any embedding module work unchanged.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from transfer.errors import TrainingError

# Output biases that live outside the head module (BART/Marian keep a buffer-like parameter).
_EXTRA_BIAS_NAMES = ("final_logits_bias",)


def _add(found: list[torch.nn.Parameter], params) -> None:
    for param in params:
        if isinstance(param, torch.nn.Parameter) and all(param is not p for p in found):
            found.append(param)


def embedding_parameters(model: PreTrainedModel) -> list[torch.nn.Parameter]:
    """Input-embedding parameters, then untied head weight and output bias (no duplicates)."""
    embeddings = model.get_input_embeddings()
    if embeddings is None:
        raise TrainingError("model has no input embeddings (get_input_embeddings() is None)")
    found: list[torch.nn.Parameter] = []
    _add(found, embeddings.parameters())
    head = model.get_output_embeddings()
    if head is not None:
        # A tied head *is* the input matrix, which _add skips as a duplicate.
        _add(found, head.parameters())
    for name, param in model.named_parameters():
        if name.endswith(_EXTRA_BIAS_NAMES):
            _add(found, [param])
    return found


def set_trainable(model: PreTrainedModel, stage: str) -> list[torch.nn.Parameter]:
    """Freeze for ``stage`` ("embeddings" or "full") and return the trainable parameters."""
    if stage == "embeddings":
        trainable = embedding_parameters(model)
    elif stage == "full":
        trainable = []
        _add(trainable, model.parameters())
    else:
        raise TrainingError(f"stage must be 'embeddings' or 'full', got {stage!r}")
    for param in model.parameters():
        param.requires_grad_(False)
    for param in trainable:
        param.requires_grad_(True)
    return trainable


def freeze_all_but_embeddings(model: PreTrainedModel) -> list[torch.nn.Parameter]:
    """Freeze the body; keep input embeddings, an untied head and its bias trainable."""
    return set_trainable(model, "embeddings")
