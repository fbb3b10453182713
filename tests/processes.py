"""What processes a test left alive, read from ``/proc`` (Linux)."""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def children(parent: int) -> set[int]:
    """The live children of ``parent`` (zombies are not alive: they are only
    waiting for their parent to read their exit status)."""
    found = set()
    for entry in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(parent) and fields[0] != "Z":
            found.add(int(entry.split("/")[2]))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for(condition: Callable[[], T], what: str, limit: float = 300.0) -> T:
    """``condition()``'s first true value: waits for an event, however loaded
    the machine, and fails naming ``what`` only after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)
    return found
