"""Stage ``tokenizer``: the target tokenizer trained on the train split, with fertility and
the report of the source's added tokens it kept (and why) and dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.corpus.splits import HELD_OUT_SPLITS
from transfer.corpus.stage import eval_file, iter_lines, read_lines
from transfer.engine.cache import StageOutput
from transfer.engine.stages import BuildContext, StageSpec, builder, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig


def tokenizer_spec(cfg: AdaptConfig, corpus: StageOutput, source: StageOutput,
                   helper: StageOutput | None = None) -> StageSpec:
    """The target tokenizer: trained on the corpus, or the user's ``target_tokenizer``, or
    (``helper`` given and no ``target_tokenizer``) the helper model's own tokenizer, each
    used as is."""
    if cfg.target_tokenizer is not None or helper is not None:
        return _given_spec(cfg, corpus, source, helper)
    inputs, upstream = upstream_of(corpus=corpus, source=source)
    # Fertility is measured on both held-out splits, so switching eval_split (choose on dev,
    # report on test) reuses the tokenizer and everything after it.
    params = {"vocab_size": cfg.vocab_size, "min_frequency": cfg.min_frequency,
              "fertility_texts": cfg.eval_texts}
    if cfg.vocab_mode == "extend":  # only when set, so the default key keeps its parameters
        del params["vocab_size"]
        params.update(vocab_mode="extend", added_tokens=cfg.added_tokens)
    if cfg.keep_tokens:  # only when set, so the default key keeps its parameters
        params["keep_tokens"] = list(cfg.keep_tokens)
    return StageSpec(stage="tokenizer", params=params, inputs=inputs, upstream=upstream)


def _given_spec(cfg: AdaptConfig, corpus: StageOutput, source: StageOutput,
                helper: StageOutput | None) -> StageSpec:
    params: dict = {"fertility_texts": cfg.eval_texts}
    if cfg.target_tokenizer is not None:
        from transfer.tokenizer.given import identify_tokenizer

        given = identify_tokenizer(cfg.target_tokenizer, cfg.target_tokenizer_revision)
        params["given"] = {"kind": given.kind, "location": given.location, "commit": given.commit}
        inputs, upstream = upstream_of(corpus=corpus, source=source)
        inputs["target_tokenizer"] = given.fingerprint
    else:
        params["given"] = {"kind": "helper"}
        inputs, upstream = upstream_of(corpus=corpus, source=source, helper=helper)
    if cfg.keep_tokens:
        params["keep_tokens"] = list(cfg.keep_tokens)
    return StageSpec(stage="tokenizer", params=params, inputs=inputs, upstream=upstream)


@builder("tokenizer")
def build_tokenizer(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Train the target tokenizer on train texts only (or take the given one as is); report
    fertility on the first ``fertility_texts`` texts of each held-out split
    (``fertility.json``: split -> side) and, in ``special_tokens.json``, the source's added
    tokens kept (with the reason) and dropped."""
    from transformers import AutoTokenizer

    if "given" in spec.params:
        _take_given(spec, out)
        return
    from tokenizer_builds.added_tokens import (
        added_token_spec,
        generation_eos_ids,
        read_generation_config,
        select_added_tokens,
    )
    from tokenizer_builds.build import build_target_tokenizer, save_tokenizer

    corpus = spec.upstream_path("corpus")
    source_dir = spec.upstream_path("source") / "model"
    source_tokenizer = AutoTokenizer.from_pretrained(source_dir)
    keep_tokens = spec.params.get("keep_tokens", [])
    # The generation config's eos ids (Llama-3.1 stops at <|eom_id|> and <|eot_id|>) are
    # kept like the tokenizer's own eos.
    eos_ids = generation_eos_ids(read_generation_config(source_dir / "generation_config.json"))
    if spec.params.get("vocab_mode") == "extend":
        target = _extend(source_tokenizer, corpus, spec, out)
    else:
        target = build_target_tokenizer(
            source_tokenizer,
            iter_lines(corpus / "train.txt"),
            spec.params["vocab_size"],
            min_frequency=spec.params["min_frequency"],
            keep_tokens=keep_tokens,
            eos_token_ids=eos_ids,
        )
    save_tokenizer(target, out / "tokenizer")
    write_json(out / "fertility.json", _fertility(corpus, source_tokenizer, target, spec.params["fertility_texts"]))
    if spec.params.get("vocab_mode") == "extend":
        report = {"vocab_mode": "extend", "kept": "every added token of the source, at its id"}
    else:
        report = select_added_tokens(
            # only the added tokens and post-processor: not a second dump of the whole vocabulary
            source_tokenizer, added_token_spec(source_tokenizer), keep_tokens=keep_tokens,
            eos_token_ids=eos_ids,
        ).report()
    write_json(out / "special_tokens.json", {
        **report,
        "vocab_size": spec.params.get("vocab_size"),
        "target_tokens": len(target),
        "source_tokens": len(source_tokenizer),
    })


def _extend(source_tokenizer, corpus: Path, spec: StageSpec, out: Path):
    """Vocabulary extension: the source tokenizer with target tokens appended; what was
    appended goes to ``extension.json`` (the init stage keeps the rows below it)."""
    from tokenizer_builds.extend import extend_tokenizer
    from transfer.tokenizer.extension_record import EXTENSION_FILE, extension_report

    extension = extend_tokenizer(source_tokenizer, iter_lines(corpus / "train.txt"),
                                 spec.params["added_tokens"], min_frequency=spec.params["min_frequency"])
    write_json(out / EXTENSION_FILE, extension_report(extension.family.value, extension.first_new_id,
                                                      extension.new_tokens))
    return extension.tokenizer


def given_tokenizer(spec_params: dict, upstream_helper: Path | None):
    """The tokenizer a ``given`` tokenizer stage names: the user's, or the helper model's."""
    from transformers import AutoTokenizer

    from transfer.tokenizer.given import GivenTokenizer, load_given_tokenizer, require_fast

    given = spec_params["given"]
    if given["kind"] == "helper":
        tokenizer = AutoTokenizer.from_pretrained(upstream_helper / "model", trust_remote_code=False)
        return require_fast(tokenizer, "helper_model")
    return load_given_tokenizer(GivenTokenizer(given["kind"], given["location"], "", given.get("commit")))


def _take_given(spec: StageSpec, out: Path) -> None:
    """The given tokenizer saved as is (chat template and special tokens its own), with
    fertility against the source's and a report of both families."""
    from transformers import AutoTokenizer

    from tokenizer_builds.build import save_tokenizer
    from tokenizer_builds.families import detect_family

    corpus = spec.upstream_path("corpus")
    source_tokenizer = AutoTokenizer.from_pretrained(spec.upstream_path("source") / "model")
    helper = spec.upstream_path("helper") if "helper" in spec.upstream else None
    target = given_tokenizer(spec.params, helper)
    save_tokenizer(target, out / "tokenizer")
    write_json(out / "fertility.json", _fertility(corpus, source_tokenizer, target, spec.params["fertility_texts"]))
    write_json(out / "special_tokens.json", {
        "given": spec.params["given"],
        "kept": "every token of the given tokenizer, as it is",
        "target_family": detect_family(target).value,
        "source_family": detect_family(source_tokenizer).value,
        "chat_template": bool(getattr(target, "chat_template", None)),
        "target_tokens": len(target),
        "source_tokens": len(source_tokenizer),
    })


def _fertility(corpus: Path, source_tokenizer: Any, target: Any, n_texts: int) -> dict[str, Any]:
    """Both tokenizers' fertility on the first ``n_texts`` texts of each held-out split; in a
    run of several languages also per language and per script on each language's own texts
    (``languages``/``scripts``, of the evaluation split's files)."""
    from transfer.corpus.many_languages import LANGUAGES_FILE
    from transfer.tokenizer.fertility import compare_fertility, fertility_by_language

    fertility: dict[str, Any] = {}
    for split in HELD_OUT_SPLITS:
        path = corpus / eval_file(split, "target")
        if path.exists():
            texts = read_lines(path, n_texts)
            if texts:
                measured = compare_fertility(source_tokenizer, target, texts)
                fertility[split] = {side: value.to_dict() for side, value in measured.items()}
    if (corpus / LANGUAGES_FILE).is_file():
        languages = json.loads((corpus / LANGUAGES_FILE).read_text())["languages"]
        by_language = {}
        for split in HELD_OUT_SPLITS:
            for lang in languages:
                path = corpus / eval_file(split, f"target:{lang}")
                if path.is_file():
                    by_language.setdefault(split, {})[lang] = read_lines(path, n_texts)
        for split, texts in by_language.items():
            fertility.setdefault("by_language", {})[split] = fertility_by_language(source_tokenizer, target, texts)
    return fertility
