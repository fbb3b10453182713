"""The pytest session that pytest-artflow is serving, if any.

``roundtrip``, ``assert_roundtrip`` and the strategies are plain functions
(usable inside ``@given`` without fixtures), yet they must see the hooks that
conftest.py files implement; the plugin records its config here for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

_config: pytest.Config | None = None


def set_config(config: pytest.Config | None) -> None:
    global _config
    _config = config


def hook() -> Any | None:
    """pytest's hook relay (``config.hook``), or ``None`` outside a session."""
    return _config.hook if _config is not None else None
