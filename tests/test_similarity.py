"""Exact blocked cosine top-k, the faiss approximation and its recall measure."""

from __future__ import annotations

import faiss
import pytest
import torch

from transfer.errors import SimilarityError
from transfer.init.similarity import (
    FaissCosineIndex,
    FaissParams,
    TopK,
    block_rows_for,
    cosine_topk,
    exact_topk,
    faiss_topk,
    normalize_rows,
    recall_at_k,
)


def _brute_force(queries: torch.Tensor, keys: torch.Tensor, k: int) -> TopK:
    q = queries.double() / queries.double().norm(dim=1, keepdim=True)
    x = keys.double() / keys.double().norm(dim=1, keepdim=True)
    best = torch.topk(q @ x.T, k, dim=1)
    return TopK(best.values.float(), best.indices)


def _clustered(n: int, dim: int, seed: int, centers: int = 50, noise: float = 0.6) -> torch.Tensor:
    """Vectors around a few centres, like word vectors (not uniform noise)."""
    g = torch.Generator().manual_seed(seed)
    middle = torch.randn(centers, dim, generator=g)
    which = torch.randint(0, centers, (n,), generator=g)
    return middle[which] + noise * torch.randn(n, dim, generator=g)


def test_exact_topk_matches_brute_force_across_many_blocks():
    g = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(301, 24, generator=g), torch.randn(517, 24, generator=g)
    # room for two query rows per block: ~150 blocks and a short last one
    assert block_rows_for(517, 8 * 517) == 2
    found = exact_topk(queries, keys, 7, max_block_bytes=8 * 517)
    expected = _brute_force(queries, keys, 7)
    assert torch.equal(found.indices, expected.indices)
    # cosines <= 1 in float32 over 24 terms in another order: <= 24 * 6e-8 = 1.4e-6
    assert torch.allclose(found.scores, expected.scores, atol=1e-5)
    assert found.scores.dtype == torch.float32 and found.k == 7
    # best first
    assert bool((found.scores[:, :-1] >= found.scores[:, 1:]).all())


def test_exact_topk_is_scale_invariant_cosine():
    g = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(20, 8, generator=g), torch.randn(40, 8, generator=g)
    scale = torch.rand(40, 1, generator=g) * 100 + 0.01
    a = exact_topk(queries, keys, 5)
    b = exact_topk(queries * 3.0, keys * scale, 5)
    assert torch.equal(a.indices, b.indices)
    # a key identical to a query in direction scores 1
    keys[3] = queries[0] * 5
    assert exact_topk(queries[:1], keys, 1).indices.item() == 3
    # float32 normalization and a dot over 8 terms: <= 8 * 6e-8 = 5e-7
    assert exact_topk(queries[:1], keys, 1).scores.item() == pytest.approx(1.0, abs=1e-6)


def test_normalize_rows_keeps_zero_rows_zero_and_flags_them():
    rows = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    unit, valid = normalize_rows(rows)
    assert valid.tolist() == [True, False, True]
    assert torch.allclose(unit, torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]]))
    assert not torch.isnan(unit).any()


def test_bad_inputs_are_refused_before_searching():
    with pytest.raises(SimilarityError, match="dimension"):
        exact_topk(torch.randn(3, 4), torch.randn(5, 6), 2)
    with pytest.raises(SimilarityError, match="k=6"):
        exact_topk(torch.randn(3, 4), torch.randn(5, 4), 6)
    with pytest.raises(SimilarityError, match="2-d"):
        exact_topk(torch.randn(4), torch.randn(5, 4), 1)
    with pytest.raises(SimilarityError, match="unknown"):
        cosine_topk(torch.randn(3, 4), torch.randn(5, 4), 2, method="annoy")


def test_recall_at_k_counts_found_neighbours():
    exact = TopK(torch.zeros(2, 3), torch.tensor([[1, 2, 3], [4, 5, 6]]))
    approx = TopK(torch.zeros(2, 3), torch.tensor([[3, 2, 9], [4, 5, 6]]))
    assert recall_at_k(approx, exact) == pytest.approx(5 / 6)
    assert recall_at_k(exact, exact) == 1.0
    with pytest.raises(SimilarityError):
        recall_at_k(TopK(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long)), exact)


def test_faiss_search_prunes_and_keeps_recall():
    # held-out queries from the keys' own distribution (overlapping clusters, as word
    # vectors are), keys rescaled at random: cosine ignores the scale, so an index that
    # searched raw inner products instead of normalized ones would find other neighbours
    g = torch.Generator().manual_seed(2)
    both = _clustered(10_300, 32, seed=2, centers=100, noise=1.0)
    keys = both[:10_000] * (0.1 + 3 * torch.rand(10_000, 1, generator=g))
    queries = both[10_000:]
    exact = exact_topk(queries, keys, 10)
    index = FaissCosineIndex(keys, FaissParams(n_lists=128, n_probe=8))
    assert index.n_lists == 128
    # the index really prunes: 8 of 128 lists, about 1/16 of the keys compared per query
    faiss.cvar.indexIVF_stats.reset()
    approx = index.search(queries, 10)
    scanned = faiss.cvar.indexIVF_stats.ndis / (queries.shape[0] * keys.shape[0])
    assert scanned < 0.1
    # measured 0.985; a wrong metric, a mis-mapped id or an untrained quantizer lands far below
    assert recall_at_k(approx, exact) >= 0.96
    # found neighbours carry their exact cosine scores
    found = approx.indices == exact.indices
    # faiss's float32 inner products over 32 terms vs ours: <= 32 * 6e-8 = 2e-6 (here and below)
    assert torch.allclose(approx.scores[found], exact.scores[found], atol=1e-5)
    # probing fewer lists misses more (measured 0.83 with one list): the measure can fail
    assert recall_at_k(index.search(queries, 10, n_probe=1), exact) < 0.9
    # scanning every list is exhaustive: recall 1 and the same scores
    full = index.search(queries, 10, n_probe=128)
    assert recall_at_k(full, exact) == 1.0
    assert torch.allclose(full.scores, exact.scores, atol=1e-5)
    # the convenience wrapper builds the same index and finds the same neighbours
    assert torch.equal(faiss_topk(queries, keys, 10, FaissParams(n_lists=128, n_probe=8)).indices,
                       approx.indices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_exact_topk_on_gpu_equals_cpu():
    g = torch.Generator().manual_seed(4)
    queries, keys = torch.randn(200, 16, generator=g), torch.randn(900, 16, generator=g)
    cpu = exact_topk(queries, keys, 10, device="cpu")
    gpu = exact_topk(queries, keys, 10, device="cuda")
    assert torch.equal(cpu.indices, gpu.indices)
    # float32 on both (no TF32), dots over 16 terms: <= 16 * 6e-8 = 1e-6
    assert torch.allclose(cpu.scores, gpu.scores, atol=1e-5)
