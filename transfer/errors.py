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
