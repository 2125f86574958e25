"""Model registry: every adapted model with its lineage and metrics, in MLflow.

The registration step of docs/DESIGN.md: where the registry is, its file lock, and
``Registry`` (registering, listing, resolving references, the ``best`` alias); the records
and their tags are in ``registry_records``. One MLflow *registered model* per target
language (``<prefix><language>``, e.g. ``vocab-transfer-de``); each adapted model is one
*version* of it, whatever its source model, strategy or tokenizer, because bits per byte
compares models with different tokenizers. The alias ``best`` points to the version with
the lowest test-split BPB after training (or at step 0 when it was not trained).

Where: a SQLite file under ``artifacts/registry/`` (beside the models folder) by default;
``MLFLOW_TRACKING_URI`` (or ``AdaptConfig.tracking_uri``) points elsewhere, e.g. a shared
tracking server.

Each version carries its lineage and metrics as tags (so ``models list`` reads one table)
and its metrics also as metrics of its MLflow run (for the MLflow UI). The model folder is
logged as the run's artifacts and the version points there
(``create_model_version(source=<artifact uri>)``: ``mlflow.register_model("runs:/...")``
would need an MLflow *logged model*).

Safe to call from many processes at once: a file lock serializes writers (MLflow's SQLite
store otherwise fails with "database is locked" or two processes both create the same
version), and a run fingerprint tag makes re-registering the same run a no-op. A
registration killed half-way is completed by the next one: its finished run is reused, or
its unfinished run (SQLite store) deleted and logged again.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from transfer.publish.registry_records import (
    BEST_ALIAS,
    EXPERIMENT_NAME,
    TAG,
    ModelRecord,
    Registration,
    RegistryError,
    VersionInfo,
    flat_params,
    parse_reference,
    registered_model_name,
    version_info,
    version_tags,
)
from transfer.publish.result import AdaptResult, qualified_stage_keys, stage_record
from transfer.publish.summary import RunSummary
from transfer.settings.names import REGISTERED_MODEL_PREFIX

if TYPE_CHECKING:
    from mlflow import MlflowClient


# ---------------------------------------------------------------- where the registry is

def default_tracking_uri(artifacts_root: Path | str = "artifacts") -> str:
    """``sqlite:///<artifacts_root>/registry/mlflow.db`` (absolute path)."""
    path = (Path(artifacts_root) / "registry" / "mlflow.db").resolve()
    return f"sqlite:///{path}"


def resolve_tracking_uri(explicit: str | None = None, artifacts_root: Path | str = "artifacts") -> str:
    """An explicit URI, else ``MLFLOW_TRACKING_URI``, else the SQLite file under ``artifacts_root``."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(artifacts_root)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"  # sqlite:///relative.db or sqlite:////absolute.db
    if not tracking_uri.startswith(prefix):
        return None
    return Path(unquote(tracking_uri[len(prefix):].split("?", 1)[0]))


def _lock_path(tracking_uri: str) -> Path:
    db = sqlite_path(tracking_uri)
    if db is not None:
        return db.with_name(db.name + ".lock")
    # a server serializes its own writes; the lock still keeps one machine's batch orderly
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"vocab-transfer-registry-{digest}.lock"


# ---------------------------------------------------------------- a run's record

def result_metrics(result: AdaptResult) -> dict[str, float]:
    """Flat, finite metrics of a run: BPB per evaluation (and the final model's gain over
    the source model on the same texts), fertility of both tokenizers, init counts, loss.
    A masked LM's evaluations are logged as ``mlm_loss.*``, so they never rank against BPB."""
    summary = RunSummary.from_result(result)
    prefix = summary.metric
    metrics: dict[str, float] = {f"{prefix}.{row.label}": row.value for row in summary.rows}
    if summary.gain_vs_source is not None:
        metrics[f"{prefix}.gain_vs_source"] = summary.gain_vs_source
    for side, values in summary.fertility.items():
        for name in ("tokens_per_word", "bytes_per_token"):
            if name in values:
                metrics[f"fertility.{side}.{name}"] = float(values[name])
    for label, count in summary.init_counts.items():
        metrics[f"init.{label}"] = float(count)
    if result.train_log and result.train_log.get("losses"):
        metrics["train.final_loss"] = float(result.train_log["losses"][-1])
        metrics["train.steps"] = float(result.train_log.get("steps", len(result.train_log["losses"])))
    metrics["seconds"] = float(result.seconds)
    for model, values in summary.task_scores.items():  # SR-B and lm-eval: <metric>.<model>
        metrics.update({f"{name}.{model}": float(value) for name, value in values.items()})
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def record_from_result(
    result: AdaptResult,
    *,
    corpus_hashes: Mapping[str, str] | None = None,
    stage_keys: Mapping[str, str] | None = None,
) -> ModelRecord:
    """The record of a finished run. ``stage_keys`` (label -> 'stage:key') defaults to the
    result's own keys; ``corpus_hashes`` are the corpus stage inputs."""
    cfg = result.config
    keys = dict(stage_keys) if stage_keys else qualified_stage_keys(result)
    source_info = stage_record(result, "source", "source.json") or {}
    return ModelRecord(
        model_name=cfg.model_name(),
        target_language=cfg.target_language,
        target_languages=cfg.target_languages,
        source_model=cfg.source_model,
        source_fingerprint=source_info.get("fingerprint"),
        source_architecture=source_info.get("architecture"),
        strategy=cfg.strategy,
        strategy_params=cfg.strategy_params,
        tokenizer_family=source_info.get("tokenizer_family"),
        tokenizer_vocab_size=cfg.vocab_size,
        corpus_hashes=dict(corpus_hashes or {}),
        code_version=result.code_version,
        stage_keys=keys,
        eval_split=cfg.eval_split,
        eval_texts=cfg.eval_texts,
        metrics=result_metrics(result),
        config=cfg.model_dump(mode="json"),
        model_dir=result.model_dir,
    )


# ---------------------------------------------------------------- the registry

class Registry:
    """The MLflow model registry of adapted models (see the module docstring)."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        artifacts_root: Path | str = "artifacts",
        prefix: str = REGISTERED_MODEL_PREFIX,
        experiment: str = EXPERIMENT_NAME,
    ) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri, artifacts_root)
        self.prefix = prefix
        self.experiment = experiment
        self._client: MlflowClient | None = None

    # -- plumbing

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[MlflowClient]:
        """Hold the registry's file lock (exclusive for writes) and give the client."""
        lock = _lock_path(self.tracking_uri)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as handle:
            # opening the store may create or migrate the database: always exclusive
            first_use = self._client is None
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive or first_use else fcntl.LOCK_SH)
            try:
                yield self._get_client()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _get_client(self) -> MlflowClient:
        if self._client is None:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            os.environ.setdefault("DO_NOT_TRACK", "1")
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _artifact_location(self) -> str | None:
        db = sqlite_path(self.tracking_uri)
        return (db.parent / "artifacts").resolve().as_uri() if db is not None else None

    def _experiment_id(self, client: MlflowClient) -> str:
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(self.experiment, artifact_location=self._artifact_location())

    def _ensure_registered_model(self, client: MlflowClient, name: str, language: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(
                name, tags={TAG + "target_language": language},
                description=f"Models adapted to '{language}' by vocab-transfer; alias "
                            f"'{BEST_ALIAS}' = lowest test bits per byte.",
            )

    def _all_versions(self, client: MlflowClient, filter_string: str) -> list[VersionInfo]:
        out: list[VersionInfo] = []
        token = None
        while True:
            page = client.search_model_versions(filter_string, max_results=1000, page_token=token)
            out.extend(version_info(v) for v in page)
            token = page.token
            if not token:
                break
        # version searches leave ``aliases`` empty; the registered models carry them
        aliases: dict[tuple[str, int], list[str]] = {}
        for name in sorted({v.name for v in out}):
            for alias, number in client.get_registered_model(name).aliases.items():
                aliases.setdefault((name, int(number)), []).append(alias)
        return [v.model_copy(update={"aliases": sorted(aliases.get((v.name, v.version), []))})
                for v in out]

    def _find(self, client: MlflowClient, name: str, fingerprint: str) -> VersionInfo | None:
        for version in self._all_versions(client, f"name = '{name}'"):
            if version.tag("fingerprint") == fingerprint:
                return version
        return None

    def _run_for(self, client: MlflowClient, experiment_id: str, record: ModelRecord) -> Any:
        """The finished run of this fingerprint (a crash after logging left one), or a new
        run with parameters, metrics, lineage tags and the model folder as artifacts."""
        from mlflow.entities import Metric, Param

        runs = client.search_runs(
            [experiment_id], f"tags.`{TAG}fingerprint` = '{record.fingerprint}' and "
                             "attributes.status = 'FINISHED'", max_results=1,
        )
        if runs:
            return runs[0]
        self._drop_unfinished_runs(client, experiment_id, record.fingerprint)
        tags = {**version_tags(record), "mlflow.runName": record.model_name}
        run = client.create_run(experiment_id, tags=tags, run_name=record.model_name)
        run_id = run.info.run_id
        try:
            params = [Param(k, v) for k, v in flat_params(record.config).items()]
            metrics = [Metric(k, v, 0, 0) for k, v in record.metrics.items()]
            for start in range(0, max(len(params), len(metrics)), 100):
                client.log_batch(run_id, metrics=metrics[start:start + 100],
                                 params=params[start:start + 100])
            client.log_artifacts(run_id, record.model_dir, artifact_path="model")
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
        return client.get_run(run_id)

    def _drop_unfinished_runs(self, client: MlflowClient, experiment_id: str, fingerprint: str) -> None:
        """Delete the runs of this fingerprint that a killed (still RUNNING) or failed
        registration left, so a retried registration leaves one run, not two. Only for a
        SQLite store: its file lock (held here) proves no other process is registering;
        on a shared server a RUNNING run may be another machine's registration in flight."""
        if sqlite_path(self.tracking_uri) is None:
            return
        for run in client.search_runs(
            [experiment_id], f"tags.`{TAG}fingerprint` = '{fingerprint}' and "
                             "attributes.status != 'FINISHED'", max_results=100,
        ):
            client.delete_run(run.info.run_id)

    # -- writes

    def initialize(self) -> None:
        """Create (or migrate) the store now: a new SQLite database takes a few seconds."""
        with self._locked(exclusive=True) as client:
            client.search_experiments(max_results=1)

    def register(self, record: ModelRecord) -> Registration:
        """Register the model folder ``record.model_dir`` as a new version (or return the
        version already registered for the same run) and update the ``best`` alias."""
        model_dir = Path(record.model_dir)
        if not model_dir.is_dir() or not (model_dir / "config.json").exists():
            raise RegistryError(f"model_dir {model_dir}: not a saved model folder (no config.json)")
        name = registered_model_name(record.target_language, self.prefix)
        with self._locked(exclusive=True) as client:
            self._ensure_registered_model(client, name, record.target_language)
            existing = self._find(client, name, record.fingerprint)
            created = existing is None
            if existing is None:
                run = self._run_for(client, self._experiment_id(client), record)
                version = client.create_model_version(
                    name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                    tags=version_tags(record),
                    description=f"{record.source_model} -> {record.target_language}, "
                                f"strategy {record.strategy}",
                )
                number = int(version.version)
            else:
                number = existing.version
            self._update_best(client, name)
            info = version_info(client.get_model_version(name, str(number)))
        return Registration(
            tracking_uri=self.tracking_uri, name=name, version=info.version,
            run_id=info.run_id or "", source=info.source, fingerprint=record.fingerprint,
            created=created, aliases=info.aliases,
        )

    def _update_best(self, client: MlflowClient, name: str) -> int | None:
        """Point ``best`` at the lowest final BPB on the test split (ties: older version)."""
        eligible = [
            (v.final_bpb, v.version) for v in self._all_versions(client, f"name = '{name}'")
            if v.tag("eval_split") == "test" and v.final_bpb is not None
        ]
        if not eligible:
            return None
        _, best = min(eligible)
        from mlflow.exceptions import MlflowException

        try:
            current = int(client.get_model_version_by_alias(name, BEST_ALIAS).version)
        except MlflowException:  # no alias yet
            current = None
        if current != best:
            client.set_registered_model_alias(name, BEST_ALIAS, str(best))
        return best

    # -- reads

    def versions(self, language: str | None = None) -> list[VersionInfo]:
        """Every version of our registered models (one language, or all), by name and version."""
        if sqlite_path(self.tracking_uri) is not None and not sqlite_path(self.tracking_uri).exists():
            return []  # nothing registered yet: do not create an empty database just to read
        name_filter = (f"name = '{registered_model_name(language, self.prefix)}'" if language
                       else f"name LIKE '{self.prefix}%'")
        with self._locked(exclusive=False) as client:
            found = self._all_versions(client, name_filter)
        return sorted(found, key=lambda v: (v.name, v.version))

    def resolve(self, ref: str) -> VersionInfo:
        """``NAME`` (latest version), ``NAME:VERSION``, ``NAME:ALIAS`` or ``NAME@ALIAS``."""
        name, version, alias = parse_reference(ref)
        from mlflow.exceptions import MlflowException

        if sqlite_path(self.tracking_uri) is not None and not sqlite_path(self.tracking_uri).exists():
            raise RegistryError(f"model {ref!r}: the registry {self.tracking_uri} is empty")
        with self._locked(exclusive=False) as client:
            try:
                if alias is not None:
                    return version_info(client.get_model_version_by_alias(name, alias))
                if version is not None:
                    return version_info(client.get_model_version(name, str(version)))
                found = self._all_versions(client, f"name = '{name}'")
            except MlflowException as error:
                raise RegistryError(f"model {ref!r}: {error.message}") from error
        if not found:
            raise RegistryError(f"model {ref!r}: no registered model named {name!r}")
        return max(found, key=lambda v: v.version)

    def needed_stage_keys(self) -> set[tuple[str, str]]:
        """(stage, key) of every cache folder some registered version was built from."""
        needed = set()
        for version in self.versions():
            for value in version.stage_keys.values():
                stage, _, key = value.partition(":")
                if stage and key:
                    needed.add((stage, key))
        return needed


def register_result(
    result: AdaptResult,
    *,
    corpus_hashes: Mapping[str, str] | None = None,
    stage_keys: Mapping[str, str] | None = None,
) -> Registration:
    """Register a finished run where its config says (``tracking_uri``, prefix)."""
    cfg = result.config
    registry = Registry(
        cfg.tracking_uri, artifacts_root=Path(cfg.output_dir).parent,
        prefix=cfg.registered_model_prefix,
    )
    record = record_from_result(result, corpus_hashes=corpus_hashes, stage_keys=stage_keys)
    return registry.register(record)
