"""``vector_max_documents`` bounds the target fastText text of a user corpus (each file's first
N train documents), as ``vector_max_verses`` bounds each Bible translation; unset, files are
read whole and the stage keys are the ones they always were."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.helpers import BIBLE, vector_stages
from transfer.corpus.bible import read_texts
from transfer.corpus.readers import iter_documents, split_documents
from transfer.settings.config import AdaptConfig
from transfer.vectors.stage import fasttext_lines


def test_each_corpus_file_is_capped_and_unset_keeps_the_key(tmp_path: Path, tiny_corpus: Path) -> None:
    second = tmp_path / "more.txt"
    second.write_text("".join(f"Noch ein Satz Nummer {i}.\n" for i in range(200)))
    cfg = AdaptConfig(**BIBLE, target_files=[str(tiny_corpus), str(second)], vector_max_verses=50,
                      cache_dir=tmp_path / "cache")
    _, _, whole, _ = vector_stages(cfg)
    capped_cfg = cfg.model_copy(update={"vector_max_documents": 7})
    _, _, capped, _ = vector_stages(capped_cfg)
    train = [list(split_documents(iter_documents(path), "train")) for path in (tiny_corpus, second)]
    assert all(len(docs) > 7 for docs in train)
    bible = read_texts("e", "train")[:50]
    assert list(fasttext_lines(whole)) == bible + train[0] + train[1]
    assert list(fasttext_lines(capped)) == bible + train[0][:7] + train[1][:7]
    assert capped.key != whole.key and "max_documents" not in whole.params


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="vector_max_documents"):
        AdaptConfig(vector_max_documents=0)
