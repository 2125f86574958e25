"""The staged trainer on tiny models: both objectives, freezing, accumulation, schedule,
precision, NaN stop, foreign checkpoints, memory refusal, curves and data packing."""

from __future__ import annotations

import copy
import csv
import itertools
import json

import pytest
import torch

from tests.tiny import (
    GERMAN_SENTENCES,
    tiny_bert,
    tiny_byte_bpe_tokenizer,
    tiny_llama,
    tiny_wordpiece_tokenizer,
)
from transfer.errors import CheckpointError, MemoryBudgetError, NonFiniteLossError, TrainingError
from transfer.train import (
    BlockOrder,
    LearningCurve,
    PhaseConfig,
    TrainingCallback,
    TrainingConfig,
    dev_evaluator,
    embedding_parameters,
    estimate_training_memory,
    pack_blocks,
    pack_train_split,
    plot_curves,
    train,
)
from transfer.train.curves import read_json
from transfer.train.data import iter_blocks
from transfer.train.memory import parse_bytes
from transfer.train.schedule import lr_at

TEXTS = [f"{s} ({i})" for i in range(6) for s in GERMAN_SENTENCES]
DEV = GERMAN_SENTENCES[:4]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 350)


@pytest.fixture(scope="module")
def data(tokenizer):
    return pack_train_split(tokenizer, TEXTS, 16)


def config(*stages: tuple[str, int, float], **kw) -> TrainingConfig:
    kw.setdefault("batch_size", 4)
    kw.setdefault("eval_at_start", False)
    kw.setdefault("eval_at_end", False)
    return TrainingConfig(phases=[PhaseConfig(n, s, lr, schedule="constant") for n, s, lr in stages], **kw)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# ---------------------------------------------------------------- data


def test_packing_streams_and_counts_bytes(tokenizer, data):
    stream = []
    for text in TEXTS:
        stream += tokenizer(text, add_special_tokens=False).input_ids + [0]
    n = len(stream) // 16
    assert data.blocks.flatten().tolist() == stream[: n * 16]
    assert data.n_bytes == sum(len(t.encode()) for t in TEXTS)
    assert data.n_tokens == len(stream) and data.n_documents == len(TEXTS)
    assert data.bytes_per_token == pytest.approx(data.n_bytes / len(stream))
    assert torch.equal(pack_blocks(tokenizer, iter(TEXTS), 16), data.blocks)
    streamed = iter_blocks(tokenizer, iter(TEXTS), 16, 0)
    assert next(streamed) == stream[:16]  # blocks come out before the corpus is read through
    with pytest.raises(TrainingError, match="fewer than one block"):
        pack_train_split(tokenizer, TEXTS[:1], 4096)


def test_block_order_is_epochs_of_permutations_and_resumable():
    order = BlockOrder(5, seed=3)
    generator = torch.Generator().manual_seed(3)
    expected = torch.cat([torch.randperm(5, generator=generator) for _ in range(3)])
    assert torch.equal(order.take(0, 15), expected)
    assert torch.equal(BlockOrder(5, seed=3).take(7, 6), expected[7:13])  # a fresh order resumes
    assert sorted(order.take(5, 5).tolist()) == list(range(5))


# ---------------------------------------------------------------- stages and objectives


def test_stage_one_keeps_body_then_stage_two_trains_it(tokenizer, data):
    model = tiny_llama(len(tokenizer), tie=False)
    model.lm_head = torch.nn.Linear(32, len(tokenizer), bias=True)
    before = snapshot(model)
    embedding_names = {"model.embed_tokens.weight", "lm_head.weight", "lm_head.bias"}
    result = train(model, data, config(("embeddings", 4, 1e-2)), device="cpu")
    after = snapshot(model)
    for name in before:
        assert torch.equal(before[name], after[name]) == (name not in embedding_names), name
    assert result.steps == 4 and result.objective == "causal"

    train(model, data, config(("full", 2, 1e-3), seed=1), device="cpu")
    changed = [n for n, p in snapshot(model).items() if not torch.equal(p, after[n])]
    assert "model.layers.0.self_attn.q_proj.weight" in changed
    assert not model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


def test_causal_loss_falls_and_matches_accumulation(tokenizer, data):
    # In float64. The two runs sum the same gradient terms in another order, and AdamW's
    # m/(sqrt(v)+eps) scales that rounding difference by up to lr/eps = 1e6 where a gradient
    # is near zero: in float32 (unit roundoff 6e-8) parameters differed by up to 1.3e-5, so no
    # fixed float32 atol is safe. The difference scales with the unit roundoff: in float64
    # (1.1e-16) 1.3e-5 becomes ~2e-14 (measured 1.1e-15), and atol 1e-9 has a margin of 1e4.
    base = tiny_llama(len(tokenizer)).double()
    one = copy.deepcopy(base)
    two = copy.deepcopy(base)
    first = train(one, data, config(("embeddings", 3, 1e-2), ("full", 3, 1e-3), batch_size=4), device="cpu")
    split = train(two, data, config(("embeddings", 3, 1e-2), ("full", 3, 1e-3), batch_size=2,
                                    grad_accumulation=2), device="cpu")
    assert first.tokens_seen == split.tokens_seen == 6 * 4 * 16
    # the trainer sums a step's loss in a float32 tensor: a few float32 ulps (~1e-7 relative)
    assert first.losses == pytest.approx(split.losses, rel=1e-5)
    for name, p in one.named_parameters():
        assert p.dtype == torch.float64, name
        assert torch.allclose(p, dict(two.named_parameters())[name], rtol=0, atol=1e-9), name
    assert first.losses[-1] < first.losses[0]
    assert first.bytes_seen == round(first.tokens_seen * data.bytes_per_token)


def test_masked_lm_objective_trains_bert():
    tokenizer = tiny_wordpiece_tokenizer(GERMAN_SENTENCES * 3, 300)
    data = pack_train_split(tokenizer, TEXTS, 16, objective="masked")
    # documents are delimited by [SEP] (BERT's segment separator), one per document
    stream = data.blocks.flatten().tolist()
    per_doc = [len(tokenizer(t, add_special_tokens=False).input_ids) + 1 for t in TEXTS]
    assert stream[: per_doc[0]][-1] == tokenizer.sep_token_id
    assert stream.count(tokenizer.sep_token_id) == sum(1 for end in itertools.accumulate(per_doc) if end <= len(stream))
    model = tiny_bert(len(tokenizer))
    body = {n: p.detach().clone() for n, p in model.named_parameters() if "encoder" in n}
    evaluate = dev_evaluator(tokenizer, DEV * 3, objective="masked", device="cpu")
    result = train(model, data, config(("embeddings", 8, 3e-2), batch_size=4, eval_at_start=True,
                                       eval_at_end=True), tokenizer=tokenizer, evaluate=evaluate, device="cpu")
    assert result.objective == "masked"
    points = result.curve.points
    assert [p.step for p in points] == [0, 8] and points[0].dev_bpb is None
    assert points[-1].dev_loss < points[0].dev_loss
    for name, before in body.items():
        assert torch.equal(before, dict(model.named_parameters())[name]), name
    with pytest.raises(TrainingError, match="tokenizer"):
        train(model, data, config(("embeddings", 1, 1e-3)), device="cpu")


def test_masks_depend_on_sample_position_only():
    from transfer.train.objectives import make_batch

    tokenizer = tiny_wordpiece_tokenizer(GERMAN_SENTENCES * 3, 300)
    rows = pack_train_split(tokenizer, TEXTS, 16, objective="masked").blocks[:4]
    whole = make_batch(rows, torch.arange(10, 14), "masked", tokenizer=tokenizer, seed=5)
    half = make_batch(rows[2:], torch.arange(12, 14), "masked", tokenizer=tokenizer, seed=5)
    assert torch.equal(whole.input_ids[2:], half.input_ids) and torch.equal(whole.labels[2:], half.labels)
    assert whole.n_targets == int((whole.labels != -100).sum()) > 0


class Factorized(torch.nn.Module):
    """OFA-style embedding: per-token coordinates times shared primitive vectors."""

    def __init__(self, vocab: int, rank: int, dim: int) -> None:
        super().__init__()
        self.coordinates = torch.nn.Parameter(torch.randn(vocab, rank) * 0.1)
        self.primitives = torch.nn.Parameter(torch.randn(rank, dim) * 0.1)
        self.num_embeddings = vocab

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.coordinates[ids] @ self.primitives


def test_factorized_input_embedding_trains_through_generic_freeze(tokenizer, data):
    model = tiny_llama(len(tokenizer), tie=False)
    model.set_input_embeddings(Factorized(len(tokenizer), 8, 32))
    names = {id(p) for p in embedding_parameters(model)}
    assert {id(model.model.embed_tokens.coordinates), id(model.model.embed_tokens.primitives),
            id(model.lm_head.weight)} == names
    before = snapshot(model)
    train(model, data, config(("embeddings", 2, 1e-2)), device="cpu")
    after = snapshot(model)
    for name in before:
        trainable = name.startswith(("model.embed_tokens", "lm_head"))
        assert torch.equal(before[name], after[name]) != trainable, name


def test_schedule_warmup_cosine():
    kw = {"peak": 1.0, "total_steps": 10, "warmup_steps": 2, "min_lr_ratio": 0.1}
    assert [lr_at(s, **kw) for s in (1, 2)] == [0.5, 1.0]
    assert lr_at(10, **kw) == pytest.approx(0.1) and lr_at(6, **kw) == pytest.approx(0.55)
    assert lr_at(7, peak=2.0, total_steps=10, schedule="constant") == 2.0


def test_bf16_autocast_path_on_cpu(tokenizer, data):
    model = tiny_llama(len(tokenizer))
    result = train(model, data, config(("embeddings", 2, 1e-2), precision="bf16"), device="cpu")
    assert result.precision == "bf16" and all(torch.isfinite(torch.tensor(result.losses)))
    assert model.model.embed_tokens.weight.dtype == torch.float32  # float32 master weights


# ---------------------------------------------------------------- failures


class Poison(TrainingCallback):
    """Makes the model's logits NaN from step ``at`` on (a diverged run)."""

    def __init__(self, model, at: int) -> None:
        self.model, self.at = model, at

    def on_step(self, step, metrics) -> None:
        if step + 1 == self.at:
            self.model.lm_head.register_forward_hook(lambda m, i, out: out * float("nan"))


def test_nan_loss_stops_and_keeps_last_checkpoint(tokenizer, data, tmp_path):
    model = tiny_llama(len(tokenizer))
    cfg = config(("embeddings", 8, 1e-2), checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match=r"step 5 .*last good checkpoint.*step-00000004"):
        train(model, data, cfg, device="cpu", checkpoint_dir=tmp_path, callbacks=[Poison(model, 5)])
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 4
    assert torch.isfinite(model.model.embed_tokens.weight).all()  # the bad update was not applied


def test_foreign_checkpoint_is_refused(tokenizer, data, tmp_path):
    cfg = config(("embeddings", 2, 1e-2), checkpoint_every=2)
    train(tiny_llama(len(tokenizer), seed=0), data, cfg, tokenizer=tokenizer, device="cpu", checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="model"):
        train(tiny_llama(len(tokenizer), seed=1), data, cfg, tokenizer=tokenizer, device="cpu",
              checkpoint_dir=tmp_path)
    other = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 340)
    with pytest.raises(CheckpointError, match="tokenizer"):
        train(tiny_llama(len(tokenizer), seed=0), data, cfg, tokenizer=other, device="cpu", checkpoint_dir=tmp_path)
    # the same run resumes: nothing left to do, the recorded losses come back
    again = train(tiny_llama(len(tokenizer), seed=0), data, cfg, tokenizer=tokenizer, device="cpu",
                  checkpoint_dir=tmp_path)
    assert again.resumed_from == 2 and len(again.losses) == 2


def test_the_trainer_refuses_at_the_figure_of_the_plan(tokenizer, data):
    # the trainer's own check uses the dry run's plan (here: activation checkpointing keeps
    # fewer activations): one byte under its peak is refused, the peak itself trains. (At
    # tiny vocabularies one chunk holds every position: chunked and full have one figure.)
    from transfer.train.memory_plan import device_memory_plan

    model = tiny_llama(len(tokenizer), seed=0)
    plan = {"micro_batch": 4, "block_size": 16, "device_type": "cpu", "bf16": False, "sharding": "ddp"}
    peak = device_memory_plan(model, ["full"], activation_checkpointing=True, **plan).peak
    whole = device_memory_plan(model, ["full"], **plan).peak
    assert peak.activations < whole.activations
    kw = {"device": "cpu", "activation_checkpointing": True}
    with pytest.raises(MemoryBudgetError):
        train(model, data, config(("full", 1, 1e-3), memory_limit=peak.total - 1), **kw)
    result = train(model, data, config(("full", 1, 1e-3), memory_limit=peak.total), **kw)
    assert len(result.losses) == 1


def test_memory_refusal_under_forced_limit(tokenizer, data, monkeypatch):
    model = tiny_llama(len(tokenizer))
    with pytest.raises(MemoryBudgetError, match=r"grad_accumulation=\d+ \(same effective batch\)|block_size="):
        train(model, data, config(("full", 1, 1e-3), batch_size=64, memory_limit="600KiB"), device="cpu")
    monkeypatch.setenv("VOCAB_TRANSFER_MEMORY_LIMIT", "1KB")
    with pytest.raises(MemoryBudgetError, match="weights and optimizer state do not fit"):
        train(model, data, config(("full", 1, 1e-3)), device="cpu")
    estimate = estimate_training_memory(model, batch_size=4, block_size=16, trainable_parameters=100)
    assert estimate.weights == 4 * sum(p.numel() for p in model.parameters())
    assert estimate.gradients == 4 * 100 and estimate.optimizer == 8 * 100
    assert estimate.logits == 3 * 64 * len(tokenizer) * 4
    assert estimate.total == int(1.2 * (estimate.weights + estimate.gradients + estimate.optimizer
                                        + estimate.activations + estimate.logits))
    # with the body frozen the linear layers keep no inputs for weight gradients: 0.6 of the
    # activations (measured on a GPU: benchmarks/README.md, "On a GPU")
    frozen = estimate_training_memory(model, batch_size=4, block_size=16, trainable_parameters=100,
                                      body_frozen=True, fused_attention=True)
    fused = estimate_training_memory(model, batch_size=4, block_size=16, trainable_parameters=100,
                                     fused_attention=True)
    # int() rounds each layer's bytes down: < 1 byte in ~1e5
    assert frozen.activations == pytest.approx(0.6 * fused.activations, rel=1e-3)
    assert (frozen.weights, frozen.logits) == (fused.weights, fused.logits)
    # a run's estimate is its largest stage's: the whole model's when it has a full stage
    from transfer.train.memory import estimate_for_phases

    both = estimate_for_phases(model, ["embeddings", "full"], batch_size=4, block_size=16)
    only_embeddings = estimate_for_phases(model, ["embeddings"], batch_size=4, block_size=16)
    assert both.total > only_embeddings.total
    assert both.gradients == 4 * sum(p.numel() for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    # OFA's factorized embedding and head have no .weight: the logits must still count
    from transfer.init.factorized import factorize_model

    factorize_model(model, rank=4)
    factorized = estimate_training_memory(model, batch_size=4, block_size=16, trainable_parameters=100)
    assert factorized.logits == estimate.logits
    assert parse_bytes("2GiB") == 2 << 30 and parse_bytes("1.5kB") == 1500
    with pytest.raises(TrainingError, match="size like"):
        parse_bytes("lots")


def test_bad_settings_are_refused(tokenizer, data):
    model = tiny_llama(len(tokenizer))
    with pytest.raises(TrainingError, match="grad_accumulation"):
        train(model, data, config(("full", 1, 1e-3), grad_accumulation=0), device="cpu")
    with pytest.raises(TrainingError, match="phases\\[0\\].name"):
        train(model, data, TrainingConfig(phases=[PhaseConfig("body", 1, 1e-3)]), device="cpu")
    with pytest.raises(TrainingError, match="embedding rows"):
        train(model, data.blocks + 1000, config(("full", 1, 1e-3)), device="cpu")


# ---------------------------------------------------------------- curves and callbacks


class Recorder(TrainingCallback):
    def __init__(self) -> None:
        self.steps, self.evals = [], []

    def on_step(self, step, metrics) -> None:
        self.steps.append((step, metrics))

    def on_eval(self, step, metrics) -> None:
        self.evals.append((step, metrics))


def test_curve_files_and_callbacks(tokenizer, data, tmp_path):
    model = tiny_llama(len(tokenizer))
    recorder = Recorder()
    result = train(model, data, config(("embeddings", 4, 1e-2), ("full", 2, 1e-3), eval_every=3,
                                       eval_at_start=True, eval_at_end=True),
                   evaluate=dev_evaluator(tokenizer, DEV, device="cpu"), device="cpu",
                   callbacks=[recorder], curve_dir=tmp_path, label="tiny")
    assert [p.step for p in result.curve.points] == [0, 3, 6]
    assert [p.stage for p in result.curve.points] == ["embeddings", "embeddings", "full"]
    rows = list(csv.DictReader((tmp_path / "curve.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [0, 3, 6]
    assert [int(r["bytes_seen"]) for r in rows] == [p.bytes_seen for p in result.curve.points]
    assert int(rows[1]["bytes_seen"]) < int(rows[2]["bytes_seen"])
    assert float(rows[1]["train_loss"]) == pytest.approx(sum(result.losses[:3]) / 3)
    assert read_json(tmp_path / "curve.json").points == result.curve.points
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [s for s, _ in recorder.steps] == list(range(1, 7))
    assert {"loss", "lr", "stage", "tokens_per_second", "bytes_seen"} <= set(recorder.steps[0][1])
    assert [s for s, _ in recorder.evals] == [0, 3, 6]
    assert recorder.evals[0][1]["dev_bpb"] == result.curve.points[0].dev_bpb
    other = LearningCurve("other", [p for p in result.curve.points])
    overlay = plot_curves([result.curve, other], tmp_path / "both.png", references={"source": 3.0})
    assert overlay.stat().st_size > 1000
    assert other.first_below(result.curve.points[0].dev_bpb) in (result.curve.points[1], result.curve.points[2], None)


def test_rich_progress_and_token_budget(tokenizer, data):
    import io

    from rich.console import Console

    from transfer.train import RichProgress
    from transfer.train.config import accumulation_for, per_device_defaults

    buffer = io.StringIO()
    train(tiny_llama(len(tokenizer)), data, config(("embeddings", 2, 1e-2)), device="cpu",
          callbacks=[RichProgress(Console(file=buffer, force_terminal=False, width=120))])
    assert "loss" in buffer.getvalue() and "2/2" in buffer.getvalue()
    assert accumulation_for(16384, batch_size=4, block_size=256, world_size=2) == 8
    assert TrainingConfig(phases=[], batch_size=4, grad_accumulation=8).effective_batch_tokens(256, 2) == 16384
    assert per_device_defaults("cuda")["batch_size"] > per_device_defaults("cpu")["batch_size"]


def test_prefer_sdpa_switches_eager_attention(tokenizer):
    from transfer.train.run_inputs import prefer_sdpa

    model = tiny_llama(len(tokenizer), attn_implementation="eager")
    assert prefer_sdpa(model) == "sdpa" and model.config._attn_implementation == "sdpa"
