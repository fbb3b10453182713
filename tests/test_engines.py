"""The ``fork`` engine against the reference ``subprocess`` engine.

Every flow of the corpus in ``tests/flows`` runs under both engines, in the
same sandbox, and what Metaflow recorded must be the same: the steps, the
tasks and every attempt of each, their artifacts, stdout and stderr, their
success flags and the runtime's log, once run ids, task ids, pids, timestamps
and the sandbox path are written the same way. Then timeouts, Ctrl-C, what a
run leaves in the pytest process and in other sandboxes, and coverage.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cardhtml
import pytest
from processes import children

from pytest_artflow import FlowRunFailed
from pytest_artflow.compare import artifacts_equal, explain
from pytest_artflow.errors import FlowLoadWarning
from pytest_artflow.forkserver import markers
from pytest_artflow.results import FlowRun, TaskResult

FLOWS = Path(__file__).parent / "flows"
ENGINES = ("subprocess", "fork")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork engine needs os.fork")

#: corpus file -> Parameter values of the run.
CORPUS: dict[str, dict[str, Any]] = {
    "linear_flow.py": {},
    "branch_flow.py": {},
    "foreach_flow.py": {"width": 3},
    "nested_foreach_flow.py": {},
    "switch_flow.py": {"mode": "slow"},
    "retry_flow.py": {},
    "catch_flow.py": {},
    "catch_end_flow.py": {},
    "parameters_flow.py": {"count": 4, "verbose": True, "my-settings": {"depth": 5}},
    "include_file_flow.py": {},
    "user_config_flow.py": {},
    "card_flow.py": {},
    "card_error_flow.py": {},
    "output_flow.py": {},
    "failing_flow.py": {},
    "config_flow.py": {},
    "environment_flow.py": {},
    "resume_flow.py": {"width": 2},
    "parallel_flow.py": {},
    "numpy_flow.py": {},
}

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")
_PID = re.compile(r"\(pid \d+\)")


class Normalizer:
    """Writes what legitimately differs between two runs of one flow the same way."""

    def __init__(self, run: FlowRun, root: Path) -> None:
        self.replacements = [(str(root), "<sandbox>"), (run.run_id, "<run>")]
        for task in run.tasks:
            step_path = task.pathspec.rsplit("/", 1)[0]
            self.replacements.append((f"{step_path}/{task.id}", f"{step_path}/<task>"))
            self.replacements.append((f"/{task.step}/{task.id} ", f"/{task.step}/<task> "))

    def text(self, text: str) -> str:
        for old, new in self.replacements:
            text = text.replace(old, new)
        return text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if type(value) in (list, tuple):
            return type(value)(self.value(v) for v in value)
        return value

    def log(self, output: str) -> list[str]:
        """The runtime's log as a sorted list of lines: parallel tasks interleave."""
        lines = (_PID.sub("(pid <pid>)", _TIMESTAMP.sub("", line)) for line in output.splitlines())
        return sorted(self.text(line) for line in lines if line.strip())


#: The columns of the default card's "Task Metadata" table: times and durations.
_TASK_METADATA = ["Task Created On", "Task Finished On", "Tags", "Attempt", "Task Duration", "User"]


def card_content(card: Any, norm: Normalizer) -> dict[str, Any]:
    """What a card shows, but for when the task ran and how long it took."""
    html = card.get()
    return norm.value(
        {
            "type": card.type,
            "id": card.id,
            "markdown": cardhtml.markdown(html),
            "logs": cardhtml.logs(html),
            "tables": [t for t in cardhtml.tables(html) if t["columns"] != _TASK_METADATA],
        }
    )


def snapshot(run: FlowRun, root: Path) -> dict[str, Any]:
    """Everything a run recorded that both engines must agree on."""
    norm = Normalizer(run, root)

    def attempt(task: TaskResult) -> dict[str, Any]:
        caught = task.caught
        return {
            "attempt": task.attempt,
            "successful": task.successful,
            "finished": task.finished,
            "caught": None
            if caught is None
            else [caught.type, caught.message, caught.var, norm.text(caught.traceback)],
            "stdout": norm.text(task.stdout),
            "stderr": norm.text(task.stderr),
            "artifacts": norm.value(task.artifacts),
            "cards": sorted((card_content(c, norm) for c in task.cards), key=repr),
        }

    failure = run.failure
    return {
        "successful": run.successful,
        "finished": run.finished,
        "steps": run.steps,
        "tasks": {
            step.name: [
                {
                    "index": t.index,
                    "control": t.control,
                    "foreach": t.order[0],
                    "attempts": [attempt(a) for a in t.attempts],
                }
                for t in step.tasks
            ]
            for step in run
        },
        "failure": None
        if failure is None
        else {
            "step": failure.step,
            "exception_type": failure.exception_type,
            "message": norm.text(failure.message),
            "traceback": norm.text(failure.traceback),
            "caught": failure.caught,
        },
        "log": norm.log(run.output),
    }


@pytest.fixture
def fork_results(request, monkeypatch) -> list[Any]:
    """The ``EngineResult`` of every run the session's fork engine makes in the test."""
    from pytest_artflow.settings import engines_key

    engine = request.config.stash[engines_key].get("fork")
    results: list[Any] = []
    original = engine.run

    def recording(job: Any) -> Any:
        results.append(original(job))
        return results[-1]

    monkeypatch.setattr(engine, "run", recording)
    return results


def assert_same(reference: dict[str, Any], candidate: dict[str, Any]) -> None:
    if not artifacts_equal(reference, candidate):
        pytest.fail("the engines disagree:\n" + "\n".join(explain(reference, candidate)))


@pytest.mark.parametrize("flow", sorted(CORPUS))
def test_fork_records_what_subprocess_records(artflow_run, artflow_sandbox, fork_results, flow):
    runs = {
        engine: artflow_run(FLOWS / flow, engine=engine, check=False, params=CORPUS[flow])
        for engine in ENGINES
    }
    # The fork engine did fork (it did not hand the run or its tasks to new interpreters).
    assert [(r.extra["refused"], r.extra["tasks"]) for r in fork_results] == [(None, "forked")]
    reference, candidate = (snapshot(runs[e], artflow_sandbox.root) for e in ENGINES)
    assert_same(reference, candidate)
    # The corpus does what its docstrings say (so the comparison is not vacuous).
    expected_failure = flow == "failing_flow.py"
    assert reference["finished"] is not expected_failure
    assert reference["successful"] is not (expected_failure or flow == "catch_end_flow.py")
    has_cards = [a["cards"] for t in reference["tasks"].values() for r in t for a in r["attempts"]]
    assert any(has_cards) is flow.startswith("card_")


#: Resumes of runs of ``resume_flow.py``: (environment of the origin run, step to
#: resume from). The resume runs without the failure the environment asked for.
RESUMES: dict[str, tuple[dict[str, str], str | None]] = {
    "failed split": ({"RESUME_FLOW_FAIL": "body"}, None),
    "failed join": ({"RESUME_FLOW_FAIL": "join"}, None),
    "from the foreach": ({}, "body"),
    "successful run": ({}, None),
}

_ANY_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")
_CLONED = re.compile(r"Cloning previously run task (\d+)/(\w+)/(\d+)")


def resume_snapshot(origin: FlowRun, resumed: FlowRun, root: Path) -> dict[str, Any]:
    """``snapshot`` of a resumed run, with each task's origin as the position of
    the origin task it was cloned from (ids differ between runs)."""
    position = {t.pathspec: (t.step, t.order[0]) for t in origin.tasks}
    recorded = snapshot(resumed, root)
    recorded["origins"] = {
        step.name: [position.get(t.origin_pathspec) if t.cloned else None for t in step.tasks]
        for step in resumed
    }
    # Metaflow clones tasks in a thread pool whose log lines interleave mid-line:
    # the clone phase is compared as the set of tasks it says it cloned.
    text = _ANY_TIMESTAMP.sub("", resumed.output)
    cloning, _, rest = text.partition(f"{origin.pathspec} cloned!")
    by_id = {(origin.run_id, t.step, t.id): (t.step, t.order[0]) for t in origin.tasks}
    norm = Normalizer(resumed, root)
    recorded["log"] = {
        "before": norm.log(cloning.partition(f"Cloning {origin.pathspec}")[0]),
        "cloned": sorted(by_id[found] for found in _CLONED.findall(cloning)),
        "after": norm.log(rest),
    }
    return recorded


@pytest.mark.parametrize("case", sorted(RESUMES))
def test_fork_resumes_what_subprocess_resumes(
    artflow_run, artflow_resume, artflow_sandbox, fork_results, case
):
    env, step = RESUMES[case]
    recorded = {}
    for engine in ENGINES:
        origin = artflow_run(FLOWS / "resume_flow.py", engine=engine, check=False, env=env)
        resumed = artflow_resume(origin, step, engine=engine, env={"RESUME_FLOW_LABEL": "second"})
        assert resumed.origin_pathspec == origin.pathspec
        recorded[engine] = resume_snapshot(origin, resumed, artflow_sandbox.root)
    # Both the run and its resume were forked, tasks included.
    assert [(r.extra["refused"], r.extra["tasks"]) for r in fork_results] == [(None, "forked")] * 2
    reference, candidate = (recorded[e] for e in ENGINES)
    assert_same(reference, candidate)
    # Metaflow cloned some tasks and ran others again (so the comparison is not vacuous).
    origins = [o for step_origins in reference["origins"].values() for o in step_origins]
    assert reference["successful"] and any(origins)
    assert (None in origins) is (case != "successful run")
    assert len(reference["log"]["cloned"]) == len([o for o in origins if o])


FAMILY_FLOW = """
    import os

    from metaflow import FlowSpec, step

    def grandparent():
        with open(f"/proc/{os.getppid()}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])

    class FamilyFlow(FlowSpec):
        @step
        def start(self):
            self.grandparent = grandparent()
            self.next(self.end)

        @step
        def end(self):
            if os.environ.get("FAMILY_FAIL"):
                raise ValueError("end fails")
            self.grandparent = grandparent()
    """


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_tasks_a_resume_runs_again_are_forked(artflow_run, artflow_resume, flow_file, fork_results):
    """The run's zygote, a child of the fork server, forks them: Metaflow's
    runtime does not start them as new interpreters (whose grandparent would
    be the zygote), after cloning the other tasks in a thread pool."""
    run = artflow_run(flow_file(FAMILY_FLOW), engine="fork", check=False, env={"FAMILY_FAIL": "1"})
    resumed = artflow_resume(run, engine="fork")
    assert [(r.extra["refused"], r.extra["tasks"]) for r in fork_results] == [(None, "forked")] * 2
    assert resumed["start"].task.cloned and not resumed["end"].task.cloned
    server = fork_results[-1].extra["server"]
    assert run["start"].data.grandparent == server
    assert resumed["end"].data.grandparent == server


# -- timeouts and interrupts --


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _processes_with_env(marker: str) -> list[int]:
    """Running processes whose environment holds ``marker`` (Linux /proc)."""
    found = []
    for entry in glob.glob("/proc/[0-9]*/environ"):
        pid = int(entry.split("/")[2])
        try:
            with open(entry, "rb") as f:
                if marker.encode() in f.read() and _alive(pid):
                    found.append(pid)
        except OSError:
            continue
    return found


#: Seconds after which a wait for an event gives up: only so that a broken
#: interrupt cannot hang the suite, never a budget a loaded machine must meet.
SAFETY_LIMIT = 900.0


def _wait_for(
    condition: Any, what: str, limit: float = 120.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``condition()``; fail at once if ``proc`` ends first."""
    deadline = time.monotonic() + limit
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"pytest ended before {what}:\n{proc.communicate()[0].decode()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("engine", ENGINES)
def test_timeout_kills_the_hanging_step_and_its_children(artflow_run, tmp_path, engine):
    with pytest.raises(FlowRunFailed) as excinfo:
        artflow_run(FLOWS / "hanging_flow.py", engine=engine, timeout=10, pid_dir=tmp_path)
    message = str(excinfo.value)
    assert "timed out after 10" in message
    assert "step 'hang'" in message
    run = excinfo.value.run
    assert run is not None and run.failure is not None and run.failure.step == "hang"
    assert not run.finished and not run.successful
    pids = [int((tmp_path / f"hang-{who}.pid").read_text()) for who in ("step", "child")]
    # Both were sent SIGKILL; on a busy machine dying can take a moment.
    _wait_for(lambda: not [pid for pid in pids if _alive(pid)], "the step and its child to die", 10)


@pytest.mark.parametrize("engine", ENGINES)
def test_ctrl_c_ends_the_run_and_leaves_no_process(pytester, monkeypatch, tmp_path, engine):
    marker = f"ARTFLOW_TEST_{uuid.uuid4().hex}"
    monkeypatch.setenv(marker, "1")
    pytester.makepyfile(
        test_hang=f"""
        def test_hang(artflow_run):
            artflow_run({str(FLOWS / "hanging_flow.py")!r}, engine={engine!r},
                        pid_dir={str(tmp_path)!r})
        """
    )
    proc = pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # The event: the step and its child run (the flow writes the file last).
        _wait_for(
            lambda: (tmp_path / "hang-child.pid").exists(),
            "the step to start hanging",
            SAFETY_LIMIT,
            proc,
        )
        assert _processes_with_env(marker)
    finally:
        # Ctrl-C, also when waiting failed: a killed pytest could not clean up.
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=SAFETY_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert b"KeyboardInterrupt" in output, output.decode(errors="replace")
    pids = [int((tmp_path / f"hang-{who}.pid").read_text()) for who in ("step", "child")]
    # Nothing the session started is left: server, zygote, runtime, tasks. A
    # process SIGKILLed as pytest ended is gone once its parent has reaped it.
    _wait_for(
        lambda: not _processes_with_env(marker) and not [p for p in pids if _alive(p)],
        "the session's processes to be gone",
        SAFETY_LIMIT,
    )


# -- what a run leaves behind --


def _process_state() -> dict[str, Any]:
    from metaflow import metaflow_config
    from metaflow.plugins.datastores.local_storage import LocalStorage

    return {
        "modules": sorted(sys.modules),
        "main": sys.modules["__main__"],
        "threads": sorted(t.name for t in threading.enumerate()),
        "children": children(os.getpid()),
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "path": list(sys.path),
        "config": {k: v for k, v in vars(metaflow_config).items() if k.isupper()},
        "sysroot": LocalStorage.datastore_root,
    }


def test_a_fork_run_leaves_the_pytest_process_as_it_was(artflow_run, request):
    from pytest_artflow.settings import engines_key

    flow = FLOWS / "foreach_flow.py"
    # What any run loads in this process (Metaflow's client, to read results).
    artflow_run(flow, engine="subprocess")
    before_first = _process_state()
    artflow_run(flow, engine="fork")
    after_first = _process_state()
    new_modules = set(after_first["modules"]) - set(before_first["modules"])
    assert not [m for m in new_modules if m.startswith(("metaflow", "__main__"))]
    assert after_first["main"] is before_first["main"]
    # The only child a fork run may add is the session's fork server.
    servers = {s.pid for s in request.config.stash[engines_key].get("fork")._servers.values()}
    assert after_first["children"] - before_first["children"] <= servers
    assert servers <= after_first["children"]
    # Later runs change nothing at all.
    artflow_run(flow, engine="fork", width=2)
    assert _process_state() == after_first


def test_closing_the_engine_stops_its_server(artflow_run, request):
    from pytest_artflow.engines.fork import ForkEngine

    engine = ForkEngine()
    before = children(os.getpid())
    try:
        job = artflow_run.job(
            artflow_run.configure(FLOWS / "linear_flow.py"), ["run", "--max-workers", "1"]
        )
        result = engine.run(job)
        assert result.returncode == 0, result.output
        assert result.extra["engine"] == "fork"
        assert children(os.getpid()) - before
    finally:
        engine.close()
    assert children(os.getpid()) == before


def test_a_dead_server_is_replaced(artflow_run, request):
    from pytest_artflow.settings import engines_key

    artflow_run(FLOWS / "linear_flow.py", engine="fork")
    engine = request.config.stash[engines_key].get("fork")
    (server,) = engine._servers.values()
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait()
    run = artflow_run(FLOWS / "linear_flow.py", engine="fork")
    assert run["end"].data.summary == "héllo ✓: 10"
    (replacement,) = engine._servers.values()
    assert replacement.pid != server.pid


def test_two_sandboxes_in_one_session_stay_apart(pytester):
    pytester.makepyfile(
        test_two=f"""
        import json, os
        import pytest
        from pytest_artflow.settings import engines_key

        SEEN = []

        @pytest.mark.parametrize("n", [1, 2])
        def test_config(artflow_run, artflow_sandbox, request, n):
            run = artflow_run({str(FLOWS / "config_flow.py")!r}, engine="fork")
            root = str(artflow_sandbox.root)
            values = run["start"].data.config
            for key in ("DATASTORE_SYSROOT_LOCAL", "LocalStorage.SYSROOT_VAR",
                        "SpinStorage.SYSROOT_VAR", "DATASTORE_SYSROOT_SPIN",
                        "DATATOOLS_LOCALROOT", "CLIENT_CACHE_PATH",
                        "filecache.CLIENT_CACHE_PATH"):
                assert values[key].startswith(root), (key, values[key], root)
            # Unset, as in a plain run: cards find their root from the working
            # directory, the sandbox.
            assert values["CARD_LOCALROOT"] is None
            assert values["card_datastore.CARD_LOCALROOT"] is None
            assert run["start"].data.cwd == root
            assert run["start"].data.home.startswith(root)
            assert run["start"].data.tempdir.startswith(root)
            servers = request.config.stash[engines_key].get("fork")._servers
            SEEN.append((root, run.run_id, [s.pid for s in servers.values()]))
            if n == 2:
                (root_a, run_a, servers_a), (root_b, run_b, servers_b) = SEEN
                assert servers_a == servers_b and len(servers_a) == 1
                assert root_a != root_b
                # Each sandbox holds its own run and nothing of the other's.
                for root, mine, other in ((root_a, run_a, run_b), (root_b, run_b, run_a)):
                    runs = os.listdir(os.path.join(root, ".metaflow", "ConfigFlow"))
                    assert mine in runs and other not in runs
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--artflow-keep=always")
    result.assert_outcomes(passed=2)
    assert glob.glob(markers.SENTINEL_PREFIX + "*") == []


# -- what forked tasks must not share --


RANDOM_FLOW = """
    import random

    import numpy
    from metaflow import FlowSpec, step

    class RandomFlow(FlowSpec):
        @step
        def start(self):
            self.splits = list(range(4))
            self.next(self.draw, foreach="splits")

        @step
        def draw(self):
            self.draws = (random.random(), float(numpy.random.random()))
            self.next(self.join)

        @step
        def join(self, inputs):
            self.all_draws = [i.draws for i in inputs]
            self.next(self.end)

        @step
        def end(self):
            pass
    """


@pytest.mark.parametrize("engine", ENGINES)
def test_forked_tasks_draw_their_own_random_numbers(artflow_run, flow_file, engine):
    pytest.importorskip("numpy")
    draws = artflow_run(flow_file(RANDOM_FLOW), engine=engine)["join"].data.all_draws
    assert len({d[0] for d in draws}) == 4
    assert len({d[1] for d in draws}) == 4


def test_every_process_of_a_run_records_the_flows_git_commit(artflow_run, tmp_path):
    """The runtime and each task register the flow's git information; under
    ``fork`` the run's zygote asks git once and hands the answer to both."""
    from metaflow import Task

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "linear_flow.py").write_text((FLOWS / "linear_flow.py").read_text())

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q", "-b", "trunk")
    git("add", "linear_flow.py")
    git("commit", "-q", "-m", "flow")
    commit = git("rev-parse", "HEAD")

    recorded = {}
    for engine in ENGINES:
        run = artflow_run(repo / "linear_flow.py", engine=engine)
        with artflow_run.sandbox.client_scope():
            recorded[engine] = {
                task.step: [
                    json.loads(m.value)
                    for m in Task(task.pathspec, attempt=0).metadata
                    if m.type == "git-info"
                ]
                for task in run.tasks
            }
    expected = {"branch_name": "trunk", "commit_sha": commit}
    reference = recorded["subprocess"]
    assert reference and all(entries for entries in reference.values())
    assert all(entry == expected for entries in reference.values() for entry in entries)
    assert recorded["fork"] == reference


def test_tasks_are_new_interpreters_when_the_flows_imports_start_threads(
    artflow_run, flow_file, fork_results
):
    flow_file(
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        """,
        name="starts_a_thread.py",
    )
    path = flow_file(
        """
        import os
        from metaflow import FlowSpec, step
        import starts_a_thread

        class ThreadedFlow(FlowSpec):
            @step
            def start(self):
                self.parent = os.getppid()
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    # The thread keeps running in this process too, which loaded the flow file.
    with pytest.warns(FlowLoadWarning, match="started thread"):
        run = artflow_run(path, engine="fork")
    (result,) = fork_results
    assert result.extra["tasks"] == "the flow's imports started 1 thread(s)"
    assert result.extra["refused"] is None
    assert run["start"].successful


# -- configuration the server could not have seen at import --


@pytest.mark.parametrize("engine", ENGINES)
def test_metaflow_settings_of_a_test_reach_the_tasks(artflow_run, fork_results, engine):
    run = artflow_run(
        FLOWS / "config_flow.py", engine=engine, env={"METAFLOW_CLIENT_CACHE_MAX_SIZE": "55"}
    )
    assert run["start"].data.config["CLIENT_CACHE_MAX_SIZE"] == 55
    # A server of its own (imported with that setting), not a hand-over.
    assert [r.extra["engine"] for r in fork_results] == (["fork"] if engine == "fork" else [])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_metaflow_config_file_in_the_sandbox_is_honoured(
    artflow_run, artflow_sandbox, fork_results, engine
):
    (artflow_sandbox.root / ".metaflow" / "config.json").write_text(
        json.dumps({"METAFLOW_CLIENT_CACHE_MAX_SIZE": "77"})
    )
    run = artflow_run(FLOWS / "config_flow.py", engine=engine)
    assert run["start"].data.config["CLIENT_CACHE_MAX_SIZE"] == 77
    # The fork server imported Metaflow without that file: it hands the run on.
    assert [r.extra["refused"] for r in fork_results] == (
        ["a Metaflow configuration file applies to this run"] if engine == "fork" else []
    )


# -- coverage --


def test_coverage_measures_steps_run_by_the_fork_engine(pytester):
    pytest.importorskip("coverage")
    pytester.makepyfile(
        helper="""
        def called_in_a_step(x):
            doubled = x * 2
            return doubled


        def never_called():
            return 0
        """,
        cov_flow="""
        from metaflow import FlowSpec, step

        class CovFlow(FlowSpec):
            @step
            def start(self):
                from helper import called_in_a_step

                self.value = called_in_a_step(21)
                self.next(self.end)

            @step
            def end(self):
                pass
        """,
        test_cov="""
        def test_run(artflow_run):
            assert artflow_run("cov_flow.py", engine="fork")["start"].data.value == 42
        """,
    )
    pytester.makefile(
        ".toml",
        pyproject=textwrap.dedent(
            """
            [tool.coverage.run]
            patch = ["subprocess", "fork"]
            source = ["."]
            """
        ),
    )
    coverage = [sys.executable, "-m", "coverage"]
    pytester.run(*coverage, "run", "-m", "pytest", "-p", "no:cacheprovider").assert_outcomes(
        passed=1
    )
    assert pytester.run(*coverage, "combine").ret == 0
    assert pytester.run(*coverage, "json", "-o", "cov.json").ret == 0
    report = json.loads((pytester.path / "cov.json").read_text())
    helper = next(v for k, v in report["files"].items() if k.endswith("helper.py"))
    assert {2, 3} <= set(helper["executed_lines"])
    assert 7 in helper["missing_lines"]


#: Corpus flows that also run with ``datastore="s3"`` (on the S3 test server).
S3_CORPUS = ("linear_flow.py", "foreach_flow.py", "card_flow.py", "failing_flow.py", "s3_flow.py")


@pytest.mark.parametrize("flow", S3_CORPUS)
def test_fork_records_what_subprocess_records_on_s3(
    artflow_run, artflow_sandbox, artflow_s3, fork_results, flow
):
    params = dict(CORPUS.get(flow, {}))
    if flow == "s3_flow.py":
        artflow_s3.put("in/input.csv", b"x\ny")
        params["root"] = artflow_s3.url("in/")
    runs = {
        engine: artflow_run(FLOWS / flow, engine=engine, check=False, params=params, datastore="s3")
        for engine in ENGINES
    }
    assert [(r.extra["refused"], r.extra["tasks"]) for r in fork_results] == [(None, "forked")]
    reference, candidate = (snapshot(runs[e], artflow_sandbox.root) for e in ENGINES)
    assert_same(reference, candidate)
    # Both runs kept their datastore in the test's area of the server.
    for run in runs.values():
        assert artflow_s3.keys(f"metaflow/{run.flow_name}/{run.run_id}/start/")
    assert reference["finished"] is (flow != "failing_flow.py")
    has_cards = [a["cards"] for t in reference["tasks"].values() for r in t for a in r["attempts"]]
    assert any(has_cards) is (flow == "card_flow.py")
