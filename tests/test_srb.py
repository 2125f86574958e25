"""SR-B sentence retrieval (issue #30, item 2) on hand-made sets whose answer is known, on
causal and masked models, and from the command line on the packaged Bibles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.tiny import (
    ENGLISH_SENTENCES,
    tiny_bert,
    tiny_byte_bpe_tokenizer,
    tiny_llama,
    tiny_wordpiece_tokenizer,
)
from transfer.errors import CorpusError
from transfer.evaluate.srb import default_layer, sentence_retrieval, srb_verses, top_k_accuracy


def test_top_k_accuracy_counts_the_rank_of_the_right_candidate() -> None:
    eye = torch.eye(4)
    assert top_k_accuracy(eye, eye, ks=(1, 2)) == {"top1": 1.0, "top2": 1.0}
    # candidates shifted by one: the right one is never the most similar, always second
    near = torch.nn.functional.normalize(eye + 0.5 * eye.roll(1, dims=1), dim=1)
    assert top_k_accuracy(eye, near.roll(1, dims=0), ks=(1, 2)) == {"top1": 0.0, "top2": 1.0}


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_the_same_texts_retrieve_themselves(kind: str) -> None:
    texts = ENGLISH_SENTENCES[:12]
    if kind == "causal":
        tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
        model = tiny_llama(len(tokenizer), seed=0)
    else:
        tokenizer = tiny_wordpiece_tokenizer(ENGLISH_SENTENCES, 300)
        model = tiny_bert(len(tokenizer))
    result = sentence_retrieval(model, tokenizer, texts, texts, device="cpu")
    assert result.layer == default_layer(model) and result.n_verses == len(texts) > 4
    assert result.target_to_english == result.english_to_target == {"top1": 1.0, "top10": 1.0}


def test_a_translation_without_shared_verses_is_refused_naming_it(monkeypatch) -> None:
    import transfer.corpus.bible

    monkeypatch.setattr(transfer.corpus.bible, "verse_pairs", lambda *args, **kwargs: [])
    with pytest.raises(CorpusError, match="'h' \\(sw\\) has no test verses in common with the English"):
        srb_verses("h")


def test_cli_srb_on_the_packaged_bible(tmp_path: Path) -> None:
    from flows.cli import app
    from transfer.source.loading import save_model

    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
    folder = tmp_path / "tiny"
    save_model(tiny_llama(len(tokenizer), seed=0), tokenizer, folder)
    out = tmp_path / "srb.json"
    ran = CliRunner().invoke(app, ["evaluate", str(folder), "--task", "srb", "--target-bible", "e",
                                   "--device", "cpu", "--json", str(out)])
    assert ran.exit_code == 0, ran.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["n_verses"] == 500 and 0.0 <= row["target_to_english"]["top1"] <= row["target_to_english"]["top10"]
    refused = CliRunner().invoke(app, ["evaluate", str(folder), "--task", "srb"])
    assert refused.exit_code == 2 and "--target-bible" in refused.output
