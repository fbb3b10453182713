"""The entry point of every process a run starts: ``python -m pytest_artflow.engines.launch
FLOW_FILE CLASS_NAME [metaflow arguments...]``.

It does what ``python flow.py ...`` does, with two differences: the flow file's
``if __name__ == "__main__":`` block is left out (so a file holding several
flows, or none run from the block, works), and the class named on the command
line is the one handed to Metaflow's CLI. The file runs as the real
``__main__`` module, exactly as under ``python flow.py run``, so artifacts of
classes defined in it pickle as ``__main__.X`` in both cases.

Metaflow's runtime starts each task with the same entry point (it is passed as
``entrypoint``), so tasks load the flow the same way. That is also where the
decorators named in ``PYTEST_ARTFLOW_RUN_LOCALLY`` (``@batch``, ``@pypi``...)
are removed, in every process of the run (``run_locally``).
"""

from __future__ import annotations

import ast
import os
import sys
import types
from collections.abc import Iterable


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    consts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return names == {"__name__"} and consts == {"__main__"}


def compile_flow_file(path: str) -> types.CodeType:
    """The flow file's code without its top-level ``__main__`` block(s)."""
    with open(path, "rb") as f:
        source = f.read()
    tree = ast.parse(source, filename=path)
    tree.body = [node for node in tree.body if not _is_main_guard(node)]
    return compile(tree, path, "exec", dont_inherit=True)


def load_as_main(path: str, names: dict[str, object] | None = None) -> types.ModuleType:
    """Execute the flow file as the process's real ``__main__`` module.

    ``names`` start the module's namespace: the fork engine passes what
    imports it made before forking put on ``__main__`` (Metaflow's
    ``ForeachFrame``), which in a new process they put there during the load.
    """
    module = types.ModuleType("__main__")
    module.__dict__.update(names or {})
    module.__file__ = path
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    sys.path[0] = os.path.dirname(path)
    exec(compile_flow_file(path), module.__dict__)
    return module


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
    from metaflow.flowspec import FlowStateItems

    wanted = set(names)
    found: list[tuple[str | None, str]] = [
        (None, name)
        for name in flow_class._flow_state[FlowStateItems.FLOW_DECORATORS]
        if name in wanted
    ]
    for step in flow_class._steps:
        found += [(step.name, d.name) for d in step.decorators if d.name in wanted]
    return found


def missing_packages(flow_class: type, names: Iterable[str]) -> list[str]:
    """Packages that ``@conda``/``@pypi`` (and their ``_base``) ask for and this
    interpreter cannot import: such a step cannot run without the environment."""
    import importlib.metadata
    import importlib.util

    from metaflow.flowspec import FlowStateItems

    wanted = set(names) & set(_ENVIRONMENT_DECORATORS)
    decos = [
        (None, d)
        for name, ds in flow_class._flow_state[FlowStateItems.FLOW_DECORATORS].items()
        if name in wanted
        for d in ds
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

    flow = MutableFlow(flow_class, pre_mutate=True, inserted_by=["pytest-artflow"])
    for name in names:
        flow.remove_decorator(name)
    for _, step in flow.steps:
        for name in names:
            step.remove_decorator(name)
    flow_class._init_graph()  # type: ignore[attr-defined]


def main(argv: list[str]) -> None:
    path, class_name, *args = argv
    path = os.path.abspath(path)
    # Metaflow records sys.argv[0] as the script name; make it the flow file.
    sys.argv = [path, *args]
    run_cli(getattr(load_as_main(path), class_name), path, class_name)


def task_entrypoint(path: str, class_name: str) -> list[str]:
    """The command Metaflow's runtime starts each task with: this launcher again."""
    return [sys.executable, "-m", __spec__.name, path, class_name]


def run_cli(flow_class: type, path: str, class_name: str) -> None:
    """Everything ``main`` does once the flow file is loaded (the fork engine
    calls it in a process that loaded the file before it forked)."""
    run_locally(flow_class, os.environ.get(RUN_LOCALLY_ENV, "").split())

    from metaflow import parameters

    entrypoint = task_entrypoint(path, class_name)
    with parameters.flow_context(flow_class):
        # Metaflow's CLI adds the flow's options (Parameters, flow decorators
        # such as @project's --branch) when metaflow.cli is first imported, as
        # ``FlowSpec()`` does it: inside the flow's context.
        from metaflow import cli

        step_job = os.environ.pop("ARTFLOW_STEP_JOB", None)
        if step_job:
            # artflow_step: write the inputs of the one step that Metaflow runs next.
            from pytest_artflow.step import prepare_job

            prepare_job(step_job, flow_class, entrypoint)
        cli.main(flow_class(use_cli=False), entrypoint=entrypoint)


if __name__ == "__main__":
    main(sys.argv[1:])
