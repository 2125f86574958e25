"""A source folder whose config names remote code (``auto_map``) is loaded without running
it, and no folder we write keeps the hook: the adapted model ships no code (issue #31)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import config
from transfer.pipeline import run_adaptation
from transfer.source.remote_code import drop_remote_code_hooks

AUTO_MAP = {"AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}


def _with_hooks(tiny_source: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "remote-code-llama"
    shutil.copytree(tiny_source, folder)
    for name, extra in (("config.json", {"auto_map": AUTO_MAP}),
                        ("tokenizer_config.json", {"auto_map": {"AutoTokenizer": ["tok_custom.Tok", None]}})):
        path = folder / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **extra}))
    return folder


def test_drop_remote_code_hooks_reports_what_it_removed(tiny_source: Path, tmp_path: Path) -> None:
    folder = _with_hooks(tiny_source, tmp_path)
    assert drop_remote_code_hooks(folder) == {"config.json": ["auto_map"], "tokenizer_config.json": ["auto_map"]}
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    assert drop_remote_code_hooks(folder) == {}  # nothing left to drop


def test_adapted_model_does_not_advertise_the_source_remote_code(tiny_source: Path, tiny_corpus: Path,
                                                                 tmp_path: Path) -> None:
    source = _with_hooks(tiny_source, tmp_path)
    result = run_adaptation(config(tmp_path, source, tiny_corpus, train_steps=1, eval_texts=4))
    model_dir = Path(result.model_dir)
    for name in ("config.json", "tokenizer_config.json"):
        assert "auto_map" not in json.loads((model_dir / name).read_text()), name
    assert not list(model_dir.glob("*.py"))
    card = (model_dir / "README.md").read_text()
    assert "`auto_map` in `config.json`" in card and "trust_remote_code" in card
    # a source without hooks gets no such sentence
    plain = run_adaptation(config(tmp_path / "plain", tiny_source, tiny_corpus, train_steps=1, eval_texts=4))
    assert "auto_map" not in (Path(plain.model_dir) / "README.md").read_text()
