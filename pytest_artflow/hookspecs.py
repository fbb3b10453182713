"""Hooks that conftest.py files and other plugins implement to extend pytest-artflow.

They are added to pytest's own plugin manager (``pytest_addhooks``), so an
implementation is an ordinary function named after the spec in any
``conftest.py`` or installed plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .engines import Engine
    from .runner import RunConfig


@pytest.hookspec(firstresult=True)
def pytest_artflow_compare(left: Any, right: Any) -> bool | None:
    """Decide whether two artifact values are equal.

    Return ``True`` or ``False`` to decide, ``None`` to leave it to the next
    implementation (the built-ins handle NaN, -0.0, numpy and pandas).
    """


@pytest.hookspec
def pytest_artflow_configure_run(config: RunConfig) -> None:
    """Adjust one run before it starts: ``config.env``, ``config.timeout``,
    ``config.tags``, ``config.max_workers``, ``config.parameters`` are
    writable; ``config.flow`` and ``config.sandbox`` say what runs where."""


@pytest.hookspec
def pytest_artflow_engines() -> dict[str, type[Engine]] | None:
    """Contribute engines by name (``{"name": EngineClass}``).

    The built-in ``subprocess`` and ``fork`` engines are contributed the same
    way; ``--artflow-engine`` and ``engine=`` choose among all of them.
    """


@pytest.hookspec
def pytest_artflow_strategies() -> dict[type, Any] | None:
    """Contribute hypothesis strategies for custom artifact types
    (``{MyType: strategy}``); ``pytest_artflow.strategies.picklable()`` draws
    from them too."""
