"""Refuse a run's bad input before any expensive work starts (CONTRIBUTING: bad input is
a ``transfer.errors`` subclass naming the file or parameter and what is wrong)."""

from __future__ import annotations

from pathlib import Path

from transfer.config import AdaptConfig
from transfer.errors import CorpusError


def validate_config(cfg: AdaptConfig) -> None:
    """Check strategy, corpus, Bible codes, the data the strategy needs and the source."""
    from transfer.corpus.bible import translation_codes
    from transfer.init import check_strategy_params
    from transfer.init.resources import needs
    from transfer.source.loading import source_fingerprint

    check_strategy_params(cfg.strategy, cfg.strategy_params)  # also refuses an unknown strategy
    for path in cfg.target_files:
        if not Path(path).exists():
            raise CorpusError(f"target_files: {path} does not exist")
    codes = cfg.target_bible + cfg.source_bible + cfg.source_train_bible
    if codes:
        available = translation_codes()
        unknown = [c for c in codes if c not in available]
        if unknown:
            raise CorpusError(f"Bible translation codes {unknown} are unknown; available: {available}")
    if not cfg.target_bible and not cfg.target_files:
        raise CorpusError("no target corpus: give target_bible codes or target_files")
    _check_parallel_files(cfg)
    has_parallel = bool(cfg.parallel_files) or bool(cfg.target_bible and cfg.source_train_bible)
    kinds = needs(cfg.strategy)
    if "parallel" in kinds and not has_parallel:
        raise CorpusError(
            f"strategy {cfg.strategy!r} needs a parallel corpus: give parallel_files, or target_bible and "
            f"source_train_bible codes"
        )
    if "vectors" in kinds:
        if not cfg.source_train_bible:
            raise CorpusError(f"strategy {cfg.strategy!r} needs source_train_bible to train source vectors")
        if cfg.dictionary not in ("auto", "ding", "induced") and not Path(cfg.dictionary).is_file():
            raise CorpusError(f"dictionary: {cfg.dictionary} does not exist")
        induced = cfg.dictionary == "induced" or (cfg.dictionary == "auto" and cfg.target_language != "de")
        if induced and not has_parallel:
            raise CorpusError("an induced dictionary needs parallel text: parallel_files, or target_bible codes "
                              "(verse-aligned with source_train_bible)")
    # raises for a missing file or folder, and for a hub id offline without a cached copy
    source_fingerprint(cfg.source_model, cfg.source_revision)


def _check_parallel_files(cfg: AdaptConfig) -> None:
    """Each parallel corpus's form, its first lines and (Moses) its line counts: cheap
    enough for a GB-sized file; the corpus stage checks every line as it splits them."""
    from transfer.corpus.parallel_files import check_parallel_head, resolve_parallel

    for entry in cfg.parallel_files:
        source = resolve_parallel(entry, cfg.parallel_source_language, cfg.target_language, cfg.parallel_fields)
        check_parallel_head(source, max_chars=cfg.parallel_max_line_chars)
