"""The reference engine: Metaflow's own runtime in a child process, every task
a fresh interpreter, exactly as ``python flow.py run`` does it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from .base import Engine, EngineResult, RunJob


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and every process it started (they share its group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class SubprocessEngine(Engine):
    name = "subprocess"

    def run(self, job: RunJob) -> EngineResult:
        started = time.perf_counter()
        # A session of its own: Ctrl-C at the terminal reaches only pytest, which
        # then kills the whole group, tasks included.
        proc = subprocess.Popen(
            job.command(sys.executable),
            env=job.env,
            cwd=job.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            output, _ = proc.communicate(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc)
            output, _ = proc.communicate()
        except BaseException:
            kill_group(proc)
            raise
        else:
            # Tasks that outlived the runtime (a step that forked a daemon).
            kill_group(proc)
        return EngineResult(
            returncode=proc.returncode,
            output=output.decode("utf-8", "replace"),
            timed_out=timed_out,
            duration=time.perf_counter() - started,
        )
