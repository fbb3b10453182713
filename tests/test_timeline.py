"""Timeline marks from a real run: with ``PYTEST_ARTFLOW_TIMELINE`` set in
pytest's environment, a fork-engine run's processes write marks to the file,
and ``timeline.budget`` makes a budget of them (the phases themselves are
tested on made-up marks in ``unit/test_timeline_budget.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_artflow import timeline

SEED_FLOW = Path(__file__).parent.parent / "examples" / "art_flow.py"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork engine needs os.fork")


def test_a_forked_run_writes_marks_from_its_processes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "timeline.txt"
    monkeypatch.setenv(timeline.ENV, str(path))
    pytester.makepyfile(
        test_it=f"""
        import os

        def test_run(artflow_run):
            run = artflow_run({str(SEED_FLOW)!r})
            print("PYTEST-PID<" + str(os.getpid()) + ">")
            assert run.successful and len(run.tasks) == 3
        """
    )
    result = pytester.runpytest_subprocess("--artflow-engine=fork", "-s", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    pytest_pid = int(result.stdout.str().split("PYTEST-PID<")[1].split(">")[0])

    marks = timeline.read(str(path))
    roles = timeline.roles(marks)
    by_role: dict[str, set[int]] = {}
    for pid, role in roles.items():
        by_role.setdefault(role, set()).add(pid)
    # The pytest process: the run's request, its end, its results read.
    assert by_role["pytest"] == {pytest_pid}
    mine = [m.phase for m in marks if m.pid == pytest_pid]
    for phase in ("run.requested", "run.ended", "results.read"):
        assert phase in mine
    assert mine.index("run.requested") < mine.index("run.ended") < mine.index("results.read")
    # Every task, forked from the zygote, which opened the file for them.
    assert len(by_role["task"]) == 3
    assert pytest_pid not in by_role["task"]

    budget = timeline.budget(marks)
    assert budget.tasks == 3
    assert budget.milestones["run.requested"] == ("pytest", 0.0)
    assert budget.milestones["task.start"][1] < budget.milestones["run.ended"][1]


def test_no_marks_unless_asked(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timeline.ENV, raising=False)
    pytester.makepyfile(
        test_it="""
        from pytest_artflow import timeline

        def test_off():
            assert timeline._fd is None
        """
    )
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=1)
