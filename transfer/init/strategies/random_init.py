"""``random``: per-dimension normal draws with the source embeddings' mean and std.

The floor every strategy must beat (DESIGN: BPB 5.98 at step 0 on the demo assets). It
keeps the scale of the source rows, which plain ``N(0, initializer_range)`` would not.
"""

from __future__ import annotations

import torch

from transfer.init.base import (
    InitReport,
    StrategyInputs,
    TargetEmbeddings,
    map_source_matrices,
)
from transfer.init.registry import register


def random_rows(matrix: torch.Tensor, n_rows: int, *, seed: int) -> torch.Tensor:
    """n_rows draws, dimension j ~ N(mean_j, std_j) of ``matrix``'s column j.

    The standard-normal draws depend only on (seed, n_rows, d): an untied output matrix
    gets the same draws, scaled to its own statistics (the same rule)."""
    rows = matrix.detach().to(torch.float64)
    mean = rows.mean(dim=0)
    std = rows.std(dim=0, correction=0)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_rows, rows.shape[1], generator=generator, dtype=torch.float64)
    return (mean + std * noise).to(matrix.dtype)


@register("random")
def random(inputs: StrategyInputs) -> TargetEmbeddings:
    """Every target row drawn independently per dimension (seeded by ``inputs.seed``)."""
    n_target = len(inputs.target_tokenizer)

    def rule(matrix: torch.Tensor) -> torch.Tensor:
        return random_rows(matrix, n_target, seed=inputs.seed)

    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    report = InitReport(
        strategy="random",
        params={},
        n_target=n_target,
        labels=["computed"] * n_target,
        notes=["rows drawn per dimension from N(mean, std) of the source rows"],
    )
    return TargetEmbeddings(target_input, target_output, target_bias, report)
