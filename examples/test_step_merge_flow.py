"""Unit tests of a join step and of a switch, one step at a time."""

import pytest

from examples.merge_flow import MergeFlow
from pytest_artflow import ArtflowError


def test_join_sees_each_branch(artflow_step):
    task = artflow_step(
        MergeFlow,
        "join",
        inputs={
            "clean": {"stage": "clean", "cleaned": [1, 2], "rows": [1, -5, 2]},
            "measure": {"stage": "measure", "dropped": 1, "rows": [1, -5, 2]},
        },
    )
    assert task.data.summary == "2 kept, 1 dropped"
    assert task.data.stages == ["clean", "measure"]
    # merge_artifacts brought in what the branches agree on or only one has.
    assert task.data.rows == [1, -5, 2]
    assert task.data.cleaned == [1, 2] and task.data.dropped == 1
    assert "stage" not in task.artifacts
    assert task.changed == {"summary", "stages"}
    assert task.next_steps == ["triage"]


def test_a_join_needs_inputs_per_branch(artflow_step):
    with pytest.raises(ArtflowError, match="joins the branches clean, measure"):
        artflow_step(MergeFlow, "join", inputs={"cleaned": [1], "dropped": 0})


@pytest.mark.parametrize(("dropped", "chosen"), [(2, "review"), (0, "end")])
def test_triage_chooses_a_branch(artflow_step, dropped, chosen):
    task = artflow_step(MergeFlow, "triage", inputs={"dropped": dropped})
    assert task.next_steps == [chosen]
