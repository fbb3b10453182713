"""``assert_artifact``: compare an artifact with the plugin's artifact equality.

A plain ``assert value == expected`` asks the value's ``__eq__``; the
``pytest_artflow_compare`` hook and the strict rules of ``compare.py`` (NaN
equals NaN, ``1 != 1.0``) are never consulted. This helper asks them, and says
where the values differ and what the artifact was at every step.
"""

from __future__ import annotations

from typing import Any

from _pytest._io.saferepr import saferepr

from .compare import artifacts_equal, explain
from .errors import ArtflowError
from .results import FlowRun, TaskResult
from .results.provenance import trace_lines

__all__ = ["assert_artifact"]


def assert_artifact(run: FlowRun | TaskResult, artifact: str, expected: Any) -> None:
    """Assert that ``run``'s artifact ``"step.name"`` equals ``expected``.

    ``run`` is a ``FlowRun`` (``artifact`` is ``"step.name"``; a step with
    several tasks is compared as the list of their values, as in
    ``run.trace()``) or a ``TaskResult`` (``artifact`` is the name).
    """
    __tracebackhide__ = True
    if isinstance(run, TaskResult):
        step, name, flow_run = run.step, artifact, run.run
        tasks = [run]
        owner = f"task {run.pathspec}"
    elif isinstance(run, FlowRun):
        step, dot, name = artifact.partition(".")
        if not dot or not step or not name:
            raise ArtflowError(
                f"assert_artifact: name the artifact as 'step.artifact', not {artifact!r}"
            )
        flow_run, tasks = run, run[step].tasks
        owner = f"step {step!r} of {run.pathspec}"
    else:
        raise ArtflowError(
            f"assert_artifact: expected a FlowRun or TaskResult, got {type(run).__name__}"
        )

    values = [value for t in tasks for value in _value(t, name)]
    if not values:
        known = sorted({a for t in tasks for a in t.artifacts}) or ["none"]
        lines = [f"{owner} has no artifact {name!r} (its artifacts: {', '.join(known)})"]
        if flow_run is not None:
            lines += trace_lines(flow_run, name, mark=step)
        raise AssertionError("\n".join(lines))
    actual = values[0] if len(tasks) == 1 else values
    if artifacts_equal(actual, expected):
        return
    lines = [
        f"artifact {name!r} of {owner} differs from the expected value",
        f"  expected: {saferepr(expected, maxsize=240)}",
        f"  actual:   {saferepr(actual, maxsize=240)}",
        "where (left: actual, right: expected):",
        *(f"  {line}" for line in explain(actual, expected)),
    ]
    if flow_run is not None:
        lines += trace_lines(flow_run, name, mark=step)
    raise AssertionError("\n".join(lines))


def _value(task: TaskResult, name: str) -> list[Any]:
    """``[value]`` of the task's artifact ``name`` (loading only it), or
    ``[]`` if it has none that loads."""
    try:
        return [task._value(name)]
    except KeyError:  # ArtifactReadError too: the artifact is not there to compare
        return []
