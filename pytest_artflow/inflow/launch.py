"""The entry point of every process a run starts: ``python -m pytest_artflow.inflow.launch
FLOW_FILE CLASS_NAME [metaflow arguments...]``.

It does what ``python flow.py ...`` does, with two differences: the flow file's
``if __name__ == "__main__":`` block is left out (so a file holding several
flows, or none run from the block, works), and the class named on the command
line is the one handed to Metaflow's CLI (or, for a class defined inside a
function, a pickle of it: ``load_flow``). The file runs as the real
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
import pickle
import sys
import types

from . import lifetime, remote


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
    module = _new_main(path, names)
    try:
        exec(compile_flow_file(path), module.__dict__)
    except ImportError as exc:
        message = relative_import_failure(path, exc)
        if message is None:
            raise
        # What went wrong and what to write instead; this loader's frames
        # would say nothing more.
        raise SystemExit(message) from None
    return module


def relative_import_failure(path: str, exc: ImportError) -> str | None:
    """The message for a flow file whose relative import failed (``None`` for
    any other ``ImportError``): the file, the import line and what to write
    instead. A flow file runs as ``__main__``, a module of no package, as under
    ``python flow.py run``; so no relative import can work in it."""
    if not str(exc).startswith("attempted relative import"):
        return None
    path = os.path.abspath(path)
    tb, lineno = exc.__traceback__, None
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    node = _relative_import_at(path, lineno)
    if node is None:
        return None
    package = _package_of(os.path.dirname(path))
    base = package.split(".") if package else []
    level_up = node.level - 1
    absolute = None
    if package and level_up < len(base):
        parts = base[: len(base) - level_up] + ([node.module] if node.module else [])
        absolute = ast.unparse(ast.ImportFrom(module=".".join(parts), names=node.names, level=0))
    sibling = None
    if node.level == 1:
        sibling = ast.unparse(
            ast.ImportFrom(module=node.module, names=node.names, level=0)
            if node.module
            else ast.Import(names=node.names)
        )
    advice = []
    if absolute:
        top = base[0]
        advice.append(
            f"an absolute import, `{absolute}`, with the package {top!r} importable "
            f"(installed, or its parent directory on PYTHONPATH or in pytest's pythonpath)"
        )
    if sibling:
        advice.append(
            f"an import of the sibling module by its own name, `{sibling}` (the flow "
            "file's directory is on sys.path when it runs)"
        )
    if not advice:
        advice.append("an absolute import of the module")
    return (
        f"{path}:{node.lineno}: `{ast.unparse(node)}` is a relative import, and a flow file "
        "runs as the module __main__ (as under `python flow.py run`), which belongs to no "
        "package: a relative import cannot work in it.\n"
        f"Write instead {' or '.join(advice)}."
    )


def _relative_import_at(path: str, lineno: int | None) -> ast.ImportFrom | None:
    """The relative import statement at ``lineno`` of ``path`` (the first one
    of the file when the line is unknown)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    found = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    found.sort(key=lambda n: n.lineno)
    for node in found:
        if lineno is None or node.lineno <= lineno <= (node.end_lineno or node.lineno):
            return node
    return None


def _package_of(directory: str) -> str:
    """The dotted package a directory is (``""`` when it holds no ``__init__.py``)."""
    parts = []
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, name = os.path.split(directory)
        if not name.isidentifier():
            break
        parts.append(name)
    return ".".join(reversed(parts))


def _new_main(path: str, names: dict[str, object] | None) -> types.ModuleType:
    """A fresh ``__main__`` for ``path``, in place, with ``path``'s directory
    first on ``sys.path`` (as ``python path`` has it)."""
    module = types.ModuleType("__main__")
    module.__dict__.update(names or {})
    module.__file__ = path
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    sys.path[0] = os.path.dirname(path)
    return module


#: A class name of this form names a pickle of the flow class instead (see ``load_flow``).
SHIPPED = "shipped:"


def load_flow(path: str, class_name: str, names: dict[str, object] | None = None) -> type:
    """The flow class: ``class_name`` in the flow file, loaded as ``__main__``.

    A class defined inside a function (a test) has no name in its file; it is
    shipped by value instead, as ``shipped:<pickle file>`` written with
    cloudpickle, and ``path`` is the file that defines it (the script name
    Metaflow records). ``__main__`` is then an empty module, as the class's
    own module is not executed: what the class refers to is imported by name
    while it is unpickled.
    """
    if not class_name.startswith(SHIPPED):
        loaded: type = getattr(load_as_main(path, names), class_name)
        return loaded
    _new_main(path, names)
    with open(class_name.removeprefix(SHIPPED), "rb") as f:
        flow_class: type = pickle.load(f)
    _restore_source_file(flow_class, path)
    return flow_class


#: What cloudpickle names the file of every function it ships by value.
_DYNAMIC_CODE = "<dynamic-code>"


def _restore_source_file(flow_class: type, path: str) -> None:
    """Point the shipped class's functions back at the file that defines them:
    Metaflow reads each step's source to build the flow's graph, and
    tracebacks show its lines."""

    def restored(code: types.CodeType) -> types.CodeType:
        consts = tuple(restored(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        filename = path if code.co_filename == _DYNAMIC_CODE else code.co_filename
        return code.replace(co_filename=filename, co_consts=consts)

    for value in vars(flow_class).values():
        func = getattr(value, "__func__", value)  # staticmethod, classmethod
        if isinstance(func, types.FunctionType):
            func.__code__ = restored(func.__code__)


def main(argv: list[str]) -> None:
    lifeline = os.environ.pop(lifetime.LIFELINE_ENV, None)
    if lifeline is not None:
        # The run's first process (subprocess engine): a keeper stays here
        # and the run goes on in a child (``lifetime``); tasks never see it.
        lifetime.keep_run(int(lifeline))
    path, class_name, *args = argv
    path = os.path.abspath(path)
    # Metaflow records sys.argv[0] as the script name; make it the flow file.
    sys.argv = [path, *args]
    run_cli(load_flow(path, class_name), path, class_name)


def task_entrypoint(path: str, class_name: str) -> list[str]:
    """The command Metaflow's runtime starts each task with: this launcher again."""
    return [sys.executable, "-m", __spec__.name, path, class_name]


def relaunch_with(entrypoint: list[str]) -> None:
    """Start the processes Metaflow starts as ``python <sys.argv[0]> ...``
    with ``entrypoint`` instead.

    Besides its runtime's tasks (whose command is the ``entrypoint`` Metaflow
    is given), Metaflow starts two kinds of process by running the flow's
    script again: ``@card``'s ``card create`` and the workers of an unbounded
    foreach (``@parallel``'s ``step`` commands, built by ``CLIArgs.step_command``).
    That runs the flow file's ``__main__`` block: a file without one, with
    several flows, or a class shipped from a test would render no card or run
    no worker, silently. The launcher loads the flow the way the task did; the
    rest of each command is Metaflow's.
    """
    from .. import metaflow_seam

    def command(cmd: list[str]) -> list[str]:
        # [python, ("-u",) script, ...] -> [python, ("-u",) -m launch FILE CLASS, ...]
        at = 2 if cmd[1:2] == ["-u"] else 1
        if len(cmd) > at and cmd[at] == sys.argv[0]:
            return [*cmd[:at], *entrypoint[1:], *cmd[at + 1 :]]
        return cmd

    # A process that loads a second flow (a forked task) replaces the first's.
    metaflow_seam.rewrite_script_commands(command)


def run_cli(flow_class: type, path: str, class_name: str) -> None:
    """Everything ``main`` does once the flow file is loaded (the fork engine
    calls it in a process that loaded the file before it forked)."""
    remote.run_locally(flow_class, os.environ.get(remote.RUN_LOCALLY_ENV, "").split())

    from .. import metaflow_seam
    from . import diagnostics

    diagnostics.install()

    entrypoint = task_entrypoint(path, class_name)
    relaunch_with(entrypoint)
    metaflow_seam.anchor_config_defaults(flow_class, os.path.dirname(path))
    with metaflow_seam.flow_context(flow_class):
        # Metaflow's CLI adds the flow's options (Parameters, flow decorators
        # such as @project's --branch) when metaflow.cli is first imported, as
        # ``FlowSpec()`` does it: inside the flow's context.
        cli = metaflow_seam.cli
        step_job = os.environ.pop("ARTFLOW_STEP_JOB", None)
        if step_job:
            # artflow_step: write the inputs of the one step that Metaflow runs next.
            from pytest_artflow.inflow.stepjob import prepare_job

            prepare_job(step_job, flow_class, entrypoint)
        cli.main(flow_class(use_cli=False), entrypoint=entrypoint)


if __name__ == "__main__":
    main(sys.argv[1:])
