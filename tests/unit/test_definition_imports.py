"""The definition layer imports nothing above it: every import of every module under conveyor/definition/,
read from the source with ``ast``, including imports inside functions and ``importlib.import_module`` calls.

An import under ``if TYPE_CHECKING:`` is never executed; it is allowed when the names it binds appear only
in annotations.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import conveyor.definition

DEFINITION = Path(conveyor.definition.__file__).parent

BELOW_OR_AT_DEFINITION = ("conveyor.definition", "conveyor.errors", "conveyor.codec")
"""The parts of conveyor the definition layer may import (each with its submodules)."""

ALLOWED_FOR_NOW: set[tuple[str, str]] = set()
"""Known violations, as (importing module, imported module), tolerated until they are removed."""


@dataclass(frozen=True)
class Import:
    """One import found in a module's source."""

    module: str
    """The importing module."""
    imported: str
    """The module it imports (absolute)."""
    line: int
    typing_only: bool
    """Under ``if TYPE_CHECKING:``."""
    names: tuple[str, ...] = ()
    """The names the import binds in the module."""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def find_imports(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import in ``source`` (the text of ``module``), at any depth."""
    found: list[Import] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                found.append(Import(module, alias.name, node.lineno, typing_only, (bound,)))
        elif isinstance(node, ast.ImportFrom):
            imported = _absolute(module, is_package, node.level, node.module)
            bound = tuple(alias.asname or alias.name for alias in node.names)
            found.append(Import(module, imported, node.lineno, typing_only, bound))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append(Import(module, node.args[0].value, node.lineno, typing_only))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(ast.parse(source), False)
    return found


def _annotations(tree: ast.AST) -> set[int]:
    """The ids of every node inside an annotation."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        roots: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        for root in roots:
            if root is not None:
                inside.update(id(child) for child in ast.walk(root))
    return inside


def used_outside_annotations(source: str, names: set[str]) -> list[tuple[str, int]]:
    """Where any of ``names`` is read other than in an annotation."""
    tree = ast.parse(source)
    annotations = _annotations(tree)
    return [
        (node.id, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id in names and id(node) not in annotations
    ]


def _allowed(imported: str) -> bool:
    if imported != "conveyor" and not imported.startswith("conveyor."):
        return True
    return any(imported == part or imported.startswith(part + ".") for part in BELOW_OR_AT_DEFINITION)


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """What in ``source`` reaches above the definition layer, each said in one line."""
    problems = []
    typing_names: set[str] = set()
    for found in find_imports(source, module, is_package=is_package):
        if _allowed(found.imported):
            continue
        if found.typing_only:
            typing_names.update(found.names)
        elif (module, found.imported) not in ALLOWED_FOR_NOW:
            problems.append(f"{module}, line {found.line}: imports {found.imported}")
    for name, line in used_outside_annotations(source, typing_names):
        problems.append(
            f"{module}, line {line}: uses {name}, imported under TYPE_CHECKING, outside an annotation"
        )
    return problems


def definition_modules() -> list[tuple[str, Path]]:
    """Every module under conveyor/definition/, by dotted name."""
    modules = []
    for path in sorted(DEFINITION.rglob("*.py")):
        parts = path.relative_to(DEFINITION).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.append((".".join(("conveyor.definition", *parts)), path))
    return modules


@pytest.mark.parametrize(("module", "path"), definition_modules(), ids=lambda value: str(value))
def test_a_definition_module_imports_nothing_above_the_definition_layer(module: str, path: Path) -> None:
    """No import of the module, lazy or not, reaches the engine, backends, core, saga or the package."""
    source = path.read_text(encoding="utf-8")
    assert violations(source, module, is_package=path.name == "__init__.py") == []


def test_every_allowance_is_still_needed() -> None:
    """An allowance whose import is gone must be deleted, so the rule cannot silently loosen."""
    imports = {
        (found.module, found.imported)
        for module, path in definition_modules()
        for found in find_imports(path.read_text(encoding="utf-8"), module)
    }
    assert not ALLOWED_FOR_NOW - imports, f"delete from ALLOWED_FOR_NOW: {sorted(ALLOWED_FOR_NOW - imports)}"


def test_the_walk_finds_every_kind_of_import_that_reaches_above() -> None:
    """Top-level, lazy, relative and importlib imports, and typing-only names used at run time, are found."""
    source = """
from __future__ import annotations
import importlib
from typing import TYPE_CHECKING
import conveyor
from conveyor.definition.workflow import Workflow
from conveyor.errors import DefinitionError
from ..engine import api
if TYPE_CHECKING:
    from conveyor.backends.base import Backend
    from conveyor.engine.status import WorkflowStatus

def start(backend: Backend) -> WorkflowStatus:
    from conveyor.engine.api import run_durable_workflow
    import conveyor.backends.memory as memory
    importlib.import_module("conveyor.saga")
    return isinstance(backend, Backend)
"""
    assert violations(source, "conveyor.definition.example") == [
        "conveyor.definition.example, line 5: imports conveyor",
        "conveyor.definition.example, line 8: imports conveyor.engine",
        "conveyor.definition.example, line 14: imports conveyor.engine.api",
        "conveyor.definition.example, line 15: imports conveyor.backends.memory",
        "conveyor.definition.example, line 16: imports conveyor.saga",
        "conveyor.definition.example, line 17: uses Backend, imported under TYPE_CHECKING, outside an "
        "annotation",
    ]
