"""Stage ``init``: the target embedding matrix from the source model's.

The strategies live one module each in ``transfer.init.strategies``; importing this package
imports every module there, so each strategy registers itself with the data it needs
(``@register("name", needs=...)``) without a list to keep in sync; ``initialize(name,
inputs, **params)`` runs one and fixes special and byte tokens the same way for all of them.
"""

import importlib
import pkgutil

# Bound above before the loop, so strategy modules may import them from this package.
from transfer.init import strategies as _strategies
from transfer.init.base import (
    InitReport,
    SourceEmbeddings,
    StrategyInputs,
    StrategyResources,
    TargetEmbeddings,
)
from transfer.init.registry import (
    available_strategies,
    check_strategy_params,
    get_strategy,
    initialize,
    needs,
    register,
    strategy_parameters,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(_strategies.__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{_strategies.__name__}.{_module}")

from transfer.init.strategies.mean import fallback_mean_rows

__all__ = [
    "InitReport",
    "SourceEmbeddings",
    "StrategyInputs",
    "StrategyResources",
    "TargetEmbeddings",
    "available_strategies",
    "check_strategy_params",
    "fallback_mean_rows",
    "get_strategy",
    "initialize",
    "needs",
    "register",
    "strategy_parameters",
]
