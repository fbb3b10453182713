"""Unit tests of one step of the seed flow: from scratch, and re-run from a run."""

from metaflow import Flow

from examples.art_flow import ArtFlow


def test_middle_changes_the_list(artflow_step):
    task = artflow_step(ArtFlow, "middle", inputs={"some_data": [9, 9]})
    assert task.data.some_data == [9, 4]
    assert "the data artifact is: [9, 9]" in task.stdout
    assert task.changed == {"some_data"}
    assert task.next_steps == ["end"]


def test_rerun_middle_of_an_earlier_run(artflow_run, artflow_step):
    run = artflow_run(ArtFlow)
    task = artflow_step(run, "middle", inputs={"some_data": [7]})
    assert task.data.some_data == [4]
    # The run itself is untouched, and still the latest one.
    assert run["middle"].data.some_data == [1, 2, 4]
    assert Flow("ArtFlow").latest_run.id == run.run_id
