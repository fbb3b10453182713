"""Reading what a Metaflow card shows, for assertions on its content.

A card's HTML is Metaflow's card viewer (a large script) with the card's
content embedded as base64-encoded JSON (``window.__MF_DATA__[...] = "..."``);
its text is not in the HTML as such.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

_DATA = re.compile(r'window\.__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"')


def payload(html: str) -> dict[str, Any]:
    """The card's content: ``{"metadata": ..., "components": [...]}``."""
    (data,) = _DATA.findall(html)
    return json.loads(base64.b64decode(data))


def components(html: str) -> Iterator[dict[str, Any]]:
    """Every component of the card, nested ones too, depth first."""
    stack = list(reversed(payload(html)["components"]))
    while stack:
        component = stack.pop()
        yield component
        children = component.get("contents") or []
        stack.extend(reversed([c for c in children if isinstance(c, dict)]))


def markdown(html: str) -> list[str]:
    """The source of every Markdown component, in order."""
    return [c["source"] for c in components(html) if c["type"] == "markdown"]


def tables(html: str) -> list[dict[str, Any]]:
    """Every table component's ``columns`` and ``data``, in order."""
    return [
        {"columns": c["columns"], "data": c["data"]}
        for c in components(html)
        if c["type"] == "table"
    ]


def logs(html: str) -> list[str]:
    """The text of every log component (an error card shows its error in one)."""
    return [c["data"] for c in components(html) if c["type"] == "log"]
