"""What a run left in the datastore: the model (``model``), reading it
(``read``, ``cards``), failure analysis (``failure``) and where a value came
from (``provenance``)."""

from __future__ import annotations

from ..errors import UnknownStepError
from .failure import describe_failure, find_failure
from .model import (
    ArtifactData,
    ArtifactDiff,
    CaughtException,
    Failure,
    FlowRun,
    StepResult,
    TaskResult,
)
from .read import main_module_as, read_run, read_task

__all__ = [
    "ArtifactData",
    "ArtifactDiff",
    "CaughtException",
    "Failure",
    "FlowRun",
    "StepResult",
    "TaskResult",
    "UnknownStepError",
    "describe_failure",
    "find_failure",
    "main_module_as",
    "read_run",
    "read_task",
]
