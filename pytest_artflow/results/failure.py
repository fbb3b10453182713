"""Failure analysis: which task of a run failed and why, told in one message
that names the step, the task and the exception."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ..metaflow_seam import TASK_ENDS, TASK_STARTS, UNPICKLABLE_PREFIX
from .model import Failure, FlowRun, StepResult, TaskResult

if TYPE_CHECKING:
    from ..runner import RunConfig


def read_failure(run: FlowRun, *, load: bool = True) -> Failure | None:
    """The first task (in graph order) whose results could not be read back;
    with ``load=False``, as far as is known without loading more values."""
    return run._read_failure(load=load)


def _blame_worker(run: FlowRun, failure: Failure) -> Failure:
    """A control task of an unbounded foreach fails when one of its workers
    does (``Subprocess failed, return code 1``); the worker's own exception is
    the one that says why."""
    control = next((t for t in run.tasks if t.pathspec == failure.task and t.control), None)
    if control is None:
        return failure
    workers = [t for t in run[control.step].tasks if not t.control and not t.successful]
    if not workers:
        return failure
    step = StepResult(control.step, workers)
    return find_failure(FlowRun(run.flow_name, run.run_id, False, {step.name: step})) or failure


def find_failure(run: FlowRun) -> Failure | None:
    """The first task in graph order that failed; if every task finished, the
    last one whose exception ``@catch`` caught (the end step's, when that is
    why the run is not successful), described as caught."""
    caught: TaskResult | None = None
    for task in run.tasks:
        if task.successful:
            continue
        if task.caught is not None:
            caught = task
            continue
        exc = task.exception
        if exc is not None and getattr(exc, "type", None):
            exc_type = exc.type.removeprefix("builtins.")
            return Failure(
                step=task.step,
                task=task.pathspec,
                exception_type=exc_type,
                message=exc.exception,
                traceback=user_traceback(exc.stacktrace or ""),
                stdout=task.stdout,
                stderr=task.stderr,
            )
        unpicklable = _line_starting(task.stderr, UNPICKLABLE_PREFIX)
        if unpicklable:
            return Failure(
                step=task.step,
                task=task.pathspec,
                exception_type="UnpicklableArtifactException",
                message=unpicklable,
                stdout=task.stdout,
                stderr=task.stderr,
            )
        return Failure(
            step=task.step,
            task=task.pathspec,
            exception_type=None,
            message=_last_line(task.stderr) or "the task ended without reporting an exception",
            stdout=task.stdout,
            stderr=task.stderr,
        )
    if caught is not None and caught.caught is not None:
        return Failure(
            step=caught.step,
            task=caught.pathspec,
            exception_type=caught.caught.type,
            message=caught.caught.message,
            traceback=caught.caught.traceback,
            stdout=caught.stdout,
            stderr=caught.stderr,
            caught=True,
        )
    return None


_MISSING_FILE = re.compile(r"No such file or directory: (['\"])(.+?)\1")


def missing_file_hint(failure: Failure) -> str | None:
    """One line for a step that could not find a file by a relative path.

    Under ``python flow.py run`` the working directory is wherever the user
    started it, usually beside the flow; artflow's runs start in the sandbox,
    so a path relative to the flow's directory is looked for there instead.
    """
    if failure.exception_type != "FileNotFoundError":
        return None
    match = _MISSING_FILE.search(failure.message)
    if match is None or os.path.isabs(match.group(2)):
        return None
    name = match.group(2)
    return (
        f"hint: steps run with the sandbox as their working directory, so {name!r} is looked "
        "for there; refer to a file beside the flow as "
        f"os.path.join(os.path.dirname(__file__), {name!r})"
    )


def user_traceback(text: str) -> str:
    """A step's traceback without the frames of Metaflow's own task machinery."""
    lines = text.splitlines()
    out: list[str] = []
    skip = False
    for line in lines:
        if line.startswith("  File "):
            skip = "/metaflow/" in line
        elif not line.startswith(" "):
            skip = False  # "Traceback ..." and the exception line itself
        if not skip:
            out.append(line)
    return "\n".join(out)


def _line_starting(text: str, prefix: str) -> str | None:
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line.strip()
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def start_failure(config: RunConfig, output: str, timed_out: bool) -> str:
    """The run never started: Metaflow's own words for why, without its banner."""
    if timed_out:
        return f"{config.flow.name} did not start within {config.timeout} s"
    noise = ("Metaflow ", "Validating your flow", "    The graph looks good", "Usage:", "Try '")
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith(noise)]
    detail = "\n".join(line.strip() for line in lines[-12:]) or "(no output)"
    return f"{config.flow.name} ({config.flow.file}) could not start:\n{detail}"


def timeout_failure(run: FlowRun, timeout: float | None) -> Any:
    from ..inflow import lifetime

    hung = [t for t in run.tasks if not t.finished]
    # A task that ended while a process it started still holds its output
    # open: Metaflow's runtime waits for that to close before it goes on.
    held = [] if hung else [t for t in run.tasks if output_still_open(t.pathspec, run.output)]
    if hung:
        where = "while running " + ", ".join(f"step {t.step!r} ({t.pathspec})" for t in hung)
    elif held:
        where = "while waiting for " + ", ".join(
            f"step {t.step!r} ({t.pathspec}), which had finished, to close its output "
            "(a process it started holds it open)"
            for t in held
        )
    else:
        where = "while running between steps"
    if lifetime.owns_descendants():
        killed = "every process was killed"
    else:
        killed = (
            "the run's process group was killed (processes a step started in a session "
            "of their own are not tracked on this platform)"
        )
    stuck = hung or held
    first = stuck[0] if stuck else None
    return Failure(
        step=first.step if first else None,
        task=first.pathspec if first else None,
        exception_type="Timeout",
        message=f"timed out after {timeout} s {where}; {killed}",
        stdout=first.stdout if first else "",
        stderr=first.stderr if first else "",
    )


#: What Metaflow's runtime logs for a task as it starts it, and once it has
#: seen the task's process end and its output close.


def output_still_open(pathspec: str, output: str) -> bool:
    """Whether Metaflow's runtime started the task but, by its log in
    ``output``, never saw it end: it sees the end only once the task's stdout
    and stderr are closed, by the task and by every process that inherited them."""
    prefix = f"[{pathspec.split('/', 1)[-1]} (pid "
    open_ = False
    for line in output.splitlines():
        at = line.find(prefix)
        if at < 0:
            continue
        said = line[line.find("] ", at) + 2 :]
        if said.startswith(TASK_STARTS):
            open_ = True
        elif said.startswith(TASK_ENDS):
            open_ = False
    return open_


def _tail(text: str, n: int = 20) -> str:
    lines = text.rstrip().splitlines()
    cut = lines[-n:]
    head = f"  ... ({len(lines) - n} earlier lines)\n" if len(lines) > n else ""
    return head + "\n".join(f"  {line}" for line in cut)


def describe_failure(run: FlowRun) -> str:
    failure = run.failure
    if failure is None:
        return f"{run.pathspec} failed:\n{_tail(run.output)}"
    where = f" in step {failure.step!r} (task {failure.task})" if failure.step else ""
    what = (
        f"{failure.exception_type}: {failure.message}"
        if failure.exception_type
        else failure.message
    )
    if failure.caught:
        parts = [f"{run.pathspec} is not successful: @catch caught{where}: {what}"]
    else:
        parts = [f"{run.pathspec} failed{where}: {what}"]
    hint = missing_file_hint(failure)
    if hint:
        parts.append(hint)
    if failure.traceback:
        parts.append("traceback:\n" + _tail(failure.traceback, 40))
    if failure.stdout.strip():
        parts.append(f"stdout of {failure.step}:\n" + _tail(failure.stdout))
    if failure.stderr.strip() and not failure.traceback:
        parts.append(f"stderr of {failure.step}:\n" + _tail(failure.stderr))
    if not failure.exception_type and failure.task and not failure.caught:
        # No exception recorded (killed, os._exit, crash): what the runtime saw.
        task_path = failure.task.split("/", 1)[-1]
        seen = [line for line in run.output.splitlines() if f"[{task_path} " in line]
        parts.append("Metaflow's log of the task:\n" + _tail("\n".join(seen) or run.output))
    return "\n".join(parts)
