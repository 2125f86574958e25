"""A registration killed half-way (after MLflow created its run, before the version) is
completed by the next registration of the same run, which leaves one run and one version
(issue 16: the same registry rows after a kill, no duplicates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_record, model_folder, registry_uri
from transfer.publish.registry_records import EXPERIMENT_NAME, TAG
from transfer.publish.registry_store import Registry


def test_a_killed_registrations_run_is_replaced_not_duplicated(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tiny_source: Path) -> None:
    from mlflow import MlflowClient

    uri = registry_uri(tmp_path, tmp_path_factory)
    registry = Registry(uri)
    first = make_record(model_folder(tmp_path, tiny_source, "a"), strategy="mean", final_bpb=3.0)
    registry.register(first)  # the store and its experiment exist, as after any earlier run
    record = make_record(model_folder(tmp_path, tiny_source, "b"), strategy="overlap", final_bpb=2.0)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    # what a registration killed after creating its run leaves: a RUNNING run, no version
    orphan = client.create_run(experiment, tags={TAG + "fingerprint": record.fingerprint})

    registration = registry.register(record)
    runs = client.search_runs([experiment], f"tags.`{TAG}fingerprint` = '{record.fingerprint}'")
    assert [run.info.run_id for run in runs] == [registration.run_id]
    assert registration.run_id != orphan.info.run_id and runs[0].info.status == "FINISHED"
    assert [v.version for v in registry.versions("de")] == [1, 2]
    assert registry.resolve("vocab-transfer-de@best").version == registration.version == 2
    again = registry.register(record)
    assert not again.created and again.version == 2
