"""The one interface every initialization strategy implements.

A strategy gets the source model's embedding matrices and both tokenizers (plus whatever
that strategy needs, in a typed ``StrategyResources``) and returns the target matrices and a report saying
how many target tokens were copied, computed or fell back, and why.

Strategies only decide the ordinary tokens. Special tokens (by role) and byte tokens (by
byte value) are fixed afterwards by ``transfer.init.registry.initialize`` the same way
for every strategy, so that the comparison between strategies is about the real work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class SourceEmbeddings:
    """Embedding matrices of the source model.

    ``output`` is None when the output head is tied to ``input``; ``output_bias`` is None
    when the head has no bias (Llama) and a (V,) vector when it has one (BERT's decoder).
    """

    input: torch.Tensor
    output: torch.Tensor | None = None
    output_bias: torch.Tensor | None = None

    @property
    def tied(self) -> bool:
        return self.output is None


@dataclass(frozen=True)
class StrategyResources:
    """The data a strategy may need beyond the embeddings; a field, not a string key, so a
    misspelt resource is a TypeError here instead of data silently ignored.

    - ``parallel``: (source sentence, target sentence) pairs of the train split
      (trans-tokenization); ``link_counts``: precomputed token link counts c(t, s), a
      (V_t, V_s) matrix, instead of aligning ``parallel``;
    - ``target_corpus``: target train text, a path (a document per line) or texts (FOCUS);
    - static vectors (WECHSEL, OFA, trans-tokenization's fallback), in any form
      ``transfer.init.vector_resources`` takes: ``aligned_vectors`` (aligned word vectors,
      turned into token vectors by ``token_vector_method`` "ngram" or "word_average", the
      latter weighting words by ``{source,target}_word_frequencies`` when given; or a pair
      of token matrices), or ``source_token_vectors`` + ``target_token_vectors``;
    - ``helper_embeddings``: the embedding matrices of a helper model whose tokenizer *is*
      the target tokenizer (CLP-Transfer, OMP), so row ``t`` belongs to target id ``t``;
      its width may differ from the source's.
    """

    parallel: Sequence[tuple[str, str]] | None = None
    link_counts: Any = None
    target_corpus: str | PathLike[str] | Sequence[str] | None = None
    aligned_vectors: Any = None
    token_vector_method: str = "ngram"
    source_token_vectors: Any = None
    target_token_vectors: Any = None
    source_word_frequencies: Mapping[str, float] | None = None
    target_word_frequencies: Mapping[str, float] | None = None
    helper_embeddings: SourceEmbeddings | None = None


@dataclass
class StrategyInputs:
    """Everything a strategy may use; ``resources`` carries strategy-specific data."""

    source: SourceEmbeddings
    source_tokenizer: PreTrainedTokenizerBase
    target_tokenizer: PreTrainedTokenizerBase
    seed: int = 0
    resources: StrategyResources = field(default_factory=StrategyResources)

    def __post_init__(self) -> None:
        # a string-keyed dict would let a misspelt key pass unnoticed
        if not isinstance(self.resources, StrategyResources):
            raise TypeError(
                f"resources must be a StrategyResources, got {type(self.resources).__name__}"
                + ("; use StrategyResources(**resources)" if isinstance(self.resources, Mapping) else "")
            )


@dataclass
class InitReport:
    """What happened to each target token: a per-token label and the totals."""

    strategy: str
    params: dict[str, Any]
    n_target: int
    # one label per target id: "special", "byte", "copied", "computed", "fallback"
    labels: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(self.labels))

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "params": self.params,
            "n_target": self.n_target,
            "counts": self.counts,
            "notes": self.notes,
        }


@dataclass
class TargetEmbeddings:
    """Target matrices; ``output`` is None exactly when the source head was tied."""

    input: torch.Tensor
    output: torch.Tensor | None
    output_bias: torch.Tensor | None
    report: InitReport


class Strategy(Protocol):
    """``initialize(inputs, **params) -> TargetEmbeddings``."""

    def __call__(self, inputs: StrategyInputs, **params: Any) -> TargetEmbeddings: ...


def map_source_matrices(source: SourceEmbeddings, fn) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Apply the same per-token rule ``fn(matrix (V_s, d)) -> (V_t, d)`` to the input
    matrix, the untied output matrix and the output bias (as a (V_s, 1) matrix), so that an
    untied head and its bias get exactly the weights the input side gets."""
    target_input = fn(source.input)
    target_output = fn(source.output) if source.output is not None else None
    target_bias = None
    if source.output_bias is not None:
        target_bias = fn(source.output_bias.unsqueeze(1)).squeeze(1)
    return target_input, target_output, target_bias
