"""Checks of a given target tokenizer and a helper model, before the first stage.

``check_helper_inputs`` (called by validation) refuses what cannot work: a tokenizer folder
without tokenizer files, a helper whose tokenizer is not the target tokenizer (the helper's
row t must be target id t for CLP/OMP to mean anything), ``keep_tokens`` the given
tokenizer lacks, and combinations that contradict each other. ``helper_warnings`` (called
with the other input warnings) says what would run but may not be what is meant: a
vocabulary overlap under 1% (CLP and OMP build every new row from the shared tokens; FVT
and the rest degrade too), a helper of another width (fine, said), a masked-LM helper for a
causal source (only its input embeddings' geometry is read). Tokenizers are read once per
content (by fingerprint), so validation and warnings share the load.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from transfer.errors import ModelLoadError, TokenizerBuildError, VocabTransferError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from transfer.settings.config import AdaptConfig

#: below this share of the target vocabulary shared with the source, warn
MIN_OVERLAP_SHARE = 0.01


def uses_given_tokenizer(cfg: AdaptConfig) -> bool:
    return cfg.target_tokenizer is not None or cfg.helper_model is not None


def check_helper_inputs(cfg: AdaptConfig) -> None:
    """Refuse a bad ``target_tokenizer``/``helper_model``/``progressive`` combination or file."""
    if cfg.progressive and cfg.helper_model:
        raise VocabTransferError("progressive adapts its own helper (progressive_source); do not also give "
                                 f"helper_model={cfg.helper_model!r}: use one or the other")
    given = uses_given_tokenizer(cfg)
    if cfg.vocab_mode == "extend" and (given or cfg.progressive):
        what = "target_tokenizer/helper_model" if given else "progressive"
        raise TokenizerBuildError(f"vocab_mode='extend' appends tokens to the source's own tokenizer; {what} gives "
                             "the target tokenizer whole: use vocab_mode='replace'")
    if cfg.progressive and cfg.progressive_source == cfg.source_model:
        raise VocabTransferError(f"progressive: progressive_source {cfg.progressive_source!r} is the source model "
                                 "itself; it must be a smaller model (default smollm2)")
    if not given:
        return
    target = given_target_tokenizer(cfg)
    if cfg.helper_model is not None:
        helper = _tokenizer(cfg.helper_model, cfg.helper_revision, "helper_model")
        _check_helper_model_files(cfg)
        if cfg.target_tokenizer is not None and not _same(helper, target):
            raise TokenizerBuildError(
                f"helper_model {cfg.helper_model!r}'s tokenizer ({len(helper)} tokens) is not target_tokenizer "
                f"{cfg.target_tokenizer!r} ({len(target)} tokens){_first_difference(helper, target)}: the "
                "helper's rows must be the target tokenizer's ids; give the helper's own tokenizer, or leave "
                "target_tokenizer unset to use it")
    if cfg.keep_tokens:
        vocab = target.get_vocab()
        missing = [token for token in cfg.keep_tokens if token not in vocab]
        if missing:
            raise TokenizerBuildError(f"keep_tokens {missing} are not in the given target tokenizer "
                                 f"({_given_name(cfg)}), which is used as is: add them to it or drop them")


def _check_helper_model_files(cfg: AdaptConfig) -> None:
    from pathlib import Path

    from transfer.source.loading import resolve_source, source_fingerprint
    from transfer.source.weight_files import check_source_weights

    try:
        source_fingerprint(cfg.helper_model, cfg.helper_revision)
        spec = resolve_source(cfg.helper_model, cfg.helper_revision)
        if spec.kind in ("gguf", "folder"):
            check_source_weights(Path(spec.location))
    except ModelLoadError as error:
        raise ModelLoadError(f"helper_model: {error}") from error
    if spec.kind == "folder":  # another model's tokenizer: rows missing for its last ids
        from transfer.source.tokenizer_fit import tokenizer_fit_problem

        problem = tokenizer_fit_problem(spec.location, "helper_model")
        if problem:
            raise ModelLoadError(problem)


def given_target_tokenizer(cfg: AdaptConfig) -> PreTrainedTokenizerFast:
    """The target tokenizer the run is given: ``target_tokenizer``, else the helper's."""
    if cfg.target_tokenizer is not None:
        return _tokenizer(cfg.target_tokenizer, cfg.target_tokenizer_revision, "target_tokenizer")
    return _tokenizer(cfg.helper_model, cfg.helper_revision, "helper_model")


def _given_name(cfg: AdaptConfig) -> str:
    return (f"target_tokenizer {cfg.target_tokenizer!r}" if cfg.target_tokenizer is not None
            else f"helper_model {cfg.helper_model!r}'s tokenizer")


def _tokenizer(spec: str, revision: str | None, field: str) -> PreTrainedTokenizerFast:
    from transfer.tokenizer.given import identify_tokenizer

    given = identify_tokenizer(spec, revision, field=field)
    return _load(given.kind, given.location, given.fingerprint, given.commit, field)


@lru_cache(maxsize=8)
def _load(kind: str, location: str, fingerprint: str, commit: str | None, field: str) -> PreTrainedTokenizerFast:
    # fingerprint is in the cache key only so that a changed file is read again
    from transfer.tokenizer.given import GivenTokenizer, load_given_tokenizer

    return load_given_tokenizer(GivenTokenizer(kind, location, fingerprint, commit), field=field)


def _same(a: PreTrainedTokenizerFast, b: PreTrainedTokenizerFast) -> bool:
    from transfer.tokenizer.given import same_vocabulary

    return same_vocabulary(a, b)


def _first_difference(a: PreTrainedTokenizerFast, b: PreTrainedTokenizerFast) -> str:
    va, vb = a.get_vocab(), b.get_vocab()
    for token, index in sorted(va.items(), key=lambda kv: kv[1]):
        if vb.get(token) != index:
            return f"; e.g. {token!r} is id {index} in the helper's, {vb.get(token)} in the target's"
    return ""


def helper_warnings(cfg: AdaptConfig) -> list[tuple[str, str]]:
    """(check, message) of each warning and note about a given tokenizer and the helper (see the
    module docstring); ``transfer.settings.input_warnings`` shows them with the others."""

    if not uses_given_tokenizer(cfg):
        return []
    found: list[tuple[str, str]] = []
    target = given_target_tokenizer(cfg)
    source = _source_tokenizer(cfg)
    if source is not None:
        from transfer.init.strategies.overlap import match_overlap
        from transfer.tokenizer.special_tokens import map_byte_tokens, special_token_ids

        # byte and special tokens always get the source's rows (by value and role): the
        # overlap that matters is of the ordinary tokens
        excluded = set(map_byte_tokens(source, target)) | special_token_ids(target)
        shared = sum(1 for t in match_overlap(source, target).target_ids if t not in excluded)
        ordinary = max(len(target) - len(excluded), 1)
        share = shared / ordinary
        if share < MIN_OVERLAP_SHARE:
            found.append(("vocab_overlap", (
                f"the target tokenizer shares only {shared} of its {ordinary} ordinary tokens ({share:.2%}; byte "
                "and special tokens aside) with the "
                f"source's: {cfg.strategy} has little to copy or combine from (clp and omp build every new row "
                "from the shared tokens)")))
    if cfg.helper_model is not None:
        found.extend(_helper_model_notes(cfg))
    return found


def _source_tokenizer(cfg: AdaptConfig) -> PreTrainedTokenizerFast | None:
    try:
        return _tokenizer(cfg.source_model if cfg.source_model != "smollm2" else _smollm2(), cfg.source_revision,
                          "source_model")
    except VocabTransferError:
        return None  # validation reports the source itself


def _smollm2() -> str:
    from transfer.source.loading import smollm2_gguf_path

    return str(smollm2_gguf_path())


def _helper_model_notes(cfg: AdaptConfig) -> list[tuple[str, str]]:
    from transfer.source.objective import model_objective

    helper = _model_config(cfg.helper_model, cfg.helper_revision)
    source = _model_config(cfg.source_model, cfg.source_revision)
    if helper is None or source is None:
        return []
    notes = []
    helper_width, source_width = _width(helper), _width(source)
    if helper_width and source_width and helper_width != source_width:
        notes.append(("helper_width", (
            f"the helper's hidden size is {helper_width}, the source's {source_width}: fine, its embeddings "
            "only say which target tokens are alike; the new rows are combinations of the source's own")))
    if model_objective(helper) != model_objective(source):
        notes.append(("helper_objective", (
            f"the helper is a {model_objective(helper)} LM and the source a {model_objective(source)} one: only "
            "the geometry of the helper's input embeddings is read (which shared tokens each new token is "
            "like); its head is not used")))
    return notes


def _model_config(model: str, revision: str | None):
    """A model's config without its weights (a GGUF's header, a folder's or hub id's
    config.json); None when it cannot be read (validation reports the model itself)."""
    from pathlib import Path

    from transformers import AutoConfig

    from transfer.settings.memory_budget import gguf_model_config
    from transfer.source.loading import resolve_source

    try:
        spec = resolve_source(model, revision)
        if spec.kind == "gguf":
            return gguf_model_config(Path(spec.location))
        extra = {"revision": spec.revision} if spec.revision else {}
        return AutoConfig.from_pretrained(spec.location, trust_remote_code=False, **extra)
    except (OSError, ValueError):
        return None


def _width(config) -> int | None:
    text = getattr(config, "text_config", None) or config
    return getattr(text, "hidden_size", None)
