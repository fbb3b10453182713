"""pytest-artflow: test Metaflow flows with pytest.

The names a test annotates with come from here: the result model
(``FlowRun``, ``StepResult``, ``TaskResult``, ``Failure``, ``CaughtException``),
the ``Sandbox``, the fixtures' callable types (``ArtflowRun``, ``ArtflowStep``,
``ArtflowResume``), ``run_flow``, ``assert_artifact`` and every error.

This package is imported by every task process that a run starts, so it
imports nothing heavy here: names whose modules import more are loaded when
first asked for (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ArtflowError,
    ArtflowItemFailed,
    ArtifactReadError,
    FlowLoadWarning,
    FlowReferenceError,
    FlowRunFailed,
    ForkServerError,
    MetaflowChangedWarning,
    S3Unavailable,
    UnknownStepError,
)

if TYPE_CHECKING:
    from .assertions import assert_artifact
    from .results import CaughtException, Failure, FlowRun, StepResult, TaskResult
    from .resume import ArtflowResume
    from .runner import ArtflowRun
    from .sandbox import Sandbox
    from .standalone import run_flow
    from .step.fixture import ArtflowStep

__all__ = [
    "ArtflowError",
    "ArtflowItemFailed",
    "ArtflowResume",
    "ArtflowRun",
    "ArtflowStep",
    "ArtifactReadError",
    "CaughtException",
    "Failure",
    "FlowLoadWarning",
    "FlowReferenceError",
    "FlowRun",
    "FlowRunFailed",
    "ForkServerError",
    "MetaflowChangedWarning",
    "S3Unavailable",
    "Sandbox",
    "StepResult",
    "TaskResult",
    "UnknownStepError",
    "assert_artifact",
    "run_flow",
]
__version__ = "0.1.0"

# Names whose modules import Metaflow or pytest: loaded when first asked for.
_LAZY = {
    "run_flow": "standalone",
    "assert_artifact": "assertions",
    "CaughtException": "results",
    "Failure": "results",
    "FlowRun": "results",
    "StepResult": "results",
    "TaskResult": "results",
    "Sandbox": "sandbox",
    "ArtflowRun": "runner",
    "ArtflowStep": "step.fixture",
    "ArtflowResume": "resume",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
