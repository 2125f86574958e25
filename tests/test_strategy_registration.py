"""A strategy declares its data where it registers; strategies get a typed resources object."""

from __future__ import annotations

import pytest
import torch

from transfer.errors import UnknownStrategyError
from transfer.init import (
    SourceEmbeddings,
    StrategyInputs,
    StrategyResources,
    available_strategies,
    needs,
    register,
    registry,
)
from transfer.init.resources import build_resources


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_STRATEGIES", dict(registry._STRATEGIES))


def _noop(inputs: StrategyInputs) -> None:
    """A strategy that is only registered, never run."""


def test_needs_are_read_from_the_registration(scratch_registry: None) -> None:
    register("needs_corpus_and_pairs", needs={"target_corpus", "parallel"})(_noop)
    register("needs_nothing")(_noop)
    assert "needs_corpus_and_pairs" in available_strategies()
    assert needs("needs_corpus_and_pairs") == {"target_corpus", "parallel"}
    assert needs("needs_nothing") == frozenset()
    with pytest.raises(UnknownStrategyError, match="nope"):
        needs("nope")


def test_unknown_data_kind_is_refused_at_registration(scratch_registry: None) -> None:
    with pytest.raises(ValueError, match="unknown data.*'vector'"):
        register("misspelt", needs={"vector"})(_noop)
    assert "misspelt" not in available_strategies()


def test_resources_follow_the_declared_needs(tmp_path) -> None:
    # mean needs nothing, FOCUS the target train text: nothing else is built
    assert build_resources("mean", {}, {}) == StrategyResources()
    focus = build_resources("focus", {}, {"corpus": tmp_path})
    assert focus == StrategyResources(target_corpus=tmp_path / "train.txt")


def test_a_misspelt_resource_is_an_error() -> None:
    with pytest.raises(TypeError, match="target_corpora"):
        StrategyResources(target_corpora="train.txt")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="StrategyResources"):
        StrategyInputs(SourceEmbeddings(torch.zeros(2, 2)), None, None,  # type: ignore[arg-type]
                       resources={"target_corpus": "train.txt"})  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        StrategyResources().parallel = []  # type: ignore[misc]
