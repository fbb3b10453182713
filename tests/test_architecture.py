"""The package's shape: a module's place says which process it runs in.

``inflow/`` runs inside a flow's own processes and ``forkserver/`` in the fork
server and its forks; neither may pull in pytest or the pytest-side modules
(every task process would pay for them, and a fork would carry the pytest
process's state). Import circles are refused everywhere: with them, which
module finishes loading first depends on who imports first.

The graph is read from the source (AST), the way Python resolves the imports:
every ``import``/``from ... import`` a module executes, at its top or inside a
function, except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_artflow

PACKAGE = Path(pytest_artflow.__file__).parent
NAME = PACKAGE.name

#: Where the flow's processes and the fork server's code lives.
PROCESS_SIDE = ("inflow", "forkserver")
#: The modules both sides share: plain data, errors and value helpers.
SHARED = (
    "",  # the package itself: it imports only ``errors``
    "errors",
    "metaflow_seam",
    "step",
    "step.job",
    "unpicklable",
    "compare",
    "session",
    "timeline",
)
#: Third-party packages of the pytest process only.
PYTEST_ONLY_PACKAGES = ("pytest", "_pytest", "pluggy", "hypothesis", "xdist")


def module_files(package: Path) -> dict[str, Path]:
    files = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(module: str, path: Path) -> set[str]:
    """Every absolute module name ``module`` imports at run time (and, for a
    ``from X import y``, ``X.y`` too: ``y`` may be a submodule)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - child.level + 1]
                    source = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    source = child.module or ""
                found.add(source)
                found.update(f"{source}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_graph(package: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The package's modules -> the package's modules each imports, and ->
    the top-level names of the other packages each imports."""
    files = module_files(package)
    inner: dict[str, set[str]] = {}
    outer: dict[str, set[str]] = {}
    for module, path in files.items():
        names = imported_names(module, path)
        inner[module] = {n for n in names if n in files and n != module}
        outer[module] = {n.split(".")[0] for n in names if n.split(".")[0] != package.name}
    return inner, outer


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` loads, directly or not -> the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        for other in graph[module]:
            if other not in seen and other != start:
                seen[other] = module
                todo.append(other)
    return seen


def _local(module: str) -> str:
    return module[len(NAME) + 1 :] if module != NAME else ""


def _process_side(module: str) -> bool:
    local = _local(module)
    return any(local == side or local.startswith(side + ".") for side in PROCESS_SIDE)


def test_no_import_circles() -> None:
    inner, _ = import_graph(PACKAGE)
    assert circles(inner) == []


def test_circles_are_found() -> None:
    """The check itself: a circle through a function-level import counts,
    one through ``if TYPE_CHECKING:`` does not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_function_level_imports_count_type_checking_ones_do_not(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import X\n"
        "from .a import f\n"
    )
    (package / "c.py").write_text("from .b import f\n")
    inner, _ = import_graph(package)
    assert inner["pkg.a"] == {"pkg", "pkg.b"}
    assert inner["pkg.b"] == {"pkg.a"}
    assert circles(inner) == [["pkg.a", "pkg.b"]]


@pytest.mark.parametrize(
    "module",
    sorted(m for m in module_files(PACKAGE) if _process_side(m)),
)
def test_process_side_loads_no_pytest_side_module(module: str) -> None:
    """What runs in a flow's processes or the fork server reaches (through any
    chain of imports) only its own side and the shared modules, and never
    pytest, pluggy or hypothesis."""
    inner, outer = import_graph(PACKAGE)
    loaded = reachable(inner, module)
    wrong = {
        other: via
        for other, via in loaded.items()
        if not _process_side(other) and _local(other) not in SHARED
    }
    assert wrong == {}, f"{module} loads pytest-side modules (module: imported by)"
    heavy = {
        (name, other)
        for other in [module, *loaded]
        for name in outer[other]
        if name in PYTEST_ONLY_PACKAGES
    }
    assert heavy == set()


def test_launcher_imports_no_pytest() -> None:
    """The module every flow process runs as, imported in a fresh interpreter:
    neither pytest nor the pytest-side modules come along."""
    code = (
        "import sys, pytest_artflow.inflow.launch, pytest_artflow.inflow.stepjob\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{PYTEST_ONLY_PACKAGES!r} or m.startswith('{NAME}.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [m for m in out if m.split(".")[0] in PYTEST_ONLY_PACKAGES]
    loaded = [m for m in out if not _process_side(m)]
    assert all(_local(m) in SHARED for m in loaded), loaded
