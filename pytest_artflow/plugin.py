"""The pytest plugin: options, ini keys, markers, fixtures and hooks only.

The work is done in focused modules (``runner``, ``sandbox``, ``flows``,
``engines``, ``results``, ``step``, ``collect``); nothing here imports Metaflow, which is loaded the
first time a test asks for a run.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import collect, hookspecs, metaflow_seam, session, snapshot, timeline, validate
from .collect import report
from .engines import EngineSet
from .inflow.remote import RUN_LOCALLY_DEFAULT
from .results import provenance
from .resume import ArtflowResume
from .runner import ArtflowRunner
from .sandbox import Sandbox
from .settings import KEEP_CHOICES, engines_key, keeps_sandbox, reports_key, run_defaults
from .step.fixture import ArtflowStep


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("artflow", "Metaflow flow testing (pytest-artflow)")
    group.addoption(
        "--artflow-engine",
        dest="artflow_engine",
        default=None,
        help="how flow processes start: 'fork' (the default where os.fork exists: forked "
        "from a server that has imported Metaflow), 'subprocess' (a new interpreter per "
        "task, as Metaflow does) or any engine a plugin adds. Ini: artflow_engine.",
    )
    group.addoption(
        "--artflow-timeout",
        dest="artflow_timeout",
        type=float,
        default=None,
        help="seconds a run may take before all its processes are killed. Ini: artflow_timeout.",
    )
    group.addoption(
        "--artflow-keep",
        dest="artflow_keep",
        choices=KEEP_CHOICES,
        default="failed",
        help="keep the sandbox (datastore) of 'never', 'failed' (default) or 'always' "
        "tests, to inspect with Metaflow's client afterwards.",
    )
    group.addoption(
        "--artflow",
        action="store_true",
        default=False,
        help="collect flow files (Python files defining FlowSpec subclasses) as test items: "
        "each flow runs end to end in its own sandbox. Ini: artflow_paths, artflow_params, "
        "artflow_expect.",
    )
    parser.addini(
        "artflow_paths",
        "globs (relative to the rootdir) of flow files or directories that --artflow "
        "collects when no paths are given, in addition to testpaths",
        type="linelist",
        default=[],
    )
    parser.addini(
        "artflow_params",
        "Parameter values of --artflow runs, one a line: '<file.py::FlowClass> <name>=<value>' "
        "(value: a Python literal, else text; the pattern may use * and omit ::FlowClass)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "artflow_expect",
        "artifact values --artflow runs must end steps with, one a line: "
        "'<file.py::FlowClass> <step>.<artifact>=<Python literal>'",
        type="linelist",
        default=[],
    )
    group.addoption(
        "--artflow-snapshot",
        dest="artflow_snapshot",
        action="store_true",
        default=False,
        help="with --artflow: compare every flow's artifacts with its snapshot in "
        "__snapshots__/ beside the flow (syrupy; --snapshot-update writes them). "
        "Ini: artflow_snapshot, artflow_snapshot_exclude.",
    )
    parser.addini(
        "artflow_snapshot",
        "with --artflow: compare every flow's artifacts with its snapshot (syrupy)",
        type="bool",
        default=False,
    )
    parser.addini(
        "artflow_snapshot_exclude",
        "artifacts left out of --artflow snapshots, one flow a line: "
        "'<file.py::FlowClass> <step>.<artifact> ...' (* and ? allowed)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "artflow_run_locally",
        "Metaflow decorators removed from flows so their steps run on this machine with "
        "the installed packages; empty to keep them (opt out)",
        type="linelist",
        default=list(RUN_LOCALLY_DEFAULT),
    )
    parser.addini(
        "artflow_engine",
        "default engine for flow runs",
        default="fork" if hasattr(os, "fork") else "subprocess",
    )
    parser.addini("artflow_timeout", "default timeout of a flow run, in seconds", default="")
    group.addoption(
        "--artflow-datastore",
        dest="artflow_datastore",
        choices=("local", "s3"),
        default=None,
        help="where runs keep their datastore: 'local' (the sandbox, default) or 's3' (the "
        "test's bucket on a local S3 test server; needs pytest-artflow[s3]). "
        "Ini: artflow_datastore.",
    )
    group.addoption(
        "--artflow-s3-endpoint",
        dest="artflow_s3_endpoint",
        default=None,
        metavar="URL",
        help="use this S3-compatible server (http://host:port/bucket[/prefix]) instead of "
        "starting one; credentials come from the environment, each test gets a prefix.",
    )
    parser.addini("artflow_datastore", "default datastore of flow runs: local or s3", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "artflow(engine=None, timeout=None, env=None, datastore=None): defaults for the flow "
        "runs of this test (engine name, timeout in seconds, extra environment variables, "
        "'local' or 's3').",
    )
    # Marks of where a run's time goes, when PYTEST_ARTFLOW_TIMELINE asks for them.
    timeline.start(timeline.requested())
    config.stash[engines_key] = EngineSet(config.hook)
    validate.check_session(config, config.stash[engines_key])
    # Once per session: xdist workers run this hook too.
    untested = metaflow_seam.untested_newer()
    if untested and not hasattr(config, "workerinput"):
        config.issue_config_time_warning(pytest.PytestConfigWarning(untested), stacklevel=2)
    session.set_config(config)
    if collect.enabled(config):
        collect.configure(config)
    snapshot.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    engines = config.stash.get(engines_key, None)
    if engines is not None:
        engines.close()
    session.set_config(None)


@pytest.hookimpl
def pytest_artflow_engines() -> dict[str, Any]:
    from .engines.subprocess import SubprocessEngine

    engines: dict[str, Any] = {"subprocess": SubprocessEngine}
    if hasattr(os, "fork"):
        from .engines.fork import ForkEngine

        engines["fork"] = ForkEngine
    return engines


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        metaflow_seam.header_line(),
        *report.header_lines(
            engine=run_defaults(config).engine,
            keep=config.option.artflow_keep,
            basetemp=config._tmp_path_factory.getbasetemp(),  # type: ignore[attr-defined]
            run_locally=config.getini("artflow_run_locally"),
        ),
    ]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    return collect.collect_file(file_path, parent)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    return collect.make_module(module_path, parent)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    validate.check_items(session, items, config.stash[engines_key])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report.terminal_summary(terminalreporter, verbose=config.get_verbosity() > 0)


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    return provenance.assertrepr_compare(op, left, right)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(reports_key, {})[report.when] = report
    return report


@pytest.fixture
def artflow_sandbox(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    """The test's isolated Metaflow datastore; Metaflow's client sees only it."""
    # Only word characters, as pytest's tmp_path does: Metaflow's local metadata
    # globs its paths, so a parametrized test's "[...]" would hide its runs.
    name = re.sub(r"\W", "_", request.node.name)[:40]
    sandbox = Sandbox(tmp_path_factory.mktemp("artflow-" + name, numbered=True))
    try:
        with sandbox.client_scope():
            yield sandbox
    finally:
        provenance.forget()
        reports = request.node.stash.get(reports_key, {})
        sandbox.settle(
            request.config.option.artflow_keep, failed=any(r.failed for r in reports.values())
        )


def _kept(request: pytest.FixtureRequest) -> bool:
    """Whether ``--artflow-keep`` keeps the test's sandbox (and S3 area)."""
    reports = request.node.stash.get(reports_key, {})
    failed = any(r.failed for r in reports.values())
    return keeps_sandbox(request.config.option.artflow_keep, failed=failed)


@pytest.fixture
def artflow_run(request: pytest.FixtureRequest, artflow_sandbox: Sandbox) -> ArtflowRunner:
    """Run a flow end to end in the test's sandbox: ``artflow_run(MyFlow, alpha=3)``."""
    config = request.config
    return ArtflowRunner(
        sandbox=artflow_sandbox,
        engines=config.stash[engines_key],
        hook=config.hook,
        defaults=run_defaults(config, request.node),
        search_dirs=[Path(request.path).parent, config.rootpath, config.invocation_params.dir],
        s3_area=lambda: request.getfixturevalue("artflow_s3"),
    )


@pytest.fixture
def artflow_s3(request: pytest.FixtureRequest, artflow_sandbox: Sandbox) -> Iterator[Any]:
    """A bucket (or prefix) of the S3 test server that only this test uses:
    ``artflow_s3.put("raw/data.csv", b"...")``; every run of the test, and
    Metaflow's S3 client here, reach that server and nothing else."""
    from . import s3

    with contextlib.ExitStack() as stack:
        area = s3.open_area(
            artflow_sandbox, request.node.name, request.config.option.artflow_s3_endpoint, stack
        )
        yield area
        # Values still to load come from the area, through this process's S3
        # client settings, which the stack puts back: load them first.
        artflow_sandbox.finish_reading()
    if _kept(request):
        # The sandbox is kept: so is what the test stored in S3.
        request.node.add_report_section("teardown", "artflow s3", area.describe())
    else:
        area.remove()


@pytest.fixture
def artflow_step(artflow_run: ArtflowRunner) -> ArtflowStep:
    """Run one step of a flow with made-up inputs, or re-run a step of an earlier
    run with some artifacts overridden: ``artflow_step(MyFlow, "train", inputs={...})``."""
    return ArtflowStep(artflow_run)


@pytest.fixture
def artflow_resume(artflow_run: ArtflowRunner) -> ArtflowResume:
    """Resume a run of this test with Metaflow's ``resume`` (from its failed step,
    or from ``step``): ``artflow_resume(run)``, ``artflow_resume(run, "train")``."""
    return ArtflowResume(artflow_run)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """``run_flow`` is a plain function: it learns the running test (its
    ``artflow`` marker and file) from here. The artifacts its runs' reads
    remembered for failure messages are the test's own, and go with it."""
    try:
        with session.running(item):
            return (yield)
    finally:
        provenance.forget()
