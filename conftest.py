"""Root pytest plugin: do not import test modules whose every test the ``-m`` expression deselects.

Framework-heavy test modules (torch, LlamaIndex + Qdrant, the reference package, notebooks) declare their marker
once, at module level (``pytestmark = pytest.mark.integration`` or a list holding it). Deselecting their tests with
``-m "not integration"`` would still import them, which costs most of the inner loop's time. So before a
``test_*.py`` module is imported, its source is parsed (not run) for a module-level ``pytestmark``; the module is
skipped when no test in it could match ``-m`` whatever marks its tests add. Anything this reading cannot decide
(no ``-m``, an expression with keyword arguments, a ``pytestmark`` built from variables) is collected as usual, so
the rule can only save imports, never drop a test that ``-m`` would select. ``pytest`` with no ``-m`` runs all.
"""

from __future__ import annotations

import ast
import itertools
import os
from pathlib import Path

import pytest

_SKIPPED: list[str] = []


def _module_marks(path: Path) -> set[str]:
    """Names ``X`` of every ``pytest.mark.X`` / ``mark.X`` in the module-level ``pytestmark`` assignment."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets):
            continue
        for sub in ast.walk(value):
            if isinstance(sub, ast.Attribute) and (
                (isinstance(sub.value, ast.Attribute) and sub.value.attr == "mark")
                or (isinstance(sub.value, ast.Name) and sub.value.id == "mark")
            ):
                names.add(sub.attr)
    return names


def _compile(expression: str) -> tuple[ast.expr, set[str]] | None:
    """The ``-m`` expression as a Python boolean AST over marker names, or None if it uses anything else."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif not isinstance(node, (ast.BoolOp, ast.UnaryOp, ast.And, ast.Or, ast.Not, ast.Load)):
            return None  # keyword matching `name(key=value)`, operators, constants: leave it to pytest
    return tree, names


def _evaluate(node: ast.expr, true: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in true
    if isinstance(node, ast.UnaryOp):  # only `not` passes _compile
        return not _evaluate(node.operand, true)
    assert isinstance(node, ast.BoolOp)
    values = (_evaluate(v, true) for v in node.values)
    return all(values) if isinstance(node.op, ast.And) else any(values)


def _never_selected(expression: str, marks: set[str]) -> bool:
    """True if no test carrying ``marks`` (plus any others) can match ``expression``."""
    compiled = _compile(expression)
    if compiled is None:
        return False
    tree, names = compiled
    free = sorted(names - marks)
    if len(free) > 12:
        return False
    for bits in itertools.product((False, True), repeat=len(free)):
        if _evaluate(tree, marks | {n for n, b in zip(free, bits) if b}):
            return False
    return True


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    expression = config.getoption("markexpr", default="")
    if not expression or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    marks = _module_marks(collection_path)
    if marks and _never_selected(expression, marks):
        _SKIPPED.append(os.path.relpath(collection_path, config.rootpath))
        return True
    return None


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    if not _SKIPPED:
        return None
    return f"not imported ({len(_SKIPPED)} modules, every test deselected by -m): " + ", ".join(sorted(_SKIPPED))
