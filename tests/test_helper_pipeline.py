"""Your own target tokenizer, a helper model and progressive transfer through the pipeline
(issue #27): the stages they bring, the rows the init stage writes, the CLI and the Prefect
form, and the checks before the first stage. The strategies' own arithmetic is checked by
hand in tests/test_helper_strategies.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.helpers import config
from tests.tiny import (
    ENGLISH_SENTENCES,
    GERMAN_SENTENCES,
    tiny_byte_bpe_tokenizer,
    tiny_llama,
    tiny_unigram_tokenizer,
)
from transfer.errors import (
    ModelLoadError,
    StrategyResourceError,
    TokenizerBuildError,
    VocabTransferError,
)
from transfer.source.loading import load_source, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHAT = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"


@pytest.fixture(scope="module")
def helpers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """German helpers of both families (byte-level BPE, SentencePiece-style Unigram with
    byte fallback), untied, of another width than the tiny source (32)."""
    root = tmp_path_factory.mktemp("helpers")
    bpe = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 380)
    unigram = tiny_unigram_tokenizer(GERMAN_SENTENCES, 300)
    unigram.chat_template = CHAT
    out = {}
    for name, tokenizer in (("bpe", bpe), ("unigram", unigram)):
        out[name] = root / name
        save_model(tiny_llama(len(tokenizer), tie=False, seed=3, hidden_size=48, intermediate_size=96),
                   tokenizer, out[name])
    tokenizer_only = root / "unigram-tokenizer"
    unigram.save_pretrained(tokenizer_only)
    out["unigram_tokenizer"] = tokenizer_only
    return out


@pytest.mark.parametrize("family", ["bpe", "unigram"])
def test_clp_with_a_helper_model(tmp_path: Path, tiny_source: Path, tiny_corpus: Path, helpers, family) -> None:
    from transfer.init.strategies.overlap import match_overlap
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, helper_model=str(helpers[family]), strategy="clp",
                 train_steps=1, eval_texts=4)
    plan = plan_adaptation(cfg)
    labels = [stage.label for stage in plan.stages]
    assert "source.helper" in labels and "evaluate.helper_model_on_target" in labels
    assert labels.index("source.helper") < labels.index("tokenizer") < labels.index("init")
    result = run_adaptation(plan)
    assert "helper_model_on_target" in result.scores
    init = Path(plan.stage("init").path) / "model"
    model, target_tok = load_source(str(init))
    _, helper_tok = load_source(str(helpers[family]))
    assert target_tok.get_vocab() == helper_tok.get_vocab()  # the helper's tokenizer, as is
    source_model, source_tok = load_source(str(tiny_source))
    # every shared token keeps the source's row (CLP-Transfer's copy step); the registry's
    # special/byte fix copies by role and byte value, the rest of the shared ones by surface
    match = match_overlap(source_tok, target_tok)
    report = json.loads((Path(plan.stage("init").path) / "init_report.json").read_text())
    assert report["strategy"] == "clp" and report["counts"].get("copied", 0) > 0
    rows = model.get_input_embeddings().weight
    source_rows = source_model.get_input_embeddings().weight
    for t, s in list(zip(match.target_ids, match.source_ids, strict=True))[:50]:
        assert torch.allclose(rows[t], source_rows[s]), (t, s)
    assert model.config.eos_token_id == target_tok.eos_token_id
    if family == "unigram":
        saved = json.loads((Path(plan.stage("tokenizer").path) / "special_tokens.json").read_text())
        assert (saved["target_family"], saved["source_family"]) == ("unigram", "byte_level_bpe")
        assert target_tok.chat_template == CHAT  # the given tokenizer's own template


def test_target_tokenizer_folder_replaces_the_tokenizer_stage(tmp_path: Path, tiny_source: Path,
                                                               tiny_corpus: Path, helpers) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    given = helpers["unigram_tokenizer"]
    cfg = config(tmp_path, tiny_source, tiny_corpus, target_tokenizer=str(given), strategy="fvt", train_steps=0,
                 eval_texts=4)
    plan = plan_adaptation(cfg)
    assert plan.stage("tokenizer").spec.params["given"]["kind"] == "folder"
    run_adaptation(plan)
    _, target_tok = load_source(str(Path(plan.stage("init").path) / "model"))
    _, helper_tok = load_source(str(helpers["unigram"]))
    assert target_tok.get_vocab() == helper_tok.get_vocab()
    # another content, another key: the tokenizer is part of what the run computes
    other = tmp_path / "other-tok"
    tiny_unigram_tokenizer(GERMAN_SENTENCES, 280).save_pretrained(other)
    again = plan_adaptation(cfg.model_copy(update={"target_tokenizer": str(other)}))
    assert again.stage("tokenizer").key != plan.stage("tokenizer").key


def test_progressive_plans_the_small_model_as_the_helper(tmp_path: Path, tiny_source: Path,
                                                         tiny_corpus: Path) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    large = tmp_path / "large"
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400)
    save_model(tiny_llama(len(tokenizer), tie=False, seed=5, hidden_size=48, intermediate_size=96), tokenizer, large)
    cfg = config(tmp_path, large, tiny_corpus, progressive=True, progressive_source=str(tiny_source),
                 strategy="auto", target_bible=[], train_steps=1, eval_texts=4)
    assert cfg.strategy == "clp" and "helper" in cfg.strategy_choice
    plan = plan_adaptation(cfg)
    by_label = {stage.label: stage for stage in plan.stages}
    assert {"source.progressive", "init.progressive", "train.progressive"} <= set(by_label)
    assert by_label["init"].spec.upstream["helper"] == by_label["train.progressive"].path
    # one target tokenizer for both models, trained for the large source's family
    assert by_label["init.progressive"].spec.upstream["tokenizer"] == by_label["tokenizer"].path
    result = run_adaptation(plan)
    assert {"progressive_step0", "progressive_trained", "adapted_trained"} <= set(result.scores)
    # both models exported, each with its own manifest; the large one's lineage names the helper
    from transfer.planning.progressive import progressive_helper_config

    small_dir = cfg.output_dir / progressive_helper_config(cfg).model_name()
    small = json.loads((small_dir / "adaptation.json").read_text())
    assert small["scores"]["adapted_trained"] == result.scores["progressive_trained"]
    assert small["config"]["source_model"] == str(tiny_source)
    large = json.loads((Path(result.model_dir) / "run_manifest.json").read_text())
    assert large["stage_keys"]["train.progressive"] == f"train:{by_label['train.progressive'].key}"


def test_cli_and_prefect_form_take_the_helper(tmp_path: Path, tiny_source: Path, tiny_corpus: Path, helpers) -> None:
    from flows.cli import app
    from flows.parameters import AdaptParameters

    schema = AdaptParameters.model_json_schema()["properties"]
    assert {"target_tokenizer", "helper_model", "progressive", "progressive_source"} <= set(schema)
    out = CliRunner().invoke(app, [
        "adapt", "--source-model", str(tiny_source), "--target-language", "de", "--target-file", str(tiny_corpus),
        "--helper-model", str(helpers["bpe"]), "--strategy", "omp", "--train-steps", "0", "--eval-texts", "4",
        "--cache-dir", str(tmp_path / "cache"), "--dry-run", "--no-prefect"])
    assert out.exit_code == 0, out.output
    assert "source.helper" in out.output and "init" in out.output


def test_progressive_from_the_prefect_form(prefect_harness, tmp_path: Path, tiny_source: Path,
                                          tiny_corpus: Path) -> None:
    # the form's progressive: true runs both models' stages as tasks, as the CLI does
    from flows.adapt_flow import adapt_flow
    from flows.parameters import AdaptParameters

    large = tmp_path / "large"
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400)
    save_model(tiny_llama(len(tokenizer), seed=5, hidden_size=48, intermediate_size=96), tokenizer, large)
    cfg = config(tmp_path, large, tiny_corpus, progressive=True, progressive_source=str(tiny_source),
                 strategy="clp", target_bible=[], train_steps=1, eval_texts=4)
    state = adapt_flow(AdaptParameters.model_validate(cfg.model_dump()), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert {"progressive_step0", "progressive_trained", "adapted_step0", "adapted_trained"} <= set(result.scores)
    assert result.init_report["counts"].get("copied", 0) + result.init_report["counts"].get("computed", 0) > 0


def _refused(tmp_path: Path, source: Path, corpus: Path, error: type[Exception], match: str, case: str,
             **fields) -> None:
    """Refused by planning (validation) before any stage, artifacts unchanged; recorded for
    docs/bad_inputs.md."""
    from tests.refusals import make_artifacts, refused
    from transfer.planning.plan import plan_adaptation

    artifacts = make_artifacts(tmp_path)
    cfg = config(tmp_path, source, corpus, cache_dir=artifacts / "cache", output_dir=artifacts / "models", **fields)
    refused(case, "plan_adaptation (validation)", lambda: plan_adaptation(cfg), match, artifacts, error)


def test_bad_helper_inputs_are_refused_before_the_first_stage(tmp_path: Path, tiny_source: Path,
                                                              tiny_corpus: Path, helpers) -> None:
    _refused(tmp_path, tiny_source, tiny_corpus, TokenizerBuildError, "is not target_tokenizer",
             "helper_model whose tokenizer is not target_tokenizer",
             helper_model=str(helpers["bpe"]), target_tokenizer=str(helpers["unigram_tokenizer"]), strategy="clp")
    empty = tmp_path / "no-tokenizer"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    _refused(tmp_path, tiny_source, tiny_corpus, ModelLoadError, "no tokenizer files",
             "target_tokenizer folder without tokenizer files",
             target_tokenizer=str(empty), strategy="fvt")
    _refused(tmp_path, tiny_source, tiny_corpus, VocabTransferError, "needs a helper model",
             "strategy clp without helper_model or progressive",
             strategy="clp")
    _refused(tmp_path, tiny_source, tiny_corpus, TokenizerBuildError, "not in the given target tokenizer",
             "keep_tokens missing from the helper's tokenizer",
             helper_model=str(helpers["bpe"]), strategy="clp", keep_tokens=["<|not-there|>"])
    _refused(tmp_path, tiny_source, tiny_corpus, VocabTransferError, "do not also give helper_model",
             "progressive and helper_model together",
             helper_model=str(helpers["bpe"]), progressive=True, strategy="clp")
    _refused(tmp_path, tiny_source, tiny_corpus, TokenizerBuildError, "use vocab_mode='replace'",
             "vocab_mode extend with a given target_tokenizer",
             target_tokenizer=str(helpers["unigram_tokenizer"]), vocab_mode="extend", strategy="fvt")
    from transfer.engine.cache import StageOutput
    from transfer.init.stage import init_spec

    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="clp", helper_model=str(helpers["bpe"]))
    unbuilt = StageOutput("source", "k", tmp_path / "k")
    with pytest.raises(StrategyResourceError, match="helper_model"):  # a caller that forgot the helper
        init_spec(cfg, unbuilt, unbuilt)


def test_helper_notes_and_small_overlap_warning(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                helpers, monkeypatch) -> None:
    from transfer.settings import helper_checks
    from transfer.settings.input_warnings import run_notes

    cfg = config(tmp_path, tiny_source, tiny_corpus, helper_model=str(helpers["bpe"]), strategy="clp")
    notes = run_notes(cfg)
    assert any("hidden size is 48, the source's 32" in n for n in notes), notes
    greek = ["Η γλώσσα είναι όμορφη και παλιά.", "Το σπίτι είναι μεγάλο και λευκό.",
             "Ο ήλιος λάμπει πάνω από τη θάλασσα.", "Τα παιδιά παίζουν στον κήπο σήμερα."] * 5
    folder = tmp_path / "greek-tok"
    tiny_unigram_tokenizer(greek, 320).save_pretrained(folder)
    # a tiny Greek vocabulary has 43 ordinary tokens, 2 of them ('▁', '.') shared: 4.7%,
    # under a 5% threshold (1% needs a vocabulary larger than a test's corpus can give)
    monkeypatch.setattr(helper_checks, "MIN_OVERLAP_SHARE", 0.05)
    notes = run_notes(config(tmp_path, tiny_source, tiny_corpus, target_tokenizer=str(folder), strategy="fvt"))
    assert any("shares only 2 of its 43 ordinary tokens" in n for n in notes), notes
