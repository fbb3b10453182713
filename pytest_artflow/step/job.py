"""The job format of ``artflow_step``: what the pytest process sends to the
step's process (``StepJob``, ``ParentTask``) and how values travel in it.

Values travel to the job with plain ``pickle``, not cloudpickle: the step's
process stores every artifact it reads back with Metaflow's own (plain pickle)
serializer, so a value plain pickle cannot handle (a lambda, a class pickled by
value) would fail there anyway, later and less clearly; it is refused up front
with the input's name instead. Classes and functions of the flow's own file are
shipped as ``__main__.X``, which is what they are in a real run.

Both sides import this module (the step's process unpickles the job with it):
it imports only the standard library.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..errors import ArtflowError

#: Set in a job's environment: the path of its pickled ``StepJob``.
JOB_ENV = "ARTFLOW_STEP_JOB"
#: Ids of the scratch run's tasks. Not numbers (nor is the run's): Metaflow's
#: ``step`` and ``init`` commands register such ids themselves (numbers are what
#: its runtime hands out, and registers when it does).
PARAMS_TASK = "params"
STEP_TASK = "step"
#: Holds what ``self.input`` returns when the test gives ``input=``.
INPUT_ARTIFACT = "_artflow_input"

_Frame = tuple[str, str, int, int, Any]  # ForeachFrame(step, var, num_splits, index, value)


# --------------------------------------------------------------------------
# What the pytest process sends to the job's process
# --------------------------------------------------------------------------


@dataclass
class ParentTask:
    """One task the step reads as input, written before the step runs."""

    step: str
    task_id: str
    #: ``run/step/task/attempt`` of a task in ``StepJob.origin_root`` to copy, or
    #: ``None`` for a task made up from the ``_parameters`` task.
    origin: str | None = None
    #: Artifacts to set (over the copied or made-up ones), pickled one by one.
    values: dict[str, bytes] = field(default_factory=dict)
    #: Metaflow's bookkeeping artifacts to set (plain values).
    bookkeeping: dict[str, Any] = field(default_factory=dict)
    #: The foreach stack to set, as ``ForeachFrame`` fields; ``None`` keeps the origin's.
    frames: list[_Frame] | None = None


@dataclass
class StepJob:
    flow_name: str
    run_id: str
    #: The scratch datastore (``.../.metaflow``) the step's run lives in.
    root: str
    parents: list[ParentTask]
    #: Metaflow arguments of ``init`` (writes ``_parameters``); ``None``: no init.
    init_args: list[str] | None
    #: Parameters whose values ``init`` gives when parents are copied.
    parameter_names: list[str]
    #: The datastore ``origin`` tasks are read from (the sandbox's).
    origin_root: str | None
    #: Where the job writes the parents' artifact keys (also: "parents are ready").
    report: str
    stdout: str
    stderr: str
    #: Metaflow's datastore type (``DataStoreStorage.TYPE``) of ``root``, and of ``origin_root``.
    storage: str = "local"
    origin_storage: str = "local"


# --------------------------------------------------------------------------
# The job's process
# --------------------------------------------------------------------------


def main_global(qualname: str) -> Any:
    """``__main__.<qualname>`` in the process that unpickles: the flow file's module."""
    return functools.reduce(getattr, qualname.split("."), sys.modules["__main__"])


# --------------------------------------------------------------------------
# The pytest process
# --------------------------------------------------------------------------


class _FlowFilePickler(pickle.Pickler):
    """Pickles the flow file's own classes and functions as ``__main__`` ones."""

    def __init__(self, file: io.BytesIO, module: ModuleType) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.module = module

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or callable(obj):
            qualname = getattr(obj, "__qualname__", None)
            if (
                isinstance(qualname, str)
                and getattr(obj, "__module__", None) == self.module.__name__
                and "<locals>" not in qualname
            ):
                try:
                    found = functools.reduce(getattr, qualname.split("."), self.module)
                except AttributeError:
                    found = None
                if found is obj:
                    return main_global, (qualname,)
        return NotImplemented


def ship(name: str, value: Any, module: ModuleType | None) -> bytes:
    """``value`` pickled for the step's process, or a clear error naming the input.
    Classes of ``module`` (if any) are ``__main__`` ones in that process."""
    buffer = io.BytesIO()
    try:
        if module is None:
            pickle.dump(value, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            _FlowFilePickler(buffer, module).dump(value)
    except Exception as exc:
        raise ArtflowError(
            f"{name} cannot become an artifact: Metaflow stores artifacts with pickle, "
            f"which fails on it ({type(exc).__name__}: {exc})"
        ) from None
    return buffer.getvalue()
