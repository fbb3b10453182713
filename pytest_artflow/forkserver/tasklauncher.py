"""What Metaflow's runtime, in the fork engine's run process, sees of a task.

The runtime starts each task with ``subprocess.Popen``. In the run process
that name is ``TaskLauncher.popen``: a task whose command is the launcher's and
whose environment is the run's (plus what the runtime adds, ``TASK_ENV_KEYS``)
is forked by the run's zygote instead, and handed back as a ``ForkedTask``
with the pipes and the methods the runtime uses; anything else starts as
``Popen`` would start it.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from typing import Any

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
        self.exited: dict[int, int] = {}

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
        send(self.sock, {"op": "fork", "args": args, "env": env}, fds)
        while True:
            message = self._receive()
            if message["op"] == "forked":
                return int(message["pid"])
            if message["op"] == "error":
                raise OSError(message["message"])

    def status(self, pid: int, timeout: float | None) -> int | None:
        """The exit status of ``pid``; ``None`` if it is still running after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.exited:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], wait)[0]:
                return None
            self._receive()
        return self.exited[pid]

    def signal(self, pid: int, signum: int) -> None:
        send(self.sock, {"op": "signal", "pid": pid, "signal": signum})

    def _receive(self) -> dict[str, Any]:
        message, _ = recv(self.sock)
        if message is None:
            raise RuntimeError("pytest-artflow: the run's zygote process is gone")
        if message["op"] == "exited":
            self.exited[message["pid"]] = message["code"]
        return message


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
        try:
            self.pid = launcher.fork(
                args[len(launcher.entrypoint) :], env, [child_in, child_out, child_err]
            )
        except BaseException:
            for fd in (parent_in, parent_out, parent_err):
                os.close(fd)
            raise
        finally:
            for fd in (child_in, child_out, child_err):
                os.close(fd)
        # The same file objects Popen makes for stdin/stdout/stderr=PIPE.
        self.stdin = open(parent_in, "wb", bufsize)  # noqa: SIM115
        self.stdout = open(parent_out, "rb", bufsize)  # noqa: SIM115
        self.stderr = open(parent_err, "rb", bufsize)  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._launcher.status(self.pid, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._launcher.status(self.pid, timeout)
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
