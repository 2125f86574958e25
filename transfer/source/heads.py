"""Whether a model's output head is tied to its input embedding: one answer for every stage.

The source record, the vocabulary surgery, the strategies (``SourceEmbeddings.tied``) and
OFA's factorization all ask here. It reads the modules, not ``config.tie_word_embeddings``:
a checkpoint can contradict its config (transformers keeps a saved head that differs from
the embedding even when the config says tied), and it is the modules that train and score.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel


def is_tied(model: PreTrainedModel) -> bool:
    """Whether the output head shares its weights with the input embedding (or is absent)."""
    head = model.get_output_embeddings()
    if head is None:
        return True
    embedding = model.get_input_embeddings()
    # A head that holds the embedding module itself (OFA's factorized head) is tied to it.
    # Duck-typed so the source stage need not import the init package.
    held = getattr(head, "embedding", None)
    if isinstance(held, nn.Module):
        return held is embedding
    weight = getattr(head, "weight", None)
    if weight is None:
        return True
    shared = getattr(embedding, "weight", None)
    return shared is not None and (weight is shared or weight.data_ptr() == shared.data_ptr())
