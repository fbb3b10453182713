"""Nothing of a run outlives the run or the pytest process that started it:
not when pytest or an xdist worker is killed (SIGTERM, SIGKILL), not a daemon
a step started in a session of its own, after the run ends or times out."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_artflow import FlowRunFailed
from pytest_artflow.inflow import lifetime
from pytest_artflow.results.failure import timeout_failure

pytestmark = pytest.mark.skipif(
    not lifetime.owns_descendants(), reason="needs Linux (a subreaper and /proc)"
)

ENGINES = pytest.mark.parametrize("engine", ["fork", "subprocess"])

#: Seconds any awaited event may take on a loaded machine.
LIMIT = 120.0

# The step starts a child (in its process group) and a daemon (in a session of
# its own, as ``os.setsid()`` makes), writes its pid and theirs to MARK_DIR,
# then never ends.
HANGING = """
import os
import subprocess
import time
from pathlib import Path

from metaflow import FlowSpec, step


class HangFlow(FlowSpec):
    @step
    def start(self):
        child = subprocess.Popen(["sleep", "600"])
        daemon = subprocess.Popen(
            ["sleep", "600"],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        mark = Path(os.environ["MARK_DIR"])
        (mark / "pids.tmp").write_text(f"{os.getpid()} {child.pid} {daemon.pid}")
        (mark / "pids.tmp").rename(mark / "pids")
        time.sleep(600)
        self.next(self.end)

    @step
    def end(self):
        pass
"""

# A step that leaves two daemons and ends: one it started itself, one started
# by a process that exited at once (a double fork). The second one keeps the
# step's stdout and stderr open if ``HOLD`` is set: then Metaflow's runtime
# waits for them to close, as under ``python flow.py run``.
LEAVING = """
import os
import subprocess
import sys
from pathlib import Path

from metaflow import FlowSpec, step

START_DAEMON = (
    "import subprocess, sys;"
    "out = None if sys.argv[1] == '1' else subprocess.DEVNULL;"
    "d = subprocess.Popen(['sleep', '600'], start_new_session=True,"
    " stdin=subprocess.DEVNULL, stdout=out, stderr=out);"
    "open(sys.argv[2], 'w').write(str(d.pid))"
)


class LeaveFlow(FlowSpec):
    @step
    def start(self):
        daemon = subprocess.Popen(
            ["sleep", "600"],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        mark = Path(os.environ["MARK_DIR"])
        hold = os.environ.get("HOLD", "0")
        subprocess.run([sys.executable, "-c", START_DAEMON, hold, mark / "second"], check=True)
        second = (mark / "second").read_text()
        (mark / "pids.tmp").write_text(f"{daemon.pid} {second}")
        (mark / "pids.tmp").rename(mark / "pids")
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker``."""
    found = []
    for entry in glob.glob("/proc/[0-9]*/environ"):
        pid = int(entry.split("/")[2])
        try:
            with open(entry, "rb") as f:
                if marker.encode() in f.read() and alive(pid):
                    found.append(pid)
        except OSError:
            continue
    return found


def wait_for(condition: Callable[[], object], what: str, limit: float = LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch) -> str:
    """A variable in the environment of every process the test starts."""
    name = f"ARTFLOW_LIFETIME_{uuid.uuid4().hex}"
    monkeypatch.setenv(name, "1")
    return name


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where steps write their pids (``MARK_DIR``, inherited by the run)."""
    path = tmp_path / "marks"
    path.mkdir()
    monkeypatch.setenv("MARK_DIR", str(path))
    return path


def pids_of(marks: Path) -> list[int]:
    return [int(pid) for pid in (marks / "pids").read_text().split()]


def hang_in_session(pytester: pytest.Pytester, marks: Path, engine: str, *args: str) -> Any:
    """Start a pytest session whose test runs HangFlow and wait until the
    step hangs; the session's process, still running."""
    pytester.makepyfile(
        hang_flow=HANGING,
        test_hang=f"""
        import os
        from pathlib import Path

        def test_hang(artflow_run):
            mark = Path(os.environ["MARK_DIR"])
            (mark / "test.pid.tmp").write_text(str(os.getpid()))
            (mark / "test.pid.tmp").rename(mark / "test.pid")
            artflow_run(Path(__file__).parent / "hang_flow.py", engine={engine!r})
        """,
    )
    log = (pytester.path / "session.log").open("wb")
    proc = pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + LIMIT
    while not (marks / "pids").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            text = (pytester.path / "session.log").read_text(errors="replace")
            pytest.fail(f"the step never started hanging:\n{text}")
        time.sleep(0.05)
    return proc


def assert_all_gone(pids: list[int], marker: str) -> None:
    """The step, its child and its daemon end, and with them every process
    the session started (the runtime, tasks, the fork server, its zygote)."""
    wait_for(lambda: not [pid for pid in pids if alive(pid)], f"{pids} to end")
    wait_for(lambda: not processes_with_env(marker), "the session's processes to end")


@ENGINES
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_pytest_leaves_no_process(
    pytester: pytest.Pytester, marks: Path, marker: str, engine: str, signum: int
) -> None:
    proc = hang_in_session(pytester, marks, engine)
    pids = pids_of(marks)
    assert all(alive(pid) for pid in pids)
    proc.send_signal(signum)
    assert proc.wait(timeout=LIMIT) == -signum
    assert_all_gone(pids, marker)


@ENGINES
def test_a_killed_xdist_worker_leaves_no_process(
    pytester: pytest.Pytester, marks: Path, marker: str, engine: str
) -> None:
    proc = hang_in_session(pytester, marks, engine, "-n", "1")
    try:
        worker = int((marks / "test.pid").read_text())
        assert worker != proc.pid
        pids = pids_of(marks)
        assert all(alive(pid) for pid in pids)
        os.kill(worker, signal.SIGKILL)
        assert_all_gone(pids, marker)
    finally:
        # The controller reports the crashed worker and ends by itself.
        try:
            proc.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@ENGINES
def test_daemons_a_step_started_end_with_the_run(
    artflow_run: Any, flow_file: Callable[..., Path], marks: Path, engine: str
) -> None:
    run = artflow_run(flow_file(LEAVING), engine=engine)
    assert run.successful
    daemons = pids_of(marks)
    assert len(daemons) == 2
    # Ended (and waited for) before the run returned.
    assert [pid for pid in daemons if alive(pid)] == []


@ENGINES
def test_a_timeout_names_the_step_whose_output_a_daemon_holds_and_ends_it(
    artflow_run: Any,
    flow_file: Callable[..., Path],
    marks: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
) -> None:
    monkeypatch.setenv("HOLD", "1")
    with pytest.raises(FlowRunFailed) as excinfo:
        artflow_run(flow_file(LEAVING), engine=engine, timeout=30)
    run = excinfo.value.run
    assert run is not None and run.failure is not None
    assert run.failure.step == "start"
    assert run.failure.message == (
        f"timed out after 30 s while waiting for step 'start' ({run.pathspec}/start/1), "
        "which had finished, to close its output (a process it started holds it open); "
        "every process was killed"
    )
    assert run["start"].task.finished
    daemons = pids_of(marks)
    assert len(daemons) == 2
    assert [pid for pid in daemons if alive(pid)] == []


def test_a_timeout_claims_no_more_than_this_platform_can_kill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifetime, "owns_descendants", lambda: False)
    run = types.SimpleNamespace(tasks=[], output="")
    failure = timeout_failure(run, 5)  # type: ignore[arg-type]
    assert failure.message == (
        "timed out after 5 s while running between steps; the run's process group was killed "
        "(processes a step started in a session of their own are not tracked on this platform)"
    )


def test_the_keeper_ends_what_its_run_left_when_its_lifeline_closes(tmp_path: Path) -> None:
    """The run's keeper, alone: its child (the run) starts a daemon and
    hangs; closing the pipe ends both, and the keeper dies by SIGKILL."""
    script = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        from pytest_artflow.inflow import lifetime

        lifetime.keep_run(int(os.environ[lifetime.LIFELINE_ENV]))
        daemon = subprocess.Popen(["sleep", "600"], start_new_session=True)
        with open({str(tmp_path / "pids.tmp")!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{daemon.pid}}")
        os.rename({str(tmp_path / "pids.tmp")!r}, {str(tmp_path / "pids")!r})
        time.sleep(600)
        """
    )
    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, lifetime.LIFELINE_ENV: str(read)},
            pass_fds=(read,),
            start_new_session=True,
        )
    finally:
        os.close(read)
    try:
        wait_for(lambda: (tmp_path / "pids").exists(), "the run to start")
    finally:
        os.close(write)
    assert proc.wait(timeout=LIMIT) == -signal.SIGKILL
    assert [pid for pid in pids_of(tmp_path) if alive(pid)] == []
