"""The library never imports the `wechsel` reference package (it is a benchmark-only aid)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "transfer"


def _imported_roots(path: Path) -> set[str]:
    """Top-level module names of the absolute imports in one source file."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    roots.add(arg.value.split(".")[0])
    return roots


def test_no_source_file_imports_the_reference_package():
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 10
    offenders = [str(p.relative_to(ROOT)) for p in files if "wechsel" in _imported_roots(p)]
    assert offenders == []


def test_the_scan_sees_imports_of_the_reference(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom wechsel import WECHSEL\nfrom .wechsel import x\n")
    assert "wechsel" in _imported_roots(sample)
    sample.write_text("from transfer.init.strategies.wechsel import wechsel\nfrom . import wechsel\n")
    assert "wechsel" not in _imported_roots(sample)


def test_importing_every_strategy_leaves_the_reference_unloaded():
    # every strategy module (the package imports them all) and the modules WECHSEL uses
    code = (
        "import sys, transfer.init, transfer.init.similarity, transfer.init.factorized\n"
        "import transfer.vectors.subwords, transfer.vectors.alignment, transfer.vectors.static_vectors\n"
        "import transfer.vectors.vector_formats, transfer.vectors.compact_vectors\n"
        "import transfer.vectors.fasttext_training\n"
        "print('wechsel' in sys.modules, len(transfer.init.available_strategies()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded, n_strategies = out.stdout.strip().splitlines()[-1].split()
    assert loaded == "False" and int(n_strategies) >= 5
