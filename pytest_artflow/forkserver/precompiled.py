"""Modules every process of a run imports afresh, read from disk only once.

Metaflow's CLI (``metaflow.cli`` and the command modules it loads) must be
imported by each process of a run for its own flow: the module body adds the
flow's decorator and ``Config`` options to the ``start`` command as it runs
(``decorators.add_decorator_options``, ``config_options``). So the fork server
cannot import it for everyone, and each process pays for the import: about
4 ms, half of it finding the files and unmarshalling their bytecode, on every
task.

The server reads that bytecode once; each process then runs the same code
objects as its import. The module's body runs in full, in the process that
imports it, exactly as a normal import runs it (same ``__file__``,
``__cached__``, ``__spec__.origin``, same source for tracebacks and
``inspect``); only the finding and unmarshalling is skipped.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterable, Sequence
from typing import Any


class PrecompiledImports(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A finder and loader for a fixed set of modules, from code objects
    read when it was made (their packages must be imported by then)."""

    def __init__(self, names: Iterable[str]) -> None:
        self._found: dict[str, tuple[importlib.machinery.ModuleSpec, types.CodeType]] = {}
        for name in names:
            spec = importlib.util.find_spec(name)
            loader = spec.loader if spec is not None else None
            if spec is None or not isinstance(loader, importlib.machinery.SourceFileLoader):
                continue  # not a plain source module: imported as usual
            code = loader.get_code(name)
            if code is not None:
                self._found[name] = (spec, code)

    def install(self) -> None:
        """Be asked first, in this process and every fork of it."""
        sys.meta_path.insert(0, self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        found = self._found.get(fullname)
        if found is None:
            return None
        original, _ = found
        spec = importlib.util.spec_from_file_location(fullname, original.origin, loader=self)
        if spec is not None:
            spec.cached = original.cached
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        _, code = self._found[module.__name__]
        exec(code, module.__dict__)

    def get_source(self, fullname: str) -> str | None:
        original, _ = self._found[fullname]
        loader = original.loader
        if isinstance(loader, importlib.abc.InspectLoader):
            return loader.get_source(fullname)
        return None
