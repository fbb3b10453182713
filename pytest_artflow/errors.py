"""Every exception and warning pytest-artflow raises on purpose, in one place
(``pytest_artflow`` exports them all). Kept import-light: task processes
import it too."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from .results import FlowRun

F = TypeVar("F", bound=Callable[..., Any])


class ArtflowError(Exception):
    """Base of every error pytest-artflow raises on purpose."""


def plugin_frames_hidden(call: F) -> F:
    """A fixture's ``__call__`` whose ``ArtflowError`` reaches the test without
    the plugin's frames: the message says everything, and those frames (and
    their locals, pickled plans among them) would only bury it."""

    @functools.wraps(call)
    def hidden(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        try:
            return call(*args, **kwargs)
        except ArtflowError as exc:
            raise exc.with_traceback(None) from exc.__cause__

    return cast(F, hidden)


class FlowReferenceError(ArtflowError):
    """A flow reference cannot be turned into a runnable flow (no such file,
    no flow in it, several and none named, a class Metaflow cannot run)."""


class FlowRunFailed(ArtflowError):
    """A run (or a single step) did not succeed.

    ``run`` is the ``FlowRun`` with everything that did finish, so a test
    can still look at the artifacts of the steps before the failure.
    """

    def __init__(self, message: str, run: FlowRun | None = None) -> None:
        super().__init__(message)
        self.run = run


class UnknownStepError(ArtflowError, KeyError):
    """``run["nope"]``: the message lists the steps that did run."""

    def __str__(self) -> str:
        return str(self.args[0])


class ArtflowItemFailed(ArtflowError):
    """An ``--artflow`` item: the flow failed, an artifact did not load, or an
    ``artflow_expect`` line did not hold."""


class ForkServerError(ArtflowError):
    """The fork engine's server could not start, or died."""


class FlowLoadWarning(UserWarning):
    """Loading a flow file in the pytest process left something behind that
    cannot be undone (a thread its module-level code started)."""


class MetaflowChangedWarning(UserWarning):
    """The installed Metaflow lacks (or changed) a name the ``fork`` engine
    needs; its runs go to the ``subprocess`` engine instead. Warned once per
    session, naming what changed."""


class ArtifactReadError(ArtflowError, KeyError):
    """An artifact (or a whole task) that Metaflow saved but that cannot be
    read back in this process. Raised where the value is asked for, so that the
    rest of the run stays readable; not an ``AttributeError``, so ``hasattr``
    and ``getattr(..., default)`` cannot hide it."""

    def __str__(self) -> str:
        return str(self.args[0])


class S3Unavailable(ArtflowError):
    """The S3 test server cannot be used: the extra is missing, it did not
    start, or the endpoint does not answer."""
