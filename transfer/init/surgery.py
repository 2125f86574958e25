"""Model surgery: read the source embedding matrices and swap in the target ones.

For the init stage (DESIGN, "Stages"): swap tokenizer and embedding matrices (input,
output head, head bias; tied or untied) into the source model, so the result is a plain
Hugging Face model. Tied heads
stay tied (one matrix serves both, as in SmolLM2); untied heads get ``target.output``; the
head bias (BERT, RoBERTa) gets ``target.output_bias``. The config's and generation
config's special-token ids follow the *target* tokenizer's roles, otherwise generation
would stop on, or pad with, whatever token now sits at the source's old id.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.errors import VocabTransferError
from transfer.init.base import SourceEmbeddings, TargetEmbeddings
from transfer.source.heads import is_tied
from transfer.tokenizer.special_tokens import ROLES, map_special_tokens

# Roles whose ids a config always gets (None when the target tokenizer lacks the role).
_ALWAYS_SET = ("bos", "eos", "pad")


class SurgeryError(VocabTransferError):
    """The target matrices do not fit the model (rows, width, tied/untied, bias)."""


def _output_layer(model: PreTrainedModel) -> nn.Module | None:
    head = model.get_output_embeddings()
    return head if head is not None and hasattr(head, "weight") else None


def get_source_embeddings(model: PreTrainedModel) -> SourceEmbeddings:
    """Copies of the input matrix, the untied output matrix (None when tied) and the head
    bias (None when the head has none), all (V, d) / (V,)."""
    input_matrix = model.get_input_embeddings().weight.detach().clone()
    head = _output_layer(model)
    output = None if is_tied(model) or head is None else head.weight.detach().clone()
    bias = getattr(head, "bias", None) if head is not None else None
    return SourceEmbeddings(
        input=input_matrix,
        output=output,
        output_bias=bias.detach().clone() if bias is not None else None,
    )


def position_padding_id(model: PreTrainedModel) -> int | None:
    """The pad id a RoBERTa-style model numbers positions from, else None.

    RoBERTa, XLM-R and CamemBERT give position ``pad + 1 + i`` to the i-th non-pad token
    and look the pad id up in the *input ids*, so the pad id is part of the trained
    position embeddings and cannot move to another id.
    """
    for module in model.modules():
        padding = getattr(module, "padding_idx", None)
        if hasattr(module, "create_position_ids_from_input_ids") and isinstance(padding, int):
            return padding
    return None


def _validate(
    model: PreTrainedModel, target_tokenizer: PreTrainedTokenizerBase, target: TargetEmbeddings
) -> None:
    n_rows = len(target_tokenizer)
    width = model.get_input_embeddings().embedding_dim
    name = type(model).__name__
    position_pad = position_padding_id(model)
    if position_pad is not None and _role_id(target_tokenizer, "pad") != position_pad:
        raise SurgeryError(
            f"{name} numbers positions from its pad id {position_pad}, so the target "
            f"tokenizer's pad token must keep id {position_pad}; it has "
            f"{_role_id(target_tokenizer, 'pad')} (tokenizer_builds keeps the source's "
            "special tokens at their ids when the source has them first)"
        )
    if tuple(target.input.shape) != (n_rows, width):
        raise SurgeryError(
            f"target input embeddings have shape {tuple(target.input.shape)}, but {name} needs "
            f"({n_rows}, {width}): one row per target-tokenizer token ({n_rows}) of the "
            f"model's hidden size ({width})"
        )
    head = _output_layer(model)
    tied = is_tied(model)
    if tied and target.output is not None:
        raise SurgeryError(
            f"{name} ties its output head to its input embeddings, "
            "but target has a separate output matrix"
        )
    if not tied:
        if target.output is None:
            raise SurgeryError(f"{name} has an untied output head, but target.output is None")
        expected = (n_rows, head.in_features)
        if tuple(target.output.shape) != expected:
            raise SurgeryError(
                f"target output matrix has shape {tuple(target.output.shape)}, "
                f"{name} needs {expected}"
            )
    has_bias = head is not None and getattr(head, "bias", None) is not None
    if has_bias and target.output_bias is None:
        raise SurgeryError(f"{name}'s output head has a bias, but target.output_bias is None")
    if not has_bias and target.output_bias is not None:
        raise SurgeryError(f"{name}'s output head has no bias, but target.output_bias is set")
    if has_bias and tuple(target.output_bias.shape) != (n_rows,):
        raise SurgeryError(
            f"target output bias has shape {tuple(target.output_bias.shape)}, "
            f"{name} needs ({n_rows},)"
        )


def _role_id(tok: PreTrainedTokenizerBase, role: str) -> int | None:
    content = getattr(tok, f"{role}_token", None)
    return tok.get_vocab().get(str(content)) if content is not None else None


def _set_token_ids(
    model: PreTrainedModel,
    target_tokenizer: PreTrainedTokenizerBase,
    source_tokenizer: PreTrainedTokenizerBase | None,
) -> None:
    """Point config and generation-config token ids at the target tokenizer's roles."""
    config = model.config
    for role in ROLES:
        attr = f"{role}_token_id"
        if role in _ALWAYS_SET or getattr(config, attr, None) is not None:
            setattr(config, attr, _role_id(target_tokenizer, role))

    generation = getattr(model, "generation_config", None)
    if generation is None:
        return
    inverse = (
        {s: t for t, s in map_special_tokens(source_tokenizer, target_tokenizer).items()}
        if source_tokenizer is not None
        else {}
    )
    for role in _ALWAYS_SET:
        attr = f"{role}_token_id"
        old: Any = getattr(generation, attr, None)
        new = _role_id(target_tokenizer, role)
        if isinstance(old, list) and inverse:
            # several stop tokens (eos and an end-of-turn marker): keep those that map
            mapped = [inverse[i] for i in old if i in inverse]
            if new is not None and new not in mapped:
                mapped.insert(0, new)
            new = mapped or new
        if old is not None or new is not None:
            setattr(generation, attr, new)


def swap_vocabulary(
    model: PreTrainedModel,
    target_tokenizer: PreTrainedTokenizerBase,
    target: TargetEmbeddings,
    *,
    source_tokenizer: PreTrainedTokenizerBase | None = None,
) -> PreTrainedModel:
    """Give ``model`` the target vocabulary in place (and return it).

    ``source_tokenizer``, when given, lets a generation config's list of stop ids be
    mapped token by token (by role) instead of being replaced by the target's eos.
    """
    _validate(model, target_tokenizer, target)
    tied = is_tied(model)
    n_rows = len(target_tokenizer)
    old_padding = model.get_input_embeddings().padding_idx

    # resize_token_embeddings rebuilds the modules, re-ties the head (and BERT's bias
    # alias) and updates config.vocab_size; we then overwrite every value.
    model.resize_token_embeddings(n_rows, mean_resizing=False)
    embedding = model.get_input_embeddings()
    head = _output_layer(model)
    with torch.no_grad():
        embedding.weight.copy_(target.input.to(embedding.weight.dtype))
        if head is not None and not tied:
            head.weight.copy_(target.output.to(head.weight.dtype))
        if target.output_bias is not None:
            head.bias.copy_(target.output_bias.to(head.bias.dtype))
    if old_padding is not None:
        embedding.padding_idx = _role_id(target_tokenizer, "pad")

    if tied and not is_tied(model):
        raise SurgeryError(f"{type(model).__name__} lost its tied output head while resizing")
    _set_token_ids(model, target_tokenizer, source_tokenizer)
    return model
