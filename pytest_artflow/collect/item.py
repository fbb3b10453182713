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

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .. import flows, snapshot
from ..errors import ArtflowError, ArtflowItemFailed
from ..inflow.remote import RUN_LOCALLY_ENV, missing_packages, remote_decorators
from ..metaflow_seam import MISSING_PARAMETER, metadata_read_once, step_functions
from ..results.read import note_unreadable
from ..settings import ini_key
from .files import _is_test_module, is_flow_file, load_module
from .ini import check_expected, enabled, snapshot_excludes_for
from .report import FlowSummary, inspect_lines, record, summarize, tail

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from ..results import FlowRun
    from ..runner import ArtflowRunner
    from ..sandbox import Sandbox


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


class ArtflowFile(pytest.File):
    """A flow file: one item per ``FlowSpec`` subclass with steps it defines."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            module = load_module(self.path, self.config)
        except ArtflowError as exc:
            raise self.CollectError(str(exc)) from None
        for cls in flows.flow_classes(module):
            # A FlowSpec subclass without a single step is a base for flows, not one.
            if step_functions(cls):
                yield ArtflowItem.from_parent(self, name=cls.__name__, flow_class=cls)


class ArtflowItem(pytest.Item):
    """Runs one flow end to end in its own sandbox."""

    def __init__(self, *, flow_class: type, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow_class = flow_class
        self.sandbox: Sandbox | None = None
        self.s3: Any = None
        self.summary: FlowSummary | None = None

    def reportinfo(self) -> tuple[Path, int | None, str]:
        import inspect

        try:
            line = inspect.getsourcelines(self.flow_class)[1] - 1
        except (OSError, TypeError):
            line = None
        # The file too: flows of different files may share a class name.
        return self.path, line, f"artflow: {self.nodeid}"

    def runtest(self) -> None:
        from ..sandbox import Sandbox

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
        from ..runner import ArtflowRunner
        from ..settings import engines_key, run_defaults

        return ArtflowRunner(
            sandbox=sandbox,
            engines=self.config.stash[engines_key],
            hook=self.config.hook,
            defaults=run_defaults(self.config, self),
            search_dirs=[self.path.parent, self.config.rootpath],
            s3_area=self._open_s3,
        )

    def _open_s3(self) -> Any:
        """The item's S3 area, for ``--artflow-datastore=s3``."""
        from .. import s3

        endpoint = self.config.option.artflow_s3_endpoint
        self.s3 = s3.open_area(self.sandbox, self.name, endpoint, self._stack)
        return self.s3

    def _run(self, sandbox: Sandbox) -> None:
        runner = self._runner(sandbox)
        settings = self.config.stash[ini_key]
        ref = runner.resolve(self.flow_class)
        names = runner.defaults.env.get(RUN_LOCALLY_ENV, "").split()
        order = {name: i for i, name in enumerate(ref.step_names)}
        local = sorted(
            remote_decorators(self.flow_class, names), key=lambda d: order.get(d[0] or "", -1)
        )
        summary = self.summary = FlowSummary(
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
        # Every artifact of every task must load back here: load them all, and
        # what does not load is the run's failure (as an exception a task
        # raised is).
        note_unreadable(run)
        with metadata_read_once():
            summarize(summary, run.client, ref.step_names)
        for task in run.tasks:
            if task.caught is not None:
                summary.note_caught(task.step, task.id, str(task.caught), task.caught.var)
        if run.failure is not None and run.failure.step and not run.failure.caught:
            summary.fail(run.failure.step)
        # As `python flow.py run`: an exception @catch caught does not fail the
        # flow.
        if not (run.finished and run.readable):
            raise ArtflowItemFailed(failure_report(run))
        problems = check_expected(run, settings.expect_for(self.nodeid))
        if snapshot.enabled(self.config):
            from ..snapshot.extension import check_item

            exclude = snapshot_excludes_for(self.config, self.nodeid)
            summary.snapshot, changed = check_item(self, run, exclude)
            if changed is not None:
                problems.append(changed)
        if problems:
            raise ArtflowItemFailed("\n".join(problems))

    def _finish(self, outcome: str) -> None:
        assert self.sandbox is not None
        kept = self.sandbox.settle(self.config.option.artflow_keep, failed=outcome == "failed")
        if not kept and self.s3 is not None:
            self.s3.remove()
        summary = self.summary or FlowSummary(flow=self.name)
        summary.sandbox = str(self.sandbox.root) if kept else None
        self.summary = summary
        record(self, summary)

    def repr_failure(
        self, excinfo: ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if not isinstance(excinfo.value, ArtflowError):
            return super().repr_failure(excinfo, style=style)
        text = str(excinfo.value)
        summary = self.summary
        if summary is not None and summary.sandbox:
            lines = inspect_lines(summary.sandbox, summary.run, summary.failed_step)
            text += (
                f"\n\nsandbox kept (--artflow-keep): {summary.sandbox}\n"
                "inspect it with Metaflow's client:\n" + "\n".join(f"    {x}" for x in lines)
            )
            if self.s3 is not None:
                text += "\n" + self.s3.describe()
        return text


def _start_hint(message: str, nodeid: str) -> str:
    if any(words in message for words in MISSING_PARAMETER):
        message += (
            f"\n(give Parameter values for --artflow runs with the ini artflow_params: "
            f"'{nodeid} <name>=<value>')"
        )
    return message


def failure_report(run: FlowRun) -> str:
    """The failing step, its exception and the tail of its output. A task
    that left nothing (hung until the timeout, killed) gets the tail of the
    run's live log instead, which still shows what it printed."""
    from ..results.failure import describe_failure

    text = describe_failure(run)
    failure = run.failure
    if failure is not None and not (
        failure.traceback or failure.stdout.strip() or failure.stderr.strip()
    ):
        text += "\noutput of the run (tail):\n" + tail(run.output, 15)
    return text
