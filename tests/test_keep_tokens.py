"""``keep_tokens`` is checked before the first stage (issue #18): entries, duplicates and,
for a model folder, membership in the source's added tokens; a GGUF or hub source is
checked by the tokenizer build with the same message before it trains; the CLI's
``--keep-token`` reaches the config."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.tiny import ENGLISH_SENTENCES, GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
from tokenizer_builds.build import build_target_tokenizer
from transfer.errors import TokenizerBuildError
from transfer.settings.config import AdaptConfig
from transfer.settings.keep_tokens import folder_added_tokens
from transfer.settings.validate import validate_config
from transfer.source.loading import save_model

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|reserved_0|>", "<|reserved_1|>"]


@pytest.fixture(scope="module")
def reserved_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer has two placeholder added tokens, saved as a folder."""
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400, specials=SPECIALS)
    out = tmp_path_factory.mktemp("keep") / "source"
    save_model(tiny_llama(len(tokenizer)), tokenizer, out)
    return out


def _config(tmp_path: Path, source: Path, corpus: Path, keep_tokens: list[str]) -> AdaptConfig:
    return AdaptConfig(source_model=str(source), target_language="de", target_bible=[], source_bible=[],
                       target_files=[str(corpus)], vocab_size=300, eval_texts=8, dev_fraction=0.1,
                       test_fraction=0.1, device="cpu", keep_tokens=keep_tokens, strategy="mean",
                       cache_dir=tmp_path / "cache", output_dir=tmp_path / "models", register_model=False)


def test_folder_added_tokens_are_the_stages(reserved_source: Path) -> None:
    assert folder_added_tokens(str(reserved_source)) == SPECIALS
    assert folder_added_tokens("smollm2") is None  # a GGUF file: the tokenizer stage checks


@pytest.mark.parametrize(
    ("keep_tokens", "message"),
    [
        ([""], r"keep_tokens: \[''\] are not tokens"),
        (["<|reserved_1|>", "<|reserved_1|>"], r"keep_tokens: \['<\|reserved_1\|>'\] given more than once"),
        # not an added token: the closest added token is named first
        (["<|reserved-1|>"], (r"keep_tokens: \['<\|reserved-1\|>'\] are not added tokens of the source "
                              r"tokenizer.*it has 5 added tokens, e\.g\. \['<\|reserved_1\|>', ")),
        (["Haus"], r"keep_tokens: \['Haus'\] are not added tokens.*'<\|endoftext\|>', '<\|im_start\|>'"),
    ],
)
def test_bad_keep_tokens_are_refused_before_any_stage(
    tmp_path: Path, reserved_source: Path, tiny_corpus: Path, keep_tokens: list[str], message: str
) -> None:
    from transfer.pipeline import run_adaptation

    cfg = _config(tmp_path, reserved_source, tiny_corpus, keep_tokens)
    with pytest.raises(TokenizerBuildError, match=message):
        validate_config(cfg)
    with pytest.raises(TokenizerBuildError, match=message):
        run_adaptation(cfg)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob(".complete"))


def test_good_keep_tokens_pass_validation(tmp_path: Path, reserved_source: Path, tiny_corpus: Path) -> None:
    validate_config(_config(tmp_path, reserved_source, tiny_corpus, ["<|reserved_1|>", "<|im_start|>"]))


def test_the_build_refuses_with_the_same_message_before_training(tmp_path: Path, reserved_source: Path,
                                                                 tiny_corpus: Path) -> None:
    """A GGUF or hub source is not read at validation: the build refuses before it reads a
    single training text, with validation's message."""
    from transformers import AutoTokenizer

    consumed: list[str] = []

    def texts() -> Iterator[str]:
        for text in GERMAN_SENTENCES:
            consumed.append(text)
            yield text

    source = AutoTokenizer.from_pretrained(reserved_source)
    with pytest.raises(TokenizerBuildError) as at_validation:
        validate_config(_config(tmp_path, reserved_source, tiny_corpus, ["Haus", "<|reserved-1|>"]))
    with pytest.raises(TokenizerBuildError) as at_build:
        build_target_tokenizer(source, texts(), 300, keep_tokens=["Haus", "<|reserved-1|>"])
    assert str(at_build.value) == str(at_validation.value)
    assert consumed == []
    with pytest.raises(TokenizerBuildError, match="given more than once"):
        build_target_tokenizer(source, texts(), 300, keep_tokens=["<|im_end|>", "<|im_end|>"])
    assert consumed == []


def test_cli_keep_token_reaches_the_config(tmp_path: Path, reserved_source: Path, tiny_corpus: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import cli_render as cli
    from flows.cli import app
    from transfer.planning.plan import plan_adaptation

    monkeypatch.setattr(cli.console, "_width", 400)  # the plan's folder column unwrapped
    runner = CliRunner()
    base = ["adapt", "--source-model", str(reserved_source), "--target-language", "de",
            "--target-file", str(tiny_corpus), "--vocab-size", "300", "--cache-dir", str(tmp_path / "cache"),
            "--dry-run"]
    bad = runner.invoke(app, [*base, "--keep-token", "<|reserved_1|>", "--keep-token", "Haus"])
    assert bad.exit_code == 2
    assert "keep_tokens" in bad.output and "'Haus'" in bad.output

    good = runner.invoke(app, [*base, "--keep-token", "<|reserved_1|>", "--keep-token", "<|reserved_0|>"])
    assert good.exit_code == 0, good.output
    values = {"source_model": str(reserved_source), "target_language": "de", "target_bible": [],
              "target_files": [str(tiny_corpus)], "vocab_size": 300, "cache_dir": tmp_path / "cache"}

    def tokenizer_folder(keep_tokens: list[str]) -> str:
        plan = plan_adaptation(AdaptConfig(**values, keep_tokens=keep_tokens), measure=False)
        return next(stage.path for stage in plan.stages if stage.stage == "tokenizer")

    printed = re.sub(r"\s+", " ", good.output)
    assert tokenizer_folder(["<|reserved_1|>", "<|reserved_0|>"]) in printed
    assert tokenizer_folder([]) not in printed  # the flag changed the tokenizer stage's key


def test_flow_parameters_carry_keep_tokens() -> None:
    """The Prefect form (``AdaptParameters``, AdaptConfig's fields) offers and passes it on."""
    from flows.parameters import AdaptParameters, as_parameters

    assert "keep_tokens" in AdaptParameters.model_json_schema()["properties"]
    cfg = AdaptConfig(keep_tokens=["<|reserved_1|>"], target_language="de")
    assert as_parameters(cfg).keep_tokens == ["<|reserved_1|>"]
    assert as_parameters(cfg.model_dump()).keep_tokens == ["<|reserved_1|>"]
