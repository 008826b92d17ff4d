"""The package's static import graph: which spirl modules a file imports, directly and transitively.

Two users: each stage's code dependencies (a change to any module its script runs re-runs the job in Snakemake and
DVC) and the layering test (tests/unit/test_architecture.py). Static: every `import spirl.x` and `from spirl.x import
y` anywhere in a file, function-level imports included, resolved against the files under src/.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]  # src/
# The package's layers, most basic first (docs/architecture.md): a module imports only from its own layer and lower
# ones (tests/unit/test_architecture.py).
LAYERS = ("params", "common", "envs", "saliency", "agents", "training", "reporting", "workflow")
ROOT = SRC.parent


def module_path(name: str) -> Path | None:
    """The file that defines dotted module `name` (a module or a package's __init__), or None."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    """The dotted name of a file under src/spirl (spirl.saliency.mae; a package's __init__ is the package)."""
    parts = list(path.resolve().relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(name: str) -> list[str]:
    """A module and the packages Python executes before it (spirl, spirl.saliency, spirl.saliency.mae)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.cache
def direct_imports(path: Path) -> frozenset[str]:
    """The spirl modules (with their parent packages) that one file imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            candidates = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in candidates:
            if (name == "spirl" or name.startswith("spirl.")) and module_path(name) is not None:
                names.update(_with_parents(name))
    return frozenset(names)


def transitive_imports(path: Path) -> list[str]:
    """Every spirl module a file runs when imported or executed, sorted by name."""
    seen: set[str] = set()
    todo = list(direct_imports(path.resolve()))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(direct_imports(module_path(name)))
    return sorted(seen)


def code_files(script: str) -> tuple[str, ...]:
    """A script and every spirl file it runs, as repository-relative paths (the stage's code dependencies)."""
    files = [module_path(name).relative_to(ROOT).as_posix() for name in transitive_imports(ROOT / script)]
    return (script, *files)
