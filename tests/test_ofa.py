"""OFA: truncated-SVD factorization, the factorized module, export, and the strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.tiny import (
    BareTokenVectors,
    random_token_vectors,
    tiny_gpt2,
    tiny_llama,
    token_vector_inputs,
)
from transfer.errors import FactorizationError
from transfer.init import StrategyInputs, initialize
from transfer.init.factorized import (
    FACTORS_FILE,
    FactorizedEmbedding,
    FactorizedHead,
    embedding_parameters,
    factorize,
    factorize_model,
    load_factorized,
    materialize,
    save_factorized,
)
from transfer.init.strategies.overlap import match_overlap
from transfer.init.surgery import swap_vocabulary


def _ofa_inputs(source_tok, target_tok, model) -> StrategyInputs:
    return token_vector_inputs(
        source_tok, target_tok, model,
        random_token_vectors(len(source_tok), 16, 1), random_token_vectors(len(target_tok), 16, 2),
    )


def test_factorize_is_a_truncated_svd():
    g = torch.Generator().manual_seed(0)
    matrix = torch.randn(60, 12, generator=g)
    full = factorize(matrix, 12)
    # float64 SVD, float32 factors multiplied over 12 terms of |x| < 5: ~12 * 6e-8 * 5 = 4e-6
    # at worst, ~1e-6 typical (here and for the products below)
    assert torch.allclose(full.product(), matrix, atol=1e-5)
    half = factorize(matrix, 6)
    assert half.coordinates.shape == (60, 6) and half.primitives.shape == (6, 12)
    # orthonormal primitives: projection recovers the coordinates exactly
    assert torch.allclose(half.primitives @ half.primitives.T, torch.eye(6), atol=1e-5)
    assert torch.allclose(half.project(half.product()), half.coordinates, atol=1e-5)
    # Eckart-Young: the error is the discarded singular values
    s = torch.linalg.svdvals(matrix.double())
    error = (matrix.double() - half.product().double()).norm() ** 2
    # the float32 factors' rounding against the discarded sum of squares (~210): ~1e-8 relative
    assert error.item() == pytest.approx(float((s[6:] ** 2).sum()), rel=1e-4)


def test_rank_above_hidden_size_is_refused(bpe_pair):
    with pytest.raises(FactorizationError, match="hidden size 12"):
        factorize(torch.randn(60, 12), 13)
    with pytest.raises(FactorizationError, match=">= 1"):
        factorize(torch.randn(60, 12), 0)
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))  # hidden size 32
    with pytest.raises(FactorizationError, match="larger than the hidden size 32"):
        initialize("ofa", _ofa_inputs(source_tok, target_tok, model), rank=33)
    with pytest.raises(FactorizationError, match="hidden size"):
        factorize_model(model, 64)


def test_factorized_forward_equals_the_materialized_model():
    for model in (tiny_llama(120), tiny_gpt2(120)):
        module = factorize_model(model, 8)
        assert model.get_input_embeddings() is module
        head = model.get_output_embeddings()
        assert isinstance(head, FactorizedHead) and head.embedding is module
        # the training helper freezes "all but embeddings" through these: same parameters
        assert {id(p) for p in head.parameters()} == {id(p) for p in module.parameters()}
        ids = torch.randint(0, 120, (2, 11), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            factorized_logits = model(ids).logits
            materialize(model)
            plain_logits = model(ids).logits
        assert isinstance(model.get_input_embeddings(), torch.nn.Embedding)
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
        # the same product computed before or inside the model, float32 logits of size < 1: ~1e-7
        assert torch.allclose(factorized_logits, plain_logits, atol=1e-5)


def test_factorized_embedding_trains_through_the_tied_head():
    model = tiny_llama(80)
    module = factorize_model(model, 4)
    assert sum(p.numel() for p in module.parameters()) == embedding_parameters(80, 32, 4)
    before = module.coordinates.detach().clone()
    optimizer = torch.optim.AdamW(model.get_input_embeddings().parameters(), lr=1e-2)
    ids = torch.randint(0, 80, (2, 9), generator=torch.Generator().manual_seed(2))
    model(input_ids=ids, labels=ids).loss.backward()
    # the head's gradient reaches rows that are never input tokens
    unseen = min(set(range(80)) - set(ids.flatten().tolist()))
    assert module.coordinates.grad[unseen].abs().sum() > 0
    optimizer.step()
    assert not torch.equal(before, module.coordinates.detach())


def test_save_export_and_load_round_trip(tmp_path, bpe_pair):
    source_tok, _ = bpe_pair
    model = tiny_llama(len(source_tok))
    factorize_model(model, 8)
    ids = torch.randint(0, len(source_tok), (1, 13), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(ids).logits
    folder = save_factorized(model, source_tok, tmp_path / "ofa")
    assert isinstance(model.get_input_embeddings(), FactorizedEmbedding)  # still factorized
    assert (folder / FACTORS_FILE).is_file() and (folder / "model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(folder)  # plain transformers, no our code
    assert isinstance(plain.get_input_embeddings(), torch.nn.Embedding)
    restored, _ = load_factorized(folder)
    assert isinstance(restored.get_input_embeddings(), FactorizedEmbedding)
    with torch.no_grad():  # float32 logits of size < 1 from re-multiplied factors: ~1e-7
        assert torch.allclose(plain(ids).logits, expected, atol=1e-5)
        assert torch.allclose(restored(ids).logits, expected, atol=1e-5)
    # a factor file that does not belong to the weights is refused
    other = tiny_llama(len(source_tok), seed=5)
    factorize_model(other, 8)
    save_factorized(other, source_tok, tmp_path / "other")
    (tmp_path / "other" / FACTORS_FILE).replace(folder / FACTORS_FILE)
    with pytest.raises(FactorizationError, match="differs"):
        load_factorized(folder)
    with pytest.raises(FactorizationError, match="no factorized"):
        materialize(plain)


def test_ofa_copies_overlap_coordinates_and_weights_the_rest(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    inputs = _ofa_inputs(source_tok, target_tok, model)
    result = initialize("ofa", inputs, rank=32, fallback_covariance_scale=0.0)
    counts = result.report.counts
    assert counts["copied"] > 10 and counts["computed"] > 20
    # rank = hidden size: the factorization is exact, so copied rows equal source rows
    overlap = match_overlap(source_tok, target_tok)
    match = dict(zip(overlap.target_ids, overlap.source_ids))
    copied = [i for i, label in enumerate(result.report.labels) if label == "copied"]
    # float32 products over 32 (or 4) terms: a few 1e-7 (here and below)
    for i in copied:
        assert torch.allclose(result.input[i], inputs.source.input[match[i]], atol=1e-5)
    # lower rank: copied rows are the source rows' rank-r approximation
    low = initialize("ofa", inputs, rank=4)
    factors = factorize(inputs.source.input, 4)
    for i in copied:
        assert torch.allclose(low.input[i], factors.product()[match[i]], atol=1e-5)
    # computed rows lie in the primitives' span
    computed = [i for i, label in enumerate(low.report.labels) if label == "computed"]
    rows = low.input[computed]
    assert torch.allclose(factors.project(rows) @ factors.primitives, rows, atol=1e-5)


def test_ofa_k1_and_weights_on_coordinates(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    inputs = _ofa_inputs(source_tok, target_tok, model)
    s_vec = inputs.resources.source_token_vectors
    rng = np.random.default_rng(6)
    nearest = rng.integers(0, len(source_tok), len(target_tok))
    inputs.resources = replace(inputs.resources, target_token_vectors=BareTokenVectors(
        s_vec.matrix[nearest], np.ones(len(target_tok), dtype=bool)
    ))
    result = initialize("ofa", inputs, rank=8, k=1)
    approx = factorize(inputs.source.input, 8).product()
    computed = [i for i, label in enumerate(result.report.labels) if label == "computed"]
    assert computed
    for i in computed:  # the same float32 product over 8 terms: a few 1e-7
        assert torch.allclose(result.input[i], approx[nearest[i]], atol=1e-5)


def test_ofa_model_gets_its_factorized_embedding_after_surgery(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    inputs = _ofa_inputs(source_tok, target_tok, model)
    result = initialize("ofa", inputs, rank=32)
    swap_vocabulary(model, target_tok, result, source_tokenizer=source_tok)
    ids = torch.tensor([target_tok("Und Gott sprach zum Licht")["input_ids"]])
    with torch.no_grad():
        plain = model(ids).logits
        module = factorize_model(model, primitives=result.primitives)
        factorized = model(ids).logits
    assert module.rank == 32 and module.num_embeddings == len(target_tok)
    # rank = hidden size: the rows projected and re-multiplied in float32 (~1e-7), then the
    # forward; 1e-4 is loose
    assert torch.allclose(plain, factorized, atol=1e-4)
    assert result.report.params["rank"] == 32
    assert any("parameters vs" in note for note in result.report.notes)


def test_ofa_benchmark_runs_in_smoke_mode(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "VOCAB_TRANSFER_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run([sys.executable, "benchmarks/ofa_ranks.py", "--smoke"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "ofa_ranks_smoke.json").read_text())
    assert [row["rank"] for row in record["rows"]] == [4, 8]
    assert all(row["embedding_parameters"] < record["full_embedding_parameters"] for row in record["rows"])
