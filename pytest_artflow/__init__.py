"""pytest-artflow: test Metaflow flows with pytest.

This package is imported by every task process that a run starts, so it
imports nothing heavy here.
"""

from __future__ import annotations

from typing import Any

from .errors import ArtflowError, FlowReferenceError, FlowRunFailed

__all__ = ["ArtflowError", "CaughtException", "FlowReferenceError", "FlowRunFailed"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Result types load the result model, which task processes never need.
    if name == "CaughtException":
        from .result import CaughtException

        return CaughtException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
