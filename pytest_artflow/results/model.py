"""The result model: a run, its steps and tasks, read into plain objects
(``read.py`` fills them). Artifact values load the first time they are asked
for (``LazyValues``), and what is still to load when the sandbox is removed
loads just before, so that values stay readable after the sandbox is gone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import ArtflowError, ArtifactReadError, UnknownStepError
from .provenance import remember

if TYPE_CHECKING:
    from metaflow import Run
    from metaflow.plugins.cards.card_client import Card

    from ..flows import FlowRef
    from ..sandbox import Sandbox
    from ..snapshot import RunSnapshot, StepSnapshot, TaskSnapshot


class _PartlyRead(dict[str, Any]):
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


#: Loads the named artifacts of one task attempt: (values, problems by name).
Loader = Callable[[list[str]], tuple[dict[str, Any], dict[str, str]]]


class LazyValues:
    """The values of a task's artifacts, each loaded the first time it is
    asked for: reading a run costs its metadata and listings, not unpickling
    every value of every task. What is still to load when the sandbox is
    removed is loaded just before (``Sandbox.settle``), so that values stay
    readable afterwards."""

    def __init__(self, names: list[str], load: Loader | None) -> None:
        #: Every artifact the client lists for the task, in stored order.
        self.names = names
        self.loaded: dict[str, Any] = {}
        #: Artifacts that were tried and did not load: name -> the problem.
        self.problems: dict[str, str] = {}
        self._load = load

    @property
    def pending(self) -> list[str]:
        return [n for n in self.names if n not in self.loaded and n not in self.problems]

    def fetch(self, names: Iterable[str]) -> None:
        """Load those of ``names`` not tried yet."""
        todo = [n for n in names if n not in self.loaded and n not in self.problems]
        if not todo or self._load is None:
            return
        values, problems = self._load(todo)
        self.loaded.update(values)
        self.problems.update(problems)
        if not self.pending:
            self._load = None  # nothing left: let go of the datastore

    def fetch_all(self) -> None:
        self.fetch(self.names)


#: What a mapping would offer; ``task.artifacts`` is the dict of every artifact.
_MAPPING_METHODS = frozenset({"keys", "values", "items", "get"})


class ArtifactData:
    """``task.data.some_data``: attribute access to a task's artifacts, as
    Metaflow's client gives it, and ``data["name"]``, ``in``, iteration over
    the names. Not a mapping, so that every name, ``values`` or ``items`` too,
    reads the artifact of that name. Reading one artifact loads that one
    only."""

    def __init__(
        self, owner: str, task: TaskResult, on_read: Callable[[str, Any], None] | None
    ) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_task", task)
        object.__setattr__(self, "_on_read", on_read)

    def __getattr__(self, name: str) -> Any:
        task: TaskResult = object.__getattribute__(self, "_task")
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            value = task._value(name)
        except ArtifactReadError:
            raise
        except KeyError:
            known = ", ".join(sorted(task._names())) or "none"
            hint = (
                f"; for a dict of every artifact use .artifacts, not .data.{name}"
                if name in _MAPPING_METHODS
                else ""
            )
            raise AttributeError(
                f"{self._owner} has no artifact {name!r} (its artifacts: {known}){hint}"
            ) from None
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
        return name in self._task._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._task._names())

    def __len__(self) -> int:
        return len(self._task._names())

    def __dir__(self) -> list[str]:
        return sorted(self._task._names())

    def __repr__(self) -> str:
        return f"<artifacts of {self._owner}: {', '.join(self._task._names())}>"


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
    """One task (one attempt of it): its artifacts, output and status.

    ``artifacts`` is a plain dict of every artifact; when the task was read
    with its values still to load (``lazy``), asking for ``artifacts`` (or
    ``unreadable``, ``readable``, the repr) loads them all, while ``data.x``
    and ``run.trace("x")`` load only ``x``."""

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
    #: The values still to load, if the task was read lazily (``read.py``).
    lazy: LazyValues | None = field(default=None, repr=False, compare=False)

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

    def _load_all(self) -> None:
        """Load every value not loaded yet: ``artifacts`` and ``unreadable``
        become what an eager read would have made them."""
        lazy = self.lazy
        if lazy is None:
            return
        lazy.fetch_all()
        self.lazy = None
        # Values read before (through ``data``) stay the same objects.
        values = {n: lazy.loaded[n] for n in lazy.names if n in lazy.loaded}
        self._own_problems.update(lazy.problems)
        self.artifacts = _PartlyRead(values, self) if self._own_problems else values
        if lazy.problems:
            self._found_problems()

    def _names(self) -> list[str]:
        """The task's artifacts' names, without loading any value (an
        artifact that turned out not to load is not among them)."""
        lazy = self.lazy
        if lazy is None:
            return list(self.artifacts)
        return [n for n in lazy.names if n not in lazy.problems]

    def _value(self, name: str) -> Any:
        """Artifact ``name``, loading it (only it) if it is not yet: raises
        ``ArtifactReadError`` if it does not load, ``KeyError`` if there is none."""
        lazy = self.lazy
        if lazy is None:
            return self.artifacts[name]
        if name not in lazy.names:
            problem = self.read_problem(name, load=False)
            if problem is not None:
                raise ArtifactReadError(problem)
            raise KeyError(name)
        if name not in lazy.loaded and name not in lazy.problems:
            lazy.fetch([name])
            if name in lazy.problems:
                self._found_problems()
        if name in lazy.problems:
            raise ArtifactReadError(self._problem_of(name, lazy.problems[name]))
        return lazy.loaded[name]

    def _found_problems(self) -> None:
        """An artifact turned out not to load: the run's failure says so now,
        as it would have if every value had been read with the run."""
        if self.run is not None:
            self.run._note_unreadable(load=False)

    def read_problem(self, name: str | None = None, *, load: bool = True) -> str | None:
        """What went wrong reading artifact ``name`` (any, if ``None``), as a
        message naming the step, the task and the problem; ``None`` if nothing
        did. With ``load=False``, only what is known without loading more."""
        if self.read_error is not None:
            where = f"of step {self.step!r} (task {self.pathspec})"
            what = f"artifact {name!r}" if name else "the task"
            return f"{what} {where} could not be read back: {self.read_error}"
        lazy = self.lazy
        if load and lazy is not None:
            if name is None:
                self._load_all()
            elif name in lazy.names and name not in lazy.loaded and name not in lazy.problems:
                lazy.fetch([name])
                if name in lazy.problems:
                    self._found_problems()
        problems = self._problems_known()
        if name is None:
            name = next(iter(problems), None)
        if name is None or name not in problems:
            return None
        return self._problem_of(name, problems[name])

    def _problem_of(self, name: str, problem: str) -> str:
        where = f"of step {self.step!r} (task {self.pathspec})"
        return f"artifact {name!r} {where} was saved but does not load back: {problem}"

    @property
    def _own_problems(self) -> dict[str, str]:
        """The problems known at read time, and those of ``load``."""
        problems: dict[str, str] = self.__dict__["_unreadable_own"]
        return problems

    def _problems_known(self) -> dict[str, str]:
        """The artifacts known not to load, without loading more."""
        lazy = self.lazy
        if lazy is None or not lazy.problems:
            return self._own_problems
        return {**self._own_problems, **lazy.problems}

    def snapshot(self, *, exclude: Iterable[str] = ()) -> TaskSnapshot:
        """Every artifact of the task by name, as a deterministic value for
        ``assert task.snapshot() == snapshot`` (syrupy); ``exclude`` names
        ``step.artifact`` patterns to leave out."""
        from ..snapshot import task_snapshot

        return task_snapshot(self, exclude)

    @property
    def data(self) -> ArtifactData:
        # Remember what a test reads, so a failing assert can show the trace.
        on_read = partial(remember, self.run, self.step) if self.run else None
        return ArtifactData(f"task {self.pathspec}", self, on_read)


def _get_artifacts(self: TaskResult) -> dict[str, Any]:
    self._load_all()
    return self.__dict__["_artifacts"]  # type: ignore[no-any-return]


def _set_artifacts(self: TaskResult, value: dict[str, Any]) -> None:
    self.__dict__["_artifacts"] = value


def _get_unreadable(self: TaskResult) -> dict[str, str]:
    self._load_all()
    return self._own_problems


def _set_unreadable(self: TaskResult, value: dict[str, str]) -> None:
    self.__dict__["_unreadable_own"] = value


# Properties over the dataclass's fields (its ``__init__`` assigns through
# them): reading ``artifacts`` or ``unreadable`` loads what is still to load.
TaskResult.artifacts = property(_get_artifacts, _set_artifacts)  # type: ignore[assignment]
TaskResult.unreadable = property(_get_unreadable, _set_unreadable)  # type: ignore[assignment]


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

    def snapshot(self, *, exclude: Iterable[str] = ()) -> StepSnapshot:
        """The step's tasks' snapshots in index order (``TaskResult.snapshot``)."""
        from ..snapshot import step_snapshot

        return step_snapshot(self, exclude)


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

    def _read_failure(self, *, load: bool = True) -> Failure | None:
        """The first task (in graph order) whose results could not be read
        back; with ``load=False``, as far as is known without loading more."""
        for task in self.tasks:
            problem = task.read_problem(load=load)
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

    def _note_unreadable(self, *, load: bool = True) -> None:
        """Make what cannot be read back the run's failure (``check=True``
        raises), though Metaflow's flags stay as the client has them; the run
        keeps every task. A task that failed with an exception stays the
        run's failure. With ``load=False``, only what is known without
        loading values (a task that could not be read, Metaflow's own
        artifacts, values already tried); with ``load``, every value is
        loaded first (the ``--artflow`` item's check)."""
        if load:
            for task in self.tasks:
                task._load_all()
        unreadable = self._read_failure(load=load)
        if unreadable is None:
            return
        failure = self.failure
        if failure is None or (
            failure.exception_type is None
            and any(
                t.pathspec == failure.task and t.read_problem(load=load) is not None
                for t in self.tasks
            )
        ):
            self.failure = unreadable

    def _read_problem_known(self) -> str | None:
        """The first problem reading the run back, as far as is known without
        loading more values (``readable`` loads them all to say)."""
        for task in self.tasks:
            problem = task.read_problem(load=False)
            if problem is not None:
                return problem
        return None

    @property
    def client(self) -> Run:
        """Metaflow's own ``Run`` object (valid while the test's sandbox is active)."""
        from ..metaflow_seam import client_run

        return client_run(self.pathspec)

    def trace(self, name: str) -> dict[str, Any]:
        """The value of artifact ``name`` at every step that has it; a step with
        several tasks maps to the list of their values in task order."""
        out: dict[str, Any] = {}
        for step in self:
            values = []
            for task in step.tasks:
                try:
                    values.append(task._value(name))
                except ArtifactReadError:
                    raise
                except KeyError:
                    continue
            if values:
                out[step.name] = values[0] if len(step.tasks) == 1 else values
        return out

    def snapshot(self, *, exclude: Iterable[str] = ()) -> RunSnapshot:
        """What the run produced, as a deterministic value for ``assert
        run.snapshot() == snapshot`` (syrupy): steps in graph order, their
        tasks in index order, each task's artifacts by name; without run and
        task ids, timestamps or sandbox paths. ``exclude`` names
        ``step.artifact`` patterns to leave out (``"train.started_at"``,
        ``"*.seed"``)."""
        from ..snapshot import run_snapshot

        return run_snapshot(self, exclude)

    def diff(self, step_a: str, step_b: str) -> ArtifactDiff:
        from ..compare import artifacts_equal

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
