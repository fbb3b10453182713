"""The fork server behind the ``fork`` engine, and every process it starts.

One run, as a process tree (P is the pytest process)::

    P ── S   fork server: a fresh interpreter, started once per session and
         │   environment; it imports Metaflow and then only waits for jobs.
         └── R   run zygote (a fork of S, one per run, a session of its own,
             │   forked as a spare before its run is asked for): it takes the
             │   run's environment and sandbox, loads the flow file as
             │   ``__main__`` and then runs no Metaflow code itself; it tells P
             │   the run's exit status once the rest of the run is gone.
             ├── G   a fork of R as it starts: asks ``git`` about the flow's
             │       directory for R to hand to M and every task.
             ├── M   the run process (a fork of R): Metaflow's own CLI and
             │       runtime, whose task launcher asks R for each task process.
             └── T   one per task attempt (a fork of R): what
                     ``python -m pytest_artflow.inflow.launch FLOW CLASS step ...``
                     does, minus the interpreter start and the imports.

Tasks fork from R, not from M: by the time M's runtime launches a task, M has
been through Metaflow's CLI (flow and step decorators initialised, ``current``
and the system context set, ``--with`` decorators attached to the class); a
task forked from it would inherit that, a fresh task process does not. R is
exactly the state every fresh task process reaches before Metaflow's CLI
starts, so tasks forked from it start like fresh ones, only sooner.

R keeps one T forked ahead of time (the spare), waiting for its job, so that
starting a task costs M a message, not a fork: R hands the spare M's job (its
command line, environment and pipes), answers with its pid, and only then
forks the next spare. R runs no code of the run between tasks, so a spare
forked earlier is in the very state a fork made at the request would be in.
A spare never outlives R: it ends when R closes its end of the job channel,
and it is in R's process group, which is what ending a run kills.

S imports Metaflow before it knows any sandbox: every per-sandbox setting is a
marker in S and is rewritten by each R (``markers.py``). What S cannot account
for (a Metaflow config file that applies to the run, a marker it cannot
rewrite) makes R refuse the run, and the engine then runs it as fresh
interpreters instead.

The pieces: ``messages.py`` (what P, S, R and M say to each other),
``program.py`` (how each fork behaves like a program of its own),
``tasklauncher.py`` (M's side: tasks as Metaflow's runtime sees them), and this
module (S and R).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import select
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from .. import metaflow_seam, timeline
from ..inflow import lifetime
from . import program
from .markers import SENTINEL_PREFIX, Bindings
from .messages import recv, send
from .precompiled import PrecompiledImports
from .tasklauncher import TaskLauncher, task_name

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
    "pytest_artflow.inflow.launch",
    "pytest_artflow.inflow.codepackage",
    "pytest_artflow.inflow.diagnostics",
    "pytest_artflow.inflow.stepjob",
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

#: Metaflow's commands that start tasks (its runtime): R keeps a spare task
#: process ready from the start of such a run; for any other (a single step,
#: ``init``), only once M asks for a task, if ever.
RUNTIME_COMMANDS = frozenset({"run", "resume", "spin"})


# -- S: the server --


class Server:
    """Forks one zygote per run; reports their exit; kills their groups.

    The zygote of the next run is forked ahead of it (the spare, waiting for
    its job on a socket of its own), so that a run starts with a message, not
    a fork; each spare serves exactly one run (every run starts from a fresh
    copy of this process), and the next spare is forked once the run it
    serves has started."""

    def __init__(self, ctl: socket.socket, markers: dict[str, str]) -> None:
        self.ctl = ctl
        self.markers = markers
        self.initial_env = dict(os.environ)
        self.initial_path = list(sys.path)
        self.runs: set[int] = set()
        #: The spare zygote's pid and this process's end of its socket.
        self.spare: tuple[int, socket.socket] | None = None

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
        # Each process imports them for its flow, from bytecode read here once.
        PrecompiledImports(FLOW_DEPENDENT).install()
        warm_caches()
        self.config_files = metaflow_seam.config_files()
        self.bindings = Bindings.find(SENTINEL_PREFIX) if self.markers else Bindings()
        # What the imports changed in the environment (none, usually): a fresh
        # process of the run would make the same changes.
        self.import_env = {k: v for k, v in os.environ.items() if self.initial_env.get(k) != v}
        threads = program.threads_through_fork()
        if threads > 1:
            # A fork keeps only the forking thread: the others' locks stay held.
            self.bindings.unpatchable.append(f"importing Metaflow started {threads - 1} thread(s)")
        # A Metaflow that lacks what the run processes patch cannot be served.
        self.bindings.unpatchable += metaflow_seam.fork_engine_problems()
        return {"op": "ready", "pid": os.getpid(), "unpatchable": self.bindings.unpatchable}

    def serve(self) -> None:
        # What a killed run leaves behind (a daemon a step started) comes here.
        lifetime.become_subreaper()
        self.wakeup = program.Wakeup()
        try:
            self.fork_spare()
            while True:
                watched: list[Any] = [self.ctl, self.wakeup.read_fd]
                readable, _, _ = select.select(watched, [], [])
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
            self.drop_spare()
            for pid in list(self.runs):
                self.kill(pid)
            while self.runs:
                pid, _ = os.wait()
                self.runs.discard(pid)
            lifetime.end_children()

    def start(self, job: dict[str, Any], fds: list[int]) -> None:
        timeline.mark("server.job")
        pid = self.hand_to_spare(job, fds)
        if pid is None:
            pid = program.fork(  # R
                [self.ctl, self.wakeup], lambda: Zygote(self, job, *fds).run()
            )
        for fd in fds:
            os.close(fd)
        self.runs.add(pid)
        send(self.ctl, {"op": "started", "pid": pid})
        timeline.mark("server.started", str(pid))
        # The next run's zygote, while this one runs (before it is asked for).
        self.fork_spare()

    def fork_spare(self) -> None:
        """Fork the next run's zygote (R), to wait for its job (``await_job``)."""
        if self.spare is not None:
            return
        try:
            self.spare = program.fork_waiting([self.ctl, self.wakeup], self.await_job)
        except OSError:
            return  # no spare: the next run forks its zygote when it is asked for
        timeline.mark("server.spare", str(self.spare[0]))

    def await_job(self, sock: socket.socket) -> int:
        """The spare: a session of its own at once (the server kills a run by
        its group), then the one job it is given, or end of file when the
        server stops or dies."""
        os.setsid()
        message, fds = recv(sock)
        sock.close()
        if message is None:
            for fd in fds:
                os.close(fd)
            return 0
        timeline.mark("zygote.job")
        return Zygote(self, message["job"], *fds).run()

    def hand_to_spare(self, job: dict[str, Any], fds: list[int]) -> int | None:
        """Give ``job`` to the spare zygote; its pid, or ``None`` if there was
        none or it is gone (its exit is reaped as any child's)."""
        if self.spare is None:
            return None
        pid, sock = self.spare
        self.spare = None
        try:
            send(sock, {"job": job}, fds)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            return None
        finally:
            sock.close()
        return pid

    def drop_spare(self) -> None:
        """End the spare zygote (the server stops): it has no job, nothing else."""
        if self.spare is not None:
            pid, sock = self.spare
            self.spare = None
            sock.close()
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

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
            if self.spare is not None and info.si_pid == self.spare[0]:
                # The spare died waiting (killed): the next run forks its own.
                self.spare[1].close()
                self.spare = None
                continue
            if info.si_pid not in self.runs:
                continue  # a process of an ended run, re-parented here
            self.runs.discard(info.si_pid)
            # Processes of this run that outlived its zygote (killed on a
            # timeout) are children here now; no other run's are (nor the spare).
            spare = {self.spare[0]} if self.spare is not None else set()
            lifetime.end_children(keep=self.runs | spare)
            timeline.mark("server.exited", str(info.si_pid))
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
        if os.getsid(0) != os.getpid():  # a spare made its session already
            os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(devnull)
        os.close(out_fd)
        #: The pytest process reads what this process says here (``report``,
        #: ``finish``); no other process of the run holds it.
        self.status_fd = status_fd
        program.parent_only(status_fd)
        self.main_names = dict(server.main_additions)
        #: Why tasks cannot be forked from here (then they are new interpreters).
        self.no_fork: str | None = None

    def run(self) -> int:
        """The run, then its exit status told to the pytest process directly
        (``finish``): it need not wait for the server to notice this exit."""
        code = self.run_zygote()
        self.finish(code)
        return code

    def run_zygote(self) -> int:
        # The run's environment says where its marks go.
        timeline.start(timeline.requested(self.job["env"]))
        # First, so that git's answers are in before M asks for them.
        git = self.ask_git()
        refusal = self.enter()
        timeline.mark("zygote.entered")
        if refusal:
            os.kill(git[0], signal.SIGKILL)
            os.waitpid(git[0], 0)
            os.close(git[1])
            self.report(refused=refusal)
            return 0
        from pytest_artflow.inflow import launch

        sys.argv = [self.path, *self.job["args"]]
        sys.path[0] = os.path.dirname(self.path)
        self.warm_imports()
        timeline.mark("zygote.imported")
        threads = program.threads_through_fork()
        if threads > 1:
            self.no_fork = f"the flow's imports started {threads - 1} thread(s)"
        self.report(refused=None, tasks=self.no_fork or "forked")
        # Every process of the run stays below this one (see ``lifetime``).
        lifetime.become_subreaper()
        gc.freeze()
        self.entrypoint = launch.task_entrypoint(self.path, self.class_name)
        self.wakeup = program.Wakeup()
        to_main, self.sock = socket.socketpair()
        git_r, git_w = os.pipe()
        git_info, git_answer = os.fdopen(git_r, "rb"), os.fdopen(git_w, "wb")
        self.main_pid = program.fork(  # M
            [self.sock, self.wakeup, git_answer], lambda: self.run_main(to_main, git_info)
        )
        timeline.mark("zygote.main", str(self.main_pid))
        to_main.close()
        git_info.close()
        # M may have ended already (its flow file did not load): nobody to tell.
        with contextlib.suppress(BrokenPipeError), git_answer:
            self.warm_git_info(git, git_answer)
        return self.serve()

    def report(self, **status: Any) -> None:
        """One line of what this run says to the pytest process."""
        os.write(self.status_fd, (json.dumps(status) + "\n").encode())

    def finish(self, code: int) -> None:
        """Tell the pytest process the run's exit status and let go of the
        run's output: every other process of the run is gone (``serve``), so
        the pytest process has all of it and need not wait for this process
        to exit or for the server to reap it. A zygote that dies without
        saying (killed, a timeout) leaves the word to the server."""
        program._flush_std_streams()
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        timeline.mark("zygote.finished", str(code))
        self.report(exit=code)
        program.not_parent_only(self.status_fd)
        os.close(self.status_fd)

    def ask_git(self) -> tuple[int, int]:
        """Fork G, which asks ``git`` about the flow's directory (Metaflow's
        own ``get_repository_info``: five ``git`` calls, 10-30 ms one after
        the other; G asks them at once) while this process warms the flow's
        imports and M starts Metaflow's CLI; G's pid and the pipe its answer
        comes on (see ``warm_git_info``). A process, not a thread: this one
        forks every task and must stay single-threaded. Forked before this
        process has entered the run (``enter``), G enters as far as git can
        tell: the run's directory and environment."""
        answer_r, answer_w = os.pipe()

        def ask() -> int:
            os.close(answer_r)
            # Asked where and as the run's processes would ask (``enter``).
            os.chdir(self.job["cwd"])
            os.environ.clear()
            os.environ.update(self.job["env"])
            directory = os.path.dirname(os.path.abspath(self.path))
            try:
                info = metaflow_seam.repository_info_at_once(directory)
            except Exception:
                # Each process asks again, as Metaflow would, and fails as it would.
                info = None
            with open(answer_w, "wb") as answer:
                answer.write(json.dumps(info).encode())
            return 0

        try:
            pid = program.fork([], ask)
        finally:
            os.close(answer_w)
        timeline.mark("zygote.git", str(pid))
        return pid, answer_r

    def warm_git_info(self, git: tuple[int, int], answer: io.BufferedWriter) -> None:
        """Fill Metaflow's own per-process cache of the flow's git information
        with G's answer (``ask_git``), before any task is forked, for every
        task to inherit, and tell M (see ``_git_info_from_zygote``): within one
        run each of them would find the same repository, branch and commit.
        M asks only once it registers metadata."""
        pid, answer_r = git
        info = None
        try:
            with open(answer_r, "rb") as found, contextlib.suppress(ValueError):
                # Nothing, or not all of it, if G died: each process asks.
                info = json.loads(found.read() or b"null")
            os.waitpid(pid, 0)
            timeline.mark("zygote.gitinfo")
            if info is not None:
                metaflow_seam.fill_repository_info(info)
        finally:
            answer.write(json.dumps(info).encode())

    def warm_imports(self) -> None:
        """Import what the flow file imports (anywhere in it, steps included),
        so that no task pays for it; the flow's own code runs in M and each
        task, once, as in a new process. A shipped class is unpickled once
        here for the same reason: that imports what it refers to."""
        import ast

        from pytest_artflow.inflow import launch

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
        try:
            files = metaflow_seam.read_config_files()
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
        from pytest_artflow.inflow import launch

        return launch.load_flow(self.path, self.class_name, self.main_names)

    def run_main(self, sock: socket.socket, git_info: io.BufferedReader) -> int:
        """M: Metaflow's CLI, with its runtime's task launcher swapped, its
        code package built on demand and its git information from R."""
        from pytest_artflow.inflow import codepackage, launch

        codepackage.install()
        _git_info_from_zygote(git_info)
        if self.no_fork is None:
            metaflow_seam.set_runtime_popen(TaskLauncher(sock, self.entrypoint).popen)
        program.reseed()

        def main() -> None:
            try:
                launch.run_cli(self.load_flow(), self.path, self.class_name)
            finally:
                timeline.mark("main.done")

        return program.run(main)

    def serve(self) -> int:
        """Start tasks for M until it ends; then end with its exit status."""
        live: set[int] = set()
        main_code: int | None = None
        sources: list[Any] = [self.sock, self.wakeup.read_fd]
        #: The task process forked ahead of time, and R's end of its job channel.
        self.spare: tuple[int, socket.socket] | None = None
        if self.no_fork is None and RUNTIME_COMMANDS & set(self.job["args"]):
            self.fork_spare()
        while main_code is None:
            readable, _, _ = select.select(sources, [], [])
            if self.sock in readable:
                try:
                    message, fds = recv(self.sock)
                except ConnectionResetError:
                    # M ended with reports of R's it never needed unread.
                    message, fds = None, []
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
                        timeline.mark("zygote.mainexit", str(code))
                        main_code = code
                    elif pid in live:
                        live.discard(pid)
                        with contextlib.suppress(OSError):
                            send(self.sock, {"op": "exited", "pid": pid, "code": code})
                    elif self.spare is not None and pid == self.spare[0]:
                        # Killed from outside before it had a job: fork another when asked.
                        self.spare[1].close()
                        self.spare = None
        # M is gone; tasks it did not wait for have no one to report to, the
        # spare gets no job, and what the run's processes left behind (a
        # daemon a step started) ends.
        if self.spare is not None:
            live.add(self.spare[0])
            self.spare[1].close()
            self.spare = None
        for pid in live:
            os.kill(pid, signal.SIGKILL)
        for pid in live:
            os.waitpid(pid, 0)
        lifetime.end_children()
        return main_code

    def fork_spare(self) -> None:
        """Fork the next task process, to wait for its job (``run_spare``)."""
        self.spare = program.fork_waiting([self.sock, self.wakeup], self.run_spare)  # T
        timeline.mark("spare.forked", str(self.spare[0]))

    def fork_task(self, message: dict[str, Any], fds: list[int], live: set[int]) -> None:
        """Hand M's job to the spare (forking one now if there is none, or if
        it died unused), answer M with its pid, then fork the next spare."""
        job = {"args": message["args"], "env": message["env"]}
        try:
            # The spare, or if it died unused (killed from outside), a new one.
            for attempt in (1, 2):
                if self.spare is None:
                    self.fork_spare()
                assert self.spare is not None
                pid, channel = self.spare
                self.spare = None
                try:
                    with channel:
                        send(channel, job, fds)
                    break
                except OSError:
                    # Its end is closed: it is dead or dying, and not a task.
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    if attempt == 2:
                        raise
        except OSError as exc:
            send(self.sock, {"op": "error", "message": f"fork failed: {exc}"})
            return
        finally:
            for fd in fds:
                os.close(fd)
        live.add(pid)
        send(self.sock, {"op": "forked", "pid": pid})
        timeline.mark("task.forked", str(pid))
        # Off M's path: M has its answer and goes on meanwhile.
        with contextlib.suppress(OSError):
            self.fork_spare()

    def run_spare(self, channel: socket.socket) -> int:
        """T before its job: wait for it, then run it (``run_task``). End
        quietly if R ends first (its end of the channel closes unused)."""
        try:
            message, fds = recv(channel)
        except (OSError, EOFError):
            return 0
        finally:
            channel.close()
        if message is None:
            for fd in fds:
                os.close(fd)
            return 0
        return self.run_task(message["args"], message["env"], fds)

    def run_task(self, args: list[str], env: dict[str, str], fds: list[int]) -> int:
        """T: exactly what the task's command line would do in a new interpreter.
        ``fds``: its stdin, stdout, stderr, and where to write its exit status."""
        timeline.mark("task.start", task_name(args))
        stdio, (exit_fd,) = fds[:3], fds[3:]
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in stdio:
            if fd > 2:
                os.close(fd)
        program.report_exit(exit_fd)
        os.environ.clear()
        os.environ.update(env)
        program.std_streams(unbuffered=bool(env.get("PYTHONUNBUFFERED")))
        program.reseed()
        from pytest_artflow.inflow import launch

        def main() -> None:
            # launch.main, with Metaflow's additions to __main__ (see load_flow).
            sys.argv = [self.path, *args]
            launch.run_cli(self.load_flow(), self.path, self.class_name)

        return program.run(main)


def _git_info_from_zygote(answer: io.BufferedReader) -> None:
    """In M: the first time Metaflow asks for the flow's git information, wait
    for what R found (``Zygote.warm_git_info``), as every task has it; then
    answer with it every time, as Metaflow's own per-process cache would."""
    lock = threading.Lock()

    def answering(asked: Callable[..., Any]) -> Callable[..., Any]:
        def get_repository_info(path: Any) -> Any:
            with lock:
                if not answer.closed:
                    timeline.mark("main.gitwait")
                    with answer:
                        info = json.loads(answer.read() or b"null")
                    timeline.mark("main.gitinfo")
                    # If R could not tell, git is asked here, as Metaflow would.
                    metaflow_seam.set_repository_info(asked if info is None else lambda path: info)
            return metaflow_seam.call_repository_info(path)

        return get_repository_info

    metaflow_seam.answer_repository_info(answering)


def warm_caches() -> None:
    """Fill the per-process caches whose contents are the same in every
    process of every run, so that no run or task fills them again: Metaflow's
    version (a ``git describe`` of Metaflow's own directory, asked by every
    process's CLI) and the compiled patterns with which ``inspect`` and
    ``tokenize`` read source code (as Metaflow does for each flow class)."""
    import inspect

    metaflow_seam.warm_version()
    inspect.getsource(warm_caches)


def _job_sys_path(server: Server, pythonpath: str, cwd: str) -> list[str]:
    """``sys.path`` as ``python -m`` would set it up with this ``PYTHONPATH``."""
    old = [p for p in server.initial_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    tail = [p for p in server.initial_path[1:] if p not in old]
    new = [os.path.abspath(p) for p in pythonpath.split(os.pathsep) if p]
    return list(dict.fromkeys([cwd, *new, *tail]))


# -- entry point of S --


def main(argv: list[str]) -> None:
    ctl = socket.socket(fileno=int(argv[0]))
    markers = {k: os.environ[k] for k in json.loads(argv[1])}
    timeline.start(timeline.requested())
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
