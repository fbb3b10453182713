"""The budget of a run from its timeline marks (``timeline.budget``), on
made-up marks: roles from the phases a process marks, milestones, the task
cycle, marks it does not know, and medians over runs."""

from __future__ import annotations

from pathlib import Path

from pytest_artflow import timeline
from pytest_artflow.timeline import Mark

MS = 1_000_000
P, S, R, M = 100, 200, 300, 400


def marks(*rows: tuple[float, int, str, str]) -> list[Mark]:
    return [Mark(int(at * MS), pid, phase, detail) for at, pid, phase, detail in rows]


def sequential_run(offset: float = 1000.0, task_ms: float = 16.0) -> list[Mark]:
    """A run of two tasks one after the other, as the fork engine marks it."""
    rows: list[tuple[float, int, str, str]] = [
        (0, P, "run.requested", ""),
        (1, R, "zygote.entered", ""),
        (5, R, "zygote.imports", ""),
        (6, M, "main.forked", ""),
        (20, M, "main.cli", ""),
    ]
    start = 30.0
    for n, task in enumerate((501, 502)):
        rows += [
            (start - 4, M, "task.requested", "start" if n == 0 else "end"),
            (start - 1, R, "task.forked", str(task)),
            (start, task, "task.start", ""),
            (start + 2, task, "task.something.new", ""),  # a phase nobody told us about
            (start + task_ms, task, "task.exit", ""),
            (start + task_ms + 3, M, "task.noticed", f"pid={task}"),
        ]
        start += task_ms + 10
    rows += [
        (start, R, "run.exited", ""),
        (start + 1, P, "run.ended", ""),
        (start + 2, P, "read.start", ""),
        (start + 6, P, "read.end", ""),
        (start + 7, P, "results.read", ""),
    ]
    return [Mark(m.ns + int(offset * MS), m.pid, m.phase, m.detail) for m in marks(*rows)]


def test_roles_come_from_the_phases_a_process_marks() -> None:
    found = timeline.roles(sequential_run() + marks((0, S, "server.forked", ""), (0, 9, "odd", "")))
    assert found[P] == "pytest"
    assert found[S] == "server"
    assert found[R] == "zygote"  # task.forked too, but zygote.* says which it is
    assert found[M] == "main"
    assert found[501] == found[502] == "task"
    assert found[9] == "other"


def test_milestones_are_first_marks_and_the_last_of_repeated_ones() -> None:
    budget = timeline.budget(sequential_run())
    assert budget.tasks == 2
    assert budget.milestones["run.requested"] == ("pytest", 0.0)
    assert budget.milestones["zygote.imports"] == ("zygote", 5.0)
    assert budget.milestones["task.start"] == ("task", 30.0)
    assert budget.milestones["task.start (last)"] == ("task", 56.0)
    assert budget.milestones["results.read"] == ("pytest", 89.0)
    assert budget.total == 89.0


def test_the_task_cycle_is_measured_from_each_tasks_start_and_exit() -> None:
    cycle = timeline.budget(sequential_run()).cycle
    assert cycle["task.requested"] == ("main", -4.0)
    assert cycle["task.forked"] == ("zygote", -1.0)
    assert cycle["task.start"] == ("task", 0.0)
    assert cycle["task.something.new"] == ("task", 2.0)
    assert cycle["task.exit"] == ("task", 16.0)
    assert cycle["task.noticed after exit"] == ("main", 3.0)
    assert cycle["start to next start"] == ("task", 26.0)
    assert cycle["exit to next start"] == ("task", 10.0)


def test_marks_naming_a_task_pair_with_it_whatever_their_order() -> None:
    # Two tasks at once; the second one's exit is noticed first.
    rows = marks(
        (0, P, "run.requested", ""),
        (1, M, "main.cli", ""),
        (10, 501, "task.start", ""),
        (11, 502, "task.start", ""),
        (20, 502, "task.exit", ""),
        (21, M, "task.noticed", "502"),
        (30, 501, "task.exit", ""),
        (32, M, "task.noticed", "501"),
    )
    cycle = timeline.budget(rows).cycle
    assert cycle["task.noticed after exit"] == ("main", 1.5)
    assert cycle["exit to next start"] == ("task", -19.0)  # they overlapped


def test_a_task_without_an_exit_mark_has_no_exit_figures() -> None:
    rows = marks(
        (0, P, "run.requested", ""),
        (1, M, "main.cli", ""),
        (10, 501, "task.start", ""),
        (30, 502, "task.start", ""),
        (40, M, "task.noticed", ""),
    )
    cycle = timeline.budget(rows).cycle
    assert cycle["start to next start"] == ("task", 20.0)
    assert "exit to next start" not in cycle
    assert cycle["task.noticed"] == ("main", 30.0)  # from the first task's start


def test_a_phase_marked_by_two_roles_is_counted_for_each() -> None:
    rows = marks(
        (0, 501, "task.start", ""),
        (10, 501, "task.exit", ""),
        (12, R, "zygote.entered", ""),
        (12, R, "task.noticed", ""),
        (13, M, "main.cli", ""),
        (14, M, "task.noticed", ""),
    )
    cycle = timeline.budget(rows).cycle
    assert cycle["task.noticed in zygote after exit"] == ("zygote", 2.0)
    assert cycle["task.noticed in main after exit"] == ("main", 4.0)


def test_no_marks_no_budget() -> None:
    empty = timeline.budget([])
    assert (empty.milestones, empty.cycle, empty.tasks) == ({}, {}, 0)
    assert timeline.format_budget(timeline.median_budget([])) == [timeline.format_budget(empty)[0]]


def test_medians_over_runs_and_the_text() -> None:
    budgets = [timeline.budget(sequential_run(task_ms=ms)) for ms in (10.0, 16.0, 40.0)]
    median = timeline.median_budget(budgets)
    assert median.cycle["task.exit"] == ("task", 16.0)
    assert median.tasks == 2
    # Milestones in time order; every one of them and of the cycle in the text.
    assert list(median.milestones)[:2] == ["run.requested", "zygote.entered"]
    text = "\n".join(timeline.format_budget(median))
    for label in [*median.milestones, *median.cycle]:
        assert label in text
    lines = timeline.format_budget(median)
    assert lines.index(next(x for x in lines if "zygote.imports" in x)) < lines.index(
        next(x for x in lines if "main.cli" in x)
    )


def test_runs_one_after_another_are_split_at_their_requests() -> None:
    first, second = sequential_run(offset=0), sequential_run(offset=500)
    runs = timeline.split_runs(second + first)
    assert [len(r) for r in runs] == [len(first), len(second)]
    assert timeline.budget(runs[1]).milestones == timeline.budget(first).milestones


def test_marks_written_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "marks.txt"
    timeline.start(str(path))
    try:
        timeline.mark("run.requested")
        timeline.mark("read.start", "two words")
    finally:
        timeline.start(None)
    timeline.mark("results.read")  # off: not written
    read = timeline.read(str(path))
    assert [(m.phase, m.detail) for m in read] == [
        ("run.requested", ""),
        ("read.start", "two words"),
    ]
    assert timeline.roles(read) == {read[0].pid: "pytest"}
