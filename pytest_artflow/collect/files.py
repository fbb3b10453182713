"""Which files are flow files, and loading one as a module of this process."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.pathlib import (
    CouldNotResolvePathError,
    import_path,
    is_importable,
    resolve_pkg_root_and_module_name,
)
from _pytest.python import path_matches_patterns

from .. import flows


def _is_test_module(path: Path, config: pytest.Config) -> bool:
    return path.name == "conftest.py" or path_matches_patterns(path, config.getini("python_files"))


def is_flow_file(path: Path) -> bool:
    """Whether ``path`` defines a flow, judged from its text: a class deriving
    from a ``...FlowSpec`` name, or with a ``@step`` method. Cheap, so every
    ``.py`` file under the paths can be asked without importing it."""
    try:
        source = path.read_bytes()
    except OSError:
        return False
    if b"FlowSpec" not in source and b"step" not in source:
        return False
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        # Let loading report it: a broken flow file should fail, not vanish.
        return b"FlowSpec" in source
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and (
            any(_name(base).endswith("FlowSpec") for base in node.bases)
            or any(
                _name(d) in ("step", "metaflow.step")
                for f in node.body
                if isinstance(f, ast.FunctionDef)
                for d in f.decorator_list
            )
        ):
            return True
    return False


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        return _name(node.func)
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def load_module(path: Path, config: pytest.Config) -> ModuleType:
    """The flow file as a module of this process, without its ``__main__`` block.

    A file inside a package is imported the way pytest imports a test module
    of that package (``import_path`` with the session's ``--import-mode``), so
    ``from pkg.flow import MyFlow`` in a test finds this very module and the
    file runs once here. A file already importable by its bare name is
    imported by it. Anything else goes through ``flows.load_file``, which
    leaves ``sys.path`` alone.
    """
    name = None
    try:
        _, name = resolve_pkg_root_and_module_name(path)
        in_package = True
    except CouldNotResolvePathError:
        in_package = False
        name = path.stem if is_importable(path.stem, path) else None
    if name is not None:
        try:
            with flows.contained(path) as added:
                if in_package:
                    module = import_path(
                        path,
                        mode=config.getoption("importmode"),
                        root=config.rootpath,
                        consider_namespace_packages=config.getini("consider_namespace_packages"),
                    )
                else:
                    module = importlib.import_module(name)
            flows.remember_import_paths(module, added)
            return module
        except Exception:
            # flows.load_file executes it again and says what went wrong.
            sys.modules.pop(name, None)
    return flows.load_file(path)
