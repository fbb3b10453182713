"""What a run left in the datastore, read once through Metaflow's client into
plain objects whose values stay readable after the sandbox is gone."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import explain, metaflow_seam
from .engines.diagnostics import UNPICKLABLE_PREFIX
from .errors import ArtflowError, ArtifactReadError

if TYPE_CHECKING:
    from metaflow import Run, Task
    from metaflow.plugins.cards.card_client import Card

    from .flows import FlowRef
    from .sandbox import Sandbox


class UnknownStepError(ArtflowError, KeyError):
    """``run["nope"]``: the message lists the steps that did run."""

    def __str__(self) -> str:
        return str(self.args[0])


class _PartlyRead(dict):
    """``task.artifacts`` of a task some of whose artifacts did not load: a
    plain dict of those that did, whose missing names say why they are missing."""

    def __init__(self, values: dict[str, Any], task: TaskResult) -> None:
        super().__init__(values)
        self._task = task

    def problem(self, name: str) -> str | None:
        """Why artifact ``name`` is missing, if it was saved and did not load."""
        return None if name in self else self._task.read_problem(name)

    def __missing__(self, name: str) -> Any:
        problem = self.problem(name)
        if problem is None:
            raise KeyError(name)
        raise ArtifactReadError(problem)


#: What a mapping would offer; ``task.artifacts`` is the dict of every artifact.
_MAPPING_METHODS = frozenset({"keys", "values", "items", "get"})


class ArtifactData:
    """``task.data.some_data``: attribute access to a task's artifacts, as
    Metaflow's client gives it, and ``data["name"]``, ``in``, iteration over
    the names. Not a mapping, so that every name, ``values`` or ``items`` too,
    reads the artifact of that name."""

    def __init__(
        self, owner: str, artifacts: dict[str, Any], on_read: Callable[[str, Any], None] | None
    ) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_artifacts", artifacts)
        object.__setattr__(self, "_on_read", on_read)

    def __getattr__(self, name: str) -> Any:
        artifacts = object.__getattribute__(self, "_artifacts")
        if name.startswith("__"):
            raise AttributeError(name)
        problem = artifacts.problem(name) if isinstance(artifacts, _PartlyRead) else None
        if problem is not None:
            raise ArtifactReadError(problem)
        if name not in artifacts:
            known = ", ".join(sorted(artifacts)) or "none"
            hint = (
                f"; for a dict of every artifact use .artifacts, not .data.{name}"
                if name in _MAPPING_METHODS
                else ""
            )
            raise AttributeError(
                f"{self._owner} has no artifact {name!r} (its artifacts: {known}){hint}"
            )
        value = artifacts[name]
        if self._on_read is not None:
            self._on_read(name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("artifacts of a finished run are read-only")

    def __getitem__(self, name: str) -> Any:
        try:
            return self.__getattr__(name)
        except ArtifactReadError:
            raise
        except AttributeError as exc:
            raise KeyError(str(exc)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._artifacts

    def __iter__(self) -> Iterator[str]:
        return iter(self._artifacts)

    def __len__(self) -> int:
        return len(self._artifacts)

    def __dir__(self) -> list[str]:
        return sorted(self._artifacts)

    def __repr__(self) -> str:
        return f"<artifacts of {self._owner}: {', '.join(self._artifacts)}>"


@dataclass(frozen=True)
class CaughtException:
    """The exception a task's ``@catch`` handled: the task finished but is not
    successful, and the run went on (Metaflow's ``Task.finished`` without
    ``Task.successful``). Metaflow records it as the ``_catch_exception``
    artifact whatever ``var`` says, so it is known without a ``var`` too."""

    #: ``"ValueError"``, ``"mymodule.MyError"``; ``None`` when the decorator
    #: that handled the exception recorded none.
    type: str | None
    message: str
    #: The artifact ``@catch(var=...)`` stored the exception in, if any.
    var: str | None = None
    traceback: str = field(default="", repr=False)

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.type else self.message


@dataclass(eq=False)
class TaskResult:
    """One task (one attempt of it): its artifacts, output and status."""

    pathspec: str
    step: str
    artifacts: dict[str, Any]
    stdout: str
    stderr: str
    successful: bool
    finished: bool
    index: int | None = None
    attempt: int = 0
    #: Every attempt of this task, oldest first; the last one is this one.
    attempts: list[TaskResult] = field(default_factory=list, repr=False)
    #: Set by single-step runs: artifacts the step created or changed.
    changed: frozenset[str] | None = None
    #: Set by single-step runs: the steps the transition (``self.next``) chose.
    next_steps: list[str] | None = None
    #: Set by single-step runs of a foreach split: how many tasks the split starts.
    foreach_splits: int | None = None
    #: Metaflow's record of the exception that failed the task, if any.
    exception: Any = field(default=None, repr=False)
    #: The task's ``@card`` cards, as ``metaflow.cards.get_cards`` lists them,
    #: their HTML already read (``Card.get()`` needs no datastore).
    cards: list[Card] = field(default_factory=list, repr=False)
    #: In a resumed run (``artflow_resume``): the task of the origin run this
    #: one was cloned from, as Metaflow's ``Task.origin_pathspec`` says it
    #: (``"Flow/<origin run>/<step>/<task>"``); ``None`` for a task that ran.
    origin_pathspec: str | None = None
    #: What ``@catch`` caught in this attempt, if it caught anything.
    caught: CaughtException | None = None
    #: (foreach indices, task id): the order of tasks within a step. The
    #: control task of an unbounded foreach has the index ``None``.
    order: tuple[tuple[int | None, ...], int] = field(default=((), 0), repr=False)
    run: FlowRun | None = field(default=None, repr=False)
    #: The control task of an unbounded foreach (a ``@parallel`` step): the one
    #: Metaflow's runtime started, which starts the workers.
    control: bool = False
    #: Artifacts this attempt saved that do not load back here: name -> the
    #: problem (``"ModuleNotFoundError: No module named 'helpers'"``).
    unreadable: dict[str, str] = field(default_factory=dict, repr=False)
    #: Why the task itself (its metadata, logs or datastore) could not be read.
    read_error: str | None = field(default=None, repr=False)
    #: A control task's workers, as it recorded them (``_control_mapper_tasks``).
    workers: list[str] = field(default_factory=list, repr=False)

    @property
    def id(self) -> str:
        return self.pathspec.rsplit("/", 1)[-1]

    @property
    def cloned(self) -> bool:
        """Metaflow's resume copied this task from the origin run instead of running it."""
        return self.origin_pathspec is not None

    @property
    def readable(self) -> bool:
        """Everything the task saved was read back."""
        return not self.unreadable and self.read_error is None

    def read_problem(self, name: str | None = None) -> str | None:
        """What went wrong reading artifact ``name`` (any, if ``None``), as a
        message naming the step, the task and the problem; ``None`` if nothing did."""
        where = f"of step {self.step!r} (task {self.pathspec})"
        if self.read_error is not None:
            what = f"artifact {name!r}" if name else "the task"
            return f"{what} {where} could not be read back: {self.read_error}"
        if name is None:
            name = next(iter(self.unreadable), None)
        if name is None or name not in self.unreadable:
            return None
        problem = self.unreadable[name]
        return f"artifact {name!r} {where} was saved but does not load back: {problem}"

    @property
    def data(self) -> ArtifactData:
        # Remember what a test reads, so a failing assert can show the trace.
        on_read = partial(explain.remember, self.run, self.step) if self.run else None
        return ArtifactData(f"task {self.pathspec}", self.artifacts, on_read)


@dataclass(eq=False)
class StepResult:
    """All tasks of one step, in foreach-index / loop-iteration order."""

    name: str
    tasks: list[TaskResult]

    @property
    def task(self) -> TaskResult:
        if len(self.tasks) != 1:
            raise ArtflowError(
                f"step {self.name!r} ran {len(self.tasks)} tasks; pick one with "
                f"run[{self.name!r}].tasks[i]"
            )
        return self.tasks[0]

    @property
    def data(self) -> ArtifactData:
        return self.task.data

    @property
    def stdout(self) -> str:
        return "".join(t.stdout for t in self.tasks)

    @property
    def stderr(self) -> str:
        return "".join(t.stderr for t in self.tasks)

    @property
    def successful(self) -> bool:
        return all(t.successful for t in self.tasks)


@dataclass
class Failure:
    """Why a run failed: the first failing task in graph order."""

    step: str | None
    task: str | None
    exception_type: str | None
    message: str
    traceback: str = ""
    stdout: str = ""
    stderr: str = ""
    #: ``@catch`` caught the exception (in the end step, for a whole run): the
    #: task finished and the run went on, but Metaflow counts it as not successful.
    caught: bool = False


@dataclass
class ArtifactDiff:
    """``run.diff(a, b)``: how the artifacts of one task differ from another's."""

    added: dict[str, Any]
    removed: dict[str, Any]
    changed: dict[str, tuple[Any, Any]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(eq=False)
class FlowRun:
    """A finished run of a flow in a sandbox."""

    flow_name: str
    run_id: str
    successful: bool
    step_results: dict[str, StepResult]
    failure: Failure | None = None
    output: str = ""
    duration: float = 0.0
    sandbox: Sandbox | None = field(default=None, repr=False)
    #: The flow that ran (``artflow_step`` re-runs its steps).
    flow: FlowRef | None = field(default=None, repr=False)
    #: The run this one resumed (``artflow_resume``), as Metaflow's
    #: ``Run.origin_pathspec`` says it; ``None`` for a run that was not resumed.
    origin_pathspec: str | None = None
    #: The end step ran to completion (``Run.finished``) and the run exited
    #: 0: what ``python flow.py run`` counts as success. Unlike
    #: ``successful``, an exception ``@catch`` caught in the end step keeps it.
    finished: bool = False

    @property
    def pathspec(self) -> str:
        return f"{self.flow_name}/{self.run_id}"

    @property
    def steps(self) -> list[str]:
        return list(self.step_results)

    def __getitem__(self, step: str) -> StepResult:
        try:
            return self.step_results[step]
        except KeyError:
            raise UnknownStepError(
                f"{self.pathspec} has no step {step!r}; the steps that ran: {', '.join(self.steps)}"
            ) from None

    def __contains__(self, step: object) -> bool:
        return step in self.step_results

    def __iter__(self) -> Iterator[StepResult]:
        return iter(self.step_results.values())

    @property
    def tasks(self) -> list[TaskResult]:
        return [t for s in self for t in s.tasks]

    @property
    def readable(self) -> bool:
        """Everything every task saved was read back (``TaskResult.readable``)."""
        return all(t.readable for t in self.tasks)

    @property
    def client(self) -> Run:
        """Metaflow's own ``Run`` object (valid while the test's sandbox is active)."""
        from metaflow import Run

        return Run(self.pathspec, _namespace_check=False)

    def trace(self, name: str) -> dict[str, Any]:
        """The value of artifact ``name`` at every step that has it; a step with
        several tasks maps to the list of their values in task order."""
        out: dict[str, Any] = {}
        for step in self:
            for task in step.tasks:
                problem = task.read_problem(name) if name not in task.artifacts else None
                if problem is not None:
                    raise ArtifactReadError(problem)
            values = [t.artifacts[name] for t in step.tasks if name in t.artifacts]
            if values:
                out[step.name] = values[0] if len(step.tasks) == 1 else values
        return out

    def diff(self, step_a: str, step_b: str) -> ArtifactDiff:
        from .compare import artifacts_equal

        a, b = self[step_a].task.artifacts, self[step_b].task.artifacts
        return ArtifactDiff(
            added={k: b[k] for k in b.keys() - a.keys()},
            removed={k: a[k] for k in a.keys() - b.keys()},
            changed={
                k: (a[k], b[k])
                for k in a.keys() & b.keys()
                if k != "name" and not artifacts_equal(a[k], b[k])
            },
        )


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
    from .flows import import_paths

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
    """Read everything a run wrote. The caller holds the sandbox's client scope."""
    from metaflow import Run

    with main_module_as(flow.module):
        run = Run(f"{flow.name}/{run_id}", _namespace_check=False)
        present = {step.id: step for step in run}
        steps = {
            name: StepResult(
                name,
                sorted_tasks(
                    [read_task(t, cards=has_cards(flow.flow_class, name)) for t in present[name]]
                ),
            )
            for name in flow.step_names
            if name in present
        }
    # A run is successful if its end step is (``Run.successful``), finished
    # if its end step is (``Run.finished``).
    end = steps.get(metaflow_seam.end_step(flow.flow_class._graph))
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
    if not successful:
        result.failure = find_failure(result)
        if result.failure is not None:
            result.failure = _blame_worker(result, result.failure)
    unreadable = read_failure(result)
    if unreadable is not None and (
        result.failure is None
        or (result.failure.exception_type is None and _is_unreadable(result, result.failure.task))
    ):
        # What Metaflow saved and this process cannot read back is the run's
        # failure (``check=True`` raises), though Metaflow's flags stay as the
        # client has them; the run is still returned with every task. A task
        # that failed with an exception stays the run's failure.
        result.failure = unreadable
    return result


def read_failure(run: FlowRun) -> Failure | None:
    """The first task (in graph order) whose results could not be read back."""
    for task in run.tasks:
        problem = task.read_problem()
        if problem is not None:
            return Failure(
                step=task.step,
                task=task.pathspec,
                exception_type=ArtifactReadError.__name__,
                message=f"the task ran, but what it saved cannot be read back:\n{problem}",
                stdout=task.stdout,
                stderr=task.stderr,
            )
    return None


def _blame_worker(run: FlowRun, failure: Failure) -> Failure:
    """A control task of an unbounded foreach fails when one of its workers
    does (``Subprocess failed, return code 1``); the worker's own exception is
    the one that says why."""
    control = next((t for t in run.tasks if t.pathspec == failure.task and t.control), None)
    if control is None:
        return failure
    workers = [t for t in run[control.step].tasks if not t.control and not t.successful]
    if not workers:
        return failure
    step = StepResult(control.step, workers)
    return find_failure(FlowRun(run.flow_name, run.run_id, False, {step.name: step})) or failure


def _is_unreadable(run: FlowRun, pathspec: str | None) -> bool:
    return any(t.pathspec == pathspec and not t.readable for t in run.tasks)


@dataclass
class StoredAttempt:
    """What one task attempt stored: every artifact, Metaflow's own
    (``_transition``, ``_foreach_num_splits``...) too, and each one's content key."""

    values: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    #: Artifacts that did not load: name -> the problem.
    problems: dict[str, str] = field(default_factory=dict)


def read_task(task: Task, *, cards: bool = False) -> TaskResult:
    return read_task_stored(task, cards=cards)[0]


def read_task_stored(task: Task, *, cards: bool = False) -> tuple[TaskResult, StoredAttempt]:
    """The task (its last attempt, with every attempt in ``attempts``) and
    what its last attempt stored; with ``cards``, its cards too (a step
    without ``@card`` has none, and looking costs a listing per task). Never
    raises for what the task wrote: a task that cannot be read is returned
    with the problem, so that the run it belongs to is not lost."""
    from metaflow import Task

    try:
        attempts = task.current_attempt + 1
    except Exception as exc:
        return _unreadable_task(task.pathspec, exc), StoredAttempt()
    read = []
    for n in range(attempts):
        try:
            # A task named with its attempt reads that attempt's metadata only, and
            # does not look up which attempt is the latest each time it is asked.
            read.append(_read_attempt(Task(task.pathspec, attempt=n, _namespace_check=False)))
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


def has_cards(flow_class: type, step: str) -> bool:
    """Whether ``step`` has a ``@card`` decorator: the graph says so for free."""
    return any(deco.name == "card" for deco in flow_class._graph[step].decorators)


def read_cards(task: Task) -> list[Card]:
    """The task's cards as ``metaflow.cards.get_cards`` finds them, each one's
    HTML read now: a ``Card`` reads it lazily, and the results outlive the
    sandbox. A task whose card was not rendered (the task failed, or
    ``@card(save_errors=False)`` and rendering failed) has none, as the client
    has none."""
    from metaflow.cards import get_cards
    from metaflow.plugins.cards.exception import CardNotPresentException

    try:
        found = list(get_cards(task))
    except CardNotPresentException:
        return []
    for card in found:
        card.get()  # kept by the Card
    return found


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


def _read_attempt(task: Task) -> tuple[TaskResult, StoredAttempt]:
    from metaflow.unbounded_foreach import CONTROL_TASK_TAG

    # The metadata is read once: it says where the artifacts are, and it is
    # what the logs are read with.
    meta = task.metadata_dict
    stored = _load_stored(task, meta)
    values = stored.values
    stack = values.get("_foreach_stack") or []
    successful = bool(values.get("_success", False))
    finished = bool(values.get("_task_ok", False))
    result = TaskResult(
        pathspec=task.pathspec,
        step=task.parent.id,
        # What the client lists as the task's artifacts: Metaflow's own
        # (``_``-prefixed) ones are not among them.
        artifacts={k: v for k, v in values.items() if not k.startswith("_")},
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
        unreadable=stored.problems,
        workers=[
            f"{task.pathspec.split('/')[0]}/{path}"
            for path in values.get("_control_mapper_tasks") or []
        ],
    )
    if stored.problems:
        result.artifacts = _PartlyRead(result.artifacts, result)
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


def _load_stored(task: Task, meta: Mapping[str, str]) -> StoredAttempt:
    """What ``task`` (an attempt) stored, read with one ``TaskDataStore``
    where its metadata says it wrote, as a task reads its inputs; nothing if
    the attempt never started or did not end (it was killed).

    The client's ``DataArtifact.data`` would copy each value into its file
    cache first, a directory and a file per artifact: most of the cost of
    reading a run.
    """
    from metaflow.datastore import FlowDataStore
    from metaflow.exception import MetaflowException
    from metaflow.includefile import IncludedFile
    from metaflow.plugins import DATASTORES

    storage = [d for d in DATASTORES if meta.get("ds-type") == d.TYPE]
    if not storage or not meta.get("ds-root"):
        return StoredAttempt()
    flow_name, run_id, step_name, task_id = task.pathspec.split("/")
    flow_store = FlowDataStore(flow_name, storage_impl=storage[0], ds_root=meta["ds-root"])
    try:
        store = flow_store.get_task_datastore(
            run_id, step_name, task_id, attempt=task.current_attempt
        )
    except MetaflowException:
        return StoredAttempt()
    keys = dict(store.items())
    stored = StoredAttempt(keys=keys)
    try:
        loaded = list(store.load_artifacts(list(keys)))
    except Exception:
        # One artifact spoils the batch: load each on its own to keep the
        # others and name the ones that fail.
        loaded = []
        for name in keys:
            try:
                loaded += store.load_artifacts([name])
            except Exception as exc:
                missing = _missing_content(storage[0], meta["ds-root"], flow_name, keys[name])
                stored.problems[name] = missing or _problem(exc)
    # As ``DataArtifact.data`` does: an ``IncludeFile`` reads as its contents.
    for name, value in loaded:
        if isinstance(value, IncludedFile):
            try:
                value = value.decode(name)
            except Exception as exc:
                stored.problems[name] = _problem(exc)
                continue
        stored.values[name] = value
    return stored


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
        task.read_error is not None or "_foreach_stack" in task.unreadable,
        tuple(-1 if index is None else index for index in indices),
        number,
        task.id,
    )


def find_failure(run: FlowRun) -> Failure | None:
    """The first task in graph order that failed; if every task finished, the
    last one whose exception ``@catch`` caught (the end step's, when that is
    why the run is not successful), described as caught."""
    caught: TaskResult | None = None
    for task in run.tasks:
        if task.successful:
            continue
        if task.caught is not None:
            caught = task
            continue
        exc = task.exception
        if exc is not None and getattr(exc, "type", None):
            exc_type = exc.type.removeprefix("builtins.")
            return Failure(
                step=task.step,
                task=task.pathspec,
                exception_type=exc_type,
                message=exc.exception,
                traceback=user_traceback(exc.stacktrace or ""),
                stdout=task.stdout,
                stderr=task.stderr,
            )
        unpicklable = _line_starting(task.stderr, UNPICKLABLE_PREFIX)
        if unpicklable:
            return Failure(
                step=task.step,
                task=task.pathspec,
                exception_type="UnpicklableArtifactException",
                message=unpicklable,
                stdout=task.stdout,
                stderr=task.stderr,
            )
        return Failure(
            step=task.step,
            task=task.pathspec,
            exception_type=None,
            message=_last_line(task.stderr) or "the task ended without reporting an exception",
            stdout=task.stdout,
            stderr=task.stderr,
        )
    if caught is not None and caught.caught is not None:
        return Failure(
            step=caught.step,
            task=caught.pathspec,
            exception_type=caught.caught.type,
            message=caught.caught.message,
            traceback=caught.caught.traceback,
            stdout=caught.stdout,
            stderr=caught.stderr,
            caught=True,
        )
    return None


_MISSING_FILE = re.compile(r"No such file or directory: (['\"])(.+?)\1")


def missing_file_hint(failure: Failure) -> str | None:
    """One line for a step that could not find a file by a relative path.

    Under ``python flow.py run`` the working directory is wherever the user
    started it, usually beside the flow; artflow's runs start in the sandbox,
    so a path relative to the flow's directory is looked for there instead.
    """
    if failure.exception_type != "FileNotFoundError":
        return None
    match = _MISSING_FILE.search(failure.message)
    if match is None or os.path.isabs(match.group(2)):
        return None
    name = match.group(2)
    return (
        f"hint: steps run with the sandbox as their working directory, so {name!r} is looked "
        "for there; refer to a file beside the flow as "
        f"os.path.join(os.path.dirname(__file__), {name!r})"
    )


def user_traceback(text: str) -> str:
    """A step's traceback without the frames of Metaflow's own task machinery."""
    lines = text.splitlines()
    out: list[str] = []
    skip = False
    for line in lines:
        if line.startswith("  File "):
            skip = "/metaflow/" in line
        elif not line.startswith(" "):
            skip = False  # "Traceback ..." and the exception line itself
        if not skip:
            out.append(line)
    return "\n".join(out)


def _line_starting(text: str, prefix: str) -> str | None:
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line.strip()
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
