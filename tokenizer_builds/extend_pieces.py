"""Vocabulary extension for piece-list sources: SentencePiece-style Unigram and WordPiece.

Neither model has merges to continue: a Unigram segments by the highest-scoring path over
its pieces (Kudo, 2018), WordPiece by greedy longest match. New pieces therefore come from a
target tokenizer of the source's family trained on target text with the source's own
pipeline (``tokenizer_builds.build``): its pieces that the source lacks are appended, a
Unigram's in order of their target score (the target's log-probability moved onto the
source's scale by the median score difference of the pieces both vocabularies share), a
WordPiece's in the order the trainer made them (characters, then merges by frequency).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from transformers import PreTrainedTokenizerFast

from tokenizer_builds.conventions import BYTE_FALLBACK_TOKENS
from transfer.errors import TokenizerBuildError

#: A trainer for a target tokenizer of the source's family: (texts, vocab_size) -> tokenizer.
TargetTrainer = Callable[[list[str], int], PreTrainedTokenizerFast]

#: How many times the target budget doubles when too few of its pieces are new.
_MAX_ROUNDS = 3


def target_entries(
    train: TargetTrainer, texts: list[str], wanted: int, known: set[str], base_budget: int
) -> list[tuple[str, Any]]:
    """Every learned piece of a target tokenizer with its model entry (a Unigram score, a
    WordPiece id), in model order, without its special tokens and byte pieces; trained with
    a budget that doubles (up to ``_MAX_ROUNDS`` times) until ``wanted`` of them are absent
    from ``known`` or the corpus gives no more."""
    budget = base_budget + 2 * wanted
    entries: list[tuple[str, Any]] = []
    for _ in range(_MAX_ROUNDS):
        spec = json.loads(train(texts, budget).backend_tokenizer.to_str())
        special = {token["content"] for token in spec.get("added_tokens") or []}
        vocab = spec["model"]["vocab"]
        items = ([(piece, score) for piece, score in vocab] if isinstance(vocab, list)
                 else sorted(vocab.items(), key=lambda item: item[1]))
        entries = [(piece, value) for piece, value in items
                   if piece not in special and piece not in BYTE_FALLBACK_TOKENS]
        if sum(piece not in known for piece, _ in entries) >= wanted or len(entries) < budget:
            break  # enough, or the corpus could not fill the budget: more would not help
        budget *= 2
    return entries


def score_offset(source_scores: dict[str, float], target: list[tuple[str, float]]) -> float:
    """The median of (source score - target score) over pieces both Unigrams hold: a
    target's log-probabilities are spread over fewer pieces, so they sit higher."""
    differences = [source_scores[piece] - score for piece, score in target if piece in source_scores]
    return statistics.median(differences) if differences else 0.0


def _reserved_slots(spec: dict[str, Any], n_pieces: int, next_id: int) -> list[str]:
    """The added tokens at ids ``n_pieces .. next_id - 1``, in id order."""
    by_id = {token["id"]: token["content"] for token in spec.get("added_tokens") or []}
    missing = [index for index in range(n_pieces, next_id) if index not in by_id]
    if missing:
        raise TokenizerBuildError(
            f"source tokenizer has no token at id {missing[0]} (below its last id "
            f"{next_id - 1}): cannot append pieces after a gap"
        )
    return [by_id[index] for index in range(n_pieces, next_id)]


def extend_unigram_model(
    spec: dict[str, Any], train: TargetTrainer, texts: Iterable[str], added_tokens: int, *,
    next_id: int, base_budget: int = 0,
) -> tuple[dict[str, Any], list[str]]:
    """The source's Unigram model JSON with up to ``added_tokens`` new scored pieces at ids
    from ``next_id``; returns the model and the new pieces in id order.

    A Unigram's ids are positions in its piece list: the ids between the model's last
    piece and ``next_id`` belong to added tokens (XLM-R's ``<mask>``), which take their
    slot in the list with the source's lowest score (they are split off before the model
    sees text, so the score never competes). ``base_budget`` is what the target trainer's
    budget must hold besides the new pieces (a Unigram must keep every character)."""
    model = spec["model"]
    pieces: list[list[Any]] = [list(item) for item in model["vocab"]]
    source_scores = {piece: float(score) for piece, score in pieces}
    floor = min(source_scores.values(), default=0.0)
    reserved = _reserved_slots(spec, len(pieces), next_id)
    pieces += [[content, floor] for content in reserved]
    known = set(source_scores) | set(reserved)
    entries = [(piece, float(score))
               for piece, score in target_entries(train, list(texts), added_tokens, known, base_budget)]
    offset = score_offset(source_scores, entries)
    fresh = [(piece, score) for piece, score in entries if piece not in known]
    ranked = sorted(fresh, key=lambda item: (-item[1], item[0]))[:added_tokens]
    new = [[piece, round(score + offset, 8)] for piece, score in ranked]
    return {**model, "vocab": pieces + new}, [piece for piece, _ in new]


def extend_wordpiece_model(
    spec: dict[str, Any], train: TargetTrainer, texts: Iterable[str], added_tokens: int, *,
    next_id: int,
) -> tuple[dict[str, Any], list[str]]:
    """The source's WordPiece model JSON with up to ``added_tokens`` new pieces at ids from
    ``next_id`` (in the target trainer's order: characters first, which the later pieces
    need, then merges by frequency); returns the model and the new pieces in id order."""
    model = spec["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    known = set(vocab) | {token["content"] for token in spec.get("added_tokens") or []}
    entries = target_entries(train, list(texts), added_tokens, known, base_budget=0)
    new = [piece for piece, _ in entries if piece not in known][:added_tokens]
    for offset, piece in enumerate(new):
        vocab[piece] = next_id + offset
    return {**model, "vocab": vocab}, new
