"""Target rows as sparse weightings of source rows, the shape most strategies share.

Trans-tokenization (alignment probabilities), FVT (the source pieces of a token), the
combined strategy (a mixture of both) and FOCUS (sparsemax over anchors) each build one
(V_t x V_s) matrix W whose row t says which source rows make target row t; the rows that W
leaves empty fall back to the source's mean (``fallback_mean_rows``). ``weighted_rule`` is
that one per-matrix rule, applied alike to the input matrix, an untied head and its bias
(``map_source_matrices``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from transfer.init.strategies.mean import DEFAULT_COVARIANCE_SCALE, fallback_mean_rows

Rule = Callable[[torch.Tensor], torch.Tensor]


def combine_rows(weights: sp.spmatrix, matrix: torch.Tensor) -> torch.Tensor:
    """``weights @ matrix`` in float64, returned in ``matrix``'s dtype: each target row the
    weighted sum of source rows (zero where a row of ``weights`` is empty)."""
    dense = matrix.detach().to(torch.float64).cpu().numpy()
    out = sp.csr_matrix(weights) @ dense
    return torch.from_numpy(np.ascontiguousarray(out)).to(matrix.dtype)


def weighted_rule(
    weights: sp.spmatrix,
    fallback_ids: np.ndarray | list[int],
    *,
    seed: int,
    covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
    adjust: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> Rule:
    """The rule ``matrix -> W @ matrix`` with the mean fallback for ``fallback_ids``;
    ``adjust(matrix, out)`` may change the weighted rows first (e.g. restore their norms)."""
    index = torch.as_tensor(np.asarray(fallback_ids, dtype=np.int64))

    def rule(matrix: torch.Tensor) -> torch.Tensor:
        out = combine_rows(weights, matrix)
        if adjust is not None:
            out = adjust(matrix, out)
        if len(index):
            out[index] = fallback_mean_rows(
                matrix, len(index), seed=seed, covariance_scale=covariance_scale
            ).to(out.dtype)
        return out

    return rule
