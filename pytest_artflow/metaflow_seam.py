"""Everything pytest-artflow knows about Metaflow's insides, in one place.

Metaflow's public API (the client's ``Flow``/``Run``/``Step``/``Task``,
``namespace``, ``metadata``, ``FlowSpec``, decorators, ``Parameter``,
``IncludeFile``, ``get_cards``, its exception classes) is used where it is
needed. Anything else (a private attribute, a module that is not documented, a
patch of a Metaflow object while a run goes on, a match on the text of one of
Metaflow's messages) goes through this module: when Metaflow changes, this file
and its tests say what broke, and the ``fork`` engine, which depends on most
of it, steps aside (``fork_engine_problems``) instead of failing runs.

Importing this module imports no Metaflow (every task process imports it, and
the launcher must let Metaflow's CLI be imported inside the flow's context):
internal classes are resolved when first asked for (``__getattr__``, PEP 562).
"""

from __future__ import annotations

# ==========================================================================
# Version facts: which Metaflow releases this module was written for
# ==========================================================================
import importlib.metadata

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


def metaflow_version() -> str:
    """The installed Metaflow's version, without importing Metaflow."""
    return importlib.metadata.version("metaflow")


# ==========================================================================
# Everything below: names, patches and messages (no version facts)
# ==========================================================================

import contextlib  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

# --------------------------------------------------------------------------
# Internal classes and modules, imported on first use
# --------------------------------------------------------------------------

#: name here -> (module, attribute in it; ``None``: the module itself).
_INTERNAL: dict[str, tuple[str, str | None]] = {
    "CLIArgs": ("metaflow.cli_args", "CLIArgs"),
    "CardNotPresentException": ("metaflow.plugins.cards.exception", "CardNotPresentException"),
    "CardCreator": ("metaflow.plugins.cards.card_creator", "CardCreator"),
    "ConfigValue": ("metaflow.user_configs.config_parameters", "ConfigValue"),
    "CONTROL_TASK_TAG": ("metaflow.unbounded_foreach", "CONTROL_TASK_TAG"),
    "DATASTORES": ("metaflow.plugins", "DATASTORES"),
    "FileCache": ("metaflow.client.filecache", "FileCache"),
    "FlowDataStore": ("metaflow.datastore", "FlowDataStore"),
    "FlowStateItems": ("metaflow.flowspec", "FlowStateItems"),
    "ForeachFrame": ("metaflow.tuple_util", "ForeachFrame"),
    "IncludedFile": ("metaflow.includefile", "IncludedFile"),
    "JSONTypeClass": ("metaflow.parameters", "JSONTypeClass"),
    "LocalMetadataProvider": ("metaflow.plugins.metadata_providers.local", "LocalMetadataProvider"),
    "LocalStorage": ("metaflow.plugins.datastores.local_storage", "LocalStorage"),
    "MetaflowPackage": ("metaflow.package", "MetaflowPackage"),
    "MetaflowCodeContentV1": ("metaflow.packaging_sys.v1", "MetaflowCodeContentV1"),
    "MetaflowCodeContentV1Base": ("metaflow.packaging_sys", "MetaflowCodeContentV1Base"),
    "MutableFlow": ("metaflow.user_decorators.mutable_flow", "MutableFlow"),
    "TaskDataStore": ("metaflow.datastore.task_datastore", "TaskDataStore"),
    "UnpicklableArtifactException": (
        "metaflow.datastore.exceptions",
        "UnpicklableArtifactException",
    ),
    "cli": ("metaflow.cli", None),
    "client_core": ("metaflow.client.core", None),
    "linter": ("metaflow.lint", "linter"),
    "metaflow_config": ("metaflow.metaflow_config", None),
    "metaflow_config_funcs": ("metaflow.metaflow_config_funcs", None),
    "metaflow_git": ("metaflow.metaflow_git", None),
    "metaflow_version_module": ("metaflow.metaflow_version", None),
    "package_module": ("metaflow.package", None),
    "parameters_module": ("metaflow.parameters", None),
    "runtime": ("metaflow.runtime", None),
}


def __getattr__(name: str) -> Any:
    if name in _INTERNAL:
        module, attribute = _INTERNAL[name]
        loaded = importlib.import_module(module)
        return loaded if attribute is None else getattr(loaded, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------
# A flow class's insides
# --------------------------------------------------------------------------


def graph(flow_class: type) -> Any:
    """The flow's ``FlowGraph`` (nodes by step name, ``sorted_nodes``, ``end_step``)."""
    return flow_class._graph  # type: ignore[attr-defined]


def step_functions(flow_class: type) -> list[Any]:
    """The flow's step functions (each with ``name`` and ``decorators``)."""
    return list(flow_class._steps)  # type: ignore[attr-defined]


def parameters(flow_class: type) -> list[tuple[str, Any]]:
    """``(attribute, Parameter)`` for each Parameter (and Config) of the flow."""
    return list(flow_class._get_parameters())  # type: ignore[attr-defined]


def flow_decorators(flow_class: type) -> dict[str, list[Any]]:
    """The flow-level decorators (``@project``, ``@pypi_base``...) by name,
    each name mapping to its instances.

    Metaflow 2.19.10 moved them from the class attribute ``_flow_decorators``
    into the flow state (``_flow_state[FlowStateItems.FLOW_DECORATORS]``);
    ``_flow_decorators`` remains there only as an instance property, so the
    class attribute cannot be read on every version.
    """
    try:
        items = __getattr__("FlowStateItems")
    except (ImportError, AttributeError):  # Metaflow before 2.19.10
        return flow_class._flow_decorators  # type: ignore[attr-defined,no-any-return]
    return flow_class._flow_state[items.FLOW_DECORATORS]  # type: ignore[attr-defined,no-any-return]


def declared(param: Any, key: str) -> Any:
    """A Parameter's declared ``key`` (``default``, ``help``...): its kwargs once
    the flow's configs are resolved (in the flow's processes); before that
    they sit in ``_override_kwargs``."""
    return param.kwargs.get(key, getattr(param, "_override_kwargs", {}).get(key))


def anchor_config_defaults(flow_class: type, directory: str) -> None:
    """Make each ``Config``'s relative default file absolute, against
    ``directory`` (the flow file's), where the file is there and not in the
    working directory: users run ``python flow.py`` from the flow's directory,
    runs here start in the sandbox. Metaflow reads a Config's default from its
    ``kwargs`` when its CLI is imported, in every command (``resume`` too,
    which takes no ``--config`` but parses the defaults before it replaces
    them with the origin run's values)."""
    for _, param in parameters(flow_class):
        if not getattr(param, "IS_CONFIG_PARAMETER", False):
            continue
        default = param.kwargs.get("default")
        if (
            getattr(param, "_default_is_file", False)
            and isinstance(default, str)
            and not os.path.isabs(default)
            and not os.path.exists(default)
            and os.path.isfile(os.path.join(directory, default))
        ):
            param.kwargs["default"] = os.path.join(directory, default)


def remove_decorators(flow_class: type, names: list[str]) -> None:
    """Remove the decorators ``names`` from the flow and its steps with
    Metaflow's own mutation API (what a ``FlowMutator`` uses in ``pre_mutate``)."""
    flow = __getattr__("MutableFlow")(flow_class, pre_mutate=True, inserted_by=["pytest-artflow"])
    for name in names:
        flow.remove_decorator(name)
    for _, step in flow.steps:
        for name in names:
            # Only a name the step carries: before Metaflow 2.19.23,
            # ``MutableStep.remove_decorator`` raised ``TypeError``
            # (``issubclass()`` of ``None``) for a name that is not a
            # registered user step decorator (``batch``, ``kubernetes``).
            if any(spec[0] == name for spec in step.decorator_specs):
                step.remove_decorator(name)
    flow_class._init_graph()  # type: ignore[attr-defined]


def end_step(graph: Any) -> str:
    """The name of the end step of a flow's ``FlowGraph``: the step whose task
    says whether the run is successful and finished.

    Metaflow 2.19.23 lets ``@step(end=True)`` mark any step as the end and
    records it as ``FlowGraph.end_step``; before, the end step is always the
    step named ``end`` and the graph has no such attribute.
    """
    return getattr(graph, "end_step", "end")


def start_step(graph: Any) -> str:
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


def check_graph(flow_class: type) -> None:
    """Metaflow's own graph checks (``python flow.py run`` runs them first)."""
    __getattr__("linter").run_checks(graph(flow_class))


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------


def client_run(pathspec: str) -> Any:
    """A client ``Run`` in any namespace (a sandbox's runs are its test's)."""
    from metaflow import Run

    return Run(pathspec, _namespace_check=False)


def client_step(pathspec: str) -> Any:
    from metaflow import Step

    return Step(pathspec, _namespace_check=False)


def client_task(pathspec: str, attempt: int | None = None) -> Any:
    """A client ``Task``; with ``attempt``, that attempt's metadata only."""
    from metaflow import Task

    if attempt is None:
        return Task(pathspec, _namespace_check=False)
    return Task(pathspec, attempt=attempt, _namespace_check=False)


@contextlib.contextmanager
def client_pointed_at(root: str, datastore: str, cache_dir: str) -> Iterator[None]:
    """Point Metaflow's client in this process (metadata, namespace, file
    cache, the local datastore root) at a sandbox, and restore all of it on
    exit. ``LocalMetadataProvider.INFO`` is a validating property; its raw
    ``_INFO`` is saved and restored."""
    core = __getattr__("client_core")
    provider = __getattr__("LocalMetadataProvider")
    storage = __getattr__("LocalStorage")
    saved = (
        core.current_metadata,
        core.current_namespace,
        core.filecache,
        provider._INFO,
        storage.datastore_root,
    )
    try:
        core.metadata(f"local@{root}")
        core.namespace(None)
        core.filecache = __getattr__("FileCache")(cache_dir=cache_dir)
        storage.datastore_root = datastore
        yield
    finally:
        (
            core.current_metadata,
            core.current_namespace,
            core.filecache,
            provider._INFO,
            storage.datastore_root,
        ) = saved


@contextlib.contextmanager
def metadata_read_once() -> Iterator[None]:
    """While a finished run is read, the client's metadata provider reads each
    file once: Metaflow's client asks for the same things again and again (a
    run's ``_self.json`` for every step and task it lists, a task's metadata
    for ``current_attempt``, for each attempt and for each clone's origin).

    The provider's ``_get_object_internal`` is where it reads; its answers are
    kept for the duration, keyed by the question. By its documented contract
    it returns a task's metadata of every attempt whatever the attempt asked
    for (``get_object`` picks the attempt's with
    ``_reconstruct_metadata_for_attempt``), so metadata is asked for once per
    task. Client objects made meanwhile keep the provider; once the read is
    over it answers from the files again, as Metaflow's does.
    """
    core = __getattr__("client_core")
    provider: Any = core.current_metadata
    if not isinstance(provider, type):  # not pointed anywhere yet
        yield
        return
    answers: dict[Any, Any] = {}
    active = [True]
    # The provider's own function, called with the class below, whose own
    # questions (a run's record, for every step and task listed) come back here.
    reads = provider._get_object_internal.__func__  # type: ignore[attr-defined]

    def _get_object_internal(
        cls: Any,
        obj_type: str,
        obj_order: int,
        sub_type: str,
        sub_order: int,
        filters: Any,
        attempt: Any,
        *args: Any,
    ) -> Any:
        read = functools.partial(
            reads,
            cls,
            obj_type,
            obj_order,
            sub_type,
            sub_order,
            filters,
            attempt,
            *args,
        )
        if not active[0]:
            return read()
        key = (
            obj_type,
            sub_type,
            # No filter and an empty one ask the same (``_apply_filter``).
            repr(filters or None),
            None if sub_type == "metadata" else attempt,
            args,
        )
        if key not in answers:
            answers[key] = read()
        return answers[key]

    once = type(
        provider.__name__,
        (provider,),
        {"_get_object_internal": classmethod(_get_object_internal), "__doc__": provider.__doc__},
    )
    core.current_metadata = once
    try:
        yield
    finally:
        active[0] = False
        answers.clear()
        if core.current_metadata is once:
            core.current_metadata = provider


def client_task_attempt(task: Any, attempt: int) -> Any:
    """``Task(task.pathspec, attempt=attempt)`` made from ``task``'s listing,
    as a ``Step`` makes its tasks, without reading the task's record again."""
    from metaflow import Task

    return Task(
        task.pathspec,
        attempt=attempt,
        _object=task._object,
        _parent=task._parent,
        _namespace_check=False,
    )


@contextlib.contextmanager
def s3_client_pointed_at(endpoint: str, root: str) -> Iterator[None]:
    """Point this process's Metaflow S3 client (``metaflow.S3``, the S3
    datastore, its ``s3op`` workers' parameters) at ``endpoint`` with the
    datastore under ``root``, and restore it on exit: Metaflow copies these
    settings into module globals when it is imported."""
    from metaflow import metaflow_config as config
    from metaflow.plugins.datastores import s3_storage
    from metaflow.plugins.datatools.s3 import s3

    attributes = [
        (config, "S3_ENDPOINT_URL", endpoint),
        (config, "DATASTORE_SYSROOT_S3", root),
        (config, "DATATOOLS_S3ROOT", f"{root}/{config.DATATOOLS_SUFFIX}"),
        (config, "CARD_S3ROOT", f"{root}/{config.CARD_SUFFIX}"),
        (s3_storage, "DATASTORE_SYSROOT_S3", root),
        (s3, "DATATOOLS_S3ROOT", f"{root}/{config.DATATOOLS_SUFFIX}"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in attributes]
    # A dict that modules imported by name: changed in place.
    params = config.DATATOOLS_CLIENT_PARAMS
    saved_params = dict(params)
    try:
        for owner, name, value in attributes:
            setattr(owner, name, value)
        params["endpoint_url"] = endpoint
        yield
    finally:
        params.clear()
        params.update(saved_params)
        for owner, name, value in saved:
            setattr(owner, name, value)


# --------------------------------------------------------------------------
# Artifacts Metaflow stores for itself
# --------------------------------------------------------------------------

#: ``(next steps, foreach variable)`` of a finished task.
TRANSITION = "_transition"
#: The ``ForeachFrame`` list of a task inside foreach splits.
FOREACH_STACK = "_foreach_stack"
#: How many splits a foreach step made.
FOREACH_NUM_SPLITS = "_foreach_num_splits"
#: The artifact a foreach step splits over.
FOREACH_VAR = "_foreach_var"


def foreach_frame(*fields: Any) -> Any:
    """``ForeachFrame(step, var, num_splits, index, value)``."""
    return __getattr__("ForeachFrame")(*fields)


# --------------------------------------------------------------------------
# Messages of Metaflow's that are matched
# --------------------------------------------------------------------------

#: A step read an artifact no parent gave it.
MISSING_ATTRIBUTE = re.compile(r"Flow \w+ has no attribute '(\w+)'")
#: The start of the message Metaflow prints for an unpicklable artifact.
UNPICKLABLE_PREFIX = "Cannot pickle dump artifact named"
#: The runtime's log lines that open and close a task's part of the run's output.
TASK_STARTS = ("Task is starting", "Task fallback is starting")
TASK_ENDS = ("Task finished successfully.", "Task failed", "[KILLED BY ORCHESTRATOR]")
#: The CLI's words for a Parameter without a value.
MISSING_PARAMETER = ("Missing option", "Missing parameter")


# --------------------------------------------------------------------------
# Patches while a run goes on (in the flow's processes only)
# --------------------------------------------------------------------------

_ORIGINAL = "_artflow_original"


def _wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``owner.name`` with ``make(original)``; a second wrap replaces
    the first (a forked task that loads a second flow), never stacks on it."""
    current = getattr(owner, name)
    original = getattr(current, _ORIGINAL, current)
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _ORIGINAL, original)
    setattr(owner, name, wrapper)


def wrap_save_artifacts(make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """``TaskDataStore.save_artifacts``, where every artifact is pickled."""
    _wrap(__getattr__("TaskDataStore"), "save_artifacts", make)


def rewrite_script_commands(command: Callable[[list[str]], list[str]]) -> None:
    """Pass through ``command`` the commands of the processes Metaflow starts by
    running the flow's script again: ``@card``'s ``card create``
    (``CardCreator._run_command``) and an unbounded foreach's workers
    (``CLIArgs.step_command``)."""

    def run_command(original: Callable[..., Any]) -> Callable[..., Any]:
        def _run_command(self: Any, cmd: list[str], *args: Any, **kwargs: Any) -> Any:
            return original(self, command(cmd), *args, **kwargs)

        return _run_command

    def step_command(original: Callable[..., Any]) -> Callable[..., Any]:
        def _step_command(self: Any, *args: Any, **kwargs: Any) -> list[str]:
            return command(original(self, *args, **kwargs))

        return _step_command

    _wrap(__getattr__("CardCreator"), "_run_command", run_command)
    _wrap(__getattr__("CLIArgs"), "step_command", step_command)


def install_code_package(package_class: type) -> bool:
    """Make the CLI's ``run`` and ``resume`` build their code package with
    ``package_class``; not when ``FEAT_ALWAYS_UPLOAD_CODE_PACKAGE`` is on (the
    runtime then polls for the package from the start). Before Metaflow's CLI
    is imported, which binds the class by name."""
    if __getattr__("metaflow_config").FEAT_ALWAYS_UPLOAD_CODE_PACKAGE:
        return False
    __getattr__("package_module").MetaflowPackage = package_class
    return True


@contextlib.contextmanager
def package_made_with(content_class: type, thread_class: type) -> Iterator[None]:
    """Within: ``MetaflowPackage`` makes its code content (which modules and
    files go in) with ``content_class`` instead of ``MetaflowCodeContentV1``,
    and its packing thread with ``thread_class`` instead of ``threading.Thread``
    (its module's ``threading``, for it only, becomes one whose ``Thread`` is
    ``thread_class``)."""
    import threading
    import types

    package = __getattr__("package_module")
    saved = package.MetaflowCodeContentV1, package.threading
    proxy = types.ModuleType("threading", threading.__doc__)
    proxy.__dict__.update(vars(threading))
    proxy.Thread = thread_class  # type: ignore[attr-defined]
    package.MetaflowCodeContentV1, package.threading = content_class, proxy
    try:
        yield
    finally:
        package.MetaflowCodeContentV1, package.threading = saved


def set_runtime_popen(popen: Callable[..., Any]) -> None:
    """Start the runtime's task processes with ``popen``: its ``subprocess``
    module, for the runtime only, becomes one whose ``Popen`` is ``popen``."""
    import subprocess
    import types

    proxy = types.ModuleType("subprocess", subprocess.__doc__)
    proxy.__dict__.update(vars(subprocess))
    proxy.Popen = popen  # type: ignore[attr-defined]
    __getattr__("runtime").subprocess = proxy


def repository_info(path: str) -> Any:
    """Metaflow's git information about the flow's directory (cached per process)."""
    return __getattr__("metaflow_git").get_repository_info(path=path)


def answer_repository_info(answer: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``get_repository_info`` with ``answer(original)``; ``answer`` may
    call ``set_repository_info`` to settle for good."""
    git = __getattr__("metaflow_git")
    git.get_repository_info = answer(git.get_repository_info)


#: The questions ``get_repository_info`` asks ``git`` (one at a time), as
#: ``_call_git``'s arguments: ``repository_info_at_once`` asks them all at once.
GIT_QUESTIONS: tuple[tuple[str, ...], ...] = (
    ("rev-parse", "--is-inside-work-tree"),
    ("config", "--get", "remote.origin.url"),
    ("rev-parse", "--abbrev-ref", "HEAD"),
    ("rev-parse", "HEAD"),
    ("diff-index", "--quiet", "HEAD", "--"),
)


def repository_info_at_once(path: str) -> Any:
    """What ``get_repository_info(path)`` returns, sooner: ``GIT_QUESTIONS``
    go to ``git`` at once, each through Metaflow's own ``_call_git``, and then
    ``get_repository_info`` runs with those answers at hand; a question it
    asks that is not among them goes to ``git`` as it asks (so a Metaflow
    that asks other questions gets its own answers, only later). Threads:
    only for a process that forks nothing afterwards."""
    import threading

    git = __getattr__("metaflow_git")
    call = git._call_git
    answers: dict[tuple[str, ...], Any] = {}

    def ask(question: tuple[str, ...]) -> None:
        answers[question] = call(list(question), path)

    asking = [threading.Thread(target=ask, args=(q,), daemon=True) for q in GIT_QUESTIONS]
    for thread in asking:
        thread.start()
    for thread in asking:
        thread.join()

    def answered(args: list[str], where: Any = path) -> Any:
        key = tuple(args)
        if where == path and key in answers:
            return answers[key]
        return call(args, where)

    git._call_git = answered
    try:
        return git.get_repository_info(path=path)
    finally:
        git._call_git = call


def fill_repository_info(info: Any) -> None:
    """Metaflow's per-process cache of ``get_repository_info``, filled with
    ``info`` (what it returned in another process of the run)."""
    __getattr__("metaflow_git")._git_info_cache = info


def set_repository_info(function: Callable[..., Any]) -> None:
    __getattr__("metaflow_git").get_repository_info = function


def call_repository_info(path: Any) -> Any:
    return __getattr__("metaflow_git").get_repository_info(path)


def warm_version() -> None:
    """Metaflow's version (a ``git describe`` of its own directory, per process)."""
    __getattr__("metaflow_version_module").get_version()


def config_files() -> tuple[Any, Any]:
    """The configuration files Metaflow read when it was imported."""
    funcs = __getattr__("metaflow_config_funcs")
    return funcs.METAFLOW_CONFIG, funcs.METAFLOW_LOCAL_CONFIG


def read_config_files() -> tuple[Any, Any]:
    """The configuration files Metaflow would read now (this environment)."""
    funcs = __getattr__("metaflow_config_funcs")
    return funcs.init_config(), funcs.init_local_config()


def flow_context(flow_class: type) -> Any:
    """The context in which Metaflow's CLI adds a flow's options as it is imported."""
    return __getattr__("parameters_module").flow_context(flow_class)


# --------------------------------------------------------------------------
# What the fork engine needs, checked
# --------------------------------------------------------------------------

#: ``(module, attribute path, parameters it must accept)``: the names the
#: fork server, its run processes and the launcher patch or call. A name
#: missing, or a signature without these parameters, means Metaflow changed
#: under the fork engine.
FORK_ENGINE_NEEDS: list[tuple[str, str, tuple[str, ...]]] = [
    ("metaflow.runtime", "subprocess", ()),
    ("metaflow.metaflow_git", "get_repository_info", ("path",)),
    ("metaflow.metaflow_git", "_git_info_cache", ()),
    ("metaflow.metaflow_git", "_call_git", ("args", "path")),
    ("metaflow.metaflow_version", "get_version", ()),
    ("metaflow.metaflow_config_funcs", "METAFLOW_CONFIG", ()),
    ("metaflow.metaflow_config_funcs", "METAFLOW_LOCAL_CONFIG", ()),
    ("metaflow.metaflow_config_funcs", "init_config", ()),
    ("metaflow.metaflow_config_funcs", "init_local_config", ()),
    ("metaflow.metaflow_config", "FEAT_ALWAYS_UPLOAD_CODE_PACKAGE", ()),
    ("metaflow.package", "MetaflowPackage._package_and_upload", ("self",)),
    ("metaflow.package", "MetaflowCodeContentV1", ()),
    ("metaflow.package", "threading", ()),
    (
        "metaflow.packaging_sys.v1",
        "MetaflowCodeContentV1.__init__",
        ("self", "code_dir", "other_dir", "criteria"),
    ),
    (
        "metaflow.packaging_sys",
        "MetaflowCodeContentV1Base.__init__",
        ("self", "code_dir", "other_dir"),
    ),
    ("metaflow.package", "MetaflowPackage.blob_with_timeout", ("self", "timeout")),
    ("metaflow.package", "MetaflowPackage.package_sha", ("self", "timeout")),
    ("metaflow.package", "MetaflowPackage.package_url", ("self", "timeout")),
    ("metaflow.plugins.cards.card_creator", "CardCreator._run_command", ("self", "cmd")),
    ("metaflow.cli_args", "CLIArgs.step_command", ("self",)),
    ("metaflow.parameters", "flow_context", ()),
    ("metaflow.datastore.task_datastore", "TaskDataStore.save_artifacts", ("self",)),
    # Not ``metaflow.cli`` itself: importing it adds a flow's options, so it
    # is imported in a flow's processes only, inside the flow's context.
]


def fork_engine_problems() -> list[str]:
    """What changed in Metaflow that the fork engine needs (``[]``: nothing),
    one entry per name: ``metaflow.runtime.subprocess is missing``."""
    problems = []
    for module_name, path, needed in FORK_ENGINE_NEEDS:
        where = f"{module_name}.{path}"
        try:
            found: Any = importlib.import_module(module_name)
            for part in path.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            problems.append(f"{where} is missing")
            continue
        if not needed:
            continue
        try:
            accepted = inspect.signature(found).parameters
        except (TypeError, ValueError):
            continue
        absent = [name for name in needed if name not in accepted]
        if absent:
            problems.append(f"{where} no longer takes {', '.join(absent)}")
    return problems
