"""The version of our code that a cached stage depends on.

A stage's cache key includes a code version so that changed code misses the cache. Hashing
the whole tree would make any edit (say, to the MLflow registry) throw away hours of
fastText and training, so each stage's version covers only the modules its builder can
import: its stage module (``transfer.engine.stage_table.STAGE_TABLE``) and, transitively, every
module of ours (``transfer``, ``tokenizer_builds``) that it imports, found statically with
``ast``. Imports inside functions count (our code imports lazily), as do relative imports,
the ``__init__.py`` of every package on the way, and packages whose modules a module loads
with ``pkgutil.iter_modules`` (the strategy plug-ins); imports under ``if TYPE_CHECKING:``
do not, since they never run. ``code_version()`` is the whole tree's version, recorded by
the run manifest as the code the run came from.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from transfer import __version__
from transfer.engine.stage_table import STAGE_TABLE

#: Our top-level packages; imports of anything else (torch, transformers ...) are
#: versioned by the environment, not by this hash.
SOURCE_PACKAGES = ("transfer", "tokenizer_builds")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _digest(files: Iterable[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"


@lru_cache(maxsize=8)
def code_version(root: Path = REPO_ROOT) -> str:
    """Package version plus a hash of every source file of ours (the run manifest's)."""
    files = sorted(p for package in SOURCE_PACKAGES for p in (root / package).rglob("*.py"))
    return _digest(files, root)


# ---------------------------------------------------------------- the import closure

def _module_file(module: str, root: Path) -> Path | None:
    """The file of one of our modules (a package's ``__init__.py``), or None if not ours."""
    if module.split(".")[0] not in SOURCE_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run, i.e. all but the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _absolute(module: str | None, level: int, current: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><module> import ...`` inside ``current``."""
    if not level:
        return module or ""
    parts = current.split(".")
    package = parts if is_package else parts[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _iter_modules_target(node: ast.AST) -> str | None:
    """``x`` when ``node`` is ``pkgutil.iter_modules(x.__path__)`` (a plug-in folder walk)."""
    if not (isinstance(node, ast.Call) and node.args):
        return None
    func, arg = node.func, node.args[0]
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if (name == "iter_modules" and isinstance(arg, ast.Attribute) and arg.attr == "__path__"
            and isinstance(arg.value, ast.Name)):
        return arg.value.id
    return None


def _imports(module: str, path: Path) -> set[str]:
    """Modules that ``module`` (at ``path``) imports at run time, as candidate names: for
    ``from a import b`` both ``a`` and ``a.b`` (``b`` may be a submodule or a name)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    aliases: dict[str, str] = {}  # local name -> module, for pkgutil.iter_modules(x.__path__)
    nodes = list(_runtime_nodes(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, module, is_package)
            names.add(base)
            for alias in node.names:
                if alias.name != "*":
                    names.add(f"{base}.{alias.name}")
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in nodes:  # plug-in packages loaded by walking their folder
        walked = _iter_modules_target(node)
        if walked in aliases:
            names.add(aliases[walked] + ".*")
    return names


def _expand(name: str, root: Path) -> list[str]:
    """A candidate name as modules of ours: the module and its parent packages (importing
    ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``); ``pkg.*`` is every module of ``pkg``."""
    if name.endswith(".*"):
        package = name[:-2]
        folder = root.joinpath(*package.split("."))
        if not folder.is_dir():
            return []
        found = [package]
        for path in sorted(folder.iterdir()):
            if path.suffix == ".py" and path.stem != "__init__":
                found.append(f"{package}.{path.stem}")
            elif (path / "__init__.py").is_file():
                found.append(f"{package}.{path.name}")
        return found
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def module_closure(module: str, root: Path = REPO_ROOT) -> list[Path]:
    """The files of ``module`` and of every module of ours it imports, transitively."""
    return list(_closure(module, Path(root)))


@lru_cache(maxsize=64)
def _closure(module: str, root: Path) -> tuple[Path, ...]:
    seen: dict[str, Path] = {}
    todo = _expand(module, root)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name, root)
        if path is None:
            continue
        seen[name] = path
        for imported in _imports(name, path):
            todo.extend(n for n in _expand(imported, root) if n not in seen)
    return tuple(sorted(set(seen.values())))


@lru_cache(maxsize=64)
def stage_code_version(stage: str, root: Path = REPO_ROOT) -> str:
    """The code version in ``stage``'s cache key: package version plus a hash of the
    files its builder can import. A stage not in ``STAGE_TABLE`` gets the whole tree's."""
    kind = STAGE_TABLE.get(stage)
    if kind is None:
        return code_version(root)
    return _digest(_closure(kind.module, Path(root)), Path(root))
