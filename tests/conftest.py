"""Shared fixtures. Hub access is switched off: tests use only local or packaged assets."""

from __future__ import annotations

import os

# Before transformers/huggingface_hub are imported: they read these once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# rich fixes a console's width when it is created, from COLUMNS or the terminal: with
# pytest-xdist the workers have no terminal, so tables and messages wrapped at 80 columns
# in some orders and not others; one width for every console makes the output deterministic
os.environ["COLUMNS"] = "200"

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the packaged SmolLM2-135M-Instruct GGUF, loaded once (~20 s)."""
    from transfer.source.loading import SMOLLM2, load_source

    # no skip: `make test` installs the asset, so a missing file is a real failure
    return load_source(SMOLLM2)


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random Llama with a tiny byte-level BPE tokenizer, saved as a plain HF folder."""
    from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.source.loading import save_model

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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): tiny
    models run fastest on one thread; on a busy shared machine, many times faster."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def source_tok():
    """English byte-level BPE (320) with SmolLM2's special strings and roles: the source side
    of the strategy and surgery tests."""
    from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer

    return tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 320)


@pytest.fixture(scope="session")
def target_tok():
    """German byte-level BPE (360) whose special strings differ from ``source_tok``'s (roles
    map them) and with a pad the source lacks."""
    from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer

    return tiny_byte_bpe_tokenizer(
        GERMAN_SENTENCES, 360, specials=("<unk>", "<s>", "</s>", "<pad>"), pad="<pad>"
    )


@pytest.fixture(scope="session")
def bpe_pair():
    """(English 400, German 420) byte-level BPE tokenizers with the same special strings: the
    token-vector strategy tests (WECHSEL, OFA)."""
    from tests.tiny import ENGLISH, GERMAN, tiny_byte_bpe_tokenizer

    return tiny_byte_bpe_tokenizer(ENGLISH, 400), tiny_byte_bpe_tokenizer(GERMAN, 420)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API server (SQLite, 127.0.0.1) shared by every Prefect test;
    yields its API URL for subprocesses (workers, the CLI)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        # Prefect's console handler binds to the sys.stderr of the moment logging is first set
        # up; set up here, it is not a CliRunner's stream that closes after one test (later
        # flows then failed with "I/O operation on closed file", depending on test order)
        from prefect.logging.configuration import setup_logging

        setup_logging()
        yield PREFECT_API_URL.value()
