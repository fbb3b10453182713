from examples.foreach_flow import ForeachFlow


def test_every_split_is_a_task_in_index_order(artflow_run):
    run = artflow_run(ForeachFlow)
    assert [task.index for task in run["square"].tasks] == [0, 1, 2]
    assert run.trace("squared") == {"square": [1, 4, 9]}
    assert run["end"].data.total == 14


def test_parameters_are_keyword_arguments(artflow_run):
    run = artflow_run(ForeachFlow, count=5)
    assert run["gather"].data.squares == [1, 4, 9, 16, 25]
    assert "5 squared is 25" in run["square"].tasks[4].stdout
