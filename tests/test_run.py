"""artflow_run end to end: real Metaflow runs in a sandbox, read back through the client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_artflow import FlowReferenceError, FlowRunFailed, metaflow_seam

CORPUS = Path(__file__).parent / "flows"

LINEAR = """
    from metaflow import FlowSpec, Parameter, JSONType, step

    class LinearFlow(FlowSpec):
        alpha = Parameter("alpha", default=1)
        config = Parameter("my-config", type=JSONType, default='{"a": 1}')

        @step
        def start(self):
            self.x = self.alpha * 10
            self.seen_config = self.config
            self.next(self.end)

        @step
        def end(self):
            import os, sys
            print("to stdout")
            print("to stderr", file=sys.stderr)
            self.home = os.environ["HOME"]
            self.cwd = os.getcwd()
    """


def test_parameters_keyword_and_params_mapping(artflow_run, flow_file):
    path = flow_file(LINEAR)
    run = artflow_run(path, alpha=4, params={"my-config": {"b": [1, 2]}})
    assert run.successful
    assert run["start"].data.x == 40
    assert run["end"].data.seen_config == {"b": [1, 2]}
    assert run["end"].data.alpha == 4
    # `name` and Parameter values are artifacts, as the client shows them.
    assert run["end"].task.artifacts["name"] == "LinearFlow"


def test_stdout_and_stderr_per_task(artflow_run, flow_file):
    run = artflow_run(flow_file(LINEAR))
    assert run["end"].stdout == "to stdout\n"
    assert run["end"].stderr == "to stderr\n"
    assert run["start"].stdout == ""


def test_processes_run_inside_the_sandbox(artflow_run, artflow_sandbox, flow_file):
    run = artflow_run(flow_file(LINEAR))
    assert run["end"].data.cwd == str(artflow_sandbox.root)
    assert run["end"].data.home.startswith(str(artflow_sandbox.root))
    assert (artflow_sandbox.root / ".metaflow" / "LinearFlow" / run.run_id).is_dir()


def test_unknown_parameter_is_named(artflow_run, flow_file):
    with pytest.raises(
        FlowReferenceError, match=r"no Parameter 'beta' \(its Parameters: alpha, my-config\)"
    ):
        artflow_run(flow_file(LINEAR), beta=1)


def test_missing_required_parameter_gets_metaflows_message(artflow_run, flow_file):
    path = flow_file(
        """
        from metaflow import FlowSpec, Parameter, step

        class NeedsFlow(FlowSpec):
            alpha = Parameter("alpha", required=True)

            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    with pytest.raises(FlowRunFailed, match="could not start") as info:
        artflow_run(path)
    assert "--alpha" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_include_file_default_relative_to_the_flow_file(artflow_run, flow_file):
    path = flow_file(
        """
        from metaflow import FlowSpec, IncludeFile, step

        class IncludeFlow(FlowSpec):
            text = IncludeFile("text", default="data.txt")

            @step
            def start(self):
                self.upper = self.text.upper()
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    (path.parent / "data.txt").write_text("hello")
    run = artflow_run(path)
    assert run["start"].data.upper == "HELLO"
    assert run["end"].data.text == "hello"


def test_nested_foreach_tasks_in_index_order(artflow_run, flow_file):
    path = flow_file(
        """
        from metaflow import FlowSpec, step

        class NestedFlow(FlowSpec):
            @step
            def start(self):
                self.outer = ["a", "b"]
                self.next(self.mid, foreach="outer")

            @step
            def mid(self):
                self.letter = self.input
                self.inner = list(range(12))
                self.next(self.leaf, foreach="inner")

            @step
            def leaf(self):
                self.label = f"{self.letter}{self.input}"
                self.next(self.join_inner)

            @step
            def join_inner(self, inputs):
                self.labels = [i.label for i in inputs]
                self.next(self.join_outer)

            @step
            def join_outer(self, inputs):
                self.all = [i.labels for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    run = artflow_run(path)
    expected = [f"{letter}{i}" for letter in "ab" for i in range(12)]
    # Task ids do not follow index order past 10 splits; the results do.
    assert run.trace("label")["leaf"] == expected
    assert [t.index for t in run["mid"].tasks] == [0, 1]
    if metaflow_seam.foreach_join_inputs_in_order():
        assert run["end"].data.all == [expected[:12], expected[12:]]
    else:  # Metaflow before 2.19.23 hands a join over >4 splits its inputs unordered.
        assert [sorted(x) for x in run["end"].data.all] == [
            sorted(expected[:12]),
            sorted(expected[12:]),
        ]


def test_retry_keeps_every_attempt(artflow_run, flow_file, tmp_path):
    path = flow_file(
        """
        import os
        from metaflow import FlowSpec, retry, step

        class RetryFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.flaky)

            @retry(times=2, minutes_between_retries=0)
            @step
            def flaky(self):
                from metaflow import current
                self.attempt_seen = current.retry_count
                print("attempt", current.retry_count)
                if current.retry_count == 0:
                    raise RuntimeError("first attempt fails")
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    run = artflow_run(path)
    task = run["flaky"].task
    assert task.attempt == 1
    assert task.data.attempt_seen == 1
    assert [a.attempt for a in task.attempts] == [0, 1]
    first = task.attempts[0]
    assert not first.successful
    assert first.stdout == "attempt 0\n"
    assert "first attempt fails" in first.stderr


def test_catch_records_the_exception_and_goes_on(artflow_run, flow_file):
    path = flow_file(
        """
        from metaflow import FlowSpec, catch, step

        class CatchFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.risky)

            @catch(var="problem", print_exception=False)
            @step
            def risky(self):
                raise KeyError("missing")
                self.next(self.end)

            @step
            def end(self):
                self.caught = type(self.problem).__name__
        """
    )
    run = artflow_run(path)
    assert run.successful
    assert "missing" in str(run["risky"].data.problem)
    assert run["end"].data.caught == "MetaflowExceptionWrapper"


def test_switch_runs_only_the_chosen_branch(artflow_run):
    run = artflow_run(CORPUS / "switch_flow.py", mode="slow")
    assert run.steps == ["start", "slow", "end"]
    assert run["end"].data.outcome == "slow via start"


FAILING = """
    from metaflow import FlowSpec, step

    class FailingFlow(FlowSpec):
        @step
        def start(self):
            self.ok = "made it"
            self.next(self.middle)

        @step
        def middle(self):
            print("about to fail")
            raise ValueError("bad value %d" % 42)
            self.next(self.end)

        @step
        def end(self):
            pass
    """


def test_failed_run_raises_with_step_exception_and_output(artflow_run, flow_file):
    with pytest.raises(FlowRunFailed) as info:
        artflow_run(flow_file(FAILING))
    message = str(info.value)
    assert "failed in step 'middle'" in message
    assert "ValueError: bad value 42" in message
    assert 'raise ValueError("bad value %d" % 42)' in message
    assert "about to fail" in message
    assert "metaflow/task.py" not in message
    assert info.value.run is not None and info.value.run["start"].data.ok == "made it"


def test_check_false_returns_the_failed_run(artflow_run, flow_file):
    run = artflow_run(flow_file(FAILING), check=False)
    assert not run.successful
    assert run.steps == ["start", "middle"]
    assert run["start"].data.ok == "made it"
    assert run.failure.step == "middle"
    assert run.failure.exception_type == "ValueError"
    assert run.failure.message == "bad value 42"
    assert run.failure.stdout == "about to fail\n"
    assert "line" in run.failure.traceback
    assert not run["middle"].task.successful


def test_unknown_step_lists_the_real_ones(artflow_run):
    from examples.art_flow import ArtFlow

    run = artflow_run(ArtFlow)
    with pytest.raises(
        KeyError, match="has no step 'nope'; the steps that ran: start, middle, end"
    ):
        run["nope"]


def test_every_artifact_name_reads_the_artifact(artflow_run, flow_file):
    path = flow_file(
        """
        from metaflow import FlowSpec, step

        class NamesFlow(FlowSpec):
            @step
            def start(self):
                self.values = [1, 2]
                self.items = "on the shelf"
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    data = artflow_run(path)["start"].data
    assert data.values == [1, 2]
    assert data.items == "on the shelf"
    assert data["values"] == [1, 2] and "items" in data and "keys" not in data
    assert set(data) == {"values", "items", "name"} and len(data) == 3
    with pytest.raises(AttributeError, match=r"no artifact 'keys'.*use \.artifacts"):
        data.keys()


def test_reading_a_run_copies_nothing_into_the_client_cache(artflow_run, artflow_sandbox):
    from examples.art_flow import ArtFlow

    run = artflow_run(ArtFlow)
    assert run["end"].data.some_data == [1, 2, 4]
    # Artifacts are loaded straight from the datastore; the client's file
    # cache would cost a directory and a file per artifact.
    cache = artflow_sandbox.root / "client_cache"
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_client_sees_the_sandbox_and_nothing_else(artflow_run):
    from metaflow import Flow, Run, namespace

    from examples.art_flow import ArtFlow

    first = artflow_run(ArtFlow)
    second = artflow_run(ArtFlow)
    assert Flow("ArtFlow").latest_run.id == second.run_id
    assert Run(first.pathspec).data.some_data == [1, 2, 4]
    assert {r.id for r in Flow("ArtFlow")} == {first.run_id, second.run_id}
    namespace("user:artflow")
    assert Flow("ArtFlow").latest_run.id == second.run_id
    assert second.client["middle"].task.data.some_data == [1, 2, 4]


def test_a_step_using_the_client_sees_the_sandbox(artflow_run, flow_file):
    producer = flow_file(
        """
        from metaflow import FlowSpec, step

        class ProducerFlow(FlowSpec):
            @step
            def start(self):
                self.model = {"weights": [0.5]}
                self.next(self.end)

            @step
            def end(self):
                pass
        """,
        name="producer.py",
    )
    consumer = flow_file(
        """
        from metaflow import Flow, FlowSpec, step

        class ConsumerFlow(FlowSpec):
            @step
            def start(self):
                run = Flow("ProducerFlow").latest_successful_run
                self.used = (run.id, run.data.model)
                self.next(self.end)

            @step
            def end(self):
                pass
        """,
        name="consumer.py",
    )
    produced = artflow_run(producer)
    consumed = artflow_run(consumer)
    assert consumed["start"].data.used == (produced.run_id, {"weights": [0.5]})


def test_classes_defined_in_the_flow_file_load_in_the_test(artflow_run, flow_file):
    path = flow_file(
        """
        from dataclasses import dataclass
        from metaflow import FlowSpec, step

        @dataclass
        class Point:
            x: int
            y: int

        class PointFlow(FlowSpec):
            @step
            def start(self):
                self.point = Point(1, 2)
                self.next(self.end)

            @step
            def end(self):
                self.moved = Point(self.point.x + 1, self.point.y)
        """
    )
    run = artflow_run(path)
    assert run["end"].data.moved.x == 2
    assert type(run["end"].data.moved).__name__ == "Point"


def test_sandbox_environment_drops_the_callers_metaflow_settings(artflow_sandbox, monkeypatch):
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "s3")
    monkeypatch.setenv("USERNAME", "root")
    env = artflow_sandbox.environ()
    assert env["METAFLOW_DEFAULT_DATASTORE"] == "local"
    assert env["METAFLOW_USER"] == "artflow"
    assert "USERNAME" not in env
    assert env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] == str(artflow_sandbox.root)
    assert os.environ["METAFLOW_DEFAULT_DATASTORE"] == "s3"


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_unpicklable_artifact_is_named_down_to_the_member(artflow_run, flow_file, engine):
    path = flow_file(
        """
        import threading
        from metaflow import FlowSpec, step

        class Model:
            def __init__(self):
                self.callbacks = [print, len, threading.RLock()]

        class LockFlow(FlowSpec):
            @step
            def start(self):
                self.model = Model()
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    run = artflow_run(path, check=False, engine=engine)
    assert run.failure.step == "start"
    assert run.failure.exception_type == "UnpicklableArtifactException"
    assert run.failure.message == (
        'Cannot pickle dump artifact named "model": model.callbacks[2]: _thread.RLock'
    )
    with pytest.raises(FlowRunFailed, match=r"failed in step 'start'.*model\.callbacks\[2\]"):
        artflow_run(path, engine=engine)


RELATIVE_FLOW = """
from metaflow import FlowSpec, step

from .utils import norm


class RelativeFlow(FlowSpec):
    @step
    def start(self):
        self.x = norm(5)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def assert_relative_import_message(text: str, file: str, absolute: str | None) -> None:
    """One message naming the file, the line and what to write instead;
    no traceback of the loader, the fork server or the launcher."""
    assert f"{file}:4: `from .utils import norm` is a relative import" in text
    assert "a flow file runs as the module __main__" in text
    if absolute:
        assert f"`{absolute}`" in text
    assert "`from utils import norm`" in text
    for noise in ("Traceback", "^^^", "server.py", "launch.py", "program.py", "stepjob.py"):
        assert noise not in text


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_a_relative_import_in_a_flow_file_says_what_to_write(
    pytester: pytest.Pytester, engine: str
) -> None:
    """As under ``python flow.py run`` the file runs as ``__main__`` and its
    relative import fails, in the run's processes (a flow of a package that
    the test imports) and in the pytest process (a flow file in no package)."""
    pkg = pytester.mkpydir("mypkg")
    (pkg / "utils.py").write_text("def norm(x):\n    return x / 10\n")
    (pkg / "rel_flow.py").write_text(RELATIVE_FLOW)
    loose = pytester.mkdir("loose")
    (loose / "utils.py").write_text("def norm(x):\n    return x / 10\n")
    (loose / "rel_flow.py").write_text(RELATIVE_FLOW)
    pytester.makepyfile(
        test_it="""
        import pytest

        from mypkg.rel_flow import RelativeFlow
        from pytest_artflow import ArtflowError


        def test_class_of_a_package(artflow_run):
            with pytest.raises(ArtflowError) as info:
                artflow_run(RelativeFlow)
            print("MESSAGE<" + str(info.value) + ">MESSAGE")


        def test_file_in_no_package(artflow_run):
            with pytest.raises(ArtflowError) as info:
                artflow_run("loose/rel_flow.py")
            print("MESSAGE<" + str(info.value) + ">MESSAGE")
        """
    )
    result = pytester.runpytest_subprocess(f"--artflow-engine={engine}", "-s", "test_it.py")
    result.assert_outcomes(passed=2)
    messages = result.stdout.str().split("MESSAGE<")[1:]
    assert len(messages) == 2
    in_run = messages[0].split(">MESSAGE")[0]
    assert in_run.startswith("RelativeFlow (") and "could not start" in in_run
    assert_relative_import_message(in_run, str(pkg / "rel_flow.py"), "from mypkg.utils import norm")
    at_load = messages[1].split(">MESSAGE")[0]
    assert_relative_import_message(at_load, str(loose / "rel_flow.py"), None)

    # pytest --artflow: the flow of the package runs in its own processes.
    result = pytester.runpytest_subprocess(f"--artflow-engine={engine}", "--artflow", "mypkg")
    result.assert_outcomes(failed=1)
    failure = (
        result.stdout.str()
        .split("artflow: mypkg/rel_flow.py::RelativeFlow")[1]
        .split("sandbox kept")[0]
    )
    assert_relative_import_message(
        failure, str(pkg / "rel_flow.py"), "from mypkg.utils import norm"
    )


MOVIE_STATS = """
    from metaflow import FlowSpec, step

    class MovieStatsFlow(FlowSpec):
        @step
        def start(self):
            self.genre_stats = {"sci-fi": 3, "drama": 5}
            self.next(self.end)

        @step
        def end(self):
            pass
    """

PLAYLIST = """
    from metaflow import Flow, FlowSpec, step

    class PlayListFlow(FlowSpec):
        @step
        def start(self):
            # As Metaflow's tutorial 03 reads tutorial 02's run.
            run = Flow("MovieStatsFlow").latest_successful_run
            self.stats_run = run.id
            self.top_genre = max(run.data.genre_stats, key=run.data.genre_stats.get)
            self.next(self.end)

        @step
        def end(self):
            pass
    """


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_a_flow_reading_another_flows_run_runs_after_it_in_one_sandbox(
    artflow_run, flow_file, engine
):
    """The README's way to test a flow that reads another flow's run (which
    ``pytest --artflow`` cannot: each flow runs alone in its own sandbox)."""
    stats = artflow_run(flow_file(MOVIE_STATS, name="stats.py"), engine=engine)
    playlist = artflow_run(flow_file(PLAYLIST, name="playlist.py"), engine=engine)
    assert playlist["start"].data.stats_run == stats.run_id
    assert playlist["start"].data.top_genre == "drama"


@pytest.mark.parametrize(
    ("package", "line", "instead"),
    [
        (
            True,
            "from .utils import norm",
            ["`from mypkg.utils import norm`", "`from utils import norm`"],
        ),
        (True, "from . import utils", ["`from mypkg import utils`", "`import utils`"]),
        (True, "from ..common import norm", ["an absolute import of the module"]),
        (False, "from .utils import norm", ["`from utils import norm`"]),
    ],
)
def test_the_relative_import_message_for_each_form(tmp_path, package, line, instead):
    from pytest_artflow.inflow.launch import relative_import_failure

    folder = tmp_path / "mypkg"
    folder.mkdir()
    if package:
        (folder / "__init__.py").write_text("")
    path = folder / "rel_flow.py"
    path.write_text(f"import os\n\n{line}\n")
    # Executed as a program's __main__ is: a module of no package.
    with pytest.raises(ImportError) as info:
        exec(compile(path.read_text(), str(path), "exec"), {"__name__": "__main__"})
    message = relative_import_failure(str(path), info.value)
    assert message is not None
    assert message.startswith(f"{path}:3: `{line}` is a relative import")
    for advice in instead:
        assert advice in message
    assert relative_import_failure(str(path), ImportError("No module named 'x'")) is None
