"""Training target-language tokenizers that match the source tokenizer's family."""

from tokenizer_builds.build import BUILDERS, FamilyBuilder, build_target_tokenizer, save_tokenizer
from tokenizer_builds.byte_level_bpe import BYTE_ALPHABET, train_byte_level_bpe
from tokenizer_builds.families import TokenizerFamily, detect_family

__all__ = [
    "BUILDERS",
    "BYTE_ALPHABET",
    "FamilyBuilder",
    "TokenizerFamily",
    "build_target_tokenizer",
    "detect_family",
    "save_tokenizer",
    "train_byte_level_bpe",
]
