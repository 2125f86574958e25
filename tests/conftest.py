"""Shared fixtures. Hub access is switched off: tests use only local or packaged assets."""

from __future__ import annotations

import os

# Before transformers/huggingface_hub are imported: they read these once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the packaged SmolLM2-135M-Instruct GGUF, loaded once (~20 s)."""
    from transfer.source_model import SMOLLM2, load_source

    # no skip: `make test` installs the asset, so a missing file is a real failure
    return load_source(SMOLLM2)


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random Llama with a tiny byte-level BPE tokenizer, saved as a plain HF folder."""
    from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.source_model import save_model

    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400)
    model = tiny_llama(len(tokenizer), tie=True, seed=0)
    out = tmp_path_factory.mktemp("src") / "tiny-llama"
    save_model(model, tokenizer, out)
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory):
    """A small German text file, a document per line, big enough to leave dev and test texts."""
    from tests.tiny import GERMAN_SENTENCES

    path = tmp_path_factory.mktemp("corpus") / "de.txt"
    lines = [f"{s} ({i})" for i in range(12) for s in GERMAN_SENTENCES]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API server (SQLite, 127.0.0.1) shared by every Prefect test;
    yields its API URL for subprocesses (workers, the CLI)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
