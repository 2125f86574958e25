"""Embedding initialization strategies (one module each) behind one registry.

Importing this package imports every module in it, so each strategy registers itself
(``@register("name")``) without a list to keep in sync; ``initialize(name, inputs,
**params)`` runs one and fixes special and byte tokens the same way for all of them.
"""

import importlib
import pkgutil

from transfer.strategies.base import (
    InitReport,
    SourceEmbeddings,
    StrategyInputs,
    TargetEmbeddings,
)
from transfer.strategies.mean import fallback_mean_rows
from transfer.strategies.registry import (
    available_strategies,
    check_strategy_params,
    get_strategy,
    initialize,
    register,
    strategy_parameters,
)

# Bound above before the loop, so strategy modules may import them from this package.
_NOT_STRATEGIES = {"base", "registry"}

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _NOT_STRATEGIES and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "InitReport",
    "SourceEmbeddings",
    "StrategyInputs",
    "TargetEmbeddings",
    "available_strategies",
    "check_strategy_params",
    "fallback_mean_rows",
    "get_strategy",
    "initialize",
    "register",
    "strategy_parameters",
]
