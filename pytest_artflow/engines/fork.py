"""The fast engine: Metaflow's own runtime and task code, with every process of
a run forked from a server that has already imported Metaflow, instead of a
new interpreter per task (see ``forkserver`` for the process tree).

This module is the pytest process's side: it starts a server, hands it jobs
and reads what they print. It imports nothing but the standard library, so
the pytest process gains no Metaflow state from a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections import OrderedDict
from typing import Any

from .. import timeline
from ..errors import ArtflowError, ForkServerError, MetaflowChangedWarning
from ..forkserver import markers, messages
from ..forkserver import server as forkserver
from .base import Engine, EngineResult, RunJob
from .subprocess import SubprocessEngine

#: Seconds a new server may take to import Metaflow.
STARTUP_TIMEOUT = 120.0
#: Seconds the server may take to confirm that a run's processes are gone.
KILL_TIMEOUT = 30.0


class ForkServer:
    """The pytest process's handle on one server process (S)."""

    def __init__(self, env: dict[str, str]) -> None:
        server_env, marked = markers.server_environ(env, uuid.uuid4().hex[:12])
        ours, theirs = socket.socketpair()
        self.sock = ours
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    forkserver.__name__,
                    str(theirs.fileno()),
                    json.dumps(sorted(marked)),
                ],
                env=server_env,
                # No Metaflow project config (.metaflow/config.json) above "/".
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=[theirs.fileno()],
                # Ctrl-C at a terminal reaches pytest only, which ends the runs.
                start_new_session=True,
            )
        finally:
            theirs.close()
        try:
            ready = self._expect("ready", time.monotonic() + STARTUP_TIMEOUT)
        except BaseException:
            self.close()
            raise
        self.pid: int = ready["pid"]
        #: Why this server cannot fork runs (then every run is refused).
        self.unpatchable: list[str] = ready["unpatchable"]

    def run(self, job: RunJob) -> EngineResult:
        """Run ``job``; ``extra["refused"]`` says why, if the run's zygote would not
        (see ``Zygote.enter``): then nothing of the run has started."""
        timeline.mark("run.requested")
        out_r, out_w = os.pipe()
        status_r, status_w = os.pipe()
        started = time.perf_counter()
        try:
            messages.send(
                self.sock,
                {
                    "op": "run",
                    "job": {
                        "flow_file": str(job.flow_file),
                        "class_name": job.class_name,
                        "args": list(job.args),
                        "env": dict(job.env),
                        "cwd": str(job.cwd),
                    },
                },
                [out_w, status_w],
            )
        finally:
            os.close(out_w)
            os.close(status_w)
        try:
            return self._follow(job, out_r, status_r, started)
        finally:
            timeline.mark("run.ended")
            os.close(out_r)
            os.close(status_r)

    def _follow(self, job: RunJob, out_r: int, status_r: int, started: float) -> EngineResult:
        """Collect the run's output until its zygote has exited: it says so
        itself (its status pipe, once every other process of the run is
        gone), or the server does when it dies without saying (killed, a
        timeout), whose word then counts."""
        pid = self._expect("started", time.monotonic() + KILL_TIMEOUT)["pid"]
        deadline = None if job.timeout is None else started + job.timeout
        output: list[bytes] = []
        status: list[bytes] = []
        code: int | None = None
        timed_out = False
        with selectors.DefaultSelector() as selector:
            selector.register(out_r, selectors.EVENT_READ, output)
            selector.register(status_r, selectors.EVENT_READ, status)
            selector.register(self.sock, selectors.EVENT_READ)
            try:
                # Until the run's zygote has exited and both pipes are closed.
                while code is None or len(selector.get_map()) > 1:
                    now = time.perf_counter()
                    if deadline is not None and now >= deadline:
                        if timed_out:
                            raise ForkServerError(
                                f"the fork server did not end a timed-out run in {KILL_TIMEOUT} s"
                            )
                        timed_out = True
                        self._kill(pid)
                        deadline = now + KILL_TIMEOUT
                        continue
                    wait = None if deadline is None else deadline - now
                    for key, _ in selector.select(wait):
                        if key.fileobj is self.sock:
                            code = self._exited(pid, code)
                            continue
                        chunk = os.read(key.fd, 1 << 16)
                        if chunk:
                            key.data.append(chunk)
                        else:
                            selector.unregister(key.fd)
                            if key.data is status and code is None:
                                # The zygote's own word, when it could say.
                                code = _said(status).get("exit")
            except BaseException:
                # Ctrl-C, or the server died: no process of the run may outlive it.
                self._kill(pid)
                self._wait_gone(pid, code)
                raise
        text = b"".join(output).decode("utf-8", "replace")
        if not status and not timed_out:
            # The zygote died before it could say: a bug, not the flow's doing.
            raise ForkServerError(f"the fork server's run process ended early:\n{text[-3000:]}")
        said = _said(status)
        timeline.mark("engine.exited", str(code))
        return EngineResult(
            returncode=code,
            output=text,
            timed_out=timed_out,
            duration=time.perf_counter() - started,
            extra={
                "engine": "fork",
                "server": self.pid,
                # The run's zygote (the server's spare, when it had one).
                "zygote": pid,
                # Why the run was not forked (then nothing of it started here).
                "refused": said.get("refused"),
                # "forked", or why the tasks were started as new interpreters.
                "tasks": said.get("tasks"),
            },
        )

    def _exited(self, pid: int, code: int | None) -> int | None:
        message, _ = messages.recv(self.sock)
        if message is None:
            raise ForkServerError(f"the fork server died{self._stderr_tail()}")
        if message["op"] == "exited" and message["pid"] == pid:
            exited = message["code"]
            return None if exited is None else int(exited)
        return code

    def _kill(self, pid: int) -> None:
        try:
            messages.send(self.sock, {"op": "kill", "pid": pid})
        except OSError:
            # No server to ask: kill the run's group directly.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def _wait_gone(self, pid: int, code: int | None) -> None:
        deadline = time.monotonic() + KILL_TIMEOUT
        try:
            while code is None and _readable(self.sock, deadline):
                code = self._exited(pid, code)
        except (OSError, ForkServerError):
            pass

    def _expect(self, op: str, deadline: float) -> dict[str, Any]:
        while True:
            if not _readable(self.sock, deadline):
                raise ForkServerError(f"the fork server did not answer ({op!r})")
            message, _ = messages.recv(self.sock)
            if message is None:
                raise ForkServerError(f"the fork server exited{self._stderr_tail()}")
            if message["op"] == "failed":
                raise ForkServerError(f"the fork server could not start:\n{message['error']}")
            if message["op"] == op:
                return message

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            _, err = self.proc.communicate(timeout=KILL_TIMEOUT)
        except (subprocess.TimeoutExpired, ValueError):
            return ""
        text = (err or b"").decode("utf-8", "replace").strip()
        return f" (exit status {self.proc.returncode}):\n{text[-3000:]}" if text else ""

    def close(self) -> None:
        """Stop the server; it kills what is left of its runs first."""
        with contextlib.suppress(OSError):
            messages.send(self.sock, {"op": "stop"})
        self.sock.close()
        try:
            self.proc.communicate(timeout=KILL_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def _said(status: list[bytes]) -> dict[str, Any]:
    """What the run's zygote said on its status pipe: one JSON object a line
    (``Zygote.report``), the last one its exit status (``Zygote.finish``)
    unless it died first."""
    said: dict[str, Any] = {}
    for line in b"".join(status).splitlines():
        # A line is one write, well under the pipe's atomic size: never torn.
        said.update(json.loads(line))
    return said


def _readable(sock: socket.socket, deadline: float) -> list[Any]:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return selector.select(max(0.0, deadline - time.monotonic()))


class ForkEngine(Engine):
    """Runs flows through fork servers; a run the server cannot reproduce
    faithfully (a Metaflow config file applies to it) goes to ``subprocess``."""

    name = "fork"
    #: Servers kept at once (runs whose environments differ in more than their
    #: sandbox need a server of their own; the least recently used one goes).
    max_servers = 2

    def __init__(self) -> None:
        if not hasattr(os, "fork"):
            raise ArtflowError("the fork engine needs os.fork; use --artflow-engine=subprocess")
        self._servers: OrderedDict[tuple[Any, ...], ForkServer] = OrderedDict()
        self._fallback = SubprocessEngine()
        #: What Metaflow changed that this engine needs (``None``: not checked yet).
        self._metaflow_changed: list[str] | None = None

    def run(self, job: RunJob) -> EngineResult:
        changed = self._check_metaflow()
        if changed:
            result = self._fallback.run(job)
            result.extra.update(
                engine="subprocess", refused="Metaflow changed: " + "; ".join(changed)
            )
            return result
        key = markers.server_key(job.env)
        server = self._servers.get(key)
        if server is None or server.proc.poll() is not None:
            if server is not None:
                self._discard(key)
            server = ForkServer(job.env)
            self._servers[key] = server
            while len(self._servers) > self.max_servers:
                self._discard(next(iter(self._servers)))
        self._servers.move_to_end(key)
        try:
            result = server.run(job)
        except ForkServerError:
            self._discard(key)
            raise
        refused = result.extra.get("refused")
        if refused:
            result = self._fallback.run(job)
            result.extra.update(engine="subprocess", refused=refused)
        return result

    def _check_metaflow(self) -> list[str]:
        """What the fork engine needs and the installed Metaflow lacks, checked
        once per engine (a session has one); the first run that finds a change
        warns, naming it, and every run goes to the subprocess engine, which
        needs nothing of Metaflow's insides."""
        if self._metaflow_changed is None:
            from .. import metaflow_seam

            self._metaflow_changed = metaflow_seam.fork_engine_problems()
            if self._metaflow_changed:
                warnings.warn(
                    MetaflowChangedWarning(
                        f"Metaflow {metaflow_seam.metaflow_version()} (pytest-artflow was "
                        f"tested with {', '.join(metaflow_seam.TESTED_VERSIONS)}) changed what "
                        "the fork engine needs: "
                        + "; ".join(self._metaflow_changed)
                        + "; runs use the subprocess engine instead"
                    ),
                    stacklevel=2,
                )
        return self._metaflow_changed

    def _discard(self, key: tuple[Any, ...]) -> None:
        self._servers.pop(key).close()

    def close(self) -> None:
        while self._servers:
            self._discard(next(iter(self._servers)))
