"""Engines: how a flow's processes are started.

Every engine runs Metaflow's own CLI (``run`` and ``step``) through
``pytest_artflow.inflow.launch``; they differ only in how processes start.
"""

from __future__ import annotations

from typing import Any

from .base import Engine, EngineResult, RunJob

__all__ = ["Engine", "EngineResult", "EngineSet", "RunJob"]


class EngineSet:
    """The engines of one pytest session, by name: created on first use,
    closed when the session ends. Names come from ``pytest_artflow_engines``."""

    def __init__(self, hook: Any) -> None:
        self._hook = hook
        self._classes: dict[str, type[Engine]] | None = None
        self._instances: dict[str, Engine] = {}

    @property
    def classes(self) -> dict[str, type[Engine]]:
        if self._classes is None:
            merged: dict[str, type[Engine]] = {}
            # Later implementations (conftest.py) come first: they win.
            for contributed in reversed(self._hook.pytest_artflow_engines()):
                merged.update(contributed or {})
            self._classes = merged
        return self._classes

    def available(self) -> list[str]:
        """The engine names contributed so far, sorted. Not cached, unlike
        ``classes``: conftest files collected later may still add engines."""
        names: set[str] = set(self._classes or ())
        for contributed in self._hook.pytest_artflow_engines():
            names.update(contributed or {})
        return sorted(names)

    def get(self, name: str) -> Engine:
        if name not in self._instances:
            if name not in self.classes:
                from ..errors import ArtflowError

                known = ", ".join(sorted(self.classes))
                raise ArtflowError(f"unknown artflow engine {name!r} (known engines: {known})")
            self._instances[name] = self.classes[name]()
        return self._instances[name]

    def close(self) -> None:
        for engine in self._instances.values():
            engine.close()
        self._instances.clear()
