"""``omp``: tokenizer transplantation by orthogonal matching pursuit (Goddard & Fernandes Neto, 2025).

"Training-Free Tokenizer Transplantation via Orthogonal Matching Pursuit" (arXiv 2506.06607;
mergekit's ``tokensurgeon``). A *helper* model whose tokenizer is the target tokenizer (the
paper's "donor") places every target token; tokens the source shares keep their source row
("copied", ``match_overlap``). Each other token's helper row is approximated as a sparse
linear combination of the helper rows of k shared tokens, found by orthogonal matching pursuit
(Pati, Rezaiifar & Krishnaprasad, 1993): pick the shared token most correlated with what is
still unexplained, re-fit all coefficients so far by least squares, repeat k times. The same
coefficients applied to those shared tokens' *source* rows give the new row: the paper's
premise is that the two spaces are, locally, nearly the same linear map of each other.

Defaults and choices, against mergekit's implementation:

- ``k = 64``: tokensurgeon's default (``--k`` and ``TokenSurgeonOptions.k``; earlier
  versions of the script had 8).
- The input embeddings and an untied head are approximated separately, each from the
  helper's matrix of the same role, when both the source and the helper have untied heads,
  as tokensurgeon does (it runs OMP once on the donor's embeddings and once on its LM head).
  A tied helper's head is its input matrix (tokensurgeon reads it through the tie), so an
  untied source head then takes the input coefficients; a head bias takes the head's.
- Selection by the largest |cosine| between the residual and a shared token's helper row
  (textbook OMP over a unit-norm dictionary); tokensurgeon ranks by the raw inner product,
  which favours large-norm rows. The least-squares fit on the chosen rows is the same.
- Shared tokens whose helper row is zero or not finite are no candidates (they would make
  the fit singular), and a new token with such a helper row falls back to the source's mean
  (tokensurgeon would give it coefficients of zero, a zero row, or zero it as an
  under-trained "junk" token with ``--magikarp``); DESIGN measured that a tied head is hurt
  by rows unlike the rest, so the mean it is.
- When a token is explained exactly before k picks (it *is* a combination of fewer shared
  tokens), the remaining picks get coefficient zero instead of fitting rounding noise.
- k larger than the number of usable shared tokens is cut to that number (noted).

The pursuit is batched in torch (float32; on a GPU when there is one): per block of new
tokens, one (b x n_shared) correlation product per step, an incremental Gram-Schmidt QR of the
chosen rows (orthogonalized twice, "twice is enough", so k = 64 stays orthogonal in float32)
and one triangular solve at the end. The cost is k * n_new * n_shared * d_h multiply-adds,
the same as tokensurgeon's: 20,000 new tokens against 30,000 shared tokens of width 576 with
k = 64 are about 44 TFLOP, measured at 46 ms a token on one CPU thread (about 15 minutes; 1.4
times the bare correlation products), so a 250k-token vocabulary wants a GPU or a smaller k
(the cost is about linear in k).
"""

from __future__ import annotations

import torch

from transfer.engine.devices import pick_device
from transfer.init.base import InitReport, StrategyInputs, TargetEmbeddings
from transfer.init.registry import register
from transfer.init.shared_tokens import transfer_with_helper
from transfer.init.similarity import DEFAULT_MAX_BLOCK_BYTES, normalize_rows
from transfer.init.strategies.mean import DEFAULT_COVARIANCE_SCALE, check_covariance_scale

DEFAULT_K = 64  # mergekit tokensurgeon's default


def check_omp_params(k: int, fallback_covariance_scale: float) -> None:
    """OMP's rules on values: at least one shared token per new token, a valid fallback scale."""
    if k < 1:
        raise ValueError(f"k must be >= 1 (shared tokens per new token), got {k}")
    check_covariance_scale(fallback_covariance_scale, "fallback_covariance_scale")


def omp_select(
    targets: torch.Tensor, atoms: torch.Tensor, k: int, *, tolerance: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthogonal matching pursuit of every row of ``targets`` (B, d) over the rows of
    ``atoms`` (N, d): (indices (B, k), coefficients (B, k)) with
    ``targets[i] ~= sum_j coefficients[i, j] * atoms[indices[i, j]]``.

    Computes in ``targets``' dtype (float32 or float64), on their device. Atoms must be
    non-zero (``usable_rows``) and ``k <= N``. ``tolerance`` (default 100 machine epsilons)
    is the relative size below which a residual counts as explained and a newly chosen atom
    as already in the span of the chosen ones; both then get coefficient zero."""
    n_batch, dim = targets.shape
    n_atoms = atoms.shape[0]
    if not 1 <= k <= n_atoms:
        raise ValueError(f"k={k} must be between 1 and the number of atoms ({n_atoms})")
    dtype = targets.dtype
    tol = 100 * torch.finfo(dtype).eps if tolerance is None else tolerance
    norms = torch.linalg.vector_norm(atoms, dim=1)
    unit = atoms / norms.unsqueeze(1)  # selection by |cosine|: a unit-norm dictionary
    unit_t = unit.T.contiguous()
    batch = torch.arange(n_batch, device=targets.device)
    residual = targets.clone()
    scale = torch.linalg.vector_norm(targets, dim=1)
    active = scale > 0
    basis = torch.zeros(n_batch, dim, k, dtype=dtype, device=targets.device)  # Q, column by column
    upper = torch.zeros(n_batch, k, k, dtype=dtype, device=targets.device)  # R
    projected = torch.zeros(n_batch, k, dtype=dtype, device=targets.device)  # Q^T x
    indices = torch.zeros(n_batch, k, dtype=torch.long, device=targets.device)
    taken = torch.zeros(n_batch, n_atoms, dtype=torch.bool, device=targets.device)
    scores = torch.empty(n_batch, n_atoms, dtype=dtype, device=targets.device)
    for t in range(k):
        torch.mm(residual, unit_t, out=scores)
        scores.abs_().masked_fill_(taken, -1.0)  # any untaken atom (|cos| >= 0) beats a taken one
        pick = scores.argmax(dim=1)
        indices[:, t] = pick
        taken[batch, pick] = True
        atom = unit[pick]  # (B, d)
        previous = basis[:, :, :t]
        coords = torch.zeros(n_batch, t, dtype=dtype, device=targets.device)
        for _ in range(2):  # classical Gram-Schmidt, twice: orthogonal to working precision
            c = torch.bmm(previous.transpose(1, 2), atom.unsqueeze(2)).squeeze(2)
            atom = atom - torch.bmm(previous, c.unsqueeze(2)).squeeze(2)
            coords += c
        length = torch.linalg.vector_norm(atom, dim=1)
        # an explained token or an atom inside the span so far: coefficient zero (R's
        # column is the unit vector, Q's column zero, so the solve gives exactly 0)
        live = active & (length > tol)
        upper[:, :t, t] = torch.where(live.unsqueeze(1), coords, 0.0)
        upper[:, t, t] = torch.where(live, length, 1.0)
        direction = torch.where(live.unsqueeze(1), atom / length.clamp_min(tol).unsqueeze(1), 0.0)
        basis[:, :, t] = direction
        # projecting the residual (not x) keeps the update stable (modified Gram-Schmidt)
        along = (direction * residual).sum(dim=1)
        projected[:, t] = along
        residual = residual - along.unsqueeze(1) * direction
        active = active & (torch.linalg.vector_norm(residual, dim=1) > tol * scale)
    coefficients = torch.linalg.solve_triangular(upper, projected.unsqueeze(2), upper=True).squeeze(2)
    # coefficients of the unit rows back to the rows themselves
    return indices, coefficients / norms[indices]


def omp_rows(
    queries: torch.Tensor,
    anchors: torch.Tensor,
    values: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's OMP coefficients over the anchors (helper rows), applied to the anchors'
    ``values`` (their source rows): (n, c) float32 rows and an all-True (n,) mask.
    ``k`` is cut to the number of anchors."""
    check_omp_params(k, 0.0)
    target = pick_device(device)
    n, dim = queries.shape
    m, width = anchors.shape[0], values.shape[1]
    k = min(k, m)
    atoms = anchors.to(device=target, dtype=torch.float32)
    vals = values.to(device=target, dtype=torch.float32)
    # per query: the (m) scores and taken mask, Q (d x k), R (k x k), the output row
    per_row = 5 * m + 4 * (dim * k + k * k + width + 3 * k)
    step = max(1, max_block_bytes // per_row)
    rows = torch.empty(n, width, dtype=torch.float32)
    for start in range(0, n, step):
        stop = min(n, start + step)
        x, _ = normalize_rows(queries[start:stop])  # OMP is scale-equivariant: fit the direction
        norm = torch.linalg.vector_norm(queries[start:stop].to(torch.float32), dim=1)
        index, coeff = omp_select(x.to(target), atoms, k)
        coeff = coeff * norm.to(target).unsqueeze(1)
        block = torch.zeros(stop - start, width, dtype=torch.float32, device=target)
        for j in range(k):  # one chosen token at a time: no (b x k x c) gather
            block += coeff[:, j : j + 1] * vals[index[:, j]]
        rows[start:stop] = block.cpu()
    return rows, torch.ones(n, dtype=torch.bool)


@register("omp", needs={"helper"}, check=check_omp_params)
def omp(
    inputs: StrategyInputs,
    *,
    k: int = DEFAULT_K,
    fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
) -> TargetEmbeddings:
    """Copied shared rows; every other token the OMP combination of k shared tokens' source
    rows, coefficients fitted in the helper's space."""
    check_omp_params(k, fallback_covariance_scale)
    params = {"k": k, "fallback_covariance_scale": fallback_covariance_scale}
    used: list[int] = []

    def combine(queries: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor):
        used.append(min(k, anchors.shape[0]))
        return omp_rows(queries, anchors, values, k=k)

    rows = transfer_with_helper(
        inputs, combine, strategy="omp", fallback_covariance_scale=fallback_covariance_scale,
        rule=f"as OMP combinations of k={k} shared tokens",
    )
    if any(n < k for n in used):
        rows.notes.append(f"k={k} is more than the usable shared tokens: cut to {min(used)}")
    report = InitReport(
        strategy="omp", params=params, n_target=len(rows.labels), labels=rows.labels, notes=rows.notes
    )
    return TargetEmbeddings(rows.input, rows.output, rows.output_bias, report)
