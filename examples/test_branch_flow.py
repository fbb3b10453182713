from examples.branch_flow import BranchFlow


def test_join_merges_both_branches(artflow_run):
    run = artflow_run(BranchFlow)
    assert run.steps == ["start", "double", "shift", "join", "end"]
    assert run["join"].data.doubled == 20
    assert run["join"].data.shifted == 11
    assert run["end"].data.both == 31


def test_diff_shows_what_a_step_added(artflow_run):
    run = artflow_run(BranchFlow)
    diff = run.diff("start", "double")
    assert diff.added == {"doubled": 20}
    assert not diff.changed and not diff.removed
