"""lm-evaluation-harness (issue #30, item 3): the packaged task ``bible_continuation`` built
from local files, the harness run on our models from ``vocab-transfer evaluate
--lm-eval-task`` and as the pipeline's ``lm_eval_tasks``, an unknown task refused before
the first stage with the harness's own names, and a dataset that cannot be had offline
refused in seconds naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import config
from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
from transfer.evaluate.lm_eval_bible import continuation_docs, halves

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TASK_FILE = Path(__file__).resolve().parent.parent / "configs" / "lm_eval" / "bible_continuation" / \
    "bible_continuation.yaml"


def _harness():
    return pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (the 'lm-eval' extra)")


@pytest.fixture(scope="module")
def long_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama whose context holds a whole verse in a 400-token byte BPE (the
    harness refuses a continuation longer than the model's positions)."""
    from transfer.source.loading import save_model

    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400)
    out = tmp_path_factory.mktemp("src") / "tiny-long"
    save_model(tiny_llama(len(tokenizer), seed=0, max_position_embeddings=1024), tokenizer, out)
    return out


def test_continuation_documents_hold_the_true_half_once() -> None:
    verses = [(f"1.1.{i}", f"word{i} " * 3 + f"end{i} of verse number {i}") for i in range(12)]
    docs = continuation_docs(verses, max_docs=10)
    assert len(docs) == 10 and docs == continuation_docs(verses, max_docs=10)  # the same every time
    by_key = dict(verses)
    for doc in docs:
        first, second = halves(by_key[doc.key])
        assert doc.context == first and doc.choices[doc.label] == second
        assert len(doc.choices) == len(set(doc.choices)) == 4
    assert len({doc.label for doc in docs}) > 1  # the true half is not always in one place
    assert halves("too short") is None and halves("無" * 20) == ("無" * 10, "無" * 10)


def test_cli_runs_the_packaged_task_beside_bits_per_byte(tmp_path: Path, long_source: Path) -> None:
    _harness()
    from flows.cli import app

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(ENGLISH_SENTENCES[:4]) + "\n")
    out = tmp_path / "scores.json"
    ran = CliRunner().invoke(app, ["evaluate", str(long_source), "--text-file", str(texts), "--lm-eval-task",
                                   str(TASK_FILE), "--target-bible", "e", "--lm-eval-limit", "12",
                                   "--device", "cpu", "--json", str(out)])
    assert ran.exit_code == 0, ran.output
    payload = json.loads(out.read_text())
    assert payload["rows"][0]["metric"] == "bpb"  # bits per byte, and beside it the harness's metrics
    metrics = payload["lm_eval"]["rows"][0]["metrics"]
    assert set(metrics) == {"lm_eval.bible_continuation.acc", "lm_eval.bible_continuation.acc_norm"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    # beside SR-B: one JSON file holds both
    both = CliRunner().invoke(app, ["evaluate", str(long_source), "--task", "srb", "--target-bible", "e",
                                    "--lm-eval-task", "bible_continuation", "--lm-eval-limit", "4", "--device", "cpu",
                                    "--json", str(out)])
    assert both.exit_code == 0, both.output
    payload = json.loads(out.read_text())
    assert payload["task"] == "srb" and set(payload["lm_eval"]["rows"][0]["metrics"]) == set(metrics)
    # by name (configs/lm_eval is on the include path), without --target-bible: refused naming it
    refused = CliRunner().invoke(app, ["evaluate", str(long_source), "--lm-eval-task", "bible_continuation"])
    assert refused.exit_code == 2 and "--target-bible" in refused.output


def test_pipeline_scores_source_and_adapted_models(tmp_path: Path, long_source: Path, tiny_corpus: Path) -> None:
    _harness()
    from transfer.evaluate.lm_eval_bible import bible_docs
    from transfer.pipeline import run_adaptation
    from transfer.publish.registry_store import result_metrics

    cfg = config(tmp_path, long_source, tiny_corpus, train_steps=1, eval_texts=4, lm_eval_tasks=["bible_continuation"])
    assert len(bible_docs("e", dev_fraction=0.1, test_fraction=0.1)) == 500
    result = run_adaptation(cfg)
    assert set(result.task_scores) == {"source_model", "adapted_step0", "adapted_trained"}
    for scores in result.task_scores.values():
        assert set(scores) == {"lm_eval.bible_continuation.acc", "lm_eval.bible_continuation.acc_norm"}
    assert "lm_eval.bible_continuation.acc_norm.adapted_trained" in result_metrics(result)
    card = (Path(result.model_dir) / "README.md").read_text()
    assert "lm-evaluation-harness" in card and "bible_continuation acc_norm (lm-eval)" in card


def test_unknown_task_and_missing_data_are_refused_before_any_stage(tmp_path: Path, tiny_source: Path,
                                                                    tiny_corpus: Path, monkeypatch) -> None:
    _harness()
    from transfer.evaluate.lm_eval_tasks import LmEvalError
    from transfer.planning.plan import plan_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, lm_eval_tasks=["helaswag"])
    with pytest.raises(LmEvalError, match=r"\['helaswag'\] not among the .* tasks.*closest \[.*'hellaswag'"):
        plan_adaptation(cfg)  # the harness's index: built once per version into the cache (~20 s)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = cfg.model_copy(update={"lm_eval_tasks": ["hellaswag"]})
    with pytest.raises(LmEvalError, match="'hellaswag': its data cannot be loaded, offline .*HF_DATASETS_OFFLINE"
                                          ".*Rowan/hellaswag"):
        plan_adaptation(cfg)  # the index from the cache; the harness's own load fails at once, no retries
    assert not (Path(cfg.cache_dir) / "corpus").exists()
