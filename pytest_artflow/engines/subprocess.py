"""The reference engine: Metaflow's own runtime in a child process, every task
a fresh interpreter, exactly as ``python flow.py run`` does it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from ..inflow import lifetime
from .base import Engine, EngineResult, RunJob

#: Seconds a run's keeper may take to end the run's processes.
KILL_TIMEOUT = 30.0


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and every process it started (they share its group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class SubprocessEngine(Engine):
    name = "subprocess"

    def run(self, job: RunJob) -> EngineResult:
        started = time.perf_counter()
        # The run's first process keeps the read end: at its end of file (this
        # process closed it, or died) it ends every process of the run.
        lifeline_r, lifeline_w = os.pipe()
        try:
            # A session of its own: Ctrl-C at the terminal reaches only pytest,
            # which then ends the run.
            proc = subprocess.Popen(
                job.command(sys.executable),
                env={**job.env, lifetime.LIFELINE_ENV: str(lifeline_r)},
                cwd=job.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(lifeline_r,),
            )
        except BaseException:
            os.close(lifeline_w)
            raise
        finally:
            os.close(lifeline_r)
        timed_out = False
        try:
            output, _ = proc.communicate(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            output = end_run(proc, lifeline_w)
        except BaseException:
            end_run(proc, lifeline_w, read=False)
            raise
        else:
            os.close(lifeline_w)
            # Tasks that outlived the runtime where no keeper ended them.
            kill_group(proc)
        return EngineResult(
            returncode=proc.returncode,
            output=output.decode("utf-8", "replace"),
            timed_out=timed_out,
            duration=time.perf_counter() - started,
        )


def end_run(proc: subprocess.Popen[bytes], lifeline: int, read: bool = True) -> bytes:
    """End every process of the run: closing ``lifeline`` has the run's keeper
    do it (``lifetime.keep_run``); its group is killed if it takes too long.
    What the run printed, if ``read``."""
    os.close(lifeline)
    output = b""
    ended = True
    try:
        if read:
            output, _ = proc.communicate(timeout=KILL_TIMEOUT)
        else:
            proc.wait(timeout=KILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        ended = False
    # What no keeper ended (it hung, or nothing is re-parented to it here).
    kill_group(proc)
    if read and not ended:
        output, _ = proc.communicate()
    return output
