"""Cross-tokenizer distillation (ALM over aligned chunks, transfer/train/distill.py): the loss
is zero for a student equal to its teacher, positive and falling under embeddings-only
training otherwise; chunks align where both tokenizations cut; the setting keeps default
cache keys; a pipeline run with objective='both' records the teacher's forward passes."""

from __future__ import annotations

import copy
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.tiny import ENGLISH, GERMAN, tiny_byte_bpe_tokenizer, tiny_llama
from transfer.errors import TrainingError
from transfer.train import PhaseConfig, TrainingConfig, pack_train_split, train
from transfer.train.distill import (
    Distillation,
    align_chunks,
    alm_loss,
    block_texts,
    make_distill_batch,
    token_cuts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def english_tok() -> PreTrainedTokenizerFast:
    return tiny_byte_bpe_tokenizer(ENGLISH, 400)


def _bytes_only_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges: one token per byte (a character of two bytes is two
    tokens sharing that character's offsets)."""
    vocab = {c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def _word_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "Grüß": 1, "dich": 2, "!": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def _offsets(tokenizer: PreTrainedTokenizerFast, text: str) -> list[tuple[int, int]]:
    return [tuple(o) for o in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]


def test_chunks_align_where_both_tokenizations_cut() -> None:
    # by hand: cuts {3, 5, 11} and {5, 8, 11} share 5 and 11: two chunks
    assert align_chunks([(0, 3), (3, 5), (5, 11)], [(0, 5), (5, 8), (8, 11)]) == ([0, 0, 1], [0, 1, 1], 2)
    # two tokens of one character share its offsets: no cut between them
    assert token_cuts([(0, 1), (1, 2), (1, 2), (2, 3)]) == [1, 2, 3]
    # real tokenizers on "Grüß dich!": words (cuts 4, 9, 10) against bytes (a cut after every
    # character; ü and ß are two bytes each)
    text = "Grüß dich!"
    words, byte_offsets = _offsets(_word_tokenizer(), text), _offsets(_bytes_only_tokenizer(), text)
    assert words == [(0, 4), (5, 9), (9, 10)]
    assert len(byte_offsets) == 12 and byte_offsets[2] == byte_offsets[3] == (2, 3)
    assert token_cuts(byte_offsets) == list(range(1, 11))
    by_bytes, by_words, n = align_chunks(byte_offsets, words)
    assert n == 3 and by_words == [0, 1, 2]
    # "Grüß" = G r ü(2 bytes) ß(2 bytes); " dich" = Ġ d i c h; "!"
    assert by_bytes == [0] * 6 + [1] * 5 + [2]


def test_unaligned_tail_is_not_scored() -> None:
    # the last ends differ (11 against 12): the tail after the last common cut (5) is -1
    assert align_chunks([(0, 5), (5, 11)], [(0, 5), (5, 12)]) == ([0, -1], [0, -1], 1)


def test_zero_for_identical_student_and_teacher(english_tok) -> None:
    student = tiny_llama(len(english_tok), seed=0).train()
    teacher = copy.deepcopy(student).eval()
    loss = alm_loss(student, teacher, GERMAN[:4], english_tok, english_tok)
    assert loss.item() == 0.0
    # identical tokenizations: every token boundary is a common cut, one chunk per token of
    # ASCII text (German's ü and ß are two byte tokens each, one chunk)
    batch = make_distill_batch(ENGLISH[:4], english_tok, english_tok)
    assert batch.n_chunks == batch.n_student_tokens
    german = make_distill_batch(GERMAN[:4], english_tok, english_tok)
    assert german.n_chunks < german.n_student_tokens
    # any other student (another draw of the same architecture) is scored above zero
    other = tiny_llama(len(english_tok), seed=1)
    assert alm_loss(other, teacher, GERMAN[:4], english_tok, english_tok).item() > 0.1


def test_gradient_reaches_the_student_only(english_tok, bpe_pair) -> None:
    _, german_tok = bpe_pair
    teacher = tiny_llama(len(english_tok), seed=0)
    student = tiny_llama(len(german_tok), seed=1)
    for name, param in student.named_parameters():  # the embeddings-only stage
        param.requires_grad_("embed_tokens" in name)
    loss = alm_loss(student, teacher, GERMAN[:4], german_tok, english_tok)
    assert loss.item() > 0
    loss.backward()
    assert student.get_input_embeddings().weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_block_texts_split_at_separators(english_tok) -> None:
    sep = english_tok.convert_tokens_to_ids("<|endoftext|>")
    ids = english_tok("And God said", add_special_tokens=False)["input_ids"]
    more = english_tok("Let there be light", add_special_tokens=False)["input_ids"]
    rows = torch.tensor([ids + [sep] + more + [sep, sep]])
    assert block_texts(rows, english_tok, sep) == ["And God said", "Let there be light"]


def _perturbed_pair(tokenizer):
    teacher = tiny_llama(len(tokenizer), seed=0)
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(3)
        weight = student.get_input_embeddings().weight
        weight.add_(torch.randn(weight.shape, generator=generator) * weight.std() * 10)
    return student, teacher


def test_embeddings_only_distillation_lowers_the_gap(english_tok) -> None:
    student, teacher = _perturbed_pair(english_tok)
    body_before = {n: p.clone() for n, p in student.named_parameters() if "embed_tokens" not in n
                   and "lm_head" not in n}
    teacher_before = {n: p.clone() for n, p in teacher.state_dict().items()}
    data = pack_train_split(english_tok, ENGLISH[:6], 16)
    # every block in every step: the same text each step, so the gap falls step by step
    config = TrainingConfig(phases=[PhaseConfig("embeddings", steps=6, lr=1e-2, schedule="constant")],
                            batch_size=data.n_blocks, precision="fp32", seed=0, clip_norm=None)
    result = train(student, data, config, tokenizer=english_tok, device="cpu",
                   distill=Distillation(teacher, english_tok, mode="distill"))
    gaps = result.distill_losses
    assert len(gaps) == 6 and gaps[0] > 0
    assert all(b < a for a, b in pairwise(gaps)) and gaps[-1] < 0.5 * gaps[0], gaps
    assert result.teacher_forward_passes == 6 and result.teacher_tokens > 0
    assert result.distill_mode == "distill"
    for name, param in student.named_parameters():
        if name in body_before:
            assert torch.equal(param, body_before[name]), name  # body frozen
    for name, tensor in teacher.state_dict().items():
        assert torch.equal(tensor, teacher_before[name]), name  # teacher frozen


def test_distillation_refuses_a_slow_or_missing_tokenizer(english_tok) -> None:
    teacher = tiny_llama(len(english_tok), seed=0)
    data = pack_train_split(english_tok, ENGLISH[:4], 16)
    config = TrainingConfig(phases=[PhaseConfig("embeddings", steps=1, lr=1e-3)], batch_size=1)
    with pytest.raises(TrainingError, match="student tokenizer"):
        train(tiny_llama(len(english_tok)), data, config, device="cpu",
              distill=Distillation(teacher, english_tok))
    with pytest.raises(TrainingError, match="distill_weight"):
        train(tiny_llama(len(english_tok)), data, config, tokenizer=english_tok, device="cpu",
              distill=Distillation(teacher, english_tok, weight=0.0))


# ---------------------------------------------------------------- settings and pipeline

def _config(tmp_path: Path, source: Path, corpus: Path, **overrides):
    from transfer.settings.config import AdaptConfig

    values = {
        "source_model": str(source), "target_language": "de", "target_bible": [], "source_bible": [],
        "target_files": [str(corpus)], "vocab_size": 350, "train_steps": 2, "strategy": "mean",
        "batch_size": 2, "block_size": 16, "eval_texts": 8, "dev_fraction": 0.1, "test_fraction": 0.1,
        "device": "cpu", "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "models",
        "register_model": False, "curve_texts": 4, "eval_every": 1,
    }
    return AdaptConfig(**{**values, **overrides})


def test_default_objective_keeps_train_keys(tmp_path: Path) -> None:
    from transfer.engine.cache import StageOutput
    from transfer.settings.config import AdaptConfig
    from transfer.train.stage import train_params, train_spec

    # the parameters a next-token run had before distillation existed: its keys are unchanged
    before = {"steps", "batch_size", "block_size", "learning_rate", "seed", "full_steps", "full_learning_rate",
              "warmup_steps", "lr_schedule", "weight_decay", "grad_accumulation", "clip_norm", "precision",
              "eval_every", "curve_texts"}
    cfg = AdaptConfig(cache_dir=tmp_path / "cache")
    assert set(train_params(cfg)) == before
    init = StageOutput("init", "k1", tmp_path / "init")
    corpus = StageOutput("corpus", "k2", tmp_path / "corpus")
    source = StageOutput("source", "k3", tmp_path / "source")
    plain = train_spec(cfg, init, corpus, source)
    assert plain.key == train_spec(cfg, init, corpus).key and "teacher" not in plain.inputs
    both = train_spec(cfg.model_copy(update={"objective": "both"}), init, corpus, source)
    assert both.key != plain.key and both.inputs["teacher"] == "source:k3"
    assert both.params["objective"] == "both" and both.params["distill_weight"] == 1.0
    heavier = train_spec(cfg.model_copy(update={"objective": "both", "distill_weight": 2.0}), init, corpus, source)
    assert heavier.key != both.key
    with pytest.raises(TrainingError, match="teacher"):
        train_spec(cfg.model_copy(update={"objective": "distill"}), init, corpus)


def test_pipeline_with_both_objectives_counts_teacher_passes(tmp_path: Path, tiny_source: Path,
                                                            tiny_corpus: Path) -> None:
    from transfer.pipeline import run_adaptation

    result = run_adaptation(_config(tmp_path, tiny_source, tiny_corpus, objective="both"))
    log = result.train_log
    assert log["distill_mode"] == "both" and log["steps"] == 2
    assert log["teacher_forward_passes"] == 2 and log["teacher_tokens"] > 0
    assert len(log["distill_losses"]) == 2 and all(g > 0 for g in log["distill_losses"])
    assert result.scores["adapted_trained"] > 0


def test_benchmark_smoke_runs_three_objectives(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "benchmarks/distillation.py", "--smoke", "--out", str(tmp_path)],
                          cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    record = json.loads((tmp_path / "distillation_smoke.json").read_text())
    rows = {row["objective"]: row for row in record["rows"]}
    assert list(rows) == ["next_token", "distill", "both"]
    assert rows["next_token"]["teacher_forward_passes"] == 0
    for objective in ("distill", "both"):
        row = rows[objective]
        # fewer steps than next_token: the teacher's reading is charged
        assert row["steps"] < rows["next_token"]["steps"] and row["teacher_forward_passes"] == row["steps"]
        assert row["compute_units"] == 3 * row["tokens_seen"] + row["teacher_tokens"]
        assert row["compute_units"] <= rows["next_token"]["compute_units"]
    assert (tmp_path / "distillation_smoke.png").exists()


def test_cli_flags_reach_the_settings() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    bad_objective = runner.invoke(app, ["adapt", "--objective", "nope", "--dry-run"])
    assert bad_objective.exit_code == 2 and "next_token" in bad_objective.output  # the field's choices
    bad_weight = runner.invoke(app, ["adapt", "--objective", "both", "--distill-weight", "0", "--dry-run"])
    assert bad_weight.exit_code == 2 and "distill_weight" in bad_weight.output


def test_distillation_resumes_exactly(tmp_path: Path, english_tok) -> None:
    from transfer.train import TrainingCallback

    class Crash(TrainingCallback):
        def on_checkpoint(self, step: int, path: str) -> None:
            if step == 2:
                raise RuntimeError("crash after the step-2 checkpoint")

    data = pack_train_split(english_tok, ENGLISH, 16)
    config = TrainingConfig(phases=[PhaseConfig("embeddings", steps=4, lr=1e-2, schedule="constant")],
                            batch_size=2, precision="fp32", seed=0, checkpoint_every=2)

    def run(callbacks=(), checkpoint_dir=None):
        student, teacher = _perturbed_pair(english_tok)
        result = train(student, data, config, tokenizer=english_tok, device="cpu", callbacks=callbacks,
                       checkpoint_dir=checkpoint_dir, distill=Distillation(teacher, english_tok, mode="both"))
        return student, result

    straight_model, straight = run()
    with pytest.raises(RuntimeError, match="crash"):
        run((Crash(),), tmp_path / "ckpt")
    resumed_model, resumed = run(checkpoint_dir=tmp_path / "ckpt")
    assert resumed.resumed_from == 2
    assert resumed.distill_losses == straight.distill_losses and resumed.losses == straight.losses
    assert resumed.teacher_forward_passes == straight.teacher_forward_passes == 4
    assert torch.equal(resumed_model.get_input_embeddings().weight, straight_model.get_input_embeddings().weight)
