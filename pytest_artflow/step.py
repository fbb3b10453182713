"""``artflow_step``: run ONE step of a flow, a unit test of a step.

Metaflow runs a step with its ``step`` command, which reads the step's inputs
from the tasks named by ``--input-paths``. A single step therefore needs only
those parent tasks: they are written into a scratch datastore of their own
(``<sandbox>/steps/<n>/.metaflow``), made up from the test's ``inputs`` (a step
"from scratch") or copied from an earlier run with ``inputs`` overriding some
artifacts (a "re-run"), and then Metaflow's real ``step`` command runs against
them through the engine like any task of a run. The sandbox's own datastore,
its runs and ``latest_run`` are never written.

Two halves live here:

* ``ArtflowStep`` (the fixture object, in the pytest process) turns the
  test's arguments into a ``StepJob`` (which parent tasks, with what), runs
  it as one engine job and reads the task back as a ``TaskResult``.
* ``prepare_job`` runs inside that job's process, just before Metaflow's CLI
  (``engines/launch.py`` calls it when ``ARTFLOW_STEP_JOB`` is set): it lets
  Metaflow's ``init`` command write the Parameters, writes the parent tasks
  with Metaflow's ``TaskDataStore`` and captures the step's stdout/stderr.

Values travel to the job with plain ``pickle``, not cloudpickle: the step's
process stores every artifact it reads back with Metaflow's own (plain pickle)
serializer, so a value plain pickle cannot handle (a lambda, a class pickled by
value) would fail there anyway, later and less clearly; it is refused up front
with the input's name instead. Classes and functions of the flow's own file are
shipped as ``__main__.X``, which is what they are in a real run.

This module is imported by the job's process: it imports only the standard
library at the top.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import os
import pickle
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import metaflow_seam
from .errors import ArtflowError, FlowRunFailed

if TYPE_CHECKING:
    from .engines import RunJob
    from .flows import FlowRef
    from .result import FlowRun, StepResult, TaskResult
    from .runner import ArtflowRunner, RunConfig

#: Set in a job's environment: the path of its pickled ``StepJob``.
JOB_ENV = "ARTFLOW_STEP_JOB"
#: Ids of the scratch run's tasks. Not numbers (nor is the run's): Metaflow's
#: ``step`` and ``init`` commands register such ids themselves (numbers are what
#: its runtime hands out, and registers when it does).
PARAMS_TASK = "params"
STEP_TASK = "step"
#: Holds what ``self.input`` returns when the test gives ``input=``.
INPUT_ARTIFACT = "_artflow_input"

_Frame = tuple[str, str, int, int, Any]  # ForeachFrame(step, var, num_splits, index, value)


# --------------------------------------------------------------------------
# What the pytest process sends to the job's process
# --------------------------------------------------------------------------


@dataclass
class ParentTask:
    """One task the step reads as input, written before the step runs."""

    step: str
    task_id: str
    #: ``run/step/task/attempt`` of a task in ``StepJob.origin_root`` to copy, or
    #: ``None`` for a task made up from the ``_parameters`` task.
    origin: str | None = None
    #: Artifacts to set (over the copied or made-up ones), pickled one by one.
    values: dict[str, bytes] = field(default_factory=dict)
    #: Metaflow's bookkeeping artifacts to set (plain values).
    bookkeeping: dict[str, Any] = field(default_factory=dict)
    #: The foreach stack to set, as ``ForeachFrame`` fields; ``None`` keeps the origin's.
    frames: list[_Frame] | None = None


@dataclass
class StepJob:
    flow_name: str
    run_id: str
    #: The scratch datastore (``.../.metaflow``) the step's run lives in.
    root: str
    parents: list[ParentTask]
    #: Metaflow arguments of ``init`` (writes ``_parameters``); ``None``: no init.
    init_args: list[str] | None
    #: Parameters whose values ``init`` gives when parents are copied.
    parameter_names: list[str]
    #: The datastore ``origin`` tasks are read from (the sandbox's).
    origin_root: str | None
    #: Where the job writes the parents' artifact keys (also: "parents are ready").
    report: str
    stdout: str
    stderr: str


# --------------------------------------------------------------------------
# The job's process
# --------------------------------------------------------------------------


def prepare_job(job_file: str, flow_class: type, entrypoint: list[str]) -> None:
    """Write the step's input tasks, then let the caller run Metaflow's ``step``."""
    with open(job_file, "rb") as f:
        job: StepJob = pickle.load(f)
    if job.init_args is not None:
        _warm_caches()
        _run_init(flow_class, job.init_args, entrypoint)

    from metaflow.datastore import FlowDataStore
    from metaflow.plugins.datastores.local_storage import LocalStorage

    # Datastores with explicit roots: nothing global (LocalStorage.datastore_root) changes.
    store = FlowDataStore(job.flow_name, storage_impl=LocalStorage, ds_root=job.root)
    origin = (
        FlowDataStore(job.flow_name, storage_impl=LocalStorage, ds_root=job.origin_root)
        if job.origin_root
        else None
    )
    params = (
        store.get_task_datastore(job.run_id, "_parameters", PARAMS_TASK)
        if job.init_args is not None
        else None
    )
    written = [_write_parent(store, origin, params, job, parent) for parent in job.parents]
    if not job.parents:  # the start step reads the _parameters task itself
        written = [dict(params.items())]
    with open(job.report, "w", encoding="utf-8") as f:
        json.dump({"parents": written}, f)
    _capture_output(job.stdout, job.stderr)


def _warm_caches() -> None:
    """Fill what Metaflow computes once per process (its version and the flow's
    git information, a few ``git`` processes) before ``init`` forks, so that
    ``init`` and the ``step`` after it share one computation."""
    from metaflow import metaflow_git, metaflow_version

    metaflow_version.get_version()
    metaflow_git.get_repository_info(path=os.path.dirname(os.path.abspath(sys.argv[0])))


def _run_init(flow_class: type, args: list[str], entrypoint: list[str]) -> None:
    """Metaflow's ``init`` in a forked child: it sets up Metaflow's CLI state,
    which the ``step`` command that follows in this process must set up anew."""
    from metaflow import cli

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit
        code = 1
        try:
            code = cli.main(flow_class(use_cli=False), args=args, entrypoint=entrypoint) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(code)


def _write_parent(store: Any, origin: Any, params: Any, job: StepJob, parent: ParentTask) -> dict:
    from metaflow.tuple_util import ForeachFrame

    out = store.get_task_datastore(job.run_id, parent.step, parent.task_id, attempt=0, mode="w")
    out.init_task()
    if parent.origin is not None:
        run_id, step, task_id, attempt = parent.origin.split("/")
        base = origin.get_task_datastore(run_id, step, task_id, attempt=int(attempt))
        out.passdown_partial(base, [name for name, _ in base.items()])
        out.transfer_artifacts(base)
        if params is not None:
            out.passdown_partial(params, job.parameter_names)
    else:
        out.passdown_partial(params, [name for name, _ in params.items()])
    artifacts = dict(parent.bookkeeping)
    if parent.frames is not None:
        artifacts["_foreach_stack"] = [ForeachFrame(*frame) for frame in parent.frames]
    for name, blob in parent.values.items():
        try:
            artifacts[name] = pickle.loads(blob)
        except Exception as exc:
            sys.exit(
                f"artflow_step: the value of {name!r} cannot be loaded in the step's process "
                f"(where Metaflow runs the flow file as __main__): {type(exc).__name__}: {exc}"
            )
    out.save_artifacts(iter(artifacts.items()), len_hint=len(artifacts))
    out.done()
    return dict(out.items())


def _capture_output(stdout: str, stderr: str) -> None:
    """The step's own output into files: the job's output mixes both streams."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    # Line-buffered writers on the new descriptors, whatever sys.stdout was.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115


def main_global(qualname: str) -> Any:
    """``__main__.<qualname>`` in the process that unpickles: the flow file's module."""
    return functools.reduce(getattr, qualname.split("."), sys.modules["__main__"])


# --------------------------------------------------------------------------
# The pytest process
# --------------------------------------------------------------------------


class _FlowFilePickler(pickle.Pickler):
    """Pickles the flow file's own classes and functions as ``__main__`` ones."""

    def __init__(self, file: io.BytesIO, module: ModuleType) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.module = module

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or callable(obj):
            qualname = getattr(obj, "__qualname__", None)
            if (
                isinstance(qualname, str)
                and getattr(obj, "__module__", None) == self.module.__name__
                and "<locals>" not in qualname
            ):
                try:
                    found = functools.reduce(getattr, qualname.split("."), self.module)
                except AttributeError:
                    found = None
                if found is obj:
                    return main_global, (qualname,)
        return NotImplemented


def ship(name: str, value: Any, module: ModuleType | None) -> bytes:
    """``value`` pickled for the step's process, or a clear error naming the input.
    Classes of ``module`` (if any) are ``__main__`` ones in that process."""
    buffer = io.BytesIO()
    try:
        if module is None:
            pickle.dump(value, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            _FlowFilePickler(buffer, module).dump(value)
    except Exception as exc:
        raise ArtflowError(
            f"{name} cannot become an artifact: Metaflow stores artifacts with pickle, "
            f"which fails on it ({type(exc).__name__}: {exc})"
        ) from None
    return buffer.getvalue()


@dataclass
class _Plan:
    """The parents, the split index and how to explain the inputs."""

    parents: list[ParentTask]
    split_index: int | None = None
    #: The artifact names the step was given, for the hint on a missing one.
    given: set[str] = field(default_factory=set)
    #: Per parent: the artifacts known here (a re-run's) and the shipped ones,
    #: shown as the steps before the step in the result's trace.
    shown: list[tuple[dict[str, Any], dict[str, bytes]]] = field(default_factory=list)


class ArtflowStep:
    """The ``artflow_step`` fixture: runs one step in the test's sandbox."""

    def __init__(self, runner: ArtflowRunner) -> None:
        self.runner = runner
        self._count = itertools.count(1)

    def __call__(
        self,
        flow_or_run: object,
        step: str,
        *,
        inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        input: Any = None,
        index: int | Sequence[int] | None = None,
        check: bool = True,
        engine: str | None = None,
        timeout: float | None = None,
        params: Mapping[str, Any] | None = None,
        **parameters: Any,
    ) -> TaskResult:
        """Run ``step`` of ``flow_or_run`` (a flow as ``artflow_run`` takes it,
        or a ``FlowRun`` whose step is re-run) and return its task.

        ``inputs``: what the step reads. From scratch, exactly the artifacts it
        sees; in a re-run, the ones that replace the run's. By step type: a
        plain step ``{artifact: value}``, a static join ``{branch_step:
        {artifact: value}}``, a foreach join a list of ``{artifact: value}``,
        one per split. ``input``: what ``self.input`` returns in a foreach;
        ``index``: its position (default 0), or a tuple of positions, outermost
        first, in nested foreaches. Keyword arguments are Parameter values.
        """
        from .result import FlowRun

        origin = flow_or_run if isinstance(flow_or_run, FlowRun) else None
        if origin is not None and origin.flow is None:
            raise ArtflowError(f"{origin.pathspec} does not say which flow it ran")
        config = self.runner.configure(
            origin.flow.flow_class if origin is not None else flow_or_run,
            engine=engine,
            timeout=timeout,
            params=params,
            **parameters,
        )
        node = _node(config.flow, step)
        shaper = _Shaper(config.flow, node, input, index)
        plan = shaper.from_scratch(inputs) if origin is None else shaper.rerun(origin, inputs)
        scratch = self._scratch()
        run_job = self._job(config, node.name, plan, scratch, rerun=origin is not None)
        outcome = self.runner.engines.get(config.engine).run(run_job)
        return self._result(config, node.name, scratch, plan, outcome, check)

    def _scratch(self) -> Path:
        """A new scratch directory for one step, inside the sandbox."""
        while True:
            scratch = self.runner.sandbox.root / "steps" / str(next(self._count))
            try:
                scratch.mkdir(parents=True)
            except FileExistsError:  # another ArtflowStep on this sandbox made it
                continue
            return scratch

    def _job(self, config: RunConfig, step: str, plan: _Plan, scratch: Path, rerun: bool) -> RunJob:
        """Metaflow's ``step`` command for the step, in the scratch datastore,
        with the ``StepJob`` that prepares its inputs beside it."""
        flow, run_id = config.flow, _run_id(scratch)
        root = str(scratch / ".metaflow")
        top = ["--quiet", "--metadata", "local", "--datastore", "local", "--datastore-root", root]
        top += flow.config_args(config.config, config.config_value, self.runner.search_dirs)
        init = ["--no-pylint", *top, "init", "--run-id", run_id, "--task-id", PARAMS_TASK]
        job = StepJob(
            flow_name=flow.name,
            run_id=run_id,
            root=root,
            parents=plan.parents,
            # A re-run's Parameters come from the run, unless the test gives some.
            init_args=(
                [*init, *flow.parameter_args(config.parameters)]
                if not rerun or config.parameters
                else None
            ),
            parameter_names=[attr for attr, _ in flow.flow_class._get_parameters()],
            origin_root=str(self.runner.sandbox.datastore) if rerun else None,
            report=str(scratch / "parents.json"),
            stdout=str(scratch / "stdout.txt"),
            stderr=str(scratch / "stderr.txt"),
        )
        job_file = scratch / "job.pickle"
        job_file.write_bytes(pickle.dumps(job))

        if plan.parents:
            input_paths = ",".join(f"{run_id}/{p.step}/{p.task_id}" for p in plan.parents)
        else:  # the start step reads the _parameters task
            input_paths = f"{run_id}/_parameters/{PARAMS_TASK}"
        args = [*top, "step", step, "--run-id", run_id, "--task-id", STEP_TASK]
        args += ["--input-paths", input_paths]
        if plan.split_index is not None:
            args += ["--split-index", str(plan.split_index)]
        run_job = self.runner.job(config, args)
        run_job.cwd = scratch
        # What Metaflow's runtime adds to a task's environment, and no runtime
        # runs here: @environment's vars (its runtime_step_cli). The other
        # decorators with that hook run remotely (removed for tests) or are
        # @parallel (refused).
        for deco in flow.flow_class._graph[step].decorators:
            if deco.name == "environment":
                run_job.env.update({k: str(v) for k, v in deco.attributes["vars"].items()})
        run_job.env.update(
            {
                JOB_ENV: str(job_file),
                "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(scratch),
                "METAFLOW_DATASTORE_SYSROOT_SPIN": str(scratch),
            }
        )
        return run_job

    def _result(
        self,
        config: RunConfig,
        step: str,
        scratch: Path,
        plan: _Plan,
        outcome: Any,
        check: bool,
    ) -> TaskResult:
        from .result import FlowRun, StepResult, find_failure
        from .runner import describe_failure, start_failure, timeout_failure

        flow, run_id = config.flow, _run_id(scratch)
        report = scratch / "parents.json"
        if not report.exists():  # the inputs were not written: Metaflow's words why
            if outcome.timed_out:
                raise FlowRunFailed(
                    f"step {step!r} of {flow.name} did not start within {config.timeout} s"
                )
            raise FlowRunFailed(
                start_failure(config, outcome.output, False).replace(
                    "could not start", f"could not start step {step!r}", 1
                )
            )
        read = _read_step(flow, scratch, f"{flow.name}/{run_id}/{step}/{STEP_TASK}")
        stdout = _read_text(scratch / "stdout.txt")
        stderr = _read_text(scratch / "stderr.txt")
        if read is None:
            detail = (stderr or outcome.output).strip() or "(no output)"
            raise FlowRunFailed(f"step {step!r} of {flow.name} did not start:\n{detail}")
        task, shas = read
        task.stdout, task.stderr = stdout, stderr
        for attempt in task.attempts:
            attempt.stdout, attempt.stderr = stdout, stderr
        parents = json.loads(report.read_text())["parents"]
        task.changed = frozenset(
            name
            for name, sha in shas.items()
            if name != "name" and not any(p.get(name) == sha for p in parents)
        )
        steps = _input_steps(flow, run_id, plan)
        steps[step] = StepResult(step, [task])
        run = FlowRun(
            flow_name=flow.name,
            run_id=run_id,
            successful=task.successful and outcome.returncode == 0 and not outcome.timed_out,
            step_results=steps,
            output=outcome.output,
            duration=outcome.duration,
            flow=flow,
        )
        for each in run.tasks:
            each.run = run
        if outcome.timed_out:
            run.failure = timeout_failure(run, config.timeout)
        elif not run.successful:
            run.failure = find_failure(run)
        if run.failure is not None:
            run.failure.message += _hint(run.failure, plan, step)
        if check and not run.successful:
            raise FlowRunFailed(describe_failure(run), run=run)
        return task


def _input_steps(flow: FlowRef, run_id: str, plan: _Plan) -> dict[str, StepResult]:
    """The parent tasks as the step saw them, so that the result's ``trace``
    (and a failing assert's explanation) shows each artifact before and after."""
    from .result import StepResult, TaskResult, main_module_as

    steps: dict[str, StepResult] = {}
    with main_module_as(flow.module):
        for parent, (known, shipped) in zip(plan.parents, plan.shown, strict=True):
            artifacts = {**known}
            artifacts.update(
                (name, pickle.loads(blob))
                for name, blob in shipped.items()
                if not name.startswith("_")
            )
            task = TaskResult(
                pathspec=f"{flow.name}/{run_id}/{parent.step}/{parent.task_id}",
                step=parent.step,
                artifacts=artifacts,
                stdout="",
                stderr="",
                successful=True,
                finished=True,
            )
            steps.setdefault(parent.step, StepResult(parent.step, [])).tasks.append(task)
    return steps


def _run_id(scratch: Path) -> str:
    """The scratch run's id, which says where it came from in failure messages."""
    return f"artflow_step-{scratch.name}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _read_step(
    flow: FlowRef, scratch: Path, pathspec: str
) -> tuple[TaskResult, dict[str, str]] | None:
    """The step's task, its transition and its artifacts' keys, read with
    Metaflow's client and datastore pointed at the scratch datastore."""
    from metaflow import Task
    from metaflow.exception import MetaflowNotFound

    from .result import has_cards, main_module_as, read_task_stored
    from .sandbox import Sandbox

    cards = has_cards(flow.flow_class, pathspec.split("/")[2])
    with Sandbox(scratch).client_scope(), main_module_as(flow.module):
        try:
            result, stored = read_task_stored(Task(pathspec, _namespace_check=False), cards=cards)
        except MetaflowNotFound:
            return None
    transition = stored.values.get("_transition")
    result.next_steps = list(transition[0]) if transition else []
    result.foreach_splits = stored.values.get("_foreach_num_splits")
    # The keys of the artifacts the client lists (not Metaflow's own).
    shas = {name: key for name, key in stored.keys.items() if not name.startswith("_")}
    return result, shas


_MISSING_ATTRIBUTE = re.compile(r"Flow \w+ has no attribute '(\w+)'")


def _hint(failure: Any, plan: _Plan, step: str) -> str:
    """Why a real run would have had the artifact the step missed."""
    if failure.exception_type != "AttributeError":
        return ""
    match = _MISSING_ATTRIBUTE.search(failure.message or "")
    if not match or match.group(1) in plan.given:
        return ""
    name = match.group(1)
    given = ", ".join(sorted(plan.given)) or "none"
    return (
        f"\n(artflow_step: step {step!r} was not given an artifact {name!r}, only: {given}; "
        f"give it with inputs={{{name!r}: ...}})"
    )


def _node(flow: FlowRef, step: str) -> Any:
    graph = flow.flow_class._graph
    if step not in graph:
        raise ArtflowError(
            f"{flow.name} has no step {step!r}; its steps: {', '.join(flow.step_names)}"
        )
    return graph[step]


class _Shaper:
    """Which parent tasks a step reads, and what they hold, from the flow's graph."""

    def __init__(self, flow: FlowRef, node: Any, input: Any, index: Any) -> None:
        self.flow = flow
        self.graph = flow.flow_class._graph
        self.node = node
        self.input = input
        self.index = index
        if node.parallel_step or any(self.graph[s].parallel_foreach for s in node.split_parents):
            raise ArtflowError(f"step {node.name!r}: @parallel steps are not supported")
        #: The foreach splits around the step (or, for a join, around its inputs).
        self.levels = [self.graph[s] for s in node.split_parents if self.graph[s].type == "foreach"]
        self.join_type = (
            self.graph[node.split_parents[-1]].type
            if node.type == "join" and node.split_parents
            else None
        )

    # -- shapes of what the test gave ---------------------------------------

    def _depth(self) -> int:
        """Foreach levels the step itself is in (what ``index=`` addresses)."""
        return len(self.levels) - (1 if self.join_type == "foreach" else 0)

    def _indices(self) -> list[int]:
        depth = self._depth()
        where = f"step {self.node.name!r}"
        if depth == 0:
            if self.index is not None or self.input is not None:
                raise ArtflowError(
                    f"{where} is not inside a foreach: index= and input= do not apply"
                )
            return []
        index = 0 if self.index is None else self.index
        if isinstance(index, int) and not isinstance(index, bool):
            indices = [0] * (depth - 1) + [index]
        elif isinstance(index, Sequence) and all(isinstance(i, int) for i in index):
            indices = list(index)
        else:
            raise ArtflowError(f"{where}: index= takes an int or a tuple of ints, not {index!r}")
        if len(indices) != depth or any(i < 0 for i in indices):
            raise ArtflowError(
                f"{where} is inside {depth} nested foreach(es) ("
                + ", ".join(self._describe(level) for level in self.levels[:depth])
                + f"): index= takes {depth} non-negative index(es), outermost first; got {index!r}"
            )
        return indices

    @staticmethod
    def _describe(level: Any) -> str:
        return f"'{level.name}' over {level.foreach_param!r}"

    def _check_names(self, values: Mapping[str, Any], where: str) -> None:
        if not isinstance(values, Mapping):
            raise ArtflowError(f"{where} must be a dict of artifact name to value, not {values!r}")
        for name in values:
            if not isinstance(name, str) or not name.isidentifier():
                raise ArtflowError(f"{where}: {name!r} is not a valid artifact name")
            if name.startswith("_") or name == "name":
                raise ArtflowError(
                    f"{where}: {name!r} is reserved by Metaflow and cannot be an input"
                )

    def _ship_input(self, shipped: dict[str, bytes], index: int) -> None:
        """``input=`` as the foreach variable Metaflow reads ``self.input`` from
        (``var[index]``), under a private name: the step sees no variable it
        was not given."""
        shipped[INPUT_ARTIFACT] = ship(
            "input", [None] * index + [self.input], self.flow.main_module
        )

    def _ship(self, values: Mapping[str, Any], where: str) -> dict[str, bytes]:
        self._check_names(values, where)
        return {k: ship(f"{where}[{k!r}]", v, self.flow.main_module) for k, v in values.items()}

    def _branches(self, inputs: Any, partial: bool = False) -> list[tuple[str, Mapping[str, Any]]]:
        """``(parent step, artifacts)`` per input of the step, in the order given
        (``partial``: a static join may name only some branches)."""
        node, where = self.node, f"step {self.node.name!r}"
        if self.join_type is None:
            if inputs is not None and not isinstance(inputs, Mapping):
                raise ArtflowError(
                    f"{where} is not a join: inputs= is a dict of artifact name to value"
                )
            parents = sorted(s for s in node.in_funcs if s != node.name) or sorted(node.in_funcs)
            return [(parents[0], inputs or {})]
        branches = sorted(node.in_funcs)
        if self.join_type == "foreach":
            if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)) or not inputs:
                raise ArtflowError(
                    f"{where} joins the foreach {self._describe(self.levels[-1])}: give "
                    "inputs= as a list with one dict of artifacts per split, "
                    "e.g. inputs=[{'x': 1}, {'x': 2}]"
                )
            return [(branches[0], split) for split in inputs]
        shape = "inputs={" + ", ".join(f"{b!r}: {{...}}" for b in branches) + "}"
        if inputs is None:
            inputs = {b: {} for b in branches}
        if (
            not isinstance(inputs, Mapping)
            or not inputs
            or any(not isinstance(v, Mapping) or k not in branches for k, v in inputs.items())
        ):
            raise ArtflowError(
                f"{where} joins the branches {', '.join(branches)}: give the artifacts of "
                f"each branch, {shape} (got {_short(inputs)})"
            )
        split = self.graph[node.split_parents[-1]]
        if not partial and len(inputs) != len(split.out_funcs):
            raise ArtflowError(
                f"{where} joins {len(split.out_funcs)} branches: give all of them, {shape}"
            )
        return list(inputs.items())

    # -- from scratch ---------------------------------------------------------

    def from_scratch(self, inputs: Any) -> _Plan:
        node, graph = self.node, self.graph
        if node.name == metaflow_seam.start_step(graph):
            if inputs:
                raise ArtflowError(
                    f"step {node.name!r} is the first step: it reads only the flow's "
                    "Parameters; pass them as keyword arguments or params={...}"
                )
            self._indices()
            return _Plan(parents=[])
        indices = self._indices()
        branches = self._branches(inputs)
        follows_split = self.join_type is None and graph[branches[0][0]].type == "foreach"
        plan = _Plan(parents=[])
        for n, (parent_step, values) in enumerate(branches):
            where = self._where(parent_step, n)
            shipped = self._ship(values, where)
            plan.given |= set(values)
            frames = self._frames(indices, values, shipped, len(branches), n, follows_split)
            bookkeeping: dict[str, Any] = {
                "_current_step": parent_step,
                "_foreach_var": None,
                "_foreach_num_splits": None,
                "_foreach_values": None,
                "_iteration_stack": [],
                "_transition": ([node.name], None),
                "_task_ok": True,
                "_success": True,
                "_exception": None,
            }
            if follows_split:
                var, splits = self._split_var(values, shipped, indices[-1])
                split_node = graph[parent_step]
                bookkeeping.update(_foreach_var=var, _foreach_num_splits=splits)
                bookkeeping["_transition"] = ([node.name], split_node.foreach_param)
                plan.split_index = indices[-1]
            plan.parents.append(
                ParentTask(
                    step=parent_step,
                    task_id=f"p{n + 1}",
                    values=shipped,
                    bookkeeping=bookkeeping,
                    frames=frames,
                )
            )
            plan.shown.append(({}, shipped))
        return plan

    def _where(self, parent_step: str, n: int) -> str:
        if self.join_type == "foreach":
            return f"inputs[{n}]"
        if self.join_type is not None:
            return f"inputs[{parent_step!r}]"
        return "inputs"

    def _split_var(
        self, values: Mapping[str, Any], shipped: dict[str, bytes], index: int
    ) -> tuple[str, int]:
        """The foreach variable ``self.input`` is taken from, and the split count."""
        level = self.levels[-1]
        var = level.foreach_param
        if self.input is not None:
            self._ship_input(shipped, index)
            return INPUT_ARTIFACT, index + 1
        if var in values:
            try:
                count = len(values[var])
                values[var][index]
            except (TypeError, IndexError, KeyError):
                raise ArtflowError(
                    f"step {self.node.name!r} reads self.input from inputs[{var!r}] at "
                    f"index {index}, which it does not have"
                ) from None
            return var, count
        raise ArtflowError(
            f"step {self.node.name!r} is a foreach step ({self._describe(level)}): give "
            f"input= (what self.input returns), or the list as inputs={{{var!r}: [...]}}"
        )

    def _frames(
        self,
        indices: list[int],
        values: Mapping[str, Any],
        shipped: dict[str, bytes],
        count: int,
        n: int,
        follows_split: bool,
    ) -> list[_Frame]:
        """The parent's foreach stack: the levels the step is in, less the one a
        foreach body opens itself, plus the joined one for a foreach join."""
        frames: list[_Frame] = []
        own = self.levels[: self._depth()]
        for depth, (level, index) in enumerate(zip(own, indices, strict=True)):
            innermost = depth == len(own) - 1
            if innermost and follows_split:
                break
            var, splits = level.foreach_param, index + 1
            if innermost and self.input is not None:
                self._ship_input(shipped, index)
                var = INPUT_ARTIFACT
            elif var in values and hasattr(values[var], "__len__"):
                splits = max(len(values[var]), splits)
            frames.append((level.out_funcs[0], var, splits, index, None))
        if self.join_type == "foreach":
            level = self.levels[-1]
            frames.append((level.out_funcs[0], level.foreach_param, count, n, None))
        return frames

    # -- re-run of an earlier run's step --------------------------------------

    def rerun(self, run: FlowRun, inputs: Any) -> _Plan:
        from metaflow import Step, Task

        from .result import main_module_as

        node = self.node
        if node.name not in run:
            raise ArtflowError(
                f"step {node.name!r} did not run in {run.pathspec} (the steps that ran: "
                f"{', '.join(run.steps)}); run it from scratch with artflow_step("
                f"{run.flow_name}, {node.name!r}, inputs=...)"
            )
        if self._depth() == 0:
            self._indices()  # the error for index=/input= outside any foreach
        task = self._pick(run, run[node.name].tasks)
        plan = _Plan(parents=[])
        if node.name == metaflow_seam.start_step(self.graph):
            params = Step(f"{run.pathspec}/_parameters", _namespace_check=False).task
            with main_module_as(self.flow.module):
                known = {a.id: a.data for a in params}
            origins = [(params.pathspec, params.current_attempt, known)]
        else:
            by_path = {t.pathspec: t for t in run.tasks}
            client = Task(task.pathspec, _namespace_check=False)
            found = sorted(
                (by_path[p] for p in client.parent_task_pathspecs), key=lambda t: t.order
            )
            origins = [(t.pathspec, t.attempt, t.artifacts) for t in found]
        parent_steps = [pathspec.split("/")[2] for pathspec, _, _ in origins]
        overrides = self._rerun_overrides(inputs, parent_steps)
        first = parent_steps[0]
        if self.join_type is None and first in self.graph and self.graph[first].type == "foreach":
            plan.split_index = task.order[0][-1]
        for n, ((pathspec, attempt, known), values) in enumerate(
            zip(origins, overrides, strict=True)
        ):
            _, run_id, parent_step, parent_id = pathspec.split("/")
            where = self._where(parent_step, n)
            shipped = self._ship(values, where)
            plan.given |= set(known) | set(values)
            bookkeeping: dict[str, Any] = {}
            if self.input is not None:
                if plan.split_index is None:
                    raise ArtflowError(
                        f"step {node.name!r}: in a re-run, input= applies to the step right "
                        "after a foreach split; override the foreach variable with inputs="
                    )
                self._ship_input(shipped, plan.split_index)
                bookkeeping["_foreach_var"] = INPUT_ARTIFACT
            plan.parents.append(
                ParentTask(
                    step=parent_step,
                    task_id=f"p{n + 1}",
                    origin=f"{run_id}/{parent_step}/{parent_id}/{attempt}",
                    values=shipped,
                    bookkeeping=bookkeeping,
                )
            )
            plan.shown.append((dict(known), shipped))
        return plan

    def _pick(self, run: FlowRun, tasks: list[TaskResult]) -> TaskResult:
        if self.index is None:
            return tasks[0]
        wanted = (self.index,) if isinstance(self.index, int) else tuple(self.index)
        for task in tasks:
            if task.order[0][-len(wanted) :] == wanted:
                return task
        have = ", ".join(str(t.order[0]) for t in tasks)
        raise ArtflowError(
            f"step {self.node.name!r} of {run.pathspec} has no task with index={self.index!r} "
            f"(its tasks' foreach indices: {have})"
        )

    def _rerun_overrides(self, inputs: Any, parent_steps: list[str]) -> list[Mapping[str, Any]]:
        if inputs is None:
            return [{} for _ in parent_steps]
        if self.join_type is None:
            if not isinstance(inputs, Mapping):
                raise ArtflowError(
                    f"step {self.node.name!r} is not a join: inputs= is a dict of artifact "
                    "name to value"
                )
            return [inputs for _ in parent_steps]
        if self.join_type == "foreach":
            if isinstance(inputs, Mapping) or len(inputs) != len(parent_steps):
                raise ArtflowError(
                    f"step {self.node.name!r} joined {len(parent_steps)} splits in the run: "
                    f"give inputs= as a list of {len(parent_steps)} dicts (overrides per split)"
                )
            return list(inputs)
        self._branches(inputs, partial=True)  # the same shape as from scratch
        return [inputs.get(step, {}) for step in parent_steps]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
