"""What an engine is given and what it gives back."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

#: The module every flow process runs as (see ``inflow/launch.py``).
LAUNCH_MODULE = "pytest_artflow.inflow.launch"


@dataclass
class RunJob:
    """One Metaflow command for one flow: ``run``, ``step``, ``init``...

    ``args`` is everything after ``python flow.py``; the engine must run it in
    ``cwd`` with exactly ``env`` as the environment.
    """

    flow_file: Path
    #: The flow class's name in ``flow_file``, or ``shipped:<pickle>`` for a
    #: class defined inside a function (``launch.load_flow``).
    class_name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    timeout: float | None = None

    def command(self, python: str) -> list[str]:
        return [python, "-m", LAUNCH_MODULE, str(self.flow_file), self.class_name, *self.args]


@dataclass
class EngineResult:
    returncode: int
    output: str
    timed_out: bool = False
    duration: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


class Engine(abc.ABC):
    """Starts Metaflow's CLI for a job; one instance serves a whole pytest session."""

    name: str = ""

    @abc.abstractmethod
    def run(self, job: RunJob) -> EngineResult:
        """Run the job to the end (or its timeout), leaving no process behind."""

    def close(self) -> None:  # noqa: B027 - most engines keep nothing between runs
        """Release what the engine keeps between runs (called at session end)."""
