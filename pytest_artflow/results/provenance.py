"""Failure messages that explain: when ``assert run["middle"].data.x == ...``
fails, say which step and artifact the value came from and show the artifact's
value at every step of the run.

``pytest_assertrepr_compare`` only sees the two values, so artifact reads are
remembered (the last few, per test) and the failing value is matched to its
read by identity.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from _pytest._io.saferepr import saferepr

if TYPE_CHECKING:
    from .model import FlowRun

_recent: deque[tuple[Any, FlowRun, str, str]] = deque(maxlen=64)


def remember(run: FlowRun, step: str, name: str, value: Any) -> None:
    _recent.append((value, run, step, name))


def forget() -> None:
    _recent.clear()


def _origin(value: Any) -> tuple[FlowRun, str, str] | None:
    for seen, run, step, name in reversed(_recent):
        if seen is value:
            return run, step, name
    return None


def trace_lines(run: FlowRun, name: str, mark: str | None = None) -> list[str]:
    """``name`` at every step of ``run``, one line a step, ``mark`` flagged."""
    trace = run.trace(name)
    width = max(map(len, trace), default=0)
    lines = [f"{name!r} at every step of {run.pathspec}:"]
    for step, value in trace.items():
        flag = "   <-- asserted" if step == mark else ""
        lines.append(f"  {step.ljust(width)}  {saferepr(value, maxsize=120)}{flag}")
    missing = [s for s in run.steps if s not in trace]
    if missing:
        lines.append(f"  (no {name!r} in: {', '.join(missing)})")
    return lines


def assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    if op not in ("==", "!="):
        return None
    for value, other in ((left, right), (right, left)):
        origin = _origin(value)
        if origin is None:
            continue
        run, step, name = origin
        lines = [
            f"artifact {name!r} of step {step!r}: {saferepr(left, maxsize=60)} {op} "
            f"{saferepr(right, maxsize=60)}",
        ]
        if op == "==":
            from ..compare import artifacts_equal, explain

            lines += explain(value, other)
            if artifacts_equal(value, other):
                lines += _not_consulted(step, name, other)
        return lines + trace_lines(run, name, mark=step)
    return None


def _not_consulted(step: str, name: str, expected: Any) -> list[str]:
    """``==`` failed where the plugin's artifact equality (the
    ``pytest_artflow_compare`` hooks, NaN equal to NaN...) says equal: the
    test meant the latter, and cannot know that ``==`` never asks it."""
    return [
        "pytest-artflow's artifact equality (pytest_artflow_compare hooks included) says "
        "these are equal, but == does not consult it; compare with",
        f"  pytest_artflow.assert_artifact(run, {f'{step}.{name}'!r}, "
        f"{saferepr(expected, maxsize=60)})",
    ]
