"""Snapshots of what a run produced: every step's artifacts as one value that
syrupy's ``snapshot`` fixture records once and compares every later run with.

A snapshot must be the same for the same flow whatever ran it (either engine,
any machine, any run), so it leaves out what changes by nature (run and task
ids, pathspecs, timestamps of the run, durations, the sandbox's path) and
turns values whose ``repr`` is lossy or unstable into stable text: numpy
arrays and pandas objects by dtype, shape, a content hash and a preview (in
full when small), objects without a readable ``repr`` by their type and a hash
of their pickle. Everything else stays itself, so syrupy's matchers and
``exclude`` filters see datetimes, floats and ints as what they are.

Nothing here imports syrupy: ``run.snapshot()`` works without it. The syrupy
side (the extension, ``--artflow`` items) is in ``snapshot_syrupy``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fnmatch
import fractions
import functools
import hashlib
import pathlib
import pickle
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from types import BuiltinFunctionType, FunctionType
from typing import TYPE_CHECKING, Any, cast

from ..errors import ArtifactReadError

if TYPE_CHECKING:
    from ..results import FlowRun, StepResult, TaskResult

#: Arrays and tables with at most this many elements are written in full.
FULL_LIMIT = 100
#: Longer bytes are written as their length, a hash and their first bytes.
BYTES_LIMIT = 1024
#: Elements shown from each end of a larger array or column.
PREVIEW = 3
#: What a path of the run's sandbox reads as in a snapshot.
SANDBOX = "<sandbox>"
#: Modules that ``flows.load_file`` names after a per-process hash: the
#: flow's own processes know them as ``__main__``.
_FLOW_MODULE = re.compile(r"^artflow_flow_\w+$")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

INSTALL_HINT = "snapshots need syrupy: pip install 'pytest-artflow[snapshot]'"


class RunSnapshot(OrderedDict[str, Any]):
    """Step name -> ``StepSnapshot``, in graph order (amber keeps the order
    of an ``OrderedDict``)."""


class StepSnapshot(list[Any]):
    """One ``TaskSnapshot`` per task of a step, in foreach-index order."""


class TaskSnapshot(dict[str, Any]):
    """Artifact name -> its readable value (amber sorts the names)."""


class Shown:
    """A value written as stable text: syrupy's amber writes its ``repr``.
    Not a dataclass, which amber would write field by field."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.text == self.text

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.text))


class ArrayValue(Shown):
    """A numpy array: dtype, shape and its values, or a hash and a preview."""


class TableValue(Shown):
    """A pandas DataFrame, Series or Index."""


class ScalarValue(Shown):
    """A numpy scalar, written the same under numpy 1 and 2."""


class OpaqueValue(Shown):
    """An object without a readable ``repr``: its type and a hash of its pickle."""


# -- readable values ---------------------------------------------------------

_PLAIN = (
    type(None),
    bool,
    int,
    float,
    complex,
    bytes,
    decimal.Decimal,
    fractions.Fraction,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    datetime.timezone,
    enum.Enum,
    range,
    FunctionType,
    BuiltinFunctionType,
)


def readable(value: Any, roots: Sequence[str] = ()) -> Any:
    """``value`` as a snapshot writes it: itself where its amber form is
    stable and complete, stand-ins (``Shown``) where it is not; containers
    are rebuilt only when something inside them changed. Occurrences of the
    ``roots`` paths in strings read as ``<sandbox>``."""
    return _Readable(roots).convert(value, 0)


def type_name(cls: type) -> str:
    """``module.Qualname``, with a flow file's module as ``__main__`` (its
    name in this process differs from run to run)."""
    module = cls.__module__
    if _FLOW_MODULE.match(module):
        module = "__main__"
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


class _Readable:
    def __init__(self, roots: Sequence[str]) -> None:
        # Longest first: a root inside another is replaced after it.
        self.roots = sorted({r for r in roots if r}, key=len, reverse=True)
        self.active: set[int] = set()

    def scrub(self, text: str) -> str:
        for root in self.roots:
            if root in text:
                text = text.replace(root, SANDBOX)
        return text

    def convert(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        module = type(value).__module__.split(".", 1)[0]
        if module == "numpy":
            return self.numpy(value)
        if module == "pandas":
            table = self.pandas(value)
            if table is not None:
                return table
        if isinstance(value, (bytes, bytearray)) and len(value) > BYTES_LIMIT:
            digest = hashlib.sha256(value).hexdigest()[:16]
            head = bytes(value[: PREVIEW * 8])
            return Shown(
                f"{type(value).__name__}(length={len(value)}, sha256={digest!r}, head={head!r})"
            )
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, type):
            return Shown(f"<class {type_name(value)}>")
        if isinstance(value, pathlib.PurePath):
            scrubbed = self.scrub(str(value))
            return value if scrubbed == str(value) else type(value)(scrubbed)
        if id(value) in self.active or depth > 90:
            return Shown("...")
        self.active.add(id(value))
        try:
            return self.container(value, depth + 1)
        finally:
            self.active.discard(id(value))

    def container(self, value: Any, depth: int) -> Any:
        if dataclasses.is_dataclass(value):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            converted = {k: self.convert(v, depth) for k, v in fields.items()}
            if all(converted[k] is fields[k] for k in fields):
                return value
            return self.record(type(value), converted)
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            items = [self.convert(v, depth) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return cast(Any, type(value))._make(items)
        if isinstance(value, dict):
            pairs = [(self.convert(k, depth), self.convert(v, depth)) for k, v in value.items()]
            if all(k is a and v is b for (k, v), (a, b) in zip(pairs, value.items(), strict=True)):
                return value
            return OrderedDict(pairs) if isinstance(value, OrderedDict) else dict(pairs)
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [self.convert(v, depth) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            base = next(t for t in (list, tuple, frozenset, set) if isinstance(value, t))
            return base(items)
        return self.other(value)

    def record(self, cls: type, values: dict[str, Any]) -> Any:
        """A dataclass of the same name and fields holding readable values."""
        return _record_class(cls.__name__, tuple(values))(**values)

    def other(self, value: Any) -> Any:
        cls = type(value)
        text = None
        if cast(Any, cls).__repr__ is not object.__repr__:
            try:
                text = repr(value)
            except Exception:
                text = None
        if text is None or _ADDRESS.search(text):
            return OpaqueValue(f"{type_name(cls)}(pickle_sha256={_pickle_hash(value)!r})")
        scrubbed = self.scrub(text)
        return value if scrubbed == text else Shown(scrubbed)

    def numpy(self, value: Any) -> Any:
        import numpy as np

        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, np.generic):
            item = value.item()
            if isinstance(item, str):
                item = self.scrub(item)
            return ScalarValue(f"numpy.{type(value).__name__}({item!r})")
        return self.other(value)

    def array(self, array: Any) -> ArrayValue:
        import numpy as np

        head = f"ndarray(dtype={array.dtype}, shape={tuple(array.shape)}"
        if array.size <= FULL_LIMIT:
            return ArrayValue(f"{head}, values={self.listed(array)})")
        flat = array.reshape(-1)
        preview = [*self.items(flat[:PREVIEW]), "...", *self.items(flat[-PREVIEW:])]
        digest = _array_hash(np, array)
        return ArrayValue(f"{head}, sha256={digest!r}, preview=[{', '.join(preview)}])")

    def listed(self, array: Any) -> str:
        if array.ndim == 0:
            return self.items(array.reshape(1))[0]
        if array.ndim == 1:
            return "[" + ", ".join(self.items(array)) + "]"
        return "[" + ", ".join(self.listed(row) for row in array) + "]"

    def items(self, flat: Any) -> list[str]:
        if flat.dtype.kind in "mM":
            flat = flat.astype(str)
        return [repr(self.convert(v, 1)) for v in flat.tolist()]

    def pandas(self, value: Any) -> TableValue | None:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            dtypes = {str(k): str(v) for k, v in value.dtypes.items()}
            head = f"DataFrame(shape={value.shape}, dtypes={dtypes}"
            if value.size <= FULL_LIMIT:
                data = {str(c): self.column(value[c]) for c in value.columns}
                shown = ", ".join(f"{k!r}: {v}" for k, v in data.items())
                body = f"index={self.index(value.index)}, data={{{shown}}}"
            else:
                rows = {str(c): self.column(value[c].iloc[:PREVIEW]) for c in value.columns}
                shown = ", ".join(f"{k!r}: {v}" for k, v in rows.items())
                body = f"sha256={_table_hash(value)!r}, head={{{shown}}}"
            return TableValue(f"{head}, {body})")
        if isinstance(value, pd.Series):
            name = self.convert(value.name, 1)
            head = f"Series(name={name!r}, dtype={value.dtype}, shape={value.shape}"
            if value.size <= FULL_LIMIT:
                body = f"index={self.index(value.index)}, values={self.column(value)}"
            else:
                body = f"sha256={_table_hash(value)!r}, preview={self.column(value.iloc[:PREVIEW])}"
            return TableValue(f"{head}, {body})")
        if isinstance(value, pd.Index):
            return TableValue(self.index(value))
        return None

    def index(self, index: Any) -> str:
        import pandas as pd

        if isinstance(index, pd.RangeIndex):
            return repr(index)
        head = f"{type(index).__name__}(dtype={index.dtype}, length={len(index)}"
        if len(index) <= FULL_LIMIT:
            return f"{head}, values={self.column(index)})"
        return f"{head}, sha256={_table_hash(index)!r}, preview={self.column(index[:PREVIEW])})"

    def column(self, values: Any) -> str:
        return repr(self.convert(list(values.tolist()), 1))


@functools.cache
def _record_class(name: str, fields: tuple[str, ...]) -> type:
    """One stand-in class per dataclass shape, so that two snapshots of the
    same values compare equal."""
    return dataclasses.make_dataclass(name, list(fields), frozen=True)


def _array_hash(np: Any, array: Any) -> str:
    """sha256 of dtype, shape and content: bytes in little-endian order for
    plain dtypes, the object hash for object arrays."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype.hasobject:
        digest.update(_pickle_hash(array).encode())
    else:
        contiguous = np.ascontiguousarray(array)
        if contiguous.dtype.byteorder == ">":
            contiguous = contiguous.astype(contiguous.dtype.newbyteorder("<"))
        digest.update(memoryview(contiguous).cast("B"))
    return digest.hexdigest()[:16]


def _table_hash(value: Any) -> str:
    """pandas' own row hashes (the same on every platform), with the labels
    and dtypes; an object column pandas cannot hash falls back to the
    object hash."""
    import pandas as pd

    digest = hashlib.sha256(repr(getattr(value, "dtypes", getattr(value, "dtype", ""))).encode())
    digest.update(repr(list(getattr(value, "columns", []))).encode())
    try:
        rows = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index))
        digest.update(rows.to_numpy().tobytes())
    except TypeError:
        digest.update(_pickle_hash(value).encode())
    return digest.hexdigest()[:16]


def _pickle_hash(value: Any) -> str:
    """A hash of ``value``'s pickle that is the same in every process: joblib's
    hasher orders dicts and sets, and classes of a flow file count as
    ``__main__`` ones. Without joblib, a hash of the plain pickle."""
    try:
        from joblib.hashing import NumpyHasher
    except ImportError:
        try:
            return hashlib.sha256(pickle.dumps(value, protocol=4)).hexdigest()[:16]
        except Exception as exc:
            return f"unpicklable: {type(exc).__name__}"

    class Hasher(NumpyHasher):  # type: ignore[misc]
        def save_global(self, obj: Any, name: str | None = None, **kwargs: Any) -> None:
            module = getattr(obj, "__module__", None) or ""
            if _FLOW_MODULE.match(module):
                self.save(("__main__", getattr(obj, "__qualname__", name)))
                return
            super().save_global(obj, name=name, **kwargs)

        dispatch = NumpyHasher.dispatch.copy()
        dispatch[type] = save_global
        dispatch[FunctionType] = save_global

    try:
        return str(Hasher(hash_name="sha256").hash(value))[:16]
    except Exception as exc:
        return f"unhashable: {type(exc).__name__}"


# -- snapshots of results ----------------------------------------------------


def _roots(task: TaskResult) -> list[str]:
    sandbox = task.run.sandbox if task.run is not None else None
    if sandbox is None:
        return []
    root = str(sandbox.root)
    return [root, str(pathlib.Path(root).resolve())]


def _excluded(patterns: Iterable[str], step: str, name: str) -> bool:
    """``step.artifact`` patterns (``*`` and ``?`` allowed; a bare name is
    any step's artifact of that name)."""
    for pattern in patterns:
        step_pattern, dot, name_pattern = pattern.rpartition(".")
        if not dot:
            step_pattern = "*"
        if fnmatch.fnmatchcase(step, step_pattern) and fnmatch.fnmatchcase(name, name_pattern):
            return True
    return False


def task_snapshot(task: TaskResult, exclude: Iterable[str] = ()) -> TaskSnapshot:
    """Every artifact of ``task`` by name, readable; an artifact that did not
    load back is an error naming it, as reading it would be."""
    patterns = list(exclude)
    problem = task.read_problem()
    if problem is not None:
        raise ArtifactReadError(problem)
    convert = _Readable(_roots(task))
    return TaskSnapshot(
        (name, convert.convert(value, 0))
        for name, value in sorted(task.artifacts.items())
        if not _excluded(patterns, task.step, name)
    )


def step_snapshot(step: StepResult, exclude: Iterable[str] = ()) -> StepSnapshot:
    patterns = list(exclude)
    return StepSnapshot(task_snapshot(task, patterns) for task in step.tasks)


def run_snapshot(run: FlowRun, exclude: Iterable[str] = ()) -> RunSnapshot:
    patterns = list(exclude)
    return RunSnapshot((step.name, step_snapshot(step, patterns)) for step in run)


# -- what changed --------------------------------------------------------------

_KEY = re.compile(r"^'(?P<key>[^']*)': ")
_INDENT = "  "
Where = tuple[str | None, int | None, str | None]


def _chunks(text: str) -> dict[Where, str] | None:
    """The serialized snapshot cut into its artifacts: (step, task number,
    artifact) -> its lines. ``None`` for text that is not a snapshot."""
    lines = text.split("\n")
    if not lines:
        return None
    top = lines[0].split("(", 1)[0]
    levels = {"RunSnapshot": 1, "StepSnapshot": 0, "TaskSnapshot": -1}.get(top)
    if levels is None:
        return None
    step_depth, task_depth, artifact_depth = levels, levels + 1, levels + 2
    step: str | None = None
    task: int | None = None if levels < 0 else -1
    artifact: str | None = None
    chunks: dict[Where, list[str]] = {}
    for line in lines[1:]:
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // len(_INDENT)
        key = _KEY.match(stripped)
        if depth == step_depth and key and "StepSnapshot(" in stripped:
            step, task, artifact = key["key"], -1, None
            continue
        if depth == task_depth and stripped.startswith("TaskSnapshot("):
            task = (-1 if task is None else task) + 1
            artifact = None
            chunks.setdefault((step, task, None), [])
            continue
        if depth == artifact_depth and key:
            artifact = key["key"]
        if artifact is not None and depth >= artifact_depth:
            chunks.setdefault((step, task, artifact), []).append(line)
    return {where: "\n".join(body) for where, body in chunks.items()}


def _name(where: Where) -> str:
    step, task, artifact = where
    parts = []
    if step is not None:
        parts.append(f"step {step!r}")
    if task is not None:
        parts.append(f"task {task}")
    text = ", ".join(parts)
    if artifact is None:
        return text
    return f"{text}: artifact {artifact!r}" if text else f"artifact {artifact!r}"


def describe_changes(received: str, stored: str) -> list[str]:
    """One line per artifact (or task) that differs between two serialized
    snapshots: which step, task and artifact, and whether it changed, is new
    or is gone. Empty if either text is not a snapshot."""
    new, old = _chunks(received), _chunks(stored)
    if new is None or old is None:
        return []
    lines = []
    for where in [*new, *(w for w in old if w not in new)]:
        step, task, artifact = where
        if artifact is not None and ((step, task, None) in new) != ((step, task, None) in old):
            continue  # the whole task is new or gone: said once, below or above
        if where in new and where in old:
            if new[where] != old[where] and artifact is not None:
                lines.append(f"{_name(where)} changed")
        elif where in new:
            lines.append(f"{_name(where)} is new")
        else:
            lines.append(f"{_name(where)} is gone")
    return lines


def changed_artifacts(received: str, stored: str) -> list[str]:
    """``step.artifact`` names of what differs, for a one-line summary."""
    new, old = _chunks(received) or {}, _chunks(stored) or {}
    names = []
    for where in [*new, *(w for w in old if w not in new)]:
        step, _, artifact = where
        if artifact is not None and new.get(where) != old.get(where):
            name = ".".join(p for p in (step, artifact) if p) or "?"
            if name not in names:
                names.append(name)
    return names
