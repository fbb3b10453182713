"""Where a run's time goes: timestamped marks from every process of a run.

Off unless asked for: with ``PYTEST_ARTFLOW_TIMELINE`` set to a file in the
pytest process's environment, each run's processes append one line per mark
to it (``<monotonic ns> <pid> <phase> <detail>``, the phase one word such
as ``task.forked``). ``CLOCK_MONOTONIC`` is one
clock for every process of a machine, so marks from the pytest process, the
fork server, a run's zygote, its run process and its tasks line up. The file
is opened once per process with ``O_APPEND`` and inherited across forks; a
line is a single ``write``, so lines of different processes never interleave.

``benchmarks/bench_engines.py --profile`` reads the marks back and prints the
budget of a run, phase by phase (``phases``).

This module imports only the standard library: every process of a run may
load it, and a mark that is off costs one global lookup.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

#: The pytest process's environment variable naming the file to append to.
ENV = "PYTEST_ARTFLOW_TIMELINE"

_fd: int | None = None


def requested() -> str | None:
    """The file the pytest process was asked to write marks to, if any."""
    return os.environ.get(ENV) or None


def start(path: str | None) -> None:
    """Write this process's marks (and its forks') to ``path``; ``None``: stop."""
    global _fd
    if _fd is not None:
        os.close(_fd)
        _fd = None
    if path:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


def mark(phase: str, detail: str = "") -> None:
    """Note that ``phase`` happens now in this process (a no-op when off)."""
    if _fd is not None:
        line = f"{time.monotonic_ns()} {os.getpid()} {phase} {detail}".rstrip() + "\n"
        with contextlib.suppress(OSError):
            os.write(_fd, line.encode())


@dataclass(frozen=True)
class Mark:
    ns: int
    pid: int
    phase: str
    detail: str


def read(path: str) -> list[Mark]:
    """The marks in ``path``, in time order."""
    return sorted(_parse(path), key=lambda m: m.ns)


def _parse(path: str) -> Iterator[Mark]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            ns, pid, phase, *detail = line.rstrip("\n").split(" ", 3)
            yield Mark(int(ns), int(pid), phase, detail[0] if detail else "")
