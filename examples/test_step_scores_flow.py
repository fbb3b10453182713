"""Unit tests of a foreach body and of its join, without running the flow."""

import pytest

from examples.scores_flow import Model, ScoresFlow
from pytest_artflow import ArtflowError


def test_score_one_model(artflow_step):
    # input= is what self.input returns; index= is the task's position.
    task = artflow_step(ScoresFlow, "score", input=Model("huge", 100), index=3, bonus=5)
    assert task.data.points == 1005
    assert "model #3 huge scores 1005" in task.stdout
    assert task.next_steps == ["pick"]


def test_score_from_the_foreach_list(artflow_step):
    task = artflow_step(
        ScoresFlow, "score", inputs={"models": [Model("a", 1), Model("b", 2)]}, index=1
    )
    assert task.data.points == 20
    assert task.data.models == [Model("a", 1), Model("b", 2)]


def test_a_foreach_step_needs_its_input(artflow_step):
    with pytest.raises(ArtflowError, match=r"foreach step .*give input="):
        artflow_step(ScoresFlow, "score")


def test_pick_the_best_of_three_splits(artflow_step):
    # A foreach join takes one dict of artifacts per split, in split order.
    task = artflow_step(
        ScoresFlow,
        "pick",
        inputs=[
            {"models": [Model("a", 1), Model("b", 2), Model("c", 3)], "points": 10},
            {"models": [Model("a", 1), Model("b", 2), Model("c", 3)], "points": 30},
            {"models": [Model("a", 1), Model("b", 2), Model("c", 3)], "points": 20},
        ],
    )
    assert task.data.best == "b"
    assert task.data.points == [10, 30, 20]


def test_start_fans_out_over_three_models(artflow_step):
    task = artflow_step(ScoresFlow, "start")
    assert task.next_steps == ["score"]
    assert task.foreach_splits == 3
