"""What differs between the Metaflow versions pytest-artflow supports.

pytest-artflow drives Metaflow's real runtime and reads what it wrote, and a few
of the names it needs for that are private to Metaflow: they can change in any
release, patch releases included. This module is the one place that knows which
Metaflow releases were tested and how the supported ones differ; package code
asks it instead of testing versions itself.

The installed version is read from the distribution's metadata, not from
``import metaflow``: Metaflow reads its configuration once, when it is first
imported, and the pytest process must not import it before a sandbox exists.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from packaging.version import Version

#: The Metaflow releases CI runs the engines' differential corpus and the core
#: run tests against (``noxfile.py``): the oldest supported, one in the middle
#: and the newest tested. ``pyproject.toml`` requires at least the first.
#: 2.19.0 is the floor: it brought ``spin``, whose datastore settings the
#: sandbox isolates, and ``Task.parent_task_pathspecs``, which ``artflow_step``
#: reads an earlier run's inputs with. 2.19.22 is the middle: it has the flow
#: state of 2.19.10 and the graph, step mutation and foreach join order from
#: before 2.19.23, a mix neither end of the range has.
TESTED_VERSIONS: tuple[str, ...] = ("2.19.0", "2.19.22", "2.19.39")
OLDEST_SUPPORTED = TESTED_VERSIONS[0]
NEWEST_TESTED = TESTED_VERSIONS[-1]


def installed_version() -> Version:
    """The Metaflow release installed in this environment."""
    return Version(importlib.metadata.version("metaflow"))


def untested_newer() -> str | None:
    """A sentence saying the installed Metaflow is newer than any tested one, or
    ``None``. Newer releases are allowed (no upper bound on the dependency):
    Metaflow's private names move even in patch releases, so anything newer than
    the newest tested release is said to be untested, not refused."""
    installed = installed_version()
    if installed <= Version(NEWEST_TESTED):
        return None
    return (
        f"Metaflow {installed} is newer than the newest release pytest-artflow was tested "
        f"with ({NEWEST_TESTED}; tested: {', '.join(TESTED_VERSIONS)}). Runs use it as it is; "
        "if a run behaves differently under the fork engine, compare with "
        "--artflow-engine=subprocess."
    )


def header_line() -> str:
    """The report header's line about Metaflow: which one runs the flows and which
    range was tested."""
    return (
        f"artflow: Metaflow {installed_version()} (tested: {OLDEST_SUPPORTED} to {NEWEST_TESTED})"
    )


def flow_decorators(flow_class: type) -> dict[str, list[Any]]:
    """The flow-level decorators of ``flow_class`` (``@pypi_base``, ...), by
    Metaflow name, each name mapping to its instances.

    Metaflow 2.19.10 moved them from the class attribute ``_flow_decorators``
    into the flow state (``_flow_state[FlowStateItems.FLOW_DECORATORS]``);
    ``_flow_decorators`` remains there only as an instance property, so the
    class attribute cannot be read on every version.
    """
    try:
        from metaflow.flowspec import FlowStateItems
    except ImportError:  # Metaflow before 2.19.10
        return flow_class._flow_decorators  # type: ignore[attr-defined,no-any-return]
    return flow_class._flow_state[FlowStateItems.FLOW_DECORATORS]  # type: ignore[attr-defined,no-any-return]


def remove_step_decorator(step: Any, name: str) -> None:
    """Remove every decorator ``name`` from ``step`` (a Metaflow ``MutableStep``).

    Only a name the step carries is passed to ``MutableStep.remove_decorator``:
    before Metaflow 2.19.23 it raised ``TypeError`` (``issubclass()`` of
    ``None``) for a name that is not a registered user step decorator, which
    ``batch`` or ``kubernetes`` are not, even where the step had no such
    decorator.
    """
    if any(spec[0] == name for spec in step.decorator_specs):
        step.remove_decorator(name)


def end_step(graph: Any) -> str | None:
    """The name of the end step of a flow's ``FlowGraph``: the step whose task
    says whether the run is successful and finished.

    Metaflow 2.19.23 lets ``@step(end=True)`` mark any step as the end and
    records it as ``FlowGraph.end_step``; before, the end step is always the
    step named ``end`` and the graph has no such attribute.
    """
    return getattr(graph, "end_step", "end")


def start_step(graph: Any) -> str | None:
    """The name of the first step of a flow's ``FlowGraph`` (the one that reads
    only the flow's Parameters). As ``end_step``: ``@step(start=True)`` and
    ``FlowGraph.start_step`` came in Metaflow 2.19.23; before, it is ``start``."""
    return getattr(graph, "start_step", "start")


def foreach_join_inputs_in_order() -> bool:
    """Whether a foreach join's ``inputs`` come in split order, as Metaflow has
    done since 2.19.23; before, a join over more than 4 splits got them in no
    particular order. This is Metaflow's behaviour, which artflow reproduces,
    not something it can or should change."""
    return installed_version() >= Version("2.19.23")
