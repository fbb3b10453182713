"""What ``pytest --artflow`` tells people about each flow: the summary line,
per-step timings, the JUnit properties and the lines that open a kept sandbox.

A flow item's outcome travels as ``user_properties`` (plain strings): that is
what pytest-xdist ships from workers to the controller and what
``--junitxml`` writes as ``<property>`` elements, so the terminal summary, CI
systems and this module all read the same record.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from metaflow import Run

PREFIX = "artflow_"
_STEP = PREFIX + "step:"
_CAUGHT = PREFIX + "caught:"
_STEP_VALUE = re.compile(r"(?P<status>\w+), (?P<tasks>\d+) tasks?, (?P<seconds>[\d.]+|\?) s")
_ATTEMPTS = PREFIX + "attempts:"
_ATTEMPTS_VALUE = re.compile(r"(?P<retried>\d+) tasks?, (?P<attempts>\d+) attempts")


@dataclass
class StepSummary:
    """One step of a run: how many tasks it had and how long they took."""

    name: str
    tasks: int
    #: Wall time from the first task's start to the last one's end (Metaflow's
    #: metadata); ``None`` when a task never finished.
    seconds: float | None
    #: "passed"; "failed"; or "caught": a task failed and the run went on (@catch).
    status: str
    #: (task id, what it caught) for each task whose exception @catch caught.
    caught: list[tuple[str, str]] = field(default_factory=list)
    #: Tasks that took more than one attempt (@retry), and the most attempts
    #: any task took: a step that passes only on a retry is flaky, say so.
    retried: int = 0
    attempts: int = 1

    def value(self) -> str:
        seconds = "?" if self.seconds is None else f"{self.seconds:.3f}"
        plural = "" if self.tasks == 1 else "s"
        return f"{self.status}, {self.tasks} task{plural}, {seconds} s"

    def attempts_value(self) -> str:
        plural = "" if self.retried == 1 else "s"
        return f"{self.retried} task{plural}, {self.attempts} attempts"

    def retries(self) -> str:
        """``"1 task passed after 2 attempts"``; empty when no task was retried."""
        if not self.retried:
            return ""
        plural = "" if self.retried == 1 else "s"
        up_to = "" if self.retried == 1 else "up to "
        return f"{self.retried} task{plural} {self.status} after {up_to}{self.attempts} attempts"


@dataclass
class FlowSummary:
    """A flow item's outcome, as far as the report is concerned."""

    flow: str
    run: str | None = None
    steps: list[StepSummary] = field(default_factory=list)
    #: Number of steps in the flow's graph (some may not have run).
    graph_steps: int = 0
    duration: float = 0.0
    failed_step: str | None = None
    #: ``"@batch on start"``: decorators removed so the step ran here.
    run_locally: list[str] = field(default_factory=list)
    sandbox: str | None = None
    #: ``--artflow-snapshot``: "matched", "written", "updated", "missing" or
    #: "changed: <step.artifact> ...".
    snapshot: str | None = None

    def note_caught(self, step: str, task_id: str, exception: str, var: str | None) -> None:
        """Record what ``@catch`` caught in a task of ``step``, on one line
        (the first of the exception's text) as a property value must be."""
        lines = [line.strip() for line in exception.splitlines() if line.strip()]
        text = lines[0] if lines else "?"
        if len(text) > 200:
            text = text[:199] + "…"
        if var:
            text += f" (in artifact {var!r})"
        for summary in self.steps:
            if summary.name == step:
                summary.caught.append((task_id, text))

    def fail(self, step: str) -> None:
        """Mark ``step`` as the one that failed the flow."""
        self.failed_step = step
        for summary in self.steps:
            if summary.name == step:
                summary.status = "failed"

    @property
    def tasks(self) -> int:
        return sum(s.tasks for s in self.steps)

    def properties(self) -> list[tuple[str, object]]:
        """``(name, value)`` pairs for ``item.user_properties``."""
        props: list[tuple[str, object]] = [
            (PREFIX + "flow", self.flow),
            (PREFIX + "steps", " ".join(s.name for s in self.steps)),
            (PREFIX + "graph_steps", self.graph_steps),
            (PREFIX + "tasks", self.tasks),
            (PREFIX + "duration_s", f"{self.duration:.3f}"),
        ]
        if self.run:
            props.append((PREFIX + "run", self.run))
        props += [(_STEP + s.name, s.value()) for s in self.steps]
        props += [
            (f"{_CAUGHT}{s.name}/{task}", what) for s in self.steps for task, what in s.caught
        ]
        props += [(_ATTEMPTS + s.name, s.attempts_value()) for s in self.steps if s.retried]
        if self.failed_step:
            props.append((PREFIX + "failed_step", self.failed_step))
        if self.run_locally:
            props.append((PREFIX + "run_locally", "; ".join(self.run_locally)))
        if self.sandbox:
            props.append((PREFIX + "sandbox", self.sandbox))
        if self.snapshot:
            props.append((PREFIX + "snapshot", self.snapshot))
        return props

    @classmethod
    def from_properties(cls, props: Iterable[tuple[str, object]]) -> FlowSummary | None:
        """The summary recorded by ``properties``, or ``None`` for other tests."""
        values = {name: str(value) for name, value in props if name.startswith(PREFIX)}
        if PREFIX + "flow" not in values:
            return None
        steps = []
        for name in values.get(PREFIX + "steps", "").split():
            match = _STEP_VALUE.fullmatch(values.get(_STEP + name, ""))
            if match is None:
                continue
            seconds = match["seconds"]
            retries = _ATTEMPTS_VALUE.fullmatch(values.get(_ATTEMPTS + name, ""))
            steps.append(
                StepSummary(
                    name=name,
                    tasks=int(match["tasks"]),
                    seconds=None if seconds == "?" else float(seconds),
                    status=match["status"],
                    retried=int(retries["retried"]) if retries else 0,
                    attempts=int(retries["attempts"]) if retries else 1,
                )
            )
        by_name = {s.name: s for s in steps}
        for name, value in values.items():
            if name.startswith(_CAUGHT):
                step, _, task = name.removeprefix(_CAUGHT).rpartition("/")
                if step in by_name:
                    by_name[step].caught.append((task, value))
        run_locally = values.get(PREFIX + "run_locally", "")
        return cls(
            flow=values[PREFIX + "flow"],
            run=values.get(PREFIX + "run"),
            steps=steps,
            graph_steps=int(values.get(PREFIX + "graph_steps", len(steps))),
            duration=float(values.get(PREFIX + "duration_s", 0.0)),
            failed_step=values.get(PREFIX + "failed_step"),
            run_locally=run_locally.split("; ") if run_locally else [],
            sandbox=values.get(PREFIX + "sandbox"),
            snapshot=values.get(PREFIX + "snapshot"),
        )


def summarize(summary: FlowSummary, run: Run, step_names: Sequence[str]) -> None:
    """Fill ``summary`` from what Metaflow recorded of ``run`` (a client
    ``Run``; the caller holds the sandbox's client scope): the steps that ran
    in graph order, their tasks, and their times (``Task.created_at`` to
    ``finished_at``, from the first task's start to the last one's end)."""
    summary.run = run.pathspec
    present = {step.id: list(step) for step in run}
    summary.steps = []
    for name in step_names:
        if name not in present:
            continue
        tasks = present[name]
        spans = [(task.created_at, task.finished_at) for task in tasks]
        seconds = None
        starts = [start for start, _ in spans if start is not None]
        ends = [end for _, end in spans if end is not None]
        if spans and len(starts) == len(ends) == len(spans):
            elapsed = max(ends) - min(starts)
            seconds = max(elapsed.total_seconds(), 0.0)
        # Metaflow's verdict per task: a task that finished without being
        # successful had its exception caught (@catch) and the run went on.
        status = "passed"
        if not all(task.successful for task in tasks):
            status = "caught" if all(task.finished for task in tasks) else "failed"
        attempts = [task.current_attempt + 1 for task in tasks]
        summary.steps.append(
            StepSummary(
                name,
                len(tasks),
                seconds,
                status,
                retried=sum(1 for n in attempts if n > 1),
                attempts=max(attempts, default=1),
            )
        )
    if not run.successful:
        summary.failed_step = next((s.name for s in summary.steps if s.status == "failed"), None)


def inspect_lines(root: Path | str, run: str | None, step: str | None) -> list[str]:
    """Python lines that open a kept sandbox with Metaflow's client, in any
    interpreter, from any directory."""
    lines = [
        "from metaflow import Flow, Run, metadata, namespace",
        f"metadata({f'local@{root}'!r})",
        "namespace(None)",
    ]
    if run:
        lines.append(f"run = Run({run!r})")
        if step:
            lines.append(f"run[{step!r}].task.data  # the failing step's artifacts")
    return lines


def header_lines(engine: str, keep: str, basetemp: Path, run_locally: Sequence[str]) -> list[str]:
    where = f"sandboxes under {basetemp}, kept: {keep}"
    lines = [f"artflow: engine {engine}, {where}"]
    if run_locally:
        decos = " ".join(f"@{name}" for name in run_locally)
        lines.append(f"artflow: run locally (decorators removed from flows): {decos}")
    return lines


def tail(text: str, n: int) -> str:
    """The last ``n`` lines of ``text``, indented, saying how many were cut."""
    lines = text.rstrip().splitlines()
    cut = [f"  ... ({len(lines) - n} earlier lines)"] if len(lines) > n else []
    return "\n".join(cut + [f"  {line}" for line in lines[-n:]])


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} s"


def flow_line(outcome: str, nodeid: str, summary: FlowSummary) -> str:
    if summary.run is None:
        return f"{outcome.upper()} {nodeid}: did not start"
    steps = ", ".join(s.name for s in summary.steps) or "none"
    ran = len(summary.steps)
    count = (
        f"{ran} steps" if ran == summary.graph_steps else f"{ran} of {summary.graph_steps} steps"
    )
    plural = "" if summary.tasks == 1 else "s"
    line = (
        f"{outcome.upper()} {nodeid}: {count} ({steps}), {summary.tasks} task{plural}, "
        f"{_seconds(summary.duration)}"
    )
    if summary.failed_step:
        line += f", failed in step {summary.failed_step!r}"
    if summary.snapshot:
        line += f", snapshot {summary.snapshot}"
    return line


def step_lines(summary: FlowSummary) -> list[str]:
    width = max((len(s.name) for s in summary.steps), default=0)
    lines = []
    for step in summary.steps:
        plural = "" if step.tasks == 1 else "s"
        status = "" if step.status == "passed" else f"  {step.status.upper()}"
        retries = f"  ({step.retries()})" if step.retried else ""
        lines.append(
            f"    {step.name.ljust(width)}  {step.tasks:>3} task{plural:<1}  "
            f"{_seconds(step.seconds):>9}{status}{retries}"
        )
        lines += [f"      task {task} caught {what}" for task, what in step.caught]
    return lines


def terminal_summary(terminalreporter: Any, verbose: bool) -> None:
    """One line per flow item (per-step timings with ``-v``), then, once,
    which decorators were run locally."""
    rows: list[tuple[str, str, FlowSummary, str | None]] = []
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) != "call":
                continue
            summary = FlowSummary.from_properties(getattr(rep, "user_properties", ()))
            if summary is not None:
                rows.append((rep.outcome, rep.nodeid, summary, _worker(rep)))
    if not rows:
        return
    # `--dist each` runs every item on every worker: tell the rows apart.
    seen = Counter(nodeid for _, nodeid, _, _ in rows)
    rows.sort(key=lambda row: (row[1], row[3] or ""))
    terminalreporter.write_sep("=", "artflow summary")
    local: dict[str, str] = {}
    for outcome, nodeid, summary, worker in rows:
        if summary.run_locally:
            local[nodeid] = ", ".join(summary.run_locally)
        name = f"{nodeid} [{worker}]" if seen[nodeid] > 1 and worker else nodeid
        terminalreporter.write_line(flow_line(outcome, name, summary))
        if verbose:
            for line in step_lines(summary):
                terminalreporter.write_line(line)
        if summary.sandbox:
            terminalreporter.write_line(f"    sandbox kept: {summary.sandbox}")
    if local:
        terminalreporter.write_line(
            "ran locally (remote-compute and environment decorators removed; "
            "ini artflow_run_locally): " + "; ".join(f"{k}: {v}" for k, v in local.items())
        )


def _worker(rep: Any) -> str | None:
    """The pytest-xdist worker (``gw0``) that produced ``rep``, if any."""
    gateway = getattr(getattr(rep, "node", None), "gateway", None)
    return getattr(gateway, "id", None)


def record(item: pytest.Item, summary: FlowSummary) -> None:
    """Replace the item's artflow properties with ``summary``'s."""
    item.user_properties[:] = [
        (name, value) for name, value in item.user_properties if not name.startswith(PREFIX)
    ]
    item.user_properties.extend(summary.properties())
