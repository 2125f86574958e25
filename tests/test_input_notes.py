"""Warnings about well-formed but suspicious input that need no language model (issue #31
and #30): a corpus in decomposed or mixed Unicode forms is noted before the first stage,
and an evaluation file that overlaps the training corpus is warned with its share."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from tests.helpers import config
from tests.tiny import GERMAN_SENTENCES
from transfer.settings.input_warnings import input_warnings

UMLAUTS = [f"{s} Über die Brücke gehen Mädchen ({i})." for i in range(8) for s in GERMAN_SENTENCES]


def _checks(cfg) -> dict[str, str]:
    return {w.check: w.message for w in input_warnings(cfg)}


def test_a_decomposed_corpus_is_noted(tmp_path: Path, tiny_source: Path) -> None:
    nfd = tmp_path / "nfd.txt"
    nfd.write_text("\n".join(unicodedata.normalize("NFD", s) for s in UMLAUTS) + "\n")
    nfc = tmp_path / "nfc.txt"
    nfc.write_text("\n".join(UMLAUTS) + "\n")
    assert "mostly decomposed" in _checks(config(tmp_path, tiny_source, nfd))["normalization"]
    assert "normalization" not in _checks(config(tmp_path, tiny_source, nfc))


def test_an_evaluation_file_from_the_training_corpus_is_warned(tmp_path: Path, tiny_source: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(UMLAUTS) + "\n")
    seen = tmp_path / "seen.txt"
    seen.write_text("\n".join(UMLAUTS[:3] + ["Ein ganz neuer Satz, den das Korpus nicht hat."]) + "\n")
    fresh = tmp_path / "fresh.txt"
    fresh.write_text("Ein ganz neuer Satz, den das Korpus nicht hat.\n")
    warned = _checks(config(tmp_path, tiny_source, corpus, eval_files=[str(seen), str(fresh)]))
    assert "'seen'" in warned["eval_overlap"] and "75% of its sampled texts" in warned["eval_overlap"]
    assert "'fresh'" not in warned["eval_overlap"]


def test_an_evaluation_file_of_the_bible_verses_the_run_trains_on_is_warned(tmp_path: Path, tiny_source: Path) -> None:
    """The packaged Bible is training text too: an evaluation file of its train-split verses
    is warned; one of its test-split verses (held out by the same split) is not."""
    from transfer.corpus.bible import read_texts
    from transfer.corpus.splits import SplitFractions

    train, test = tmp_path / "verses_train.txt", tmp_path / "verses_test.txt"
    cfg = config(tmp_path, tiny_source, train, target_files=[], target_bible=["e"],
                 eval_files=[f"bible_train={train}", f"bible_test={test}"])
    fractions = SplitFractions(dev=cfg.dev_fraction, test=cfg.test_fraction)  # the run's own split
    trained = read_texts("e", "train", fractions=fractions)
    train.write_text("\n".join(trained[:50]) + "\n")
    # test verses whose text no train verse repeats (a few verses stand in several places)
    held_out = [t for t in read_texts("e", "test", fractions=fractions) if t not in set(trained)]
    test.write_text("\n".join(held_out[:50]) + "\n")
    (message,) = [w.message for w in input_warnings(cfg) if w.check == "eval_overlap"]
    assert "'bible_train'" in message and "100% of its sampled texts" in message


def test_a_source_folder_with_another_models_tokenizer(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    """A tokenizer with more tokens than the embedding has rows is refused before any stage; one
    whose end-of-text id the config does not list is warned; the folder's own passes both."""
    import json

    from tests.refusals import make_artifacts, refused
    from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.errors import ModelLoadError
    from transfer.planning.plan import plan_adaptation
    from transfer.source.loading import save_model

    small = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
    bigger = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES[::-1] * 3, 420)
    liar = tmp_path / "liar"
    save_model(tiny_llama(len(small), tie=True, seed=0), bigger, liar)
    artifacts = make_artifacts(tmp_path)
    where = {"cache_dir": artifacts / "cache", "output_dir": artifacts / "models"}
    refused("source folder whose tokenizer.json has more tokens than its embedding rows", "plan_adaptation",
            lambda: plan_adaptation(config(tmp_path, liar, tiny_corpus, **where)),
            r"tokenizer has \d+ tokens but the model's embedding has 300 rows", artifacts, ModelLoadError)
    refused("helper_model folder with another model's tokenizer", "plan_adaptation",  # the same folder as a helper
            lambda: plan_adaptation(config(tmp_path, tiny_source, tiny_corpus, helper_model=str(liar), strategy="clp",
                                           **where)),
            "helper_model .*tokenizer has", artifacts, ModelLoadError)
    # same size, but the config ends text with an id the tokenizer does not
    odd = tmp_path / "odd"
    save_model(tiny_llama(len(small), tie=True, seed=0), small, odd)
    settings = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**settings, "eos_token_id": 7}))
    assert "config.json lists end ids [7]" in _checks(config(tmp_path, odd, tiny_corpus))["source_tokenizer"]
    assert "source_tokenizer" not in _checks(config(tmp_path, tiny_source, tiny_corpus))
