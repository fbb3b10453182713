"""Shared helpers for the plugin's own tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# The flow corpus (failing and hanging flows among them) is run by the tests
# that name it, never collected by `pytest --artflow tests`.
collect_ignore = ["flows"]


@pytest.fixture
def flow_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a flow file (dedented source) and return its path."""

    def write(source: str, name: str = "flow.py") -> Path:
        path = tmp_path / "flows" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    return write
