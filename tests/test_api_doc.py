"""``docs/API.md`` names only what exists: every ``from nudge_rag... import`` line imports, every dotted
``nudge_rag.*`` name resolves, every ``Class.method`` of the page is an attribute of that class, and the command
table lists exactly the commands of ``nudge-rag --help``."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "API.md"
TEXT = API.read_text(encoding="utf-8")


def _resolve(dotted: str) -> object:
    """The object named ``dotted`` (a module, or an attribute of the longest importable module prefix)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


IMPORTS = re.findall(r"^from (nudge_rag[\w.]*) import ([\w, ]+)$", TEXT, flags=re.M)
DOTTED = sorted(set(re.findall(r"\bnudge_rag(?:\.\w+)+", TEXT)) - {"nudge_rag.__all__"})


@pytest.mark.parametrize("module, names", IMPORTS, ids=[m for m, _ in IMPORTS])
def test_every_import_line_imports(module, names):
    mod = importlib.import_module(module)
    for name in (n.strip() for n in names.split(",")):
        assert hasattr(mod, name), f"{module}.{name}"
        assert name in getattr(mod, "__all__", [name]), f"{module}.{name} is not in {module}.__all__ (not public)"


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_dotted_name_resolves(dotted):
    _resolve(dotted)


def test_methods_named_on_the_page_exist():
    from nudge_rag import FinetuneReport, Patch, Questions
    from nudge_rag.feedback import FeedbackLog
    from nudge_rag.stores import BaseStore

    owners = {"store": BaseStore, "log": FeedbackLog, "patch": Patch, "q": Questions, "report": FinetuneReport}
    for var, attr in re.findall(r"\b(store|log|patch|q|report)\.(\w+)", TEXT):
        cls = owners[var]
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        assert hasattr(cls, attr) or attr in fields, f"{cls.__name__}.{attr}"


def test_command_table_is_the_parser():
    from nudge_rag.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    documented = re.findall(r"^nudge-rag (\w+) ", TEXT, flags=re.M)
    assert documented == list(sub.choices)
