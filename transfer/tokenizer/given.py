"""A target tokenizer the user gives (``target_tokenizer``) instead of one trained here.

mergekit's tokensurgeon use case (give a model another model's tokenizer) and CLP-Transfer's
(the helper model's tokenizer is the target tokenizer): the tokenizer is used as is, of any
family. It may be a tokenizer folder, a model folder, a ``.gguf`` file (its embedded
vocabulary) or a hub id (only the tokenizer files are fetched, at a pinned commit).

``identify_tokenizer`` gives the content identity that enters the tokenizer stage's key;
``load_given_tokenizer`` reads it (fast tokenizers only: the pipeline needs the backend's
model for byte and surface handling). Neither ever runs remote code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from transfer.engine.file_identity import file_identity
from transfer.errors import ModelLoadError

#: the files a fast tokenizer is read or converted from; a folder needs one of them
TOKENIZER_FILES = ("tokenizer.json", "*.model", "vocab.json", "vocab.txt", "tekken.json", "*.tiktoken")
#: the files that shape what a tokenizer does (hashed for the key; fetched from the hub)
_TOKENIZER_PATTERNS = (*TOKENIZER_FILES, "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                       "added_tokens.json", "chat_template.json", "*.jinja")


@dataclass(frozen=True)
class GivenTokenizer:
    """A resolved ``target_tokenizer``: ``kind`` is "folder", "gguf" or "hub";
    ``fingerprint`` its content identity (``hub:<id>@<commit>`` for a hub id)."""

    kind: str
    location: str
    fingerprint: str
    commit: str | None = None


def identify_tokenizer(spec: str, revision: str | None = None, *, field: str = "target_tokenizer") -> GivenTokenizer:
    """Resolve and fingerprint ``spec``; a folder without tokenizer files, a file that is
    not a ``.gguf`` and a revision on a local path are refused, naming ``field``."""
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"{field}: GGUF file {spec!r} does not exist")
        _no_revision(spec, revision, field)
        return GivenTokenizer("gguf", str(path), file_identity(path))
    if path.is_dir():
        _no_revision(spec, revision, field)
        files = sorted({p for pattern in _TOKENIZER_PATTERNS for p in path.glob(pattern) if p.is_file()})
        if not any(any(path.glob(pattern)) for pattern in TOKENIZER_FILES):
            raise ModelLoadError(
                f"{field}: folder {spec!r} has no tokenizer files (tokenizer.json, a SentencePiece *.model, "
                "vocab.json with merges.txt, or vocab.txt); save one there with tokenizer.save_pretrained(folder)")
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.name.encode())
            digest.update(file_identity(file).encode())
        return GivenTokenizer("folder", str(path), digest.hexdigest())
    if path.exists():
        raise ModelLoadError(f"{field}: {spec!r} is a file but not a .gguf; give a tokenizer or model folder, "
                             "a .gguf file or a hub id")
    from transfer.source.loading import resolve_hub_revision, resolve_source

    source = resolve_source(spec, revision)  # a hub id (refuses anything else, naming it)
    hub = resolve_hub_revision(source.location, source.revision)
    return GivenTokenizer("hub", source.location, f"hub:{source.location}@{hub.commit}", hub.commit)


def _no_revision(spec: str, revision: str | None, field: str) -> None:
    if revision is not None:
        raise ModelLoadError(f"{field}_revision {revision!r} applies only to a hub id, but {spec!r} is local")


def load_given_tokenizer(given: GivenTokenizer, *, field: str = "target_tokenizer") -> PreTrainedTokenizerFast:
    """The fast tokenizer ``given`` names (downloading only tokenizer files for a hub id)."""
    try:
        if given.kind == "gguf":
            location = Path(given.location)
            tokenizer = AutoTokenizer.from_pretrained(str(location.parent), gguf_file=location.name)
        elif given.kind == "hub":
            from huggingface_hub import snapshot_download

            from transfer.source.loading import _hub_offline

            folder = snapshot_download(given.location, revision=given.commit,
                                       allow_patterns=list(_TOKENIZER_PATTERNS), local_files_only=_hub_offline())
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        else:
            tokenizer = AutoTokenizer.from_pretrained(given.location, trust_remote_code=False)
    except Exception as error:  # tokenizer and hub libraries raise many unrelated kinds
        raise ModelLoadError(f"{field}: cannot load a tokenizer from {given.location!r}: {error}") from error
    return require_fast(tokenizer, f"{field} {given.location!r}")


def require_fast(tokenizer: PreTrainedTokenizerBase, what: str) -> PreTrainedTokenizerFast:
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ModelLoadError(f"{what} has no fast (tokenizer.json) tokenizer, which the pipeline needs")
    return tokenizer


def same_vocabulary(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Whether two tokenizers give every token string the same id (what "the helper's
    tokenizer is the target tokenizer" must mean for its rows to be the target's)."""
    return len(a) == len(b) and a.get_vocab() == b.get_vocab()
