"""Settings checked once, before anything runs: an engine name that does not
exist, or a timeout that is not a number, would otherwise fail every run on
its own (and keep every sandbox) with the same message.

The option and the ini are checked when the session is configured (a
``pytest.UsageError`` stops it); a test's ``@pytest.mark.artflow`` when the
test is collected (a collection error on that test). Engine names are those
the ``pytest_artflow_engines`` hook contributes, conftest files included.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import pytest

from .engines import EngineSet
from .settings import DATASTORES

#: What ``@pytest.mark.artflow`` takes.
_ARGUMENTS = ("engine", "timeout", "env", "datastore")
_TAKES = ", ".join(f"{name}=" for name in _ARGUMENTS)


def _unknown_engine(name: object, where: str, engines: EngineSet) -> str | None:
    known = engines.available()
    if isinstance(name, str) and name in known:
        return None
    return f"{where}: unknown artflow engine {name!r} (known engines: {', '.join(known)})"


def _bad_timeout(value: object, where: str) -> str | None:
    if value is None or (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value) > 0
    ):
        return None
    return f"{where}: timeout must be a positive number of seconds, not {value!r}"


def check_session(config: pytest.Config, engines: EngineSet) -> None:
    """``--artflow-engine``, ini ``artflow_engine`` and ini ``artflow_timeout``."""
    if config.option.help or config.option.version:
        return
    problems = []
    option = config.option.artflow_engine
    if option is not None:
        problems.append(_unknown_engine(option, "--artflow-engine", engines))
    elif config.getini("artflow_engine"):
        ini = config.getini("artflow_engine")
        problems.append(_unknown_engine(ini, "ini artflow_engine", engines))
    timeout = config.getini("artflow_timeout")
    if timeout:
        try:
            value: object = float(timeout)
        except ValueError:
            value = timeout
        problems.append(_bad_timeout(value, "ini artflow_timeout"))
    if config.option.artflow_timeout is not None:
        problems.append(_bad_timeout(config.option.artflow_timeout, "--artflow-timeout"))
    found = [p for p in problems if p]
    if found:
        raise pytest.UsageError("\n".join(found))


def marker_problems(item: pytest.Item, engines: EngineSet) -> list[str]:
    """What is wrong with the ``@pytest.mark.artflow`` that applies to ``item``."""
    marker = item.get_closest_marker("artflow")
    if marker is None:
        return []
    where = "@pytest.mark.artflow"
    problems: list[str | None] = []
    if marker.args:
        problems.append(f"{where} takes keyword arguments only ({_TAKES})")
    unknown = sorted(set(marker.kwargs) - set(_ARGUMENTS))
    if unknown:
        problems.append(f"{where}: unknown argument(s) {', '.join(unknown)} (it takes {_TAKES})")
    if marker.kwargs.get("engine") is not None:
        problems.append(_unknown_engine(marker.kwargs["engine"], f"{where}(engine=)", engines))
    problems.append(_bad_timeout(marker.kwargs.get("timeout"), f"{where}(timeout=)"))
    env = marker.kwargs.get("env")
    if env is not None and not isinstance(env, Mapping):
        problems.append(f"{where}(env=) must be a dict of variable name to value, not {env!r}")
    datastore = marker.kwargs.get("datastore")
    if datastore is not None and datastore not in DATASTORES:
        problems.append(
            f"{where}(datastore=) must be {' or '.join(map(repr, DATASTORES))}, not {datastore!r}"
        )
    return [p for p in problems if p]


def check_items(session: pytest.Session, items: list[pytest.Item], engines: EngineSet) -> None:
    """Take the tests whose marker is wrong out of ``items`` and report each
    as a collection error, as pytest does for a test it cannot collect."""
    good = []
    for item in items:
        problems = marker_problems(item, engines)
        if not problems:
            good.append(item)
            continue
        report = pytest.CollectReport(
            nodeid=item.nodeid,
            outcome="failed",
            longrepr="\n".join(f"{item.nodeid}: {p}" for p in problems),
            result=[],
        )
        item.ihook.pytest_collectreport(report=report)
    items[:] = good
