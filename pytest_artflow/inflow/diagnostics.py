"""Better words for failures that only a task process can explain.

An artifact that cannot be pickled never reaches the test: Metaflow fails while
saving it, in the task, with ``Cannot pickle dump artifact named "model"``.
The object is still at hand there, so the launcher lets this module name the
member that fails (``model.callbacks[2]._lock: _thread.RLock``) in the same
message. Metaflow's behaviour is otherwise unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..metaflow_seam import UNPICKLABLE_PREFIX


def install() -> None:
    """Name the failing member when an artifact cannot be pickled."""
    from .. import metaflow_seam

    unpicklable = metaflow_seam.UnpicklableArtifactException
    metaflow_seam.wrap_save_artifacts(functools.partial(_naming_member, unpicklable))


def _naming_member(unpicklable: type[Any], original: Callable[..., Any]) -> Callable[..., Any]:
    def save_artifacts(
        self: Any, artifacts_iter: Iterable[tuple[str, Any]], *a: Any, **kw: Any
    ) -> Any:
        # Metaflow serializes each artifact as soon as it is drawn, so the last
        # one drawn is the one that failed.
        last: list[tuple[str, Any]] = []

        def remembered() -> Iterator[tuple[str, Any]]:
            for item in artifacts_iter:
                last[:] = [item]
                yield item

        try:
            return original(self, remembered(), *a, **kw)
        except unpicklable as exc:
            if last:
                from ..unpicklable import find_unpicklable

                name, obj = last[0]
                where = find_unpicklable(obj, name=name)
                if where:
                    exc.message = f'{UNPICKLABLE_PREFIX} "{name}": {where}'
            raise

    return save_artifacts
