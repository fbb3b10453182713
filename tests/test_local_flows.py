"""Flow classes defined inside a test function: shipped to the flow's processes
with cloudpickle, since their file cannot name them."""

from __future__ import annotations

import pytest
from metaflow import FlowSpec, Parameter, step

from pytest_artflow import FlowReferenceError


def doubled(values: list[int]) -> list[int]:
    """A module-level helper that a local flow's step calls (imported by name there)."""
    return [2 * v for v in values]


@pytest.mark.parametrize("engine", ["subprocess", "fork"])
def test_a_flow_defined_in_the_test_runs(artflow_run, engine):
    class LocalFlow(FlowSpec):
        factor = Parameter("factor", default=3)

        @step
        def start(self):
            self.numbers = doubled([1, 2])
            print("start saw", self.numbers)
            self.next(self.end)

        @step
        def end(self):
            self.scaled = [self.factor * v for v in self.numbers]

    run = artflow_run(LocalFlow, engine=engine, factor=5)
    assert run.successful
    assert run.steps == ["start", "end"]
    assert run["start"].data.numbers == [2, 4]
    assert run["end"].data.scaled == [10, 20]
    assert "start saw [2, 4]" in run["start"].stdout


@pytest.mark.parametrize("engine", ["subprocess", "fork"])
def test_a_failing_local_flow_names_its_step(artflow_run, engine):
    class BrokenFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            raise ValueError("no end in sight")

    run = artflow_run(BrokenFlow, engine=engine, check=False)
    assert not run.successful
    assert run.failure.step == "end"
    assert run.failure.exception_type == "ValueError"
    assert "no end in sight" in run.failure.message
    # The shipped step's code still names its file and line.
    assert 'test_local_flows.py", line' in run.failure.traceback


@pytest.mark.parametrize("engine", ["subprocess", "fork"])
def test_one_step_of_a_local_flow(artflow_step, engine):
    class StepFlow(FlowSpec):
        @step
        def start(self):
            self.numbers = [1]
            self.next(self.middle)

        @step
        def middle(self):
            self.numbers = doubled(self.numbers)
            self.next(self.end)

        @step
        def end(self):
            pass

    task = artflow_step(StepFlow, "middle", inputs={"numbers": [4, 5]}, engine=engine)
    assert task.data.numbers == [8, 10]
    assert task.changed == {"numbers"}
    assert task.next_steps == ["end"]


def test_a_local_flow_cloudpickle_cannot_send_is_named(artflow_run):
    import threading

    lock = threading.Lock()

    class LockedFlow(FlowSpec):
        @step
        def start(self):
            with lock:
                self.ok = True
            self.next(self.end)

        @step
        def end(self):
            pass

    with pytest.raises(FlowReferenceError, match=r"LockedFlow is defined inside a function.*lock"):
        artflow_run(LockedFlow)
