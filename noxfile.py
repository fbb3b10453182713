"""The Metaflow version matrix: the engines' differential corpus and the core run
tests against the oldest supported, a middle and the newest tested Metaflow.

``nox -s core`` runs all three; ``nox -s "core(metaflow='2.19.0')"`` one of them
(``nox -l`` lists them). Each session installs this package with its test extras
into a virtualenv of its own, with exactly that Metaflow release.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nox

ROOT = Path(__file__).parent


def _tested_versions() -> tuple[str, ...]:
    # The seam module is the one list of tested releases; it is loaded by its
    # path so that nox needs neither this package nor Metaflow installed.
    spec = importlib.util.spec_from_file_location(
        "metaflow_seam", ROOT / "pytest_artflow" / "metaflow_seam.py"
    )
    assert spec is not None and spec.loader is not None
    seam = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seam)
    return tuple(seam.TESTED_VERSIONS)


METAFLOW_VERSIONS = _tested_versions()

#: Not the whole suite: what depends on Metaflow's runtime and internals.
CORE_TESTS = (
    "tests/test_engines.py",
    "tests/test_run.py",
    "tests/test_step.py",
    "tests/test_catch.py",
    "tests/test_cards.py",
    "tests/test_resume.py",
    "tests/test_read_back.py",
    "tests/test_versions.py",
    "tests/test_fork_tasks.py",
    "tests/test_forkserver_runs.py",
    "tests/test_lazy_read.py",
    "tests/test_codepackage.py",
    "tests/test_metaflow_seam.py",
)

nox.options.sessions = ["core"]
nox.options.error_on_missing_interpreters = True


def _core_tests(session: nox.Session, metaflow: str) -> None:
    session.install("-e", ".[test]", f"metaflow=={metaflow}")
    # pytest's exit code 5 (nothing collected) is not among nox's success codes:
    # a session that tested nothing fails.
    session.run("python", "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", *CORE_TESTS)


@nox.session
@nox.parametrize("metaflow", METAFLOW_VERSIONS)
def core(session: nox.Session, metaflow: str) -> None:
    """The core tests on every tested Metaflow release."""
    _core_tests(session, metaflow)


@nox.session
@nox.parametrize("metaflow", METAFLOW_VERSIONS[:-1])
def older(session: nox.Session, metaflow: str) -> None:
    """The core tests on the tested releases before the newest: what CI adds to
    the whole suite, which it runs on the newest."""
    _core_tests(session, metaflow)
