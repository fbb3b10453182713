"""Running a function the way the interpreter runs a program, in a fork.

Every process of the fork engine but the server itself is a fork that must
behave like a fresh ``python`` running a program: its own streams and signal
handling, a traceback and an exit status for an uncaught exception,
``atexit`` handlers and non-daemon threads at the end, and never a return into
the code of the process it was forked from.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import io
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from .. import timeline


def run(main: Callable[[], object]) -> int:
    """Run ``main`` and end the way the interpreter ends a program: the exit
    status of ``SystemExit``, a traceback and 1 for anything else, then
    non-daemon threads joined, ``atexit`` handlers run, streams flushed."""
    code = _call(main)
    _end_program()
    return code or 0


def _call(main: Callable[[], object]) -> int | None:
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


def std_streams(unbuffered: bool) -> None:
    """New ``sys.stdin/stdout/stderr`` on fds 0-2, made the way the interpreter
    makes them at start-up (unbuffered writes under ``PYTHONUNBUFFERED``, as
    Metaflow's runtime asks of its tasks)."""
    made = []
    for fd, mode, old in ((0, "r", sys.stdin), (1, "w", sys.stdout), (2, "w", sys.stderr)):
        buffering = 0 if unbuffered and mode == "w" else -1
        buffer = open(fd, mode + "b", buffering, closefd=False)  # noqa: SIM115
        raw = buffer if buffering == 0 else buffer.raw  # type: ignore[attr-defined]
        stream = io.TextIOWrapper(
            buffer,
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


def reseed() -> None:
    """A fresh process seeds numpy's global generator from the OS at import;
    forks of one process would otherwise all draw the same numbers.
    (``random`` reseeds itself after a fork.)"""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def native_threads() -> int:
    """Threads of this process, those of C libraries too (Linux), which a fork
    would leave behind in the child with whatever locks they held."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def threads_through_fork() -> int:
    """This process's threads that a fork would leave behind: those still
    running once the libraries' own fork handlers (``pthread_atfork``) have
    run. A library may stop its threads there and start them again in each
    process on next use: OpenBLAS (numpy's BLAS) does, for the pool it starts
    at import. So a fork that does nothing lets the handlers run, and what
    is counted after it is what no library stops."""
    threads = native_threads()
    if threads > 1:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        threads = native_threads()
    return threads


def _default_signals() -> None:
    """A fresh process's SIGCHLD handling, first thing in a fork (before the
    parent's wakeup pipe is closed, whose fd number could be reused)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


class Wakeup:
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


#: Where ``report_exit`` moves its descriptor (below the usual limit of 1024).
_HIGH_FD = 900

#: Where this process writes its exit status as it ends (``report_exit``):
#: (the pid it was asked of, the descriptor).
_exit_report: tuple[int, int] | None = None


def report_exit(fd: int) -> None:
    """Write this process's exit status to ``fd`` as it leaves by
    ``_exit_like`` (its standard streams flushed and closed first), so that
    whoever holds the other end learns it without waiting for this process's
    parent to reap it. Only this process writes: its own forks inherit the
    descriptor but not the duty. A death that skips ``_exit_like`` (a
    signal, ``os._exit`` in user code) writes nothing and closes ``fd``."""
    global _exit_report
    os.set_inheritable(fd, False)
    # Out of the way of the numbers the program's own files get (3, 4, ...),
    # as in a fresh interpreter, where this descriptor does not exist.
    with contextlib.suppress(OSError):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
        os.close(fd)
        fd = high
    _exit_report = (os.getpid(), fd)


def _write_exit(code: int) -> None:
    """The last act of a process asked to ``report_exit``: whatever it wrote
    to its standard streams is in their pipes (closed, so the reader sees
    their end no later than the status) before the status is."""
    if _exit_report is None or _exit_report[0] != os.getpid():
        return
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            os.close(fd)
    timeline.mark("task.exit", str(code & 0xFF))
    with contextlib.suppress(OSError):
        os.write(_exit_report[1], str(code & 0xFF).encode())


def _exit_like(code: int) -> NoReturn:
    """Leave this fork with ``code`` (a negative code is death by that signal),
    never by raising: a fork must not return into its parent's code."""
    if code >= 0:
        _write_exit(code)
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


#: Descriptors that only this process may hold (see ``parent_only``).
_parent_only: set[int] = set()


def parent_only(fd: int) -> None:
    """Keep ``fd`` out of every fork of this process (its copy is closed first
    thing in ``fork``): a pipe whose end of file the reader takes as this
    process's own word, which no child may hold open or write to."""
    _parent_only.add(fd)


def not_parent_only(fd: int) -> None:
    """``fd`` is no longer this process's alone (or is about to be closed)."""
    _parent_only.discard(fd)


def fork_waiting(
    closing: Iterable[Any], body: Callable[[socket.socket], int]
) -> tuple[int, socket.socket]:
    """Fork a process ahead of its job (a spare): ``body`` gets the child's
    end of a new socket pair to wait on; the pid and this process's end.
    ``body`` is called as ``fork`` calls any body (no frame in between), so
    the job's code runs as deep in the stack as in a process forked for it."""
    ours, theirs = socket.socketpair()
    try:
        pid = fork([*closing, ours], functools.partial(body, theirs))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return pid, ours


def fork(closing: Iterable[Any], body: Callable[[], int]) -> int:
    """Fork; the child closes ``closing`` (its parent's end of things) and what
    is ``parent_only``, runs ``body`` and leaves with the status it returns.
    The parent gets the pid."""
    _flush_std_streams()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _default_signals()
            for fd in _parent_only:
                os.close(fd)
            _parent_only.clear()
            for each in closing:
                each.close()
            code = body()
        except BaseException as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        finally:
            _flush_std_streams()
            _exit_like(code)
    return pid
