"""Trans-tokenization and FOCUS beside ``mean`` and WECHSEL: SmolLM2-135M -> German (Bible).

Source model and 32k German byte-level BPE tokenizer come from the pipeline's stage cache
(``corpus``/``source``/``tokenizer`` stages of ``transfer.pipeline``, built when missing).
Trans-tokenization aligns the English KJV, WEB and BBE train verses (``k``/``4``/``3``)
against the German Elberfelder (``e``) train verses with eflomal at token level; FOCUS
trains fastText (one thread) on the German train split (Elberfelder + Schlachter)
pre-tokenized with the German tokenizer. WECHSEL uses the pipeline's own vector stages
(fastText on English k+4+3 and German e+s train verses, Procrustes on Ding; the settings
of ``AdaptConfig``'s defaults), so its row is what ``vocab-transfer adapt --strategy
wechsel`` would start from. Each strategy: BPB on the first 300 dev verses
(hash order, DESIGN's definition) at step 0 and after 20 embeddings-only steps of 4 x 256
tokens with the product's training recipe (``transfer.train.stage.training_config``: AdamW lr
5e-4, gradient clipping at 1.0, identical batches for every strategy), all in one run.

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/transtok_focus.py
    .venv/bin/python benchmarks/transtok_focus.py --smoke   # seconds: tiny model and data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # wechsel_assets

if TYPE_CHECKING:
    from transfer.init import StrategyResources

RESULTS = Path(__file__).parent / "results"
PARALLEL_SOURCES = ("k", "4", "3")
PARALLEL_TARGET = "e"


def _parallel_pairs(limit: int | None = None, sources: Sequence[str] = PARALLEL_SOURCES) -> list[tuple[str, str]]:
    from transfer.corpus.bible import verse_pairs

    pairs: list[tuple[str, str]] = []
    for code in sources:
        rows = verse_pairs(code, PARALLEL_TARGET, "train")[:limit]
        pairs += [(src, tgt) for _, src, tgt in rows]
    return pairs


def _real_assets(cache_dir: Path):
    """Source model folder, German tokenizer and corpus folder, from the stage cache."""
    from transformers import AutoTokenizer

    from transfer.corpus.stage import corpus_spec
    from transfer.engine.cache import StageCache
    from transfer.engine.stages import execute
    from transfer.settings.config import AdaptConfig
    from transfer.source.stage import source_spec
    from transfer.tokenizer.stage import tokenizer_spec

    cfg = AdaptConfig(cache_dir=cache_dir)
    cache = StageCache(cache_dir)
    corpus, corpus_cached = execute(corpus_spec(cfg), cache)
    source, source_cached = execute(source_spec(cfg), cache)
    tokenizer, tok_cached = execute(tokenizer_spec(cfg, corpus, source), cache)
    target_tok = AutoTokenizer.from_pretrained(tokenizer.path / "tokenizer")
    cached = {"corpus": corpus_cached, "source": source_cached, "tokenizer": tok_cached}
    return source.path / "model", target_tok, corpus.path, cached


def _aligned_vectors(cfg_updates: dict[str, Any], cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The align stage folder of the pipeline (fastText both sides + Procrustes), built when
    missing; and how long building took."""
    from transfer.corpus.stage import corpus_spec
    from transfer.engine.cache import StageCache
    from transfer.engine.stages import execute
    from transfer.settings.config import AdaptConfig
    from transfer.vectors.stage import align_stage_spec, vector_specs

    cfg = AdaptConfig(cache_dir=cache_dir, **cfg_updates)
    cache = StageCache(cache_dir)
    t0 = time.perf_counter()
    corpus, _ = execute(corpus_spec(cfg), cache)
    source_spec, target_spec = vector_specs(cfg, corpus)
    source_vectors, s_cached = execute(source_spec, cache)
    target_vectors, t_cached = execute(target_spec, cache)
    align, a_cached = execute(align_stage_spec(cfg, source_vectors, target_vectors, corpus), cache)
    info = {"seconds": time.perf_counter() - t0, "dim": cfg.vector_dim, "epochs": cfg.vector_epochs,
            "max_verses": cfg.vector_max_verses, "dictionary": cfg.dictionary,
            "cached": {"fasttext_source": s_cached, "fasttext_target": t_cached, "align": a_cached}}
    return align.path, info


def _smoke_assets(out: Path):
    """A tiny random Llama with byte-level BPE tokenizers trained on a few hundred verses."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from transfer.corpus.bible import read_texts
    from transfer.source.loading import save_model

    def bpe(texts: list[str], size: int) -> PreTrainedTokenizerFast:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=size, special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
        )

    english = read_texts("k", "train")[:300]
    german = read_texts(PARALLEL_TARGET, "train")[:300]
    source_tok, target_tok = bpe(english, 600), bpe(german, 600)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(source_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=64, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
    ))
    save_model(model, source_tok, out / "source")
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "train.txt").write_text("".join(t + "\n" for t in german))
    dev = read_texts(PARALLEL_TARGET, "dev")[:50]
    (corpus / "dev.target.txt").write_text("".join(t + "\n" for t in dev))
    return out / "source", target_tok, corpus, {}


def _smoke_dictionary(out: Path, verses: int) -> Path:
    """A MUSE file of the words spelled alike in the first ``verses`` English and German
    train verses (names, numbers): the smoke's seed dictionary, instead of parsing Ding's
    290k lines twice (alignment and held-out BLI)."""
    from transfer.corpus.bible import read_texts
    from transfer.vectors.static_vectors import tokenize_words

    def words(code: str) -> set[str]:
        return {w for text in read_texts(code, "train")[:verses] for w in tokenize_words(text)}

    shared = sorted(words(PARALLEL_SOURCES[0]) & words(PARALLEL_TARGET))
    path = out / "identical.muse.txt"
    path.write_text("".join(f"{w} {w}\n" for w in shared), encoding="utf-8")
    return path


# A row name "<strategy>+vectors" also hands the aligned static vectors to a strategy that
# does not need them (trans-tokenization then estimates its never-aligned tokens WECHSEL-style
# instead of falling back to the mean).
WITH_VECTORS = "+vectors"


def _wants_vectors(row: str) -> bool:
    from transfer.init import needs

    return row.endswith(WITH_VECTORS) or "vectors" in needs(row)


def _resources(row: str, corpus: Path, pairs: list[tuple[str, str]], vectors: StrategyResources) -> StrategyResources:
    """``vectors``: the aligned-vector resources, loaded once for every row that wants them."""
    from transfer.init import StrategyResources

    strategy = row.removesuffix(WITH_VECTORS)
    wants_vectors = _wants_vectors(row)
    base = vectors if wants_vectors else StrategyResources()
    if strategy == "trans_tokenization":
        return replace(base, parallel=pairs)
    if wants_vectors:
        return base
    if strategy == "focus":
        return StrategyResources(target_corpus=corpus / "train.txt")
    return StrategyResources()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from wechsel_assets import train_as_the_product

    from transfer.corpus.stage import iter_lines, read_lines
    from transfer.init import StrategyInputs, StrategyResources, initialize
    from transfer.init.surgery import get_source_embeddings, swap_vocabulary
    from transfer.source.loading import load_source
    from transfer.train import pack_train_split

    started = time.perf_counter()
    if args.smoke:
        work = Path(args.out_dir) / "transtok_focus_smoke"
        source_dir, target_tok, corpus, cached = _smoke_assets(work)
        # one English translation (each one read costs a pass over the Bible database)
        parallel_sources = PARALLEL_SOURCES[:1]
        pairs = _parallel_pairs(limit=600, sources=parallel_sources)
        steps, batch, block, n_eval = 2, 2, 64, 20
        params = {"focus": {"fasttext_dim": 16, "fasttext_epochs": 2, "fasttext_min_count": 2},
                  "trans_tokenization": {"align_rel_iterations": 0.1}}
        vector_cfg = {"vector_dim": 16, "vector_epochs": 1, "vector_max_verses": 300,
                      "source_train_bible": list(parallel_sources), "target_bible": [PARALLEL_TARGET],
                      "dictionary": str(_smoke_dictionary(work, 300))}
        vector_cache = work / "cache"
    else:
        source_dir, target_tok, corpus, cached = _real_assets(Path(args.cache_dir))
        parallel_sources = PARALLEL_SOURCES
        pairs = _parallel_pairs()
        steps, batch, block, n_eval = args.steps, 4, 256, args.eval_texts
        params = {}
        vector_cfg, vector_cache = {}, Path(args.cache_dir)
    vectors, vectors_info = StrategyResources(), None
    if any(_wants_vectors(s) for s in args.strategies):
        from transfer.init.resources import build_resources

        align_dir, vectors_info = _aligned_vectors(vector_cfg, vector_cache)
        vectors = build_resources("wechsel", {"token_vector_method": "ngram"}, {"vectors": align_dir})
    assets_seconds = time.perf_counter() - started
    texts = read_lines(corpus / "dev.target.txt", n_eval)
    blocks = pack_train_split(target_tok, iter_lines(corpus / "train.txt"), block)

    rows = []
    for name in args.strategies:
        strategy = name.removesuffix(WITH_VECTORS)
        model, source_tok = load_source(str(source_dir))
        inputs = StrategyInputs(
            source=get_source_embeddings(model), source_tokenizer=source_tok,
            target_tokenizer=target_tok, seed=0, resources=_resources(name, corpus, pairs, vectors),
        )
        t0 = time.perf_counter()
        target = initialize(strategy, inputs, **params.get(strategy, {}))
        init_seconds = time.perf_counter() - t0
        model = swap_vocabulary(model, target_tok, target, source_tokenizer=source_tok)

        log = train_as_the_product(model, target_tok, blocks, texts, steps=steps, batch_size=batch,
                                   seed=0, device="cpu")
        row = {
            "strategy": name,
            "bpb_step0": log.evaluations[0],
            f"bpb_step{steps}": log.evaluations[steps],
            "init_seconds": init_seconds,
            "train_seconds": log.seconds,
            "counts": target.report.counts,
            "notes": target.report.notes,
        }
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
        del model
    return {
        "settings": {
            "smoke": args.smoke, "parallel": f"{'+'.join(parallel_sources)} -> {PARALLEL_TARGET} train",
            "parallel_pairs": len(pairs), "eval": f"first {len(texts)} dev verses (hash order)",
            "steps": steps, "batch": batch, "block": block, "lr": 5e-4, "recipe": "product (clip 1.0)",
            "target_vocab": len(target_tok), "stages_cached": cached, "vectors": vectors_info,
        },
        "machine": {
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "loadavg_at_start": os.getloadavg(),
            "torch": torch.__version__,
        },
        "assets_seconds": assets_seconds,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=["mean", "trans_tokenization", "focus", "wechsel"],
                        help="rows to run; a name ending in +vectors also gets the aligned static vectors")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-texts", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="tiny model and data, seconds")
    parser.add_argument("--cache-dir", default="artifacts/cache")
    parser.add_argument("--out-dir", default="artifacts/bench", help="smoke-mode scratch folder")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    record = run(args)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    name = "transtok_focus_smoke.json" if args.smoke else "transtok_focus.json"
    tmp = results / f".{name}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, results / name)
    steps = record["settings"]["steps"]
    print(f"\n| strategy | BPB step 0 | BPB step {steps} | init s |\n|---|---|---|---|")
    for row in record["rows"]:
        print(f"| {row['strategy']} | {row['bpb_step0']:.3f} | {row[f'bpb_step{steps}']:.3f} "
              f"| {row['init_seconds']:.1f} |")
    return record


if __name__ == "__main__":
    main()
