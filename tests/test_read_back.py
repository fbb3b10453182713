"""Reading a run back: unbounded foreach (``@parallel``) steps, and tasks that
cannot be read, which are named without losing the rest of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_artflow import ArtifactReadError, FlowRunFailed
from pytest_artflow.results import FlowRun, read_run

FLOWS = Path(__file__).parent / "flows"
ENGINES = ["fork", "subprocess"]

# Metaflow's own example of an unbounded-foreach implementation (the one its
# test suite uses): the control task has no foreach index of its own.
UNBOUNDED = """
from metaflow import FlowSpec, step, unbounded_test_foreach_internal
from metaflow.plugins import InternalTestUnboundedForeachInput


class UnboundedFlow(FlowSpec):
    @step
    def start(self):
        self.items = InternalTestUnboundedForeachInput([5, 6, 7])
        self.next(self.inner, foreach="items")

    @unbounded_test_foreach_internal
    @step
    def inner(self):
        self.got = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [i.got for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnboundedFlow()
"""

# A class the flow imports inside a step from a module only the flow's
# processes can import: the step writes it to a directory of its own.
SHAPES = """
class Square:
    def __init__(self, side):
        self.side = side
"""

LOCAL_CLASS = f"""
from metaflow import FlowSpec, step

SHAPES = {SHAPES!r}


class LocalClassFlow(FlowSpec):
    @step
    def start(self):
        self.sides = [1, 2, 3]
        self.next(self.draw, foreach="sides")

    @step
    def draw(self):
        self.side = self.input
        if self.input == 2:
            import sys, tempfile

            where = tempfile.mkdtemp()
            with open(where + "/shapes.py", "w") as f:
                f.write(SHAPES)
            sys.path.insert(0, where)
            from shapes import Square

            self.shape = Square(self.input)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.drawn = [i.side for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass
"""

LINEAR = """
from metaflow import FlowSpec, step


class KeptFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = list(range(50))
        self.label = "kept"
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.numbers)
"""


def client_indices(run: FlowRun, step: str) -> dict[str, int | None]:
    return {task.pathspec: task.index for task in run.client[step]}


# -- unbounded foreach --


@pytest.mark.parametrize("engine", ENGINES)
def test_parallel_step_reads_back_control_task_first_then_workers(artflow_run, engine):
    run = artflow_run(FLOWS / "parallel_flow.py", engine=engine)
    train = run["train"].tasks
    # Locally the control task is also node 0: its index is 0, as the client says.
    assert [t.index for t in train] == [0, 1, 2]
    assert [t.data.node for t in train] == [0, 1, 2]
    assert [t.control for t in train] == [True, False, False]
    assert [t.data.nodes for t in train] == [3, 3, 3]
    assert run.trace("value") == {"train": [10, 11, 12]}
    assert run["join"].data.values == [10, 11, 12]
    assert run["join"].data.nodes_seen == [0, 1, 2]
    assert run.steps == ["start", "train", "join", "end"]
    # What Metaflow's client shows of the same tasks.
    assert client_indices(run, "train") == {t.pathspec: t.index for t in train}
    assert [t.pathspec for t in run.client["train"].control_tasks()] == [train[0].pathspec]


@pytest.mark.parametrize("engine", ENGINES)
def test_unbounded_foreach_control_task_has_no_index_and_comes_first(
    artflow_run, flow_file, engine
):
    run = artflow_run(flow_file(UNBOUNDED), engine=engine)
    inner = run["inner"].tasks
    assert [t.index for t in inner] == [None, 0, 1, 2]
    assert [t.control for t in inner] == [True, False, False, False]
    # The control task runs no step code: only the workers have the artifact.
    assert "got" not in inner[0].data
    assert run.trace("got") == {"inner": [5, 6, 7]}
    assert run["join"].data.values == [5, 6, 7]
    assert client_indices(run, "inner") == {t.pathspec: t.index for t in inner}
    assert [t.pathspec for t in run.client["inner"].control_tasks()] == [inner[0].pathspec]


@pytest.mark.parametrize("engine", ENGINES)
def test_failing_parallel_worker_is_the_failure_not_its_control_task(
    artflow_run, flow_file, engine
):
    path = flow_file(
        (FLOWS / "parallel_flow.py")
        .read_text()
        .replace(
            "        self.value = self.base + self.node\n",
            "        self.value = self.base + self.node\n"
            "        if self.node == 2:\n"
            "            raise ValueError('node 2 broke')\n",
        )
    )
    with pytest.raises(FlowRunFailed) as excinfo:
        artflow_run(path, engine=engine)
    run = excinfo.value.run
    assert run is not None
    control, good, bad = run["train"].tasks
    assert [control.successful, good.successful, bad.successful] == [False, True, False]
    assert run.failure is not None
    assert (run.failure.task, run.failure.exception_type) == (bad.pathspec, "ValueError")
    assert run.failure.message == "node 2 broke"
    assert f"failed in step 'train' (task {bad.pathspec}): ValueError: node 2 broke" in str(
        excinfo.value
    )
    assert good.data.value == 11


@pytest.mark.parametrize("engine", ENGINES)
def test_parallel_workers_run_for_a_file_python_could_not_run_as_a_script(
    artflow_run, flow_file, engine
):
    """Metaflow starts a local ``@parallel`` step's workers as ``python <flow
    file> step ...``; they run under the launcher, as the tasks do, so a flow
    file without a ``__main__`` block runs every worker."""
    source = (FLOWS / "parallel_flow.py").read_text()
    path = flow_file(source[: source.index('if __name__ == "__main__":')])
    run = artflow_run(path, engine=engine)
    control, *workers = run["train"].tasks
    assert control.control and [w.control for w in workers] == [False, False]
    assert [t.index for t in run["train"].tasks] == [0, 1, 2]
    assert run.trace("value")["train"] == [10, 11, 12]


# -- tasks that cannot be read --


@pytest.mark.parametrize("engine", ENGINES)
def test_artifact_of_a_class_this_process_cannot_import_is_named_and_the_run_kept(
    artflow_run, flow_file, engine
):
    path = flow_file(LOCAL_CLASS)
    run = artflow_run(path, engine=engine, check=False)

    # Metaflow's flags are the client's; what this process cannot read is the failure.
    assert run.successful and run.finished and not run.readable
    bad = run["draw"].tasks[1]
    assert run.failure is not None
    assert (run.failure.step, run.failure.task) == ("draw", bad.pathspec)
    assert run.failure.exception_type == "ArtifactReadError"
    problem = (
        f"artifact 'shape' of step 'draw' (task {bad.pathspec}) was saved but does not "
        "load back: ModuleNotFoundError: No module named 'shapes'"
    )
    assert problem in run.failure.message
    assert bad.unreadable == {"shape": "ModuleNotFoundError: No module named 'shapes'"}
    assert not bad.readable
    # Reading that artifact says why; everything else reads as usual.
    with pytest.raises(ArtifactReadError) as excinfo:
        bad.data.shape  # noqa: B018
    assert str(excinfo.value) == problem
    with pytest.raises(ArtifactReadError, match="No module named 'shapes'"):
        bad.artifacts["shape"]
    with pytest.raises(ArtifactReadError, match="No module named 'shapes'"):
        run.trace("shape")
    assert bad.data.side == 2
    with pytest.raises(AttributeError, match="has no artifact 'sides_typo'"):
        bad.data.sides_typo  # noqa: B018
    with pytest.raises(KeyError) as missing:
        bad.artifacts["sides_typo"]
    assert not isinstance(missing.value, ArtifactReadError)
    assert bad.successful
    assert [t.index for t in run["draw"].tasks] == [0, 1, 2]
    assert [t.readable for t in run["draw"].tasks] == [True, False, True]
    assert run.trace("side") == {"draw": [1, 2, 3]}
    assert run["join"].data.drawn == [1, 2, 3]
    assert run["end"].task.successful


@pytest.mark.parametrize("engine", ENGINES)
def test_unreadable_artifact_fails_where_it_is_read_naming_it(artflow_run, flow_file, engine):
    """Values load when first asked for: a checked run returns, and the
    artifact that does not load raises where it is read, naming it; from then
    on it is the run's failure."""
    path = flow_file(LOCAL_CLASS)
    run = artflow_run(path, engine=engine)
    bad = run["draw"].tasks[1]
    assert run.failure is None
    problem = (
        f"artifact 'shape' of step 'draw' (task {bad.pathspec}) was saved but does not "
        "load back: ModuleNotFoundError: No module named 'shapes'"
    )
    with pytest.raises(ArtifactReadError) as excinfo:
        bad.data.shape  # noqa: B018
    assert str(excinfo.value) == problem
    assert run.failure is not None
    assert (run.failure.task, run.failure.exception_type) == (bad.pathspec, "ArtifactReadError")
    assert problem in run.failure.message
    assert run["join"].data.drawn == [1, 2, 3]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_exception_stays_the_failure_of_a_task_that_also_cannot_be_read(
    artflow_run, flow_file, engine
):
    path = flow_file(
        LOCAL_CLASS.replace(
            "            self.shape = Square(self.input)\n",
            "            self.shape = Square(self.input)\n"
            "            raise ValueError('drawing broke')\n",
        )
    )
    run = artflow_run(path, engine=engine, check=False)
    bad = run["draw"].tasks[1]
    assert run.failure is not None
    assert (run.failure.task, run.failure.exception_type) == (bad.pathspec, "ValueError")
    assert run.failure.message == "drawing broke"
    assert bad.unreadable == {"shape": "ModuleNotFoundError: No module named 'shapes'"}


def _blob(run: FlowRun, root: Path, step: str, name: str) -> Path:
    sha = run.client[step].task[name].sha
    return root / ".metaflow" / run.flow_name / "data" / sha[:2] / sha


def _reread(run: FlowRun) -> FlowRun:
    assert run.sandbox is not None and run.flow is not None
    return read_run(run.sandbox, run.flow, run.run_id)


def test_corrupt_artifact_file_is_named_and_the_rest_reads(artflow_run, artflow_sandbox, flow_file):
    run = artflow_run(flow_file(LINEAR))
    # The content-addressed file `numbers` (and only it) is stored in.
    _blob(run, artflow_sandbox.root, "start", "numbers").write_bytes(b"not gzip at all")

    again = _reread(run)
    assert again.successful and not again.readable
    start = again["start"].task
    assert set(start.unreadable) == {"numbers"}
    assert "Not a gzipped file" in start.unreadable["numbers"]
    assert again.failure is not None
    assert (again.failure.step, again.failure.task) == ("start", start.pathspec)
    assert f"artifact 'numbers' of step 'start' (task {start.pathspec})" in again.failure.message
    with pytest.raises(ArtifactReadError, match="artifact 'numbers' of step 'start'"):
        start.data.numbers  # noqa: B018
    assert start.data.label == "kept"
    assert again["end"].data.total == sum(range(50))
    assert set(again["end"].task.unreadable) == {"numbers"}


def test_missing_artifact_file_is_named(artflow_run, artflow_sandbox, flow_file):
    run = artflow_run(flow_file(LINEAR))
    blob = _blob(run, artflow_sandbox.root, "end", "total")
    blob.unlink()

    again = _reread(run)
    end = again["end"].task
    assert end.unreadable == {"total": f"its content is missing from the datastore: {blob}"}
    assert again.failure is not None and again.failure.task == end.pathspec
    assert again["start"].task.readable
    assert end.data.label == "kept"


def test_task_whose_datastore_record_is_corrupt_is_kept_with_the_problem(
    artflow_run, artflow_sandbox, flow_file
):
    run = artflow_run(flow_file(LINEAR))
    task_dir = artflow_sandbox.root / ".metaflow" / run.flow_name / run.run_id / "start"
    (record,) = task_dir.glob("*/0.data.json")
    record.write_text("{ truncated")

    again = _reread(run)
    start = again["start"].task
    assert start.read_error is not None and "JSONDecodeError" in start.read_error
    assert not start.successful
    assert start.pathspec == run["start"].task.pathspec
    assert again.failure is not None and again.failure.task == start.pathspec
    assert f"of step 'start' (task {start.pathspec}) could not be read back" in (
        again.failure.message
    )
    with pytest.raises(ArtifactReadError, match="could not be read back: JSONDecodeError"):
        start.data.label  # noqa: B018
    assert again["end"].data.label == "kept"


def test_artflow_item_fails_naming_the_task_that_does_not_load(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        fragile_parallel_flow="""
        from metaflow import FlowSpec, current, parallel, step


        def rebuild():
            raise RuntimeError("cannot be rebuilt")


        class Fragile:
            def __reduce__(self):
                return (rebuild, ())


        class FragileParallelFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.train, num_parallel=3)

            @parallel
            @step
            def train(self):
                self.node = current.parallel.node_index
                if self.node == 2:
                    self.model = Fragile()
                self.next(self.join)

            @step
            def join(self, inputs):
                self.nodes = [i.node for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass


        # Metaflow starts a @parallel step's workers as `python <flow file> step ...`.
        if __name__ == "__main__":
            FragileParallelFlow()
        """
    )
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "FragileParallelFlow/* failed in step 'train' "
            "(task FragileParallelFlow/*/train/*_node_2): ArtifactReadError: *",
            "artifact 'model' of step 'train' (task FragileParallelFlow/*/train/*_node_2) "
            "was saved but does not load back: RuntimeError: cannot be rebuilt",
        ]
    )


def test_unbounded_foreach_flow_passes_as_an_artflow_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(unbounded_flow=UNBOUNDED)
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(passed=1)
