"""Two vector spaces made one: orthogonal Procrustes, CSLS refinement, BLI precision@1.

Mikolov et al. (2013) map one language's word vectors onto another's with a linear map
learned from dictionary pairs; Xing et al. (2015) keep it orthogonal, which has the
closed-form Procrustes solution W = U V^T from the SVD of X^T Y. Vectors are first made
unit length, mean-centred and unit length again (Artetxe et al., 2018, VecMap).
Refinement (Conneau et al., 2018, MUSE) re-learns W on the mutual nearest neighbours
under CSLS (cross-domain similarity local scaling: 2 cos(x, y) - r_T(x) - r_S(y), where r
is the mean cosine to the k nearest neighbours in the other space), which penalizes hubs.
Quality: bilingual lexicon induction precision@1 with CSLS retrieval on held-out pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import orthogonal_procrustes

from transfer.errors import AlignmentError
from transfer.vectors.static_vectors import StaticVectors

Pair = tuple[str, str]


def _unit_in_place(matrix: np.ndarray) -> None:
    norm = np.linalg.norm(matrix, axis=-1, keepdims=True)
    matrix /= np.where(norm > 0, norm, 1.0)


def normalize(vectors: StaticVectors) -> StaticVectors:
    """Unit length, mean-centred, unit length (recorded, so n-gram compositions follow).

    The same arithmetic as ``unit_normalized().centered().unit_normalized()``, done in
    one new matrix instead of three (a pretrained table is gigabytes)."""
    norm = np.linalg.norm(vectors.matrix, axis=-1, keepdims=True)
    matrix = vectors.matrix / np.where(norm > 0, norm, 1.0)
    mean = matrix.mean(axis=0).astype(np.float32)
    matrix -= mean
    _unit_in_place(matrix)
    ops = vectors.ops + (("unit", None), ("center", mean), ("unit", None))
    return StaticVectors(list(vectors.words), matrix.astype(np.float32, copy=False), vectors.ngrams, ops,
                         vectors.source, vectors.lowercase, dict(vectors.meta))


def unit_only(vectors: StaticVectors) -> StaticVectors:
    """Unit length only: vectors already aligned across languages keep their geometry
    (centring each language on its own mean would move one space against the other)."""
    matrix = np.array(vectors.matrix, dtype=np.float32)
    _unit_in_place(matrix)
    return StaticVectors(list(vectors.words), matrix, vectors.ngrams, vectors.ops + (("unit", None),),
                         vectors.source, vectors.lowercase, dict(vectors.meta))


def procrustes(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Orthogonal W minimizing ||X W - Y||_F (scipy's closed form)."""
    if X.shape != Y.shape or X.ndim != 2:
        raise AlignmentError(f"Procrustes needs two matrices of one shape, got {X.shape} and {Y.shape}")
    W, _ = orthogonal_procrustes(X.astype(np.float64), Y.astype(np.float64))
    return W.astype(np.float32)


def knn_mean_similarity(A: np.ndarray, B: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """For every row of A, the mean cosine (rows are unit length) of its k nearest rows of B."""
    k = max(1, min(k, B.shape[0]))
    out = np.empty(A.shape[0], dtype=np.float32)
    for start in range(0, A.shape[0], chunk):
        sims = A[start : start + chunk] @ B.T
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        out[start : start + chunk] = top.mean(axis=1)
    return out


def csls_nearest(Q: np.ndarray, T: np.ndarray, r_q: np.ndarray, r_t: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Index into T of each query's best CSLS match."""
    best = np.empty(Q.shape[0], dtype=np.int64)
    for start in range(0, Q.shape[0], chunk):
        scores = 2 * (Q[start : start + chunk] @ T.T) - r_q[start : start + chunk, None] - r_t[None, :]
        best[start : start + chunk] = scores.argmax(axis=1)
    return best


def _unit(M: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(M, axis=1, keepdims=True)
    return M / np.where(norm > 0, norm, 1.0)


def mutual_nn_pairs(S: np.ndarray, T: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Index pairs (i, j) that are each other's CSLS nearest neighbours."""
    r_s = knn_mean_similarity(S, T, k)
    r_t = knn_mean_similarity(T, S, k)
    fwd = csls_nearest(S, T, r_s, r_t)
    bwd = csls_nearest(T, S, r_t, r_s)
    return [(i, int(j)) for i, j in enumerate(fwd) if bwd[j] == i]


@dataclass
class AlignedPair:
    """Both vector sets in one space (source mapped by W onto the target), and a report."""

    source: StaticVectors
    target: StaticVectors
    W: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


def covered_pairs(source: StaticVectors, target: StaticVectors, pairs: Sequence[Pair]) -> list[tuple[int, int]]:
    out = []
    for s, t in pairs:
        i, j = source.index.get(source._key(s)), target.index.get(target._key(t))
        if i is not None and j is not None:
            out.append((i, j))
    return list(dict.fromkeys(out))


def align_vectors(
    source: StaticVectors,
    target: StaticVectors,
    pairs: Sequence[Pair],
    *,
    refine_iterations: int = 0,
    csls_k: int = 10,
    refine_vocab: int = 20_000,
    keep_seed_pairs: bool = True,
) -> AlignedPair:
    """Map ``source`` onto ``target`` with Procrustes on the dictionary ``pairs`` (source
    word, target word); optionally refine on CSLS mutual nearest neighbours among the
    ``refine_vocab`` first words of each side (union with the seed pairs when
    ``keep_seed_pairs``, which helps small corpora)."""
    if source.dim != target.dim:
        raise AlignmentError(f"source vectors ({source.source}) have dimension {source.dim} but target "
                             f"vectors ({target.source}) have {target.dim}")
    seed = covered_pairs(source, target, pairs)
    if not seed:
        raise AlignmentError(f"none of the {len(pairs)} dictionary pairs has both words in the vectors "
                             f"({source.source}: {len(source)} words, {target.source}: {len(target)} words)")
    if refine_iterations < 0:
        raise AlignmentError(f"refine_iterations={refine_iterations} must be >= 0")
    src, tgt = normalize(source), normalize(target)
    idx = np.asarray(seed)
    W = procrustes(src.matrix[idx[:, 0]], tgt.matrix[idx[:, 1]])
    history = [{"iteration": 0, "pairs": len(seed)}]
    n_s, n_t = min(refine_vocab, len(src)), min(refine_vocab, len(tgt))
    for it in range(1, refine_iterations + 1):
        mapped = _unit(src.matrix[:n_s] @ W)
        induced = mutual_nn_pairs(mapped, tgt.matrix[:n_t], csls_k)
        train = list(dict.fromkeys((seed if keep_seed_pairs else []) + induced))
        if not train:
            break
        idx = np.asarray(train)
        W = procrustes(src.matrix[idx[:, 0]], tgt.matrix[idx[:, 1]])
        history.append({"iteration": it, "mutual_nn": len(induced), "pairs": len(train)})
    report = {"dictionary_pairs": len(pairs), "covered_pairs": len(seed), "refine_iterations": refine_iterations,
              "csls_k": csls_k, "history": history, "source_words": len(source), "target_words": len(target)}
    report = {"method": "procrustes", **report}
    return AlignedPair(src.transformed(W), tgt, W, report)


def identity_pair(source: StaticVectors, target: StaticVectors) -> AlignedPair:
    """Vectors already in one space (MUSE's ``wiki.multi.xx.vec``, OFA's multilingual
    vectors): no map is learned; both sides are only made unit length, and the map
    recorded is the identity."""
    if source.dim != target.dim:
        raise AlignmentError(f"source vectors ({source.source}) have dimension {source.dim} but target "
                             f"vectors ({target.source}) have {target.dim}")
    report = {"method": "identity", "reason": "vectors_aligned: the given vectors share one space",
              "source_words": len(source), "target_words": len(target)}
    return AlignedPair(unit_only(source), unit_only(target), np.eye(source.dim, dtype=np.float32), report)


def bli_evaluate(aligned: AlignedPair, test_pairs: Sequence[Pair], csls_k: int = 10, *,
                 reverse: bool = False, retrieval_vocab: int | None = None) -> dict[str, Any]:
    """BLI with CSLS retrieval: for each query word (source side, or target side when
    ``reverse``) with at least one gold translation in the other vocabulary, is the best
    CSLS match among all (or the first ``retrieval_vocab``) words a gold translation?"""
    query_vs, cand_vs = (aligned.target, aligned.source) if reverse else (aligned.source, aligned.target)
    gold: dict[int, set[int]] = {}
    for s, t in test_pairs:
        q, c = (t, s) if reverse else (s, t)
        i, j = query_vs.index.get(query_vs._key(q)), cand_vs.index.get(cand_vs._key(c))
        if i is not None and j is not None and (retrieval_vocab is None or j < retrieval_vocab):
            gold.setdefault(i, set()).add(j)
    if not gold:
        raise AlignmentError(f"no held-out pair of {len(test_pairs)} has both words in the vectors")
    C = _unit(cand_vs.matrix if retrieval_vocab is None else cand_vs.matrix[:retrieval_vocab])
    Qall = _unit(query_vs.matrix)
    queries = np.asarray(sorted(gold))
    Q = Qall[queries]
    r_q = knn_mean_similarity(Q, C, csls_k)
    r_c = knn_mean_similarity(C, Qall, csls_k)
    best = csls_nearest(Q, C, r_q, r_c)
    hits = sum(int(b) in gold[int(q)] for q, b in zip(queries, best))
    return {"p_at_1": hits / len(queries), "queries": len(queries), "hits": hits,
            "test_pairs": len(test_pairs), "direction": "target->source" if reverse else "source->target"}


def bli_precision_at_1(aligned: AlignedPair, test_pairs: Sequence[Pair], csls_k: int = 10) -> float:
    """BLI precision@1 (source -> target) with CSLS retrieval on held-out pairs."""
    return float(bli_evaluate(aligned, test_pairs, csls_k)["p_at_1"])
