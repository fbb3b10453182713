"""What a test imports from ``pytest_artflow`` to annotate and catch with."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import pytest_artflow
from pytest_artflow import errors


def test_every_public_name_resolves_to_its_implementation() -> None:
    from pytest_artflow.results import model
    from pytest_artflow.resume import ArtflowResume
    from pytest_artflow.runner import ArtflowRunner
    from pytest_artflow.sandbox import Sandbox
    from pytest_artflow.standalone import run_flow
    from pytest_artflow.step.fixture import ArtflowStep

    assert pytest_artflow.FlowRun is model.FlowRun
    assert pytest_artflow.StepResult is model.StepResult
    assert pytest_artflow.TaskResult is model.TaskResult
    assert pytest_artflow.Failure is model.Failure
    assert pytest_artflow.CaughtException is model.CaughtException
    assert pytest_artflow.Sandbox is Sandbox
    assert pytest_artflow.ArtflowRun is ArtflowRunner
    assert pytest_artflow.ArtflowStep is ArtflowStep
    assert pytest_artflow.ArtflowResume is ArtflowResume
    assert pytest_artflow.run_flow is run_flow
    for name in pytest_artflow.__all__:
        assert getattr(pytest_artflow, name) is not None
        assert name in dir(pytest_artflow)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pytest_artflow.nope  # noqa: B018


def test_the_fixtures_are_of_the_exported_types(
    artflow_sandbox, artflow_run, artflow_step, artflow_resume
) -> None:
    assert isinstance(artflow_sandbox, pytest_artflow.Sandbox)
    assert isinstance(artflow_run, pytest_artflow.ArtflowRun)
    assert isinstance(artflow_step, pytest_artflow.ArtflowStep)
    assert isinstance(artflow_resume, pytest_artflow.ArtflowResume)


def test_importing_the_package_loads_neither_metaflow_nor_pytest() -> None:
    """Every task process imports the package: the public names that need
    more are loaded when first asked for."""
    code = (
        "import sys, pytest_artflow\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('metaflow', 'pytest', '_pytest', 'hypothesis')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_exception_and_warning_is_in_errors_and_exported() -> None:
    defined = []
    for info in pkgutil.walk_packages(pytest_artflow.__path__, "pytest_artflow."):
        module = importlib.import_module(info.name)
        defined += [
            (info.name, cls)
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == info.name
        ]
    assert [name for name, _ in defined if name != errors.__name__] == []
    assert {cls.__name__ for _, cls in defined} <= set(pytest_artflow.__all__)
