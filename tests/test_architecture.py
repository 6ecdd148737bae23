"""The direction of dependencies, checked on the source (issue 17, "Done when").

The import graph is built with :mod:`ast` from the files themselves, nothing is imported: every ``import`` and
``from ... import`` statement counts, at module level or inside a function (a lazy import is still a
dependency), relative imports resolved against the importing module, and ``importlib.import_module("...")``
with a literal name too. ``from pkg import name`` depends on the module ``pkg.name`` when there is one, else on
``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "nudge_rag"
ADAPTER_PACKAGES = {  # the import name of each adapter -> its source folder
    "langchain_nudge": ROOT / "integrations" / "langchain-nudge" / "langchain_nudge",
    "llama_index.nudge": ROOT / "integrations" / "llama-index-nudge" / "llama_index" / "nudge",
}
DISTRIBUTED = "nudge_rag.distributed"
# the command lines that offer ``--engine dask``: allowed to import the distributed package
MAY_IMPORT_DISTRIBUTED = {"nudge_rag.cli", "nudge_rag.stores.cli"}


# ---------------------------------------------------------------------------------------------- the graph


def modules_of(folder: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``folder`` (a package named ``package``)."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def is_package(name: str, path: Path) -> bool:
    return path.name == "__init__.py"


def imported_names(name: str, path: Path) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """(module named, line, names imported from it) for every import in the file of module ``name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package(name, path) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno, tuple(a.name for a in node.names)
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value, node.lineno, ()


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"import_module", "__import__"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def dependencies(name: str, path: Path, known: Iterable[str]) -> dict[str, int]:
    """Modules of ``known`` that module ``name`` imports -> the first line that does."""
    known = set(known)
    out: dict[str, int] = {}
    for target, line, names in imported_names(name, path):
        hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]  # from pkg import submodule
        if len(hits) < len(names) or not names:  # some names are attributes of target itself
            hits.append(target)
        for hit in hits:
            while hit and hit not in known:  # import a.b.c of a non-module c: a.b
                hit = hit.rpartition(".")[0]
            if hit and hit != name:
                out.setdefault(hit, line)
    return out


def graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    return {name: dependencies(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as one concrete cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_one_cycle(sorted(component), edges))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _one_cycle(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth first)."""
    inside, start = set(component), component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w == start:
                    return paths[v] + [start]
                if w in inside and w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component  # unreachable for a strongly connected component


def describe(cycle: list[str], edges: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {edges[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


# ---------------------------------------------------------------------------------------------- the checks

CORE_MODULES = modules_of(CORE, "nudge_rag")
CORE_GRAPH = graph(CORE_MODULES)


def test_the_graph_sees_what_it_should(tmp_path):
    """The parser on a small package, so a broken parser cannot make the other checks pass vacuously."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from . import b  # lazy\n    return b\n")
    (pkg / "b.py").write_text("import importlib\nimportlib.import_module('pkg.sub.c')\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import f\nimport pkg.b.attribute\n")
    edges = graph(modules_of(pkg, "pkg"))
    assert edges == {
        "pkg": {"pkg.a": 1},
        "pkg.a": {"pkg.b": 2},
        "pkg.b": {"pkg.sub.c": 2},
        "pkg.sub": {},
        "pkg.sub.c": {"pkg.a": 1, "pkg.b": 2},
    }
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert describe(cycles(edges)[0], edges) == "pkg.a (line 2) -> pkg.b (line 2) -> pkg.sub.c (line 1) -> pkg.a"
    assert len(CORE_MODULES) > 30 and "nudge_rag.corpus" in CORE_GRAPH["nudge_rag.distributed"]  # from ..corpus


def test_no_import_cycles_in_nudge_rag():
    found = cycles(CORE_GRAPH)
    assert not found, "import cycles:\n" + "\n".join(describe(c, CORE_GRAPH) for c in found)


def test_no_core_module_imports_the_distributed_package():
    """The extension knows the core, never the reverse: only the command lines (``--engine dask``) import it."""
    offenders = [
        f"{name} imports {dep} (line {line})"
        for name, deps in CORE_GRAPH.items()
        if not name.startswith(DISTRIBUTED) and name not in MAY_IMPORT_DISTRIBUTED
        for dep, line in deps.items()
        if dep == DISTRIBUTED or dep.startswith(DISTRIBUTED + ".")
    ]
    assert not offenders, "\n".join(offenders)


def private_core_imports() -> list[str]:
    """``file:line imports nudge_rag...._module`` for every adapter import of a private core module."""
    offenders = []
    for package, folder in ADAPTER_PACKAGES.items():
        for name, path in modules_of(folder, package).items():
            for dep, line in dependencies(name, path, CORE_MODULES).items():
                if any(part.startswith("_") for part in dep.split(".")):
                    offenders.append(f"{path.relative_to(ROOT)}:{line} imports {dep}")
    return sorted(offenders)


def test_adapters_import_only_public_core_modules():
    offenders = private_core_imports()
    assert not offenders, "adapters import private core modules:\n" + "\n".join(offenders)
