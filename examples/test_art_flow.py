from examples.art_flow import ArtFlow


def test_artifact_changes_between_steps(artflow_run):
    run = artflow_run(ArtFlow)
    assert run["start"].data.some_data == [1, 2, 3]
    assert run["middle"].data.some_data == [1, 2, 4]
    assert run.trace("some_data") == {"start": [1, 2, 3], "middle": [1, 2, 4], "end": [1, 2, 4]}
    assert "the data artifact is: [1, 2, 3]" in run["middle"].stdout
