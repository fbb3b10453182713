"""Turn what a test names (a class, a file, ``file.py:Class``, ``pkg.mod:Class``)
into a ``FlowRef``: the flow class, the file its processes run, and the module
that holds the class in the pytest process.

Loading happens once per file (and again if the file changes): the file is
executed in the pytest process without its ``__main__`` block, so the class can
be linted, its Parameters read, and classes defined in it unpickled later.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import metaflow_seam
from .errors import FlowLoadWarning, FlowReferenceError

if TYPE_CHECKING:
    from metaflow import FlowSpec


@dataclass(frozen=True)
class FlowRef:
    """A flow that an engine can run."""

    flow_class: type[FlowSpec]
    file: Path
    #: The module holding ``flow_class`` in this process. The flow's processes
    #: run ``file`` as ``__main__``, so pickles naming ``__main__.X`` resolve here.
    module: ModuleType
    #: Defined inside a function (a test): the class has no name in ``file``,
    #: so it is shipped to the flow's processes by value, with cloudpickle.
    local: bool = False

    @property
    def name(self) -> str:
        return self.flow_class.__name__

    @property
    def main_module(self) -> ModuleType | None:
        """The module whose classes are ``__main__`` ones in the flow's processes
        (none for a shipped class: its file is not run there)."""
        return None if self.local else self.module

    @cached_property
    def parameters(self) -> dict[str, Any]:
        """Metaflow ``Parameter`` objects by their command-line name."""
        return {
            p.name: p
            for _, p in metaflow_seam.parameters(self.flow_class)
            if not getattr(p, "IS_CONFIG_PARAMETER", False)
        }

    @cached_property
    def configs(self) -> dict[str, Any]:
        """Metaflow ``Config`` objects by their command-line name."""
        return {
            p.name: p
            for _, p in metaflow_seam.parameters(self.flow_class)
            if getattr(p, "IS_CONFIG_PARAMETER", False)
        }

    @cached_property
    def step_names(self) -> list[str]:
        """Step names in graph order (Metaflow's own graph)."""
        return list(metaflow_seam.graph(self.flow_class).sorted_nodes)

    def parameter_args(self, values: Mapping[str, Any]) -> list[str]:
        """Command-line options for Parameter values given by attribute or Parameter name.

        Values are written the way Metaflow's click options read them back:
        containers as JSON (what ``JSONType`` parses), anything else with ``str()``.
        """
        from metaflow import IncludeFile

        by_attribute = {attr: p for attr, p in metaflow_seam.parameters(self.flow_class)}
        args: list[str] = []
        given: set[str] = set()
        for key, value in values.items():
            param = self.parameters.get(key)
            if param is None:  # not `or`: a Config is a Mapping, true or false lazily
                param = self.configs.get(key, by_attribute.get(key))
            if param is not None and getattr(param, "IS_CONFIG_PARAMETER", False):
                raise FlowReferenceError(
                    f"{key!r} of {self.name} is a Config, not a Parameter: pass it as "
                    f"config={{{param.name!r}: path}} or config_value={{{param.name!r}: value}}"
                )
            if param is None:
                known = ", ".join(sorted(self.parameters)) or "none"
                raise FlowReferenceError(
                    f"{self.name} has no Parameter {key!r} (its Parameters: {known})"
                )
            given.add(param.name)
            if value is None or isinstance(value, (dict, list, tuple)):
                value = json.dumps(value)
            elif isinstance(value, os.PathLike):
                value = os.fspath(value)
            args += [f"--{param.name}", str(value)]
        # IncludeFile defaults are paths relative to where `python flow.py` runs,
        # which is the flow's own directory in practice; runs happen in the
        # sandbox, so such defaults are passed as absolute paths.
        for name, param in self.parameters.items():
            default = _declared(param, "default")
            if name in given or not isinstance(param, IncludeFile) or not isinstance(default, str):
                continue
            candidate = self.file.parent / default
            if not os.path.isabs(default) and "://" not in default and candidate.is_file():
                args += [f"--{name}", str(candidate)]
        return args

    def config_args(
        self,
        files: Mapping[str, str | os.PathLike[str]],
        values: Mapping[str, Any],
        search_dirs: Iterable[Path] = (),
    ) -> list[str]:
        """Metaflow's top-level ``--config NAME PATH`` and ``--config-value NAME
        VALUE`` options (they go before the command).

        Runs happen in the sandbox, not where the test or the flow lives, so
        paths are made absolute: a file given by the test is looked for as a
        flow file is (beside the test, the rootdir, the working directory). A
        ``Config`` whose default is a path relative to the flow file needs no
        option: the launcher anchors it in every process of the run
        (``metaflow_seam.anchor_config_defaults``).
        """
        from .metaflow_seam import ConfigValue

        search_dirs = list(search_dirs)
        files = {self._config_name(key): value for key, value in files.items()}
        values = {self._config_name(key): value for key, value in values.items()}
        both = sorted(files.keys() & values.keys())
        if both:
            raise FlowReferenceError(
                f"Config {both[0]!r} of {self.name} is given both as a file (config=) "
                "and as a value (config_value=); give one"
            )
        args: list[str] = []
        for name, location in files.items():
            if not isinstance(location, (str, os.PathLike)):
                raise FlowReferenceError(
                    f"config= takes a file path for Config {name!r} of {self.name}, not "
                    f"{type(location).__name__}; give a value as config_value={{{name!r}: ...}}"
                )
            path = _find_file(os.fspath(location), search_dirs, f"file of Config {name!r}")
            args += ["--config", name, str(path)]
        for name, value in values.items():
            if isinstance(value, ConfigValue):
                value = value.to_dict()
            # A string is passed as is: JSON, or text for the Config's parser.
            text = value if isinstance(value, str) else json.dumps(value)
            args += ["--config-value", name, text]
        # A Config whose default is a file beside the flow: the launcher
        # makes that default absolute in the flow's processes.
        return args

    def _config_name(self, key: str) -> str:
        """The Config's command-line name, for its name or its attribute."""
        if key in self.configs:
            return key
        for attr, param in metaflow_seam.parameters(self.flow_class):
            if attr == key and getattr(param, "IS_CONFIG_PARAMETER", False):
                return str(param.name)
        known = ", ".join(sorted(self.configs)) or "none"
        raise FlowReferenceError(f"{self.name} has no Config {key!r} (its Configs: {known})")


def _declared(param: Any, key: str) -> Any:
    """What the flow's author passed to ``Parameter(...)`` for ``key``.

    Metaflow resolves Parameter options only when its CLI starts (in the
    flow's processes); before that they sit in ``_override_kwargs``.
    """
    return metaflow_seam.declared(param, key)


_loaded: dict[Path, tuple[int, ModuleType]] = {}


def resolve(reference: object, search_dirs: Iterable[Path] = ()) -> FlowRef:
    """The ``FlowRef`` for anything ``artflow_run`` accepts as ``flow``."""
    from metaflow import FlowSpec

    if isinstance(reference, type):
        if not issubclass(reference, FlowSpec):
            raise FlowReferenceError(
                f"{reference.__qualname__} is not a metaflow.FlowSpec subclass"
            )
        return _checked(_ref_for_class(reference))
    if isinstance(reference, FlowSpec):
        raise FlowReferenceError(
            f"pass the flow class {type(reference).__name__}, not an instance of it"
        )
    if not isinstance(reference, (str, os.PathLike)):
        raise FlowReferenceError(
            f"cannot run {reference!r}: give a FlowSpec subclass, a flow file path, "
            "'path.py:ClassName' or 'package.module:ClassName'"
        )
    text = os.fspath(reference)
    location, _, class_name = text.rpartition(":") if ":" in text else (text, "", "")
    if _looks_like_module(location):
        module = _import_module(location, text)
        file = Path(inspect.getfile(module)).resolve()
        return _checked(_pick(module, file, class_name, text))
    path = _find_file(location, search_dirs)
    return _checked(_pick(load_file(path), path, class_name, text))


def flow_classes(module: ModuleType) -> list[type[FlowSpec]]:
    """FlowSpec subclasses defined (not just imported) in ``module``, in file order."""
    from metaflow import FlowSpec

    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, FlowSpec)
        and obj is not FlowSpec
        and obj.__module__ == module.__name__
    ]
    return sorted(found, key=lambda c: inspect.getsourcelines(c)[1])


def load_file(path: Path) -> ModuleType:
    """Execute a flow file in this process (without its ``__main__`` block), once per version."""
    path = path.resolve()
    mtime = path.stat().st_mtime_ns
    cached = _loaded.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and _same_file(file, path):
            _loaded[path] = (mtime, module)
            return module
    name = f"artflow_flow_{path.stem}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with contained(path) as added:
        # Flows import their sibling modules the way `python flow.py` allows.
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            del sys.modules[name]
            raise FlowReferenceError(
                f"{path}:{exc.lineno}: syntax error in the flow file: {exc.msg}"
            ) from None
        except Exception as exc:
            del sys.modules[name]
            from .inflow.launch import relative_import_failure

            relative = (
                relative_import_failure(str(path), exc) if isinstance(exc, ImportError) else None
            )
            if relative is not None:
                raise FlowReferenceError(relative) from None
            raise FlowReferenceError(
                f"{path}: loading the flow file raised {type(exc).__name__}: {exc}"
                + _relative_path_hint(exc)
            ) from exc
    remember_import_paths(module, added)
    _loaded[path] = (mtime, module)
    return module


#: Module name -> the ``sys.path`` entries that loading the module added.
_import_paths: dict[str, list[str]] = {}


def remember_import_paths(module: ModuleType, paths: list[str]) -> None:
    _import_paths[module.__name__] = paths


def import_paths(module: ModuleType) -> list[str]:
    """Where the flow's processes import from that this process does not:
    the flow's directory and what its module-level code added to ``sys.path``.
    Artifacts of classes from modules found there unpickle with them
    (``result.main_module_as``)."""
    return _import_paths.get(module.__name__, [])


def _relative_path_hint(exc: Exception) -> str:
    """A line for module-level code that opened a file by a relative path:
    ``python flow.py run`` started beside the flow finds it, a test does not."""
    filename = getattr(exc, "filename", None)
    if not isinstance(exc, FileNotFoundError) or not isinstance(filename, str):
        return ""
    if os.path.isabs(filename):
        return ""
    return (
        f"\nhint: {filename!r} is relative to the working directory (here {os.getcwd()}, the "
        "sandbox in the flow's processes); refer to a file beside the flow as "
        f"os.path.join(os.path.dirname(__file__), {filename!r})"
    )


@contextmanager
def contained(path: Path) -> Iterator[list[str]]:
    """Undo what a flow file's module-level code does to the pytest process.

    ``python flow.py run`` runs that code in processes of its own; here it runs
    in the process every later test (and, through ``Sandbox.environ``, every
    later run's environment) shares. The environment, ``sys.path`` and the
    working directory are put back; no bytecode is written beside the user's
    files, as the flow's own processes write none (``PYTHONDONTWRITEBYTECODE``).
    The list yielded receives the ``sys.path`` entries the load added (made
    absolute), for ``remember_import_paths``. A thread cannot be undone: each
    one the load started is named in a ``FlowLoadWarning``.
    """
    environ = dict(os.environ)
    sys_path = list(sys.path)
    cwd = os.getcwd()
    dont_write_bytecode = sys.dont_write_bytecode
    threads_before = set(threading.enumerate())
    added: list[str] = []
    sys.dont_write_bytecode = True
    try:
        yield added
    finally:
        sys.dont_write_bytecode = dont_write_bytecode
        added += [
            os.path.abspath(entry or os.curdir)
            for entry in dict.fromkeys(sys.path)
            if entry not in sys_path and isinstance(entry, str)
        ]
        os.chdir(cwd)
        sys.path[:] = sys_path
        for key in [k for k in os.environ if k not in environ]:
            del os.environ[key]
        for key, value in environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
    for thread in threading.enumerate():
        if thread not in threads_before:
            warnings.warn(
                FlowLoadWarning(
                    f"{path}: loading the flow file started thread {thread.name!r}, which "
                    "keeps running in the pytest process (start threads in a step, not at "
                    "module level)"
                ),
                stacklevel=4,
            )


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _looks_like_module(location: str) -> bool:
    return (
        bool(location)
        and not location.endswith(".py")
        and "/" not in location
        and os.sep not in location
        and all(part.isidentifier() for part in location.split("."))
    )


def _import_module(name: str, text: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        # A module that is not there needs no traceback; one that fails inside does.
        cause = None if isinstance(exc, ModuleNotFoundError) and exc.name == name else exc
        raise FlowReferenceError(f"{text!r}: cannot import module {name!r}: {exc}") from cause


def _find_file(location: str, search_dirs: Iterable[Path], what: str = "flow file") -> Path:
    path = Path(location).expanduser()
    candidates = [path] if path.is_absolute() else [d / path for d in search_dirs] + [path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    where = ", ".join(str(c) for c in candidates)
    raise FlowReferenceError(f"{what} {location!r} not found (looked for {where})")


def _pick(module: ModuleType, file: Path, class_name: str, text: str) -> FlowRef:
    classes = flow_classes(module)
    names = ", ".join(c.__name__ for c in classes)
    if class_name:
        cls = getattr(module, class_name, None)
        if cls is None or cls not in classes:
            listed = f"its flows: {names}" if classes else "it defines no FlowSpec subclass"
            raise FlowReferenceError(f"{text!r}: no flow class {class_name!r} in {file} ({listed})")
        return FlowRef(cls, file, module)
    if not classes:
        raise FlowReferenceError(f"{file} defines no FlowSpec subclass")
    if len(classes) > 1:
        raise FlowReferenceError(
            f"{file} defines several flows ({names}); name one: '{text}:{classes[0].__name__}'"
        )
    return FlowRef(classes[0], file, module)


def _ref_for_class(cls: type[FlowSpec]) -> FlowRef:
    local = "<locals>" in cls.__qualname__
    module = sys.modules.get(cls.__module__)
    try:
        file = Path(inspect.getfile(cls)).resolve()
    except (TypeError, OSError):
        file = None
    if module is None or file is None or not file.is_file():
        raise FlowReferenceError(
            f"{cls.__qualname__} was not loaded from a Python file; Metaflow needs a file "
            "to start the flow's processes from"
        )
    if not local and getattr(module, cls.__name__, None) is not cls:
        raise FlowReferenceError(
            f"{cls.__qualname__} is not reachable as {cls.__name__} in {file}; Metaflow "
            "loads the flow by that name from the file"
        )
    return FlowRef(cls, file, module, local=local)


def _checked(ref: FlowRef) -> FlowRef:
    """Metaflow's own graph checks, so a broken flow fails here with Metaflow's words."""
    from metaflow.exception import MetaflowException

    try:
        metaflow_seam.check_graph(ref.flow_class)
    except MetaflowException as exc:
        where = f"{ref.file}:{exc.line_no}" if exc.line_no else str(ref.file)
        raise FlowReferenceError(
            f"Metaflow cannot run {ref.name} ({where}): {exc.message}"
        ) from None
    return ref
