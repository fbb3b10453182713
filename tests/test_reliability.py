"""Flows that hang, exhaust memory, exit the interpreter or get interrupted
fail their own item, name the step, and leave no process or sandbox behind."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

OK = """
from metaflow import FlowSpec, step


class OkFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.end)

    @step
    def end(self):
        pass
"""

# The hanging step starts a grandchild too, writes both pids and its session
# id where the test can find them (MARK_DIR), then sleeps far longer than any
# test waits.
HANGING = """
import os
import subprocess
import time
from pathlib import Path

from metaflow import FlowSpec, step


class HangFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.stuck)

    @step
    def stuck(self):
        child = subprocess.Popen(["sleep", "600"])
        mark = Path(os.environ["MARK_DIR"])
        (mark / "pids.tmp").write_text(f"{os.getpid()} {child.pid} {os.getsid(0)}")
        (mark / "pids.tmp").rename(mark / "pids")
        print("stuck now", flush=True)
        time.sleep(600)
        self.next(self.end)

    @step
    def end(self):
        pass
"""

OUT_OF_MEMORY = """
import resource

from metaflow import FlowSpec, step


class HogFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.hog)

    @step
    def hog(self):
        # This process may use 256 MiB of address space more than it has now.
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (used + 2**28, hard))
        chunks = []
        while True:
            chunks.append(bytearray(64 * 2**20))
        self.next(self.end)

    @step
    def end(self):
        pass
"""

EXITING = """
import os

from metaflow import FlowSpec, step


class ExitFlow(FlowSpec):
    @step
    def start(self):
        print("leaving without a word", flush=True)
        os._exit(7)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def _stat(pid: int | str) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name: state, ppid, pgrp, session..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid: int | str) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for a reaper is not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def leftovers(marks: Path) -> list[int]:
    """Live processes of the hung run: the step, its child, and anything else
    in the session the step ran in (the run's processes, an engine's server)."""
    step, child, session = (int(x) for x in (marks / "pids").read_text().split())
    found = {pid for pid in (step, child) if alive(pid)}
    for entry in Path("/proc").iterdir():
        stat = _stat(entry.name) if entry.name.isdigit() else None
        if stat is not None and int(stat[3]) == session and alive(entry.name):
            found.add(int(entry.name))
    return sorted(found)


def sandboxes(basetemp: Path) -> list[str]:
    return sorted(p.name for p in basetemp.glob("artflow-*") if p.is_dir() and not p.is_symlink())


@pytest.fixture
def marks(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the hanging step writes its pids; the flow's processes inherit
    the variable through the pytest subprocess."""
    path = pytester.mkdir("marks")
    monkeypatch.setenv("MARK_DIR", str(path))
    return path


ENGINES = pytest.mark.parametrize("engine", ["fork", "subprocess"])
#: Seconds after which a wait for an event gives up: only so that a broken
#: interrupt cannot hang the suite, never a budget a loaded machine must meet.
SAFETY_LIMIT = 900.0


@ENGINES
def test_hung_step_times_out_with_the_step_named(
    pytester: pytest.Pytester, marks: Path, engine: str
) -> None:
    pytester.makepyfile(hang_flow=HANGING, ok_flow=OK)
    result = pytester.runpytest_subprocess(
        "--artflow", "--artflow-timeout=6", "--artflow-keep=never", f"--artflow-engine={engine}"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "HangFlow/* failed in step 'stuck' (task HangFlow/*/stuck/2): Timeout: timed out "
            "after 6.0 s while running step 'stuck' (HangFlow/*/stuck/2); every process was killed",
            "output of the run (tail):",
            "*stuck now",
        ]
    )
    assert leftovers(marks) == []


@ENGINES
def test_memory_exhaustion_and_os_exit_fail_only_their_own_items(
    pytester: pytest.Pytester, engine: str
) -> None:
    pytester.makepyfile(hog_flow=OUT_OF_MEMORY, exit_flow=EXITING, ok_flow=OK)
    result = pytester.runpytest_subprocess(
        "--artflow", "--artflow-keep=never", "-v", f"--artflow-engine={engine}"
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "exit_flow.py::ExitFlow FAILED*",
            "hog_flow.py::HogFlow FAILED*",
            "ok_flow.py::OkFlow PASSED*",
            "ExitFlow/* failed in step 'start' (task ExitFlow/*/start/1): *",
            "*leaving without a word",
            "HogFlow/* failed in step 'hog' (task HogFlow/*/hog/2): MemoryError*",
            "*hog_flow.py*, in hog",
        ]
    )


def interrupt_while_hung(pytester: pytest.Pytester, marks: Path, *args: str) -> tuple[str, int]:
    """Start a pytest session, wait until the flow hangs, press Ctrl-C."""
    proc = pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        stdin=None,
    )
    # The event: the step wrote its pids (renamed into place whole). No time
    # budget: a loaded machine may take long to get there; pytest ending
    # first fails at once, and SAFETY_LIMIT only keeps a broken run from
    # hanging the suite.
    deadline = time.monotonic() + SAFETY_LIMIT
    while not (marks / "pids").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0]
            pytest.fail(f"the flow never started hanging:\n{out.decode()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=SAFETY_LIMIT)
    # What pytest SIGKILLed as it ended is gone once its parent reaped it.
    deadline = time.monotonic() + SAFETY_LIMIT
    while leftovers(marks) and time.monotonic() < deadline:
        time.sleep(0.05)
    return out.decode() + err.decode(), proc.returncode


@pytest.mark.parametrize(
    ("engine", "keep", "left"),
    [
        ("fork", "failed", []),
        ("subprocess", "failed", []),
        ("fork", "always", ["artflow-HangFlow0"]),
    ],
)
def test_ctrl_c_leaves_no_process_and_no_sandbox(
    pytester: pytest.Pytester, marks: Path, engine: str, keep: str, left: list[str]
) -> None:
    pytester.makepyfile(hang_flow=HANGING)
    basetemp = pytester.path / "bt"
    out, code = interrupt_while_hung(
        pytester,
        marks,
        "--artflow",
        f"--basetemp={basetemp}",
        f"--artflow-keep={keep}",
        f"--artflow-engine={engine}",
    )
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert leftovers(marks) == []
    assert sandboxes(basetemp) == left


def test_ctrl_c_in_a_test_using_artflow_run(pytester: pytest.Pytester, marks: Path) -> None:
    pytester.makepyfile(
        hang_flow=HANGING,
        test_hang="""
        from hang_flow import HangFlow

        def test_it(artflow_run):
            artflow_run(HangFlow)
        """,
    )
    basetemp = pytester.path / "bt"
    out, code = interrupt_while_hung(pytester, marks, f"--basetemp={basetemp}")
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert leftovers(marks) == []
    assert sandboxes(basetemp) == []
