"""Round trips through Metaflow's datastore, and finding what cannot be pickled."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from pytest_artflow import serialization
from pytest_artflow.compare import artifacts_equal
from pytest_artflow.serialization import assert_roundtrip, find_unpicklable, roundtrip
from pytest_artflow.strategies import artifacts, picklable

PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


class Callback:
    def __init__(self) -> None:
        self._lock = threading.RLock()


class Model:
    def __init__(self) -> None:
        self.callbacks = [print, "log", Callback()]


class DropsItsLock:
    """Picklable: ``__getstate__`` leaves the lock out."""

    def __init__(self) -> None:
        self.value = 1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"value": self.value}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())


class ForgetsAField:
    """Pickles ``total`` but loads without it: a round trip must notice."""

    def __init__(self, total: int) -> None:
        self.total = total

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.total = 0


def generator() -> Any:
    yield 1


def local_instance() -> Any:
    class Local:
        pass

    return Local()


@settings(PROPERTY, max_examples=600)
@given(picklable())
def test_roundtrip_keeps_every_picklable_value(value: Any) -> None:
    assert_roundtrip(value)


@settings(PROPERTY, max_examples=60)
@given(artifacts())
def test_roundtrip_keeps_artifact_dicts(values: dict[str, Any]) -> None:
    for value in values.values():
        assert_roundtrip(value)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        -0.0,
        2**5000,
        "lone \ud800 surrogate",
        Decimal("-sNaN7"),
        {"a": [1, (2.5, None)], "b": {b"x", frozenset({1})}},
        np.arange(12, dtype="f4").reshape(3, 4),
    ],
    ids=["nan", "negative zero", "huge int", "surrogate", "snan", "nested", "array"],
)
def test_roundtrip_returns_an_equal_copy(value: Any) -> None:
    loaded = roundtrip(value)

    assert type(loaded) is type(value)
    assert artifacts_equal(loaded, value)


def test_roundtrip_keeps_shared_references() -> None:
    shared = [1, 2]
    loaded = roundtrip([shared, shared, [1, 2]])

    assert loaded[0] is loaded[1]
    assert loaded[0] is not loaded[2]


def test_assert_roundtrip_fails_when_sharing_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialization, "roundtrip", lambda obj: [list(item) for item in obj])
    shared = [1]

    with pytest.raises(AssertionError, match=r"at \[1\]: the same object as at \[0\]"):
        assert_roundtrip([shared, shared])


def test_assert_roundtrip_names_what_changed() -> None:
    with pytest.raises(AssertionError, match=r"at \['ledger'\]\.total: left 7 \(int\), right 0"):
        assert_roundtrip({"ledger": ForgetsAField(7)})


def test_assert_roundtrip_reports_numpy_byte_order_change() -> None:
    # numpy loads a pickled (protocol 4, as Metaflow uses) big-endian array as native
    with pytest.raises(AssertionError, match=r"left >i2 \(3,\), right int16 \(3,\)"):
        assert_roundtrip(np.array([1, 2, 3], dtype=">i2"))


def test_assert_roundtrip_points_at_the_unpicklable_member() -> None:
    with pytest.raises(AssertionError, match=r"obj\.callbacks\[2\]\._lock: _thread\.RLock"):
        assert_roundtrip(Model())


def test_roundtrip_raises_metaflow_error_for_unpicklable_value() -> None:
    from metaflow.datastore.exceptions import UnpicklableArtifactException

    with pytest.raises(UnpicklableArtifactException):
        roundtrip(threading.Lock())


def test_roundtrip_goes_through_metaflows_content_addressed_store() -> None:
    value = {"marker": os.urandom(16)}
    roundtrip(value)

    assert serialization._scratch is not None
    blobs = Path(serialization._scratch.root, "ArtflowRoundtrip", "data").glob("*/*")
    contents = [gzip.decompress(blob.read_bytes()) for blob in blobs if "_meta" not in blob.name]
    assert pickle.dumps(value, protocol=4) in contents


def test_roundtrip_writes_only_to_its_private_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metaflow.plugins.datastores.local_storage import LocalStorage

    class_root = LocalStorage.datastore_root
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    roundtrip({"a": os.urandom(8)})

    assert list(tmp_path.iterdir()) == []
    assert LocalStorage.datastore_root == class_root
    root = Path(serialization._scratch.root)
    assert root.is_dir() and oct(root.stat().st_mode & 0o777) == "0o700"


def test_stored_blobs_are_deleted_as_they_pile_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialization, "_WIPE_AFTER_CALLS", 3)
    monkeypatch.setattr(serialization, "_scratch", None)  # a fresh store, counting from 0
    stored = []
    for _ in range(4):
        roundtrip(os.urandom(8))
        data = Path(serialization._scratch.root, "ArtflowRoundtrip", "data")
        stored.append(len([blob for blob in data.glob("*/*") if "_meta" not in blob.name]))

    assert stored == [1, 2, 0, 1]


def test_private_directory_is_removed_at_exit_but_not_by_a_forked_child() -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from pytest_artflow import serialization
        serialization.roundtrip(1)
        root = serialization._scratch.root
        pid = os.fork()
        if pid == 0:
            serialization.roundtrip(2)  # the child gets a directory of its own
            print(serialization._scratch.root, flush=True)
            sys.exit(0)  # runs atexit handlers, the parent's included
        os.waitpid(pid, 0)
        assert os.path.isdir(root), "a forked child removed its parent's directory"
        print(root)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    )
    child_root, parent_root = done.stdout.split()
    assert child_root != parent_root
    assert not os.path.exists(parent_root)
    assert not os.path.exists(child_root)


def test_find_unpicklable_path_through_attributes_and_lists() -> None:
    assert find_unpicklable(Model(), name="model") == "model.callbacks[2]._lock: _thread.RLock"


def test_find_unpicklable_lambda() -> None:
    assert find_unpicklable(lambda: 1) == "obj: function"


def test_find_unpicklable_open_file(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("x")
    with path.open() as handle:
        assert find_unpicklable({"source": handle}) == "obj['source']: _io.TextIOWrapper"


def test_find_unpicklable_generator() -> None:
    assert find_unpicklable([1, generator()]) == "obj[1]: generator"


def test_find_unpicklable_local_class_instance() -> None:
    found = find_unpicklable([1, local_instance()])

    assert found is not None
    assert found.startswith("obj[1]: ")
    assert found.endswith("local_instance.<locals>.Local")


def test_find_unpicklable_nested_dict_key() -> None:
    key = threading.Lock()
    assert (
        find_unpicklable({"outer": {1: "fine", key: "v"}}) == "obj['outer'].keys()[1]: _thread.lock"
    )


def test_find_unpicklable_tuple_in_dict_key_and_set_member() -> None:
    lock = threading.Lock()
    assert find_unpicklable({("a", lock): 1}) == "obj.keys()[0][1]: _thread.lock"
    assert (
        find_unpicklable({"s": frozenset({("x", lock)})}) == "obj['s']{member 0}[1]: _thread.lock"
    )


def test_find_unpicklable_survives_cycles() -> None:
    class_holder = Model()
    class_holder.callbacks.append(class_holder)  # a cycle, then the culprit
    assert find_unpicklable(class_holder) == "obj.callbacks[2]._lock: _thread.RLock"


@pytest.mark.parametrize(
    "value",
    [None, [1, {"a": (2, 3)}], DropsItsLock(), np.zeros(3), Decimal("NaN"), print],
    ids=["none", "nested", "getstate drops lock", "array", "decimal nan", "builtin function"],
)
def test_find_unpicklable_none_for_picklable_values(value: Any) -> None:
    assert find_unpicklable(value) is None


def test_find_unpicklable_respects_getstate() -> None:
    holder = {"ok": DropsItsLock(), "bad": [generator()]}
    assert find_unpicklable(holder) == "obj['bad'][0]: generator"
