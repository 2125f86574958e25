"""The source conventions every family build keeps, and the steps all builds share.

A target tokenizer is the source's own pipeline (normalizer, pre-tokenizer, decoder, model
flags, post-processor) with a vocabulary learned on target-language text. Each family
module only says how to train its model; this module starts from the source's backend
JSON with an empty model, puts the source's special tokens (with their flags) at the first
ids, appends its non-special added tokens after training, restores the model flags exactly
as the source spelled them and remaps the post-processor's token ids by string.

Only the added tokens something needs are carried (``tokenizer_builds.added_tokens``:
special roles, the chat template, the user's ``keep_tokens``); placeholders are dropped.
``vocab_size`` counts the learned tokens and the family's alphabet (the 256 byte tokens);
the kept special and added tokens come on top of it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import AddedToken, Tokenizer
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenizer_builds.added_tokens import AddedTokenSelection, select_added_tokens
from tokenizer_builds.families import (
    TokenizerFamily,
    backend_json,
    check_min_frequency,
    check_vocab_size,
    family_of_json,
    require_texts,
)
from transfer.errors import TokenizerBuildError

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

#: The 256 byte-fallback pieces SentencePiece-style vocabularies hold, in byte order.
BYTE_FALLBACK_TOKENS: tuple[str, ...] = tuple(f"<0x{value:02X}>" for value in range(256))


@dataclass(frozen=True)
class SourceLayout:
    """The parts of a source tokenizer a build needs: its JSON and its added tokens."""

    spec: dict[str, Any]
    specials: list[dict[str, Any]]  # kept added tokens flagged special, in id order
    plain: list[dict[str, Any]]  # kept non-special added tokens, in id order
    selection: AddedTokenSelection  # which added tokens are kept, and why

    @property
    def model(self) -> dict[str, Any]:
        return self.spec["model"]


def source_layout(
    source: PreTrainedTokenizerBase,
    family: TokenizerFamily,
    *,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> SourceLayout:
    """Read the source's backend JSON, check that it is of ``family`` and choose the added
    tokens the target keeps (``select_added_tokens``)."""
    spec = backend_json(source)
    found = family_of_json(spec)
    if found is not family:
        raise TokenizerBuildError(f"source tokenizer is of family {found.value}, not {family.value}")
    selection = select_added_tokens(source, spec, keep_tokens=keep_tokens, eos_token_ids=eos_token_ids)
    added = sorted(spec.get("added_tokens") or [], key=lambda token: token["id"])
    kept = [token for token in added if selection.keeps(token["content"])]
    return SourceLayout(
        spec=spec,
        specials=[token for token in kept if token.get("special")],
        plain=[token for token in kept if not token.get("special")],
        selection=selection,
    )


def prepare_build(
    source: PreTrainedTokenizerBase,
    family: TokenizerFamily,
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int,
    alphabet_size: Callable[[SourceLayout], int],
    *,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> tuple[SourceLayout, Iterator[str]]:
    """What every family builder does first: read the source's layout (and choose its kept
    added tokens), check the budget (the family's alphabet plus one learned token; kept
    added tokens come on top) and the corpus, before any training."""
    layout = source_layout(source, family, keep_tokens=keep_tokens, eos_token_ids=eos_token_ids)
    check_vocab_size(vocab_size, n_reserved=0, alphabet_size=alphabet_size(layout))
    check_min_frequency(min_frequency)
    return layout, require_texts(texts)


def added_token(token: dict[str, Any]) -> AddedToken:
    """An AddedToken with the same content and matching flags as a source added token."""
    return AddedToken(
        token["content"],
        single_word=token.get("single_word", False),
        lstrip=token.get("lstrip", False),
        rstrip=token.get("rstrip", False),
        normalized=token.get("normalized", False),
        special=token.get("special", False),
    )


def untrained_backend(
    layout: SourceLayout, empty_model: dict[str, Any], *, pre_tokenizer: Any = "source"
) -> Tokenizer:
    """The source pipeline with ``empty_model`` and no added tokens, ready to train.

    ``pre_tokenizer`` replaces the source's for training only (Llama-2 style tokenizers
    have none: their normalizer alone marks word starts); the final tokenizer gets the
    source's back in :func:`finish`.
    """
    # The source model (a vocabulary of up to a few 100k pieces) is replaced, not copied.
    target = copy.deepcopy({key: value for key, value in layout.spec.items() if key != "model"})
    target["model"] = empty_model
    target["added_tokens"] = []
    # Set after training, once the target ids of its special tokens are known.
    target["post_processor"] = None
    # Padding/truncation hold source ids and lengths; the wrapper manages both itself.
    target["padding"] = None
    target["truncation"] = None
    if pre_tokenizer != "source":
        target["pre_tokenizer"] = pre_tokenizer
    return Tokenizer.from_str(json.dumps(target))


def finish(
    backend: Tokenizer,
    layout: SourceLayout,
    source: PreTrainedTokenizerBase,
    *,
    fix_model: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> PreTrainedTokenizerFast:
    """Turn a trained backend into the target tokenizer with the source's conventions.

    ``fix_model(trained model JSON) -> model JSON`` lets a family edit the learned model
    (insert byte-fallback pieces); the source's model flags then override the trainer's
    spelling of them, the source's pre-tokenizer comes back, the non-special added tokens
    are appended and the post-processor is attached with remapped ids.
    """
    trained = json.loads(backend.to_str())
    model = fix_model(trained["model"]) if fix_model is not None else trained["model"]
    learned_keys = ("vocab", "merges", "unk_id")
    flags = {key: value for key, value in layout.model.items() if key not in learned_keys}
    trained["model"] = {**model, **flags}
    trained["pre_tokenizer"] = copy.deepcopy(layout.spec.get("pre_tokenizer"))
    # The trainer's own post-processor slot is filled below, from the source's.
    rebuilt = Tokenizer.from_str(json.dumps(trained))
    if layout.plain:
        rebuilt.add_tokens([added_token(token) for token in layout.plain])
    post_processor = layout.spec.get("post_processor")
    if post_processor is not None:
        result = json.loads(rebuilt.to_str())
        vocab = rebuilt.get_vocab(with_added_tokens=True)
        result["post_processor"] = remap_token_ids(copy.deepcopy(post_processor), vocab)
        rebuilt = Tokenizer.from_str(json.dumps(result))
    settings = wrapper_settings(source, dropped=set(layout.selection.dropped))
    return PreTrainedTokenizerFast(tokenizer_object=rebuilt, **settings)


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


def wrapper_settings(
    source: PreTrainedTokenizerBase, dropped: Collection[str] = ()
) -> dict[str, Any]:
    """Special-token roles and wrapper settings of ``source`` as wrapper constructor kwargs.

    Roles are passed as strings: the tokens themselves (with their flags) already sit in
    the backend, so the wrapper finds them there instead of adding new ones. Extra and
    model-specific special tokens among the ``dropped`` added tokens are left out, so the
    wrapper does not add them back (Gemma-3's image tokens, Mistral's ``[control_N]``).
    """
    settings: dict[str, Any] = {}
    base_roles = set(PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES)
    model_specific: dict[str, str] = {}
    for role, token in source.special_tokens_map.items():
        if role in base_roles:
            if isinstance(token, list):  # additional_special_tokens (transformers 4)
                token = [str(t) for t in token if str(t) not in dropped]
                if token:
                    settings[role] = token
            else:
                settings[role] = str(token)
        elif str(token) not in dropped:  # e.g. image_token on multimodal tokenizers
            model_specific[role] = str(token)
    if model_specific:
        settings["model_specific_special_tokens"] = model_specific
    extra = [
        str(token)
        for token in (getattr(source, "extra_special_tokens", None) or [])
        if str(token) not in dropped
    ]
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
