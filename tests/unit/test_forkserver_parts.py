"""The fork server's pure parts, without a server: the message protocol, the
marker environment and bindings, which task commands may be forked, and how a
task's exit status reaches the runtime."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import types
from collections import namedtuple
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_artflow.forkserver import markers, messages, program
from pytest_artflow.forkserver.tasklauncher import ForkedTask, TaskLauncher

# -- messages --


def test_a_message_and_its_descriptors_arrive_whole() -> None:
    left, right = socket.socketpair()
    read, write = os.pipe()
    try:
        big = {"op": "job", "blob": b"x" * (3 << 20), "env": {"A": "1"}}
        # Bigger than a socket's buffer: the sender waits for the reader.
        sender = threading.Thread(target=messages.send, args=(left, big, [write]))
        sender.start()
        received, fds = messages.recv(right)
        sender.join()
        assert received == big
        assert len(fds) == 1
        os.write(fds[0], b"through the passed descriptor")
        os.close(fds[0])
        assert os.read(read, 100) == b"through the passed descriptor"
    finally:
        for s in (left, right):
            s.close()
        os.close(read)
        os.close(write)


def test_end_of_stream_and_a_cut_message() -> None:
    left, right = socket.socketpair()
    messages.send(left, {"op": "one"})
    left.close()
    assert messages.recv(right) == ({"op": "one"}, [])
    assert messages.recv(right) == (None, [])
    right.close()

    left, right = socket.socketpair()
    left.sendall(messages._HEADER.pack(100) + b"only part")
    left.close()
    with pytest.raises(EOFError, match="mid-message"):
        messages.recv(right)
    right.close()


# -- markers --


def test_server_environment_puts_markers_in_place_of_per_run_values() -> None:
    env = {"HOME": "/sandbox/home", "METAFLOW_USER": "artflow", "PATH": "/bin"}
    server_env, marked = markers.server_environ(env, "tok")
    assert set(marked) == {"HOME", "METAFLOW_USER"}
    assert all(v.startswith(markers.SENTINEL_PREFIX + "tok/") for v in marked.values())
    assert server_env == {**env, **marked}


def test_runs_share_a_server_unless_an_import_time_variable_differs() -> None:
    base = {"HOME": "/a", "METAFLOW_USER": "u", "PATH": "/bin", "PYTHONPATH": "/x"}
    other_sandbox = {**base, "HOME": "/b", "PYTHONPATH": "/y", "PATH": "/usr/bin"}
    assert markers.server_key(base) == markers.server_key(other_sandbox)
    assert markers.server_key(base) != markers.server_key({**base, "METAFLOW_PROFILE": "p"})
    assert markers.server_key(base) != markers.server_key({**base, "LANG": "C"})


def test_bindings_find_and_rewrite_every_place_a_marker_is_held(monkeypatch) -> None:
    marker = markers.SENTINEL_PREFIX + "unit/HOME"
    module = types.ModuleType("artflow_unit_marked")
    Pair = namedtuple("Pair", "path other")

    class Config:
        root = marker + "/datastore"

    def default(path=marker):
        return path

    def closure():
        held = marker + "/cell"
        return lambda: held

    module.ROOT = marker
    module.PATHS = [marker + "/a", "untouched"]
    module.NESTED = {"pair": Pair(marker, 1), "tuple": ("x", (marker,))}
    module.Config = Config
    module.default = default
    module.inner = closure()
    monkeypatch.setitem(sys.modules, module.__name__, module)

    found = markers.Bindings.find(markers.SENTINEL_PREFIX + "unit/")
    assert found.unpatchable == []
    found.apply(lambda text: text.replace(marker, "/run/home"))
    assert module.ROOT == "/run/home"
    assert module.PATHS == ["/run/home/a", "untouched"]
    assert module.NESTED["pair"] == Pair("/run/home", 1)
    assert type(module.NESTED["pair"]) is Pair
    assert module.NESTED["tuple"] == ("x", ("/run/home",))
    assert Config.root == "/run/home/datastore"
    assert module.default() == "/run/home"
    assert module.inner() == "/run/home/cell"


def test_a_marker_as_a_dict_key_cannot_be_rewritten(monkeypatch) -> None:
    marker = markers.SENTINEL_PREFIX + "unit2/HOME"
    module = types.ModuleType("artflow_unit_key")
    # (The collector lists the keys of a dict only when not all keys are str.)
    module.BY_PATH = {marker: 1, 2: "two"}
    monkeypatch.setitem(sys.modules, module.__name__, module)
    found = markers.Bindings.find(markers.SENTINEL_PREFIX + "unit2/")
    assert found.unpatchable == [f"a dict key {marker!r:.100}"]


# -- which task commands are forked --


@pytest.fixture
def launcher() -> TaskLauncher:
    return TaskLauncher(socket.socket(), [sys.executable, "-m", "pytest_artflow.inflow.launch"])


def _task(launcher: TaskLauncher, **changes: object) -> tuple[list[str], dict[str, object]]:
    args = [*launcher.entrypoint, "flow.py", "Flow", "step", "start"]
    kwargs: dict[str, object] = {
        "env": {**os.environ, "METAFLOW_RUN_ID": "1"},
        "bufsize": 1,
        "stdin": subprocess.PIPE,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
    }
    kwargs.update(changes)
    return args, kwargs


def test_the_runtimes_task_command_is_forked(launcher: TaskLauncher) -> None:
    assert launcher.can_fork(*_task(launcher))


@pytest.mark.parametrize(
    "changes",
    [
        {"stdout": None},
        {"cwd": "/"},
        {"env": None},
        {"env": {**os.environ, "METAFLOW_RUN_ID": "1", "FROM_ENVIRONMENT_DECORATOR": "x"}},
    ],
    ids=["own-stdout", "other-option", "no-env", "changed-env"],
)
def test_anything_else_starts_a_new_interpreter(launcher: TaskLauncher, changes) -> None:
    assert not launcher.can_fork(*_task(launcher, **changes))


def test_another_program_is_not_forked(launcher: TaskLauncher) -> None:
    args, kwargs = _task(launcher)
    assert not launcher.can_fork(["git", "status"], kwargs)
    assert not launcher.can_fork(" ".join(args), kwargs)


# -- a task's exit status, without R --


def _forked_task(launcher: TaskLauncher, zygote: socket.socket) -> tuple[ForkedTask, list[int]]:
    """A ``ForkedTask`` R (played by this test on ``zygote``) said it forked;
    the descriptors the task would have got: stdin, stdout, stderr, exit."""
    messages.send(zygote, {"op": "forked", "pid": 4242})
    task = ForkedTask(launcher, [*launcher.entrypoint, "flow.py"], {}, -1)
    message, fds = messages.recv(zygote)
    assert message is not None and message["op"] == "fork"
    assert len(fds) == 4
    return task, fds


@pytest.fixture
def zygote(launcher: TaskLauncher) -> Iterator[socket.socket]:
    ours, theirs = socket.socketpair()
    launcher.sock = ours
    yield theirs
    ours.close()
    theirs.close()


def test_a_task_that_wrote_its_status_needs_no_word_from_r(
    launcher: TaskLauncher, zygote: socket.socket
) -> None:
    task, fds = _forked_task(launcher, zygote)
    assert task.pid == 4242
    assert task.poll() is None
    os.write(fds[3], b"7")
    for fd in fds:
        os.close(fd)
    # R never says "exited" here.
    assert task.wait() == 7
    assert task.poll() == 7
    # R's word, when it comes, changes nothing and is not kept.
    messages.send(zygote, {"op": "exited", "pid": 4242, "code": 7})
    messages.send(zygote, {"op": "forked", "pid": 4243})
    assert launcher.fork([], {}, []) == 4243
    assert launcher.exited == {} and launcher.reported == set()
    for stream in (task.stdin, task.stdout, task.stderr):
        stream.close()


def test_a_task_that_died_without_writing_its_status_waits_for_r(
    launcher: TaskLauncher, zygote: socket.socket
) -> None:
    task, fds = _forked_task(launcher, zygote)
    for fd in fds:
        os.close(fd)
    # The pipe closed empty (a signal, os._exit): only R can tell.
    assert task.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        task.wait(timeout=0)
    messages.send(zygote, {"op": "exited", "pid": 4242, "code": -9})
    assert task.wait() == -9
    assert launcher.exited == {}
    for stream in (task.stdin, task.stdout, task.stderr):
        stream.close()


def test_a_process_reports_its_exit_status_its_forks_do_not() -> None:
    read, write = os.pipe()

    def task() -> int:
        program.report_exit(write)
        # A process the task forks inherits the pipe, not the duty to write.
        child = program.fork([], lambda: 9)
        os.waitpid(child, 0)
        # Its own streams, as a task makes them; what it writes is buffered.
        program.std_streams(unbuffered=False)
        print("the task's last words")
        return 5

    out_read, out_write = os.pipe()
    saved = os.dup(1)
    os.dup2(out_write, 1)
    try:
        pid = program.fork([], task)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(out_write)
        os.close(write)
    try:
        assert os.read(read, 16) == b"5"
        # Its standard streams were flushed and closed before it wrote.
        assert os.read(out_read, 100) == b"the task's last words\n"
        assert os.read(out_read, 100) == b""
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 5
    finally:
        os.close(read)
        os.close(out_read)


# -- modules imported per process from bytecode read once --


def _package(tmp_path: Any, body: str) -> str:
    package = tmp_path / "precompiled_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "per_process.py").write_text(body)
    return "precompiled_pkg.per_process"


def test_a_precompiled_module_runs_its_body_at_each_import_from_bytecode_read_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_artflow.forkserver.precompiled import PrecompiledImports

    name = _package(tmp_path, "import builtins\nbuiltins.RUNS.append(__name__)\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("builtins.RUNS", [], raising=False)
    import importlib.util

    importlib.import_module("precompiled_pkg")
    reference = importlib.util.find_spec(name)
    finder = PrecompiledImports([name])
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    finder.install()
    # The file changes after the server read it: each import runs what was read.
    (tmp_path / "precompiled_pkg" / "per_process.py").write_text("VALUE = 2\n")
    import builtins

    for expected_runs in (1, 2):
        sys.modules.pop(name, None)
        module = importlib.import_module(name)
        runs = builtins.RUNS  # type: ignore[attr-defined]
        assert runs == [name] * expected_runs
        assert module.VALUE == 1
        assert module.__spec__.loader is finder
        assert module.__file__ == reference.origin
        assert module.__cached__ == reference.cached
        assert module.__package__ == "precompiled_pkg"
    # Tracebacks and inspect read the source from the file, as for any module.
    assert finder.get_source(name) == "VALUE = 2\n"
    sys.modules.pop(name, None)


def test_a_module_that_is_not_plain_source_is_left_to_the_usual_import() -> None:
    from pytest_artflow.forkserver.precompiled import PrecompiledImports

    finder = PrecompiledImports(["_socket", "no_such_module_here"])
    assert finder.find_spec("_socket") is None
    assert finder.find_spec("no_such_module_here") is None
