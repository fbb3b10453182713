"""The session's settings in one place: how a run's defaults come from the
marker, the options and the ini, what ``--artflow-keep`` keeps, and the keys
under which the plugin stashes its objects on pytest's config and items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from .inflow.remote import RUN_LOCALLY_ENV

if TYPE_CHECKING:
    from .collect.ini import Settings
    from .engines import EngineSet

#: ``--artflow-keep``: which sandboxes stay on disk after their test.
KEEP_CHOICES = ("never", "failed", "always")
#: The session's engines (one fork server per session).
engines_key: pytest.StashKey[EngineSet] = pytest.StashKey()
#: A test's reports by phase, so its sandbox's fate can depend on the outcome.
reports_key: pytest.StashKey[dict[str, pytest.TestReport]] = pytest.StashKey()
#: ``--artflow``'s ini entries (``artflow_params``, ``artflow_expect``).
ini_key: pytest.StashKey[Settings] = pytest.StashKey()


@dataclass
class RunDefaults:
    """Settings for runs that a test did not pass itself (marker > option > ini)."""

    engine: str = "subprocess"
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Where runs keep their datastore: "local" (the sandbox) or "s3" (the
    #: test's area of the S3 test server).
    datastore: str = "local"


#: What ``datastore=`` takes.
DATASTORES = ("local", "s3")


def keeps_sandbox(keep: str, *, failed: bool) -> bool:
    """The one rule of ``--artflow-keep`` for every sandbox (a test's, an
    ``--artflow`` item's, a ``run_flow`` call's): ``always``, or ``failed``
    when what used it failed; ``never`` removes it whatever happened."""
    return keep == "always" or (keep == "failed" and failed)


def run_locally_env(config: pytest.Config) -> dict[str, str]:
    """The environment that makes runs execute remote-compute steps here."""
    names = config.getini("artflow_run_locally")
    return {RUN_LOCALLY_ENV: " ".join(names)} if names else {}


def run_defaults(config: pytest.Config, node: pytest.Item | None = None) -> RunDefaults:
    """A test's run defaults: its ``artflow`` marker over the options over the ini."""
    timeout = config.option.artflow_timeout
    if timeout is None and config.getini("artflow_timeout"):
        timeout = float(config.getini("artflow_timeout"))
    defaults = RunDefaults(
        engine=config.option.artflow_engine or config.getini("artflow_engine"),
        timeout=timeout,
        env=run_locally_env(config),
        datastore=config.option.artflow_datastore or config.getini("artflow_datastore") or "local",
    )
    marker = node.get_closest_marker("artflow") if node is not None else None
    if marker is not None:
        defaults.engine = marker.kwargs.get("engine", defaults.engine)
        defaults.timeout = marker.kwargs.get("timeout", defaults.timeout)
        defaults.env.update(marker.kwargs.get("env") or {})
        defaults.datastore = marker.kwargs.get("datastore", defaults.datastore)
    return defaults
