"""``pytest -n 2`` (pytest-xdist): flow items and ``artflow_run`` tests on two
workers keep to their own sandboxes and the controller reports every flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SAME = """
import os

from metaflow import FlowSpec, step


class SameFlow(FlowSpec):
    @step
    def start(self):
        self.worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.next(self.end)

    @step
    def end(self):
        pass
"""

OTHER = SAME.replace("SameFlow", "OtherFlow")

# Every worker runs this test (--dist each): each must see exactly one run of
# SameFlow, its own, and say which sandbox it used.
SEES_ONLY_ITS_RUN = """
import json
import os
from pathlib import Path

from metaflow import Flow

from same_flow import SameFlow


def test_sees_only_its_own_run(artflow_run, artflow_sandbox):
    run = artflow_run(SameFlow)
    worker = os.environ["PYTEST_XDIST_WORKER"]
    assert run["start"].data.worker == worker
    assert [r.id for r in Flow("SameFlow")] == [run.run_id]
    record = {"worker": worker, "sandbox": str(artflow_sandbox.root)}
    (Path(os.environ["MARK_DIR"]) / worker).write_text(json.dumps(record))
"""


def test_two_workers_running_the_same_flow_do_not_see_each_other(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = pytester.mkdir("marks")
    monkeypatch.setenv("MARK_DIR", str(marks))
    pytester.makepyfile(same_flow=SAME, test_same=SEES_ONLY_ITS_RUN)
    basetemp = pytester.path / "bt"
    result = pytester.runpytest_subprocess(
        "--artflow", "-n", "2", "--dist", "each", f"--basetemp={basetemp}", "--artflow-keep=always"
    )
    # Each of the two workers ran the flow item and the test.
    result.assert_outcomes(passed=4)
    records = [json.loads(p.read_text()) for p in sorted(marks.iterdir())]
    assert [r["worker"] for r in records] == ["gw0", "gw1"]
    roots = [Path(r["sandbox"]) for r in records]
    assert roots[0] != roots[1]
    for record, root in zip(records, roots, strict=True):
        assert root.parent.name == f"popen-{record['worker']}"
    # The flow items' sandboxes (kept) are apart too, one per worker.
    kept = [p for p in basetemp.glob("popen-gw*/artflow-SameFlow*") if not p.is_symlink()]
    assert sorted(p.parent.name for p in kept) == ["popen-gw0", "popen-gw1"]
    result.stdout.fnmatch_lines_random(
        [
            "PASSED same_flow.py::SameFlow [[]gw0[]]: 2 steps (start, end), 2 tasks, * s",
            "PASSED same_flow.py::SameFlow [[]gw1[]]: 2 steps (start, end), 2 tasks, * s",
        ]
    )


def test_controller_reports_the_flows_that_workers_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(same_flow=SAME, other_flow=OTHER)
    result = pytester.runpytest_subprocess("--artflow", "-n", "2", "-v", "--artflow-keep=never")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED other_flow.py::OtherFlow: 2 steps (start, end), 2 tasks, * s",
            "PASSED same_flow.py::SameFlow: 2 steps (start, end), 2 tasks, * s",
            "    start  * 1 task * s",
        ]
    )
