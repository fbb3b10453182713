"""How the fork engine starts and ends tasks: each task runs in a process the
run's zygote forked ahead of the request (a spare), no spare outlives its
run, and a task's exit status reaches Metaflow's runtime as the subprocess
engine's does, through the task's own pipe when it ends as a program does.

The run's processes leave timeline marks (``pytest_artflow.timeline``) when
the run's environment names a file: they say which process did what."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from processes import alive, wait_for

from pytest_artflow import FlowRunFailed, timeline

FLOWS = Path(__file__).parent / "flows"

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task"), reason="the fork engine's spares are found in /proc"
)


@pytest.fixture
def marks_file(tmp_path: Path) -> Path:
    return tmp_path / "timeline.txt"


def _marks(path: Path, phase: str) -> list[timeline.Mark]:
    return [m for m in timeline.read(str(path)) if m.phase == phase] if path.exists() else []


def test_each_task_runs_in_a_spare_forked_ahead_of_it(artflow_run: Any, marks_file: Path) -> None:
    run = artflow_run(
        FLOWS / "foreach_flow.py",
        engine="fork",
        width=3,
        env={timeline.ENV: str(marks_file)},
    )
    spares = {int(m.detail): m for m in _marks(marks_file, "spare.forked")}
    handed = {int(m.detail): m for m in _marks(marks_file, "task.forked")}
    started = _marks(marks_file, "task.start")
    assert len(started) == len(run.tasks) == len(handed)
    for task in started:
        # The task's process is a spare R forked and then handed the job.
        assert task.pid in spares and task.pid in handed
        assert spares[task.pid].ns < task.ns
    # One spare more than tasks: the last one, never used, is gone with the run.
    unused = set(spares) - {task.pid for task in started}
    assert len(unused) == 1
    assert not [pid for pid in spares if alive(pid)]


def test_no_spare_outlives_a_killed_run(artflow_run: Any, marks_file: Path, tmp_path: Path) -> None:
    with pytest.raises(FlowRunFailed, match="timed out"):
        artflow_run(
            FLOWS / "hanging_flow.py",
            engine="fork",
            timeout=10,
            pid_dir=tmp_path,
            env={timeline.ENV: str(marks_file)},
        )
    spares = [int(m.detail) for m in _marks(marks_file, "spare.forked")]
    assert spares
    wait_for(lambda: not [pid for pid in spares if alive(pid)], f"spares {spares} to end")


def test_tasks_that_are_new_interpreters_have_no_spare(
    artflow_run: Any, flow_file: Callable[..., Path], marks_file: Path
) -> None:
    flow_file(
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        """,
        name="starts_a_thread_too.py",
    )
    path = flow_file(
        """
        from metaflow import FlowSpec, step
        import starts_a_thread_too

        class ThreadedFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    with pytest.warns(Warning, match="started thread"):
        run = artflow_run(path, engine="fork", env={timeline.ENV: str(marks_file)})
    assert run.successful
    assert _marks(marks_file, "task.requested") == []
    assert _marks(marks_file, "spare.forked") == []


# The start step ends the way the run's environment says.
EXITING = """
import os
import signal
import sys

from metaflow import FlowSpec, step


class ExitFlow(FlowSpec):
    @step
    def start(self):
        how = os.environ["EXIT_HOW"]
        print("ending by", how, flush=True)
        if how == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "os_exit":
            os._exit(3)
        elif how == "sys_exit":
            sys.exit(5)
        elif how == "raise":
            raise ValueError("raised in the step")
        self.next(self.end)

    @step
    def end(self):
        pass
"""

#: How the step ends -> how the task's status reaches the runtime in a fork
#: run: its own pipe ("pipe"), or, when it dies without writing it, R ("zygote").
ENDINGS = {
    "returns": "pipe",
    "raise": "pipe",
    "sys_exit": "pipe",
    "os_exit": "zygote",
    "signal": "zygote",
}


def _return_codes(sandbox: Any, run: Any) -> list[dict[str, Any]]:
    """What Metaflow's runtime recorded of each attempt of ``start``'s task:
    the exit status ``Popen.wait`` (or ours) gave it, and whether it killed it."""
    found = sorted(
        (sandbox.root / ".metaflow" / "ExitFlow" / run.run_id / "start").glob("*/*.runtime")
    )
    assert found
    return [json.loads(path.read_text()) for path in found]


@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_a_tasks_exit_status_reaches_metaflow_as_under_the_subprocess_engine(
    artflow_run: Any,
    artflow_sandbox: Any,
    flow_file: Callable[..., Path],
    marks_file: Path,
    how: str,
) -> None:
    path = flow_file(EXITING)
    recorded = {}
    for engine in ("subprocess", "fork"):
        env = {"EXIT_HOW": how}
        if engine == "fork":
            env[timeline.ENV] = str(marks_file)
        run = artflow_run(path, engine=engine, check=False, env=env)
        assert run.successful is (how == "returns")
        recorded[engine] = _return_codes(artflow_sandbox, run)
    assert recorded["fork"] == recorded["subprocess"]
    expected = {"returns": 0, "raise": 1, "sys_exit": 5, "os_exit": 3, "signal": -9}[how]
    assert [r["return_code"] for r in recorded["fork"]] == [expected]
    # The fork run's start task: its status came the way it could.
    (started,) = [m for m in _marks(marks_file, "task.start") if m.detail.startswith("start/")]
    (exited,) = [
        m for m in _marks(marks_file, "task.noticed") if m.detail.startswith(f"{started.pid} ")
    ]
    assert exited.detail == f"{started.pid} {expected} {ENDINGS[how]}"


def test_a_task_has_the_low_descriptors_a_new_interpreters_task_has(
    artflow_run: Any, flow_file: Callable[..., Path]
) -> None:
    """Nothing of R or of the spare's job channel stays open in a task, and
    its exit-status pipe keeps out of the numbers the step's own files get."""
    path = flow_file(
        """
        import os
        from metaflow import FlowSpec, step

        class FdFlow(FlowSpec):
            @step
            def start(self):
                self.fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) < 100)
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    seen = {
        engine: artflow_run(path, engine=engine)["start"].data.fds
        for engine in ("subprocess", "fork")
    }
    assert seen["fork"] == seen["subprocess"]


def test_a_single_step_job_forks_no_spare(
    artflow_run: Any, artflow_step: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run keeps a spare ready from its start; a single step (M runs the
    task itself, Metaflow's runtime starts no task) does not fork one."""
    flow = Path(__file__).parent.parent / "examples" / "art_flow.py"
    run_marks, step_marks = tmp_path / "run.txt", tmp_path / "step.txt"
    monkeypatch.setenv(timeline.ENV, str(run_marks))
    assert artflow_run(flow, engine="fork").successful
    monkeypatch.setenv(timeline.ENV, str(step_marks))
    task = artflow_step(flow, "middle", inputs={"some_data": [9, 9]}, engine="fork")
    assert task.successful
    assert _marks(run_marks, "spare.forked")
    assert _marks(step_marks, "spare.forked") == []
