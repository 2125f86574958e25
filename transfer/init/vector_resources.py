"""Static token vectors of both vocabularies in one space, from a strategy's resources.

WECHSEL, OFA and trans-tokenization's fallback all search neighbours in an aligned static
space; this module is the one place that turns what the caller put in
``StrategyInputs.resources`` (a ``StrategyResources``) into a ``TokenVectorPair``, with one
rule for every form:

* ``source_token_vectors`` + ``target_token_vectors``: token vectors per side, as
  ``transfer.vectors.subwords.TokenVectors`` (``.matrix`` + ``.has_vector``) or plain (V, D)
  matrices;
* ``aligned_vectors`` holding aligned *word* vectors (``transfer.vectors.alignment.AlignedPair``, the
  pipeline's ``VectorSpace``): token vectors are composed from them by
  ``token_vector_method`` ("ngram" or "word_average", WECHSEL's two methods);
* ``aligned_vectors`` holding a pair of token matrices (tuple, ``{"source", "target"}`` dict
  or an object with ``.source``/``.target``).

Rows: one per token id. A side has as many rows as its tokenizer has tokens or as its
embedding matrix has rows (models pad the matrix); missing rows at the end and all-zero
or non-finite rows count as "no vector"; other row counts are refused, since such vectors
belong to another vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from transfer.errors import TokenVectorError
from transfer.init.base import StrategyInputs, StrategyResources

TOKEN_VECTOR_METHODS: tuple[str, ...] = ("ngram", "word_average")


@dataclass(frozen=True)
class TokenVectorPair:
    """Token vectors of both vocabularies in one space: (V, dim) float32 matrices and (V,)
    bool masks of the rows that have a vector (all-zero rows never count)."""

    source: torch.Tensor
    source_has: torch.Tensor
    target: torch.Tensor
    target_has: torch.Tensor
    method: str


def has_token_vectors(resources: StrategyResources) -> bool:
    """Whether ``resources`` offers static token vectors in any accepted form."""
    return any(value is not None for value in (
        resources.aligned_vectors, resources.source_token_vectors, resources.target_token_vectors))


def _is_word_space(value: Any) -> bool:
    """Aligned *word* vectors (``.source.words``), as opposed to token matrices."""
    return hasattr(getattr(value, "source", None), "words")


def _matrix_pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, dict) and {"source", "target"} <= value.keys():
        return value["source"], value["target"]
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    if hasattr(value, "source") and hasattr(value, "target"):
        return value.source, value.target
    raise TokenVectorError(
        "resources.aligned_vectors: expected aligned word vectors (an AlignedPair) or a pair "
        "of token matrices (a 2-tuple, a {'source', 'target'} dict or an object with "
        f".source/.target); got {type(value).__name__}"
    )


def fit_rows(vectors: Any, sizes: tuple[int, int], name: str, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(matrix, has_vector) with exactly ``sizes[1]`` rows (the embedding matrix's), from
    token vectors of ``sizes[0]`` (the tokenizer's length) or ``sizes[1]`` rows of the
    ``side`` ("source"/"target") vocabulary."""
    n_tokens, n_rows = sizes
    matrix = getattr(vectors, "matrix", vectors)
    has = getattr(vectors, "has_vector", None)
    try:
        matrix = torch.as_tensor(np.asarray(matrix), dtype=torch.float32)
    except (TypeError, ValueError) as err:
        raise TokenVectorError(
            f"{name}: expected token vectors (a (V, dim) matrix or an object with .matrix and "
            f".has_vector), got {type(vectors).__name__}"
        ) from err
    if matrix.dim() != 2:
        raise TokenVectorError(f"{name}: expected a (V, dim) matrix, got shape {tuple(matrix.shape)}")
    if matrix.shape[0] not in (n_tokens, n_rows):
        raise TokenVectorError(
            f"{name}: {matrix.shape[0]} rows, but the vocabulary has {n_tokens} tokens"
            + (f" and the embedding matrix {n_rows} rows" if n_rows != n_tokens else "")
            + f": these vectors belong to another tokenizer (expected one row per {side} token)"
        )
    has = torch.ones(matrix.shape[0], dtype=torch.bool) if has is None else torch.as_tensor(has).to(torch.bool)
    if has.shape != (matrix.shape[0],):
        raise TokenVectorError(
            f"{name}: has_vector has shape {tuple(has.shape)}, the matrix {matrix.shape[0]} rows"
        )
    if matrix.shape[0] < n_rows:
        pad = n_rows - matrix.shape[0]
        matrix = torch.cat([matrix, matrix.new_zeros(pad, matrix.shape[1])])
        has = torch.cat([has, has.new_zeros(pad)])
    matrix, has = matrix[:n_rows], has[:n_rows]
    usable = torch.isfinite(matrix).all(dim=1) & (matrix.abs().sum(dim=1) > 0)
    matrix = torch.where(usable[:, None], matrix, torch.zeros((), dtype=matrix.dtype))
    return matrix, has & usable


def _word_space_token_vectors(inputs: StrategyInputs, aligned: Any, method: str) -> tuple[Any, Any]:
    """WECHSEL's token vectors: n-gram composition or frequency-weighted word average."""
    if method not in TOKEN_VECTOR_METHODS:
        raise TokenVectorError(f"token_vector_method={method!r} is unknown; use one of {TOKEN_VECTOR_METHODS}")
    from transfer.vectors.subwords import token_vectors

    sides = []
    for side, tokenizer, vectors in (("source", inputs.source_tokenizer, aligned.source),
                                     ("target", inputs.target_tokenizer, aligned.target)):
        kwargs: dict[str, Any] = {}
        frequencies = getattr(inputs.resources, f"{side}_word_frequencies")
        if method == "word_average" and frequencies:
            # WECHSEL weights each word by its corpus frequency (fastText's counts)
            kwargs["words"] = list(frequencies)
            kwargs["word_frequencies"] = [float(f) for f in frequencies.values()]
        sides.append(token_vectors(tokenizer, vectors, method=method, **kwargs))
    return sides[0], sides[1]


def resolve_token_vectors(inputs: StrategyInputs, n_source: int, n_target: int) -> TokenVectorPair:
    """The resources' token vectors of both sides (see the module docstring), fitted to
    ``n_source`` source embedding rows and ``n_target`` target tokens."""
    res = inputs.resources
    method = str(res.token_vector_method)
    source, target = res.source_token_vectors, res.target_token_vectors
    if source is not None or target is not None:
        missing = [name for name, value in (("source_token_vectors", source),
                                            ("target_token_vectors", target)) if value is None]
        if missing:
            raise TokenVectorError(f"resources has one side of the token vectors but not {missing}")
        names = ("resources.source_token_vectors", "resources.target_token_vectors")
        coverage = getattr(source, "coverage", None)  # transfer.vectors.subwords.TokenVectors
        method = coverage["method"] if isinstance(coverage, dict) and "method" in coverage else "given"
    elif res.aligned_vectors is not None:
        aligned = res.aligned_vectors
        if _is_word_space(aligned):
            source, target = _word_space_token_vectors(inputs, aligned, method)
        else:
            source, target = _matrix_pair(aligned)
            method = "given"
        names = ("resources.aligned_vectors source side", "resources.aligned_vectors target side")
    else:
        raise TokenVectorError(
            "this strategy needs static vectors in resources: either source_token_vectors "
            "and target_token_vectors, or aligned_vectors (transfer.vectors.alignment.AlignedPair)"
        )
    s_matrix, s_has = fit_rows(source, (len(inputs.source_tokenizer), n_source), names[0], "source")
    t_matrix, t_has = fit_rows(target, (len(inputs.target_tokenizer), n_target), names[1], "target")
    if s_matrix.shape[1] != t_matrix.shape[1]:
        raise TokenVectorError(
            f"source token vectors have dimension {s_matrix.shape[1]}, target ones "
            f"{t_matrix.shape[1]}: they must be in one aligned space"
        )
    if not bool(s_has.any()):
        raise TokenVectorError("no source token has a vector: nothing to take neighbours from")
    return TokenVectorPair(s_matrix, s_has, t_matrix, t_has, method)
