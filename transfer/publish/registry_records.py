"""What the model registry stores, and how it is spelled in MLflow tags.

The records (``ModelRecord`` written, ``Registration`` and ``VersionInfo`` read back),
the tag encoding of a record and its decoding, model names and references. Pure: no
MLflow import, no I/O; ``registry_store`` talks to MLflow.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from transfer.errors import VocabTransferError
from transfer.publish.labels import final_metric
from transfer.settings.names import REGISTERED_MODEL_PREFIX

EXPERIMENT_NAME = "vocab-transfer"
BEST_ALIAS = "best"
TAG = "vt."  # namespace of our tags on runs and versions
_METRIC_TAG = TAG + "metric."
_STAGE_TAG = TAG + "stage."
_CORPUS_TAG = TAG + "corpus."
_PARAM_MAX = 6000  # MLflow's limit on a parameter value
_TAG_MAX = 5000  # MLflow's limit on a model version tag value


class RegistryError(VocabTransferError):
    """The registry cannot be reached, or a model reference names nothing in it."""


def registered_model_name(target_language: str, prefix: str = REGISTERED_MODEL_PREFIX) -> str:
    """One registered model per target language: ``<prefix><language>``."""
    return f"{prefix}{target_language}"


def parse_reference(ref: str) -> tuple[str, int | None, str | None]:
    """Split ``NAME[:VERSION|:ALIAS|@ALIAS]`` into (name, version, alias)."""
    name, sep, rest = ref.partition("@")
    if not sep:
        name, sep, rest = ref.partition(":")
    if not name or (sep and not rest):
        raise RegistryError(f"model reference {ref!r}: expected NAME, NAME:VERSION or NAME@ALIAS")
    if not sep:
        return name, None, None
    if rest.isdigit():
        return name, int(rest), None
    return name, None, rest


# ---------------------------------------------------------------- what is registered

class ModelRecord(BaseModel):
    """Lineage and metrics of one adapted model: what a registry version stores
    (``registry_store.record_from_result`` builds it from a finished run)."""

    model_name: str
    target_language: str
    target_languages: list[str] = Field(default_factory=list, description="a run of several: each language")
    source_model: str
    source_fingerprint: str | None = None
    source_architecture: str | None = None
    strategy: str
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    tokenizer_family: str | None = None
    tokenizer_vocab_size: int
    corpus_hashes: dict[str, str] = Field(default_factory=dict)
    code_version: str
    stage_keys: dict[str, str] = Field(default_factory=dict, description="label -> 'stage:key'")
    eval_split: str
    eval_texts: int
    metrics: dict[str, float] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    model_dir: str

    @property
    def fingerprint(self) -> str:
        """Identity of the run: the same stages (keys include parameters, input hashes
        and code version) evaluated the same way. Re-registering it changes nothing."""
        payload = json.dumps(
            {"model_name": self.model_name, "stage_keys": self.stage_keys,
             "eval": [self.eval_split, self.eval_texts]},
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Registration(BaseModel):
    """Where a run landed in the registry."""

    tracking_uri: str
    name: str
    version: int
    run_id: str
    source: str = Field(description="artifact URI of the registered model folder")
    fingerprint: str
    created: bool = Field(description="False when the same run was already registered")
    aliases: list[str] = Field(default_factory=list)


class VersionInfo(BaseModel):
    """One registered model version, read back from the registry."""

    name: str
    version: int
    aliases: list[str] = Field(default_factory=list)
    run_id: str | None = None
    source: str
    created_ms: int | None = None
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    def tag(self, name: str) -> str | None:
        return self.tags.get(TAG + name)

    @property
    def metrics(self) -> dict[str, float]:
        out = {}
        for key, value in self.tags.items():
            if key.startswith(_METRIC_TAG):
                try:
                    out[key[len(_METRIC_TAG):]] = float(value)
                except ValueError:
                    continue
        return out

    @property
    def stage_keys(self) -> dict[str, str]:
        return {k[len(_STAGE_TAG):]: v for k, v in self.tags.items() if k.startswith(_STAGE_TAG)}

    @property
    def final_bpb(self) -> float | None:
        """The final model's BPB (a masked LM's ``mlm_loss.*`` never counts as BPB)."""
        return final_metric(self.metrics, prefix="bpb.")


# ---------------------------------------------------------------- records as MLflow strings

def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tag_key(label: str) -> str:
    # MLflow keys allow letters, digits, '_', '-', '.', ' ', '/'
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", ".", label)


def version_tags(record: ModelRecord) -> dict[str, str]:
    """The lineage and metric tags of a record, on its run and on its model version."""
    tags = {
        "fingerprint": record.fingerprint,
        "model_name": record.model_name,
        "target_language": record.target_language,
        "target_languages": ",".join(record.target_languages or [record.target_language]),
        "source_model": record.source_model,
        "source_fingerprint": record.source_fingerprint or "",
        "source_architecture": record.source_architecture or "",
        "strategy": record.strategy,
        "strategy_params": record.strategy_params,
        "tokenizer.family": record.tokenizer_family or "",
        "tokenizer.vocab_size": str(record.tokenizer_vocab_size),
        "code_version": record.code_version,
        "eval_split": record.eval_split,
        "eval_texts": str(record.eval_texts),
        "model_dir": record.model_dir,
    }
    out = {TAG + k: _text(v, _TAG_MAX) for k, v in tags.items()}
    out.update({_CORPUS_TAG + _tag_key(k): v for k, v in record.corpus_hashes.items()})
    out.update({_STAGE_TAG + _tag_key(k): v for k, v in record.stage_keys.items()})
    out.update({_METRIC_TAG + k: repr(v) for k, v in record.metrics.items()})
    return out


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """A run's config as MLflow parameters (strings within MLflow's length limit)."""
    return {key: _text(value if value is not None else "", _PARAM_MAX) for key, value in config.items()}


def version_info(version: Any) -> VersionInfo:
    """An MLflow ``ModelVersion`` as our record."""
    return VersionInfo(
        name=version.name,
        version=int(version.version),
        aliases=list(getattr(version, "aliases", None) or []),
        run_id=version.run_id,
        source=version.source,
        created_ms=version.creation_timestamp,
        description=version.description,
        tags=dict(version.tags or {}),
    )
