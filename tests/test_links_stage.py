"""The ``links`` stage: the token alignment of the train pairs runs once and every
alignment-based strategy (trans-tokenization, ``combined``) reads the same counts; before,
each init aligned again, so a comparison paid eflomal twice and its strategies saw
different links (eflomal cannot be seeded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tests.helpers import config, write_tsv
from transfer.corpus.bible import verse_pairs
from transfer.engine.cache import StageOutput
from transfer.init.links import links_spec, read_link_counts
from transfer.init.stage import init_spec
from transfer.pipeline import run_adaptation


def test_one_alignment_serves_every_alignment_based_strategy(tmp_path: Path, tiny_source: Path,
                                                            tiny_corpus: Path) -> None:
    pairs = [(s, t) for _, s, t in verse_pairs("k", "e", "train")[:300]]
    cfg = config(tmp_path, tiny_source, tiny_corpus, parallel_files=[write_tsv(tmp_path, pairs)], train_steps=0,
                  strategy="trans_tokenization", strategy_params={"align_rel_iterations": 0.1}, eval_texts=4)
    first = run_adaptation(cfg)
    assert first.stages_cached["links"] is False
    second = run_adaptation(cfg.model_copy(update={"strategy": "combined"}))
    assert second.stages_cached["links"] is True  # not aligned again
    assert second.stages_cached["init"] is False
    note = first.init_report["notes"][0]
    assert note.startswith("aligned ") and "stage links" in note
    assert second.init_report["notes"][0] == note  # the same alignment, the same links

    entries = [p for p in (cfg.cache_dir / "links").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    counts = read_link_counts(entries[0])
    target = AutoTokenizer.from_pretrained(Path(first.model_dir))
    assert counts.shape[0] == len(target) and counts.nnz > 0
    assert counts.sum() > 0 and (counts.data > 0).all()


def test_the_alignment_settings_make_the_key(tmp_path: Path) -> None:
    cfg = config(tmp_path, tmp_path, tmp_path, target_files=[], target_bible=["e"], source_train_bible=["k"],
                  strategy="trans_tokenization")
    fake = {name: StageOutput(name, name[0] * 24, tmp_path) for name in ("source", "tokenizer", "corpus")}
    key = links_spec(cfg, fake["source"], fake["tokenizer"], fake["corpus"]).key
    fewer = cfg.model_copy(update={"parallel_max_pairs": 100})
    assert links_spec(fewer, fake["source"], fake["tokenizer"], fake["corpus"]).key != key
    more = cfg.model_copy(update={"strategy_params": {"align_rel_iterations": 2.0}})
    assert links_spec(more, fake["source"], fake["tokenizer"], fake["corpus"]).key != key
    # the strategy's own weighting of the links is not the alignment's business
    combined = cfg.model_copy(update={"strategy": "combined", "strategy_params": {"shrinkage": 3.0}})
    assert links_spec(combined, fake["source"], fake["tokenizer"], fake["corpus"]).key == key

    # an init that reads the links depends on them, not on the corpus's pairs directly
    output = StageOutput("links", key, tmp_path)
    spec = init_spec(cfg, fake["source"], fake["tokenizer"], corpus=fake["corpus"], links=output)
    assert set(spec.upstream) == {"source", "tokenizer", "links"}
    assert "parallel_max_pairs" not in spec.params


def test_an_alignment_based_init_without_the_links_stage_is_refused(tmp_path: Path) -> None:
    from transfer.errors import StrategyResourceError

    fake = {name: StageOutput(name, name[0] * 24, tmp_path) for name in ("source", "tokenizer", "corpus")}
    for strategy in ("trans_tokenization", "combined"):
        cfg = config(tmp_path, tmp_path, tmp_path, target_files=[], target_bible=["e"], strategy=strategy)
        with pytest.raises(StrategyResourceError, match=f"strategy '{strategy}' reads token alignments: pass links="):
            init_spec(cfg, fake["source"], fake["tokenizer"], corpus=fake["corpus"])
    # strategies without alignments need no links stage
    mean = config(tmp_path, tmp_path, tmp_path, target_files=[], target_bible=["e"], strategy="mean")
    assert set(init_spec(mean, fake["source"], fake["tokenizer"], corpus=fake["corpus"]).upstream) == {
        "source", "tokenizer"}
