"""pytest-artflow: test Metaflow flows with pytest.

This package is imported by every task process that a run starts, so it
imports nothing heavy here.
"""

from __future__ import annotations

from typing import Any

from .errors import ArtflowError, ArtifactReadError, FlowReferenceError, FlowRunFailed

__all__ = [
    "ArtflowError",
    "ArtifactReadError",
    "CaughtException",
    "FlowReferenceError",
    "FlowRunFailed",
    "assert_artifact",
    "run_flow",
]
__version__ = "0.1.0"

# Names whose modules import Metaflow: loaded when first asked for (PEP 562).
_LAZY = {
    "run_flow": "standalone",
    "assert_artifact": "assertions",
    "CaughtException": "results",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
