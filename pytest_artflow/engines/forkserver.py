"""The fork server behind the ``fork`` engine, and every process it starts.

One run, as a process tree (P is the pytest process)::

    P ── S   fork server: a fresh interpreter, started once per session and
         │   environment; it imports Metaflow and then only waits for jobs.
         └── R   run zygote (a fork of S, one per run, a session of its own): it
             │   takes the run's environment and sandbox, loads the flow file as
             │   ``__main__`` and then runs no Metaflow code itself.
             ├── M   the run process (a fork of R): Metaflow's own CLI and
             │       runtime, whose task launcher asks R for each task process.
             └── T   one per task attempt (a fork of R): what
                     ``python -m pytest_artflow.engines.launch FLOW CLASS step ...``
                     does, minus the interpreter start and the imports.

Tasks fork from R, not from M: by the time M's runtime launches a task, M has
been through Metaflow's CLI (flow and step decorators initialised, ``current``
and the system context set, ``--with`` decorators attached to the class); a
task forked from it would inherit that, a fresh task process does not. R is
exactly the state every fresh task process reaches before Metaflow's CLI
starts, so tasks forked from it start like fresh ones, only sooner.

Metaflow reads its configuration at import, and several modules copy values
(``from metaflow.metaflow_config import DATASTORE_SYSROOT_LOCAL``; even class
attributes such as ``LocalStorage.SYSROOT_VAR``). S is started with the run's
environment except that every per-sandbox value (see ``PER_RUN_VALUES``) is a
unique marker, a path nobody can create; after its imports it finds every
string that holds a marker (``Bindings.find``), and each R rewrites exactly
those with its own sandbox's values. What S cannot account for (a Metaflow
config file that applies to the run, a marker it cannot rewrite) makes R
refuse the run, and the engine then runs it as fresh interpreters instead;
runs whose environments differ in what is read at import get their own S.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import json
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

#: Start of every marker value: a path below a device file, so that nothing,
#: not even root, can create it should a marker ever be left in place.
SENTINEL_PREFIX = "/dev/null/pytest-artflow-forkserver-"
#: Environment values that differ from one sandbox to the next; S imports
#: Metaflow with markers in their place and each run substitutes its own.
PER_RUN_VALUES = (
    "HOME",
    "TMPDIR",
    "METAFLOW_HOME",
    "METAFLOW_USER",
    "METAFLOW_DATASTORE_SYSROOT_LOCAL",
    "METAFLOW_DATASTORE_SYSROOT_SPIN",
    "METAFLOW_CARD_LOCALROOT",
    "METAFLOW_CLIENT_CACHE_PATH",
)
#: Variables read while S starts and imports (the interpreter, the C library,
#: Metaflow's configuration, coverage): runs that differ in one of them need a
#: server of their own. Every other variable is only read after R has taken
#: the run's environment, so runs share a server across them.
IMPORT_TIME_PREFIXES = ("METAFLOW_", "PYTHON", "LC_", "LD_", "COVERAGE_")
IMPORT_TIME_NAMES = frozenset(
    {"LANG", "LANGUAGE", "TZ", "DISABLE_TRACING", "TEST_S3_RETRY", "CONDA_OVERRIDE_GLIBC"}
)
#: Applied to ``sys.path`` by R, like the interpreter does at start-up.
PER_RUN_PATH = "PYTHONPATH"
#: Variables Metaflow's runtime adds to every task's environment; any other
#: difference from the run's environment makes the task a fresh interpreter.
TASK_ENV_KEYS = frozenset({"METAFLOW_RUN_ID", "PYTHONUNBUFFERED"})
#: What S imports before it serves: what every run, task and single-step job
#: needs...
PRELOAD = (
    "metaflow",
    "metaflow.runtime",
    "metaflow.task",
    "metaflow.lint",
    "metaflow.pylint_wrapper",
    "metaflow.cli_components.utils",
    "metaflow.plugins.cards.card_decorator",
    "pytest_artflow.engines.launch",
    "pytest_artflow.engines.codepackage",
    "pytest_artflow.engines.diagnostics",
    "pytest_artflow.step",
)
#: ...except Metaflow's CLI: it adds the flow's options (Parameters, flow
#: decorator options) when it is imported, so each process imports it for
#: its flow, as a fresh one does.
FLOW_DEPENDENT = (
    "metaflow.cli",
    "metaflow.cli_components.run_cmds",
    "metaflow.cli_components.init_cmd",
    "metaflow.cli_components.step_cmd",
)

_HEADER = struct.Struct("!Q")


# -- messages: pickled dicts on a stream socket, file descriptors alongside --


def send(sock: socket.socket, message: dict[str, Any], fds: Iterable[int] = ()) -> None:
    """Send one message; ``fds`` travel with it (SCM_RIGHTS)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    header = _HEADER.pack(len(payload))
    fds = list(fds)
    if fds:
        sent = socket.send_fds(sock, [header], fds)
        if sent != len(header):  # pragma: no cover - 8 bytes on a local socket
            sock.sendall(header[sent:])
    else:
        sock.sendall(header)
    sock.sendall(payload)


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and its file descriptors; ``(None, [])`` at end of stream."""
    header, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 8)
    if not header:
        return None, fds
    header += _recv_exact(sock, _HEADER.size - len(header))
    (size,) = _HEADER.unpack(header)
    return pickle.loads(_recv_exact(sock, size)), fds


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the peer closed the connection mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# -- which environment a server is started with --


def server_key(env: Mapping[str, str]) -> tuple[Any, ...]:
    """Runs whose environments have the same key can share a server."""
    fixed = sorted(
        (k, v)
        for k, v in env.items()
        if (k.startswith(IMPORT_TIME_PREFIXES) or k in IMPORT_TIME_NAMES)
        and k not in PER_RUN_VALUES
        and k != PER_RUN_PATH
    )
    return (tuple(fixed), tuple(k for k in PER_RUN_VALUES if k in env))


def server_environ(env: Mapping[str, str], token: str) -> tuple[dict[str, str], dict[str, str]]:
    """The environment a server is started with, and its markers by variable."""
    markers = {k: f"{SENTINEL_PREFIX}{token}/{k}" for k in PER_RUN_VALUES if k in env}
    return {**env, **markers}, markers


# -- markers: where the imports kept per-sandbox values, and how to rewrite them --


class Bindings:
    """Every place reachable from ``sys.modules`` that holds a marker string."""

    def __init__(self) -> None:
        #: (owner, key, original): ``setattr(owner, key, ...)`` for modules,
        #: classes, functions and cells, ``owner[key] = ...`` for dicts, lists.
        self.slots: list[tuple[Any, Any, Any]] = []
        #: What keeps the server from serving runs (markers it cannot rewrite).
        self.unpatchable: list[str] = []

    @classmethod
    def find(cls, prefix: str) -> Bindings:
        """Walk everything the imported modules reach (``gc.get_referents``, so
        that dicts and tuples the collector does not track are seen too)."""
        found = cls()
        parents: dict[int, list[Any]] = {}
        seen = {id(sys.modules)}
        stack: list[Any] = [sys.modules]
        holders = []
        while stack:
            obj = stack.pop()
            refs = gc.get_referents(obj)
            if any(isinstance(r, str) and prefix in r for r in refs):
                holders.append(obj)
            for ref in refs:
                if isinstance(ref, (str, bytes, int, float)) or ref is None:
                    continue
                if isinstance(ref, (dict, tuple)):
                    parents.setdefault(id(ref), []).append(obj)
                if id(ref) not in seen:
                    seen.add(id(ref))
                    stack.append(ref)
        # Tuples are immutable: what holds them gets a rewritten copy.
        marked: dict[int, Any] = {}
        pending = [h for h in holders if isinstance(h, tuple)]
        while pending:
            tup = pending.pop()
            if id(tup) in marked:
                continue
            marked[id(tup)] = tup
            for parent in parents.get(id(tup), []):
                if isinstance(parent, tuple):
                    pending.append(parent)
                elif all(parent is not h for h in holders):
                    holders.append(parent)

        def is_marked(value: object) -> bool:
            return (isinstance(value, str) and prefix in value) or id(value) in marked

        for holder in holders:
            found._collect(holder, is_marked, parents)
        return found

    def _collect(self, holder: Any, is_marked: Callable[[object], bool], parents: Any) -> None:
        if isinstance(holder, tuple):
            return  # rewritten through what holds it
        if isinstance(holder, list):
            self.slots += [(holder, i, v) for i, v in enumerate(holder) if is_marked(v)]
        elif isinstance(holder, dict):
            # A module's or class's namespace is set through setattr (type caches).
            owners = [p for p in parents.get(id(holder), []) if _namespace_of(p, holder)]
            for key, value in holder.items():
                if is_marked(key):
                    self.unpatchable.append(f"a dict key {key!r:.100}")
                elif is_marked(value):
                    self.slots.append((owners[0] if owners else holder, key, value))
        elif isinstance(holder, types.FunctionType) and is_marked(holder.__defaults__):
            self.slots.append((holder, "__defaults__", holder.__defaults__))
        elif isinstance(holder, types.CellType) and is_marked(holder.cell_contents):
            self.slots.append((holder, "cell_contents", holder.cell_contents))
        else:
            self.unpatchable.append(f"a {type(holder).__name__} {holder!r:.100}")

    def apply(self, substitute: Callable[[str], str]) -> None:
        for owner, key, original in self.slots:
            value = _rewrite(original, substitute)
            if isinstance(owner, (dict, list)):
                owner[key] = value
            else:
                setattr(owner, key, value)


def _namespace_of(owner: Any, mapping: dict[str, Any]) -> bool:
    if isinstance(owner, types.ModuleType):
        return vars(owner) is mapping
    return isinstance(owner, type) and gc.get_referents(vars(owner)) == [mapping]


def _rewrite(value: Any, substitute: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return substitute(value)
    if not isinstance(value, tuple):
        return value
    items = [_rewrite(v, substitute) for v in value]
    return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)


# -- running like an interpreter runs a program --


def run_as_program(main: Callable[[], object]) -> int:
    """Run ``main`` and end the way the interpreter ends a program: the exit
    status of ``SystemExit``, a traceback and 1 for anything else, then
    non-daemon threads joined, ``atexit`` handlers run, streams flushed."""
    code = _run(main)
    _end_program()
    return code or 0


def _run(main: Callable[[], object]) -> int | None:
    """``None`` if ``main`` returned, else the exit status the interpreter
    would end with (after printing the traceback of an exception)."""
    try:
        main()
    except SystemExit as exc:
        return _exit_status(exc.code)
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return 1
    return None


def _end_program() -> None:
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    finally:
        _flush_std_streams()


def _exit_status(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _std_streams(unbuffered: bool) -> None:
    """New ``sys.stdin/stdout/stderr`` on fds 0-2, made the way the interpreter
    makes them at start-up (unbuffered writes under ``PYTHONUNBUFFERED``, as
    Metaflow's runtime asks of its tasks)."""
    made = []
    for fd, mode, old in ((0, "r", sys.stdin), (1, "w", sys.stdout), (2, "w", sys.stderr)):
        buffering = 0 if unbuffered and mode == "w" else -1
        buffer = open(fd, mode + "b", buffering, closefd=False)  # noqa: SIM115
        raw = buffer if buffering == 0 else buffer.raw
        stream = io.TextIOWrapper(
            buffer,  # type: ignore[arg-type]
            encoding=getattr(old, "encoding", None),
            errors=getattr(old, "errors", None),
            newline="\n",
            line_buffering=not unbuffered and raw.isatty(),
            write_through=unbuffered,
        )
        stream.mode = mode  # type: ignore[misc]
        made.append(stream)
    sys.stdin, sys.stdout, sys.stderr = made
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = made  # type: ignore[misc]


def _reseed() -> None:
    """A fresh process seeds numpy's global generator from the OS at import;
    forks of one process would otherwise all draw the same numbers.
    (``random`` reseeds itself after a fork.)"""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _native_threads() -> int:
    """Threads of this process, those of C libraries too (Linux), which a fork
    would leave behind in the child with whatever locks they held."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _default_signals() -> None:
    """A fresh process's SIGCHLD handling, first thing in a fork (before the
    parent's wakeup pipe is closed, whose fd number could be reused)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


class _Wakeup:
    """A pipe that becomes readable when a child exits (SIGCHLD), for ``select``."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.write_fd)

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def _exit_like(code: int) -> NoReturn:
    """Leave this fork with ``code`` (a negative code is death by that signal),
    never by raising: a fork must not return into its parent's code."""
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


def _fork(closing: Iterable[Any], body: Callable[[], int]) -> int:
    """Fork; the child closes ``closing`` (its parent's end of things), runs
    ``body`` and leaves with the status it returns. The parent gets the pid."""
    _flush_std_streams()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _default_signals()
            for each in closing:
                each.close()
            code = body()
        except BaseException as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        finally:
            _flush_std_streams()
            _exit_like(code)
    return pid


# -- S: the server --


class Server:
    """Forks one zygote per run; reports their exit; kills their groups."""

    def __init__(self, ctl: socket.socket, markers: dict[str, str]) -> None:
        self.ctl = ctl
        self.markers = markers
        self.initial_env = dict(os.environ)
        self.initial_path = list(sys.path)
        self.runs: set[int] = set()

    def prepare(self) -> dict[str, Any]:
        import importlib

        main_module = sys.modules["__main__"]
        before = set(vars(main_module))
        for name in PRELOAD:
            importlib.import_module(name)
        # Metaflow puts some classes on ``__main__`` as it is imported (so that
        # pickles name them ``__main__.ForeachFrame``); in a fresh process that
        # is the flow file, here it is this module.
        self.main_additions = {
            k: v for k, v in vars(main_module).items() if k not in before and k != "__builtins__"
        }
        imported = [name for name in FLOW_DEPENDENT if name in sys.modules]
        if imported:
            raise RuntimeError(f"preloading imported {imported}, which must load per flow")
        warm_caches()
        from metaflow import metaflow_config_funcs

        self.config_files = (
            metaflow_config_funcs.METAFLOW_CONFIG,
            metaflow_config_funcs.METAFLOW_LOCAL_CONFIG,
        )
        self.bindings = Bindings.find(SENTINEL_PREFIX) if self.markers else Bindings()
        # What the imports changed in the environment (none, usually): a fresh
        # process of the run would make the same changes.
        self.import_env = {k: v for k, v in os.environ.items() if self.initial_env.get(k) != v}
        threads = _native_threads()
        if threads > 1:
            # A fork keeps only the forking thread: the others' locks stay held.
            self.bindings.unpatchable.append(f"importing Metaflow started {threads - 1} thread(s)")
        return {"op": "ready", "pid": os.getpid(), "unpatchable": self.bindings.unpatchable}

    def serve(self) -> None:
        self.wakeup = _Wakeup()
        try:
            while True:
                readable, _, _ = select.select([self.ctl, self.wakeup.read_fd], [], [])
                if self.wakeup.read_fd in readable:
                    self.wakeup.drain()
                    self.reap()
                if self.ctl in readable:
                    message, fds = recv(self.ctl)
                    if message is None or message["op"] == "stop":
                        break
                    if message["op"] == "run":
                        self.start(message["job"], fds)
                    elif message["op"] == "kill":
                        self.kill(message["pid"])
        finally:
            for pid in list(self.runs):
                self.kill(pid)
            while self.runs:
                pid, _ = os.wait()
                self.runs.discard(pid)

    def start(self, job: dict[str, Any], fds: list[int]) -> None:
        pid = _fork([self.ctl, self.wakeup], lambda: Zygote(self, job, *fds).run())  # R
        for fd in fds:
            os.close(fd)
        self.runs.add(pid)
        send(self.ctl, {"op": "started", "pid": pid})

    def kill(self, pid: int) -> None:
        # Only runs not yet reaped: their process group id cannot have been reused.
        if pid in self.runs:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            # A zygote that has not made its group yet has no children either.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def reap(self) -> None:
        while True:
            try:
                # Look without reaping, so the group id stays ours while we kill
                # what the run left behind (a daemon a task started).
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            self.kill(info.si_pid)
            _, status = os.waitpid(info.si_pid, 0)
            self.runs.discard(info.si_pid)
            send(
                self.ctl,
                {"op": "exited", "pid": info.si_pid, "code": os.waitstatus_to_exitcode(status)},
            )


# -- R: the run zygote --


class Zygote:
    """One run: its sandbox applied, the flow's imports done; forks M and every task."""

    def __init__(self, server: Server, job: dict[str, Any], out_fd: int, status_fd: int) -> None:
        self.server = server
        self.job = job
        self.path = job["flow_file"]
        self.class_name = job["class_name"]
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(devnull)
        os.close(out_fd)
        self.status_fd = status_fd
        self.main_names = dict(server.main_additions)
        #: Why tasks cannot be forked from here (then they are new interpreters).
        self.no_fork: str | None = None

    def run(self) -> int:
        refusal = self.enter()
        if refusal:
            self.report(refused=refusal)
            return 0
        from pytest_artflow.engines import launch

        sys.argv = [self.path, *self.job["args"]]
        sys.path[0] = os.path.dirname(self.path)
        self.warm_imports()
        threads = _native_threads()
        if threads > 1:
            self.no_fork = f"the flow's imports started {threads - 1} thread(s)"
        self.report(refused=None, tasks=self.no_fork or "forked")
        gc.freeze()
        self.entrypoint = launch.task_entrypoint(self.path, self.class_name)
        self.wakeup = _Wakeup()
        to_main, self.sock = socket.socketpair()
        git_r, git_w = os.pipe()
        git_info, git_answer = os.fdopen(git_r, "rb"), os.fdopen(git_w, "wb")
        self.main_pid = _fork(  # M
            [self.sock, self.wakeup, git_answer], lambda: self.run_main(to_main, git_info)
        )
        to_main.close()
        git_info.close()
        with git_answer:
            self.warm_git_info(git_answer)
        return self.serve()

    def report(self, **status: Any) -> None:
        os.write(self.status_fd, json.dumps(status).encode())
        os.close(self.status_fd)

    def warm_git_info(self, answer: io.BufferedWriter) -> None:
        """Fill Metaflow's own per-process cache of the flow's git information
        (five ``git`` calls, about 10 ms) once, for every task to inherit and
        for M, which is told the answer (see ``_git_info_from_zygote``): within
        one run each of them would find the same repository, branch and commit.
        M starts its CLI meanwhile, and asks only once it registers metadata."""
        from metaflow import metaflow_git

        info = None
        try:
            info = metaflow_git.get_repository_info(
                path=os.path.dirname(os.path.abspath(self.path))
            )
        finally:
            answer.write(json.dumps(info).encode())

    def warm_imports(self) -> None:
        """Import what the flow file imports (anywhere in it, steps included),
        so that no task pays for it; the flow's own code runs in M and each
        task, once, as in a new process. A shipped class is unpickled once
        here for the same reason: that imports what it refers to."""
        import ast

        from pytest_artflow.engines import launch

        if self.class_name.startswith(launch.SHIPPED):
            # A shipped class imports what it refers to as it is unpickled.
            saved = sys.modules["__main__"]
            try:
                with contextlib.suppress(BaseException):
                    launch.load_flow(self.path, self.class_name, dict(self.main_names))
            finally:
                sys.modules["__main__"] = saved
            return
        try:
            with open(self.path, "rb") as f:
                tree = ast.parse(f.read(), filename=self.path)
        except (OSError, SyntaxError, ValueError):
            return
        imports = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            or (isinstance(node, ast.ImportFrom) and not node.level and node.module != "__future__")
        ]
        # Imports that put names on __main__ (as Metaflow does) find a stand-in.
        main = types.ModuleType("__main__")
        main.__dict__.update(self.main_names)
        main.__file__ = self.path
        saved, sys.modules["__main__"] = sys.modules["__main__"], main
        try:
            for node in imports:
                code = compile(ast.Module(body=[node], type_ignores=[]), self.path, "exec")
                # An import that fails here fails again where the flow makes it.
                with contextlib.suppress(BaseException):
                    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        finally:
            sys.modules["__main__"] = saved
        self.main_names.update((k, v) for k, v in vars(main).items() if not k.startswith("__"))

    def enter(self) -> str | None:
        """Become the run's process: its directory, environment, sandbox.
        A reason if Metaflow would not be configured as a fresh process is."""
        server, env = self.server, dict(self.job["env"])
        if server.bindings.unpatchable:
            return "the fork server cannot serve runs: " + "; ".join(
                server.bindings.unpatchable[:3]
            )
        values = {k: env.get(k, "") for k in server.markers}
        if not all(values.values()):
            return "empty sandbox settings: " + ", ".join(k for k, v in values.items() if not v)
        os.chdir(self.job["cwd"])
        os.environ.clear()
        os.environ.update(env)
        from metaflow import metaflow_config_funcs as funcs

        try:
            files = (funcs.init_config(), funcs.init_local_config())
        except Exception as exc:
            return f"Metaflow's configuration does not load here: {exc}"
        if files != server.config_files:
            return "a Metaflow configuration file applies to this run"

        pairs = sorted(
            ((server.markers[k], v) for k, v in values.items()), key=lambda p: -len(p[0])
        )

        def substitute(text: str) -> str:
            for marker, value in pairs:
                text = text.replace(marker, value)
            return text

        os.environ.update({k: substitute(v) for k, v in server.import_env.items()})
        server.bindings.apply(substitute)
        sys.path[:] = _job_sys_path(server, env.get("PYTHONPATH", ""), self.job["cwd"])
        sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
        return None

    def load_flow(self) -> type:
        """The flow class, as ``launch.main`` loads it."""
        from pytest_artflow.engines import launch

        return launch.load_flow(self.path, self.class_name, self.main_names)

    def run_main(self, sock: socket.socket, git_info: io.BufferedReader) -> int:
        """M: Metaflow's CLI, with its runtime's task launcher swapped, its
        code package built on demand and its git information from R."""
        from metaflow import runtime

        from pytest_artflow.engines import codepackage, launch

        codepackage.install()
        _git_info_from_zygote(git_info)
        if self.no_fork is None:
            launcher = TaskLauncher(sock, self.entrypoint)
            proxy = types.ModuleType("subprocess", subprocess.__doc__)
            proxy.__dict__.update(vars(subprocess))
            proxy.Popen = launcher.popen  # type: ignore[attr-defined]
            runtime.subprocess = proxy  # type: ignore[attr-defined]
        _reseed()
        return run_as_program(lambda: launch.run_cli(self.load_flow(), self.path, self.class_name))

    def serve(self) -> int:
        """Fork tasks for M until it ends; then end with its exit status."""
        live: set[int] = set()
        main_code: int | None = None
        sources: list[Any] = [self.sock, self.wakeup.read_fd]
        while main_code is None:
            readable, _, _ = select.select(sources, [], [])
            if self.sock in readable:
                message, fds = recv(self.sock)
                if message is None:
                    sources.remove(self.sock)
                elif message["op"] == "fork":
                    self.fork_task(message, fds, live)
                elif message["op"] == "signal" and message["pid"] in live:
                    os.kill(message["pid"], message["signal"])
            if self.wakeup.read_fd in readable:
                self.wakeup.drain()
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    code = os.waitstatus_to_exitcode(status)
                    if pid == self.main_pid:
                        main_code = code
                    elif pid in live:
                        live.discard(pid)
                        with contextlib.suppress(OSError):
                            send(self.sock, {"op": "exited", "pid": pid, "code": code})
        # M is gone; tasks it did not wait for have no one to report to.
        for pid in live:
            os.kill(pid, signal.SIGKILL)
        for pid in live:
            os.waitpid(pid, 0)
        return main_code

    def fork_task(self, message: dict[str, Any], fds: list[int], live: set[int]) -> None:
        try:
            pid = _fork(  # T
                [self.sock, self.wakeup],
                lambda: self.run_task(message["args"], message["env"], fds),
            )
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            send(self.sock, {"op": "error", "message": f"fork failed: {exc}"})
            return
        for fd in fds:
            os.close(fd)
        live.add(pid)
        send(self.sock, {"op": "forked", "pid": pid})

    def run_task(self, args: list[str], env: dict[str, str], fds: list[int]) -> int:
        """T: exactly what the task's command line would do in a new interpreter."""
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.environ.clear()
        os.environ.update(env)
        _std_streams(unbuffered=bool(env.get("PYTHONUNBUFFERED")))
        _reseed()
        from pytest_artflow.engines import launch

        def main() -> None:
            # launch.main, with Metaflow's additions to __main__ (see load_flow).
            sys.argv = [self.path, *args]
            launch.run_cli(self.load_flow(), self.path, self.class_name)

        return run_as_program(main)


def _git_info_from_zygote(answer: io.BufferedReader) -> None:
    """In M: the first time Metaflow asks for the flow's git information, wait
    for what R found (``Zygote.warm_git_info``), as every task has it; then
    answer with it every time, as Metaflow's own per-process cache would."""
    from metaflow import metaflow_git

    asked = metaflow_git.get_repository_info
    lock = threading.Lock()

    def get_repository_info(path: Any) -> Any:
        with lock:
            if not answer.closed:
                with answer:
                    info = json.loads(answer.read() or b"null")
                # If R could not tell, git is asked here, as Metaflow would.
                metaflow_git.get_repository_info = asked if info is None else lambda path: info
        return metaflow_git.get_repository_info(path)

    metaflow_git.get_repository_info = get_repository_info


def warm_caches() -> None:
    """Fill the per-process caches whose contents are the same in every
    process of every run, so that no run or task fills them again: Metaflow's
    version (a ``git describe`` of Metaflow's own directory, asked by every
    process's CLI) and the compiled patterns with which ``inspect`` and
    ``tokenize`` read source code (as Metaflow does for each flow class)."""
    import inspect

    from metaflow import metaflow_version

    metaflow_version.get_version()
    inspect.getsource(warm_caches)


def _job_sys_path(server: Server, pythonpath: str, cwd: str) -> list[str]:
    """``sys.path`` as ``python -m`` would set it up with this ``PYTHONPATH``."""
    old = [p for p in server.initial_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    tail = [p for p in server.initial_path[1:] if p not in old]
    new = [os.path.abspath(p) for p in pythonpath.split(os.pathsep) if p]
    return list(dict.fromkeys([cwd, *new, *tail]))


# -- M: what the runtime sees of a forked task --


class TaskLauncher:
    """M's side of R: ``popen`` stands in for ``subprocess.Popen`` in Metaflow's
    runtime and forks the tasks it can, starting anything else as Popen would."""

    def __init__(self, sock: socket.socket, entrypoint: list[str]) -> None:
        self.sock = sock
        self.entrypoint = entrypoint
        self.exited: dict[int, int] = {}

    def popen(self, args: Any, **kwargs: Any) -> Any:
        if self.can_fork(args, kwargs):
            return ForkedTask(self, list(args), kwargs["env"], kwargs.get("bufsize", -1))
        return subprocess.Popen(args, **kwargs)

    def can_fork(self, args: Any, kwargs: dict[str, Any]) -> bool:
        if not isinstance(args, (list, tuple)) or list(args[: len(self.entrypoint)]) != (
            self.entrypoint
        ):
            return False
        if set(kwargs) - {"env", "bufsize", "stdin", "stdout", "stderr"}:
            return False
        if any(kwargs.get(s) != subprocess.PIPE for s in ("stdin", "stdout", "stderr")):
            return False
        env = kwargs.get("env")
        if env is None:
            return False
        # The runtime passes its own environment plus a few keys; anything else
        # (``@environment``, tracing) may be read at import: a new interpreter.
        here = os.environ
        changed = {k for k in env.keys() | here.keys() if env.get(k) != here.get(k)}
        return changed <= TASK_ENV_KEYS

    def fork(self, args: list[str], env: dict[str, str], fds: list[int]) -> int:
        send(self.sock, {"op": "fork", "args": args, "env": env}, fds)
        while True:
            message = self._receive()
            if message["op"] == "forked":
                return message["pid"]
            if message["op"] == "error":
                raise OSError(message["message"])

    def status(self, pid: int, timeout: float | None) -> int | None:
        """The exit status of ``pid``; ``None`` if it is still running after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.exited:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], wait)[0]:
                return None
            self._receive()
        return self.exited[pid]

    def signal(self, pid: int, signum: int) -> None:
        send(self.sock, {"op": "signal", "pid": pid, "signal": signum})

    def _receive(self) -> dict[str, Any]:
        message, _ = recv(self.sock)
        if message is None:
            raise RuntimeError("pytest-artflow: the run's zygote process is gone")
        if message["op"] == "exited":
            self.exited[message["pid"]] = message["code"]
        return message


class ForkedTask:
    """The part of ``subprocess.Popen`` Metaflow's runtime uses (``pid``, the
    three pipes, ``poll``, ``wait``, ``kill``), for a task forked by R."""

    def __init__(self, launcher: TaskLauncher, args: list[str], env: dict[str, str], bufsize: int):
        self.args = args
        self.returncode: int | None = None
        self._launcher = launcher
        child_in, parent_in = os.pipe()
        parent_out, child_out = os.pipe()
        parent_err, child_err = os.pipe()
        try:
            self.pid = launcher.fork(
                args[len(launcher.entrypoint) :], env, [child_in, child_out, child_err]
            )
        except BaseException:
            for fd in (parent_in, parent_out, parent_err):
                os.close(fd)
            raise
        finally:
            for fd in (child_in, child_out, child_err):
                os.close(fd)
        # The same file objects Popen makes for stdin/stdout/stderr=PIPE.
        self.stdin = open(parent_in, "wb", bufsize)  # noqa: SIM115
        self.stdout = open(parent_out, "rb", bufsize)  # noqa: SIM115
        self.stderr = open(parent_err, "rb", bufsize)  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._launcher.status(self.pid, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._launcher.status(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            self._launcher.signal(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# -- entry point of S --


def main(argv: list[str]) -> None:
    ctl = socket.socket(fileno=int(argv[0]))
    markers = {k: os.environ[k] for k in json.loads(argv[1])}
    server = Server(ctl, markers)
    try:
        ready = server.prepare()
    except BaseException as exc:
        import traceback

        send(ctl, {"op": "failed", "error": "".join(traceback.format_exception(exc))})
        raise SystemExit(1) from None
    # What the imports made stays out of the collector's way: children that
    # never touch an object never copy its page (copy-on-write).
    gc.freeze()
    send(ctl, ready)
    server.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
