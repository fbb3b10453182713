"""``pytest --artflow``: every flow file becomes test items, one per flow class.

An item runs its flow end to end in a sandbox of its own (default Parameters,
or those of the ini ``artflow_params``), reads every artifact of every task
back into this process (an artifact that does not load fails the item), and
compares the values the ini ``artflow_expect`` names.

A file is a flow file when it is not a test module or conftest (those belong
to pytest's Python collector, and their flows to their tests) and it defines
a class that derives from ``...FlowSpec`` or has ``@step`` methods; only such
files are imported. A flow file inside a package that tests can import is
imported under that name, so ``from pkg.flow import MyFlow`` in a test finds
the same module and the file runs once in the pytest process.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import glob
import importlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.pathlib import (
    CouldNotResolvePathError,
    import_path,
    is_importable,
    resolve_pkg_root_and_module_name,
)
from _pytest.python import path_matches_patterns

from . import flows, report
from .engines.remote import RUN_LOCALLY_ENV, missing_packages, remote_decorators
from .errors import ArtflowError

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from .result import FlowRun
    from .runner import ArtflowRunner
    from .sandbox import Sandbox


@dataclass(frozen=True)
class Entry:
    """One line of ``artflow_params`` or ``artflow_expect``:
    ``<flow pattern> <target>=<value>``."""

    pattern: str
    target: str
    value: Any
    line: str

    def matches(self, nodeid: str) -> bool:
        # "path.py" alone names every flow of the file.
        subject = nodeid if "::" in self.pattern else nodeid.split("::", 1)[0]
        return fnmatch.fnmatchcase(subject, self.pattern)


@dataclass(frozen=True)
class Settings:
    params: list[Entry]
    expect: list[Entry]

    def params_for(self, nodeid: str) -> dict[str, Any]:
        return {e.target: e.value for e in self.params if e.matches(nodeid)}

    def expect_for(self, nodeid: str) -> list[Entry]:
        return [e for e in self.expect if e.matches(nodeid)]


settings_key = pytest.StashKey[Settings]()


def _parse(config: pytest.Config, key: str, strict: bool) -> list[Entry]:
    entries = []
    for line in config.getini(key):
        pattern, _, assignment = line.strip().partition(" ")
        target, equals, text = assignment.strip().partition("=")
        target, text = target.strip(), text.strip()
        if not pattern or not equals or not target:
            raise pytest.UsageError(
                f"ini {key}: {line!r}: expected '<file.py::FlowClass> <name>=<value>'"
            )
        if strict and (target.count(".") != 1 or not all(map(str.isidentifier, target.split(".")))):
            raise pytest.UsageError(f"ini {key}: {line!r}: {target!r} should be <step>.<artifact>")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if strict:
                raise pytest.UsageError(
                    f"ini {key}: {line!r}: {text!r} is not a Python literal (quote strings: 'text')"
                ) from None
            # A Parameter value is command-line text anyway: `name=hello` is "hello".
            value = text
        entries.append(Entry(pattern, target, value, line.strip()))
    return entries


def configure(config: pytest.Config) -> None:
    """Read the ini keys of ``--artflow`` (bad lines stop the session with a
    usage error) and add the ``artflow_paths`` globs to what is collected."""
    config.stash[settings_key] = Settings(
        params=_parse(config, "artflow_params", strict=False),
        expect=_parse(config, "artflow_expect", strict=True),
    )
    # Like testpaths: only when no paths were given on the command line.
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return
    if config.invocation_params.dir != config.rootpath:
        return
    current = [Path(a).resolve() for a in config.args]
    for pattern in config.getini("artflow_paths"):
        for match in sorted(glob.glob(pattern, root_dir=config.rootpath, recursive=True)):
            path = (config.rootpath / match).resolve()
            if not any(path == c or c in path.parents for c in current):
                config.args.append(str(path))
                current.append(path)


def enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("artflow", False))


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


def collect_file(file_path: Path, parent: pytest.Collector) -> ArtflowFile | None:
    """``pytest_collect_file``: a flow file under the paths being collected."""
    config = parent.config
    if not enabled(config) or file_path.suffix != ".py":
        return None
    if parent.session.isinitpath(file_path):
        # Named on the command line: pytest's Python plugin asks
        # pytest_pycollect_makemodule, and `make_module` answers there.
        return None
    if _is_test_module(file_path, config) or not is_flow_file(file_path):
        return None
    return ArtflowFile.from_parent(parent, path=file_path)


def make_module(module_path: Path, parent: pytest.Collector) -> ArtflowFile | None:
    """``pytest_pycollect_makemodule``: a flow file named on the command line
    becomes an artflow file instead of a (second) test module."""
    if not enabled(parent.config) or _is_test_module(module_path, parent.config):
        return None
    if not is_flow_file(module_path):
        return None
    return ArtflowFile.from_parent(parent, path=module_path)


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


class ArtflowFile(pytest.File):
    """A flow file: one item per ``FlowSpec`` subclass with steps it defines."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            module = load_module(self.path, self.config)
        except ArtflowError as exc:
            raise self.CollectError(str(exc)) from None
        for cls in flows.flow_classes(module):
            # A FlowSpec subclass without a single step is a base for flows, not one.
            if cls._steps:  # type: ignore[attr-defined]
                yield ArtflowItem.from_parent(self, name=cls.__name__, flow_class=cls)


class ArtflowItemFailed(ArtflowError):
    """The flow failed, an artifact did not load, or an expectation did not hold."""


class ArtflowItem(pytest.Item):
    """Runs one flow end to end in its own sandbox."""

    def __init__(self, *, flow_class: type, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow_class = flow_class
        self.sandbox: Sandbox | None = None
        self.s3: Any = None
        self.summary: report.FlowSummary | None = None

    def reportinfo(self) -> tuple[Path, int | None, str]:
        import inspect

        try:
            line = inspect.getsourcelines(self.flow_class)[1] - 1
        except (OSError, TypeError):
            line = None
        return self.path, line, f"artflow: {self.name}"

    def runtest(self) -> None:
        from .sandbox import Sandbox

        factory = self.config._tmp_path_factory  # type: ignore[attr-defined]
        self.sandbox = Sandbox(factory.mktemp(f"artflow-{self.name}"[:60], numbered=True))
        outcome = "interrupted"
        try:
            with self.sandbox.client_scope(), contextlib.ExitStack() as self._stack:
                self._run(self.sandbox)
            outcome = "passed"
        except Exception:
            outcome = "failed"
            raise
        finally:
            self._finish(outcome)

    def _runner(self, sandbox: Sandbox) -> ArtflowRunner:
        from .plugin import _defaults, engines_key
        from .runner import ArtflowRunner

        return ArtflowRunner(
            sandbox=sandbox,
            engines=self.config.stash[engines_key],
            hook=self.config.hook,
            defaults=_defaults(self.config, self),
            search_dirs=[self.path.parent, self.config.rootpath],
            s3_area=self._open_s3,
        )

    def _open_s3(self) -> Any:
        """The item's S3 area, for ``--artflow-datastore=s3``."""
        from . import s3

        endpoint = self.config.option.artflow_s3_endpoint
        self.s3 = s3.open_area(self.sandbox, self.name, endpoint, self._stack)
        return self.s3

    def _run(self, sandbox: Sandbox) -> None:
        runner = self._runner(sandbox)
        settings = self.config.stash[settings_key]
        ref = runner.resolve(self.flow_class)
        names = runner.defaults.env.get(RUN_LOCALLY_ENV, "").split()
        order = {name: i for i, name in enumerate(ref.step_names)}
        local = sorted(remote_decorators(self.flow_class, names), key=lambda d: order.get(d[0], -1))
        summary = self.summary = report.FlowSummary(
            flow=self.name,
            graph_steps=len(ref.step_names),
            run_locally=[f"@{deco} on {step}" if step else f"@{deco}" for step, deco in local],
        )
        missing = missing_packages(self.flow_class, names)
        if missing:
            raise ArtflowItemFailed(
                f"{self.name}: pytest-artflow runs @conda/@pypi steps with the packages "
                f"installed here, and these are not: {', '.join(missing)}"
            )
        started = time.perf_counter()
        try:
            run = runner(self.flow_class, check=False, params=settings.params_for(self.nodeid))
        except ArtflowError as exc:
            summary.duration = time.perf_counter() - started
            raise ArtflowItemFailed(_start_hint(str(exc), self.nodeid)) from None
        summary.duration = run.duration
        report.summarize(summary, run.client, ref.step_names)
        for task in run.tasks:
            if task.caught is not None:
                summary.note_caught(task.step, task.id, str(task.caught), task.caught.var)
        if run.failure is not None and run.failure.step and not run.failure.caught:
            summary.fail(run.failure.step)
        # As `python flow.py run`: an exception @catch caught does not fail the
        # flow. Every artifact of every task must load back here.
        if not (run.finished and run.readable):
            raise ArtflowItemFailed(failure_report(run))
        problems = check_expected(run, settings.expect_for(self.nodeid))
        if problems:
            raise ArtflowItemFailed("\n".join(problems))

    def _finish(self, outcome: str) -> None:
        assert self.sandbox is not None
        keep = self.config.option.artflow_keep
        kept = keep == "always" or (keep == "failed" and outcome == "failed")
        if not kept:
            import shutil

            shutil.rmtree(self.sandbox.root, ignore_errors=True)
            if self.s3 is not None:
                self.s3.remove()
        summary = self.summary or report.FlowSummary(flow=self.name)
        summary.sandbox = str(self.sandbox.root) if kept else None
        self.summary = summary
        report.record(self, summary)

    def repr_failure(
        self, excinfo: ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if not isinstance(excinfo.value, ArtflowError):
            return super().repr_failure(excinfo, style=style)
        text = str(excinfo.value)
        summary = self.summary
        if summary is not None and summary.sandbox:
            lines = report.inspect_lines(summary.sandbox, summary.run, summary.failed_step)
            text += (
                f"\n\nsandbox kept (--artflow-keep): {summary.sandbox}\n"
                "inspect it with Metaflow's client:\n" + "\n".join(f"    {x}" for x in lines)
            )
            if self.s3 is not None:
                text += "\n" + self.s3.describe()
        return text


def _start_hint(message: str, nodeid: str) -> str:
    if "Missing option" in message or "Missing parameter" in message:
        message += (
            f"\n(give Parameter values for --artflow runs with the ini artflow_params: "
            f"'{nodeid} <name>=<value>')"
        )
    return message


def failure_report(run: FlowRun) -> str:
    """The failing step, its exception and the tail of its output. A task
    that left nothing (hung until the timeout, killed) gets the tail of the
    run's live log instead, which still shows what it printed."""
    from .runner import describe_failure

    text = describe_failure(run)
    failure = run.failure
    if failure is not None and not (
        failure.traceback or failure.stdout.strip() or failure.stderr.strip()
    ):
        text += "\noutput of the run (tail):\n" + report.tail(run.output, 15)
    return text


def check_expected(run: FlowRun, entries: list[Entry]) -> list[str]:
    """A message per ``artflow_expect`` line that does not hold."""
    from . import compare, explain

    problems = []
    for entry in entries:
        step, name = entry.target.split(".", 1)
        where = f"artflow_expect {entry.line!r}"
        if step not in run:
            problems.append(f"{where}: step {step!r} did not run (steps: {', '.join(run.steps)})")
            continue
        trace = run.trace(name)
        if step not in trace:
            known = ", ".join(sorted(run[step].tasks[0].artifacts)) if run[step].tasks else ""
            problems.append(
                f"{where}: step {step!r} has no artifact {name!r} (its artifacts: {known})"
            )
            continue
        if not compare.artifacts_equal(trace[step], entry.value):
            lines = [
                f"{where}: artifact {name!r} of step {step!r} is {trace[step]!r}, "
                f"expected {entry.value!r}",
                *(f"  {line}" for line in compare.explain(trace[step], entry.value)),
                *explain.trace_lines(run, name, mark=step),
            ]
            problems.append("\n".join(lines))
    return problems


def run_locally_env(config: pytest.Config) -> dict[str, str]:
    """The environment that makes runs execute remote-compute steps here."""
    names = config.getini("artflow_run_locally")
    return {RUN_LOCALLY_ENV: " ".join(names)} if names else {}
