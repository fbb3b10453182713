"""``artflow_step``: one step of a flow, from scratch or re-run from a run.

The sessions that run steps are real pytest sessions (``pytester``), each in a
process of its own, under every engine; the checks of what the test gives
``artflow_step`` fail before any process starts and run here directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_artflow import ArtflowError

ENGINES = ["subprocess", "fork"]

LINEAR_FLOW = """
import sys
from dataclasses import dataclass

from metaflow import FlowSpec, Parameter, environment, step


@dataclass
class Point:
    x: int


class LinearFlow(FlowSpec):
    alpha = Parameter("alpha", default=1)

    @step
    def start(self):
        self.point = Point(self.alpha)
        self.untouched = "from start"
        self.next(self.middle)

    @step
    def middle(self):
        # A class of the flow file is __main__'s in a real run: so it is here.
        assert type(self.point) is Point, type(self.point)
        print(f"out {self.point.x}")
        print(f"err {self.alpha}", file=sys.stderr)
        self.moved = Point(self.point.x + self.alpha)
        self.kept = self.untouched
        self.next(self.end)

    @environment(vars={"GREETING": "hello"})
    @step
    def end(self):
        import os

        self.greeting = os.environ["GREETING"]
"""

SHAPES_FLOW = """
from metaflow import FlowSpec, step


class ShapesFlow(FlowSpec):
    @step
    def start(self):
        self.groups = ["ab", "cde"]
        self.next(self.outer, foreach="groups")

    @step
    def outer(self):
        self.letters = list(self.input)
        self.next(self.inner, foreach="letters")

    @step
    def inner(self):
        self.tag = f"{self.input}{self.index}"
        self.stack = self.foreach_stack()
        self.next(self.inner_join)

    @step
    def inner_join(self, inputs):
        self.tags = [i.tag for i in inputs]
        self.next(self.outer_join)

    @step
    def outer_join(self, inputs):
        self.all_tags = [t for i in inputs for t in i.tags]
        self.next(self.fan)

    @step
    def fan(self):
        self.base = 1
        self.next(self.left, self.right)

    @step
    def left(self):
        self.side = "L"
        self.lv = self.base + 1
        self.next(self.meet)

    @step
    def right(self):
        self.side = "R"
        self.rv = self.base + 2
        self.next(self.meet)

    @step
    def meet(self, inputs):
        self.sides = sorted(i.side for i in inputs)
        self.total = inputs.left.lv + inputs.right.rv
        self.merge_artifacts(inputs, exclude=["side"])
        self.next(self.choose)

    @step
    def choose(self):
        self.mode = "big" if self.total > 4 else "small"
        self.next({"big": self.big, "small": self.small}, condition="mode")

    @step
    def big(self):
        self.next(self.end)

    @step
    def small(self):
        self.next(self.end)

    @step
    def end(self):
        pass
"""

SPLIT_FLOW = """
from metaflow import FlowSpec, step


class SplitFlow(FlowSpec):
    @step
    def start(self):
        self.words = ["red", "green"]
        self.next(self.shout, foreach="words")

    @step
    def shout(self):
        self.loud = self.input.upper()
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.louds = [i.loud for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def run_session(pytester: pytest.Pytester, engine: str, tests: str, passed: int) -> None:
    pytester.makepyfile(
        linear_flow=LINEAR_FLOW,
        shapes_flow=SHAPES_FLOW,
        split_flow=SPLIT_FLOW,
        test_session=tests,
    )
    result = pytester.runpytest_subprocess(f"--artflow-engine={engine}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=passed)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_step_from_scratch(pytester: pytest.Pytester, engine: str) -> None:
    tests = """
import sys

import pytest
from metaflow import Flow, get_metadata
from metaflow.exception import MetaflowNotFound
from metaflow.plugins.datastores.local_storage import LocalStorage

from linear_flow import LinearFlow, Point
from pytest_artflow import FlowRunFailed


def test_the_inputs_are_what_the_step_sees(artflow_step):
    task = artflow_step(
        LinearFlow, "middle", inputs={"point": Point(2), "untouched": [1]}, alpha=3
    )
    assert task.successful
    assert task.data.moved == Point(5) and type(task.data.moved) is Point
    assert task.artifacts == {
        "name": "LinearFlow",
        "alpha": 3,
        "point": Point(2),
        "untouched": [1],
        "moved": Point(5),
        "kept": [1],
    }
    assert task.stdout == "out 2\\n"
    assert task.stderr == "err 3\\n"
    assert task.changed == {"moved", "kept"}
    assert task.next_steps == ["end"]
    assert task.foreach_splits is None
    # The trace shows each artifact before the step and after it.
    assert task.run.trace("point") == {"start": Point(2), "middle": Point(2)}


def test_a_missing_artifact_fails_as_in_a_real_run(artflow_step):
    with pytest.raises(FlowRunFailed) as failed:
        artflow_step(LinearFlow, "middle", inputs={"point": Point(1)})
    message = str(failed.value)
    assert "AttributeError: Flow LinearFlow has no attribute 'untouched'" in message
    assert "inputs={'untouched': ...}" in message


def test_check_false_returns_the_failed_task(artflow_step):
    task = artflow_step(LinearFlow, "middle", inputs={"untouched": 1}, check=False)
    assert not task.successful
    failure = task.run.failure
    assert failure.step == "middle" and failure.exception_type == "AttributeError"
    assert "has no attribute 'point'" in failure.message
    assert "inputs={'point': ...}" in failure.message


def test_the_start_step_gets_parameters(artflow_step):
    task = artflow_step(LinearFlow, "start", alpha=7)
    assert task.data.point == Point(7)
    assert task.changed == {"point", "untouched"}
    assert task.next_steps == ["middle"]


def test_environment_vars_of_the_step_are_set(artflow_step):
    assert artflow_step(LinearFlow, "end").data.greeting == "hello"


def test_a_bad_parameter_value_is_metaflows_error(artflow_step):
    with pytest.raises(FlowRunFailed, match="could not start step 'start'") as failed:
        artflow_step(LinearFlow, "start", alpha="lots")
    assert "Invalid value for '--alpha': lots is not a valid integer" in str(failed.value)


def test_a_step_writes_nothing_the_client_sees(artflow_step, artflow_sandbox):
    main = sys.modules["__main__"]
    artflow_step(LinearFlow, "middle", inputs={"point": Point(1), "untouched": 0})
    # The client in this process points where it pointed before.
    assert get_metadata() == f"local@{artflow_sandbox.root}"
    assert LocalStorage.datastore_root == str(artflow_sandbox.datastore)
    assert sys.modules["__main__"] is main
    with pytest.raises(MetaflowNotFound):
        Flow("LinearFlow")
    assert not (artflow_sandbox.datastore / "LinearFlow").exists()
    assert (artflow_sandbox.root / "steps" / "1").is_dir()
"""
    run_session(pytester, engine, tests, passed=7)
    assert_nothing_outside_sandboxes(pytester.path)


@pytest.mark.parametrize("engine", ENGINES)
def test_foreach_join_and_switch_steps(pytester: pytest.Pytester, engine: str) -> None:
    tests = """
from shapes_flow import ShapesFlow


def test_a_nested_foreach_step_takes_an_index_per_level(artflow_step):
    task = artflow_step(
        ShapesFlow, "inner", input="z", index=(1, 3), inputs={"groups": ["q", "rs"]}
    )
    assert task.data.tag == "z3"
    assert task.data.stack == [(1, 2, "rs"), (3, 4, "z")]
    assert task.index == 3


def test_a_foreach_split_says_how_many_tasks_it_starts(artflow_step):
    task = artflow_step(ShapesFlow, "outer", input="wxyz", index=1)
    assert task.data.letters == ["w", "x", "y", "z"]
    assert task.next_steps == ["inner"]
    assert task.foreach_splits == 4


def test_a_foreach_join_takes_one_dict_per_split(artflow_step):
    task = artflow_step(ShapesFlow, "inner_join", inputs=[{"tag": "a"}, {"tag": "b"}])
    assert task.data.tags == ["a", "b"]
    assert task.changed == {"tags"}


def test_a_static_join_takes_one_dict_per_branch(artflow_step):
    task = artflow_step(
        ShapesFlow,
        "meet",
        inputs={
            "left": {"side": "L", "lv": 2, "base": 1},
            "right": {"side": "R", "rv": 3, "base": 1},
        },
    )
    assert task.data.sides == ["L", "R"]
    assert task.data.total == 5
    # merge_artifacts: what the branches agree on, or only one has; not 'side'.
    assert task.data.base == 1 and task.data.lv == 2 and task.data.rv == 3
    assert "side" not in task.artifacts
    assert task.changed == {"sides", "total"}
    assert sorted(task.run.steps) == ["left", "meet", "right"]


def test_a_switch_records_its_choice(artflow_step):
    assert artflow_step(ShapesFlow, "choose", inputs={"total": 9}).next_steps == ["big"]
    assert artflow_step(ShapesFlow, "choose", inputs={"total": 1}).next_steps == ["small"]
"""
    run_session(pytester, engine, tests, passed=5)


@pytest.mark.parametrize("engine", ENGINES)
def test_rerun_a_step_of_an_earlier_run(pytester: pytest.Pytester, engine: str) -> None:
    tests = """
from metaflow import Flow

from linear_flow import LinearFlow, Point
from split_flow import SplitFlow


def test_override_some_artifacts(artflow_run, artflow_step, artflow_sandbox):
    run = artflow_run(LinearFlow, alpha=2)
    task = artflow_step(run, "middle", inputs={"untouched": "new"})
    # The other artifacts, and the Parameter, come from the run.
    assert task.data.point == Point(2) and task.data.moved == Point(4)
    assert task.data.kept == "new"
    assert task.changed == {"moved", "kept"}
    # Parameters given to the re-run replace the run's.
    assert artflow_step(run, "middle", alpha=10).data.moved == Point(12)
    assert artflow_step(run, "start", alpha=5).data.point == Point(5)
    # The client still sees the run, and only it, as the latest.
    assert [r.id for r in Flow("LinearFlow")] == [run.run_id]
    assert Flow("LinearFlow").latest_run.id == run.run_id
    latest = artflow_sandbox.datastore / "LinearFlow" / "latest_run"
    assert latest.read_text() == run.run_id
    assert run["middle"].data.kept == "from start"


def test_rerun_a_foreach_body_and_its_join(artflow_run, artflow_step):
    run = artflow_run(SplitFlow)
    assert artflow_step(run, "shout", index=1).data.loud == "GREEN"
    assert artflow_step(run, "shout", index=1, input="blue").data.loud == "BLUE"
    task = artflow_step(run, "gather", inputs=[{}, {"loud": "X"}])
    assert task.data.louds == ["RED", "X"]
"""
    run_session(pytester, engine, tests, passed=2)
    assert_nothing_outside_sandboxes(pytester.path)


def assert_nothing_outside_sandboxes(root: Path) -> None:
    """Every Metaflow directory a session made is inside a sandbox, and no
    ``spin`` directory exists at all."""
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            if name.startswith(".metaflow"):
                path = Path(dirpath, name)
                assert name == ".metaflow", path
                assert any(p.name.startswith("artflow-") for p in path.parents), path


# -- what artflow_step is given, checked before any process starts --

SCORES = "examples/scores_flow.py"
MERGE = "examples/merge_flow.py"


@pytest.mark.parametrize(
    ("flow", "step", "options", "message"),
    [
        (SCORES, "nope", {}, "ScoresFlow has no step 'nope'; its steps: start, score, pick, end"),
        (SCORES, "score", {}, r"'score' is a foreach step \('start' over 'models'\): give input="),
        (SCORES, "score", {"index": (1, 2)}, "index= takes 1 non-negative index"),
        (SCORES, "score", {"index": -1, "input": 1}, "index= takes 1 non-negative index"),
        (SCORES, "score", {"inputs": {"models": [1]}, "index": 2}, "does not have"),
        (SCORES, "pick", {"inputs": {"points": 1}}, "give inputs= as a list with one dict"),
        (SCORES, "end", {"input": 3}, "'end' is not inside a foreach"),
        (SCORES, "start", {"inputs": {"x": 1}}, "reads only the flow's Parameters"),
        (MERGE, "join", {"inputs": {"rows": [1]}}, "joins the branches clean, measure"),
        (MERGE, "join", {"inputs": {"clean": {}}}, "joins 2 branches: give all of them"),
        (MERGE, "triage", {"inputs": [{"dropped": 1}]}, "is not a join"),
        (MERGE, "triage", {"inputs": {"_private": 1}}, "'_private' is reserved by Metaflow"),
        (MERGE, "triage", {"inputs": {"name": 1}}, "'name' is reserved by Metaflow"),
        (MERGE, "triage", {"inputs": {"f": lambda: 1}}, r"inputs\['f'\] cannot become an arti"),
    ],
)
def test_bad_arguments_are_named(artflow_step, flow, step, options, message) -> None:
    with pytest.raises(ArtflowError, match=message):
        artflow_step(flow, step, **options)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_step_error_shows_its_message_and_no_plugin_internals(
    pytester: pytest.Pytester, engine: str
) -> None:
    """The failure output of a test is the message, not the plugin's frames
    and their locals (a ``RunConfig``, a pickled ``_Plan``)."""
    pytester.makepyfile(
        linear_flow=LINEAR_FLOW,
        test_errors="""
        def test_unknown_step(artflow_step):
            artflow_step("linear_flow.py", "nope")


        def test_failing_step(artflow_step):
            artflow_step("linear_flow.py", "middle", inputs={"point": None, "untouched": 1})
        """,
    )
    result = pytester.runpytest_subprocess(f"--artflow-engine={engine}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*LinearFlow has no step 'nope'; its steps: start, middle, end*",
            "*failed in step 'middle'*AssertionError*",
        ]
    )
    output = result.stdout.str()
    for internal in ("RunConfig(", "InputPlan(", "pytest_artflow" + os.sep):
        assert internal not in output
