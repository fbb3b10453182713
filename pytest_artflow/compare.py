"""Equality of artifact values, strict enough to trust a round trip.

Python's ``==`` is the wrong question for artifacts: ``nan != nan`` makes a
perfectly preserved value look changed, while ``1 == 1.0 == True`` and
``0.0 == -0.0`` make a changed value look preserved. ``artifacts_equal``
asks "is this the same value, as pickle would rebuild it?" instead, and
``explain`` says where two values part ways so a failure message can point
at ``[2]['a'].x`` rather than print two huge reprs.

numpy and pandas are imported only when a value's type comes from them, so
importing this module (the plugin does) stays cheap.
"""

from __future__ import annotations

import copyreg
import dataclasses
import datetime
import decimal
import math
import reprlib
from collections import OrderedDict, defaultdict
from collections.abc import Generator, Iterator
from typing import Any

from . import session

__all__ = ["artifacts_equal", "explain"]

_MISSING = object()

# Values whose identity cannot be observed in a useful way (immutable, or
# interned by Python itself): a round trip may share or split them freely.
_IDENTITY_FREE: tuple[type, ...] = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    tuple,
    frozenset,
    range,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    datetime.tzinfo,
    type,
)

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 6


def type_name(cls: type) -> str:
    """``module.QualName`` of a class, without the noise of ``builtins.``."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def artifacts_equal(left: Any, right: Any) -> bool:
    """Whether two artifact values are the same value.

    A ``pytest_artflow_compare`` implementation decides first, at every level
    of nesting; otherwise NaN equals NaN, ``-0.0`` differs from ``0.0``, types
    must match exactly (``1``, ``1.0`` and ``True`` all differ), containers
    and dataclasses are compared member by member, numpy and pandas objects
    with their own testing helpers.
    """
    return next(_Walk(_compare_hook()).diffs(left, right, ""), None) is None


def explain(left: Any, right: Any, *, limit: int = 20, aliasing: bool = False) -> list[str]:
    """Readable lines saying where ``left`` and ``right`` differ.

    Empty when they are equal (by the rules of ``artifacts_equal``). With
    ``aliasing=True``, ``right`` is taken to be a copy of ``left`` (a round
    trip) and object sharing must match too: two places that hold the same
    list in ``left`` must hold one list in ``right``, and vice versa.
    """
    lines: list[str] = []
    walk = _Walk(_compare_hook(), aliasing=aliasing)
    for count, difference in enumerate(walk.diffs(left, right, "")):
        if count == limit:
            lines.append("... (further differences not shown)")
            break
        lines.extend(difference.splitlines())
    return lines


def _compare_hook() -> Any | None:
    """The conftest ``pytest_artflow_compare`` caller, if any is implemented.

    Looked up per comparison (not cached) because the active pytest session
    can change; skipped entirely when nobody implements it, which keeps the
    common case free of pluggy's per-call cost.
    """
    relay = session.hook()
    caller = getattr(relay, "pytest_artflow_compare", None) if relay is not None else None
    if caller is None or not caller.get_hookimpls():
        return None
    return caller


def _show(value: Any) -> str:
    return f"{_short.repr(value)} ({type_name(type(value))})"


def _where(path: str) -> str:
    return f"at {path}" if path else "at top level"


def _same_float(left: float, right: float) -> bool:
    if math.isnan(left) or math.isnan(right):
        return math.isnan(left) and math.isnan(right)
    return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)


class _Walk:
    """One comparison: walks both values in step and yields differences.

    A generator, so ``artifacts_equal`` stops at the first difference while
    ``explain`` collects them all from the same code.
    """

    def __init__(self, hook: Any | None, *, aliasing: bool = False) -> None:
        self._hook = hook
        self._aliasing = aliasing
        self._active: set[tuple[int, int]] = set()
        self._equal: set[tuple[int, int]] = set()
        # Objects made up during the walk (pickle states, numpy field views)
        # are kept alive so that their ids, used as keys above, are not reused.
        self._keep: list[Any] = []
        self._left_seen: dict[int, tuple[Any, str]] = {}
        self._right_seen: dict[int, tuple[Any, str]] = {}

    def equal(self, left: Any, right: Any) -> bool:
        """A side comparison that records no sharing (used to pair up members)."""
        return next(_Walk(self._hook).diffs(left, right, ""), None) is None

    def diffs(self, left: Any, right: Any, path: str) -> Iterator[str]:
        if self._aliasing:
            yield from self._sharing(left, right, path)
        if self._hook is not None:
            verdict = self._hook(left=left, right=right)
            if verdict is not None:
                if not verdict:
                    yield (
                        f"{_where(path)}: pytest_artflow_compare says they differ: "
                        f"left {_show(left)}, right {_show(right)}"
                    )
                return
        if left is right:
            return
        if type(left) is not type(right):
            yield f"{_where(path)}: type differs: left {_show(left)}, right {_show(right)}"
            return
        key = (id(left), id(right))
        if key in self._equal or key in self._active:
            # Already shown equal, or a cycle back to a pair being compared:
            # anything that differs inside it is reported where it is.
            return
        self._active.add(key)
        found = False
        for difference in self._by_type(left, right, path):
            found = True
            yield difference
        self._active.discard(key)
        if not found:
            self._equal.add(key)
            self._keep.append((left, right))  # a temporary (a numpy view) must keep its id

    def _sharing(self, left: Any, right: Any, path: str) -> Iterator[str]:
        if isinstance(left, _IDENTITY_FREE) or _is_numpy_scalar(left):
            return
        earlier_right = self._left_seen.get(id(left))
        earlier_left = self._right_seen.get(id(right))
        if earlier_right is None and earlier_left is None:
            self._left_seen[id(left)] = (right, path)
            self._right_seen[id(right)] = (left, path)
            self._keep.append((left, right))
        elif earlier_right is not None and earlier_right[0] is not right:
            yield (
                f"{_where(path)}: the same object as at {earlier_right[1] or 'top level'} "
                "in the original, a different object after the round trip"
            )
        elif earlier_left is not None and earlier_left[0] is not left:
            yield (
                f"{_where(path)}: a different object from the one at "
                f"{earlier_left[1] or 'top level'} in the original, the same object after "
                "the round trip"
            )

    def _by_type(self, left: Any, right: Any, path: str) -> Iterator[str]:
        package = type(left).__module__.partition(".")[0]
        if package == "numpy":
            handled = yield from self._numpy(left, right, path)
            if handled:
                return
        elif package == "pandas":
            handled = yield from self._pandas(left, right, path)
            if handled:
                return
        if isinstance(left, float):
            if not _same_float(left, right):
                yield f"{_where(path)}: left {_show(left)}, right {_show(right)}"
        elif isinstance(left, complex):
            if not (_same_float(left.real, right.real) and _same_float(left.imag, right.imag)):
                yield f"{_where(path)}: left {_show(left)}, right {_show(right)}"
        elif isinstance(left, decimal.Decimal):
            # compare_total: exact, copes with NaN and sNaN, sees -0 and 1.0 vs 1.00
            if left.compare_total(right) != 0:
                yield f"{_where(path)}: left {_show(left)}, right {_show(right)}"
        elif isinstance(left, (list, tuple)):
            yield from self._sequence(left, right, path)
            yield from self._instance_dict(left, right, path)
        elif isinstance(left, dict):
            yield from self._mapping(left, right, path)
            yield from self._instance_dict(left, right, path)
        elif isinstance(left, (set, frozenset)):
            yield from self._members(left, right, path)
            yield from self._instance_dict(left, right, path)
        elif dataclasses.is_dataclass(left) and not isinstance(left, type):
            for field in dataclasses.fields(left):
                yield from self.diffs(
                    getattr(left, field.name, _MISSING),
                    getattr(right, field.name, _MISSING),
                    f"{path}.{field.name}",
                )
        elif isinstance(left, (datetime.datetime, datetime.time)):
            yield from self._clock(left, right, path)
        elif isinstance(left, datetime.timezone):
            if (left.utcoffset(None), left.tzname(None)) != (
                right.utcoffset(None),
                right.tzname(None),
            ):
                yield f"{_where(path)}: left {_show(left)}, right {_show(right)}"
        elif isinstance(left, range):
            if (left.start, left.stop, left.step) != (right.start, right.stop, right.step):
                yield f"{_where(path)}: left {_show(left)}, right {_show(right)}"
        elif type(left).__eq__ is object.__eq__:  # type: ignore[comparison-overlap]
            yield from self._pickled_state(left, right, path)
        else:
            yield from self._operator(left, right, path)

    def _sequence(self, left: Any, right: Any, path: str) -> Iterator[str]:
        if len(left) != len(right):
            yield (
                f"{_where(path)}: length differs: left {len(left)}, right {len(right)}"
                f" (left {_show(left)}, right {_show(right)})"
            )
            return
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            yield from self.diffs(a, b, f"{path}[{index}]")

    def _pair_up(
        self, left: list[Any], right: list[Any]
    ) -> tuple[list[tuple[Any, Any]], list[Any], list[Any]]:
        """Match members of two hashed collections one to one.

        A hash lookup finds the partner in the common case; members it cannot
        find (NaN, or equal-by-``==`` but different type) are matched by a
        linear search with this module's equality.
        """
        index: dict[Any, Any] = {}
        for member in right:
            index[member] = member
        unmatched_right = {id(member): member for member in right}
        pairs: list[tuple[Any, Any]] = []
        leftover: list[Any] = []
        for member in left:
            try:
                partner = index.get(member, _MISSING)
            except Exception:
                partner = _MISSING
            if (
                partner is not _MISSING
                and id(partner) in unmatched_right
                and self.equal(member, partner)
            ):
                pairs.append((member, partner))
                del unmatched_right[id(partner)]
            else:
                leftover.append(member)
        only_left: list[Any] = []
        for member in leftover:
            for key, partner in unmatched_right.items():
                if self.equal(member, partner):
                    pairs.append((member, partner))
                    del unmatched_right[key]
                    break
            else:
                only_left.append(member)
        return pairs, only_left, list(unmatched_right.values())

    def _mapping(self, left: dict[Any, Any], right: dict[Any, Any], path: str) -> Iterator[str]:
        pairs, only_left, only_right = self._pair_up(list(left), list(right))
        for key in only_left:
            yield f"{_where(path)}: key {_show(key)} only on the left"
        for key in only_right:
            yield f"{_where(path)}: key {_show(key)} only on the right"
        for position, (left_key, right_key) in enumerate(pairs):
            yield from self.diffs(left_key, right_key, f"{path}.keys()[{position}]")
            yield from self.diffs(
                left[left_key], right[right_key], f"{path}[{_short.repr(left_key)}]"
            )
        if isinstance(left, OrderedDict) and not (only_left or only_right):
            order = {id(right_key): n for n, (_, right_key) in enumerate(pairs)}
            if [order[id(key)] for key in right] != list(range(len(pairs))):
                yield f"{_where(path)}: key order differs (an OrderedDict)"
        if isinstance(left, defaultdict) and isinstance(right, defaultdict):
            yield from self.diffs(
                left.default_factory, right.default_factory, f"{path}.default_factory"
            )

    def _members(self, left: Any, right: Any, path: str) -> Iterator[str]:
        pairs, only_left, only_right = self._pair_up(list(left), list(right))
        if only_left or only_right:
            yield (
                f"{_where(path)}: members only on the left: "
                f"{', '.join(map(_show, only_left)) or 'none'}; "
                f"only on the right: {', '.join(map(_show, only_right)) or 'none'}"
            )
        for position, (a, b) in enumerate(pairs):
            yield from self.diffs(a, b, f"{path}{{member {position}}}")

    def _instance_dict(self, left: Any, right: Any, path: str) -> Iterator[str]:
        """Attributes of a subclass of a builtin container (pickle keeps them)."""
        left_vars = getattr(left, "__dict__", None)
        right_vars = getattr(right, "__dict__", None)
        if left_vars or right_vars:
            yield from self._attributes(left_vars or {}, right_vars or {}, path)

    def _attributes(self, left: dict[str, Any], right: dict[str, Any], path: str) -> Iterator[str]:
        for name in left.keys() - right.keys():
            yield f"{_where(path)}: attribute {name!r} only on the left"
        for name in right.keys() - left.keys():
            yield f"{_where(path)}: attribute {name!r} only on the right"
        for name in left.keys() & right.keys():
            yield from self.diffs(left[name], right[name], f"{path}.{name}")

    def _clock(self, left: Any, right: Any, path: str) -> Iterator[str]:
        # Aware values compare equal across time zones (same instant); a
        # round trip must keep the zone and ``fold`` as well.
        if left.replace(tzinfo=None) != right.replace(tzinfo=None) or left.fold != right.fold:
            yield f"{_where(path)}: left {_show(left)}, right {_show(right)}"
        else:
            yield from self.diffs(left.tzinfo, right.tzinfo, f"{path}.tzinfo")

    def _pickled_state(self, left: Any, right: Any, path: str) -> Iterator[str]:
        """Objects without ``__eq__`` are equal when pickle would rebuild them alike."""
        try:
            left_reduced = left.__reduce_ex__(4)
            right_reduced = right.__reduce_ex__(4)
        except Exception:
            left_reduced = right_reduced = None
        if not isinstance(left_reduced, tuple) or not isinstance(right_reduced, tuple):
            # Not reducible (or pickled by reference): identity is all there is.
            yield f"{_where(path)}: different objects: left {_show(left)}, right {_show(right)}"
            return
        self._keep.append((left_reduced, right_reduced))
        left_parts = _reduce_parts(left_reduced)
        right_parts = _reduce_parts(right_reduced)
        yield from self.diffs(left_parts[0], right_parts[0], f"{path}.__reduce_ex__(4)[0]")
        yield from self.diffs(left_parts[1], right_parts[1], f"{path}.__reduce_ex__(4)[1]")
        left_state, right_state = left_parts[2], right_parts[2]
        if _is_attribute_state(left_state) and _is_attribute_state(right_state):
            yield from self._attributes(
                _flatten_state(left_state), _flatten_state(right_state), path
            )
        else:
            yield from self.diffs(left_state, right_state, f"{path}.__getstate__()")
        yield from self.diffs(left_parts[3], right_parts[3], path)
        yield from self.diffs(left_parts[4], right_parts[4], path)

    def _operator(self, left: Any, right: Any, path: str) -> Iterator[str]:
        try:
            same = bool(left == right)
            if not same:
                # NaN-like values (pandas.NaT, float subclasses) equal themselves here.
                same = bool(left != left) and bool(right != right)
        except Exception as error:
            yield (
                f"{_where(path)}: cannot compare {_show(left)} with {_show(right)}: "
                f"{type(error).__name__}: {error}"
            )
            return
        if not same:
            yield f"{_where(path)}: left {_show(left)}, right {_show(right)}"

    def _numpy(self, left: Any, right: Any, path: str) -> Generator[str, None, bool]:
        import numpy as np

        if isinstance(left, np.generic):
            left, right = np.asarray(left), np.asarray(right)
        if not isinstance(left, np.ndarray):
            return False
        if left.dtype != right.dtype or left.shape != right.shape:
            yield (
                f"{_where(path)}: arrays differ in dtype or shape: left {left.dtype} "
                f"{left.shape}, right {right.dtype} {right.shape}"
            )
        elif left.dtype.names:
            # Record arrays: numpy's helper compares records with ==, so NaN
            # fields would never match; compare field by field instead.
            for name in left.dtype.names:
                yield from self.diffs(left[name], right[name], f"{path}[{name!r}]")
        elif left.dtype.hasobject:
            for index in np.ndindex(left.shape):
                yield from self.diffs(left[index], right[index], f"{path}[{index}]")
        else:
            try:
                np.testing.assert_array_equal(left, right, strict=True)
            except AssertionError as error:
                message = str(error).replace("ACTUAL", "LEFT").replace("DESIRED", "RIGHT")
                yield f"{_where(path)}: arrays differ:{_indent(message)}"
        return True

    def _pandas(self, left: Any, right: Any, path: str) -> Generator[str, None, bool]:
        import pandas as pd

        testing = pd.testing
        try:
            if isinstance(left, pd.DataFrame):
                testing.assert_frame_equal(left, right, check_exact=True)
            elif isinstance(left, pd.Series):
                testing.assert_series_equal(left, right, check_exact=True)
            elif isinstance(left, pd.Index):
                testing.assert_index_equal(left, right, exact=True, check_exact=True)
            elif isinstance(left, pd.api.extensions.ExtensionArray):
                testing.assert_extension_array_equal(left, right, check_exact=True)
            else:
                return False
        except AssertionError as error:
            yield f"{_where(path)}: {type(left).__name__} objects differ:{_indent(str(error))}"
        return True


def _indent(message: str) -> str:
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return "".join(f"\n    {line}" for line in lines)


def _is_numpy_scalar(value: Any) -> bool:
    """numpy scalars are immutable, like Python's numbers: sharing them is moot."""
    if type(value).__module__ != "numpy":
        return False
    import numpy as np

    return isinstance(value, np.generic)


def _reduce_parts(reduced: tuple[Any, ...]) -> tuple[Any, Any, Any, Any, Any]:
    """Pad a ``__reduce_ex__`` tuple and realise its item iterators."""
    func, args, state, items, dict_items = (*reduced, None, None, None, None)[:5]
    if func is copyreg.__newobj__ and args:  # type: ignore[attr-defined]
        args = args[1:]  # the class itself, already known to match
    return (
        func,
        args,
        state,
        list(items) if items is not None else None,
        list(dict_items) if dict_items is not None else None,
    )


def _is_attribute_state(state: Any) -> bool:
    if isinstance(state, dict):
        return all(isinstance(name, str) for name in state)
    return (
        isinstance(state, tuple)
        and len(state) == 2
        and all(part is None or _is_attribute_state(part) for part in state)
    )


def _flatten_state(state: Any) -> dict[str, Any]:
    """``__dict__`` and ``__slots__`` state merged into one attribute map."""
    if isinstance(state, dict):
        return state
    merged: dict[str, Any] = {}
    for part in state:
        merged.update(part or {})
    return merged
