"""Which member of an object cannot be pickled.

Used in a flow's task processes (an artifact Metaflow cannot save is named by
its member, ``inflow.diagnostics``) and in the pytest process
(``serialization.find_unpicklable``), so it imports nothing of either side.
"""

from __future__ import annotations

import pickle
import reprlib
from collections.abc import Iterator
from typing import Any

from .compare import type_name


def find_unpicklable(obj: Any, *, name: str = "obj") -> str | None:
    """Where ``obj`` stops being picklable, as ``"path.to[member]: type"``.

    ``None`` when ``pickle.dumps(obj, protocol=4)`` (what Metaflow uses)
    works. Otherwise the search descends into whichever member fails to
    pickle on its own, first in order, until it reaches one whose members
    all pickle: that member is the culprit, however deep. Paths read like
    Python (``.attr``, ``[index]``, ``['key']``), with ``.keys()[n]`` for a
    dict key and ``{member n}`` for a set member.
    """
    if _pickles(obj):
        return None
    path, culprit = name, obj
    seen = {id(obj)}
    while True:
        for suffix, member in _members(culprit):
            if id(member) not in seen and not _pickles(member):
                seen.add(id(member))
                path, culprit = path + suffix, member
                break
        else:
            return f"{path}: {type_name(type(culprit))}"


def _pickles(obj: Any) -> bool:
    try:
        pickle.dumps(obj, protocol=4)
    except Exception:
        return False
    return True


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _members(obj: Any) -> Iterator[tuple[str, Any]]:
    """What pickle saves along with ``obj``, each with its path suffix."""
    if isinstance(obj, (list, tuple)):
        for index, item in enumerate(obj):
            yield f"[{index}]", item
    elif isinstance(obj, dict):
        for index, (key, value) in enumerate(obj.items()):
            yield f".keys()[{index}]", key
            yield f"[{reprlib.repr(key)}]", value
    elif isinstance(obj, (set, frozenset)):
        for index, member in enumerate(obj):
            yield f"{{member {index}}}", member
    if type(obj) not in _CONTAINERS:
        yield from _reduced_members(obj)


def _reduced_members(obj: Any) -> Iterator[tuple[str, Any]]:
    """Members of any other object: what its ``__reduce_ex__(4)`` hands pickle.

    Reading the reduce value (not ``__dict__``) respects ``__getstate__``,
    so an attribute a class leaves out of its pickle is never blamed. The
    object's own class is skipped: an unpicklable class (say, one defined in
    a function) makes the object itself the answer.
    """
    try:
        reduced = obj.__reduce_ex__(4)
    except Exception:
        return
    if not isinstance(reduced, tuple):
        return  # pickled by reference to a global name
    func, args, state, items, dict_items = (*reduced, None, None, None, None)[:5]
    if func is not type(obj):
        yield ".__reduce_ex__(4)[0]", func
    for index, arg in enumerate(args or ()):
        if arg is not type(obj):
            yield f".__reduce_ex__(4)[1][{index}]", arg
    if isinstance(state, dict):
        parts = [state]
    elif (
        isinstance(state, tuple)
        and len(state) == 2
        and all(part is None or isinstance(part, dict) for part in state)
    ):
        parts = [part for part in state if part]  # (__dict__, __slots__ values)
    else:
        parts = []
        if state is not None:
            yield ".__getstate__()", state
    for part in parts:
        for key, value in part.items():
            yield (f".{key}" if isinstance(key, str) else f".__getstate__()[{key!r}]"), value
    for index, item in enumerate(items or ()):
        yield f"[{index}]", item
    for key, value in dict_items or ():
        yield f"[{reprlib.repr(key)}]", value
