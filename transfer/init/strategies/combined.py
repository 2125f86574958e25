"""``combined``: aligned translations and subword composition, weighed by confidence.

Two estimates of a target token's row are available without static vectors:

- the *aligned-translation* estimate of trans-tokenization (Remy et al., 2024):
  E_t = sum_s p(s|t) E_s from token links c(t, s) on a parallel corpus; good when t was
  linked often, noise when it was linked once or twice;
- the *compositional* estimate of FVT (Gee et al., 2022): the mean of the source rows of
  t's split by the source tokenizer; available for (almost) every token, but blind to
  meaning when the pieces are not the translation (German ``Ġsie`` -> ``Ġs`` + ``ie``).

This strategy shrinks the first toward the second in proportion to the evidence, the
empirical-Bayes way (a pseudo-count prior):

    W_t = a_t * W_align,t + (1 - a_t) * W_fvt,t,    a_t = n_t / (n_t + lambda)

where n_t is t's number of links that survive trans-tokenization's ``min_count`` pruning
and lambda (``shrinkage``) the number of links at which both estimates weigh the same.
A never-aligned token is its FVT row; a token FVT cannot split (no source piece) takes its
alignment row alone; only a token with neither gets the mean row (``fallback_mean_rows``).
W is one sparse (V_t x V_s) matrix whose non-empty rows sum to one, applied alike to the
input matrix, an untied head and its bias (``map_source_matrices``).

The alignment part is exactly trans-tokenization's weights (its pruning, identity prior
and copied numbers/punctuation), so ``shrinkage=0`` gives trans-tokenization's rows for
every aligned token and ``shrinkage`` -> infinity gives FVT's rows everywhere FVT has
pieces.

Two variants, measured in benchmarks/README.md ("Ideas tried"):

- ``trust="peaked"`` counts a token's links by how much of its alignment mass falls on its
  single most likely source token, n_t * max_s p(s|t): a token aligned 100 times to five
  different source tokens is weaker evidence than one aligned 100 times to one;
- ``restore_norm=True`` rescales each mixed row to the weighted mean norm of the rows it
  averages: averaging shrinks a row (the pieces point in different directions), and with a
  tied head a short row is a token the model rarely predicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from transfer.errors import StrategyResourceError
from transfer.init.base import InitReport, StrategyInputs, TargetEmbeddings, map_source_matrices
from transfer.init.registry import register
from transfer.init.strategies.fvt import fvt_weights
from transfer.init.strategies.mean import (
    DEFAULT_COVARIANCE_SCALE,
    check_covariance_scale,
)
from transfer.init.strategies.trans_tokenization import (
    DEFAULT_IDENTITY_PRIOR,
    DEFAULT_MAX_SOURCES,
    DEFAULT_MIN_COUNT,
    DEFAULT_MIN_PROB,
    aligned_weights,
    check_alignment_params,
    token_link_counts,
)
from transfer.init.weighted import weighted_rule

#: Links at which alignment and composition weigh equally. At 10, a token linked once
#: (a_t = 0.09) stays essentially its FVT row and one linked 100 times (a_t = 0.91)
#: essentially its translation; trans-tokenization's own ``min_count`` is 2.
DEFAULT_SHRINKAGE = 10.0

#: How each target token's row was made (``CombinedWeights.path``).
MIXED, ALIGNMENT_ONLY, FVT_ONLY, MEAN = "mixed", "alignment only", "fvt only", "mean"


@dataclass(frozen=True)
class CombinedWeights:
    """The combined (V_t x V_s) weights and, per target token, the evidence behind them."""

    weights: sp.csr_matrix  # rows sum to one, except the empty rows of MEAN tokens
    trust: np.ndarray  # a_t, the weight of the alignment part (float64, V_t)
    links: np.ndarray  # n_t, the links the alignment part rests on (float64, V_t)
    path: np.ndarray  # MIXED, ALIGNMENT_ONLY, FVT_ONLY or MEAN (object, V_t)


def peaked_links(align: sp.spmatrix, links: np.ndarray) -> np.ndarray:
    """n_t * max_s p(s|t): the links a token's most likely translation alone accounts for."""
    top = np.asarray(sp.csr_matrix(align).max(axis=1).todense()).ravel()
    return np.asarray(links, dtype=np.float64) * top


def restore_row_norms(weights: sp.spmatrix, matrix: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Rows of ``out = weights @ matrix`` rescaled to ``weights @ |matrix rows|``, the
    weighted mean norm of the rows each one averages (an empty or zero row stays as it is)."""
    norms = matrix.detach().to(torch.float64).norm(dim=1).cpu().numpy()
    wanted = torch.from_numpy(sp.csr_matrix(weights) @ norms)
    current = out.to(torch.float64).norm(dim=1)
    scale = torch.where(current > 0, wanted / current.clamp_min(1e-12), torch.ones_like(current))
    return (out.to(torch.float64) * scale.unsqueeze(1)).to(out.dtype)


def combine_weights(
    align: sp.spmatrix, links: np.ndarray, fvt: sp.spmatrix, shrinkage: float
) -> CombinedWeights:
    """W = diag(a) W_align + diag(1 - a) W_fvt with a_t = n_t / (n_t + shrinkage) where
    both rows exist; a_t = 1 where only the alignment row exists, 0 where only FVT's does.
    ``align`` and ``fvt`` have rows that are empty or sum to one; ``shrinkage`` may be
    infinite (a_t = 0: FVT wherever it has pieces)."""
    if not shrinkage >= 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    align, fvt = sp.csr_matrix(align, dtype=np.float64), sp.csr_matrix(fvt, dtype=np.float64)
    links = np.asarray(links, dtype=np.float64)
    has_align = np.diff(align.indptr) > 0
    has_fvt = np.diff(fvt.indptr) > 0
    # 0/0 (no links at shrinkage 0) is no evidence: a_t = 0
    denominator = np.where(links > 0, links + shrinkage, 1.0)
    trust = np.where(has_align & (links > 0), links / denominator, 0.0)
    trust = np.where(has_align & ~has_fvt, 1.0, trust)
    trust = np.where(has_align, trust, 0.0)
    weights = sp.diags(trust) @ align + sp.diags(1.0 - trust) @ fvt
    weights = sp.csr_matrix(weights)
    weights.eliminate_zeros()
    path = np.full(len(trust), MEAN, dtype=object)
    path[has_fvt] = FVT_ONLY
    path[has_fvt & has_align & (trust > 0)] = MIXED
    path[~has_fvt & has_align] = ALIGNMENT_ONLY
    return CombinedWeights(weights, trust, links, path)


def check_combined_params(
    shrinkage: float, min_count: int, min_prob: float, max_sources: int, identity_prior: float,
    copy_symbols: bool, align_rel_iterations: float, fallback_covariance_scale: float,
    trust: str = "count", restore_norm: bool = False,
) -> None:
    """Every rule on the combined strategy's parameter values (the registry runs it before
    any stage, the strategy again before it aligns anything)."""
    if not shrinkage >= 0:
        raise StrategyResourceError(f"shrinkage must be >= 0, got {shrinkage}")
    if trust not in ("count", "peaked"):
        raise StrategyResourceError(f"trust must be 'count' or 'peaked', got {trust!r}")
    check_alignment_params(min_count, min_prob, max_sources, identity_prior, align_rel_iterations)
    check_covariance_scale(fallback_covariance_scale, "fallback_covariance_scale")


@register("combined", needs={"parallel"}, check=check_combined_params)
def combined(
    inputs: StrategyInputs,
    *,
    shrinkage: float = DEFAULT_SHRINKAGE,
    min_count: int = DEFAULT_MIN_COUNT,
    min_prob: float = DEFAULT_MIN_PROB,
    max_sources: int = DEFAULT_MAX_SOURCES,
    identity_prior: float = DEFAULT_IDENTITY_PRIOR,
    copy_symbols: bool = True,
    align_rel_iterations: float = 1.0,
    fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
    trust: Literal["count", "peaked"] = "count",
    restore_norm: bool = False,
) -> TargetEmbeddings:
    """Trans-tokenization's row shrunk toward FVT's by n_t / (n_t + shrinkage); FVT alone
    for never-aligned tokens, the mean only for tokens with neither."""
    params = {
        "shrinkage": shrinkage, "min_count": min_count, "min_prob": min_prob,
        "max_sources": max_sources, "identity_prior": identity_prior, "copy_symbols": copy_symbols,
        "align_rel_iterations": align_rel_iterations,
        "fallback_covariance_scale": fallback_covariance_scale, "trust": trust, "restore_norm": restore_norm,
    }
    check_combined_params(**params)
    n_source = inputs.source.input.shape[0]
    counts, notes = token_link_counts(inputs, "combined", align_rel_iterations)
    aligned = aligned_weights(
        inputs, counts, min_count=min_count, min_prob=min_prob, max_sources=max_sources,
        identity_prior=identity_prior, copy_symbols=copy_symbols,
    )
    align, links = aligned.weights, aligned.links
    fvt, _ = fvt_weights(inputs.source_tokenizer, inputs.target_tokenizer, n_source)
    evidence = peaked_links(align, links) if trust == "peaked" else links
    combo = combine_weights(align, evidence, fvt, shrinkage)

    def restore(matrix: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        # not the (V, 1) bias: a scalar has no direction to keep
        return restore_row_norms(combo.weights, matrix, out) if matrix.shape[1] > 1 else out

    rule = weighted_rule(combo.weights, np.flatnonzero(combo.path == MEAN), seed=inputs.seed,
                         covariance_scale=fallback_covariance_scale, adjust=restore if restore_norm else None)
    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    labels = ["fallback" if p == MEAN else "computed" for p in combo.path]
    n_path = {p: int((combo.path == p).sum()) for p in (MIXED, ALIGNMENT_ONLY, FVT_ONLY, MEAN)}
    mixed = combo.path == MIXED
    with_row = combo.path != MEAN
    notes += [
        (f"{n_path[MIXED]} tokens mix their aligned translations and their FVT pieces "
         f"(a_t = n_t / (n_t + {shrinkage:g}); mean a_t "
         f"{float(combo.trust[mixed].mean()) if mixed.any() else 0.0:.3f}, mean n_t "
         f"{float(links[mixed].mean()) if mixed.any() else 0.0:.1f}); over all "
         f"{int(with_row.sum())} placed tokens the alignments carry "
         f"{float(combo.trust[with_row].mean()) if with_row.any() else 0.0:.3f} of the weight"),
        f"{n_path[FVT_ONLY]} tokens never aligned (or all links below min_count {min_count}): FVT alone",
        f"{n_path[ALIGNMENT_ONLY]} tokens without any source piece: their alignment alone",
        f"{n_path[MEAN]} tokens with neither fell back to the mean (special tokens among them)",
    ]
    report = InitReport(strategy="combined", params=params, n_target=len(labels), labels=labels, notes=notes)
    return TargetEmbeddings(target_input, target_output, target_bias, report)
