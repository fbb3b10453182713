"""What Metaflow's runtime, in the fork engine's run process, sees of a task.

The runtime starts each task with ``subprocess.Popen``. In the run process
that name is ``TaskLauncher.popen``: a task whose command is the launcher's and
whose environment is the run's (plus what the runtime adds, ``TASK_ENV_KEYS``)
is forked by the run's zygote instead, and handed back as a ``ForkedTask``
with the pipes and the methods the runtime uses; anything else starts as
``Popen`` would start it.

A task's exit status reaches the runtime two ways. A task that ends as a
program does (its step returned or raised, ``sys.exit``) writes it to a pipe
of its own as the last thing before ``_exit``, after closing its standard
streams (``program.report_exit``): the runtime, which calls ``wait`` as soon as
it sees the end of the task's output, has it at once. A task that dies
without writing it (a signal, ``os._exit`` in the step, a crash) closes the
pipe empty, and R's report of the status ``waitpid`` gave it (``exited``)
decides. Either way the status is the one ``Popen`` would report.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from typing import Any

from .. import timeline
from .messages import recv, send

#: Variables Metaflow's runtime adds to every task's environment; any other
#: difference from the run's environment makes the task a fresh interpreter.
TASK_ENV_KEYS = frozenset({"METAFLOW_RUN_ID", "PYTHONUNBUFFERED"})


class TaskLauncher:
    """M's side of R: ``popen`` stands in for ``subprocess.Popen`` in Metaflow's
    runtime and forks the tasks it can, starting anything else as Popen would."""

    def __init__(self, sock: socket.socket, entrypoint: list[str]) -> None:
        self.sock = sock
        self.entrypoint = entrypoint
        #: R's reports (``exited``) of tasks not yet waited for.
        self.exited: dict[int, int] = {}
        #: Tasks whose status came through their pipe: R's report is ignored.
        self.reported: set[int] = set()

    def popen(self, args: Any, **kwargs: Any) -> Any:
        if self.can_fork(args, kwargs):
            return ForkedTask(self, list(args), kwargs["env"], kwargs.get("bufsize", -1))
        return subprocess.Popen(args, **kwargs)

    def can_fork(self, args: Any, kwargs: dict[str, Any]) -> bool:
        if not isinstance(args, (list, tuple)) or list(args[: len(self.entrypoint)]) != (
            self.entrypoint
        ):
            return False
        if set(kwargs) - {"env", "bufsize", "stdin", "stdout", "stderr"}:
            return False
        if any(kwargs.get(s) != subprocess.PIPE for s in ("stdin", "stdout", "stderr")):
            return False
        env = kwargs.get("env")
        if env is None:
            return False
        # The runtime passes its own environment plus a few keys; anything else
        # (``@environment``, tracing) may be read at import: a new interpreter.
        here = os.environ
        changed = {k for k in env.keys() | here.keys() if env.get(k) != here.get(k)}
        return changed <= TASK_ENV_KEYS

    def fork(self, args: list[str], env: dict[str, str], fds: list[int]) -> int:
        """Have R start a task (it hands the job to a process it forked in
        advance); its pid. ``fds``: the task's stdin, stdout, stderr and the
        write end of its exit-status pipe."""
        timeline.mark("task.requested", task_name(args))
        send(self.sock, {"op": "fork", "args": args, "env": env}, fds)
        while True:
            message = self._receive()
            if message["op"] == "forked":
                return int(message["pid"])
            if message["op"] == "error":
                raise OSError(message["message"])

    def status(self, task: ForkedTask, timeout: float | None) -> int | None:
        """The exit status of ``task``; ``None`` if it is still running after
        ``timeout``: from the task's own pipe, or from R if it died without
        writing to it."""
        pid = task.pid
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.exited:
            # poll, not select: the runtime's many pipes may take high fds.
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            if task.exit_fd is not None:
                poller.register(task.exit_fd, select.POLLIN)
            wait = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            ready = {fd for fd, _ in poller.poll(wait)}
            if not ready:
                return None
            if task.exit_fd in ready:
                code = task.read_exit()
                if code is not None:
                    self.reported.add(pid)
                    timeline.mark("task.noticed", f"{pid} {code} pipe")
                    return code
            if self.sock.fileno() in ready:
                self._receive()
        task.close_exit()
        timeline.mark("task.noticed", f"{pid} {self.exited[pid]} zygote")
        return self.exited.pop(pid)

    def signal(self, pid: int, signum: int) -> None:
        send(self.sock, {"op": "signal", "pid": pid, "signal": signum})

    def _receive(self) -> dict[str, Any]:
        message, _ = recv(self.sock)
        if message is None:
            raise RuntimeError("pytest-artflow: the run's zygote process is gone")
        if message["op"] == "exited":
            pid = message["pid"]
            if pid in self.reported:
                # Told through its pipe already; this pid may now be reused.
                self.reported.discard(pid)
            else:
                self.exited[pid] = message["code"]
        return message


def task_name(args: list[str]) -> str:
    """``step/task-id`` of a task's command line, for the timeline."""
    try:
        return f"{args[args.index('step') + 1]}/{args[args.index('--task-id') + 1]}"
    except (ValueError, IndexError):
        return ""


class ForkedTask:
    """The part of ``subprocess.Popen`` Metaflow's runtime uses (``pid``, the
    three pipes, ``poll``, ``wait``, ``kill``), for a task forked by R."""

    def __init__(self, launcher: TaskLauncher, args: list[str], env: dict[str, str], bufsize: int):
        self.args = args
        self.returncode: int | None = None
        self._launcher = launcher
        child_in, parent_in = os.pipe()
        parent_out, child_out = os.pipe()
        parent_err, child_err = os.pipe()
        exit_r, exit_w = os.pipe()
        #: The read end of the pipe the task writes its exit status to.
        self.exit_fd: int | None = exit_r
        try:
            self.pid = launcher.fork(
                args[len(launcher.entrypoint) :], env, [child_in, child_out, child_err, exit_w]
            )
        except BaseException:
            for fd in (parent_in, parent_out, parent_err, exit_r):
                os.close(fd)
            raise
        finally:
            for fd in (child_in, child_out, child_err, exit_w):
                os.close(fd)
        # The same file objects Popen makes for stdin/stdout/stderr=PIPE.
        self.stdin = open(parent_in, "wb", bufsize)  # noqa: SIM115
        self.stdout = open(parent_out, "rb", bufsize)  # noqa: SIM115
        self.stderr = open(parent_err, "rb", bufsize)  # noqa: SIM115

    def read_exit(self) -> int | None:
        """The status the task wrote, once its pipe is readable; ``None`` if
        it closed the pipe without one (then only R can tell)."""
        assert self.exit_fd is not None
        # One read: the status is one small write (atomic on a pipe), and a
        # process the task forked may hold the pipe open after the task ended.
        data = os.read(self.exit_fd, 16)
        self.close_exit()
        return int(data) if data else None

    def close_exit(self) -> None:
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._launcher.status(self, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._launcher.status(self, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            self._launcher.signal(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
