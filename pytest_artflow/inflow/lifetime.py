"""No process of a run outlives the run, or the pytest process that started it.

Two ties make it so.

Descendants: a step may start a process that leaves the run's process group
(``os.setsid()``, ``Popen(start_new_session=True)``, a double fork), which
killing the group misses. So the top process of a run (the subprocess engine's
keeper, below; the fork engine's run zygote and its server) is a child
subreaper (Linux, ``prctl(PR_SET_CHILD_SUBREAPER)``): whatever its descendants
leave behind is re-parented to it instead of to init, and when the run ends
it ends its children, whose own children then come to it in turn, until none
is left (``end_children``). Where that is not available (``owns_descendants``
is false) only the run's process group is killed, and timeouts say so.

The pytest process: the subprocess engine passes the run's first process the
read end of a pipe (``LIFELINE_ENV`` names the descriptor) whose write end
only the pytest process holds. That process forks: the child becomes the run
(Metaflow's CLI), the parent stays as its keeper and ends the run when it
reads end of file, which is when pytest ends the run (a timeout, Ctrl-C) or
dies in any way: SIGTERM from a cancelled CI job, SIGKILL, pytest-timeout's
``os._exit``, an xdist worker killed. The fork engine's server has the same
tie through its socket.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import sys
from collections.abc import Callable, Container

from ..forkserver import program

#: The variable that names the keeper's end of the pipe (see the module's doc).
LIFELINE_ENV = "PYTEST_ARTFLOW_LIFELINE_FD"

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


@functools.cache
def owns_descendants() -> bool:
    """Whether a run here can own every process below it (a subreaper, and
    ``/proc`` to find its children), so that ending a run ends all of them."""
    prctl = _prctl()
    if prctl is None or not os.path.isdir(f"/proc/{os.getpid()}/task"):
        return False
    import ctypes

    value = ctypes.c_int()
    return prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) == 0


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children (not init's)."""
    prctl = _prctl()
    if prctl is None or not owns_descendants():
        return False
    return prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def children() -> list[int]:
    """This process's children, those not yet waited for included.

    Only this process reaps its children, so none leaves the list while it is
    read (which could make ``/proc``'s list skip one)."""
    me = os.getpid()
    if not os.path.exists(f"/proc/{me}/task/{me}/children"):
        # A kernel without the children lists: every process's parent.
        return [pid for pid in _all_pids() if _parent(pid) == me]
    found: list[int] = []
    for tid in os.listdir(f"/proc/{me}/task"):
        path = f"/proc/{me}/task/{tid}/children"
        # A thread that ended meanwhile has no list.
        with contextlib.suppress(FileNotFoundError, ProcessLookupError), open(path) as f:
            found += (int(pid) for pid in f.read().split())
    return found


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def end_children(keep: Container[int] = ()) -> None:
    """Kill every child of this process but ``keep``, and wait for each.

    Only children are signalled (a child not yet waited for keeps its pid, so
    the signal cannot reach another process); what a killed child leaves is
    re-parented here (a subreaper) and ended in the next round."""
    while True:
        pids = [pid for pid in children() if pid not in keep]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def keep_run(lifeline: int) -> None:
    """Fork; the child returns (to run Metaflow's CLI), this process becomes
    the run's keeper and never returns: it ends with the child's exit status
    once the child and everything below it are gone, or, if the lifeline
    closes first, kills the run and dies by SIGKILL."""
    owned = become_subreaper()
    pid = os.fork()
    if pid == 0:
        os.close(lifeline)
        return
    code: int | None = None
    try:
        code = _watch(pid, lifeline)
    finally:
        # Never a return from here: this process would run the flow too.
        try:
            if owned:
                end_children()
            elif code is None:
                # No subreaper here: the run's process group is all there is to kill.
                os.killpg(0, signal.SIGKILL)
        finally:
            program._exit_like(-signal.SIGKILL if code is None else code)


def _watch(pid: int, lifeline: int) -> int | None:
    """The exit status of ``pid``, or ``None`` if ``lifeline`` closes first
    (or this process is asked to end: SIGTERM, SIGHUP). Orphans re-parented
    here are waited for as they end."""
    asked: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: asked.append(signum))
    wakeup = program.Wakeup()
    while True:
        code = _reap(pid)
        if code is not None:
            return code
        readable, _, _ = select.select([lifeline, wakeup.read_fd], [], [])
        if lifeline in readable or asked:
            return None
        wakeup.drain()


def _reap(pid: int) -> int | None:
    """Wait for every child that has ended; ``pid``'s exit status if it has."""
    code = None
    while True:
        try:
            ended, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if ended == 0:
            return code
        if ended == pid:
            code = os.waitstatus_to_exitcode(status)
