"""``keep_tokens`` checked before the first stage (issue #18).

Each entry must be a non-empty string, given once, and an added token of the source
tokenizer (ordinary text needs no keeping: the target spells it with its own pieces). The
source's added tokens are read here when they are cheap to read: a model folder's
tokenizer (a second or two, only when ``keep_tokens`` is set). A GGUF file (its tokenizer
is rebuilt from the whole file's metadata) and a hub id (not fetched before the source
stage) are checked by the tokenizer stage instead, with the same message, before it
trains (``tokenizer_builds.added_tokens.select_added_tokens``).
"""

from __future__ import annotations

from transfer.settings.config import AdaptConfig


def check_keep_tokens(cfg: AdaptConfig) -> None:
    """Refuse bad ``keep_tokens`` entries, naming them and a few of the source's added tokens."""
    if not cfg.keep_tokens:
        return
    if cfg.target_tokenizer is not None or cfg.helper_model is not None:
        return  # the given tokenizer is used as is: transfer.settings.helper_checks checks them there
    from tokenizer_builds.added_tokens import check_keep_tokens_added, check_keep_tokens_form

    check_keep_tokens_form(cfg.keep_tokens)
    added = folder_added_tokens(cfg.source_model, cfg.source_revision)
    if added is not None:
        check_keep_tokens_added(cfg.keep_tokens, added)


def folder_added_tokens(source_model: str, revision: str | None = None) -> list[str] | None:
    """The added tokens of a model folder's tokenizer, in id order, as the tokenizer stage
    sees them (its backend's added vocabulary); None for a GGUF file or a hub id, and for
    a folder whose tokenizer does not load (the source stage reports that)."""
    from transformers import AutoTokenizer

    from transfer.source.loading import resolve_source

    source = resolve_source(source_model, revision)
    if source.kind != "folder":
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, trust_remote_code=False)
        backend = tokenizer.backend_tokenizer
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    decoder = backend.get_added_tokens_decoder()
    return [decoder[index].content for index in sorted(decoder)]
