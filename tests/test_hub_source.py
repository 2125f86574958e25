"""Hub ids as source models, without network: a revision is pinned to its commit (from a
fake Hub cache laid out as huggingface_hub writes it), and a hub id that is neither
reachable nor cached fails before any stage with a message naming HF_HUB_OFFLINE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transfer.errors import ModelLoadError
from transfer.pipeline import run_adaptation
from transfer.settings.config import AdaptConfig
from transfer.source.loading import (
    identify_source,
    load_source,
    resolve_hub_revision,
    resolve_source,
    save_model,
    source_fingerprint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "tiny-org/tiny-llama"


@pytest.fixture()
def hub_cache(tmp_path: Path, tiny_source: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HUB_CACHE in tmp_path holding REPO: refs/main -> COMMIT, snapshots/COMMIT/ = the
    tiny model (huggingface_hub reads the cache folder at call time, so patch both)."""
    from huggingface_hub import constants

    from transfer.source.loading import load_source as load

    cache = tmp_path / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    save_model(*load(str(tiny_source)), repo / "snapshots" / COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _config(tmp_path: Path, corpus: Path, **overrides) -> AdaptConfig:
    values = {
        "target_language": "de", "target_bible": [], "source_bible": [], "target_files": [str(corpus)],
        "vocab_size": 350, "train_steps": 0, "curve_texts": 0, "eval_texts": 4, "device": "cpu", "strategy": "mean",
        "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "models", "register_model": False,
    }
    return AdaptConfig(**{**values, **overrides})


def test_offline_hub_id_resolves_from_cache_to_its_commit(hub_cache: Path, tiny_source: Path) -> None:
    pinned = resolve_hub_revision(REPO)
    assert (pinned.revision, pinned.commit, pinned.offline) == ("main", COMMIT, True)
    assert source_fingerprint(REPO) == f"hub:{REPO}@{COMMIT}"
    # the branch, the commit itself and the @ form all name the same content
    assert source_fingerprint(REPO, "main") == source_fingerprint(REPO, COMMIT) == source_fingerprint(f"{REPO}@main")
    assert identify_source(REPO).commit == COMMIT

    model, tokenizer = load_source(REPO)
    reference, _ = load_source(str(tiny_source))
    ids = torch.tensor([tokenizer("And God said", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_run_records_the_pinned_commit_not_the_branch(
    tmp_path: Path, hub_cache: Path, tiny_corpus: Path
) -> None:
    result = run_adaptation(_config(tmp_path, tiny_corpus, source_model=REPO))
    source_dir = Path(result.config.cache_dir) / "source" / result.stage_keys["source"]
    record = json.loads((source_dir / "source.json").read_text())
    assert (record["source_model"], record["revision"]) == (REPO, COMMIT)
    assert record["fingerprint"] == f"hub:{REPO}@{COMMIT}"
    manifest = json.loads((Path(result.model_dir) / "run_manifest.json").read_text())
    assert manifest["config"]["source_revision"] == COMMIT
    # the manifest's config reproduces the run: same source stage key
    rerun = AdaptConfig(**manifest["config"])
    from transfer.source.stage import source_spec

    assert source_spec(rerun).key == result.stage_keys["source"]


def test_unknown_hub_id_offline_fails_before_any_stage(tmp_path: Path, tiny_corpus: Path) -> None:
    cfg = _config(tmp_path, tiny_corpus, source_model="nobody-here/no-such-model")
    with pytest.raises(ModelLoadError) as caught:
        run_adaptation(cfg)
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message and "huggingface-cli download nobody-here/no-such-model" in message
    assert "local model folder" in message
    assert not cfg.cache_dir.exists() or not any(cfg.cache_dir.iterdir())


def test_unreachable_hub_without_offline_flag_gives_the_same_advice(
    monkeypatch: pytest.MonkeyPatch, hub_cache: Path
) -> None:
    """HF_HUB_OFFLINE unset and no network: the hub endpoint is a closed port on this
    machine (connection refused at once; nothing leaves the machine)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelLoadError) as caught:
        resolve_hub_revision("nobody-here/no-such-model")
    message = str(caught.value)
    assert "cannot be reached" in message and "HF_HUB_OFFLINE" in message
    # a cached model is still found: the cache answers when the hub does not
    pinned = resolve_hub_revision(REPO)
    assert (pinned.commit, pinned.offline) == (COMMIT, True)


def test_revision_only_for_hub_ids_and_never_two(tiny_source: Path) -> None:
    assert resolve_source("org/name", "v2").revision == "v2"
    assert resolve_source("org/name@v2", "v2").revision == "v2"
    with pytest.raises(ModelLoadError, match="names revision 'v1' but source_revision is 'v2'"):
        resolve_source("org/name@v1", "v2")
    with pytest.raises(ModelLoadError, match="applies only to a hub id"):
        resolve_source(str(tiny_source), "main")
