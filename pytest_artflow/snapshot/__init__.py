"""Snapshots of what a run produced, for syrupy: ``assert run.snapshot() == snapshot``.

``values`` makes a run's artifacts a deterministic, readable value and needs
nothing but the standard library; ``extension`` holds syrupy's side (the
artifact serializer, the ``--artflow-snapshot`` items) and is imported only
where syrupy is installed.
"""

from __future__ import annotations

from typing import Any

from .values import (
    INSTALL_HINT,
    ArrayValue,
    OpaqueValue,
    RunSnapshot,
    StepSnapshot,
    TaskSnapshot,
    readable,
    run_snapshot,
    step_snapshot,
    task_snapshot,
)

__all__ = [
    "INSTALL_HINT",
    "ArrayValue",
    "ArtifactExtension",
    "ArtifactSerializer",
    "OpaqueValue",
    "RunSnapshot",
    "StepSnapshot",
    "TaskSnapshot",
    "configure",
    "enabled",
    "readable",
    "run_snapshot",
    "step_snapshot",
    "task_snapshot",
]


def enabled(config: Any) -> bool:
    """``--artflow-snapshot`` or the ini ``artflow_snapshot``."""
    return bool(config.getoption("artflow_snapshot", False) or config.getini("artflow_snapshot"))


def configure(config: Any) -> None:
    """Register the syrupy hooks if syrupy is there; snapshot options without
    it are a usage error that says what to install."""
    import pytest

    for line in config.getini("artflow_snapshot_exclude"):
        pattern, _, targets = line.strip().partition(" ")
        if not pattern or not targets.strip():
            raise pytest.UsageError(
                f"ini artflow_snapshot_exclude: {line!r}: expected "
                "'<file.py::FlowClass> <step>.<artifact> ...'"
            )
    wanted = enabled(config) and bool(config.getoption("artflow", False))
    try:
        import syrupy  # noqa: F401

        from . import extension
    except ImportError:
        if wanted:
            raise pytest.UsageError(f"--artflow-snapshot: {INSTALL_HINT}") from None
        return
    if wanted and not config.pluginmanager.hasplugin("syrupy"):
        raise pytest.UsageError("--artflow-snapshot needs the syrupy plugin, which is disabled")
    config.pluginmanager.register(extension.Hooks(items=wanted), "artflow-snapshot")


def __getattr__(name: str) -> Any:
    # The syrupy extension is importable from here without importing syrupy
    # for everyone who only wants the value.
    if name in ("ArtifactExtension", "ArtifactSerializer"):
        try:
            import syrupy  # noqa: F401

            from . import extension
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        return getattr(extension, name)
    raise AttributeError(name)
