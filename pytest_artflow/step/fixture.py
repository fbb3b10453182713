"""``artflow_step``: run ONE step of a flow, a unit test of a step.

Metaflow runs a step with its ``step`` command, which reads the step's inputs
from the tasks named by ``--input-paths``. A single step therefore needs only
those parent tasks: they are written into a scratch datastore of their own
(``<sandbox>/steps/<n>/.metaflow``), made up from the test's ``inputs`` (a step
"from scratch") or copied from an earlier run with ``inputs`` overriding some
artifacts (a "re-run"), and then Metaflow's real ``step`` command runs against
them through the engine like any task of a run. The sandbox's own datastore,
its runs and ``latest_run`` are never written.

``ArtflowStep`` (the fixture object, in the pytest process) turns the test's
arguments into a ``StepJob`` (``step/job.py``; which parent tasks, with what,
planned by ``step/plan.py``), runs it as one engine job and reads the task back
as a ``TaskResult``; ``inflow/stepjob.py`` prepares the inputs in the job's process.
"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import metaflow_seam
from ..errors import ArtflowError, FlowRunFailed, plugin_frames_hidden
from .job import JOB_ENV, PARAMS_TASK, STEP_TASK, StepJob
from .plan import InputPlan, InputPlanner, missing_input_hint, step_node

if TYPE_CHECKING:
    from ..engines import RunJob
    from ..flows import FlowRef
    from ..results import FlowRun, StepResult, TaskResult
    from ..runner import ArtflowRunner, RunConfig


class ArtflowStep:
    """The ``artflow_step`` fixture: runs one step in the test's sandbox."""

    def __init__(self, runner: ArtflowRunner) -> None:
        self.runner = runner
        self._count = itertools.count(1)

    @plugin_frames_hidden
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
        datastore: str | None = None,
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
        first, in nested foreaches. ``datastore="s3"``: the step's inputs and
        what it stores live in the test's S3 area. Keyword arguments are
        Parameter values.
        """
        from ..results import FlowRun

        origin = flow_or_run if isinstance(flow_or_run, FlowRun) else None
        if origin is not None and origin.flow is None:
            raise ArtflowError(f"{origin.pathspec} does not say which flow it ran")
        config = self.runner.configure(
            origin.flow.flow_class if origin is not None and origin.flow else flow_or_run,
            engine=engine,
            timeout=timeout,
            params=params,
            datastore=datastore,
            **parameters,
        )
        node = step_node(config.flow, step)
        planner = InputPlanner(config.flow, node, input, index)
        plan = planner.from_scratch(inputs) if origin is None else planner.rerun(origin, inputs)
        scratch = self._scratch()
        run_job = self._job(config, node.name, plan, scratch, origin=origin)
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

    def _job(
        self, config: RunConfig, step: str, plan: InputPlan, scratch: Path, origin: FlowRun | None
    ) -> RunJob:
        """Metaflow's ``step`` command for the step, in the scratch datastore,
        with the ``StepJob`` that prepares its inputs beside it."""
        flow, run_id = config.flow, _run_id(scratch)
        rerun = origin is not None
        root = str(scratch / ".metaflow")
        if config.datastore == "s3":
            assert self.runner.sandbox.s3 is not None
            root = f"{self.runner.sandbox.s3.datastore_root}/steps/{scratch.name}"
        top = ["--quiet", "--metadata", "local", "--datastore", config.datastore]
        top += ["--datastore-root", root]
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
            parameter_names=[attr for attr, _ in metaflow_seam.parameters(flow.flow_class)],
            origin_root=str(self.runner.sandbox.datastore) if rerun else None,
            report=str(scratch / "parents.json"),
            stdout=str(scratch / "stdout.txt"),
            stderr=str(scratch / "stderr.txt"),
            storage=config.datastore,
        )
        if origin is not None:
            from ..results.read import datastore_of

            job.origin_storage, job.origin_root = datastore_of(origin)
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
        for deco in metaflow_seam.graph(flow.flow_class)[step].decorators:
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
        plan: InputPlan,
        outcome: Any,
        check: bool,
    ) -> TaskResult:
        from ..results import FlowRun, StepResult, find_failure
        from ..results.failure import describe_failure, start_failure, timeout_failure

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
            run.failure.message += missing_input_hint(run.failure, plan, step)
        if check and not run.successful:
            raise FlowRunFailed(describe_failure(run), run=run)
        return task


def _input_steps(flow: FlowRef, run_id: str, plan: InputPlan) -> dict[str, StepResult]:
    """The parent tasks as the step saw them, so that the result's ``trace``
    (and a failing assert's explanation) shows each artifact before and after."""
    from ..results import StepResult, TaskResult, main_module_as

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
    from metaflow.exception import MetaflowNotFound

    from ..results.cards import has_cards
    from ..results.read import main_module_as, read_task_stored
    from ..sandbox import Sandbox

    cards = has_cards(flow.flow_class, pathspec.split("/")[2])
    with Sandbox(scratch).client_scope(), main_module_as(flow.module):
        try:
            result, stored = read_task_stored(
                metaflow_seam.client_task(pathspec),
                cards=cards,
                module=flow.module,
                own=(metaflow_seam.TRANSITION, metaflow_seam.FOREACH_NUM_SPLITS),
            )
            # The scratch datastore goes with the sandbox, which does not
            # know this result: every value is read now.
            for attempt in result.attempts:
                attempt._load_all()
        except MetaflowNotFound:
            return None
    transition = stored.values.get(metaflow_seam.TRANSITION)
    result.next_steps = list(transition[0]) if transition else []
    result.foreach_splits = stored.values.get(metaflow_seam.FOREACH_NUM_SPLITS)
    # The keys of the artifacts the client lists (not Metaflow's own).
    shas = {name: key for name, key in stored.keys.items() if not name.startswith("_")}
    return result, shas
