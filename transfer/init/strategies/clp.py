"""``clp``: CLP-Transfer, cross-lingual and progressive transfer (Ostendorff & Rehm, 2023).

"Efficient Language Model Training through Cross-Lingual and Progressive Transfer Learning":
a large source model of another language and a small *helper* model of the target language
whose tokenizer is the target tokenizer. Tokens the two vocabularies share keep the source
row ("copied", ``match_overlap`` compares surfaces across tokenizer families); every other
target token gets a weighted mean of the source rows of the shared tokens, weighted by how
similar the token is to each shared token in the helper's embedding space. The helper knows
the target language, so its geometry says which shared tokens a new token is like; the source
rows say where those tokens live in the big model (``transfer.init.shared_tokens``).

Weights: the cosine similarities of the token's helper row to the helper rows of *all* shared
tokens, divided by their sum (normalize-to-sum, no top-k, no softmax), as the authors' code
(``malteos/clp-transfer``, ``clp.py``) computes them, with one change by default:
``weighting="positive"`` sets negative similarities to zero first, so each new row is a convex
combination of shared source rows and stays inside their hull. The authors' signed form
(``weighting="signed"``) divides by a sum of thousands of similarities of either sign; their
helpers were trained from scratch, whose anisotropic spaces keep those sums well above zero,
but in a helper that is itself an adapted model (progressive transfer here) many sums land
near zero and the quotient explodes: measured on Gemma-3-270M with an adapted SmolLM2 helper,
3,986 BPB at step 0 signed (benchmarks/results/helper_transfer.md). ``top_k`` > 0 keeps only
the ``top_k`` most similar shared tokens (then normalized to sum the same way), an option the
paper does not use. A token whose (kept) similarities sum to zero or less has no weighted mean
and falls back to the mean, as does a token with a zero or non-finite helper row.

Heads: the paper's models (BLOOM, GPT-2) tie the head, so the code only sets the input
embeddings. Here an untied source head (and its bias) is weighted by similarities in the
helper's untied head when the helper has one (the head's own geometry, as tokensurgeon treats
heads), else by the input similarities; see ``helper_passes``.

The similarities are never a dense V_t x V_shared matrix: blocks of queries against every
shared token, each block's (b x n_shared) float32 similarities multiplied at once by the
shared tokens' source rows and divided by the block's sums, within ``max_block_bytes``; on a
GPU when there is one.
"""

from __future__ import annotations

import torch

from transfer.engine.devices import pick_device
from transfer.init.base import InitReport, StrategyInputs, TargetEmbeddings
from transfer.init.registry import register
from transfer.init.shared_tokens import transfer_with_helper
from transfer.init.similarity import DEFAULT_MAX_BLOCK_BYTES, normalize_rows
from transfer.init.strategies.mean import DEFAULT_COVARIANCE_SCALE, check_covariance_scale

# 0: every shared token weighs in, as in the authors' code
DEFAULT_TOP_K = 0
WEIGHTINGS = ("positive", "signed")
DEFAULT_WEIGHTING = "positive"


def check_clp_params(
    top_k: int, fallback_covariance_scale: float, weighting: str = DEFAULT_WEIGHTING
) -> None:
    """CLP's rules on values: ``top_k`` >= 0 (0: all shared tokens), a known weighting, a
    valid fallback scale."""
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0: every shared token), got {top_k}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    check_covariance_scale(fallback_covariance_scale, "fallback_covariance_scale")


def clp_rows(
    queries: torch.Tensor,
    anchors: torch.Tensor,
    values: torch.Tensor,
    *,
    top_k: int = DEFAULT_TOP_K,
    weighting: str = DEFAULT_WEIGHTING,
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's similarity-weighted mean of the anchors' ``values``.

    ``queries`` (n, d_h) and ``anchors`` (m, d_h) are helper rows, ``values`` (m, c) the
    anchors' source rows. Weight of anchor j for query i: cos(q_i, a_j) / sum_j' cos(q_i, a_j')
    over all anchors, or over the ``top_k`` most similar when ``top_k`` > 0; with
    ``weighting="positive"`` each cos is max(cos, 0) first. Returns the
    (n, c) float32 rows and an (n,) mask, False where the similarities do not sum to a
    positive number (that row is zero and must not be used). Zero rows must be left out by
    the caller (``usable_rows``): they have no cosine."""
    check_clp_params(top_k, 0.0, weighting)
    target = pick_device(device)
    q_unit, _ = normalize_rows(queries)
    a_unit, _ = normalize_rows(anchors)
    keys = a_unit.to(target).T.contiguous()  # (d_h, m)
    vals = values.to(device=target, dtype=torch.float32)
    n, m, width = q_unit.shape[0], a_unit.shape[0], vals.shape[1]
    k = min(top_k, m) if top_k > 0 else m
    # per query row: its similarities, and with top-k the gathered (k x c) source rows
    per_row = 4 * m + (4 * k * width if top_k > 0 else 0)
    step = max(1, max_block_bytes // per_row)
    rows = torch.zeros(n, width, dtype=torch.float32)
    ok = torch.zeros(n, dtype=torch.bool)
    for start in range(0, n, step):
        stop = min(n, start + step)
        sims = q_unit[start:stop].to(target) @ keys  # (b, m)
        if top_k > 0:
            sims, index = torch.topk(sims, k, dim=1)
        if weighting == "positive":
            sims = sims.clamp_min(0.0)
        weighted = torch.einsum("bk,bkc->bc", sims, vals[index]) if top_k > 0 else sims @ vals
        # the sum in float64: thousands of small similarities of either sign
        total = sims.sum(dim=1, dtype=torch.float64)
        good = total > 0
        block = (weighted.double() / torch.where(good, total, 1.0).unsqueeze(1)).float()
        rows[start:stop] = torch.where(good.unsqueeze(1), block, 0.0).cpu()
        ok[start:stop] = good.cpu()
    return rows, ok


@register("clp", needs={"helper"}, check=check_clp_params)
def clp(
    inputs: StrategyInputs,
    *,
    top_k: int = DEFAULT_TOP_K,
    weighting: str = DEFAULT_WEIGHTING,
    fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
) -> TargetEmbeddings:
    """Copied shared rows; every other token the helper-similarity-weighted mean of them."""
    check_clp_params(top_k, fallback_covariance_scale, weighting)
    params = {"top_k": top_k, "weighting": weighting, "fallback_covariance_scale": fallback_covariance_scale}
    over = f"top-{top_k}" if top_k > 0 else "all"
    kept = "negative similarities as zero" if weighting == "positive" else "signed similarities"

    def combine(queries: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor):
        return clp_rows(queries, anchors, values, top_k=top_k, weighting=weighting)

    rows = transfer_with_helper(
        inputs, combine, strategy="clp", fallback_covariance_scale=fallback_covariance_scale,
        rule=f"as the cosine-weighted mean (normalized to sum one, {over} shared tokens, {kept})",
    )
    report = InitReport(
        strategy="clp", params=params, n_target=len(rows.labels), labels=rows.labels, notes=rows.notes
    )
    return TargetEmbeddings(rows.input, rows.output, rows.output_bias, report)
