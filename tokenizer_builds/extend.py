"""Vocabulary extension: keep the source tokenizer and append target-language tokens.

Replacement (``tokenizer_builds.build``) trains a new vocabulary; extension keeps every
source token at its id - so every old embedding row stays valid and the model keeps what it
knew - and appends up to N new tokens after the source's last id (reserved slots such as
Llama-3's ``<|reserved_special_token_N|>`` are not reused). How tokens are added depends on
the family: learned merges on top of the source's for BPE (byte-level and byte fallback,
``extend_bpe``), scored pieces for Unigram and pieces for WordPiece (``extend_pieces``).
Everything else of the source (normalizer, pre-tokenizer, decoder, post-processor, added
tokens and their flags, wrapper settings) is unchanged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenizer_builds.conventions import BYTE_FALLBACK_TOKENS, wrapper_settings
from tokenizer_builds.extend_bpe import appended, extend_bpe_model, kept_target_merges
from tokenizer_builds.extend_pieces import extend_unigram_model, extend_wordpiece_model
from tokenizer_builds.families import (
    TokenizerFamily,
    backend_json,
    check_min_frequency,
    family_of_json,
    require_texts,
)
from tokenizer_builds.merge_learner import concatenate
from tokenizer_builds.unigram import train_unigram, unigram_alphabet_size
from tokenizer_builds.wordpiece import train_wordpiece
from transfer.errors import TokenizerBuildError


@dataclass(frozen=True)
class Extension:
    """An extended tokenizer and what was appended to the source's vocabulary."""

    tokenizer: PreTrainedTokenizerFast
    family: TokenizerFamily
    first_new_id: int  # the source's length: new tokens take ids first_new_id, first_new_id+1, ...
    new_tokens: tuple[str, ...]  # in id order, spelled as the model spells them

    @property
    def new_ids(self) -> range:
        return range(self.first_new_id, self.first_new_id + len(self.new_tokens))


def check_added_tokens(added_tokens: int) -> None:
    """Extension appends at least one token."""
    if isinstance(added_tokens, bool) or not isinstance(added_tokens, int) or added_tokens < 1:
        raise TokenizerBuildError(f"added_tokens={added_tokens!r} must be an integer >= 1")


def source_length(backend: Tokenizer) -> int:
    """One past the source's highest id (model vocabulary and added tokens)."""
    return max(backend.get_vocab(with_added_tokens=True).values()) + 1


def extend_tokenizer(
    source: PreTrainedTokenizerBase,
    texts: Iterable[str],
    added_tokens: int,
    *,
    min_frequency: int = 2,
    method: Literal["learn", "target_bpe"] = "learn",
) -> Extension:
    """Append up to ``added_tokens`` tokens learned on target-language ``texts`` to the
    source tokenizer (fewer when the text supports fewer at ``min_frequency``).

    For BPE sources, ``method`` chooses how merges are found: ``learn`` (the default)
    continues BPE from the source's segmentation (``merge_learner``); ``target_bpe``
    trains a target BPE of the source's family and keeps its merges whose parts exist
    (the cheaper alternative, kept to measure against)."""
    check_added_tokens(added_tokens)
    check_min_frequency(min_frequency)
    if method not in ("learn", "target_bpe"):
        raise TokenizerBuildError(f"method={method!r} must be 'learn' or 'target_bpe'")
    spec = backend_json(source)  # also refuses slow tokenizers
    family = family_of_json(spec)
    corpus = require_texts(texts)
    backend: Tokenizer = source.backend_tokenizer  # type: ignore[attr-defined]
    next_id = source_length(backend)
    bpe = family in (TokenizerFamily.BYTE_LEVEL_BPE, TokenizerFamily.BPE_BYTE_FALLBACK)
    if method == "target_bpe" and not bpe:
        raise TokenizerBuildError(
            f"method='target_bpe' needs a BPE source; this one is {family.value}"
        )
    if method == "target_bpe":
        model, new = _from_target_bpe(source, spec, list(corpus), added_tokens,
                                      min_frequency=min_frequency, next_id=next_id)
    elif bpe:
        model, new = extend_bpe_model(spec, backend, family, corpus, added_tokens,
                                      min_frequency=min_frequency, next_id=next_id)
    elif family is TokenizerFamily.UNIGRAM:
        lines = list(corpus)

        def train(batch: list[str], size: int) -> PreTrainedTokenizerFast:
            return train_unigram(source, batch, size, min_frequency=min_frequency)

        # A Unigram must hold every character besides its byte pieces.
        base = unigram_alphabet_size(spec) + len(set("".join(lines)))
        model, new = extend_unigram_model(spec, train, lines, added_tokens,
                                          next_id=next_id, base_budget=base)
    else:

        def train(batch: list[str], size: int) -> PreTrainedTokenizerFast:
            return train_wordpiece(source, batch, size, min_frequency=min_frequency)

        model, new = extend_wordpiece_model(spec, train, corpus, added_tokens, next_id=next_id)
    tokenizer = _rebuild(spec, model, source)
    _check_layout(tokenizer, new, next_id)
    return Extension(tokenizer, family, next_id, tuple(new))


#: How many times the target BPE's budget doubles when too few of its merges are kept.
_TARGET_ROUNDS = 3


def _from_target_bpe(
    source: PreTrainedTokenizerBase, spec: dict[str, Any], texts: list[str], added_tokens: int,
    *, min_frequency: int, next_id: int,
) -> tuple[dict[str, Any], list[str]]:
    """New tokens from a target BPE's merges that compose with the source's vocabulary."""
    from tokenizer_builds.build import build_target_tokenizer  # the replacement builder

    model = spec["model"]
    known = set(model["vocab"]) | {token["content"] for token in spec.get("added_tokens") or []}
    join = concatenate(model.get("continuing_subword_prefix") or "")
    alphabet = len(BYTE_FALLBACK_TOKENS)  # 256 byte symbols or byte pieces, by family
    budget = 4 * added_tokens
    for _ in range(_TARGET_ROUNDS):
        target = build_target_tokenizer(source, texts, alphabet + budget, min_frequency=min_frequency)
        target_model = json.loads(target.backend_tokenizer.to_str())["model"]
        characters, pairs = kept_target_merges(model, known, target_model, added_tokens, join)
        if len(characters) + len(pairs) >= added_tokens or len(target_model["merges"]) < budget:
            break  # enough, or the corpus could not fill the budget
        budget *= 2
    return appended(model, characters, pairs, join, next_id)


def _rebuild(
    spec: dict[str, Any], model: dict[str, Any], source: PreTrainedTokenizerBase
) -> PreTrainedTokenizerFast:
    """The source's backend JSON with the extended model, wrapped with the source's
    special-token roles and settings."""
    extended = {**{key: value for key, value in spec.items() if key != "model"},
                "model": _holding_added_tokens(model, spec)}
    backend = Tokenizer.from_str(json.dumps(extended))
    return PreTrainedTokenizerFast(tokenizer_object=backend, **copy.deepcopy(wrapper_settings(source)))


def _holding_added_tokens(model: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A dict-vocabulary model (BPE, WordPiece) that also lists the added tokens it lacks,
    at their ids.

    `tokenizers` does not read an added token's id from the JSON: one absent from the
    model gets the next id after the model's entries, which is right only while nothing
    follows them. With new pieces after Llama-3's 256 added tokens the model must name
    their ids itself (Unigram sources get them in their piece list instead). Added tokens
    are split off before the model sees text, so the model never produces them.
    """
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        return model
    missing = {token["content"]: token["id"] for token in spec.get("added_tokens") or []
               if token["content"] not in vocab}
    return {**model, "vocab": {**vocab, **missing}} if missing else model


def _check_layout(tokenizer: PreTrainedTokenizerFast, new: list[str], first: int) -> None:
    """Each new token sits at its appended id (a duplicate or a clash with an added token
    would silently shift or merge ids)."""
    backend = tokenizer.backend_tokenizer
    for offset, token in enumerate(new):
        found = backend.token_to_id(token)
        if found != first + offset:
            raise TokenizerBuildError(
                f"extended tokenizer puts new token {token!r} at id {found}, not {first + offset}"
            )
    if len(tokenizer) != first + len(new):
        raise TokenizerBuildError(
            f"extended tokenizer has {len(tokenizer)} tokens, expected {first + len(new)}"
        )
