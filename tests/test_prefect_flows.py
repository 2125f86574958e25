"""The Prefect product on a tiny model: progress and report artifacts, the training
concurrency limit, the batch flow (one failing language does not stop the others),
typed parameters, the languages config and the deployments built from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tests.helpers import flow_artifacts, flow_config, languages_file
from transfer.settings.config import AdaptConfig

REPO = Path(__file__).resolve().parent.parent


def test_progress_reports_and_training_slot(prefect_harness, tmp_path: Path, tiny_source: Path,
                                            tiny_corpus: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows import reports
    from flows.adapt_flow import adapt_flow, training_limit_name

    seen: list[float] = []

    def read_back(artifact_id, percent: float, description: str) -> None:
        # what the Prefect API holds right after each update, read from the server
        with get_client(sync_client=True) as client:
            artifact = client.read_artifacts()
            data = next(a.data for a in artifact if a.id == artifact_id)
        seen.append(float(data))

    reports.progress_observers.append(read_back)
    try:
        state = adapt_flow(flow_config(tmp_path, tiny_source, tiny_corpus), return_state=True)
    finally:
        reports.progress_observers.remove(read_back)
    assert state.is_completed(), state.message
    distinct = sorted(set(seen))
    assert len(distinct) >= 3 and distinct[0] == 0.0 and distinct[-1] == 100.0, seen
    assert seen == sorted(seen), "progress never goes back"

    artifacts = flow_artifacts(state.state_details.flow_run_id)
    assert {"progress", "markdown", "table"} <= {a.type for a in artifacts}
    # several markdown artifacts (summary, curve link) come back in no fixed order
    assert any("bits per byte" in (a.data or "") for a in artifacts if a.type == "markdown")
    links = [a for a in flow_artifacts(state.state_details.flow_run_id) if "learning-curve" in (a.key or "")]
    assert links and "learning_curve.png" in links[0].data
    png = Path(tmp_path / "reports" / state.result().config.model_name() / "learning_curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"

    # the training stage took this machine's one training slot and gave it back
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(training_limit_name())
    assert limit.limit == 1 and limit.active_slots == 0


def test_batch_goes_on_after_a_failing_language(prefect_harness, tmp_path: Path, tiny_source: Path,
                                               tiny_corpus: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.batch_flow import batch_flow

    languages = languages_file(tmp_path, tiny_corpus, tiny_source)
    state = batch_flow(str(languages), return_state=True)
    assert state.is_failed()
    assert "xx" in state.message and "1 of 2" in state.message
    with get_client(sync_client=True) as client:
        summary = client.read_latest_artifacts()
    table = next(a for a in summary if a.key == "batch-summary")
    rows = {row["language"]: row for row in _table_rows(table.data)}
    assert rows["de"]["state"] == "Completed"
    import json

    record = json.loads((tmp_path / "models" / "tiny-llama-de-mean" / "adaptation.json").read_text())
    # the same float through JSON twice (the artifact's raw value, not the 4-decimal text): equal
    assert rows["de"]["bpb_trained"] == pytest.approx(record["scores"]["adapted_trained"], rel=1e-3)
    assert rows["xx"]["state"] == "Failed" and "missing.txt" in rows["xx"]["message"]
    assert (tmp_path / "models").joinpath("tiny-llama-de-mean").is_dir()


def _table_rows(data):
    import json

    return json.loads(data) if isinstance(data, str) else data


def test_parameters_are_typed_and_name_the_bad_field() -> None:
    from flows.parameters import AdaptParameters
    from transfer.init import available_strategies

    schema = AdaptParameters.model_json_schema()["properties"]
    assert schema["strategy"]["enum"] == ["auto", *available_strategies()]
    assert schema["strategy"]["default"] == "auto"
    assert schema["vocab_size"]["minimum"] == 2 and schema["vocab_size"]["description"]
    assert schema["eval_split"]["enum"] == ["dev", "test"]
    with pytest.raises(ValidationError, match="strategy"):
        AdaptParameters(strategy="no-such")
    with pytest.raises(ValidationError, match="vocab_size"):
        AdaptParameters(vocab_size=1)
    # a plain library config is accepted and checked again
    assert AdaptParameters.model_validate(AdaptConfig(strategy="random")).strategy == "random"


def test_shipped_languages_file() -> None:
    from flows.languages import load_languages

    languages = load_languages(REPO / "configs" / "languages.yaml")
    assert set(languages.languages) == {"de", "fr", "es", "sw"}
    german = languages.languages["de"]
    assert german.dictionary.kind == "ding"
    parallel = {"fr": "l", "es": "v", "sw": "h"}  # each from the King James Version
    for code in ("fr", "es", "sw"):
        assert languages.languages[code].dictionary.kind == "induced"
        assert (languages.languages[code].parallel.source_bible,
                languages.languages[code].parallel.target_bible) == ("k", parallel[code])
    for code, entry in languages.languages.items():
        params = languages.parameters(code)
        assert params.target_language == code and params.target_bible == entry.corpus.bible
        assert entry.cron


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": "nope"}, "strategy"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"corpus": {"bible": ["Q"]}}, "'Q'"),
        ({"vocab_size": 1}, "vocab_size"),
    ],
)
def test_bad_language_entries_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    from flows.languages import LanguagesConfigError, load_languages

    entry = {"name": "German", "corpus": {"bible": ["e"]}, "cron": "0 1 * * 6", **change}
    path = tmp_path / "languages.yaml"
    path.write_text(yaml.safe_dump({"languages": {"de": entry}}))
    with pytest.raises(LanguagesConfigError, match=message):
        load_languages(path)


def test_only_transient_failures_are_retried() -> None:
    from flows.adapt_flow import is_transient
    from transfer.errors import CorpusError

    assert is_transient(ConnectionError("reset by peer"))
    assert is_transient(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not is_transient(CorpusError("target_files: x does not exist"))
    assert not is_transient(FileNotFoundError("x"))
    assert not is_transient(RuntimeError("shape mismatch"))


def test_deployments_one_schedule_per_language() -> None:
    from flows.deployments import build_deployments
    from flows.languages import load_languages

    path = REPO / "configs" / "languages.yaml"
    languages = load_languages(path)
    deployments = {d.name: d for d in build_deployments(languages, path)}
    assert {"adapt", "batch", "compare", "adapt-de", "adapt-fr", "adapt-es", "adapt-sw"} == set(deployments)
    assert not deployments["adapt"].schedules
    for code, entry in languages.languages.items():
        deployment = deployments[f"adapt-{code}"]
        assert [s.schedule.cron for s in deployment.schedules] == [entry.cron]
        assert deployment.parameters["config"]["target_language"] == code
        # 'auto' is resolved when the parameters are built: the deployment names what will run
        assert deployment.parameters["config"]["strategy"] == languages.parameters(code).strategy
        assert entry.strategy == "auto" or deployment.parameters["config"]["strategy"] == entry.strategy
    # the form: the single-pair deployment's schema offers the registered strategies
    schema = deployments["adapt"]._parameter_openapi_schema.model_dump()
    assert "strategy" in str(schema) and "enum" in str(schema)


def test_training_progress_moves_the_artifact_during_training(prefect_harness, tiny_source: Path,
                                                              tiny_corpus: Path) -> None:
    """The trainer (transfer.train) drives the run's progress artifact step by step."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows import reports
    from transfer.source.loading import load_source
    from transfer.train import PhaseConfig, TrainingConfig, pack_train_split, train

    seen: list[tuple[float, str]] = []

    def read_back(artifact_id, percent: float, description: str) -> None:
        with get_client(sync_client=True) as client:
            artifact = next(a for a in client.read_artifacts() if a.id == artifact_id)
        seen.append((float(artifact.data), artifact.description))

    @flow(name="tiny-training")
    def tiny_training() -> None:
        model, tokenizer = load_source(str(tiny_source))
        data = pack_train_split(tokenizer, tiny_corpus.read_text().splitlines(), 16)
        progress = reports.RunProgress(total=2, key="tiny-training-progress")
        config = TrainingConfig(phases=[PhaseConfig("embeddings", steps=6, lr=1e-3)], batch_size=2,
                                precision="fp32")
        train(model, data, config, callbacks=[reports.TrainingProgress(progress, updates=3)], device="cpu")
        progress.update("train: done", finished_stage=True)

    reports.progress_observers.append(read_back)
    try:
        tiny_training()
    finally:
        reports.progress_observers.remove(read_back)
    during = [(p, d) for p, d in seen if "step" in d]
    assert [d.split(",")[0] for _, d in during] == [f"train (embeddings): step {s}/6" for s in (2, 4, 6)]
    assert [p for p, _ in during] == [16.7, 33.3, 50.0]  # halfway through stage 1 of 2 at step 6
    assert seen[-1][0] == 50.0 and "loss" in during[0][1]
