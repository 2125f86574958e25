"""Hydra models (issue #29 part B, trans-tokenization's one body with a table and head per
language): table/head swapping in training, the folder with the body once and the plain
transformers export of each language, translation (read with one table, write with another
head) and its refusals, and the run through the CLI on tiny random models."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.helpers import config, registry_uri
from tests.tiny import ENGLISH_SENTENCES, GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


def _hydra(tie: bool):
    """A tiny Hydra model: an English body and head plus German and Swedish tables (and heads)."""
    from transfer.hydra.model import HydraModel
    from transfer.hydra.store import LoadedHydra

    tokenizers = {"en": tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300),
                  "de": tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 320),
                  "sv": tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES[::-1], 310)}
    models = {lang: tiny_llama(len(tok), tie=tie, seed=i) for i, (lang, tok) in enumerate(tokenizers.items())}
    hydra = HydraModel(models["en"], "en")
    for lang in ("de", "sv"):
        hydra.add_language(lang, models[lang].get_input_embeddings(),
                           None if tie else models[lang].get_output_embeddings())
    configs = {lang: copy.deepcopy(model.config) for lang, model in models.items()}
    return LoadedHydra(hydra, tokenizers, configs)


def _snapshot(hydra) -> dict[str, dict[str, torch.Tensor]]:
    parts = {f"table.{lang}": hydra.tables[lang] for lang in hydra.languages}
    parts.update({f"head.{lang}": hydra.heads[lang] for lang in hydra.languages})
    out = {name: {k: v.detach().clone() for k, v in module.state_dict().items()} for name, module in parts.items()}
    out["body"] = {k: v.detach().clone() for k, v in hydra.body_state().items()}
    return out


def _changed(before: dict[str, dict[str, torch.Tensor]], after: dict[str, dict[str, torch.Tensor]]) -> set[str]:
    return {name for name, state in before.items() if any(not torch.equal(v, after[name][k]) for k, v in state.items())}


@pytest.mark.parametrize("tie", [True, False])
def test_a_batch_in_one_language_moves_only_its_table_head_and_the_body(tie: bool) -> None:
    from transfer.hydra.train import HydraTraining, train_hydra
    from transfer.train import PhaseConfig, pack_train_split

    loaded = _hydra(tie)
    hydra = loaded.model
    data = {"de": pack_train_split(loaded.tokenizers["de"], GERMAN_SENTENCES * 4, 16)}
    before = _snapshot(hydra)
    # German text only: the full phase moves German's table (and head) and the body, nothing else
    log = train_hydra(hydra, data, HydraTraining(phases=[PhaseConfig("full", steps=2, lr=1e-2)], batch_size=2))
    changed = _changed(before, _snapshot(hydra))
    assert log.languages == ["de", "de"] and all(loss > 0 for loss in log.losses)
    assert changed == {"table.de", "head.de", "body"}
    if tie:  # a tied head is the table's matrix
        assert hydra.heads["de"].weight is hydra.tables["de"].weight
    # the embeddings phase keeps the body; the source language's table and head never train
    data["sv"] = pack_train_split(loaded.tokenizers["sv"], ENGLISH_SENTENCES * 4, 16)
    before = _snapshot(hydra)
    log = train_hydra(hydra, data, HydraTraining(phases=[PhaseConfig("embeddings", steps=6, lr=1e-2)], batch_size=2,
                                                 seed=3))
    changed = _changed(before, _snapshot(hydra))
    assert set(log.languages) == {"de", "sv"}
    assert changed == {"table.de", "head.de", "table.sv", "head.sv"}


def test_bf16_autocast_when_asked() -> None:
    """``precision='bf16'`` trains under bf16 autocast (CPU has it too): the losses move off the
    float32 run's but stay close, and the weights stay float32."""
    from transfer.hydra.train import HydraTraining, train_hydra
    from transfer.train import PhaseConfig, pack_train_split

    runs = {}
    for precision in ("fp32", "bf16"):
        loaded = _hydra(tie=False)
        data = {"de": pack_train_split(loaded.tokenizers["de"], GERMAN_SENTENCES * 4, 16)}
        log = train_hydra(loaded.model, data, HydraTraining(phases=[PhaseConfig("full", steps=3, lr=1e-2)],
                                                            batch_size=2, precision=precision))
        runs[precision] = log
        assert loaded.model.tables["de"].weight.dtype == torch.float32
    assert runs["fp32"].precision == "fp32" and runs["bf16"].precision == "bf16"
    assert runs["fp32"].losses != runs["bf16"].losses
    assert runs["bf16"].losses == pytest.approx(runs["fp32"].losses, rel=0.05)


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_as_the_uninterrupted_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints every 2 steps through both phases; a run that dies in its 5th step resumes from
    step 4 (the full phase's optimizer moments, positions and log restored) and ends with the
    uninterrupted run's weights and losses; a checkpoint of other settings is refused."""
    from transfer.errors import CheckpointError
    from transfer.hydra import train as hydra_train
    from transfer.train import PhaseConfig, pack_train_split

    def run(checkpoints: Path | None, seed: int = 0):
        loaded = _hydra(tie=False)
        data = {lang: pack_train_split(loaded.tokenizers[lang], sentences * 4, 16)
                for lang, sentences in (("de", GERMAN_SENTENCES), ("sv", ENGLISH_SENTENCES))}
        training = hydra_train.HydraTraining(
            phases=[PhaseConfig("embeddings", steps=3, lr=1e-2), PhaseConfig("full", steps=3, lr=5e-3)],
            batch_size=2, seed=seed, checkpoint_every=2)
        log = hydra_train.train_hydra(loaded.model, data, training, checkpoint_dir=checkpoints)
        return loaded.model, log

    plain_model, plain_log = run(None)
    real_step = hydra_train._step
    calls = {"n": 0}

    def dies_in_step_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(hydra_train, "_step", dies_in_step_five)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "ckpt")
    monkeypatch.setattr(hydra_train, "_step", real_step)
    assert (tmp_path / "ckpt" / "step-00000004").is_dir()
    resumed_model, resumed_log = run(tmp_path / "ckpt")
    assert resumed_log.losses == pytest.approx(plain_log.losses, abs=1e-6)
    assert resumed_log.languages == plain_log.languages and len(resumed_log.losses) == 6
    after, expected = _snapshot(resumed_model), _snapshot(plain_model)
    assert all(torch.allclose(v, expected[name][k], atol=1e-6) for name, state in after.items() for k, v in state.items())
    with pytest.raises(CheckpointError, match="another run"):
        run(tmp_path / "ckpt", seed=1)


def test_language_schedule_is_seeded_and_follows_the_shares() -> None:
    from transfer.hydra.train import language_schedule

    first = language_schedule({"a": 0.8, "b": 0.2}, 400, seed=1)
    assert first == language_schedule({"a": 0.8, "b": 0.2}, 400, seed=1)
    assert 0.7 < first.count("a") / 400 < 0.9
    assert set(language_schedule({"a": 1.0, "b": 0.0}, 20, seed=0)) == {"a"}


@pytest.mark.parametrize("tie", [True, False])
def test_plain_transformers_loads_each_language_with_the_hydra_logits(tmp_path: Path, tie: bool) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from transfer.hydra.store import BODY, export_language, load_hydra, save_hydra

    loaded = _hydra(tie)
    save_hydra(loaded, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "hydra.json").read_text())
    assert manifest["languages"] == ["en", "de", "sv"] and manifest["tied"] is tie
    # the body once: no table or head tensor in the body file
    assert not any(k.startswith(("model.embed_tokens", "lm_head")) for k in load_file(str(tmp_path / "run" / BODY)))
    back = load_hydra(tmp_path / "run")
    ids = torch.tensor([[3, 17, 42, 99, 7, 250]])
    for lang in ("de", "sv", "en"):
        export_language(back, lang, tmp_path / lang)
        assert not list((tmp_path / lang).glob("*.py")) and list((tmp_path / lang).glob("*.safetensors"))
        plain = AutoModelForCausalLM.from_pretrained(tmp_path / lang, trust_remote_code=False)
        with torch.no_grad():
            expected = loaded.model(ids, lang)
            assert torch.allclose(back.model(ids, lang), expected, atol=1e-6)
            assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-5)
        assert plain.config.vocab_size == len(loaded.tokenizers[lang])


def test_read_with_one_table_write_with_another_head() -> None:
    from transfer.hydra.translate import translate_one

    loaded = _hydra(True)
    hydra = loaded.model
    ids = torch.tensor([[5, 9, 14]])
    with torch.no_grad():
        mixed = hydra.read_write(ids, "en", "de")
        # the same as the body fed English embeddings, scored with German's head
        body = hydra.lm.model(inputs_embeds=hydra.tables["en"](ids)).last_hidden_state
        assert torch.allclose(mixed, body @ hydra.tables["de"].weight.T, atol=1e-5)
    assert mixed.shape[-1] == len(loaded.tokenizers["de"])
    text = translate_one(hydra, loaded.tokenizers, "the cat", "en", "de", max_new_tokens=5)
    assert isinstance(text, str) and "\n" not in text


def test_greedy_decoding_with_the_cache_equals_recomputing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached loop writes what a full recompute of [prompt read with en, written ids read
    with de] would choose at every step."""
    from transfer.hydra import translate as tr

    loaded = _hydra(False)
    hydra, toks = loaded.model, loaded.tokenizers
    monkeypatch.setattr(tr, "_stop_ids", lambda tokenizer: set())
    monkeypatch.setattr(toks["de"], "decode", lambda ids, **kw: "x" * len(ids))  # no line end: run to the limit
    written: list[int] = []
    original = hydra.tables["de"].forward

    def record(ids: torch.Tensor) -> torch.Tensor:
        written.extend(int(i) for i in ids.flatten())
        return original(ids)

    monkeypatch.setattr(hydra.tables["de"], "forward", record)
    tr.translate_one(hydra, toks, "the dog", "en", "de", max_new_tokens=6)
    monkeypatch.setattr(hydra.tables["de"], "forward", original)
    prompt = tr._embedded(hydra, toks, tr.prompt_segments("the dog", "en", "de"))
    with torch.no_grad():
        for i, token in enumerate(written):
            so_far = torch.tensor([written[:i]], dtype=torch.long)
            embeds = torch.cat([prompt, hydra.tables["de"](so_far)], dim=1)
            assert int(hydra.use("de")(inputs_embeds=embeds).logits[0, -1].argmax()) == token
    assert len(written) == 5  # the sixth written id is not fed back


def test_translate_refuses_a_language_the_model_has_no_head_for(tmp_path: Path) -> None:
    from flows.cli import app
    from transfer.hydra.store import save_hydra

    save_hydra(_hydra(True), tmp_path / "run")
    text = tmp_path / "en.txt"
    text.write_text("the cat\n")
    result = runner.invoke(app, ["translate", str(tmp_path / "run"), "--from", "en", "--to", "sw",
                                 "--text-file", str(text)], terminal_width=200)
    assert result.exit_code == 2
    assert "'sw'" in result.output and "'en', 'de', 'sv'" in result.output and "--to language" in result.output
    result = runner.invoke(app, ["translate", str(tmp_path / "run"), "--from", "fr", "--to", "de",
                                 "--text-file", str(text)], terminal_width=200)
    assert result.exit_code == 2 and "--from language 'fr'" in result.output
    result = runner.invoke(app, ["translate", str(tmp_path), "--from", "en", "--to", "de",
                                 "--text-file", str(text)], terminal_width=200)
    assert result.exit_code == 2 and "not a Hydra model folder" in result.output


def test_hydra_config_refusals(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.errors import TrainingError
    from transfer.hydra.run import plan_hydra
    from transfer.planning.plan import plan_adaptation

    with pytest.raises(ValueError, match="'de' is listed twice"):
        config(tmp_path, tiny_source, tiny_corpus, target_language=["de", "de"], hydra=True)
    with pytest.raises(TrainingError, match="target language 'en' is the source language"):
        plan_hydra(config(tmp_path, tiny_source, tiny_corpus, target_language=["de", "en"],
                          target_files=[f"de={tiny_corpus}", f"en={tiny_corpus}"], hydra=True))
    with pytest.raises(TrainingError, match="objective='distill' is not supported with hydra"):
        plan_hydra(config(tmp_path, tiny_source, tiny_corpus, hydra=True, objective="distill"))
    with pytest.raises(TrainingError, match="train_steps and full_steps are both 0"):
        plan_hydra(config(tmp_path, tiny_source, tiny_corpus, hydra=True, train_steps=0))
    with pytest.raises(TrainingError, match="plan_hydra"):
        plan_adaptation(config(tmp_path, tiny_source, tiny_corpus, hydra=True))
    # several processes: each needs an equal share of every step, checked as for the train stage
    with pytest.raises(TrainingError, match="nproc_per_node"):
        plan_hydra(config(tmp_path, tiny_source, tiny_corpus, hydra=True, batch_size=3, nproc_per_node=2))
    # a language without a corpus: part A's check, naming the language
    with pytest.raises(TrainingError, match="target language 'sv' of \\['de', 'sv'\\]: no target corpus for 'sv'"):
        plan_hydra(config(tmp_path, tiny_source, tiny_corpus, target_language=["de", "sv"],
                          target_files=[f"de={tiny_corpus}"], hydra=True))


def test_adapt_hydra_then_translate_through_the_cli(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                    tiny_source: Path) -> None:
    """``adapt --hydra`` with two languages, each with its own tokenizer and rows; the exported
    folders load in plain transformers, each with a card and a registry version; two processes
    train the Hydra of one; ``translate`` writes one line per input line and chrF."""
    from transformers import AutoModelForCausalLM

    from flows.cli import app
    from transfer.hydra.store import load_hydra

    de = tmp_path / "de.txt"
    de.write_text("".join(f"{s} ({i})\n" for i in range(12) for s in GERMAN_SENTENCES))
    sv = tmp_path / "sv.txt"
    sv.write_text("".join(f"{s} [{i}]\n" for i in range(12) for s in ENGLISH_SENTENCES))
    uri = registry_uri(tmp_path, tmp_path_factory)
    cfg = config(tmp_path, tiny_source, de, target_language=["de", "sv"], target_files=[f"de={de}", f"sv={sv}"],
                 hydra=True, train_steps=3, full_steps=1, tracking_uri=uri)
    cfg_file = tmp_path / "hydra.json"
    cfg_file.write_text(cfg.model_dump_json())
    result = runner.invoke(app, ["adapt", "--config", str(cfg_file), "--dry-run"], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "de: its tokenizer" in result.output and "sv: its tokenizer" in result.output and "hydra: to build" in result.output
    assert "hydra training memory per device (2 tables and heads)" in result.output
    assert " min), exported as" in " ".join(result.output.split())  # the hydra stage's time estimate (wrapped)
    result = runner.invoke(app, ["adapt", "--config", str(cfg_file)], terminal_width=250)
    assert result.exit_code == 0, result.output
    name = "tiny-llama-hydra-de_sv-mean"
    run = tmp_path / "models" / name
    record = json.loads((run / "hydra_result.json").read_text())
    assert set(record["scores"]) == {"de", "sv"}
    assert set(record["scores"]["de"]) == {"source_model_on_target", "adapted_step0", "hydra_trained"}
    assert sorted(record["train_log"]["steps_per_language"]) == ["de", "sv"]
    # each language folder: a model card with its scores, and a registry version of its own language
    from transfer.publish.registry_store import Registry

    for lang in ("de", "sv"):
        card = (tmp_path / "models" / f"{name}-{lang}" / "README.md").read_text()
        assert f"{record['scores'][lang]['hydra_trained']:.4f}" in card and "hydra" in card
        (version,) = Registry(uri).versions(lang)
        assert version.final_bpb == pytest.approx(record["scores"][lang]["hydra_trained"])
        assert version.tag("strategy") == "hydra/mean" and "best" in version.aliases
        assert record["registrations"][lang]["version"] == version.version
    loaded = load_hydra(run)
    assert loaded.languages == ["en", "de", "sv"]
    assert len(loaded.tokenizers["de"]) != len(loaded.tokenizers["sv"]) or \
        loaded.tokenizers["de"].get_vocab() != loaded.tokenizers["sv"].get_vocab()  # each its own tokenizer
    ids = torch.tensor([[2, 30, 41, 5]])
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "models" / f"{name}-de")
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, loaded.model(ids, "de"), atol=1e-5)
    text = tmp_path / "en.txt"
    text.write_text("the cat sat\n\nthe dog\n")
    refs = tmp_path / "de.ref"
    refs.write_text("die Katze\n\nder Hund\n")
    out = tmp_path / "out.de"
    result = runner.invoke(app, ["translate", str(run), "--from", "en", "--to", "de", "--text-file", str(text),
                                 "--out", str(out), "--references", str(refs), "--max-new-tokens", "4"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert len(out.read_text().split("\n")) == 4 and "chrF" in result.output
    # again: every stage cached
    result = runner.invoke(app, ["adapt", "--config", str(cfg_file), "--dry-run"], terminal_width=250)
    assert "to build" not in result.output and "hydra: cached" in result.output

    # two processes (torchrun, gloo): each takes half of every step's blocks, both draw the same
    # language; the stages before the hydra stage come from this run's cache (the process
    # count is in no key); losses and weights are the one-process run's to summation order
    import shutil

    from safetensors.torch import load_file

    two = cfg.model_copy(update={"cache_dir": tmp_path / "two" / "cache", "output_dir": tmp_path / "two" / "models",
                                 "register_model": False, "nproc_per_node": 2})
    shutil.copytree(cfg.cache_dir, two.cache_dir,
                    ignore=lambda folder, names: [n for n in names if n in ("hydra", "_checkpoints")])
    cfg_file.write_text(two.model_dump_json())
    result = runner.invoke(app, ["adapt", "--config", str(cfg_file)], terminal_width=250)
    assert result.exit_code == 0, result.output
    second = json.loads((tmp_path / "two" / "models" / name / "hydra_result.json").read_text())
    assert second["stage_keys"] == record["stage_keys"] and not second["stages_cached"]["hydra"]
    assert second["train_log"]["world_size"] == 2 and second["train_log"]["languages"] == record["train_log"]["languages"]
    assert second["train_log"]["losses"] == pytest.approx(record["train_log"]["losses"], rel=1e-4)
    for lang in ("de", "sv"):
        assert second["scores"][lang]["hydra_trained"] == pytest.approx(record["scores"][lang]["hydra_trained"], rel=1e-4)
        weights = [load_file(str(Path(folder) / "model.safetensors"))
                   for folder in (record["language_dirs"][lang], second["language_dirs"][lang])]
        for key, tensor in weights[0].items():  # an AdamW step moves a weight by about lr at most
            assert torch.allclose(tensor, weights[1][key], rtol=0, atol=4 * max(cfg.learning_rate, cfg.full_learning_rate)), key


def test_memory_plan_adds_the_resident_tables_and_refuses_what_does_not_fit(tmp_path: Path, tiny_source: Path,
                                                                           tiny_corpus: Path) -> None:
    """The Hydra plan is the one-language plan plus the source's table and every other target
    language's table with its AdamW moments; a device too small is refused before any stage."""
    from transformers import AutoConfig

    from transfer.errors import MemoryBudgetError
    from transfer.hydra.memory import hydra_memory_plan
    from transfer.hydra.run import plan_hydra
    from transfer.settings.memory_budget import training_memory_plan

    source = AutoConfig.from_pretrained(tiny_source)
    cfg = config(tmp_path, tiny_source, tiny_corpus, target_language=["de", "sv", "fi"],
                 target_files=[f"de={tiny_corpus}", f"sv={tiny_corpus}", f"fi={tiny_corpus}"], hydra=True)
    one = training_memory_plan(cfg, source, device_type="cpu", available=1 << 40)
    hydra = hydra_memory_plan(cfg, source, device_type="cpu", available=1 << 40)
    factor = 1 if source.tie_word_embeddings else 2
    table = cfg.vocab_size * source.hidden_size * 4 * factor
    (single,), (multi,) = one.stages, hydra.stages
    assert multi.estimate.weights - single.estimate.weights == source.vocab_size * source.hidden_size * 4 * factor + 2 * table
    assert multi.estimate.optimizer - single.estimate.optimizer == 2 * 2 * table
    assert (multi.estimate.gradients, multi.estimate.activations) == (single.estimate.gradients, single.estimate.activations)
    assert one.peak.total <= hydra.peak.total - 1  # the same budget would take the run of one language
    with pytest.raises(MemoryBudgetError, match="hydra .3 target tables and heads"):  # one byte short
        plan_hydra(cfg.model_copy(update={"device_memory": f"{hydra.peak.total - 1}B"}))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*/*/.complete"))


def test_the_baseline_is_the_source_model_on_its_own_tokenizer() -> None:
    from transfer.hydra.translate import source_model_translator

    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
    lm = tiny_llama(len(tokenizer), tie=True, seed=4)
    ids = torch.tensor([[4, 8, 15, 16]])
    with torch.no_grad():
        expected = lm(input_ids=ids).logits
        baseline, tokenizers = source_model_translator(lm, tokenizer, "en", "sw")
        assert torch.equal(baseline.read_write(ids, "en", "sw"), expected)
    assert tokenizers["sw"] is tokenizer and baseline.languages == ["en", "sw"]


def test_hydra_from_the_prefect_form(prefect_harness, tmp_path: Path, tiny_source: Path) -> None:
    """The form's ``hydra: true`` runs the Hydra plan in the adapt flow (stages as tasks, a
    progress bar, a summary of each language's scores), and the batch flow reports it."""
    from flows.adapt_flow import adapt_flow
    from flows.batch_flow import _outcome_from_result
    from flows.parameters import AdaptParameters
    from tests.helpers import flow_artifacts
    from transfer.hydra.run import HydraResult

    de = tmp_path / "de.txt"
    de.write_text("".join(f"{s} ({i})\n" for i in range(12) for s in GERMAN_SENTENCES))
    cfg = config(tmp_path, tiny_source, de, target_language="de", hydra=True, train_steps=2)
    params = AdaptParameters.model_validate(cfg.model_dump())
    state = adapt_flow(params, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert isinstance(result, HydraResult) and set(result.scores) == {"de"}
    assert Path(result.language_dirs["de"], "config.json").is_file()
    artifacts = flow_artifacts(state.state_details.flow_run_id)
    assert {"progress", "markdown"} <= {a.type for a in artifacts}
    summary = next(a.data for a in artifacts if a.type == "markdown")
    assert f"{result.scores['de']['hydra_trained']:.4f}" in summary
    row = _outcome_from_result("de", "German", params, state)
    assert row.state == "Completed" and row.model_dir == result.model_dir and "de " in row.message
