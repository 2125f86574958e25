"""WECHSEL on tiny models with hand-made token vectors: weights, k=1 limit, fallbacks."""

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

from tests.tiny import (
    ENGLISH,
    GERMAN,
    BareTokenVectors,
    random_token_vectors,
    tiny_bert,
    tiny_llama,
    tiny_wordpiece_tokenizer,
    token_vector_inputs,
)
from transfer.errors import TokenVectorError
from transfer.init import StrategyInputs, StrategyResources, initialize, strategy_parameters
from transfer.init.strategies.mean import fallback_mean_rows
from transfer.init.strategies.wechsel import neighbour_weights
from transfer.init.surgery import get_source_embeddings


def _reference_row(source_matrix, s_vec, t_vec, k, temperature):
    """WECHSEL's rule written out plainly in float64 for one target token."""
    s = s_vec / np.linalg.norm(s_vec, axis=1, keepdims=True)
    t = t_vec / np.linalg.norm(t_vec)
    sims = s @ t
    best = np.argsort(-sims)[:k]
    w = np.exp(sims[best] / temperature)
    w /= w.sum()
    return (source_matrix[best] * w[:, None]).sum(axis=0)


def test_registered_with_published_defaults():
    params = strategy_parameters("wechsel")
    assert params["k"] == 10 and params["temperature"] == 0.1 and params["search"] == "exact"


def test_weights_sum_to_one_and_follow_similarity():
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(50, 8, generator=g), torch.randn(30, 8, generator=g)
    source_has = torch.ones(50, dtype=torch.bool)
    source_has[[3, 7]] = False
    target_has = torch.ones(30, dtype=torch.bool)
    target_has[5] = False
    found = neighbour_weights(source, source_has, target, target_has, k=10, temperature=0.1)
    # a float32 softmax over 10: the sum is 1 to a few ulps (~2e-7)
    assert torch.allclose(found.weights.sum(dim=1), torch.ones(29), atol=1e-6)
    assert 5 not in found.target_ids.tolist()
    # sources without a vector are never neighbours
    assert not set(found.source_ids.flatten().tolist()) & {3, 7}
    # higher similarity, higher weight
    assert bool((found.weights[:, :-1] >= found.weights[:, 1:]).all())
    # k is capped at the number of candidates
    few = neighbour_weights(source[:4], source_has[:4], target, target_has, k=10)
    assert few.source_ids.shape[1] == 3


def test_rows_equal_the_plain_wechsel_rule(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    s_vec = random_token_vectors(len(source_tok), 16, 1)
    t_vec = random_token_vectors(len(target_tok), 16, 2)
    result = initialize("wechsel", token_vector_inputs(source_tok, target_tok, model, s_vec, t_vec))
    matrix = get_source_embeddings(model).input.double().numpy()
    checked = 0
    for i, label in enumerate(result.report.labels):
        if label == "computed" and checked < 25:
            expected = _reference_row(matrix, s_vec.matrix, t_vec.matrix[i], 10, 0.1)
            # float32 cosines (~1e-6) / temperature 0.1: weights ~1e-5 relative, on rows of
            # size < 0.1 (std 0.02): ~1e-6 (here and below)
            assert np.allclose(result.input[i].double().numpy(), expected, atol=1e-5)
            checked += 1
    assert checked == 25


def test_k1_gives_the_nearest_source_tokens_embedding(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    s_vec = random_token_vectors(len(source_tok), 16, 3)
    # every target token's vector is a scaled copy of a chosen source token's vector
    rng = np.random.default_rng(4)
    nearest = rng.integers(0, len(source_tok), len(target_tok))
    t_vec = BareTokenVectors(s_vec.matrix[nearest] * 2.5, np.ones(len(target_tok), dtype=bool))
    inputs = token_vector_inputs(source_tok, target_tok, model, s_vec, t_vec)
    result = initialize("wechsel", inputs, k=1)
    source_matrix = inputs.source.input
    computed = [i for i, label in enumerate(result.report.labels) if label == "computed"]
    assert len(computed) > 150  # all but the 256 byte and 3 special tokens
    for i in computed:
        assert torch.equal(result.input[i], source_matrix[nearest[i]])


def test_tokens_without_vectors_fall_back_to_the_mean(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    missing = tuple(range(300, 330))
    s_vec = random_token_vectors(len(source_tok), 16, 5)
    t_vec = random_token_vectors(len(target_tok), 16, 6, missing=missing)
    t_vec.has_vector[331] = True  # an all-zero row counts as no vector even if flagged
    t_vec.matrix[331] = 0.0
    inputs = token_vector_inputs(source_tok, target_tok, model, s_vec, t_vec)
    result = initialize("wechsel", inputs, fallback_covariance_scale=0.0)
    mean_row = fallback_mean_rows(inputs.source.input, 1, covariance_scale=0.0)[0]
    for i in (*missing, 331):
        assert result.report.labels[i] == "fallback"
        assert torch.allclose(result.input[i], mean_row)
    assert result.report.counts["fallback"] == len(missing) + 1
    assert any("fell back" in note for note in result.report.notes)


def test_untied_head_and_bias_get_the_same_weights():
    source_tok = tiny_wordpiece_tokenizer(ENGLISH, 300)
    target_tok = tiny_wordpiece_tokenizer(GERMAN, 320)
    model = tiny_bert(len(source_tok))
    source = get_source_embeddings(model)
    # BERT's decoder bias is the output bias WECHSEL must carry over
    assert torch.equal(source.output_bias, model.get_output_embeddings().bias.detach())
    s_vec = random_token_vectors(len(source_tok), 12, 7)
    t_vec = random_token_vectors(len(target_tok), 12, 8)
    inputs = token_vector_inputs(source_tok, target_tok, model, s_vec, t_vec)
    result = initialize("wechsel", inputs, k=3)
    bias = source.output_bias.double().numpy()[:, None]
    i = result.report.labels.index("computed")
    expected = _reference_row(bias, s_vec.matrix, t_vec.matrix[i], 3, 0.1)[0]
    assert result.output_bias[i].item() == pytest.approx(expected, abs=1e-5)

    untied = tiny_llama(len(source_tok), tie=False)
    inputs = token_vector_inputs(source_tok, target_tok, untied, s_vec, t_vec)
    result = initialize("wechsel", inputs, k=3)
    out = inputs.source.output.double().numpy()
    expected_row = _reference_row(out, s_vec.matrix, t_vec.matrix[i], 3, 0.1)
    assert np.allclose(result.output[i].double().numpy(), expected_row, atol=1e-5)


def test_faiss_search_option_runs_through_the_strategy(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    s_vec = random_token_vectors(len(source_tok), 16, 9)
    t_vec = random_token_vectors(len(target_tok), 16, 10)
    inputs = token_vector_inputs(source_tok, target_tok, model, s_vec, t_vec)
    exact = initialize("wechsel", inputs)
    approx = initialize("wechsel", inputs, search="faiss")
    assert approx.report.params["search"] == "faiss"
    # tiny vocabularies: few lists, 32 probed, so the search is exhaustive here; faiss's float32
    # cosines differ by ~1e-6, the weights by ~1e-5 relative, rows of size < 0.1 by ~1e-6
    assert torch.allclose(exact.input, approx.input, atol=1e-5)


def test_bad_resources_and_parameters_are_refused(bpe_pair):
    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    bare = StrategyInputs(get_source_embeddings(model), source_tok, target_tok)
    with pytest.raises(TokenVectorError, match="static vectors"):
        initialize("wechsel", bare)
    s_vec = random_token_vectors(len(source_tok), 16, 1)
    t_vec = random_token_vectors(len(target_tok), 8, 2)
    with pytest.raises(TokenVectorError, match="dimension"):
        initialize("wechsel", token_vector_inputs(source_tok, target_tok, model, s_vec, t_vec))
    t_vec = random_token_vectors(len(target_tok), 16, 2)
    inputs = token_vector_inputs(source_tok, target_tok, model, s_vec, t_vec)
    with pytest.raises(TokenVectorError, match="k"):
        initialize("wechsel", inputs, k=0)
    with pytest.raises(TokenVectorError, match="temperature"):
        initialize("wechsel", inputs, temperature=0.0)
    with pytest.raises(TokenVectorError, match="search"):
        initialize("wechsel", inputs, search="annoy")
    no_source = BareTokenVectors(np.zeros_like(s_vec.matrix), np.zeros(len(source_tok), dtype=bool))
    with pytest.raises(TokenVectorError, match="no source token"):
        initialize("wechsel", token_vector_inputs(source_tok, target_tok, model, no_source, t_vec))


# Both scripts in one interpreter, each as its own __main__: the reference package's
# imports (nltk, datasets) and torch's are paid once instead of twice.
_RUN_SCRIPTS = """
import runpy, sys
for script in sys.argv[1:]:
    sys.argv = [script, "--smoke"]
    runpy.run_path(script, run_name="__main__")
"""


def _run_smokes(scripts: list[str], results: Path) -> list[dict]:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "VOCAB_TRANSFER_BENCH_RESULTS": str(results)}
    done = subprocess.run([sys.executable, "-c", _RUN_SCRIPTS, *(f"benchmarks/{s}.py" for s in scripts)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((results / f"{script}_smoke.json").read_text()) for script in scripts]


_REFERENCE = Path(__file__).resolve().parents[1] / ".bench-ref" / "wechsel"


@pytest.mark.skipif(not _REFERENCE.is_dir(), reason="the wechsel reference is not installed in "
                    ".bench-ref (benchmark-only; see benchmarks/README.md)")
def test_reference_benchmarks_run_in_smoke_mode(tmp_path: Path):
    speed, match = _run_smokes(["wechsel_speed", "wechsel_reference"], tmp_path)
    stage = speed["a_similarity_weighting"]
    assert stage["rows_with_other_neighbours"] == 0 and stage["max_abs_diff"] < 1e-4
    assert speed["c_faiss_recall"]["faiss"][-1]["recall_at_10"] >= 0.95
    assert {"ours", "reference", "reference_rows_with_our_special_byte_fallback_rows"} == set(match["bpb"])
    assert match["relative_gap_to_hybrid"]["bpb_step0"] < 0.01


def test_token_vectors_from_aligned_static_vectors_word_average(bpe_pair):
    from transfer.vectors.alignment import AlignedPair
    from transfer.vectors.static_vectors import StaticVectors, tokenize_words

    source_tok, target_tok = bpe_pair
    model = tiny_llama(len(source_tok))
    rng = np.random.default_rng(11)

    def words_of(sentences):
        return sorted({w for s in sentences for w in tokenize_words(s)})

    en, de = words_of(ENGLISH), words_of(GERMAN)
    pair = AlignedPair(StaticVectors(en, rng.normal(size=(len(en), 8))),
                       StaticVectors(de, rng.normal(size=(len(de), 8))), np.eye(8))
    inputs = StrategyInputs(get_source_embeddings(model), source_tok, target_tok, resources=StrategyResources(
        aligned_vectors=pair, token_vector_method="word_average",
        target_word_frequencies={w: 1.0 + i for i, w in enumerate(de)},
    ))
    result = initialize("wechsel", inputs, k=3)
    assert result.report.params["token_vector_method"] == "word_average"
    assert result.report.counts["computed"] > 30
    # a target token made only of the word "Licht" gets that word's vector as its own
    light = target_tok.convert_tokens_to_ids("ĠLicht")
    if light is not None and light != target_tok.unk_token_id:
        assert result.report.labels[light] == "computed"
    inputs.resources = replace(inputs.resources, token_vector_method="bogus")
    with pytest.raises(TokenVectorError, match="bogus"):
        initialize("wechsel", inputs)
