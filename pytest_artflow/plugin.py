"""The pytest plugin: options, ini keys, markers, fixtures and hooks only.

The work is done in focused modules (``runner``, ``sandbox``, ``flows``,
``engines``, ``result``); nothing here imports Metaflow, which is loaded the
first time a test asks for a run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import explain, hookspecs, registry
from .engines import EngineSet
from .runner import ArtflowRunner, RunDefaults
from .sandbox import Sandbox

KEEP_CHOICES = ("never", "failed", "always")
engines_key = pytest.StashKey[EngineSet]()
reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("artflow", "Metaflow flow testing (pytest-artflow)")
    group.addoption(
        "--artflow-engine",
        dest="artflow_engine",
        default=None,
        help="how flow processes start: 'subprocess' (a new interpreter per task, as "
        "Metaflow does) or any engine a plugin adds. Ini: artflow_engine.",
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
    parser.addini("artflow_engine", "default engine for flow runs", default="subprocess")
    parser.addini("artflow_timeout", "default timeout of a flow run, in seconds", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "artflow(engine=None, timeout=None, env=None): defaults for the flow runs of this "
        "test (engine name, timeout in seconds, extra environment variables).",
    )
    config.stash[engines_key] = EngineSet(config.hook)
    registry.set_config(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    engines = config.stash.get(engines_key, None)
    if engines is not None:
        engines.close()
    registry.set_config(None)


@pytest.hookimpl
def pytest_artflow_engines() -> dict[str, Any]:
    from .engines.subprocess import SubprocessEngine

    return {"subprocess": SubprocessEngine}


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"artflow: engine {_defaults(config).engine}, sandboxes kept: "
        f"{config.option.artflow_keep}, under {config._tmp_path_factory.getbasetemp()}"  # type: ignore[attr-defined]
    )


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    return explain.assertrepr_compare(op, left, right)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    report = yield
    item.stash.setdefault(reports_key, {})[report.when] = report
    return report


def _defaults(config: pytest.Config, node: pytest.Item | None = None) -> RunDefaults:
    timeout = config.option.artflow_timeout
    if timeout is None and config.getini("artflow_timeout"):
        timeout = float(config.getini("artflow_timeout"))
    defaults = RunDefaults(
        engine=config.option.artflow_engine or config.getini("artflow_engine"),
        timeout=timeout,
    )
    marker = node.get_closest_marker("artflow") if node is not None else None
    if marker is not None:
        defaults.engine = marker.kwargs.get("engine", defaults.engine)
        defaults.timeout = marker.kwargs.get("timeout", defaults.timeout)
        defaults.env = dict(marker.kwargs.get("env") or {})
    return defaults


@pytest.fixture
def artflow_sandbox(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    """The test's isolated Metaflow datastore; Metaflow's client sees only it."""
    sandbox = Sandbox(tmp_path_factory.mktemp("artflow-" + request.node.name[:40], numbered=True))
    try:
        with sandbox.client_scope():
            yield sandbox
    finally:
        explain.forget()
        keep = request.config.option.artflow_keep
        reports = request.node.stash.get(reports_key, {})
        failed = any(r.failed for r in reports.values())
        if keep == "never" or (keep == "failed" and not failed):
            shutil.rmtree(sandbox.root, ignore_errors=True)


@pytest.fixture
def artflow_run(request: pytest.FixtureRequest, artflow_sandbox: Sandbox) -> ArtflowRunner:
    """Run a flow end to end in the test's sandbox: ``artflow_run(MyFlow, alpha=3)``."""
    config = request.config
    return ArtflowRunner(
        sandbox=artflow_sandbox,
        engines=config.stash[engines_key],
        hook=config.hook,
        defaults=_defaults(config, request.node),
        search_dirs=[Path(request.path).parent, config.rootpath, config.invocation_params.dir],
    )
