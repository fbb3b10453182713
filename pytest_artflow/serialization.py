"""Artifact round trips through Metaflow's own datastore, without a flow run.

A value that survives ``pickle`` in a test can still come back different from
Metaflow (its serializer store picks the serializer, the content-addressed
store gzips the bytes, the metadata goes through JSON). ``roundtrip`` sends a
value down exactly that path: ``TaskDataStore.save_artifacts`` into a real
``LocalStorage`` datastore, and ``load_artifacts`` back from a reader built
from the same metadata Metaflow writes to ``data.json``. It needs no fixture,
so it works inside ``@given``.

The datastore lives in one private temporary directory per process, created
on first use and removed at exit: setting a datastore up per call would cost
more than the round trip itself.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
from typing import Any

from .compare import explain, type_name
from .unpicklable import find_unpicklable

__all__ = ["assert_roundtrip", "find_unpicklable", "roundtrip"]

__all__ = ["assert_roundtrip", "find_unpicklable", "roundtrip"]

_FLOW_NAME = "ArtflowRoundtrip"
_ARTIFACT = "value"
# Bytes (serialized size) and calls after which the stored blobs are deleted,
# so that a long property-test session or a few big arrays never fill the
# temporary directory. Deleting is cheap (~0.1 s for 8,000 blobs here).
_WIPE_AFTER_BYTES = 64 * 2**20
_WIPE_AFTER_CALLS = 4096


class _Scratch:
    """This process's private datastore root and the ``FlowDataStore`` on it."""

    def __init__(self) -> None:
        # Imported here: metaflow costs ~0.2 s, and the plugin imports this
        # package at startup. ``metaflow.plugins`` bootstraps the serializer
        # store that ``save_artifacts`` dispatches through.
        from .metaflow_seam import DATASTORES, FlowDataStore, LocalStorage

        del DATASTORES  # loaded for what it bootstraps

        self.pid = os.getpid()
        self.root = tempfile.mkdtemp(prefix="pytest-artflow-roundtrip-")
        # ``ds_root`` sets the root on this storage instance only; the class
        # attribute ``LocalStorage.datastore_root`` is left alone.
        self.flow_datastore = FlowDataStore(
            _FLOW_NAME, storage_impl=LocalStorage, ds_root=self.root
        )
        self.stored_bytes = 0
        self.calls = 0
        atexit.register(self.remove)

    def remove(self) -> None:
        # A forked child inherits this object and its atexit entry; only the
        # process that made the directory may delete it.
        if os.getpid() == self.pid:
            shutil.rmtree(self.root, ignore_errors=True)

    def account(self, size: int) -> None:
        self.stored_bytes += size
        self.calls += 1
        if self.stored_bytes > _WIPE_AFTER_BYTES or self.calls >= _WIPE_AFTER_CALLS:
            shutil.rmtree(os.path.join(self.root, _FLOW_NAME), ignore_errors=True)
            self.stored_bytes = self.calls = 0


_scratch: _Scratch | None = None
# One round trip at a time: a wipe must not delete a blob that another
# thread's round trip (of an equal value: the store is content-addressed)
# is about to read.
_lock = threading.Lock()


def _scratch_for_this_process() -> _Scratch:
    global _scratch
    if _scratch is None or _scratch.pid != os.getpid():
        _scratch = _Scratch()
    return _scratch


def roundtrip(obj: Any, datastore: str = "local") -> Any:
    """Save ``obj`` as a Metaflow artifact and load it back, as a task would.

    Raises what Metaflow raises for a value it cannot save (for an
    unpicklable one, ``UnpicklableArtifactException``). ``datastore="s3"``
    goes through Metaflow's ``S3Storage`` (and its ``s3op`` workers) on the
    S3 test server instead (``pytest-artflow[s3]``).
    """
    if datastore == "s3":
        from . import s3

        s3.require()
        with _lock, s3.roundtrip_datastore(_FLOW_NAME) as s3_store:
            return _roundtrip_through(s3_store, obj)[0]
    if datastore != "local":
        raise ValueError(f"roundtrip(datastore={datastore!r}): 'local' or 's3'")
    with _lock:
        scratch = _scratch_for_this_process()
        loaded, size = _roundtrip_through(scratch.flow_datastore, obj)
        scratch.account(size)
    return loaded


def _roundtrip_through(datastore: Any, obj: Any) -> tuple[Any, int]:
    """The loaded value and its serialized size."""
    writer = datastore.get_task_datastore("1", "roundtrip", "1", attempt=0, mode="w")
    writer.save_artifacts(iter([(_ARTIFACT, obj)]), len_hint=1)
    # What ``done()`` writes to data.json and ``get_task_datastores``
    # hands back to a reader. Skipping data.json and DONE.lock halves the
    # files created per call (file creation dominates the cost) and
    # changes nothing about the value.
    data_metadata = json.loads(json.dumps(writer.ds_metadata))
    reader = datastore.get_task_datastore(
        "1", "roundtrip", "1", attempt=0, data_metadata=data_metadata, mode="r"
    )
    [(_, loaded)] = list(reader.load_artifacts([_ARTIFACT]))
    return loaded, data_metadata["info"][_ARTIFACT]["size"]


def assert_roundtrip(obj: Any, datastore: str = "local") -> Any:
    """Fail unless ``obj`` comes back from a Metaflow round trip unchanged.

    Unchanged means ``compare.artifacts_equal`` and the same sharing of
    objects (``[a, a]`` must come back as one list twice, not two lists).
    Returns the loaded copy for further checks.
    """
    try:
        loaded = roundtrip(obj) if datastore == "local" else roundtrip(obj, datastore=datastore)
    except Exception as error:
        culprit = find_unpicklable(obj)
        detail = f"; first member that cannot be pickled: {culprit}" if culprit else ""
        raise AssertionError(
            f"Metaflow cannot save {type_name(type(obj))} as an artifact: "
            f"{type(error).__name__}: {error}{detail}"
        ) from error
    lines = explain(obj, loaded, aliasing=True)
    if lines:
        raise AssertionError(
            "the value changed in a Metaflow artifact round trip (left: before, right: after):\n"
            + "\n".join(f"  {line}" for line in lines)
        )
    return loaded
