"""``mean``: draws from a normal fitted to the source embeddings (Hewitt, 2021).

Hewitt ("Initializing new word embeddings for pretrained language models", 2021) shows
that new rows drawn from N(mu, Sigma) fitted to the existing embeddings keep the model's
next-token distribution close to the original, unlike zero-mean random rows, whose
logits can dominate. With a small covariance scale (1e-5 by default) the rows are almost
the mean: all new tokens look alike, so a tied head starts near uniform over them
instead of confidently wrong (DESIGN: the plain mean is the baseline to beat).

``fallback_mean_rows`` is the shared fallback for every strategy: DESIGN measured that
random fallback rows hurt a tied head far beyond their frequency.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transfer.init.base import (
    InitReport,
    StrategyInputs,
    TargetEmbeddings,
    map_source_matrices,
)
from transfer.init.registry import register

DEFAULT_COVARIANCE_SCALE = 1e-5


@dataclass(frozen=True)
class FittedNormal:
    """Mean and a covariance factor L (L @ L.T == Sigma) of a matrix's rows."""

    mean: torch.Tensor  # (d,) float64
    factor: torch.Tensor | None  # (d, d) float64; None when only the mean is needed


def fit_normal(matrix: torch.Tensor, *, with_covariance: bool = True) -> FittedNormal:
    """Fit N(mu, Sigma) to the rows. The factor comes from an eigendecomposition (not a
    Cholesky) because Sigma is often singular: fewer rows than dimensions, dead rows."""
    rows = matrix.detach().to(torch.float64)
    mean = rows.mean(dim=0)
    if not with_covariance or rows.shape[0] < 2:
        return FittedNormal(mean, None)
    centered = (rows - mean).to(torch.float32)  # float32 matmul: fast on big vocabularies
    covariance = (centered.T @ centered).to(torch.float64) / (rows.shape[0] - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    factor = eigenvectors * eigenvalues.clamp(min=0.0).sqrt()
    return FittedNormal(mean, factor)


def sample_rows(
    fitted: FittedNormal, n_rows: int, *, seed: int, covariance_scale: float
) -> torch.Tensor:
    """n_rows draws from N(mu, covariance_scale * Sigma), float64.

    The standard-normal draws depend only on (seed, n_rows, d), so an untied output matrix
    of the same width gets the same draws as the input matrix (the same rule)."""
    d = fitted.mean.shape[0]
    rows = fitted.mean.expand(n_rows, d).clone()
    if covariance_scale > 0 and fitted.factor is not None and n_rows > 0:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(n_rows, d, generator=generator, dtype=torch.float64)
        rows += (covariance_scale**0.5) * (noise @ fitted.factor.T)
    return rows


def check_covariance_scale(covariance_scale: float, name: str = "covariance_scale") -> None:
    """The fallback draws' covariance scale is a variance factor: finite and >= 0."""
    if not covariance_scale >= 0 or covariance_scale == float("inf"):
        raise ValueError(f"{name} must be >= 0, got {covariance_scale}")


def check_fallback_params(fallback_covariance_scale: float) -> None:
    """Parameter check of the strategies whose only parameter is the fallback's scale."""
    check_covariance_scale(fallback_covariance_scale, "fallback_covariance_scale")


def fallback_mean_rows(
    matrix: torch.Tensor,
    n_rows: int,
    *,
    seed: int = 0,
    covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
) -> torch.Tensor:
    """Rows for target tokens a strategy cannot place: draws from the source rows' normal
    with a tiny covariance (the mean when ``covariance_scale`` is 0), in ``matrix``'s dtype."""
    check_covariance_scale(covariance_scale)
    fitted = fit_normal(matrix, with_covariance=covariance_scale > 0)
    rows = sample_rows(fitted, n_rows, seed=seed, covariance_scale=covariance_scale)
    return rows.to(matrix.dtype)


@register("mean", check=check_covariance_scale)
def mean(
    inputs: StrategyInputs, *, covariance_scale: float = DEFAULT_COVARIANCE_SCALE
) -> TargetEmbeddings:
    """Every target row drawn from N(mu, covariance_scale * Sigma) of the source rows."""
    n_target = len(inputs.target_tokenizer)

    def rule(matrix: torch.Tensor) -> torch.Tensor:
        return fallback_mean_rows(
            matrix, n_target, seed=inputs.seed, covariance_scale=covariance_scale
        )

    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    report = InitReport(
        strategy="mean",
        params={"covariance_scale": covariance_scale},
        n_target=n_target,
        labels=["computed"] * n_target,
        notes=[
            (f"rows drawn from N(mu, {covariance_scale:g} * Sigma) "
             f"of {inputs.source.input.shape[0]} source rows")
        ],
    )
    return TargetEmbeddings(target_input, target_output, target_bias, report)
