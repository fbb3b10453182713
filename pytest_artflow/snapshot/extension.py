"""The syrupy side of snapshots: an amber serializer for artifact values,
clearer failures of ``assert run.snapshot() == snapshot``, and the snapshot
check of ``pytest --artflow`` items.

syrupy's ``snapshot`` fixture belongs to test functions. A flow item is not
one, so it builds its ``SnapshotAssertion`` the way the fixture does and
enters syrupy's session records of collected and selected items itself:
that is what lets syrupy's unused-snapshot report and ``--snapshot-update``
cleanup see flow items like any other test.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions import DEFAULT_EXTENSION
from syrupy.extensions.amber import AmberDataSerializer, AmberSnapshotExtension
from syrupy.location import PyTestLocation
from syrupy.session import ItemStatus
from syrupy.terminal import disable_color
from syrupy.utils import import_module_member

from .values import (
    RunSnapshot,
    StepSnapshot,
    TaskSnapshot,
    changed_artifacts,
    describe_changes,
    readable,
)

if TYPE_CHECKING:
    from ..results import FlowRun


class ArtifactSerializer(AmberDataSerializer):
    """Amber, with artifact values made readable and stable first (numpy and
    pandas by hash and preview, unreadable objects by type and pickle hash).
    It writes the same amber format, so its snapshots share files with the
    default extension."""

    @classmethod
    def serialize(cls, data: Any, **kwargs: Any) -> str:
        return super().serialize(readable(data), **kwargs)


class ArtifactExtension(AmberSnapshotExtension):
    """``snapshot(extension_class=ArtifactExtension)``: any artifact value,
    as ``run.snapshot()`` writes it."""

    serializer_class = ArtifactSerializer


_SNAPSHOTS = (RunSnapshot, StepSnapshot, TaskSnapshot)


class Hooks:
    """Registered on pytest's plugin manager when syrupy is installed."""

    def __init__(self, items: bool) -> None:
        #: Flow items are snapshot-checked (``--artflow-snapshot``).
        self.items = items

    @pytest.hookimpl(wrapper=True)
    def pytest_assertrepr_compare(self, op: str, left: object, right: object) -> Any:
        results = yield
        assertion, value = (right, left) if isinstance(right, SnapshotAssertion) else (left, right)
        if op != "==" or not isinstance(assertion, SnapshotAssertion):
            return results
        if not isinstance(value, _SNAPSHOTS):
            return results
        lines = _changes(assertion)
        if not lines:
            return results
        for n, explanation in enumerate(results):
            if explanation:
                results[n] = [explanation[0], *lines, *explanation[1:]]
                break
        return results

    # Before `-k`/`-m` deselect: syrupy must know every collected flow item,
    # or it takes the selected ones for all and calls the others' snapshots unused.
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[Any]) -> None:
        session = getattr(config, "_syrupy", None)
        if not self.items or session is None:
            return
        for item in items:
            if _is_flow_item(item):
                session._collected_items[item.nodeid] = Target(item)
                session.collect_module(item.path)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        syrupy = getattr(session.config, "_syrupy", None)
        if not self.items or syrupy is None:
            return
        for item in session.items:
            if _is_flow_item(item):
                syrupy._selected_items[item.nodeid] = ItemStatus.NOT_RUN


def _is_flow_item(item: Any) -> bool:
    return not isinstance(item, pytest.Function) and hasattr(item, "flow_class")


class Target:
    """A flow item as syrupy's ``PyTestLocation`` reads a test: its ``obj``
    is the flow class, so the item's snapshot is named after the class, in
    ``__snapshots__/<flow file>.ambr`` beside the flow."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.nodeid = item.nodeid
        self.name = item.name
        self.path = Path(item.path)
        self.obj = item.flow_class  # type: ignore[attr-defined]
        self.stash = item.stash

    def __hash__(self) -> int:
        return hash(self.nodeid)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and other.nodeid == self.nodeid


def _changes(assertion: SnapshotAssertion) -> list[str]:
    result = assertion.executions.get(assertion.num_executions - 1)
    if result is None or result.success or result.recalled_data is None:
        return []
    received, stored = result.asserted_data, result.recalled_data
    if not isinstance(received, str) or not isinstance(stored, str):
        return []
    return describe_changes(received, stored)


def check_item(item: pytest.Item, run: FlowRun, exclude: list[str]) -> tuple[str, str | None]:
    """Compare the run's snapshot with the one recorded for ``item``: (what
    happened, for the summary line; the failure message, if it failed)."""
    config = item.config
    option = config.option
    session = getattr(config, "_syrupy", None)
    if session is None:
        raise pytest.UsageError("--artflow-snapshot needs the syrupy plugin (-p no:syrupy?)")
    path = option.default_extension
    extension = import_module_member(path) if path else DEFAULT_EXTENSION
    assertion = SnapshotAssertion(
        update_snapshots=option.update_snapshots,
        update_new_snapshots_only=option.update_new_snapshots_only,
        extension_class=extension,
        test_location=PyTestLocation(Target(item)),  # type: ignore[arg-type]
        session=session,
    )
    value = run.snapshot(exclude=exclude)
    matched = assertion == value
    result = assertion.executions[0]
    where = _where(config, result.snapshot_location, result.snapshot_name)
    if matched:
        status = "written" if result.created else "updated" if result.updated else "matched"
        return status, None
    if result.exception is not None and result.recalled_data is None:
        raise result.exception
    if result.recalled_data is None:
        message = (
            f"no snapshot of {item.name} yet ({where}): "
            "run pytest with --snapshot-update to write it"
        )
        return "missing", message
    received = result.asserted_data if isinstance(result.asserted_data, str) else ""
    names = changed_artifacts(received, str(result.recalled_data))
    color = disable_color() if option.no_colors else contextlib.nullcontext()
    with color:
        diff = assertion.get_assert_diff(diff_mode=option.diff_mode)
    lines = [
        f"snapshot of {item.name} changed: {', '.join(names) or 'see the diff'} ({where})",
        *(f"  {line}" for line in _changes(assertion)),
        *diff,
        "run pytest with --snapshot-update to record the new values",
    ]
    return "changed: " + " ".join(names), "\n".join(lines)


def _where(config: pytest.Config, location: str, name: str) -> str:
    try:
        shown = Path(location).relative_to(config.rootpath)
    except ValueError:
        shown = Path(location)
    return f"{shown}, snapshot {name!r}"
