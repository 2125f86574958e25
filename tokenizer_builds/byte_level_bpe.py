"""Byte-level BPE builds: train a target BPE that keeps the source tokenizer's conventions.

The idea: start from the source's own backend JSON, so its normalizer, pre-tokenizer,
decoder and BPE flags carry over unchanged, empty the vocabulary, and let the `tokenizers`
trainer learn merges from target-language text. The full 256-symbol byte alphabet is
seeded so any text round-trips, the source's special tokens keep their strings, flags and
order at the first ids, and the post-processor's token ids are remapped by string.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from tokenizers import AddedToken, Tokenizer, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenizer_builds.families import (
    TokenizerFamily,
    backend_json,
    check_min_frequency,
    check_vocab_size,
    family_of_json,
    require_texts,
)
from transfer.errors import TokenizerBuildError

#: Every byte as the printable symbol ByteLevel maps it to (GPT-2's byte-to-unicode table).
BYTE_ALPHABET: tuple[str, ...] = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))

#: Wrapper settings copied from the source tokenizer when set.
_CARRIED_SETTINGS: tuple[str, ...] = (
    "chat_template",
    "response_template",
    "chat_control_tokens",
    "model_max_length",
    "clean_up_tokenization_spaces",
    "split_special_tokens",
    "padding_side",
    "truncation_side",
    "model_input_names",
)
#: Settings passed on only when the source was given them explicitly: passing
#: add_bos/eos_token makes the wrapper rewrite the post-processor, which must happen
#: exactly when it happened for the source.
_EXPLICIT_SETTINGS: tuple[str, ...] = ("add_bos_token", "add_eos_token", "add_prefix_space")


def train_byte_level_bpe(
    source: PreTrainedTokenizerFast,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` with the source tokenizer's conventions.

    ``vocab_size`` counts every token, special ones included; a small corpus may give fewer.
    """
    spec = backend_json(source)
    family = family_of_json(spec)
    if family is not TokenizerFamily.BYTE_LEVEL_BPE:
        raise TokenizerBuildError(
            f"source tokenizer is of family {family.value}, not {TokenizerFamily.BYTE_LEVEL_BPE.value}"
        )
    added = sorted(spec.get("added_tokens") or [], key=lambda token: token["id"])
    specials = [token for token in added if token.get("special")]
    plain = [token for token in added if not token.get("special")]
    check_vocab_size(vocab_size, n_reserved=len(added), alphabet_size=len(BYTE_ALPHABET))
    check_min_frequency(min_frequency)
    corpus = require_texts(texts)

    backend = _untrained_backend(spec)
    trainer = trainers.BpeTrainer(
        # Non-special added tokens are appended after training, so leave room for them.
        vocab_size=vocab_size - len(plain),
        min_frequency=min_frequency,
        show_progress=show_progress,
        # The trainer puts these at ids 0..n-1, in this order, keeping their flags.
        special_tokens=[_added_token(token) for token in specials],
        initial_alphabet=list(BYTE_ALPHABET),
        **_affix_settings(spec["model"]),
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    if plain:
        backend.add_tokens([_added_token(token) for token in plain])
    backend = _with_source_settings(backend, spec)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **wrapper_settings(source))


def _affix_settings(model: dict[str, Any]) -> dict[str, str]:
    """The source BPE's subword prefix/suffix, so learned merges use the same markers."""
    # The trainer rejects None, and "" means "no marker" in the model JSON.
    keys = ("continuing_subword_prefix", "end_of_word_suffix")
    return {key: model[key] for key in keys if model.get(key)}


def _untrained_backend(spec: dict[str, Any]) -> Tokenizer:
    """The source pipeline with an empty BPE model of the same flags and no added tokens."""
    target = copy.deepcopy(spec)
    target["model"] = {**spec["model"], "vocab": {}, "merges": []}
    target["added_tokens"] = []
    # Set after training, once the target ids of its special tokens are known.
    target["post_processor"] = None
    # Padding/truncation hold source ids and lengths; the wrapper manages both itself.
    target["padding"] = None
    target["truncation"] = None
    return Tokenizer.from_str(json.dumps(target))


def _added_token(token: dict[str, Any]) -> AddedToken:
    """An AddedToken with the same content and matching flags as a source added token."""
    return AddedToken(
        token["content"],
        single_word=token.get("single_word", False),
        lstrip=token.get("lstrip", False),
        rstrip=token.get("rstrip", False),
        normalized=token.get("normalized", False),
        special=token.get("special", False),
    )


def _with_source_settings(backend: Tokenizer, spec: dict[str, Any]) -> Tokenizer:
    """Restore the source's exact BPE flags and attach its post-processor, ids remapped."""
    trained = json.loads(backend.to_str())
    learned = {key: trained["model"][key] for key in ("vocab", "merges")}
    # The trainer may normalize flags (e.g. "" prefix -> null); keep the source's spelling.
    trained["model"] = {**spec["model"], **learned}
    post_processor = spec.get("post_processor")
    if post_processor is not None:
        vocab = backend.get_vocab(with_added_tokens=True)
        trained["post_processor"] = remap_token_ids(copy.deepcopy(post_processor), vocab)
    return Tokenizer.from_str(json.dumps(trained))


def remap_token_ids(node: Any, vocab: dict[str, int]) -> Any:
    """Rewrite token ids in a post-processor JSON to the ids the same strings have in ``vocab``.

    Covers TemplateProcessing (``special_tokens: {name: {ids, tokens}}``), Bert/Roberta
    processing (``sep``/``cls`` as ``[token, id]``) and Sequences of them.
    """

    def target_id(token: str) -> int:
        if token not in vocab:
            raise TokenizerBuildError(
                f"post-processor uses token {token!r}, which the target vocabulary lacks"
            )
        return vocab[token]

    if isinstance(node, list):
        return [remap_token_ids(item, vocab) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: remap_token_ids(value, vocab) for key, value in node.items()}
    if isinstance(node.get("tokens"), list) and isinstance(node.get("ids"), list):
        result["ids"] = [target_id(token) for token in node["tokens"]]
    for key in ("sep", "cls"):
        pair = node.get(key)
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str):
            result[key] = [pair[0], target_id(pair[0])]
    return result


def wrapper_settings(source: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Special-token roles and wrapper settings of ``source`` as wrapper constructor kwargs.

    Roles are passed as strings: the tokens themselves (with their flags) already sit in
    the backend, so the wrapper finds them there instead of adding new ones.
    """
    settings: dict[str, Any] = {}
    base_roles = set(PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES)
    model_specific: dict[str, str] = {}
    for role, token in source.special_tokens_map.items():
        if role in base_roles:
            settings[role] = str(token)
        else:  # e.g. image_token on multimodal tokenizers
            model_specific[role] = str(token)
    if model_specific:
        settings["model_specific_special_tokens"] = model_specific
    extra = [str(token) for token in (getattr(source, "extra_special_tokens", None) or [])]
    if extra:
        settings["extra_special_tokens"] = extra
    for name in _CARRIED_SETTINGS:
        value = getattr(source, name, None)
        if value is not None:
            settings[name] = copy.deepcopy(value)
    for name in _EXPLICIT_SETTINGS:
        if name in source.init_kwargs:
            settings[name] = source.init_kwargs[name]
    return settings
