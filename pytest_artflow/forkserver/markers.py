"""Per-sandbox settings that a shared fork server cannot know at import.

Metaflow reads its configuration at import, and several modules copy values
(``from metaflow.metaflow_config import DATASTORE_SYSROOT_LOCAL``; even class
attributes such as ``LocalStorage.SYSROOT_VAR``). The server (S, in
``forkserver``'s process tree) is started with the run's environment except
that every per-sandbox value (``PER_RUN_VALUES``) is a unique marker, a path
nobody can create; after its imports it finds every string that holds a marker
(``Bindings.find``), and each run's zygote (R) rewrites exactly those with its
own sandbox's values (``Bindings.apply``). Runs whose environments differ in
what is read at import get a server of their own (``server_key``).
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

#: Start of every marker value: a path below a device file, so that nothing,
#: not even root, can create it should a marker ever be left in place.
SENTINEL_PREFIX = "/dev/null/pytest-artflow-forkserver-"
#: Environment values that differ from one sandbox to the next; S imports
#: Metaflow with markers in their place and each run substitutes its own.
PER_RUN_VALUES = (
    "HOME",
    "TMPDIR",
    "METAFLOW_HOME",
    "METAFLOW_USER",
    "METAFLOW_DATASTORE_SYSROOT_LOCAL",
    "METAFLOW_DATASTORE_SYSROOT_SPIN",
    "METAFLOW_CARD_LOCALROOT",
    # Each test's S3 area (``artflow_s3``); the endpoint is the session's.
    "METAFLOW_DATASTORE_SYSROOT_S3",
    "METAFLOW_CLIENT_CACHE_PATH",
)
#: Variables read while S starts and imports (the interpreter, the C library,
#: Metaflow's configuration, coverage): runs that differ in one of them need a
#: server of their own. Every other variable is only read after R has taken
#: the run's environment, so runs share a server across them.
IMPORT_TIME_PREFIXES = ("METAFLOW_", "PYTHON", "LC_", "LD_", "COVERAGE_")
IMPORT_TIME_NAMES = frozenset(
    {"LANG", "LANGUAGE", "TZ", "DISABLE_TRACING", "TEST_S3_RETRY", "CONDA_OVERRIDE_GLIBC"}
)
#: Applied to ``sys.path`` by R, like the interpreter does at start-up.
PER_RUN_PATH = "PYTHONPATH"


def server_key(env: Mapping[str, str]) -> tuple[Any, ...]:
    """Runs whose environments have the same key can share a server."""
    fixed = sorted(
        (k, v)
        for k, v in env.items()
        if (k.startswith(IMPORT_TIME_PREFIXES) or k in IMPORT_TIME_NAMES)
        and k not in PER_RUN_VALUES
        and k != PER_RUN_PATH
    )
    return (tuple(fixed), tuple(k for k in PER_RUN_VALUES if k in env))


def server_environ(env: Mapping[str, str], token: str) -> tuple[dict[str, str], dict[str, str]]:
    """The environment a server is started with, and its markers by variable."""
    markers = {k: f"{SENTINEL_PREFIX}{token}/{k}" for k in PER_RUN_VALUES if k in env}
    return {**env, **markers}, markers


class Bindings:
    """Every place reachable from ``sys.modules`` that holds a marker string."""

    def __init__(self) -> None:
        #: (owner, key, original): ``setattr(owner, key, ...)`` for modules,
        #: classes, functions and cells, ``owner[key] = ...`` for dicts, lists.
        self.slots: list[tuple[Any, Any, Any]] = []
        #: What keeps the server from serving runs (markers it cannot rewrite).
        self.unpatchable: list[str] = []

    @classmethod
    def find(cls, prefix: str) -> Bindings:
        """Walk everything the imported modules reach (``gc.get_referents``, so
        that dicts and tuples the collector does not track are seen too)."""
        found = cls()
        parents: dict[int, list[Any]] = {}
        seen = {id(sys.modules)}
        stack: list[Any] = [sys.modules]
        holders = []
        while stack:
            obj = stack.pop()
            refs = gc.get_referents(obj)
            if any(isinstance(r, str) and prefix in r for r in refs):
                holders.append(obj)
            for ref in refs:
                if isinstance(ref, (str, bytes, int, float)) or ref is None:
                    continue
                if isinstance(ref, (dict, tuple)):
                    parents.setdefault(id(ref), []).append(obj)
                if id(ref) not in seen:
                    seen.add(id(ref))
                    stack.append(ref)
        # Tuples are immutable: what holds them gets a rewritten copy.
        marked: dict[int, Any] = {}
        pending = [h for h in holders if isinstance(h, tuple)]
        while pending:
            tup = pending.pop()
            if id(tup) in marked:
                continue
            marked[id(tup)] = tup
            for parent in parents.get(id(tup), []):
                if isinstance(parent, tuple):
                    pending.append(parent)
                elif all(parent is not h for h in holders):
                    holders.append(parent)

        def is_marked(value: object) -> bool:
            return (isinstance(value, str) and prefix in value) or id(value) in marked

        for holder in holders:
            found._collect(holder, is_marked, parents)
        return found

    def _collect(self, holder: Any, is_marked: Callable[[object], bool], parents: Any) -> None:
        if isinstance(holder, tuple):
            return  # rewritten through what holds it
        if isinstance(holder, list):
            self.slots += [(holder, i, v) for i, v in enumerate(holder) if is_marked(v)]
        elif isinstance(holder, dict):
            # A module's or class's namespace is set through setattr (type caches).
            owners = [p for p in parents.get(id(holder), []) if _namespace_of(p, holder)]
            for key, value in holder.items():
                if is_marked(key):
                    self.unpatchable.append(f"a dict key {key!r:.100}")
                elif is_marked(value):
                    self.slots.append((owners[0] if owners else holder, key, value))
        elif isinstance(holder, types.FunctionType) and is_marked(holder.__defaults__):
            self.slots.append((holder, "__defaults__", holder.__defaults__))
        elif isinstance(holder, types.CellType) and is_marked(holder.cell_contents):
            self.slots.append((holder, "cell_contents", holder.cell_contents))
        else:
            self.unpatchable.append(f"a {type(holder).__name__} {holder!r:.100}")

    def apply(self, substitute: Callable[[str], str]) -> None:
        for owner, key, original in self.slots:
            value = _rewrite(original, substitute)
            if isinstance(owner, (dict, list)):
                owner[key] = value
            else:
                setattr(owner, key, value)


def _namespace_of(owner: Any, mapping: dict[str, Any]) -> bool:
    if isinstance(owner, types.ModuleType):
        return vars(owner) is mapping
    return isinstance(owner, type) and gc.get_referents(vars(owner)) == [mapping]


def _rewrite(value: Any, substitute: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return substitute(value)
    if not isinstance(value, tuple):
        return value
    items = [_rewrite(v, substitute) for v in value]
    return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
