"""The pytest session that pytest-artflow is serving, if any.

``roundtrip``, ``assert_roundtrip`` and the strategies are plain functions
(usable inside ``@given`` without fixtures), yet they must see the hooks that
conftest.py files implement; the plugin records its config here for that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

_config: pytest.Config | None = None
# Sessions that were active when a nested one started (pytester runs a
# session inside a test): when the inner one ends, the outer one is back.
_outer: list[pytest.Config | None] = []
_item: pytest.Item | None = None


def set_config(config: pytest.Config | None) -> None:
    """Record the session starting (``config``) or the current one ending (``None``)."""
    global _config
    if config is not None:
        _outer.append(_config)
        _config = config
    else:
        _config = _outer.pop() if _outer else None


def config() -> pytest.Config | None:
    """The pytest session being served, or ``None`` outside one."""
    return _config


@contextmanager
def running(item: pytest.Item) -> Iterator[None]:
    """Record the test being run, so plain functions see its markers and file."""
    global _item
    saved, _item = _item, item
    try:
        yield
    finally:
        _item = saved


def item() -> pytest.Item | None:
    """The test being run in the current session, if any."""
    return _item if _item is not None and _item.config is _config else None


def hook() -> Any | None:
    """pytest's hook relay (``config.hook``), or ``None`` outside a session."""
    return _config.hook if _config is not None else None
