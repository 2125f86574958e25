"""The code version in a stage's cache key covers only the modules that stage can import,
so editing unrelated code (the MLflow registry) keeps hours of fastText and training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from transfer.engine.code_version import (
    REPO_ROOT,
    SOURCE_PACKAGES,
    code_version,
    module_closure,
    stage_code_version,
)
from transfer.engine.stage_table import STAGE_TABLE


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of our sources, to edit without touching the checkout."""
    for package in SOURCE_PACKAGES:
        shutil.copytree(REPO_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _relative(files: list[Path], root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in files}


STAGES = ("corpus", "source", "tokenizer", "fasttext", "align", "init", "train", "evaluate")


def test_a_copy_has_the_same_versions(tree: Path) -> None:
    # paths are hashed relative to the root, so an unedited copy is the same code
    assert {s: stage_code_version(s, tree) for s in STAGES} == {s: stage_code_version(s) for s in STAGES}
    assert code_version(tree) == code_version()


def test_editing_the_registry_keeps_every_stage_key(tree: Path) -> None:
    for module in ("registry_records.py", "registry_store.py"):
        _append(tree / "transfer" / "publish" / module, "\n# an edit of the registry\n")
    assert code_version(tree) != code_version()  # the whole tree sees the edit
    for stage in STAGES:  # fastText and training above all
        assert stage_code_version(stage, tree) == stage_code_version(stage), stage


def test_editing_the_trainer_changes_the_train_key_only(tree: Path) -> None:
    _append(tree / "transfer" / "train" / "trainer.py", "\n# an edit of the trainer\n")
    assert stage_code_version("train", tree) != stage_code_version("train")
    for stage in ("corpus", "fasttext", "align", "tokenizer"):
        assert stage_code_version(stage, tree) == stage_code_version(stage), stage


def test_train_closure() -> None:
    files = _relative(module_closure(STAGE_TABLE["train"].module), REPO_ROOT)
    assert "transfer/train/trainer.py" in files  # imported inside the builder
    assert "transfer/train/__init__.py" in files and "transfer/__init__.py" in files
    assert "transfer/publish/registry_store.py" not in files
    assert "transfer/publish/registry_records.py" not in files
    assert "transfer/settings/config.py" not in files  # only under TYPE_CHECKING in the stage modules


def test_closure_follows_relative_lazy_and_plugin_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "transfer" / "demo"
    (pkg / "plugins").mkdir(parents=True)
    (tmp_path / "transfer" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "stage.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import helper\n"
        "if TYPE_CHECKING:\n    from transfer.demo import typed_only\n"
        "def build():\n    from transfer.demo.lazy import f\n"
        "    import transfer.demo.registry\n")
    for name in ("helper", "typed_only", "lazy", "unused"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "registry.py").write_text(
        "import importlib, pkgutil\n"
        "from transfer.demo import plugins as _plugins\n"
        "for m in pkgutil.iter_modules(_plugins.__path__):\n"
        "    importlib.import_module(f'{_plugins.__name__}.{m.name}')\n")
    (pkg / "plugins" / "__init__.py").write_text("")
    (pkg / "plugins" / "one.py").write_text("from ..helper import x\n")
    files = _relative(module_closure("transfer.demo.stage", tmp_path), tmp_path)
    assert files == {"transfer/__init__.py", "transfer/demo/__init__.py", "transfer/demo/stage.py",
                     "transfer/demo/helper.py", "transfer/demo/lazy.py", "transfer/demo/registry.py",
                     "transfer/demo/plugins/__init__.py", "transfer/demo/plugins/one.py"}


def test_every_stage_has_a_closure_smaller_than_the_tree() -> None:
    tree = {p for package in SOURCE_PACKAGES for p in (REPO_ROOT / package).rglob("*.py")}
    for stage, module in ((name, kind.module) for name, kind in STAGE_TABLE.items()):
        files = set(module_closure(module))
        assert REPO_ROOT / Path(*module.split(".")).with_suffix(".py") in files, stage
        assert files < tree, stage
