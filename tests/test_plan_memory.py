"""The dry-run plan's peak memory is the trainer's own estimate for the model it will train
(the source's real layer count and widths), not a formula of its own with 32 layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer.engine.cache import StageCache
from transfer.engine.stages import execute
from transfer.planning.plan import plan_adaptation
from transfer.settings.config import AdaptConfig
from transfer.source.loading import load_source
from transfer.source.stage import source_spec
from transfer.train.memory import estimate_training_memory


def _config(tmp_path: Path, source: Path, corpus: Path, **overrides) -> AdaptConfig:
    settings = {
        "source_model": str(source), "target_language": "de", "target_bible": [], "source_bible": [],
        "target_files": [str(corpus)], "vocab_size": 350, "train_steps": 2, "full_steps": 2,
        "batch_size": 4, "block_size": 32, "device": "cpu", "precision": "fp32", "strategy": "mean",
        "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "models",
    }
    return AdaptConfig(**{**settings, **overrides})


def _trainer_estimate(source: Path, cfg: AdaptConfig, *, full: bool) -> int:
    """What the trainer estimates for the 2-layer source with the target vocabulary."""
    model, _ = load_source(str(source))
    assert model.config.num_hidden_layers == 2
    model.resize_token_embeddings(cfg.vocab_size)
    if full:
        trainable = sum(p.numel() for p in model.parameters())
    else:  # tied head: the input embedding is all that trains
        trainable = model.get_input_embeddings().weight.numel()
    return estimate_training_memory(model, batch_size=cfg.batch_size, block_size=cfg.block_size,
                                    trainable_parameters=trainable, body_frozen=not full).total


@pytest.mark.parametrize("full_steps", [2, 0])
def test_plan_memory_is_the_trainers_estimate(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                              full_steps: int) -> None:
    cfg = _config(tmp_path, tiny_source, tiny_corpus, full_steps=full_steps)
    expected = _trainer_estimate(tiny_source, cfg, full=bool(full_steps))
    # from the source folder's config (source stage not built yet) ...
    assert plan_adaptation(cfg, measure=False).peak_memory_bytes == expected
    # ... and from the cached source stage's copy
    execute(source_spec(cfg), StageCache(cfg.cache_dir))
    plan = plan_adaptation(cfg, measure=False)
    assert next(s for s in plan.stages if s.stage == "source").cached
    assert plan.peak_memory_bytes == expected


def test_no_train_stage_no_memory_estimate(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = _config(tmp_path, tiny_source, tiny_corpus, train_steps=0, full_steps=0)
    assert plan_adaptation(cfg, measure=False).peak_memory_bytes is None


# ------------------------------------------------ the links stage's time estimate

def test_links_estimate_counts_the_pairs_eflomal_will_align(tmp_path: Path, tiny_source: Path) -> None:
    from transfer.planning.estimates import parallel_pairs_estimate

    bible = AdaptConfig(source_model=str(tiny_source), cache_dir=tmp_path / "cache")
    assert parallel_pairs_estimate(bible) == 3 * 28_000  # three English translations' train verses
    assert parallel_pairs_estimate(bible.model_copy(update={"parallel_max_pairs": 1000})) == 3000
    # your own files: a TSV and a Moses pair (prefix P, files P.en and P.de), by their size
    (tmp_path / "a.tsv").write_text("a b\tc d\n" * 500)
    (tmp_path / "p.en").write_text("x" * 25_000)
    (tmp_path / "p.de").write_text("y" * 25_000)
    (tmp_path / "p.fr").write_text("z" * 90_000)  # another language's side: not this run's pair
    (tmp_path / "p.en.bak").write_text("z" * 90_000)
    own = bible.model_copy(update={"parallel_files": [str(tmp_path / "a.tsv"), str(tmp_path / "p")]})
    assert parallel_pairs_estimate(own) == 4000 // 250 + 50_000 // 250
    # a gzipped file holds about three times its size in text
    import gzip

    (tmp_path / "b.tsv.gz").write_bytes(gzip.compress(b"x" * 30_000, mtime=0))
    size = (tmp_path / "b.tsv.gz").stat().st_size
    packed = bible.model_copy(update={"parallel_files": [str(tmp_path / "b.tsv.gz")]})
    assert parallel_pairs_estimate(packed) == int(size * 3 / 250)


def test_plan_gives_the_links_stage_its_alignment_time(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = _config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", target_bible=["e"],
                  target_files=[])
    plan = plan_adaptation(cfg, measure=True)
    links = next(s for s in plan.stages if s.stage == "links")
    # eflomal's time grows with sqrt(pairs) (fewer iterations for a larger corpus): 84,000
    # verse pairs took 137 s on 2 cores
    assert 120 < links.seconds < 300
    capped = plan_adaptation(cfg.model_copy(update={"parallel_max_pairs": 100}), measure=True)
    assert next(s for s in capped.stages if s.stage == "links").seconds < 15


def test_vector_stages_and_several_languages_get_their_own_estimates(tmp_path: Path, tiny_source: Path) -> None:
    """fastText's time follows the bytes it reads times its epochs (each side its own text); an
    align stage that induces its dictionary runs eflomal on every language's pairs; a run of
    several languages pairs each language's first Bible with the source Bibles."""
    from transfer.planning.estimates import SourceSize, parallel_pairs_estimate, stage_seconds

    one = AdaptConfig(source_model=str(tiny_source), target_language="sw", cache_dir=tmp_path / "cache")
    five = AdaptConfig(source_model=str(tiny_source), target_language=["sw", "id", "tr", "vi", "pl"],
                       cache_dir=tmp_path / "cache")  # each language's packaged Bibles
    assert parallel_pairs_estimate(five) == 5 * parallel_pairs_estimate(one)
    capped = five.model_copy(update={"parallel_max_pairs": 5000})
    assert parallel_pairs_estimate(capped) == 5 * 5000 * len(one.source_train_bible)

    def seconds(cfg: AdaptConfig, label: str, **params) -> float:
        return stage_seconds(label.split(".")[0], cfg, SourceSize(), 1e10, 0, label, params)

    # the target side of five Bibles against the source side's English Bibles; more epochs, more time
    assert seconds(five, "fasttext.target") > seconds(one, "fasttext.target") > 30
    assert seconds(one, "fasttext.source") == pytest.approx(
        2 + len(one.source_train_bible) * 4e6 * one.vector_epochs / 0.7e6)
    more_epochs = one.model_copy(update={"vector_epochs": 20})
    assert seconds(more_epochs, "fasttext.target") > 1.9 * seconds(one, "fasttext.target") - 5
    assert seconds(five, "align", dictionaries="induced") > 200 > seconds(five, "align", dictionaries="file")
    assert seconds(capped, "align", dictionaries="induced") < seconds(five, "align", dictionaries="induced")
