"""Security (issue 16, item 6): never ``trust_remote_code``, never unpickle, no path or name
escapes its folder, the Prefect server binds to localhost by default.

The hostile inputs are real: a model folder whose config names custom code that writes a
marker file when imported, pickles whose ``__reduce__`` writes a marker when unpickled. No
marker may ever appear.
"""

from __future__ import annotations

import inspect
import json
import pickle
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import config
from tests.refusals import make_artifacts, refused
from transfer.errors import ModelLoadError, VectorsError
from transfer.pipeline import run_adaptation

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_FOLDERS = ("transfer", "flows", "tokenizer_builds")


class _Payload:
    """Unpickling this touches ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_payload(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"weights": _Payload(marker)}, protocol=4))
    return path


def test_pickle_payload_works_when_unpickled(tmp_path: Path) -> None:
    # the payload is live: were any loader to unpickle it, the marker would appear
    marker = tmp_path / "marker"
    pickle.loads(_pickle_payload(tmp_path / "p.pkl", marker).read_bytes())  # our own payload
    assert marker.exists()


def test_no_library_code_trusts_remote_code() -> None:
    pattern = re.compile(r"trust_remote_code\s*=\s*True")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in LIBRARY_FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
    # and every explicit mention says False
    mentions = [line for folder in LIBRARY_FOLDERS for path in (ROOT / folder).rglob("*.py")
                for line in path.read_text(encoding="utf-8").splitlines() if "trust_remote_code=" in line]
    assert mentions and all("trust_remote_code=False" in line for line in mentions)


def _evil_folder(tiny_source: Path, tmp_path: Path, marker: Path, model_type: str | None = None) -> Path:
    """The tiny source model with custom code named in config.json and tokenizer_config.json:
    ``modeling_evil.py`` writes ``marker`` as soon as it is imported."""
    folder = tmp_path / "evil-model"
    shutil.copytree(tiny_source, folder)
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('remote code ran')\n"
    for name in ("modeling_evil.py", "configuration_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(code)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    if model_type is not None:
        config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", "tokenization_evil.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return folder


def test_custom_code_in_a_model_folder_is_never_run(tiny_source: Path, tmp_path: Path) -> None:
    from transfer.source.loading import load_source

    marker = tmp_path / "marker"
    model, tokenizer = load_source(str(_evil_folder(tiny_source, tmp_path, marker)))
    assert type(model).__name__ == "LlamaForCausalLM"  # the plain class of its model_type
    assert type(tokenizer).__module__.startswith("transformers.")
    assert not marker.exists()


def test_custom_code_without_a_known_model_type_is_refused(tiny_source: Path, tmp_path: Path) -> None:
    from transfer.source.loading import load_source

    marker = tmp_path / "marker"
    folder = _evil_folder(tiny_source, tmp_path, marker, model_type="evil")
    with pytest.raises(ModelLoadError, match=r"evil-model"):
        load_source(str(folder))
    assert not marker.exists()


def test_the_dry_run_reads_a_custom_code_config_without_running_it(tiny_source: Path, tmp_path: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    marker = tmp_path / "marker"
    folder = _evil_folder(tiny_source, tmp_path, marker)
    corpus = tmp_path / "de.txt"
    # distinct documents, enough for every split (identical lines share one split)
    corpus.write_text("".join(f"Im Anfang war das Wort ({i}).\n" for i in range(200)))
    plan_adaptation(config(tmp_path, folder, corpus))
    assert not marker.exists()


def test_a_pickled_checkpoint_alone_is_refused(tiny_source: Path, tmp_path: Path) -> None:
    from transfer.source.loading import load_source

    marker = tmp_path / "marker"
    folder = tmp_path / "pickled-model"
    shutil.copytree(tiny_source, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    _pickle_payload(folder / "pytorch_model.bin", marker)
    artifacts = make_artifacts(tmp_path)
    refused("model folder with only a pickled pytorch_model.bin", "transfer.source.loading.resolve_source",
            lambda: load_source(str(folder)), r"no \*\.safetensors weights; only safetensors are loaded",
            artifacts, ModelLoadError)
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_ignored(tiny_source: Path, tmp_path: Path) -> None:
    from transfer.source.loading import load_source

    marker = tmp_path / "marker"
    folder = tmp_path / "both-model"
    shutil.copytree(tiny_source, folder)
    _pickle_payload(folder / "pytorch_model.bin", marker)
    _pickle_payload(folder / "training_args.bin", marker)
    model, _ = load_source(str(folder))
    assert model.num_parameters() > 0
    assert not marker.exists()


@pytest.mark.parametrize("name", ["vectors.kv", "vectors.model", "vectors.bin", "vectors.vec"])
def test_pickled_vectors_are_refused_with_how_to_convert(name: str, tmp_path: Path) -> None:
    from transfer.vectors.vector_formats import load_vectors

    marker = tmp_path / "marker"
    path = _pickle_payload(tmp_path / name, marker)
    artifacts = make_artifacts(tmp_path)
    refused(f"pickled vectors file {name}", "transfer.vectors.vector_formats.load_vectors", lambda: load_vectors(path),
            r"refused: .*pickles.*save_word2vec_format", artifacts, VectorsError)
    assert not marker.exists()


@pytest.mark.parametrize(("case", "values", "pattern"), [
    ("target_language='../x'", {"target_language": "../x"}, r"target_language '\.\./x' is not a language tag"),
    ("registered_model_prefix='../../evil-'", {"registered_model_prefix": "../../evil-"},
     r"registered_model_prefix .* is not a safe name"),
], ids=["language", "prefix"])
def test_no_name_escapes_its_folder(case, values, pattern, tmp_path: Path, tiny_source: Path,
                                    tiny_corpus: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    refused(case, "AdaptConfig validators", lambda: run_adaptation(config(
        tmp_path, tiny_source, tiny_corpus, cache_dir=artifacts / "cache", output_dir=artifacts / "models",
        **values)), pattern, artifacts)
    assert not (tmp_path / "x").exists() and not (tmp_path / "evil-de").exists()


def test_a_strategy_name_with_a_slash_cannot_name_a_folder(tmp_path: Path, tiny_source: Path,
                                                           tiny_corpus: Path) -> None:
    # strategies come from plugins: a name is still one path component of the model folder
    from transfer.init import registry

    def escape(inputs):  # never runs: refused before any stage
        raise AssertionError("ran")

    registry.register("../../escape")(escape)
    try:
        artifacts = make_artifacts(tmp_path)
        cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="../../escape",
                      cache_dir=artifacts / "cache", output_dir=artifacts / "models")
        refused("model name with '/' (strategy '../../escape')", "validate_config -> _check_names",
                lambda: run_adaptation(cfg), r"model name .*'tiny-llama-de-\.\./\.\./escape' is not a safe name",
                artifacts)
    finally:
        registry._STRATEGIES.pop("../../escape")


def test_the_prefect_server_binds_to_localhost_by_default() -> None:
    from flows import cli
    from flows.deployments import start_local_server

    assert inspect.signature(start_local_server).parameters["host"].default == "127.0.0.1"
    # `vocab-transfer serve` takes no host option and passes none: the default applies
    assert "host" not in inspect.signature(cli.serve).parameters
    call = re.search(r"start_local_server\(([^)]*)\)", inspect.getsource(cli.serve))
    assert call is not None and "host" not in call.group(1)
