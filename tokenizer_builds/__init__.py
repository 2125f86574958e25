"""Training target-language tokenizers that match the source tokenizer's family."""

from tokenizer_builds.bpe_byte_fallback import train_bpe_byte_fallback
from tokenizer_builds.build import BUILDERS, build_target_tokenizer, save_tokenizer
from tokenizer_builds.byte_level_bpe import BYTE_ALPHABET, train_byte_level_bpe
from tokenizer_builds.conventions import BYTE_FALLBACK_TOKENS
from tokenizer_builds.extend import Extension, extend_tokenizer
from tokenizer_builds.families import TokenizerFamily, detect_family
from tokenizer_builds.unigram import train_unigram
from tokenizer_builds.wordpiece import train_wordpiece

__all__ = [
    "BUILDERS",
    "BYTE_ALPHABET",
    "BYTE_FALLBACK_TOKENS",
    "Extension",
    "TokenizerFamily",
    "build_target_tokenizer",
    "detect_family",
    "extend_tokenizer",
    "save_tokenizer",
    "train_bpe_byte_fallback",
    "train_byte_level_bpe",
    "train_unigram",
    "train_wordpiece",
]
