"""Where a run's time goes: timestamped marks from every process of a run.

Off unless asked for: with ``PYTEST_ARTFLOW_TIMELINE`` set to a file in the
pytest process's environment, each run's processes append one line per mark
to it (``<monotonic ns> <pid> <phase> <detail>``, the phase one word such
as ``task.forked``). ``CLOCK_MONOTONIC`` is one
clock for every process of a machine, so marks from the pytest process, the
fork server, a run's zygote, its run process and its tasks line up. The file
is opened once per process with ``O_APPEND`` and inherited across forks; a
line is a single ``write``, so lines of different processes never interleave.

``benchmarks/bench_engines.py --profile`` reads the marks back and prints the
budget of a run, phase by phase (``budget``, ``format_budget``).

This module imports only the standard library: every process of a run may
load it, and a mark that is off costs one global lookup.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

#: The pytest process's environment variable naming the file to append to.
ENV = "PYTEST_ARTFLOW_TIMELINE"

_fd: int | None = None


def requested(environ: Mapping[str, str] | None = None) -> str | None:
    """The file marks go to by ``environ`` (the pytest process's, or a run's
    inheriting it; default: this process's), if any."""
    return (os.environ if environ is None else environ).get(ENV) or None


def start(path: str | None) -> None:
    """Write this process's marks (and its forks') to ``path``; ``None``: stop."""
    global _fd
    if _fd is not None:
        os.close(_fd)
        _fd = None
    if path:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


def mark(phase: str, detail: str = "") -> None:
    """Note that ``phase`` happens now in this process (a no-op when off)."""
    if _fd is not None:
        line = f"{time.monotonic_ns()} {os.getpid()} {phase} {detail}".rstrip() + "\n"
        with contextlib.suppress(OSError):
            os.write(_fd, line.encode())


@dataclass(frozen=True)
class Mark:
    ns: int
    pid: int
    phase: str
    detail: str


def read(path: str) -> list[Mark]:
    """The marks in ``path``, in time order."""
    return sorted(_parse(path), key=lambda m: m.ns)


def _parse(path: str) -> Iterator[Mark]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            ns, pid, phase, *detail = line.rstrip("\n").split(" ", 3)
            yield Mark(int(ns), int(pid), phase, detail[0] if detail else "")


# -- the budget of a run, from its marks (read in the benchmark, not in a run) --

#: A process's role, from the phases it marks (the first rule that matches):
#: a task marks ``task.start``/``task.exit`` itself (``task.requested`` and
#: the like are marked by the processes that start it), the zygote
#: ``zygote.*``, pytest ``run.requested`` and the reading of results, the run
#: process ``main.*``, the server ``server.*``.
ROLE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("task", ("task.start", "task.exit")),
    ("zygote", ("zygote.",)),
    ("pytest", ("run.requested", "results.", "read.")),
    ("main", ("main.",)),
    ("server", ("server.",)),
)
#: Where a run begins: time 0 of its budget.
RUN_START = "run.requested"


def roles(marks: list[Mark]) -> dict[int, str]:
    """Each process's role (``ROLE_RULES``; ``"other"`` if none applies)."""
    phases: dict[int, set[str]] = {}
    for m in marks:
        phases.setdefault(m.pid, set()).add(m.phase)
    return {pid: _role(names) for pid, names in phases.items()}


def _role(phases: set[str]) -> str:
    for role, patterns in ROLE_RULES:
        for pattern in patterns:
            if any(
                p == pattern or (pattern.endswith(".") and p.startswith(pattern)) for p in phases
            ):
                return role
    return "other"


def split_runs(marks: list[Mark]) -> list[list[Mark]]:
    """The marks of each run, for runs made one after another: a run begins
    at a ``run.requested`` mark (what comes before the first belongs to it)."""
    runs: list[list[Mark]] = []
    for m in sorted(marks, key=lambda m: m.ns):
        if m.phase == RUN_START and runs and any(x.phase == RUN_START for x in runs[-1]):
            runs.append([])
        if not runs:
            runs.append([])
        runs[-1].append(m)
    return runs


@dataclass
class Budget:
    """Where one run's time went, in milliseconds.

    ``milestones``: the first mark of each phase and the last of a phase
    marked more than once (``"task.exit (last)"``), by label, as ``(role,
    ms since the run began)``. ``cycle``: the median over the run's tasks
    of each task-related phase, as ms from that task's ``task.start``
    (marks before it: fork requests and the like) or from its ``task.exit``
    (marks after it, label ending in ``after exit``), plus ``start to next
    start`` and ``exit to next start`` (negative: tasks overlapped)."""

    milestones: dict[str, tuple[str, float]]
    cycle: dict[str, tuple[str, float]]
    tasks: int
    total: float


def budget(marks: list[Mark]) -> Budget:
    """The budget of one run from its marks (any phases: what is not known
    is placed by its time and its process's role)."""
    import statistics

    marks = sorted(marks, key=lambda m: m.ns)
    if not marks:
        return Budget({}, {}, 0, 0.0)
    role = roles(marks)
    zero = next((m.ns for m in marks if m.phase == RUN_START), marks[0].ns)

    def ms(ns: int) -> float:
        return (ns - zero) / 1e6

    first: dict[str, Mark] = {}
    last: dict[str, Mark] = {}
    count: dict[str, int] = {}
    for m in marks:
        first.setdefault(m.phase, m)
        last[m.phase] = m
        count[m.phase] = count.get(m.phase, 0) + 1
    milestones = {p: (role[m.pid], ms(m.ns)) for p, m in first.items()}
    milestones.update(
        {f"{p} (last)": (role[m.pid], ms(m.ns)) for p, m in last.items() if count[p] > 1}
    )

    # The tasks: each task process's first and last mark (task.start, task.exit).
    task_marks: dict[int, list[Mark]] = {}
    for m in marks:
        if role[m.pid] == "task":
            task_marks.setdefault(m.pid, []).append(m)
    tasks = sorted(task_marks.items(), key=lambda t: t[1][0].ns)
    # A task without a task.exit mark has no known end.
    spans = [
        (pid, _at(ms_, "task.start", ms_[0].ns), _at(ms_, "task.exit", None)) for pid, ms_ in tasks
    ]
    samples: dict[str, tuple[str, list[float]]] = {}

    def sample(label: str, where: str, value_ns: int) -> None:
        samples.setdefault(label, (where, []))[1].append(value_ns / 1e6)

    for pid, start, _ in spans:
        for m in task_marks[pid]:
            sample(m.phase, "task", m.ns - start)
    # Task phases marked elsewhere (by the run process, the zygote): paired
    # with tasks by pid when the detail names one, else in order (the n-th
    # such mark of a process role with the n-th task).
    elsewhere: dict[tuple[str, str], list[Mark]] = {}
    for m in marks:
        if role[m.pid] != "task" and m.phase.startswith("task."):
            elsewhere.setdefault((m.phase, role[m.pid]), []).append(m)
    by_pid = {str(pid): (start, end) for pid, start, end in spans}
    for (phase, where), found in elsewhere.items():
        label = phase if sum(p == phase for p, _ in elsewhere) == 1 else f"{phase} in {where}"
        named = [(m, _named_task(m, by_pid)) for m in found]
        if all(span is not None for _, span in named):
            pairs = [(m, span) for m, span in named if span is not None]
        else:
            pairs = [(m, (start, end)) for m, (_, start, end) in zip(found, spans, strict=False)]
        for m, (start, end) in pairs:
            if end is not None and m.ns > end:
                sample(f"{label} after exit", where, m.ns - end)
            else:
                sample(label, where, m.ns - start)
    for (_, start, end), (_, following, _) in itertools.pairwise(spans):
        sample("start to next start", "task", following - start)
        if end is not None:
            sample("exit to next start", "task", following - end)
    cycle = {k: (where, statistics.median(v)) for k, (where, v) in samples.items()}
    return Budget(milestones, cycle, len(tasks), ms(marks[-1].ns))


def _named_task(m: Mark, spans: dict[str, tuple[int, int | None]]) -> tuple[int, int | None] | None:
    """The task whose pid ``m``'s detail names (``123`` or ``pid=123``), if any."""
    for token in m.detail.replace("=", " ").split():
        if token in spans:
            return spans[token]
    return None


T = TypeVar("T")


def _at(marks: list[Mark], phase: str, default: T) -> int | T:
    """When ``phase`` was first marked among ``marks``, else ``default``."""
    return next((m.ns for m in marks if m.phase == phase), default)


def median_budget(budgets: list[Budget]) -> Budget:
    """Each figure's median over ``budgets`` (those that have it)."""
    import statistics

    def merge(parts: list[dict[str, tuple[str, float]]]) -> dict[str, tuple[str, float]]:
        values: dict[str, tuple[str, list[float]]] = {}
        for part in parts:
            for label, (where, value) in part.items():
                values.setdefault(label, (where, []))[1].append(value)
        merged = {k: (where, statistics.median(v)) for k, (where, v) in values.items()}
        return dict(sorted(merged.items(), key=lambda kv: kv[1][1]))

    if not budgets:
        return Budget({}, {}, 0, 0.0)
    return Budget(
        merge([b.milestones for b in budgets]),
        merge([b.cycle for b in budgets]),
        round(statistics.median(b.tasks for b in budgets)),
        statistics.median(b.total for b in budgets),
    )


def format_budget(b: Budget) -> list[str]:
    """``b`` as lines of text: milestones in time order with the step from
    the one before, then the task cycle."""
    lines = [f"  {'phase':<34}{'process':<9}{'at ms':>9}{'+ms':>8}"]
    before = 0.0
    for label, (where, at) in sorted(b.milestones.items(), key=lambda kv: kv[1][1]):
        lines.append(f"  {label:<34}{where:<9}{at:9.1f}{at - before:8.1f}")
        before = at
    if b.cycle:
        lines.append(
            f"  per task ({b.tasks} tasks; ms from the task's task.start, "
            "or from its task.exit for 'after exit'):"
        )
        for label, (where, value) in sorted(b.cycle.items(), key=lambda kv: _cycle_order(kv)):
            lines.append(f"    {label:<32}{where:<9}{value:9.1f}")
    return lines


def _cycle_order(item: tuple[str, tuple[str, float]]) -> tuple[int, float]:
    label, (_, value) = item
    group = 2 if "next start" in label else 1 if label.endswith("after exit") else 0
    return group, value
