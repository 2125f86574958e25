"""The model card lists the data a run's vector stages read, from those stages' own records:
a German WECHSEL or OFA run aligned on the Ding dictionary names Ding and its GPL licence;
a run aligned on an eflomal-induced dictionary does not.

The fastText and align stages are the real builders on a few hundred verses (seconds), so
the records the card reads are exactly what a run writes; the run's result is assembled
around them rather than running the whole pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.stages import execute
from transfer.publish.manifest import MANIFEST_FILE
from transfer.publish.model_card import render_model_card
from transfer.publish.result import AdaptResult
from transfer.settings.config import AdaptConfig
from transfer.vectors.dictionaries import DING_DE_EN
from transfer.vectors.stage import align_stage_spec, vector_specs

SMALL = {"source_model": "smollm2", "target_language": "de", "target_bible": ["e"], "source_bible": ["k"],
         "source_train_bible": ["k"], "vector_dim": 8, "vector_epochs": 1, "vector_max_verses": 400,
         "parallel_max_pairs": 100, "train_steps": 0}


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StageOutput, StageOutput, StageOutput]:
    """The corpus stage and the source and target fastText stages, built once for every case below."""
    cache_dir = tmp_path_factory.mktemp("cache")
    cfg = AdaptConfig(**SMALL, cache_dir=cache_dir)
    cache = StageCache(cache_dir)
    corpus = execute(corpus_spec(cfg), cache)[0]
    source_spec, target_spec = vector_specs(cfg, corpus)
    return cache_dir, execute(source_spec, cache)[0], execute(target_spec, cache)[0], corpus


def _run(vectors, tmp_path: Path, *, strategy: str, dictionary: str, in_manifest: bool = False) -> AdaptResult:
    """A finished run's result whose stage keys lead to a real align stage of ``dictionary``."""
    cache_dir, source, target, corpus = vectors
    cfg = AdaptConfig(**SMALL, strategy=strategy, dictionary=dictionary, cache_dir=cache_dir,
                      output_dir=tmp_path / "models")
    align, _ = execute(align_stage_spec(cfg, source, target, corpus), StageCache(cache_dir))
    vector_keys = {"fasttext:source": source.key, "fasttext:target": target.key, "align": align.key}
    model_dir = tmp_path / "models" / cfg.model_name()
    model_dir.mkdir(parents=True)
    if in_manifest:  # only the run manifest's lineage ("fasttext.source": "fasttext:<key>") names them
        lineage = {"fasttext.source": f"fasttext:{source.key}", "fasttext.target": f"fasttext:{target.key}",
                   "align": f"align:{align.key}"}
        (model_dir / MANIFEST_FILE).write_text(json.dumps({"stage_keys": lineage}))
    return AdaptResult(
        config=cfg, code_version="test", model_dir=str(model_dir),
        stage_keys={"corpus": "c", "source": "s", "tokenizer": "t", "init": "i", "final": "i",
                    **({} if in_manifest else vector_keys)},
        stages_cached={}, scores={"source_model_on_target": 2.7, "adapted_step0": 3.1},
        fertility={"source": {"tokens_per_word": 2.0}, "target": {"tokens_per_word": 1.2}},
        init_report={"counts": {"computed": 900, "fallback": 100}}, train_log=None, seconds=1.0,
    )


def _data_section(card: str) -> str:
    return card.split("## Data and licences")[1].split("## How to load")[0]


@pytest.mark.skipif(not DING_DE_EN.is_file(), reason="Debian package trans-de-en is not installed")
@pytest.mark.parametrize("strategy", ["wechsel", "ofa"])
def test_ding_aligned_run_lists_ding_and_its_gpl_licence(vectors, tmp_path: Path, strategy: str) -> None:
    data = _data_section(render_model_card(_run(vectors, tmp_path, strategy=strategy, dictionary="ding")))
    ding = [line for line in data.splitlines() if "Ding German-English dictionary" in line]
    assert len(ding) == 1 and ding[0].rstrip(" |").endswith("GNU GPL"), data
    # the source-language text of the source vectors, from the fastText stage's record
    assert "King James Version" in data and "static word vectors" in data
    assert "induced with eflomal" not in data


@pytest.mark.skipif(not DING_DE_EN.is_file(), reason="Debian package trans-de-en is not installed")
def test_ding_found_through_the_run_manifest(vectors, tmp_path: Path) -> None:
    result = _run(vectors, tmp_path, strategy="wechsel", dictionary="auto", in_manifest=True)
    assert "align" not in result.stage_keys
    data = _data_section(render_model_card(result))
    assert "GNU GPL" in data and "King James Version" in data


def test_induced_dictionary_run_does_not_list_ding(vectors, tmp_path: Path) -> None:
    data = _data_section(render_model_card(_run(vectors, tmp_path, strategy="wechsel", dictionary="induced")))
    assert "Ding" not in data and "GNU GPL" not in data
    assert "induced with eflomal from the train verses of `k`-`e`" in data


def test_registry_record_reads_the_source_stage_record(tmp_path: Path, tiny_source: Path) -> None:
    """The registered lineage (fingerprint, architecture) comes from the source stage's
    own ``source.json``, found through the result's stage keys."""
    from transfer.publish.registry_store import record_from_result
    from transfer.source.stage import source_spec

    cfg = AdaptConfig(source_model=str(tiny_source), target_language="de", cache_dir=tmp_path / "cache",
                      output_dir=tmp_path / "models")
    spec = source_spec(cfg)
    source, _ = execute(spec, StageCache(cfg.cache_dir))
    result = AdaptResult(
        config=cfg, code_version="test", model_dir=str(tmp_path / "models" / "m"),
        stage_keys={"source": source.key, "init": "i", "final": "i"}, stages_cached={},
        scores={"adapted_step0": 3.0}, fertility={}, init_report={}, train_log=None, seconds=1.0)
    record = record_from_result(result)
    assert record.source_fingerprint == spec.inputs["weights"]
    assert record.source_architecture and record.source_architecture.endswith("ForCausalLM")
    assert record.stage_keys["source"] == f"source:{source.key}" and record.stage_keys["final"] == "init:i"
