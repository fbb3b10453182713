"""Reading what a run left in the datastore, through Metaflow's client, into
the model's plain objects."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import metaflow_seam, timeline
from ..errors import ArtflowError
from .cards import has_cards, read_cards
from .failure import _blame_worker, find_failure, user_traceback
from .model import CaughtException, FlowRun, LazyValues, StepResult, TaskResult, _PartlyRead

if TYPE_CHECKING:
    from metaflow import Task

    from ..flows import FlowRef
    from ..sandbox import Sandbox


@contextmanager
def main_module_as(module: ModuleType) -> Iterator[None]:
    """Let pickles that name ``__main__.X`` load while artifacts are read.

    The flow's processes run the flow file as ``__main__``; in this process the
    same classes live in ``module``, and Metaflow's own ``__main__`` classes
    (``ForeachFrame``) on the real ``__main__``. A stand-in holding both
    replaces ``__main__`` only while artifacts are unpickled. Modules that
    the flow's processes import from its directory, or from where its
    module-level code pointed ``sys.path``, are importable meanwhile too.
    """
    from ..flows import import_paths

    saved = sys.modules["__main__"]
    stand_in = ModuleType("__main__")
    stand_in.__dict__.update(vars(saved))
    stand_in.__dict__.update(vars(module))
    sys.modules["__main__"] = stand_in
    extra = [entry for entry in import_paths(module) if entry not in sys.path]
    sys.path.extend(extra)
    try:
        yield
    finally:
        sys.modules["__main__"] = saved
        for entry in extra:
            if entry in sys.path:
                sys.path.remove(entry)


def read_run(
    sandbox: Sandbox, flow: FlowRef, run_id: str, *, output: str = "", duration: float = 0.0
) -> FlowRun:
    """Read what a run wrote: every task's status, output and the names of
    its artifacts; the values load when first asked for (``LazyValues``), and
    the rest before the sandbox is removed. The caller holds the sandbox's
    client scope."""

    timeline.mark("read.start", f"{flow.name}/{run_id}")
    with main_module_as(flow.module), metaflow_seam.metadata_read_once():
        run = metaflow_seam.client_run(f"{flow.name}/{run_id}")
        present = {step.id: step for step in run}
        timeline.mark("read.listed")
        steps = {
            name: StepResult(
                name,
                sorted_tasks(
                    [
                        read_task(t, cards=has_cards(flow.flow_class, name), module=flow.module)
                        for t in present[name]
                    ]
                ),
            )
            for name in flow.step_names
            if name in present
        }
    timeline.mark("read.tasks")
    # A run is successful if its end step is (``Run.successful``), finished
    # if its end step is (``Run.finished``).
    end = steps.get(metaflow_seam.end_step(metaflow_seam.graph(flow.flow_class)))
    successful = bool(end and end.task.successful)
    finished = bool(end and end.task.finished)
    result = FlowRun(
        flow_name=flow.name,
        run_id=str(run_id),
        successful=successful,
        step_results=steps,
        output=output,
        duration=duration,
        sandbox=sandbox,
        flow=flow,
        finished=finished,
    )
    for task in result.tasks:
        for attempt in task.attempts:
            attempt.run = result
            if attempt.lazy is not None:
                sandbox.keep_readable(attempt)
    if not successful:
        result.failure = find_failure(result)
        if result.failure is not None:
            result.failure = _blame_worker(result, result.failure)
    note_unreadable(result, load=False)
    timeline.mark("read.end", f"{flow.name}/{run_id}")
    return result


def note_unreadable(run: FlowRun, *, load: bool = True) -> None:
    """``FlowRun.note_unreadable``: what cannot be read back is the run's
    failure; with ``load``, after loading every value."""
    run._note_unreadable(load=load)


@dataclass
class StoredAttempt:
    """What one task attempt stored: every artifact, Metaflow's own
    (``_transition``, ``_foreach_num_splits``...) too, and each one's content key."""

    values: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    #: Artifacts that did not load: name -> the problem.
    problems: dict[str, str] = field(default_factory=dict)


def read_task(task: Task, *, cards: bool = False, module: ModuleType | None = None) -> TaskResult:
    return read_task_stored(task, cards=cards, module=module)[0]


def read_task_stored(
    task: Task,
    *,
    cards: bool = False,
    module: ModuleType | None = None,
    own: tuple[str, ...] = (),
) -> tuple[TaskResult, StoredAttempt]:
    """The task (its last attempt, with every attempt in ``attempts``) and
    what its last attempt stored; with ``cards``, its cards too (a step
    without ``@card`` has none, and looking costs a listing per task). Never
    raises for what the task wrote: a task that cannot be read is returned
    with the problem, so that the run it belongs to is not lost.

    Artifact values load when first asked for, under ``module`` as
    ``__main__`` (``main_module_as``); Metaflow's own artifacts that say the
    task's status and place are loaded now, and those named in ``own``.
    Inside ``metadata_read_once``, the task's metadata is read once for all
    its attempts."""

    try:
        attempts = task.current_attempt + 1
    except Exception as exc:
        return _unreadable_task(task.pathspec, exc), StoredAttempt()
    read = []
    for n in range(attempts):
        try:
            # A task named with its attempt reads that attempt's metadata only, and
            # does not look up which attempt is the latest each time it is asked.
            read.append(_read_attempt(metaflow_seam.client_task_attempt(task, n), module, own))
        except Exception as exc:
            read.append((_unreadable_task(task.pathspec, exc, attempt=n), StoredAttempt()))
    final, stored = read[-1]
    final.attempts = [result for result, _ in read]
    if cards:
        # Cards belong to the task, not to an attempt: every attempt lists them.
        found = read_cards(task)
        for attempt in final.attempts:
            attempt.cards = found
    return final, stored


def _unreadable_task(pathspec: str, exc: BaseException, attempt: int = 0) -> TaskResult:
    """A task (attempt) whose metadata, logs or datastore could not be read."""
    result = TaskResult(
        pathspec=pathspec,
        step=pathspec.split("/")[2],
        artifacts={},
        stdout="",
        stderr="",
        successful=False,
        finished=False,
        attempt=attempt,
        read_error=_problem(exc),
    )
    result.artifacts = _PartlyRead({}, result)
    result.attempts = [result]
    return result


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


#: Metaflow's own artifacts that say a task's status and place, loaded as the
#: task is read (``Task.successful``, ``.finished``, ``.index``; a control
#: task's workers); the other artifacts load when first asked for.
_STATUS = ("_success", "_task_ok", metaflow_seam.FOREACH_STACK, "_control_mapper_tasks")
#: What a task that is not successful recorded of its exception.
_FAILED = ("_exception", "_catch_exception")


def _read_attempt(
    task: Task, module: ModuleType | None, own: tuple[str, ...] = ()
) -> tuple[TaskResult, StoredAttempt]:
    from ..metaflow_seam import CONTROL_TASK_TAG

    # The metadata is read once: it says where the artifacts are, and it is
    # what the logs are read with.
    meta = task.metadata_dict
    stored, load = _open_stored(task, meta, module, own)
    values = stored.values
    stack = values.get(metaflow_seam.FOREACH_STACK) or []
    successful = bool(values.get("_success", False))
    finished = bool(values.get("_task_ok", False))
    pathspec = task.pathspec
    names = [k for k in stored.keys if not k.startswith("_")]
    result = TaskResult(
        pathspec=pathspec,
        step=pathspec.split("/")[2],
        # What the client lists as the task's artifacts: Metaflow's own
        # (``_``-prefixed) ones are not among them. Their values load later.
        artifacts={},
        stdout=_log(task, "stdout", meta),
        stderr=_log(task, "stderr", meta),
        # ``Task.successful``, ``.finished`` and ``.exception`` are these artifacts.
        successful=successful,
        finished=finished,
        index=stack[-1].index if stack else None,
        attempt=task.current_attempt,
        exception=values.get("_exception"),
        # Ids made outside Metaflow's runtime (artflow_step's, an unbounded
        # foreach's workers) need not be numbers.
        order=(tuple(f.index for f in stack), int(task.id) if task.id.isdigit() else 0),
        origin_pathspec=_origin_pathspec(task, meta),
        caught=None if successful or not finished else _caught(stored),
        # What the client's ``Step.control_tasks()`` looks for; the artifact is
        # what the runtime itself requires of a control task.
        control=meta.get("internal_task_type") == CONTROL_TASK_TAG
        or "_control_mapper_tasks" in values,
        unreadable=dict(stored.problems),
        workers=[
            f"{pathspec.split('/')[0]}/{path}" for path in values.get("_control_mapper_tasks") or []
        ],
        lazy=LazyValues(names, load) if names and load is not None else None,
    )
    if result.lazy is None and stored.problems:
        result.artifacts = _PartlyRead({}, result)
    return result, stored


def _caught(stored: StoredAttempt) -> CaughtException:
    """What a finished but unsuccessful attempt caught: Metaflow's
    ``_catch_exception``, and the ``var`` artifact holding the same value (the
    same content key). The artifact is passed on to later steps, so it only
    tells what was caught together with the attempt's status."""
    exc = stored.values.get("_catch_exception")
    if exc is None or not getattr(exc, "type", None):
        return CaughtException(None, "a decorator handled the exception and recorded none")
    key = stored.keys.get("_catch_exception")
    holders = [n for n, k in stored.keys.items() if k == key and n != "_catch_exception"]
    return CaughtException(
        type=exc.type.removeprefix("builtins."),
        message=exc.exception,
        # A var named like Metaflow's own artifacts is still the user's.
        var=min(holders, key=lambda n: (n.startswith("_"), n)) if holders else None,
        traceback=user_traceback(exc.stacktrace or ""),
    )


def _open_stored(
    task: Task, meta: Mapping[str, str], module: ModuleType | None, own: tuple[str, ...] = ()
) -> tuple[StoredAttempt, Any]:
    """What ``task`` (an attempt) stored, read with one ``TaskDataStore``
    where its metadata says it wrote, as a task reads its inputs: its
    artifacts' keys, the values of Metaflow's own artifacts that say its
    status (``_STATUS``; ``_FAILED`` for one that is not successful) and
    those in ``own``, and a loader of the others (``None`` if the attempt
    never started or did not end: it was killed).

    The client's ``DataArtifact.data`` would copy each value into its file
    cache first, a directory and a file per artifact: most of the cost of
    reading a run.
    """
    from metaflow.exception import MetaflowException

    from ..metaflow_seam import DATASTORES, FlowDataStore

    storage = [d for d in DATASTORES if meta.get("ds-type") == d.TYPE]
    if not storage or not meta.get("ds-root"):
        return StoredAttempt(), None
    flow_name, run_id, step_name, task_id = task.pathspec.split("/")
    flow_store = FlowDataStore(flow_name, storage_impl=storage[0], ds_root=meta["ds-root"])
    try:
        store = flow_store.get_task_datastore(
            run_id, step_name, task_id, attempt=task.current_attempt
        )
    except MetaflowException:
        return StoredAttempt(), None
    keys = dict(store.items())
    stored = StoredAttempt(keys=keys)

    def load(names: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
        timeline.mark("read.values", f"{task.pathspec} {len(names)}")
        if module is None:
            return _load(store, storage[0], meta["ds-root"], flow_name, keys, names)
        with main_module_as(module):
            return _load(store, storage[0], meta["ds-root"], flow_name, keys, names)

    for names in (_STATUS + own, _FAILED):
        values, problems = _load(
            store, storage[0], meta["ds-root"], flow_name, keys, [n for n in names if n in keys]
        )
        stored.values.update(values)
        stored.problems.update(problems)
        if stored.values.get("_success"):
            break
    return stored, load


def _load(
    store: Any,
    storage_class: Any,
    ds_root: str,
    flow_name: str,
    keys: Mapping[str, str],
    names: list[str],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load ``names`` from ``store``: (values, problems by name)."""
    from ..metaflow_seam import IncludedFile

    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    if not names:
        return values, problems
    try:
        loaded = list(store.load_artifacts(names))
    except Exception:
        # One artifact spoils the batch: load each on its own to keep the
        # others and name the ones that fail.
        loaded = []
        for name in names:
            try:
                loaded += store.load_artifacts([name])
            except Exception as exc:
                missing = _missing_content(storage_class, ds_root, flow_name, keys[name])
                problems[name] = missing or _problem(exc)
    # As ``DataArtifact.data`` does: an ``IncludeFile`` reads as its contents.
    for name, value in loaded:
        if isinstance(value, IncludedFile):
            try:
                value = value.decode(name)
            except Exception as exc:
                problems[name] = _problem(exc)
                continue
        values[name] = value
    return values, problems


def _missing_content(storage_class: Any, ds_root: str, flow_name: str, key: str) -> str | None:
    """Say so if an artifact's content is not where Metaflow's content-addressed
    store keeps it (``<flow>/data/<key[:2]>/<key>``): Metaflow's own error for
    a missing file is a ``TypeError`` about ``None``."""
    try:
        storage = storage_class(ds_root)
        path = storage.path_join(flow_name, "data", key[:2], key)
        if storage.is_file([path])[0]:
            return None
        return f"its content is missing from the datastore: {storage.full_uri(path)}"
    except Exception:
        return None


def _origin_pathspec(task: Task, meta: Mapping[str, str]) -> str | None:
    """What ``Task.origin_pathspec`` says, from metadata already read: a task
    that resume cloned has ``origin-task-id``; one that ran has at most
    ``origin-run-id`` (the run resumed, or ``"None"``)."""
    origin_task = meta.get("origin-task-id")
    if not origin_task:
        return None
    flow_name, _, step_name, _ = task.pathspec.split("/")
    return f"{flow_name}/{meta['origin-run-id']}/{step_name}/{origin_task}"


def _log(task: Task, stream: str, meta: Mapping[str, str]) -> str:
    """``task.stdout``/``task.stderr``, given the task's metadata."""
    return "".join(line + "\n" for _, line in task.loglines(stream, meta_dict=meta))


def sorted_tasks(tasks: list[TaskResult]) -> list[TaskResult]:
    """Tasks of one step in foreach-index order (loop iterations by task id).
    An unbounded foreach's control task has no index of its own and comes
    first, before its workers (a local ``@parallel`` step's control task is
    also worker 0); a task whose order is unknown (unreadable) comes last."""
    return sorted(tasks, key=_order_key)


def _order_key(task: TaskResult) -> tuple[Any, ...]:
    indices, number = task.order
    return (
        task.read_error is not None or metaflow_seam.FOREACH_STACK in task._problems_known(),
        tuple(-1 if index is None else index for index in indices),
        number,
        task.id,
    )


def datastore_of(run: FlowRun) -> tuple[str, str]:
    """The datastore type and root a run's tasks wrote to, as their metadata says."""
    for step in run.client:
        for task in step:
            meta = task.metadata_dict
            if meta.get("ds-type") and meta.get("ds-root"):
                return meta["ds-type"], meta["ds-root"]
    raise ArtflowError(f"{run.pathspec} has no task that says where it stored its artifacts")
