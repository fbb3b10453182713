"""``@catch``: the run goes on, exactly as in Metaflow.

Each flow here also runs as ``python flow.py run`` (once per module), and
what artflow reports under both engines is checked against that: its exit
status (``check=True`` raises exactly when it is not 0) and what Metaflow's
client says of its run and tasks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_artflow import CaughtException, FlowRunFailed
from pytest_artflow.results import FlowRun
from pytest_artflow.results.failure import describe_failure
from pytest_artflow.sandbox import Sandbox

ENGINES = ("fork", "subprocess")

FLOWS: dict[str, str] = {
    # The exception of a step in the middle is caught; the run is successful.
    "middle": """
        from metaflow import FlowSpec, catch, step

        class MiddleFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.fragile)

            @catch(var="err")
            @step
            def fragile(self):
                raise ValueError("in the middle")
                self.next(self.end)

            @step
            def end(self):
                self.saw = type(self.err).__name__
    """,
    # Caught in end, no var: the run finishes (exit 0) but is not successful.
    "end": """
        from metaflow import FlowSpec, catch, step

        class EndFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @catch(print_exception=False)
            @step
            def end(self):
                raise ValueError("at the end")
    """,
    # @retry first; @catch catches what the last attempt raised.
    "retry": """
        from metaflow import FlowSpec, catch, current, retry, step

        class RetryFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.fragile)

            @catch(var="err")
            @retry(times=1, minutes_between_retries=0)
            @step
            def fragile(self):
                print("attempt", current.retry_count)
                raise KeyError("always")
                self.next(self.end)

            @step
            def end(self):
                pass
    """,
    # Some splits of a foreach raise; the join sees every split.
    "foreach": """
        from metaflow import FlowSpec, catch, step

        class ForeachFlow(FlowSpec):
            @step
            def start(self):
                self.items = [1, 2, 3]
                self.next(self.body, foreach="items")

            @catch(var="err", print_exception=False)
            @step
            def body(self):
                if self.input == 2:
                    raise ValueError("two")
                self.out = self.input
                self.next(self.join)

            @step
            def join(self, inputs):
                self.outs = [getattr(i, "out", None) for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
    """,
    # The task process dies without an exception: Metaflow runs @catch's
    # fallback, which raises FailureHandledByCatch, and catches that.
    "process_dies": """
        import os
        from metaflow import FlowSpec, catch, step

        class DiesFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.fragile)

            @catch(var="err")
            @step
            def fragile(self):
                os._exit(3)
                self.next(self.end)

            @step
            def end(self):
                pass
    """,
    # The exception is caught, but a later step relies on what the caught
    # step never set: that step fails, and so does the run.
    "fails_later": """
        from metaflow import FlowSpec, catch, step

        class LaterFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.fragile)

            @catch(var="err", print_exception=False)
            @step
            def fragile(self):
                raise ValueError("no result")
                self.result = 1
                self.next(self.end)

            @step
            def end(self):
                print(self.result)
    """,
}

#: What each case's tasks caught, by step, in task order: (type, message, var).
CAUGHT: dict[str, dict[str, list[tuple[str, str, str | None] | None]]] = {
    "middle": {"start": [None], "fragile": [("ValueError", "in the middle", "err")], "end": [None]},
    "end": {"start": [None], "end": [("ValueError", "at the end", None)]},
    "retry": {"start": [None], "fragile": [("KeyError", "'always'", "err")], "end": [None]},
    "foreach": {
        "start": [None],
        "body": [None, ("ValueError", "two", "err"), None],
        "join": [None],
        "end": [None],
    },
    "process_dies": {
        "start": [None],
        "fragile": [
            (
                "metaflow.plugins.catch_decorator.FailureHandledByCatch",
                "Task execution kept failing over 1 attempts. Your code did not raise an "
                "exception. Something in the execution environment caused the failure.",
                "err",
            )
        ],
        "end": [None],
    },
    "fails_later": {
        "start": [None],
        "fragile": [("ValueError", "no result", "err")],
        "end": [None],
    },
}

#: Reads a run of the sandbox with Metaflow's client, in a process of its own.
_READ = """
import json, sys
from metaflow import Flow, metadata, namespace
metadata("local@" + sys.argv[1])
namespace(None)
run = Flow(sys.argv[2]).latest_run
print(json.dumps({
    "successful": run.successful,
    "finished": run.finished,
    "tasks": {s.id: sorted([t.index, t.successful, t.finished] for t in s) for s in run},
}))
"""


@dataclass
class Verdict:
    """What ``python flow.py run`` did with a flow, and what Metaflow's client says of it."""

    returncode: int
    output: str
    successful: bool
    finished: bool
    #: step -> sorted [foreach index, successful, finished] of its tasks.
    tasks: dict[str, list[list[Any]]]


def write_flow(directory: Path, case: str) -> Path:
    """The case's flow file, runnable as ``python flow.py run`` too."""
    source = textwrap.dedent(FLOWS[case])
    name = re.search(r"^class (\w+)\(FlowSpec\)", source, re.MULTILINE)
    assert name is not None
    path = directory / f"{case}_flow.py"
    path.write_text(f'{source}\n\nif __name__ == "__main__":\n    {name[1]}()\n')
    return path


@pytest.fixture(scope="module")
def flows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("catch_flows")
    for case in FLOWS:
        write_flow(directory, case)
    return directory


@pytest.fixture(scope="module")
def metaflow_verdicts(tmp_path_factory: pytest.TempPathFactory, flows_dir: Path) -> Any:
    """``case -> Verdict`` of a plain ``python flow.py run``, made once per case."""
    cache: dict[str, Verdict] = {}

    def verdict(case: str, flow_name: str) -> Verdict:
        if case not in cache:
            sandbox = Sandbox(tmp_path_factory.mktemp(f"metaflow_{case}"))
            env = sandbox.environ()
            path = flows_dir / f"{case}_flow.py"
            proc = subprocess.run(
                [sys.executable, str(path), "--no-pylint", "run"],
                cwd=sandbox.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            read = subprocess.run(
                [sys.executable, "-c", _READ, str(sandbox.root), flow_name],
                cwd=sandbox.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert read.returncode == 0, proc.stdout + proc.stderr + read.stderr
            cache[case] = Verdict(
                proc.returncode, proc.stdout + proc.stderr, **json.loads(read.stdout)
            )
        return cache[case]

    return verdict


def _run(artflow_run: Any, path: Path, engine: str) -> tuple[FlowRun, bool]:
    """The run with ``check=True``, and whether that raised."""
    try:
        return artflow_run(path, engine=engine), False
    except FlowRunFailed as exc:
        assert exc.run is not None
        return exc.run, True


def _client_tasks(run: FlowRun) -> dict[str, list[list[Any]]]:
    return {s.id: sorted([t.index, t.successful, t.finished] for t in s) for s in run.client}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", sorted(FLOWS))
def test_check_and_status_are_those_of_python_flow_py_run(
    artflow_run, flows_dir, metaflow_verdicts, case, engine
):
    path = flows_dir / f"{case}_flow.py"
    run, raised = _run(artflow_run, path, engine)
    verdict = metaflow_verdicts(case, run.flow_name)
    # check=True raises exactly when `python flow.py run` exits non-zero.
    assert raised is (verdict.returncode != 0), verdict.output
    assert run.finished is (verdict.returncode == 0)
    # The same verdicts as Metaflow's client, on this run and on the plain one.
    assert (run.successful, run.finished) == (run.client.successful, run.client.finished)
    assert (run.successful, run.finished) == (verdict.successful, verdict.finished)
    assert _client_tasks(run) == verdict.tasks
    assert {
        step.name: sorted([t.index, t.successful, t.finished] for t in step.tasks) for step in run
    } == verdict.tasks
    for step in run:
        assert step.successful is all(t.successful for t in step.tasks)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", sorted(FLOWS))
def test_each_task_says_what_it_caught(artflow_run, flows_dir, case, engine):
    run, _ = _run(artflow_run, flows_dir / f"{case}_flow.py", engine)
    seen = {
        step.name: [
            None if t.caught is None else (t.caught.type, t.caught.message, t.caught.var)
            for t in step.tasks
        ]
        for step in run
    }
    assert seen == CAUGHT[case]
    for task in run.tasks:
        # Caught exactly when Metaflow says finished but not successful.
        assert (task.caught is not None) is (task.finished and not task.successful)
        if task.caught is not None:
            assert isinstance(task.caught, CaughtException)
            assert task.caught.traceback.startswith("Traceback")
            if task.caught.var:
                # The var holds Metaflow's record of the same exception.
                wrapper = task.artifacts[task.caught.var]
                assert (wrapper.type, wrapper.exception) == (
                    f"builtins.{task.caught.type}"
                    if "." not in task.caught.type
                    else task.caught.type,
                    task.caught.message,
                )


@pytest.mark.parametrize("engine", ENGINES)
def test_retry_then_catch_only_the_last_attempt_caught(artflow_run, flows_dir, engine):
    run = artflow_run(flows_dir / "retry_flow.py", engine=engine)
    task = run["fragile"].task
    assert [a.attempt for a in task.attempts] == [0, 1]
    first, last = task.attempts
    assert (first.finished, first.caught) == (False, None)
    assert "KeyError" in first.exception.type
    assert last is task and task.caught is not None
    assert task.stdout.startswith("attempt 1\n@catch caught an exception from")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_caught_exception_in_end_is_the_runs_failure_described_as_caught(
    artflow_run, flows_dir, engine
):
    run = artflow_run(flows_dir / "end_flow.py", engine=engine)
    assert not run.successful and run.finished
    failure = run.failure
    assert failure is not None and failure.caught
    assert (failure.step, failure.exception_type, failure.message) == (
        "end",
        "ValueError",
        "at the end",
    )
    assert failure.task == run["end"].task.pathspec
    assert 'raise ValueError("at the end")' in failure.traceback
    text = describe_failure(run)
    assert text.startswith(
        f"{run.pathspec} is not successful: @catch caught in step 'end' "
        f"(task {failure.task}): ValueError: at the end"
    )
    assert "without reporting an exception" not in text


@pytest.mark.parametrize("engine", ENGINES)
def test_a_step_failing_after_a_caught_one_is_the_failure(artflow_run, flows_dir, engine):
    with pytest.raises(FlowRunFailed) as excinfo:
        artflow_run(flows_dir / "fails_later_flow.py", engine=engine)
    message = str(excinfo.value)
    run = excinfo.value.run
    assert run is not None and run.failure is not None
    assert (run.failure.step, run.failure.exception_type, run.failure.caught) == (
        "end",
        "AttributeError",
        False,
    )
    assert message.startswith(f"{run.pathspec} failed in step 'end' ")
    assert "'result'" in message
    assert "without reporting an exception" not in message
    assert not run.finished and not run.client.finished


@pytest.mark.parametrize("engine", ENGINES)
def test_a_caught_exception_in_the_middle_is_no_failure(artflow_run, flows_dir, engine):
    run = artflow_run(flows_dir / "middle_flow.py", engine=engine)
    assert run.successful and run.finished and run.failure is None
    assert not run["fragile"].successful
    assert run["end"].data.saw == "MetaflowExceptionWrapper"
