"""``run_flow``: a run per call, without fixtures, usable inside ``@given``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import metaflow
import pytest
from metaflow.client import core
from metaflow.plugins.datastores.local_storage import LocalStorage
from metaflow.plugins.metadata_providers.local import LocalMetadataProvider

from examples.art_flow import ArtFlow
from pytest_artflow import FlowReferenceError, FlowRunFailed, run_flow
from pytest_artflow.settings import engines_key

FLOWS = Path(__file__).parent / "flows"
ROOT = Path(__file__).parents[1]


def client_state() -> tuple[object, ...]:
    return (
        core.current_metadata,
        core.current_namespace,
        core.filecache,
        LocalMetadataProvider._INFO,
        LocalStorage.datastore_root,
    )


@pytest.fixture
def engines_used(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the engines the session's EngineSet hands out."""
    engines = request.config.stash[engines_key]
    used: list[str] = []
    get = engines.get

    def spy(name: str):  # type: ignore[no-untyped-def]
        used.append(name)
        return get(name)

    monkeypatch.setattr(engines, "get", spy)
    return used


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_runs_the_flow_in_a_sandbox_of_its_own_and_removes_it(engine: str) -> None:
    before = client_state()
    run = run_flow(ArtFlow, engine=engine)

    assert run.successful and run.steps == ["start", "middle", "end"]
    assert run.sandbox is not None and not run.sandbox.root.exists()
    # Plain objects: readable with the sandbox gone.
    assert run.trace("some_data") == {"start": [1, 2, 3], "middle": [1, 2, 4], "end": [1, 2, 4]}
    assert "the data artifact is: [1, 2, 3]" in run["middle"].stdout
    # The client in this process was scoped to the sandbox while reading only.
    assert client_state() == before


def test_uses_the_sessions_engines_and_default_engine(engines_used: list[str]) -> None:
    run_flow(ArtFlow)
    run_flow(ArtFlow)
    assert engines_used == ["fork", "fork"]


@pytest.mark.artflow(engine="subprocess")
def test_the_tests_artflow_marker_applies(engines_used: list[str]) -> None:
    run_flow(ArtFlow)
    assert engines_used == ["subprocess"]


def test_sandbox_is_made_under_pytests_basetemp(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with pytest.raises(FlowRunFailed) as failed:
        run_flow(FLOWS / "failing_flow.py")
    root = failed.value.run.sandbox.root
    assert root.parent == tmp_path_factory.getbasetemp()
    assert root.name.startswith("artflow-run-failing_flow")


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_failed_run_keeps_its_sandbox_and_names_it(engine: str) -> None:
    with pytest.raises(FlowRunFailed) as failed:
        run_flow(FLOWS / "failing_flow.py", engine=engine)
    message = str(failed.value)
    root = failed.value.run.sandbox.root
    assert "failed in step 'explode'" in message
    assert message.splitlines()[-1] == f"sandbox kept: {root}"
    assert (root / ".metaflow" / "FailingFlow").is_dir()


def test_check_false_returns_the_failed_run_and_keeps_its_sandbox() -> None:
    run = run_flow(FLOWS / "failing_flow.py", check=False)
    assert not run.successful and run.failure.step == "explode"
    assert run["start"].data.before == "made it"
    assert run.sandbox.root.is_dir()


def test_leaves_the_tests_own_sandbox_in_charge(artflow_run) -> None:  # type: ignore[no-untyped-def]
    mine = artflow_run(ArtFlow)
    other = run_flow(ArtFlow)
    assert other.run_id != mine.run_id or other.sandbox.root != mine.sandbox.root
    # The test's client still sees the test's sandbox, and only it.
    assert metaflow.Flow("ArtFlow").latest_run.pathspec == mine.pathspec
    assert [r.pathspec for r in metaflow.Flow("ArtFlow")] == [mine.pathspec]


GIVEN_TEST = """
import os
from pathlib import Path

from hypothesis import given, settings, strategies as st
from pytest_artflow import run_flow

from count_flow import CountFlow

@settings(max_examples=6, deadline=None)
@given(count=st.integers(0, 3))
def test_count(count):
    run = run_flow(CountFlow, count=count)
    assert run["end"].data.doubled == 2 * count
"""

COUNT_FLOW = """
from metaflow import FlowSpec, Parameter, step

class CountFlow(FlowSpec):
    count = Parameter("count", default=1, type=int)

    @step
    def start(self):
        if self.count > 3:
            raise ValueError(f"count {self.count} is too big")
        self.doubled = 2 * self.count
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def artflow_dirs(basetemp: Path) -> list[Path]:
    # (pytest's numbered directories come with a "...current" symlink)
    return sorted(p for p in basetemp.glob("artflow-run-*") if not p.is_symlink())


def test_inside_given_without_health_check_suppression(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(count_flow=COUNT_FLOW, test_given=GIVEN_TEST)
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_subprocess(f"--basetemp={basetemp}")
    result.assert_outcomes(passed=1)
    assert "FailedHealthCheck" not in result.stdout.str()
    assert artflow_dirs(basetemp) == []  # every example's sandbox removed


@pytest.mark.parametrize(("keep", "kept"), [("never", 0), ("failed", 1), ("always", 3)])
def test_artflow_keep_decides_which_sandboxes_stay(
    pytester: pytest.Pytester, keep: str, kept: int
) -> None:
    pytester.makepyfile(
        count_flow=COUNT_FLOW,
        test_keep="""
        import pytest
        from pytest_artflow import FlowRunFailed, run_flow
        from count_flow import CountFlow

        def test_keep():
            run_flow(CountFlow, count=1)
            run_flow(CountFlow, count=2)
            with pytest.raises(FlowRunFailed, match="count 9 is too big"):
                run_flow(CountFlow, count=9)
        """,
    )
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_subprocess(f"--basetemp={basetemp}", f"--artflow-keep={keep}")
    result.assert_outcomes(passed=1)
    assert len(artflow_dirs(basetemp)) == kept


def test_outside_pytest_with_engines_of_its_own(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import pytest_artflow
        from examples.art_flow import ArtFlow
        from pytest_artflow import standalone

        run = pytest_artflow.run_flow(ArtFlow)
        print("trace", run.trace("some_data")["end"])
        engines = standalone._own[0]
        print("engines", sorted(engines._instances))
        print("servers", *[s.proc.pid for s in engines._instances["fork"]._servers.values()])
        """
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "trace [1, 2, 4]" in done.stdout
    assert "engines ['fork']" in done.stdout
    assert list(scratch.iterdir()) == []  # the sandbox is gone
    # The fork server was closed (stopped and reaped) when the interpreter exited.
    servers = next(line for line in done.stdout.splitlines() if line.startswith("servers"))
    pids = [int(pid) for pid in servers.split()[1:]]
    assert pids and not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_the_session_is_back_after_a_nested_one(
    pytester: pytest.Pytester, engines_used: list[str]
) -> None:
    pytester.makepyfile(test_inner="def test_inner():\n    pass\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    run_flow(ArtFlow)
    assert engines_used == ["fork"]


def test_artifact_reads_are_forgotten_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        count_flow=COUNT_FLOW,
        test_two="""
        from pytest_artflow import run_flow
        from count_flow import CountFlow

        def test_reads_an_artifact():
            assert run_flow(CountFlow, count=2)["start"].data.doubled == 4

        def test_unrelated():
            four = 4
            assert four == 5
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    assert "artifact 'doubled'" not in result.stdout.str()


def test_a_bad_reference_is_named_and_leaves_no_sandbox(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    before = set(tmp_path_factory.getbasetemp().iterdir())
    with pytest.raises(FlowReferenceError, match="cannot run 42: give a FlowSpec subclass"):
        run_flow(42)
    with pytest.raises(FlowReferenceError, match=r"flow file 'no_such_flow\.py' not found"):
        run_flow("no_such_flow.py")
    after = {p for p in tmp_path_factory.getbasetemp().iterdir() if not p.is_symlink()}
    assert after - before == set()
