"""The stage graph of one run: every stage it visited, by label, in walk order.

``transfer.planning.walk.walk_stages`` builds it; it is the one source of a run's lineage (the
``stage:key`` of every stage, vector stages included), which the run manifest and the
registry record and ``cache clean`` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from transfer.engine.cache import StageOutput
from transfer.engine.stage_table import FINAL

#: label prefix of the evaluate stages: ``evaluate.<evaluation label>``
EVALUATE = "evaluate."


@dataclass(frozen=True)
class StageGraph:
    """Every stage of one run, label -> folder, in the order the walk visited them
    (vector stages included): the one source of a run's lineage."""

    stages: dict[str, StageOutput]

    @property
    def corpus(self) -> StageOutput:
        return self.stages["corpus"]

    @property
    def source(self) -> StageOutput:
        return self.stages["source"]

    @property
    def tokenizer(self) -> StageOutput:
        return self.stages["tokenizer"]

    @property
    def init(self) -> StageOutput:
        return self.stages["init"]

    @property
    def final(self) -> StageOutput:
        """The trained model, or ``init`` when there is no training."""
        return self.stages.get("train", self.init)

    @property
    def evaluations(self) -> dict[str, StageOutput]:
        return {label.removeprefix(EVALUATE): out for label, out in self.stages.items()
                if label.startswith(EVALUATE)}

    def lineage(self) -> dict[str, str]:
        """label -> 'stage:key' of every stage, as the manifest and the registry record it
        (and ``cache clean`` keeps): ``final`` names the model, ``evaluate.<label>``,
        ``fasttext.source``, ``fasttext.target`` and ``align`` the rest."""
        keys = {label: f"{out.stage}:{out.key}" for label, out in self.stages.items() if label != "train"}
        keys[FINAL] = f"{self.final.stage}:{self.final.key}"
        return keys
