"""The typed parameters of the flows, as the Prefect UI shows them.

``AdaptParameters`` is ``transfer.settings.config.AdaptConfig`` with the strategy narrowed to the
names in the strategy registry, so the deployment's form offers a drop-down and a wrong
name is refused naming the field (``strategy``) before any work. The registry fills
itself when ``transfer.init`` is imported, so the choice is built at import time
from whatever strategies are installed, not from a list kept here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from transfer.init import available_strategies
from transfer.settings.config import AdaptConfig
from transfer.settings.strategy_choice import AUTO

# 'auto' first: the measured best strategy whose data the run has (the default)
_STRATEGIES = (AUTO, *available_strategies())

#: The registered strategy names as a type (an ``enum`` in the JSON schema of the form).
StrategyName = Literal[_STRATEGIES]  # type: ignore[valid-type]


class AdaptParameters(AdaptConfig):
    """One adaptation run (source model -> one target language), as a typed form."""

    model_config = ConfigDict(extra="forbid", title="Adaptation")

    strategy: StrategyName = Field(  # type: ignore[valid-type]
        AUTO,
        description="Embedding initialization strategy (see `vocab-transfer strategies`); 'auto': the "
                    "measured best one whose data the run has.",
    )

    # the form offers a list: one model of several languages (AdaptConfig joins them, 'sw_id')
    target_language: str | list[str] = Field(  # type: ignore[assignment]
        "de", description="Language code of the target language, or a list of several for one model of all of "
                          "them (each language's files as 'lang=path' entries of target_files).")

    @model_validator(mode="before")
    @classmethod
    def _from_plain_config(cls, data: Any) -> Any:
        # a library AdaptConfig is accepted and checked again as flow parameters
        if isinstance(data, AdaptConfig) and not isinstance(data, cls):
            return data.model_dump()
        return data


def as_parameters(config: AdaptConfig | dict) -> AdaptParameters:
    """Validate a config (or its dict) as flow parameters: unknown strategies are refused here."""
    return AdaptParameters.model_validate(config)
