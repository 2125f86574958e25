"""Procrustes, CSLS refinement and BLI precision@1 on vectors with a known rotation, and on
a tiny real fastText pair."""

from __future__ import annotations

import numpy as np
import pytest

from transfer.errors import AlignmentError
from transfer.vectors.alignment import align_vectors, bli_evaluate, bli_precision_at_1, procrustes
from transfer.vectors.static_vectors import StaticVectors


def _rotated_pair(n: int = 600, dim: int = 24, noise: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    Q = np.linalg.qr(rng.normal(size=(dim, dim)))[0].astype(np.float32)
    Y = X @ Q + noise * rng.normal(size=(n, dim)).astype(np.float32)
    src = StaticVectors([f"s{i}" for i in range(n)], X, source="src")
    tgt = StaticVectors([f"t{i}" for i in range(n)], Y, source="tgt")
    pairs = [(f"s{i}", f"t{i}") for i in range(n)]
    return src, tgt, pairs, Q


def test_procrustes_recovers_a_rotation():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 8))
    Q = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    # float64 SVD, W returned in float32: each entry off by <= 6e-8; 1e-4 is loose
    np.testing.assert_allclose(procrustes(X, X @ Q), Q, atol=1e-4)


def test_alignment_and_bli():
    src, tgt, pairs, _ = _rotated_pair()
    train, test = pairs[:400], pairs[400:]
    aligned = align_vectors(src, tgt, train)
    assert aligned.report["covered_pairs"] == 400
    W = aligned.W
    # W rounded to float32, W @ W.T in float32 over dim terms: ~dim * 6e-8 ~ 1e-6
    np.testing.assert_allclose(W @ W.T, np.eye(W.shape[0]), atol=1e-4)
    assert bli_precision_at_1(aligned, test) > 0.95
    assert bli_evaluate(aligned, test, reverse=True)["p_at_1"] > 0.95
    # an unaligned pair of spaces scores near chance
    random = align_vectors(src, StaticVectors(tgt.words, np.random.default_rng(5).normal(size=tgt.matrix.shape)), train)
    assert bli_precision_at_1(random, test) < 0.1


def test_refinement_grows_a_small_seed():
    src, tgt, pairs, _ = _rotated_pair(noise=0.3)
    seed, test = pairs[:25], pairs[400:]
    plain = bli_precision_at_1(align_vectors(src, tgt, seed), test)
    refined_pair = align_vectors(src, tgt, seed, refine_iterations=3)
    refined = bli_precision_at_1(refined_pair, test)
    assert refined >= plain and refined > 0.8
    assert refined_pair.report["history"][-1]["mutual_nn"] > 100


def test_bad_alignment_input():
    src, tgt, pairs, _ = _rotated_pair(n=50)
    with pytest.raises(AlignmentError, match="dimension 24 .* have 12"):
        align_vectors(src, StaticVectors(tgt.words, tgt.matrix[:, :12], source="small"), pairs)
    with pytest.raises(AlignmentError, match="none of the 2 dictionary pairs"):
        align_vectors(src, tgt, [("nope", "t1"), ("s1", "nada")])
    aligned = align_vectors(src, tgt, pairs)
    with pytest.raises(AlignmentError, match="no held-out pair"):
        bli_precision_at_1(aligned, [("zzz", "yyy")])


def test_tiny_real_vectors_align(tmp_path):
    """Two fastText models of two English Bible translations: Procrustes on shared words
    maps each word close to itself (a sanity check on real vectors, not a quality claim)."""
    from transfer.corpus.bible import read_texts
    from transfer.vectors.fasttext_training import load_trained, train_fasttext, write_training_text

    models = {}
    for code in ("k", "4"):
        write_training_text(read_texts(code, "train")[:5000], tmp_path / f"{code}.txt", lowercase=True)
        models[code] = load_trained(train_fasttext(tmp_path / f"{code}.txt", tmp_path / code, dim=32, epoch=5,
                                                   min_count=5, bucket=20_000))
    shared = [w for w in models["k"].words if w in models["4"].index]
    pairs = [(w, w) for w in shared]
    train, test = pairs[::2], pairs[1::2][:200]
    aligned = align_vectors(models["k"], models["4"], train)
    p_at_1 = bli_precision_at_1(aligned, test)
    print("tiny real P@1", p_at_1)
    assert p_at_1 > 0.3


def test_benchmark_smoke(tmp_path):
    """benchmarks/vectors_bli.py --smoke runs end to end and records every variant."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from transfer.vectors.dictionaries import DING_DE_EN

    if not DING_DE_EN.exists():
        pytest.skip("Debian package trans-de-en is not installed")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "vectors_bli.py"
    out = tmp_path / "smoke.json"
    subprocess.run([sys.executable, str(script), "--smoke", "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert set(result["bli"]) == {"ding", "induced", "ding+refine", "induced+refine", "ding+induced",
                                  "ding+induced+refine"}
    forward = [v["en->de"] for v in result["bli"].values()]
    assert all(f["p_at_1"] == f["hits"] / f["queries"] for f in forward)
    # every variant is scored on the same held-out words: those of the covered test pairs
    queries = {f["queries"] for f in forward}
    assert len(queries) == 1 and 0 < queries.pop() <= result["ding"]["test"]["both_covered"]
