"""artflow_resume: Metaflow's own ``resume`` of a run, under both engines.

Which tasks are cloned and which run again is Metaflow's decision; these tests
check that the plugin drives it (default step, explicit step, foreach, join,
switch, Parameters) and reads back what it did: cloned tasks keep the origin's
values and name the task they came from, re-run tasks hold the new values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_artflow import FlowReferenceError, FlowRunFailed
from pytest_artflow.errors import ArtflowError
from pytest_artflow.results import FlowRun, UnknownStepError

FLOWS = Path(__file__).parent / "flows"
RESUME_FLOW = FLOWS / "resume_flow.py"
ENGINES = ("fork", "subprocess")


def fail_in(step: str) -> dict[str, str]:
    return {"RESUME_FLOW_FAIL": step}


SECOND = {"RESUME_FLOW_LABEL": "second"}


def assert_cloned(resumed: FlowRun, origin: FlowRun, step: str) -> None:
    """Every task of ``step`` is a clone of the origin's task at the same
    position, with the same artifacts."""
    tasks, originals = resumed[step].tasks, origin[step].tasks
    assert [t.origin_pathspec for t in tasks] == [t.pathspec for t in originals]
    assert all(t.cloned for t in tasks)
    assert [t.artifacts for t in tasks] == [t.artifacts for t in originals]


def assert_ran(resumed: FlowRun, step: str) -> None:
    assert [(t.cloned, t.origin_pathspec) for t in resumed[step].tasks] == [
        (False, None) for _ in resumed[step].tasks
    ]
    assert [t.data.label for t in resumed[step].tasks] == ["second"] * len(resumed[step].tasks)


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_reruns_the_failed_split_and_clones_the_rest(artflow_run, artflow_resume, engine):
    run = artflow_run(RESUME_FLOW, engine=engine, check=False, env=fail_in("body"), width=4)
    assert run.failure is not None and run.failure.step == "body"
    assert "join" not in run

    resumed = artflow_resume(run, engine=engine, env=SECOND)

    assert resumed.successful and resumed.run_id != run.run_id
    assert resumed.origin_pathspec == run.pathspec and run.origin_pathspec is None
    assert_cloned(resumed, run, "start")
    body = resumed["body"].tasks
    # Metaflow clones the splits that succeeded and runs the failed one again.
    assert [t.index for t in body] == [0, 1, 2, 3]
    assert [t.cloned for t in body] == [True, False, True, True]
    for i in (0, 2, 3):
        assert body[i].origin_pathspec == run["body"].tasks[i].pathspec
        assert body[i].artifacts == run["body"].tasks[i].artifacts
    assert body[1].data.label == "second" and body[1].stdout == "body 1: 1\n"
    assert_ran(resumed, "join")
    assert_ran(resumed, "end")
    assert resumed["join"].data.body_labels == ["first", "second", "first", "first"]
    # The Parameters are the origin run's (Metaflow clones its _parameters task).
    assert resumed["end"].data.width == 4
    assert resumed["end"].data.total == 0 + 1 + 4 + 9
    # Metaflow's client sees the same.
    client = resumed.client
    assert client.origin_pathspec == run.pathspec
    assert client["start"].task.origin_pathspec == run["start"].task.pathspec
    assert client["end"].task.origin_pathspec is None


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_after_a_failed_join_clones_every_split(artflow_run, artflow_resume, engine):
    run = artflow_run(RESUME_FLOW, engine=engine, check=False, env=fail_in("join"))
    assert run.failure is not None and run.failure.step == "join"

    resumed = artflow_resume(run, engine=engine, env=SECOND)

    assert_cloned(resumed, run, "start")
    assert_cloned(resumed, run, "body")
    assert_ran(resumed, "join")
    assert resumed["join"].data.body_labels == ["first"] * 3


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_from_a_step_reruns_it_and_what_follows(artflow_run, artflow_resume, engine):
    run = artflow_run(RESUME_FLOW, engine=engine)
    assert run.successful

    from_join = artflow_resume(run, "join", engine=engine, env=SECOND)
    assert_cloned(from_join, run, "start")
    assert_cloned(from_join, run, "body")
    assert_ran(from_join, "join")
    assert_ran(from_join, "end")

    # A step inside the foreach: every split runs again, the split step is cloned.
    from_body = artflow_resume(run, "body", engine=engine, env=SECOND)
    assert_cloned(from_body, run, "start")
    assert_ran(from_body, "body")
    assert [t.index for t in from_body["body"].tasks] == [0, 1, 2]
    assert from_body["join"].data.body_labels == ["second"] * 3


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_of_a_successful_run_clones_every_task(artflow_run, artflow_resume, engine):
    run = artflow_run(RESUME_FLOW, engine=engine)

    resumed = artflow_resume(run, engine=engine, env=SECOND, tags=["again"], max_workers=1)

    assert resumed.successful and resumed.steps == run.steps
    assert "again" in resumed.client.tags and "again" not in run.client.tags
    for step in run.steps:
        assert_cloned(resumed, run, step)
    assert resumed.trace("label") == run.trace("label")


SWITCH = """
    import os

    from metaflow import FlowSpec, Parameter, step

    class SwitchResumeFlow(FlowSpec):
        mode = Parameter("mode", default="fast")

        @step
        def start(self):
            self.seen_at_start = os.environ.get("RESUME_FLOW_LABEL", "first")
            self.next({"fast": self.fast, "slow": self.slow}, condition="mode")

        @step
        def fast(self):
            self.speed = "fast"
            self.next(self.end)

        @step
        def slow(self):
            if os.environ.get("RESUME_FLOW_FAIL") == "slow":
                raise ValueError("slow fails")
            self.speed = "slow " + os.environ.get("RESUME_FLOW_LABEL", "first")
            self.next(self.end)

        @step
        def end(self):
            self.outcome = f"{self.speed} ({self.mode})"
    """


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_after_a_switch_takes_the_branch_the_run_took(
    artflow_run, artflow_resume, flow_file, engine
):
    run = artflow_run(
        flow_file(SWITCH), engine=engine, check=False, env=fail_in("slow"), mode="slow"
    )
    assert run.failure is not None and run.failure.step == "slow"

    resumed = artflow_resume(run, engine=engine, env=SECOND)
    assert resumed.steps == ["start", "slow", "end"]
    assert_cloned(resumed, run, "start")
    assert not resumed["slow"].task.cloned
    assert resumed["end"].data.outcome == "slow second (slow)"

    # From the switch step itself: it runs again and, with the origin's mode, chooses alike.
    again = artflow_resume(resumed, "start", engine=engine, env={"RESUME_FLOW_LABEL": "third"})
    assert again.steps == ["start", "slow", "end"]
    assert not any(t.cloned for t in again.tasks)
    assert again["start"].data.seen_at_start == "third"
    assert again["end"].data.outcome == "slow third (slow)"
    assert again.origin_pathspec == resumed.pathspec


@pytest.mark.parametrize("engine", ENGINES)
def test_parameters_cannot_change_on_resume(artflow_run, artflow_resume, engine):
    run = artflow_run(RESUME_FLOW, engine=engine, check=False, env=fail_in("body"))
    with pytest.raises(FlowRunFailed) as excinfo:
        artflow_resume(run, engine=engine, width=5)
    message = str(excinfo.value)
    # Metaflow's own words, and why.
    assert "Error: no such option: --width" in message
    assert f"with the Parameters of the origin run {run.pathspec}" in message
    assert excinfo.value.run is None
    with pytest.raises(FlowReferenceError, match=r"no Parameter 'depth' \(its Parameters: width\)"):
        artflow_resume(run, engine=engine, depth=5)
    # Not an option of artflow_resume: a Parameter name like any other.
    with pytest.raises(FlowReferenceError, match=r"no Parameter 'params'"):
        artflow_resume(run, engine=engine, params={"width": 5})


@pytest.mark.parametrize("engine", ENGINES)
def test_check_raises_when_the_resumed_run_fails_again(artflow_run, artflow_resume, engine):
    run = artflow_run(RESUME_FLOW, engine=engine, check=False, env=fail_in("body"))

    with pytest.raises(FlowRunFailed, match=r"failed in step 'body'.*ValueError") as excinfo:
        artflow_resume(run, engine=engine, env=fail_in("body"))
    failed = excinfo.value.run
    assert failed is not None and failed.origin_pathspec == run.pathspec

    again = artflow_resume(run, engine=engine, check=False, env={**fail_in("end"), **SECOND})
    assert not again.successful and again.failure.step == "end"
    assert_ran(again, "join")
    # A resumed run can be resumed in turn.
    last = artflow_resume(again, engine=engine, env={"RESUME_FLOW_LABEL": "third"})
    assert last.successful and last["join"].task.origin_pathspec == again["join"].task.pathspec
    assert last["end"].data.label == "third"


@pytest.mark.parametrize("engine", ENGINES)
def test_an_idempotent_step_resumes_once_its_input_exists(
    artflow_run, artflow_resume, artflow_sandbox, engine
):
    from metaflow import FlowSpec, step

    class LoadFlow(FlowSpec):
        @step
        def start(self):
            self.prepared = [1, 2, 3]
            self.next(self.load)

        @step
        def load(self):
            # Relative to the run's working directory: the sandbox.
            with open("input.txt") as f:
                self.loaded = f.read()
            self.next(self.end)

        @step
        def end(self):
            self.result = (self.prepared, self.loaded)

    run = artflow_run(LoadFlow, engine=engine, check=False)
    assert run.failure is not None and run.failure.exception_type == "FileNotFoundError"

    (artflow_sandbox.root / "input.txt").write_text("now here")
    resumed = artflow_resume(run, engine=engine)

    assert resumed["start"].task.origin_pathspec == run["start"].task.pathspec
    assert resumed["end"].data.result == ([1, 2, 3], "now here")


def test_bad_input_gets_one_clear_message(artflow_run, artflow_resume, artflow_step, tmp_path):
    run = artflow_run(RESUME_FLOW, engine="subprocess")
    with pytest.raises(
        UnknownStepError,
        match=r"^ResumeFlow has no step 'boddy' to resume from; its steps: start, body, join, end$",
    ):
        artflow_resume(run, "boddy")
    with pytest.raises(ArtflowError, match=r"takes the FlowRun that artflow_run returned, not"):
        artflow_resume(run.pathspec)
    task = artflow_step(RESUME_FLOW, "join", inputs=[{"square": 1, "label": "x"}])
    with pytest.raises(ArtflowError, match=r"is not a run of a sandbox"):
        artflow_resume(task.run)
    # Nothing was started for any of them.
    assert artflow_run.runs == [run]


def test_the_fixture_needs_no_import_and_refuses_other_sandboxes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_artflow_configure_run(config):
            config.env.setdefault("RESUME_FLOW_LABEL", "hooked")
            # Every run gets it; a resume takes it from the origin run.
            config.parameters.setdefault("width", 2)
        """
    )
    pytester.makepyfile(
        test_it=f"""
        import pytest

        FLOW = {str(RESUME_FLOW)!r}
        RUNS = []

        def test_resume(artflow_run, artflow_resume):
            run = artflow_run(FLOW, check=False, env={{"RESUME_FLOW_FAIL": "end"}})
            RUNS.append(run)
            resumed = artflow_resume(run)
            assert [t.cloned for t in resumed.tasks] == [True] * 4 + [False]
            assert resumed["end"].data.width == 2 and resumed["end"].data.total == 1
            assert resumed["end"].data.label == "hooked"

        def test_other_sandbox(artflow_resume, artflow_sandbox):
            (run,) = RUNS
            with pytest.raises(Exception) as excinfo:
                artflow_resume(run)
            message = str(excinfo.value)
            assert message == (
                f"{{run.pathspec}} ran in another test's sandbox ({{run.sandbox.root}}); "
                f"artflow_resume resumes runs of this test's sandbox "
                f"({{artflow_sandbox.root}}), where Metaflow finds the origin run"
            )
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
