"""``trans_tokenization``: target embeddings from token alignments on a parallel corpus.
(Over 400 lines: the strategy, the token alignment the links stage runs for it, and the
pruning rules share their statistics and read as one method.)

Remy et al. (2024), "Trans-Tokenization and Cross-lingual Vocabulary Transfers": tokenize
a parallel corpus with both tokenizers, align the token sequences with a statistical
word aligner (eflomal, ``transfer.vectors.word_alignment``), count the links c(t, s) between
target token t and source token s, and set

    E_t = sum_s p(s|t) E_s,    p(s|t) = c(t, s) / sum_s' c(t, s')

after pruning rare links (count below ``min_count``, probability below ``min_prob``) and
keeping at most ``max_sources`` sources per token. Because E_t is a fixed linear map of
the source rows, the same sparse weight matrix is applied to the input matrix, an untied
output head and its bias (``map_source_matrices``), so it works for causal and masked
models alike. Alignment is done at token level (see ``transfer.init.parallel`` for why).

Sensible mappings for strings aligners handle badly: target tokens made only of digits,
punctuation and spaces (numbers, ``.``, ``,``, ``(``) that exist in the source vocabulary
are copied (an aligner links frequent punctuation to almost anything); other identical
strings (names) get a small prior count towards their source twin (``identity_prior``),
so they are copied when never aligned and barely moved when the alignment knows better
(false friends such as German ``die``). Tokens that stay without a source fall back to a
WECHSEL-style estimate (top-k cosine neighbours in aligned static token vectors, softmax
weights) when the resources give static vectors in any form WECHSEL takes
(``transfer.init.vector_resources``), else to the mean row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from transfer.errors import ParallelCorpusError, StrategyResourceError, TokenVectorError
from transfer.init.base import (
    InitReport,
    StrategyInputs,
    TargetEmbeddings,
    map_source_matrices,
)
from transfer.init.parallel import aligner_words, check_pairs, count_links, tokenize_parallel
from transfer.init.registry import register
from transfer.init.strategies.mean import (
    DEFAULT_COVARIANCE_SCALE,
    check_covariance_scale,
)
from transfer.init.strategies.overlap import match_overlap
from transfer.init.strategies.wechsel import check_search_params, neighbour_weights
from transfer.init.vector_resources import (
    TokenVectorPair,
    has_token_vectors,
    resolve_token_vectors,
)
from transfer.init.weighted import weighted_rule
from transfer.tokenizer.special_tokens import model_vocab, token_surface, tokenizer_family

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_MIN_COUNT = 2
DEFAULT_MIN_PROB = 0.05
DEFAULT_MAX_SOURCES = 5
DEFAULT_IDENTITY_PRIOR = 1.0
# WECHSEL's published defaults for the vector fallback
DEFAULT_FALLBACK_K = 10
DEFAULT_FALLBACK_TEMPERATURE = 0.1


# ---------------------------------------------------------------------------------------
# the math: counts -> p(s|t) -> rows


def check_transition_params(min_count: float, min_prob: float, max_sources: int) -> None:
    """The pruning thresholds of :func:`transition_weights`."""
    if not min_count >= 0 or not 0 <= min_prob < 1 or max_sources < 1:
        raise ValueError(
            f"need min_count >= 0, 0 <= min_prob < 1, max_sources >= 1; got {min_count}, "
            f"{min_prob}, {max_sources}"
        )


def transition_weights(
    counts: sp.spmatrix,
    *,
    min_count: float = DEFAULT_MIN_COUNT,
    min_prob: float = DEFAULT_MIN_PROB,
    max_sources: int = DEFAULT_MAX_SOURCES,
    prior: sp.spmatrix | None = None,
) -> sp.csr_matrix:
    """p(s|t) as a sparse (V_t x V_s) matrix whose non-empty rows sum to one.

    Per target token: drop links seen fewer than ``min_count`` times; add ``prior``
    (pseudo-counts, e.g. towards an identical source string); normalize; drop sources
    with p(s|t) < ``min_prob``; keep the ``max_sources`` most probable (ties: lower source
    id); renormalize. A token whose links are all pruned gets an empty row."""
    check_transition_params(min_count, min_prob, max_sources)
    kept = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    kept.data[kept.data < min_count] = 0.0
    if prior is not None:
        kept = kept + sp.csr_matrix(prior, dtype=np.float64)
    kept.eliminate_zeros()
    kept.sort_indices()
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for t in range(kept.shape[0]):
        lo, hi = kept.indptr[t], kept.indptr[t + 1]
        if lo == hi:
            continue
        sources = kept.indices[lo:hi]
        p = kept.data[lo:hi] / kept.data[lo:hi].sum()
        keep = p >= min_prob
        if not keep.any():
            keep = p == p.max()  # nothing clears min_prob: keep the best source(s)
        sources, p = sources[keep], p[keep]
        # stable sort by descending probability: equal probabilities keep source-id order
        order = np.argsort(-p, kind="stable")[:max_sources]
        sources, p = sources[order], p[order]
        rows.append(np.full(len(sources), t, dtype=np.int64))
        cols.append(sources.astype(np.int64))
        vals.append(p / p.sum())
    if not rows:
        return sp.csr_matrix(kept.shape, dtype=np.float64)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=kept.shape
    )


def vector_fallback_weights(
    vectors: TokenVectorPair,
    target_ids: Sequence[int],
    *,
    k: int = DEFAULT_FALLBACK_K,
    temperature: float = DEFAULT_FALLBACK_TEMPERATURE,
) -> sp.csr_matrix:
    """WECHSEL-style rows for ``target_ids``: the k most cosine-similar source tokens in
    the aligned static space with softmax(similarity / temperature) weights (WECHSEL's own
    ``neighbour_weights``). Target tokens without a vector get an empty row; source tokens
    without one are never chosen."""
    n_target, n_source = vectors.target.shape[0], vectors.source.shape[0]
    wanted = torch.zeros(n_target, dtype=torch.bool)
    wanted[torch.as_tensor(list(target_ids), dtype=torch.long)] = True
    queries = vectors.target_has & wanted
    if not bool(queries.any()):
        return sp.csr_matrix((n_target, n_source), dtype=np.float64)
    found = neighbour_weights(vectors.source, vectors.source_has, vectors.target, queries,
                              k=k, temperature=temperature)
    k = found.source_ids.shape[1]
    return sp.csr_matrix(
        (
            found.weights.to(torch.float64).reshape(-1).numpy(),
            (found.target_ids.repeat_interleave(k).numpy(), found.source_ids.reshape(-1).numpy()),
        ),
        shape=(n_target, n_source),
    )


# ---------------------------------------------------------------------------------------
# identical strings, numbers and punctuation


@dataclass(frozen=True)
class IdentityMatches:
    """Target tokens with an identically spelled source token, split into the ones copied
    outright (no letters: numbers, punctuation) and the ones given a prior (words, names)."""

    copied: dict[int, int]
    prior: dict[int, int]


def _has_letters(surface: bytes) -> bool:
    return any(ch.isalpha() for ch in surface.decode("utf-8", errors="ignore"))


def identity_matches(inputs: StrategyInputs) -> IdentityMatches:
    match = match_overlap(inputs.source_tokenizer, inputs.target_tokenizer)
    info = tokenizer_family(inputs.target_tokenizer)
    strings = {i: t for t, i in model_vocab(inputs.target_tokenizer).items()}
    copied: dict[int, int] = {}
    prior: dict[int, int] = {}
    for t, s in zip(match.target_ids, match.source_ids, strict=True):
        surface, _ = token_surface(strings[t], info)
        if surface.strip() and not _has_letters(surface):
            copied[t] = s
        else:
            prior[t] = s
    return IdentityMatches(copied, prior)


# ---------------------------------------------------------------------------------------
# inputs


def _fallback_vectors(inputs: StrategyInputs, n_source: int, n_target: int) -> TokenVectorPair | None:
    """The static token vectors for the WECHSEL-style fallback, in any form WECHSEL takes
    (``transfer.init.vector_resources``), or None when the resources have none."""
    if not has_token_vectors(inputs.resources):
        return None
    return resolve_token_vectors(inputs, n_source, n_target)


@dataclass
class AlignmentStats:
    pairs: int
    dropped_pairs: int
    links: int
    seconds: float


def align_token_links(
    source_tokenizer: PreTrainedTokenizerBase,
    target_tokenizer: PreTrainedTokenizerBase,
    n_source: int,
    pairs: Sequence[tuple[str, str]],
    *,
    seed: int,
    rel_iterations: float = 1.0,
) -> tuple[sp.csr_matrix, AlignmentStats]:
    """c(t, s) from aligning the token sequences of the parallel corpus with eflomal
    (``rel_iterations`` scales eflomal's sampler iterations, which it sets from the corpus
    size: many for a small corpus, few for a large one). ``n_source`` is the source
    embedding's row count, which can exceed the tokenizer's length (padded vocabularies)."""
    tokenized = tokenize_parallel(pairs, source_tokenizer, target_tokenizer)
    if len(tokenized) == 0:
        raise ParallelCorpusError(
            "resources.parallel: every pair tokenizes to nothing on one side"
        )
    from transfer.vectors.word_alignment import align

    started = time.perf_counter()
    alignment = align(
        aligner_words(source_tokenizer, tokenized.source_ids),
        aligner_words(target_tokenizer, tokenized.target_ids),
        seed=seed,
        rel_iterations=rel_iterations,
    )
    seconds = time.perf_counter() - started
    counts = count_links(
        tokenized,
        alignment.links,
        n_source=n_source,
        n_target=len(target_tokenizer),
    )
    stats = AlignmentStats(len(tokenized), tokenized.n_dropped, int(counts.sum()), seconds)
    return counts, stats


# ---------------------------------------------------------------------------------------
# the strategy


@dataclass(frozen=True)
class AlignedWeights:
    """Trans-tokenization's p(s|t) rows: pruned links plus the identity prior, numbers and
    punctuation copied from their identical source token (``copied``: target -> source),
    and n_t, each token's link count that survives ``min_count``."""

    weights: sp.csr_matrix
    copied: dict[int, int]
    links: np.ndarray


def aligned_weights(
    inputs: StrategyInputs,
    counts: sp.spmatrix,
    *,
    min_count: float,
    min_prob: float,
    max_sources: int,
    identity_prior: float,
    copy_symbols: bool,
) -> AlignedWeights:
    """The aligned-translation rows of every target token (the ``combined`` strategy mixes
    the same rows with FVT's, so both strategies share this one rule)."""
    n_target, n_source = counts.shape
    identity = identity_matches(inputs)
    copied = dict(identity.copied) if copy_symbols else {}
    prior_pairs = identity.prior if copy_symbols else {**identity.prior, **identity.copied}
    prior = None
    if identity_prior > 0 and prior_pairs:
        t_ids = np.fromiter(prior_pairs.keys(), dtype=np.int64)
        s_ids = np.fromiter(prior_pairs.values(), dtype=np.int64)
        prior = sp.csr_matrix(
            (np.full(len(t_ids), float(identity_prior)), (t_ids, s_ids)), shape=(n_target, n_source)
        )
    weights = transition_weights(
        counts, min_count=min_count, min_prob=min_prob, max_sources=max_sources, prior=prior
    ).tolil()
    for t, s in copied.items():
        weights.rows[t], weights.data[t] = [s], [1.0]
    kept = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    kept.data[kept.data < min_count] = 0.0
    links = np.asarray(kept.sum(axis=1), dtype=np.float64).ravel()
    return AlignedWeights(weights.tocsr(), copied, links)


def token_link_counts(
    inputs: StrategyInputs, strategy: str, align_rel_iterations: float
) -> tuple[sp.csr_matrix, list[str]]:
    """c(t, s): ``resources.link_counts`` when given (checked against both vocabularies),
    else eflomal on ``resources.parallel``; and a report note. Data checks come first, so a
    missing resource is refused before anything is tokenized or aligned."""
    n_target, n_source = len(inputs.target_tokenizer), inputs.source.input.shape[0]
    counts = inputs.resources.link_counts
    if counts is not None:
        counts = sp.csr_matrix(counts, dtype=np.float64)
        if counts.shape != (n_target, n_source):
            raise StrategyResourceError(
                f"resources.link_counts has shape {counts.shape}, expected "
                f"(target vocabulary, source rows) = ({n_target}, {n_source})"
            )
        return counts, []
    if inputs.resources.parallel is None:
        raise StrategyResourceError(
            f"strategy {strategy!r} needs resources.parallel: a sequence of (source sentence, "
            "target sentence) pairs from the train split (e.g. "
            "transfer.corpus.bible.verse_pairs(src, tgt, 'train')); none was given"
        )
    pairs = check_pairs(inputs.resources.parallel, name="resources.parallel")
    counts, stats = align_token_links(inputs.source_tokenizer, inputs.target_tokenizer, n_source, pairs,
                                      seed=inputs.seed, rel_iterations=align_rel_iterations)
    return counts, [alignment_note(stats)]


def alignment_note(stats: AlignmentStats) -> str:
    """The init report's line about a token alignment (in a strategy or the ``links`` stage)."""
    return (f"aligned {stats.pairs} sentence pairs at token level with eflomal in "
            f"{stats.seconds:.1f} s ({stats.dropped_pairs} empty pairs dropped, {stats.links} links)")


def check_alignment_params(
    min_count: float, min_prob: float, max_sources: int, identity_prior: float, align_rel_iterations: float,
) -> None:
    """The rules on the aligned-translation parameters (trans-tokenization and ``combined``)."""
    check_transition_params(min_count, min_prob, max_sources)
    if not identity_prior >= 0:
        raise StrategyResourceError(f"identity_prior must be >= 0, got {identity_prior}")
    if not align_rel_iterations > 0:
        raise StrategyResourceError(f"align_rel_iterations must be > 0, got {align_rel_iterations}")


def check_trans_tokenization_params(
    min_count: int, min_prob: float, max_sources: int, identity_prior: float, copy_symbols: bool,
    align_rel_iterations: float, fallback_k: int, fallback_temperature: float,
    fallback_covariance_scale: float,
) -> None:
    """Every rule on trans-tokenization's parameter values (the registry runs it before any
    stage, the strategy again before it aligns anything)."""
    check_alignment_params(min_count, min_prob, max_sources, identity_prior, align_rel_iterations)
    try:
        check_search_params(fallback_k, fallback_temperature, "exact")
    except TokenVectorError as error:  # its messages start with the name: k, temperature
        raise TokenVectorError(f"fallback_{error}") from error
    check_covariance_scale(fallback_covariance_scale, "fallback_covariance_scale")


@register("trans_tokenization", needs={"parallel"}, check=check_trans_tokenization_params)
def trans_tokenization(
    inputs: StrategyInputs,
    *,
    min_count: int = DEFAULT_MIN_COUNT,
    min_prob: float = DEFAULT_MIN_PROB,
    max_sources: int = DEFAULT_MAX_SOURCES,
    identity_prior: float = DEFAULT_IDENTITY_PRIOR,
    copy_symbols: bool = True,
    align_rel_iterations: float = 1.0,
    fallback_k: int = DEFAULT_FALLBACK_K,
    fallback_temperature: float = DEFAULT_FALLBACK_TEMPERATURE,
    fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
) -> TargetEmbeddings:
    """E_t = sum_s p(s|t) E_s from eflomal token alignments of ``resources.parallel``
    (train-split (source, target) sentence pairs; ``resources.link_counts`` may give
    precomputed c(t, s) instead)."""
    n_target = len(inputs.target_tokenizer)
    n_source = inputs.source.input.shape[0]
    params = {
        "min_count": min_count, "min_prob": min_prob, "max_sources": max_sources,
        "identity_prior": identity_prior, "copy_symbols": copy_symbols,
        "align_rel_iterations": align_rel_iterations,
        "fallback_k": fallback_k, "fallback_temperature": fallback_temperature,
        "fallback_covariance_scale": fallback_covariance_scale,
    }
    check_trans_tokenization_params(**params)
    vectors = _fallback_vectors(inputs, n_source, n_target)

    counts, notes = token_link_counts(inputs, "trans_tokenization", align_rel_iterations)

    aligned = aligned_weights(inputs, counts, min_count=min_count, min_prob=min_prob,
                              max_sources=max_sources, identity_prior=identity_prior,
                              copy_symbols=copy_symbols)
    weights, copied = aligned.weights, aligned.copied
    aligned_any = np.asarray(counts.getnnz(axis=1) > 0)
    labels = ["fallback"] * n_target
    has_row = np.asarray(weights.getnnz(axis=1) > 0)
    from_links = aligned.links > 0
    for t in range(n_target):
        if has_row[t]:
            labels[t] = "computed" if from_links[t] and t not in copied else "copied"

    missing = [t for t in range(n_target) if labels[t] == "fallback"]
    n_vector = 0
    if vectors is not None and missing:
        fallback = vector_fallback_weights(vectors, missing, k=fallback_k, temperature=fallback_temperature)
        n_vector = int((fallback.getnnz(axis=1) > 0).sum())
        weights = (weights + fallback).tocsr()
    has_row = np.asarray(weights.getnnz(axis=1) > 0)
    mean_index = torch.from_numpy(np.flatnonzero(~has_row))

    rule = weighted_rule(weights, mean_index, seed=inputs.seed, covariance_scale=fallback_covariance_scale)
    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    n_computed = labels.count("computed")
    never = int((~aligned_any).sum())
    notes += [
        (f"{n_computed} tokens from aligned sources (<= {max_sources} each, links seen "
         f">= {min_count} times, p >= {min_prob}); {never} target tokens were never aligned"),
        (f"{labels.count('copied')} copied from an identical source string "
         f"({len(copied)} numbers/punctuation outright, the rest by the identity prior alone)"),
        (f"{labels.count('fallback')} fell back: {n_vector} to WECHSEL-style vector estimates, "
         f"{len(mean_index)} to the mean"
         + ("" if vectors is not None else " (no static vectors in resources)")),
    ]
    report = InitReport(
        strategy="trans_tokenization", params=params, n_target=n_target, labels=labels,
        notes=notes,
    )
    return TargetEmbeddings(target_input, target_output, target_bias, report)
