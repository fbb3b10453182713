"""``--artflow``: every flow file collected as items that run their flows end
to end. ``files`` tells flow files apart and loads them, ``item`` runs them,
``ini`` reads the ini keys and checks ``artflow_expect``, ``report`` sums it up."""

from __future__ import annotations

from .ini import configure, enabled
from .item import collect_file, make_module

__all__ = ["collect_file", "configure", "enabled", "make_module"]
