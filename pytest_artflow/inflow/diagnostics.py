"""Better words for failures that only a task process can explain.

An artifact that cannot be pickled never reaches the test: Metaflow fails while
saving it, in the task, with ``Cannot pickle dump artifact named "model"``.
The object is still at hand there, so the launcher lets this module name the
member that fails (``model.callbacks[2]._lock: _thread.RLock``) in the same
message. Metaflow's behaviour is otherwise unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

#: The start of the message Metaflow prints for an unpicklable artifact.
UNPICKLABLE_PREFIX = "Cannot pickle dump artifact named"


def install() -> None:
    """Name the failing member when an artifact cannot be pickled."""
    from metaflow.datastore.exceptions import UnpicklableArtifactException
    from metaflow.datastore.task_datastore import TaskDataStore

    original = TaskDataStore.save_artifacts
    if getattr(original, "_artflow", False):
        return

    @functools.wraps(original)
    def save_artifacts(self: Any, artifacts_iter: Iterable[tuple[str, Any]], *a: Any, **kw: Any):
        # Metaflow serializes each artifact as soon as it is drawn, so the last
        # one drawn is the one that failed.
        last: list[tuple[str, Any]] = []

        def remembered() -> Iterator[tuple[str, Any]]:
            for item in artifacts_iter:
                last[:] = [item]
                yield item

        try:
            return original(self, remembered(), *a, **kw)
        except UnpicklableArtifactException as exc:
            if last:
                from ..serialization import find_unpicklable

                name, obj = last[0]
                where = find_unpicklable(obj, name=name)
                if where:
                    exc.message = f'{UNPICKLABLE_PREFIX} "{name}": {where}'
            raise

    save_artifacts._artflow = True  # type: ignore[attr-defined]
    TaskDataStore.save_artifacts = save_artifacts  # type: ignore[method-assign]
