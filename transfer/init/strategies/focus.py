"""``focus``: new tokens as sparsemax combinations of overlapping tokens (FOCUS).

Dobler & de Melo (2023), "FOCUS: Effective Embedding Initialization for Monolingual
Specialization of Multilingual Models". Tokens whose surface string exists in both
vocabularies are copied (``match_overlap``). An auxiliary fastText model is trained on the
target corpus *pre-tokenized with the target tokenizer*, so every target token that occurs
there gets a static vector in one space with the overlapping tokens. Each new token then
becomes a combination of the overlapping tokens most similar to it in that space, with
sparsemax weights (Martins & Astudillo, 2016; the ``entmax`` package): like softmax they
are non-negative and sum to one, but most of them are exactly zero, so a token is built
from a handful of close neighbours rather than a blur of all of them.

Tokens with no fastText vector (too rare for fastText's vocabulary, or an all-zero
vector) fall back to the mean row, never to random rows (DESIGN: random fallback rows hurt
a tied head far beyond their frequency).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from entmax import sparsemax
from transformers import PreTrainedTokenizerBase

from transfer.errors import StrategyResourceError
from transfer.init.base import (
    InitReport,
    StrategyInputs,
    TargetEmbeddings,
    map_source_matrices,
)
from transfer.init.registry import register
from transfer.init.strategies.mean import (
    DEFAULT_COVARIANCE_SCALE,
    check_covariance_scale,
)
from transfer.init.strategies.overlap import match_overlap
from transfer.init.vector_resources import fit_rows
from transfer.init.weighted import weighted_rule
from transfer.tokenizer.special_tokens import special_token_ids

DEFAULT_TOP_K = 100
DEFAULT_TEMPERATURE = 1.0
_TOKENIZE_CHUNK = 2048


# ---------------------------------------------------------------------------------------
# the math


def check_sparsemax_params(top_k: int, temperature: float) -> None:
    if top_k < 1 or not temperature > 0:
        raise StrategyResourceError(f"focus needs top_k >= 1 and temperature > 0, got {top_k}, {temperature}")


def check_focus_params(
    top_k: int, temperature: float, fasttext_dim: int, fasttext_epochs: int, fasttext_min_count: int,
    fasttext_threads: int, fallback_covariance_scale: float,
) -> None:
    """Every rule on FOCUS's parameter values (the registry runs it before any stage)."""
    check_sparsemax_params(top_k, temperature)
    for name, value in (("fasttext_dim", fasttext_dim), ("fasttext_epochs", fasttext_epochs),
                        ("fasttext_min_count", fasttext_min_count), ("fasttext_threads", fasttext_threads)):
        if value < 1:
            raise StrategyResourceError(f"focus needs {name} >= 1, got {value}")
    check_covariance_scale(fallback_covariance_scale, "fallback_covariance_scale")


def sparsemax_weights(
    target_vectors: torch.Tensor,
    anchor_vectors: torch.Tensor,
    *,
    top_k: int = DEFAULT_TOP_K,
    temperature: float = DEFAULT_TEMPERATURE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each target row: the ``top_k`` most cosine-similar anchor rows and their
    sparsemax(similarity / temperature) weights, as (indices (n, k), weights (n, k)).
    Weights are non-negative, sum to one per row and are mostly zero."""
    from transfer.init.similarity import exact_topk

    check_sparsemax_params(top_k, temperature)
    k = min(top_k, anchor_vectors.shape[0])
    top = exact_topk(target_vectors, anchor_vectors, k)
    weights = sparsemax(top.scores.to(torch.float64) / temperature, dim=-1)
    return top.indices, weights


def focus_weights(
    token_vectors: torch.Tensor,
    new_ids: Sequence[int],
    anchors: dict[int, int],
    n_source: int,
    *,
    top_k: int = DEFAULT_TOP_K,
    temperature: float = DEFAULT_TEMPERATURE,
) -> sp.csr_matrix:
    """Sparse (V_t x V_s) weights: each new target token with a vector becomes a sparsemax
    combination of the source rows of the anchors (target id -> source id of an
    overlapping token) whose vectors are most similar to its own. Tokens without a
    usable vector (all zero or not finite) get an empty row."""
    vectors = torch.nan_to_num(torch.as_tensor(token_vectors, dtype=torch.float32), nan=0.0)
    usable = torch.linalg.vector_norm(vectors, dim=1) > 0
    anchor_t = [t for t in anchors if usable[t]]
    queries = [t for t in new_ids if usable[t]]
    n_target = vectors.shape[0]
    if not anchor_t or not queries:
        return sp.csr_matrix((n_target, n_source), dtype=np.float64)
    indices, weights = sparsemax_weights(
        vectors[queries], vectors[anchor_t], top_k=top_k, temperature=temperature
    )
    anchor_source = torch.tensor([anchors[t] for t in anchor_t], dtype=torch.long)
    rows = torch.tensor(queries, dtype=torch.long).repeat_interleave(indices.shape[1])
    cols = anchor_source[indices].reshape(-1)
    vals = weights.reshape(-1)
    keep = vals > 0
    return sp.csr_matrix(
        (vals[keep].numpy(), (rows[keep].numpy(), cols[keep].numpy())), shape=(n_target, n_source)
    )


# ---------------------------------------------------------------------------------------
# target token vectors: fastText on the corpus pre-tokenized with the target tokenizer


def token_words(tok: PreTrainedTokenizerBase) -> list[str]:
    """One whitespace-free "word" per target id for fastText: the token string itself (so
    fastText's character n-grams see its spelling), or an id stand-in if it has spaces."""
    strings = tok.convert_ids_to_tokens(list(range(len(tok))))
    return [
        s if s and not any(ch.isspace() for ch in s) else f"<id{i}>" for i, s in enumerate(strings)
    ]


def _iter_corpus(corpus: Any) -> Iterator[str]:
    if isinstance(corpus, (str, os.PathLike)):
        with open(corpus, encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n")
    else:
        yield from corpus


def check_target_corpus(corpus: Any) -> Any:
    """Refuse a missing corpus before any training: None, a missing or empty file, or an
    empty sequence of texts."""
    name = "resources.target_corpus"
    if corpus is None:
        raise StrategyResourceError(
            f"strategy 'focus' needs {name}: a path to target-language train text (a "
            "document per line) or a sequence of texts; none was given"
        )
    if isinstance(corpus, (str, os.PathLike)):
        path = Path(corpus)
        if not path.is_file():
            raise StrategyResourceError(f"{name}: {str(path)!r} is not a file")
        if path.stat().st_size == 0:
            raise StrategyResourceError(f"{name}: {str(path)!r} is empty")
        return path
    if not isinstance(corpus, Iterable):
        raise StrategyResourceError(
            f"{name}: expected a path or a sequence of texts, got {type(corpus).__name__}"
        )
    texts = list(corpus)
    if not any(isinstance(t, str) and t.strip() for t in texts):
        raise StrategyResourceError(f"{name}: the sequence of texts holds no text")
    return texts


def write_pretokenized(corpus: Any, tok: PreTrainedTokenizerBase, out: Path) -> int:
    """Write the corpus as target-token "words", a document per line; returns the token
    count. Special tokens are left out."""
    words = token_words(tok)
    excluded = special_token_ids(tok)
    n_tokens = 0
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        chunk: list[str] = []

        def flush() -> None:
            nonlocal n_tokens
            for ids in tok(chunk, add_special_tokens=False)["input_ids"]:
                line = [words[i] for i in ids if i not in excluded]
                if line:
                    handle.write(" ".join(line) + "\n")
                    n_tokens += len(line)
            chunk.clear()

        for text in _iter_corpus(corpus):
            if text.strip():
                chunk.append(text)
            if len(chunk) == _TOKENIZE_CHUNK:
                flush()
        if chunk:
            flush()
    os.replace(tmp, out)
    return n_tokens


def train_token_vectors(
    corpus: Any,
    tok: PreTrainedTokenizerBase,
    *,
    dim: int = 100,
    epoch: int = 5,
    min_count: int = 3,
    threads: int = 1,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """A (V_t, dim) matrix with the fastText vector of every target token that is in the
    trained model's vocabulary (zero rows for the rest), and how many have one.

    Tokens below ``min_count`` get no vector on purpose: FOCUS treats them as too rare to
    place; their n-gram-only vectors would be guesses."""
    from transfer.vectors.fasttext_training import load_trained, train_fasttext

    words = token_words(tok)
    with tempfile.TemporaryDirectory(prefix="focus-fasttext-") as tmp:
        text = Path(tmp) / "pretokenized.txt"
        if write_pretokenized(corpus, tok, text) == 0:
            raise StrategyResourceError(
                "resources.target_corpus: tokenizes to no target tokens"
            )
        model_path = train_fasttext(
            text, Path(tmp) / "model", dim=dim, epoch=epoch, min_count=min_count,
            threads=threads, seed=seed,
        )
        vectors = load_trained(model_path)
        index = vectors.index
        matrix = torch.zeros(len(words), dim, dtype=torch.float32)
        found = 0
        for t, word in enumerate(words):
            row = index.get(word)
            if row is not None:
                matrix[t] = torch.as_tensor(np.asarray(vectors.matrix[row]), dtype=torch.float32)
                found += 1
    return matrix, found


# ---------------------------------------------------------------------------------------
# the strategy


@register("focus", needs={"target_corpus"}, check=check_focus_params)
def focus(
    inputs: StrategyInputs,
    *,
    top_k: int = DEFAULT_TOP_K,
    temperature: float = DEFAULT_TEMPERATURE,
    fasttext_dim: int = 100,
    fasttext_epochs: int = 5,
    fasttext_min_count: int = 3,
    fasttext_threads: int = 1,
    fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
) -> TargetEmbeddings:
    """Copied overlap rows; sparsemax combinations of overlap rows for new tokens.

    Token vectors come from fastText trained on ``resources.target_corpus`` (a path or
    texts; the train split only) pre-tokenized with the target tokenizer, or directly
    from ``resources.target_token_vectors`` (a (V_t, D) matrix, zero rows = none)."""
    n_target = len(inputs.target_tokenizer)
    n_source = inputs.source.input.shape[0]
    params = {
        "top_k": top_k, "temperature": temperature, "fasttext_dim": fasttext_dim,
        "fasttext_epochs": fasttext_epochs, "fasttext_min_count": fasttext_min_count,
        "fasttext_threads": fasttext_threads,
        "fallback_covariance_scale": fallback_covariance_scale,
    }
    check_focus_params(**params)
    notes: list[str] = []
    given = inputs.resources.target_token_vectors
    if given is not None:  # the same row rule as WECHSEL's token vectors
        token_vectors, has_vector = fit_rows(given, (n_target, n_target), "resources.target_token_vectors", "target")
        n_vectors = int(has_vector.sum())
        notes.append(f"{n_vectors} target tokens have a given static vector")
    else:
        corpus = check_target_corpus(inputs.resources.target_corpus)
        token_vectors, n_vectors = train_token_vectors(
            corpus, inputs.target_tokenizer, dim=fasttext_dim, epoch=fasttext_epochs,
            min_count=fasttext_min_count, threads=fasttext_threads, seed=inputs.seed,
        )
        notes.append(
            f"fastText (dim {fasttext_dim}, {fasttext_epochs} epochs, min count "
            f"{fasttext_min_count}) on the target corpus pre-tokenized with the target "
            f"tokenizer: {n_vectors} of {n_target} target tokens got a vector"
        )

    match = match_overlap(inputs.source_tokenizer, inputs.target_tokenizer)
    anchors = dict(zip(match.target_ids, match.source_ids, strict=True))
    new_ids = [t for t in range(n_target) if t not in anchors]
    weights = focus_weights(
        token_vectors, new_ids, anchors, n_source, top_k=top_k, temperature=temperature
    )
    if anchors:
        copy = sp.csr_matrix(
            (np.ones(len(anchors)), (list(anchors), list(anchors.values()))),
            shape=(n_target, n_source),
        )
        weights = (weights + copy).tocsr()
    has_row = np.asarray(weights.getnnz(axis=1) > 0)
    mean_index = torch.from_numpy(np.flatnonzero(~has_row))
    labels = [
        "copied" if t in anchors else ("computed" if has_row[t] else "fallback")
        for t in range(n_target)
    ]

    rule = weighted_rule(weights, mean_index, seed=inputs.seed, covariance_scale=fallback_covariance_scale)
    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    computed = [t for t in new_ids if has_row[t]]
    sizes = np.diff(weights[computed].indptr) if computed else np.zeros(0)
    usable_anchors = int((torch.linalg.vector_norm(token_vectors[list(anchors)], dim=1) > 0).sum()) if anchors else 0
    notes += [
        f"copied {len(anchors)} overlapping tokens ({usable_anchors} of them with a vector serve as anchors)",
        (f"{len(computed)} new tokens as sparsemax combinations of their top-{top_k} anchors "
         f"(median {float(np.median(sizes)) if len(sizes) else 0:g}, max "
         f"{int(sizes.max()) if len(sizes) else 0} non-zero weights)"),
        f"{len(mean_index)} tokens without a vector fell back to the mean",
    ]
    report = InitReport(
        strategy="focus", params=params, n_target=n_target, labels=labels, notes=notes
    )
    return TargetEmbeddings(target_input, target_output, target_bias, report)
