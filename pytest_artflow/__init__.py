"""pytest-artflow: test Metaflow flows with pytest.

This package is imported by every task process that a run starts, so it
imports nothing heavy here.
"""

from .errors import ArtflowError, ArtifactReadError, FlowReferenceError, FlowRunFailed

__all__ = ["ArtflowError", "ArtifactReadError", "FlowReferenceError", "FlowRunFailed"]
__version__ = "0.1.0"
