"""``artflow_step``'s input planning, from the flow's graph and the test's
arguments alone: which parent tasks a step reads, holding what."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from pytest_artflow import ArtflowError, metaflow_seam
from pytest_artflow.flows import resolve
from pytest_artflow.step.job import INPUT_ARTIFACT
from pytest_artflow.step.plan import InputPlan, InputPlanner, step_node

FLOWS = Path(__file__).parent.parent / "flows"


def plan(flow_file: str, step: str, inputs: Any = None, *, index: Any = None, input: Any = None):
    ref = resolve(FLOWS / flow_file, [FLOWS])
    return InputPlanner(ref, step_node(ref, step), input, index).from_scratch(inputs)


def values(plan: InputPlan, n: int = 0) -> dict[str, Any]:
    return {k: pickle.loads(v) for k, v in plan.parents[n].values.items()}


def test_a_linear_step_reads_one_made_up_parent() -> None:
    made = plan("linear_flow.py", "middle", {"x": 3})
    assert [p.step for p in made.parents] == ["start"]
    assert values(made) == {"x": 3}
    assert made.given == {"x"}
    assert made.split_index is None
    assert made.parents[0].bookkeeping[metaflow_seam.TRANSITION] == (["middle"], None)
    assert made.parents[0].frames == []


def test_the_start_step_reads_only_parameters() -> None:
    assert plan("linear_flow.py", "start").parents == []
    with pytest.raises(ArtflowError, match="is the first step"):
        plan("linear_flow.py", "start", {"x": 1})


def test_a_foreach_body_gets_its_split_from_the_list_or_from_input() -> None:
    from_list = plan("foreach_flow.py", "body", {"items": ["a", "b", "c"]}, index=2)
    parent = from_list.parents[0]
    assert from_list.split_index == 2
    assert parent.bookkeeping[metaflow_seam.FOREACH_VAR] == "items"
    assert parent.bookkeeping[metaflow_seam.FOREACH_NUM_SPLITS] == 3
    assert parent.bookkeeping[metaflow_seam.TRANSITION] == (["body"], "items")

    from_input = plan("foreach_flow.py", "body", input="only", index=1)
    assert from_input.split_index == 1
    assert from_input.parents[0].bookkeeping[metaflow_seam.FOREACH_VAR] == INPUT_ARTIFACT
    # What self.input reads: the value at the split index of a list.
    assert values(from_input)[INPUT_ARTIFACT] == [None, "only"]


def test_a_foreach_join_reads_one_parent_per_split_with_its_frame() -> None:
    made = plan("foreach_flow.py", "join", [{"item": "a"}, {"item": "b"}])
    assert [(p.step, p.task_id) for p in made.parents] == [("body", "p1"), ("body", "p2")]
    assert [values(made, n) for n in range(2)] == [{"item": "a"}, {"item": "b"}]
    assert [p.frames for p in made.parents] == [
        [("body", "items", 2, 0, None)],
        [("body", "items", 2, 1, None)],
    ]


def test_a_branch_join_reads_each_named_branch() -> None:
    made = plan("branch_flow.py", "join", {"left": {"side": "l"}, "right": {"side": "r"}})
    assert sorted(p.step for p in made.parents) == ["left", "right"]
    with pytest.raises(ArtflowError, match="joins 2 branches: give all of them"):
        plan("branch_flow.py", "join", {"left": {"side": "l"}})


@pytest.mark.parametrize(
    ("flow", "step", "kwargs", "message"),
    [
        ("linear_flow.py", "middle", {"index": 1}, "is not inside a foreach"),
        ("foreach_flow.py", "body", {"index": "1"}, "index= takes an int"),
        ("foreach_flow.py", "body", {"inputs": {"items": ["a"]}, "index": 4}, "at index 4"),
        ("foreach_flow.py", "body", {}, "give input="),
    ],
)
def test_inputs_that_do_not_fit_the_graph_are_named(flow, step, kwargs, message) -> None:
    inputs = kwargs.pop("inputs", None)
    with pytest.raises(ArtflowError, match=message):
        plan(flow, step, inputs, **kwargs)


def test_a_value_pickle_cannot_store_is_refused_with_its_name() -> None:
    with pytest.raises(ArtflowError, match=r"inputs\['fn'\] cannot become an artifact"):
        plan("linear_flow.py", "middle", {"fn": lambda: 1})


def test_an_unknown_step_lists_the_real_ones() -> None:
    ref = resolve(FLOWS / "linear_flow.py", [FLOWS])
    with pytest.raises(ArtflowError, match="has no step 'nope'; its steps: start, middle, end"):
        step_node(ref, "nope")
