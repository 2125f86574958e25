"""BPE with byte fallback (Llama-2, Mistral, Gemma style): SentencePiece's BPE converted to
`tokenizers`, with a new vocabulary learned on target-language text.

These tokenizers mark word starts with ``▁`` (through a Metaspace pre-tokenizer, or, in
Llama-2's conversion, through a normalizer that prepends ``▁`` and replaces spaces, with
no pre-tokenizer at all) and fall back to 256 ``<0xNN>`` byte pieces for anything the
vocabulary cannot spell, so every text round-trips. The build keeps the source's
normalizer, pre-tokenizer, decoder, model flags (``byte_fallback``, ``fuse_unk``, ...) and
post-processor, puts its special tokens at the first ids and the 256 byte pieces right
after them (SentencePiece's layout), then the learned characters and merges (Sennrich et
al., 2016).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tokenizers import trainers
from transformers import PreTrainedTokenizerFast

from tokenizer_builds.byte_level_bpe import affix_settings
from tokenizer_builds.conventions import (
    BYTE_FALLBACK_TOKENS,
    added_token,
    finish,
    prepare_build,
    untrained_backend,
)
from tokenizer_builds.families import (
    TokenizerFamily,
    word_marker,
)


def training_pre_tokenizer(spec: dict[str, Any]) -> Any:
    """The pre-tokenizer to train with, so that merges stay inside words as SentencePiece's
    do: the source's own when it splits words; a splitting copy of a Metaspace that does
    not split (``split: false``, newer Llama/Mistral conversions); and with no
    pre-tokenizer (Llama-2) or one that splits on spaces the normalizer has already
    replaced (Gemma), a split of the normalized text before each word marker. The
    final tokenizer gets the source's pre-tokenizer back."""
    pre_tokenizer = spec.get("pre_tokenizer")
    if pre_tokenizer is not None:
        if pre_tokenizer.get("type") == "Metaspace" and pre_tokenizer.get("split") is False:
            return {**pre_tokenizer, "split": True}
        if not _normalizer_marks_spaces(spec):
            return "source"
        # Gemma: the normalizer has already turned every space into the marker, so the
        # source's Split on " " splits nothing; without a split, merges would join words.
    marker = word_marker(spec)
    return {
        "type": "Split",
        "pattern": {"String": marker},
        "behavior": "MergedWithNext",
        "invert": False,
    }


def _normalizer_marks_spaces(spec: dict[str, Any]) -> bool:
    """Whether the normalizer replaces spaces with a word marker (Llama-2, Gemma)."""

    def search(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Replace" and node.get("pattern") == {"String": " "}:
                return True
            return any(search(value) for value in node.values())
        if isinstance(node, list):
            return any(search(item) for item in node)
        return False

    return search(spec.get("normalizer"))


def _with_byte_pieces(n_special: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A model fix that puts the 256 byte pieces after the special tokens (ids shift)."""

    def fix(model: dict[str, Any]) -> dict[str, Any]:
        ordered = sorted(model["vocab"].items(), key=lambda item: item[1])
        head = [token for token, _ in ordered[:n_special]]
        rest = [token for token, _ in ordered[n_special:] if token not in BYTE_FALLBACK_TOKENS]
        tokens = head + list(BYTE_FALLBACK_TOKENS) + rest
        return {**model, "vocab": {token: index for index, token in enumerate(tokens)}}

    return fix


def train_bpe_byte_fallback(
    source: PreTrainedTokenizerFast,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-fallback BPE on ``texts`` with the source tokenizer's conventions.

    ``vocab_size`` counts the learned tokens and the 256 byte pieces; the kept special and
    added tokens come on top. A small corpus may give fewer.
    """
    layout, corpus = prepare_build(source, TokenizerFamily.BPE_BYTE_FALLBACK, texts, vocab_size, min_frequency,
                                   alphabet_size=lambda _: len(BYTE_FALLBACK_TOKENS),
                                   keep_tokens=keep_tokens, eos_token_ids=eos_token_ids)

    specials = [added_token(token) for token in layout.specials]
    contents = {token["content"] for token in layout.specials}
    unk = layout.model.get("unk_token")
    if unk and unk not in contents:
        specials.append(unk)  # the BPE model needs its unknown token in the vocabulary
    empty = {**layout.model, "vocab": {}, "merges": []}
    backend = untrained_backend(layout, empty, pre_tokenizer=training_pre_tokenizer(layout.spec))
    # The byte pieces are inserted after training; the trainer counts its special tokens
    # in its budget, and they come on top of vocab_size.
    learned = vocab_size - len(BYTE_FALLBACK_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=learned + len(specials),
        # Like SentencePiece's character coverage: rare characters that do not fit the
        # budget are spelled with byte pieces instead of taking a vocabulary slot.
        limit_alphabet=max(1, learned - 1),
        min_frequency=min_frequency,
        show_progress=show_progress,
        special_tokens=specials,
        **affix_settings(layout.model),
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    return finish(backend, layout, source, fix_model=_with_byte_pieces(len(specials)))

