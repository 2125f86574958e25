"""Model cards: Hugging Face front matter, metrics, data licences, and a loading recipe
that works on the folder it describes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from tests.helpers import adapt_result
from transfer.publish.model_card import CARD_FILE, render_model_card, write_model_card


def _front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def test_card_front_matter_metrics_and_licences(tmp_path: Path) -> None:
    result = adapt_result(tmp_path)
    card = render_model_card(result)
    meta = _front_matter(card)
    assert meta["language"] == ["de"]
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert "init-wechsel" in meta["tags"]
    metric = meta["model-index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "bits_per_byte" and metric["value"] == 2.5813

    # what was done and the metrics table
    assert "**wechsel**" in card and "32000 tokens" in card and "20 steps" in card
    assert "| adapted (wechsel), step 0 (initialization only) | target language | 3.7421 |" in card
    assert "| adapted (wechsel), after 20 training steps | target language | 2.5813 |" in card
    assert "| source model, own tokenizer | source language | 0.9500 |" in card
    assert "| target tokenizer | 1.210 | 5.200 |" in card
    assert "31000 computed" in card and "741 fallback" in card

    # data and licences: each translation and the source model (the dictionary, read from
    # the align stage's record: tests/test_model_card_lineage.py)
    licences = card.split("## Data and licences")[1].split("## How to load")[0]
    assert "Elberfelder 1932" in licences and "Schlachter 1951" in licences
    assert "King James" in licences and "baseline only" in licences
    assert "public domain" in licences
    assert "Apache License 2.0" in licences
    assert "run_manifest.json" in card and "0.1.0+abcdef" in card


def test_card_for_user_source_and_corpus(tmp_path: Path) -> None:
    card = render_model_card(adapt_result(tmp_path, source_model="/models/my-llama", target_bible=[],
                                     source_bible=[], target_files=["/data/sw.jsonl"],
                                     target_language="sw", strategy="mean"))
    meta = _front_matter(card)
    assert meta["license"] == "unknown" and "base_model" not in meta
    assert meta["language"] == ["sw"]
    assert "`sw.jsonl`" in card and "supplied by the user" in card
    assert "Ding" not in card and "Elberfelder" not in card  # only the data actually used
    assert "the source model's own licence applies" in card


def test_card_loading_recipe_runs_on_the_folder(tmp_path: Path, tiny_source: Path) -> None:
    folder = tmp_path / "tiny-de-mean"
    shutil.copytree(tiny_source, folder)
    result = adapt_result(folder, source_model=str(tiny_source))
    path = write_model_card(result, model_ref=str(folder))
    assert path == folder / CARD_FILE
    code = re.search(r"```python\n(.*?)```", path.read_text(), re.DOTALL).group(1)
    code = code.replace("max_new_tokens=20", "max_new_tokens=3")
    namespace: dict = {}
    exec(compile(code, "model-card", "exec"), namespace)  # noqa: S102 - the card's own recipe
    assert namespace["model"].config.vocab_size == len(namespace["tokenizer"])
    assert not list(folder.glob(".*.tmp"))  # written atomically


def test_card_and_metrics_of_a_masked_lm_name_the_masked_lm_loss(tmp_path: Path) -> None:
    from transfer.publish.registry_store import result_metrics

    result = adapt_result(tmp_path, full_steps=5).model_copy(update={"metric": "mlm_loss"})
    card = render_model_card(result)
    meta = _front_matter(card)
    # a masked-LM loss is not bits per byte: no BPB model-index entry, a fill-mask model
    assert meta["pipeline_tag"] == "fill-mask" and "model-index" not in meta
    assert "| model | texts | masked-LM loss (nats per masked token) |" in card
    assert "Bits per byte (lower is better)" not in card and "| bits per byte |" not in card
    assert "then the whole model for 5 steps" in card
    metrics = result_metrics(result)
    assert "mlm_loss.adapted_trained" in metrics and not any(k.startswith("bpb.") for k in metrics)
    assert metrics["mlm_loss.gain_vs_source"] == 2.69 - 2.58126
