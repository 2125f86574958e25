"""Errors raised for bad input, before any expensive work starts."""


class VocabTransferError(ValueError):
    """Base class: bad input named with what is wrong about it."""


class CorpusError(VocabTransferError):
    """A corpus file or folder is missing, empty or undecodable."""


class TokenizerBuildError(VocabTransferError):
    """A target tokenizer cannot be built from the given source and parameters."""


class UnknownStrategyError(VocabTransferError):
    """The requested initialization strategy is not registered."""


class ModelLoadError(VocabTransferError):
    """A source model cannot be found or loaded safely."""


class SimilarityError(VocabTransferError):
    """A similarity search got vectors of mismatched shape or an impossible k."""


class FactorizationError(VocabTransferError):
    """A factorized embedding cannot be built: rank out of range, model or file mismatch."""


class TrainingError(VocabTransferError):
    """Bad input to continued pretraining (no blocks, bad step counts or settings)."""


class CheckpointError(TrainingError):
    """A training checkpoint is missing, incomplete, or belongs to another model, tokenizer,
    data set or configuration."""


class MemoryBudgetError(TrainingError):
    """The training configuration needs more memory than the device has."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite; training stopped at the last good state."""


class ParallelCorpusError(VocabTransferError):
    """A parallel corpus is missing, empty, malformed or disagrees with its alignment."""


class StrategyResourceError(VocabTransferError):
    """A strategy's data (parallel corpus, target corpus, token vectors) is missing or unusable."""


class TokenVectorError(StrategyResourceError):
    """A strategy needs token vectors that its resources do not provide (or not in shape)."""


class VectorsError(VocabTransferError):
    """A static-vector file is missing, corrupt, truncated, pickled or inconsistent."""


class DictionaryError(VocabTransferError):
    """A bilingual dictionary is unreadable, in an unknown format, or covers no vectors."""


class AlignmentError(VocabTransferError):
    """Vectors cannot be aligned: dimensions differ or no dictionary pair is covered."""
