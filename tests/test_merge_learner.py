"""The merge learner that continues BPE from an existing segmentation (issue #17)."""

from __future__ import annotations

import pytest

from tokenizer_builds.merge_learner import concatenate, learn_merges
from transfer.errors import TokenizerBuildError

WORDS = {("a", "b", "c"): 5, ("a", "b"): 3, ("b", "c"): 1, ("x", "y"): 2}


def _learned(**options: object) -> list[tuple[str, str, str, int]]:
    options = {"known": {"a", "b", "c", "x", "y"}, **options}
    return [(m.left, m.right, m.token, m.count) for m in learn_merges(WORDS, 10, **options)]


def test_most_frequent_pair_first_and_counts_follow_earlier_merges() -> None:
    # (a, b) occurs 8 times; after it, (ab, c) 5 times; (x, y) twice; (b, c) is left with
    # one occurrence, below min_frequency.
    assert _learned() == [("a", "b", "ab", 8), ("ab", "c", "abc", 5), ("x", "y", "xy", 2)]


def test_min_frequency_and_budget_stop_learning() -> None:
    assert _learned(min_frequency=1)[-1] == ("b", "c", "bc", 1)
    assert [m.token for m in learn_merges(WORDS, 1, known={"a", "b", "c"})] == ["ab"]


def test_a_pair_whose_result_exists_is_never_learned() -> None:
    learned = _learned(known={"a", "b", "c", "x", "y", "ab"})
    assert ("a", "b", "ab", 8) not in learned
    assert learned[0] == ("b", "c", "bc", 6)


def test_unmergeable_symbols_are_left_alone() -> None:
    learned = _learned(mergeable=lambda token: token != "c")
    assert [m[2] for m in learned] == ["ab", "xy"]


def test_ties_are_broken_by_the_pair_not_by_dictionary_order() -> None:
    forward = {("q", "r"): 2, ("d", "e"): 2}
    backward = dict(reversed(list(forward.items())))
    first = [m.token for m in learn_merges(forward, 2, known=set("qrde"))]
    assert first == [m.token for m in learn_merges(backward, 2, known=set("qrde"))] == ["de", "qr"]


def test_continuing_prefix_is_dropped_from_the_right_part() -> None:
    join = concatenate("##")
    assert join("ab", "##cd") == "abcd"
    assert join("ab", "cd") == "abcd"
    assert concatenate()("Ġa", "b") == "Ġab"


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_bad_budget_is_refused(bad: object) -> None:
    with pytest.raises(TokenizerBuildError, match="added_tokens"):
        learn_merges(WORDS, bad, known=set())  # type: ignore[arg-type]
