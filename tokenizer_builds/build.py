"""Build a target-language tokenizer of the source tokenizer's family, and save it.

The entry point detects the source's family (byte-level BPE, BPE with byte fallback,
SentencePiece-style Unigram, WordPiece) and dispatches to that family's trainer through
one small table; a tokenizer of no known family (WordLevel, BPE without byte handling) is
refused by the detection with a message naming what it found. Each family trainer checks
the vocabulary budget and the corpus before any training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenizer_builds.bpe_byte_fallback import train_bpe_byte_fallback
from tokenizer_builds.byte_level_bpe import train_byte_level_bpe
from tokenizer_builds.families import TokenizerFamily, family_of_json, pipeline_json
from tokenizer_builds.unigram import train_unigram
from tokenizer_builds.wordpiece import train_wordpiece
from transfer.engine.cache import replacing_directory
from transfer.errors import TokenizerBuildError

#: A family trainer: (source, texts, vocab_size, *, min_frequency, show_progress,
#: keep_tokens, eos_token_ids) -> tokenizer.
#: Each one starts with ``conventions.prepare_build``: the budget and corpus checks run
#: there, once, before any training.
Trainer = Callable[..., PreTrainedTokenizerFast]

# One entry per supported family.
BUILDERS: dict[TokenizerFamily, Trainer] = {
    TokenizerFamily.BYTE_LEVEL_BPE: train_byte_level_bpe,
    TokenizerFamily.BPE_BYTE_FALLBACK: train_bpe_byte_fallback,
    TokenizerFamily.UNIGRAM: train_unigram,
    TokenizerFamily.WORDPIECE: train_wordpiece,
}


def build_target_tokenizer(
    source: PreTrainedTokenizerBase,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> PreTrainedTokenizerFast:
    """Train a tokenizer on target-language ``texts`` with the source tokenizer's family
    and conventions (special tokens, pre-tokenization, decoding, post-processing).

    ``vocab_size`` counts learned tokens plus the family's alphabet (256 byte tokens); the
    source's added tokens that a special role, the chat template, the generation config's
    ``eos_token_ids`` or ``keep_tokens`` need come on top, the rest are dropped
    (``tokenizer_builds.added_tokens``)."""
    family = family_of_json(pipeline_json(source))  # the trainer reads the full JSON once
    train = BUILDERS.get(family)
    if train is None:
        raise TokenizerBuildError(
            f"source tokenizer family {family.value} is not supported yet by the builder "
            f"(supported: {', '.join(f.value for f in BUILDERS)})"
        )
    return train(source, texts, vocab_size, min_frequency=min_frequency,
                 show_progress=show_progress, keep_tokens=keep_tokens, eos_token_ids=eos_token_ids)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """Write ``tokenizer`` in Hugging Face format to ``out_dir``, atomically.

    Saved into a temporary sibling folder first and renamed when complete, so a crash
    never leaves a half-written tokenizer; an existing ``out_dir`` is replaced.
    """
    with replacing_directory(out_dir) as staging:
        tokenizer.save_pretrained(str(staging))
