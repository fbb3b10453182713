"""Remote-compute and environment decorators run on this machine.

``@batch`` or ``@kubernetes`` would ship a step to a cluster, and ``@conda`` or
``@pypi`` would have Metaflow build an environment; under test every step runs
here with the installed packages. The decorators are removed from the flow
class with Metaflow's own mutation API, in every process of the run, since each
task loads the flow anew.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

#: The decorators (Metaflow names, space-separated) a run removes from the flow
#: in every one of its processes, so that their steps run here; set by the plugin.
RUN_LOCALLY_ENV = "PYTEST_ARTFLOW_RUN_LOCALLY"
#: What is removed unless the ini ``artflow_run_locally`` says otherwise: remote
#: compute (the step would be shipped to AWS Batch or Kubernetes), its sizing,
#: and environments Metaflow would build (which need ``--environment=conda``).
_ENVIRONMENT_DECORATORS = ("conda", "pypi", "conda_base", "pypi_base")
RUN_LOCALLY_DEFAULT = ("batch", "kubernetes", "resources", *_ENVIRONMENT_DECORATORS)


def remote_decorators(flow_class: type, names: Iterable[str]) -> list[tuple[str | None, str]]:
    """``(step, decorator)`` for each decorator among ``names`` on the flow
    (``step`` is ``None`` for flow-level ones such as ``@pypi_base``)."""
    # Where the flow's decorators are kept depends on the Metaflow version.
    from ..metaflow_seam import flow_decorators

    wanted = set(names)
    found: list[tuple[str | None, str]] = [
        (None, name) for name in flow_decorators(flow_class) if name in wanted
    ]
    for step in flow_class._steps:
        found += [(step.name, d.name) for d in step.decorators if d.name in wanted]
    return found


def missing_packages(flow_class: type, names: Iterable[str]) -> list[str]:
    """Packages that ``@conda``/``@pypi`` (and their ``_base``) ask for and this
    interpreter cannot import: such a step cannot run without the environment."""
    import importlib.metadata
    import importlib.util

    from ..metaflow_seam import flow_decorators

    wanted = set(names) & set(_ENVIRONMENT_DECORATORS)
    decos = [
        (None, d) for name, ds in flow_decorators(flow_class).items() if name in wanted for d in ds
    ]
    decos += [(s.name, d) for s in flow_class._steps for d in s.decorators if d.name in wanted]
    missing = []
    for step, deco in decos:
        for key in ("packages", "libraries"):
            packages = deco.attributes.get(key)
            for spec in packages if isinstance(packages, dict) else ():
                name = spec.split("::")[-1].split("[")[0].strip()
                try:
                    importlib.metadata.distribution(name)
                except importlib.metadata.PackageNotFoundError:
                    if importlib.util.find_spec(name.replace("-", "_")) is None:
                        where = f"step {step!r}" if step else "the flow"
                        missing.append(f"{spec} (@{deco.name} on {where})")
    return missing


def run_locally(flow_class: type, names: Iterable[str]) -> None:
    """Remove the decorators ``names`` from ``flow_class`` so every step runs in
    this machine's processes, with this interpreter's packages.

    Metaflow's own mutation API (``MutableFlow``/``MutableStep``, what a
    ``FlowMutator`` uses in ``pre_mutate``) does the removal; it must happen in
    every process of the run, since each task loads the flow anew.
    """
    names = list(names)
    if not names:
        return
    missing = missing_packages(flow_class, names)
    if missing:
        sys.exit(
            f"{flow_class.__name__}: pytest-artflow runs @conda/@pypi steps with the packages "
            f"installed here, and these are not: {', '.join(missing)}. Install them in the "
            "test environment."
        )
    from metaflow.user_decorators.mutable_flow import MutableFlow

    from ..metaflow_seam import remove_step_decorator

    flow = MutableFlow(flow_class, pre_mutate=True, inserted_by=["pytest-artflow"])
    for name in names:
        flow.remove_decorator(name)
    for _, step in flow.steps:
        for name in names:
            remove_step_decorator(step, name)
    flow_class._init_graph()  # type: ignore[attr-defined]
