"""The supported range of Metaflow versions: what a session says about the
installed Metaflow, and that the package's requirement, the seam and the CI
matrix agree on the range."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from pytest_artflow import metaflow_seam

ROOT = Path(__file__).parent.parent
TRIVIAL = "def test_nothing_to_do():\n    pass\n"


def test_header_names_the_installed_metaflow_and_the_tested_range(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(TRIVIAL)
    result = pytester.runpytest()
    installed = importlib.metadata.version("metaflow")
    first, last = metaflow_seam.TESTED_VERSIONS[0], metaflow_seam.TESTED_VERSIONS[-1]
    result.stdout.fnmatch_lines([f"artflow: Metaflow {installed} (tested: {first} to {last})"])


def test_a_metaflow_newer_than_the_newest_tested_warns_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if this package had been tested only up to an older release.
    monkeypatch.setattr(metaflow_seam, "TESTED_VERSIONS", ("1.0.0", "2.0.0"))
    monkeypatch.setattr(metaflow_seam, "NEWEST_TESTED", "2.0.0")
    pytester.makepyfile(TRIVIAL)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    installed = importlib.metadata.version("metaflow")
    result.stdout.fnmatch_lines(
        [
            f"*PytestConfigWarning: Metaflow {installed} is newer than the newest release "
            "pytest-artflow was tested with (2.0.0; tested: 1.0.0, 2.0.0)*"
        ]
    )
    assert str(result.stdout).count("is newer than the newest release") == 1


def test_a_tested_metaflow_does_not_warn(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The installed release as the newest tested: the suite itself may run on a
    # Metaflow released after the seam's list was last updated.
    monkeypatch.setattr(metaflow_seam, "NEWEST_TESTED", importlib.metadata.version("metaflow"))
    pytester.makepyfile(TRIVIAL)
    pytester.runpytest("-W", "error::pytest.PytestConfigWarning").assert_outcomes(passed=1)


def test_the_installed_metaflow_is_in_the_supported_range() -> None:
    requirement = next(
        Requirement(r)
        for r in importlib.metadata.requires("pytest-artflow") or ()
        if Requirement(r).name == "metaflow"
    )
    assert Version(metaflow_seam.OLDEST_SUPPORTED) in requirement.specifier
    assert metaflow_seam.installed_version() in requirement.specifier
    # The floor of the requirement is the oldest tested release, not older.
    assert str(requirement.specifier) == f">={metaflow_seam.OLDEST_SUPPORTED}"


def test_ci_matrix_is_the_tested_versions() -> None:
    spec = importlib.util.spec_from_file_location("noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    if importlib.util.find_spec("nox") is None:
        pytest.fail("nox is part of the [test] extra; reinstall with pip install -e '.[test]'")
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    assert tuple(noxfile.METAFLOW_VERSIONS) == metaflow_seam.TESTED_VERSIONS
