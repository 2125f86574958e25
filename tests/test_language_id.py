"""Language identification of a run's own files (issue #31, item 1): a file mostly not in
its declared language is warned with the share read as that language and the language it
looks like; a parallel corpus whose sides look swapped is refused before the first stage,
telling the user to swap them; a language the identifier does not know is noted as not
checked, never an error.

The texts are real: verses of the King James Version (``k``), the Elberfelder Bible
(``e``), Louis Segond (``l``) and the Swahili Union Version (``h``), written to tiny files.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers import config, write_tsv
from tests.refusals import make_artifacts, record, refused
from transfer.corpus.bible import read_texts, verse_pairs
from transfer.errors import ParallelCorpusError
from transfer.pipeline import run_adaptation
from transfer.settings.input_warnings import input_warnings, run_notes
from transfer.settings.language_id import (
    NOT_CHECKED,
    identify,
    is_checked,
    language_share,
    primary_subtag,
    same_language,
    sample_chunks,
)
from transfer.settings.validate import validate_config

N = 120  # verses per file: ~18,000 characters, 50 sampled passages


@pytest.fixture(scope="module")
def verses() -> dict[str, list[str]]:
    return {code: read_texts(code, "train")[:N] for code in ("k", "e", "l", "h")}


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    return [(s, t) for _, s, t in verse_pairs("k", "e", "train")[:N]]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _warnings(cfg, case: str) -> dict[str, list[str]]:
    """The input warnings by check; the seconds they took are recorded for docs/bad_inputs.md."""
    start = time.perf_counter()
    found = input_warnings(cfg)
    seconds = time.perf_counter() - start
    by_check: dict[str, list[str]] = {}
    for warning in found:
        by_check.setdefault(warning.check, []).append(warning.message)
    for check in ("language", "eval_language", "parallel_language", "dictionary_language", "vectors_language",
                  "parallel_alignment", "language_not_checked"):
        if check in by_check:
            record(case, "input_warnings (run notes, before the first stage)", by_check[check][0], seconds)
    return by_check


def test_codes_compare_as_primary_subtags_and_macrolanguages() -> None:
    assert primary_subtag("pt-BR") == "pt" and primary_subtag("deu") == "de" and primary_subtag("fil") == "tl"
    assert same_language("id", "ms") and same_language("nb", "no") and not same_language("de", "nl")
    assert is_checked("sw") and is_checked("pt-BR") and is_checked("nb") and is_checked("fil")
    assert not is_checked("gsw") and not is_checked("qaa")
    assert identify("Und Gott sprach: Es werde Licht! und es ward Licht, und Gott sah das Licht.") == "de"
    assert identify("12:3 -- 4, 5") is None  # no letters, no language


def test_the_sample_is_chunks_of_the_head_spread_evenly() -> None:
    lines = [f"line number {i} of a long file" for i in range(100_000)]
    chunks = sample_chunks(lines, chunk_chars=200, max_chunks=50, sample_chars=1 << 16)
    assert len(chunks) == 50 and all(len(c) >= 200 for c in chunks[:-1])
    assert "line number 0 " in chunks[0] and "line number 1999 " not in " ".join(chunks)  # the head only
    long = sample_chunks(["word " * 10_000], chunk_chars=200, max_chunks=1000, sample_chars=1 << 16)
    assert all(len(c) <= 400 for c in long)  # one long document is cut at spaces


def test_english_given_as_swahili_warns_with_the_share(tmp_path: Path, tiny_source: Path, verses) -> None:
    english = _write(tmp_path / "english.txt", verses["k"])
    cfg = config(tmp_path, tiny_source, english, target_language="sw")
    warned = _warnings(cfg, "target file english.txt given as target_language='sw'")
    (message,) = warned["language"]
    assert "english.txt" in message
    assert re.search(r"\b0% of its 50 sampled passages read as Swahili \(sw\)", message), message
    assert "looks like English (en) (100%)" in message
    assert any(note.startswith("warning: target corpus file") for note in run_notes(cfg))
    validate_config(cfg)  # a warning, not a refusal


def test_a_corpus_in_its_declared_language_is_not_warned(tmp_path: Path, tiny_source: Path, verses,
                                                         tiny_corpus: Path) -> None:
    german = _write(tmp_path / "german.txt", verses["e"])
    swahili = _write(tmp_path / "swahili.txt", verses["h"])
    for path, language in ((german, "de"), (swahili, "sw"), (tiny_corpus, "de"), (german, "de-CH")):
        warned = _warnings(config(tmp_path, tiny_source, path, target_language=language), "")
        assert "language" not in warned and "language_not_checked" not in warned, (path, language)
    assert language_share(verses["h"], "sw").share == 1.0


def test_a_swapped_parallel_tsv_is_refused_telling_to_swap(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                          pairs) -> None:
    swapped = write_tsv(tmp_path, [(t, s) for s, t in pairs])  # German first: target language first
    artifacts = make_artifacts(tmp_path)
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", parallel_files=[swapped],
                 cache_dir=artifacts / "cache", output_dir=artifacts / "models")
    message = refused("parallel TSV with its columns swapped (German first, declared en -> de)",
                      "validate_config (run_adaptation) -> _check_parallel_files -> check_parallel_languages",
                      lambda: run_adaptation(cfg), r"look swapped.*swap the columns", artifacts,
                      ParallelCorpusError)
    assert "source side reads as German (de) (100% of" in message and "target side as English (en)" in message
    right = tmp_path / "right"
    right.mkdir()
    validate_config(cfg.model_copy(update={"parallel_files": [write_tsv(right, pairs)]}))  # the right order passes


def test_swapped_moses_files_and_jsonl_fields_name_their_fix(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                           pairs) -> None:
    prefix = tmp_path / "bible.en-de"
    _write(Path(f"{prefix}.en"), [t for _, t in pairs])  # the German side under .en
    _write(Path(f"{prefix}.de"), [s for s, _ in pairs])
    jsonl = tmp_path / "bible.jsonl"
    jsonl.write_text("".join(json.dumps({"en": t, "de": s}) + "\n" for s, t in pairs), encoding="utf-8")
    for entry, fix in ((str(prefix), "swap the two files' names"), (str(jsonl), "parallel_fields=['de', 'en']")):
        cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", parallel_files=[entry])
        with pytest.raises(ParallelCorpusError, match="look swapped") as error:
            validate_config(cfg)
        assert fix in str(error.value), str(error.value)


def test_a_parallel_side_in_another_language_warns(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                   verses) -> None:
    french = write_tsv(tmp_path, list(zip(verses["k"], verses["l"])))  # English TAB French, declared en -> de
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", parallel_files=[french])
    validate_config(cfg)  # not swapped: English is where it should be
    warned = _warnings(cfg, "parallel TSV whose target side is French (declared de)")
    (message,) = warned["parallel_language"]
    assert "target side: 0% of its" in message and "read as German (de)" in message and "French (fr)" in message


def test_an_unknown_language_is_not_checked_never_an_error(tmp_path: Path, tiny_source: Path, verses) -> None:
    german = _write(tmp_path / "zuerich.txt", verses["e"])
    cfg = config(tmp_path, tiny_source, german, target_language="gsw")  # Swiss German: py3langid lacks it
    warned = _warnings(cfg, "target_language='gsw' (a language py3langid does not know)")
    assert "language" not in warned
    (note,) = warned["language_not_checked"]
    assert NOT_CHECKED in note and "'gsw'" in note and "target corpus files" in note
    assert any(n.startswith("note: ") and NOT_CHECKED in n for n in run_notes(cfg))
    validate_config(cfg)


def test_an_evaluation_file_in_another_language_warns(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                      verses) -> None:
    english = _write(tmp_path / "news.txt", verses["k"])
    german = _write(tmp_path / "wiki.txt", verses["e"])
    cfg = config(tmp_path, tiny_source, tiny_corpus, eval_files=[str(english), f"wiki={german}"])
    warned = _warnings(cfg, "evaluation file news.txt in English (target de)")
    (message,) = warned["eval_language"]
    assert "'news'" in message and "looks like English (en)" in message


def test_a_dictionary_with_its_sides_swapped_warns(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                   verses) -> None:
    def words(texts: list[str]) -> list[str]:
        return list(dict.fromkeys(w for t in texts for w in re.findall(r"\w+", t)))

    en, de = words(verses["k"]), words(verses["e"])
    muse = _write(tmp_path / "de-en.txt", [f"{d} {e}" for d, e in zip(de, en)])  # German first
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="wechsel", dictionary=str(muse))
    warned = _warnings(cfg, "MUSE dictionary with German first (source en, target de)")
    (message,) = warned["dictionary_language"]
    assert "look swapped" in message and "swap the columns" in message
    right = _write(tmp_path / "en-de.txt", [f"{e} {d}" for d, e in zip(de, en)])
    assert "dictionary_language" not in _warnings(cfg.model_copy(update={"dictionary": str(right)}), "")


def _vec(path: Path, texts: list[str]) -> Path:
    """A word2vec text file of ``texts``' words, commonest first (as fastText writes .vec)."""
    from collections import Counter

    words = [w for w, _ in Counter(w for t in texts for w in re.findall(r"\w+", t.lower())).most_common()]
    return _write(path, [f"{len(words)} 8", *(f"{w}" + " 0.5 -0.5" * 4 for w in words)])


def test_vectors_of_another_language_warn_and_swapped_ones_are_said(tmp_path: Path, tiny_source: Path,
                                                                      tiny_corpus: Path, verses) -> None:
    english, german, french = (_vec(tmp_path / f"cc.{lang}.vec", verses[code])
                               for lang, code in (("en", "k"), ("de", "e"), ("fr", "l")))
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="wechsel", source_vectors=str(english),
                 target_vectors=str(french), vector_dim=8)
    warned = _warnings(cfg, "target_vectors cc.fr.vec for German (target de)")
    (message,) = warned["vectors_language"]
    assert "target_vectors" in message and "looks like French (fr)" in message and "German (de)" in message
    swapped = cfg.model_copy(update={"source_vectors": str(german), "target_vectors": str(english)})
    (message,) = _warnings(swapped, "source_vectors and target_vectors swapped (source en, target de)")["vectors_language"]
    assert "look swapped" in message and "swap the two settings" in message
    right = cfg.model_copy(update={"target_vectors": str(german)})
    assert "vectors_language" not in _warnings(right, "")
    # a strategy that reads no vectors: the files are not its inputs, nothing is said
    assert "vectors_language" not in _warnings(cfg.model_copy(update={"strategy": "mean"}), "")


def test_head_words_reads_a_fasttext_bin_dictionary_without_its_vectors(tmp_path: Path, verses) -> None:
    import subprocess
    import sys

    from transfer.vectors.vector_formats import head_words

    # tiny vectors, one epoch, in a child process as the product trains them (fastText stops at
    # a NaN loss on some runs inside a process that has run other tests)
    text = _write(tmp_path / "de.txt", [t.lower() for t in read_texts("e", "train")[:3000]])
    script = ("import json, sys; from pathlib import Path; from transfer.vectors.fasttext_training import _train_model; "
              "m = _train_model(Path(sys.argv[1]), {'dim': 8, 'epoch': 1, 'minCount': 1, 'bucket': 1000, 'seed': 0, "
              "'thread': 1}); m.save_model(sys.argv[2]); print(json.dumps(m.get_words()[:50]))")
    done = subprocess.run([sys.executable, "-c", script, str(text), str(tmp_path / "de.bin")], capture_output=True,
                          text=True, check=True, timeout=120)
    words = head_words(tmp_path / "de.bin", n=50)
    assert words == json.loads(done.stdout)  # fastText's own order: commonest first
    vec = _vec(tmp_path / "de.vec", verses["e"])
    assert head_words(vec, n=5) == vec.read_text().splitlines()[1].split()[:1] + [
        line.split()[0] for line in vec.read_text().splitlines()[2:6]]


def test_a_parallel_file_whose_lines_slipped_warns(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                   pairs) -> None:
    """Both sides in the right languages, but the German side one line late (a header line on
    it only): the sides' lengths no longer correlate, and the run is warned before any stage."""
    from transfer.corpus.parallel_alignment import length_correlation

    assert length_correlation(pairs) > 0.9  # aligned verses
    _write(tmp_path / "bible.en", [s for s, _ in pairs])
    _write(tmp_path / "bible.de", ["Die Heilige Schrift"] + [t for _, t in pairs][:-1])
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization",
                 parallel_files=[str(tmp_path / "bible")])
    warned = _warnings(cfg, "parallel file whose German side is one line late (a header line)")
    (message,) = warned["parallel_alignment"]
    assert "'" + str(tmp_path / "bible") + "'" in message and "are the lines aligned" in message
    _write(tmp_path / "bible.de", [t for _, t in pairs])
    assert "parallel_alignment" not in _warnings(cfg, "")
