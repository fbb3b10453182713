"""``artflow_resume``: Metaflow's own ``resume`` of a run, in the sandbox it ran in.

``python flow.py resume --origin-run-id <id> [step]`` starts a new run that
clones every task of the origin run that finished successfully (before
``step``, when one is given) and runs the rest. Metaflow decides all of it:
which tasks are cloned, which run again, what the new run's ``_parameters``
are (the origin run's: ``resume`` takes no Parameters). This module only
builds the command, runs it through the same engines as ``run`` and reads the
new run back; each cloned task says where it came from
(``TaskResult.origin_pathspec``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ArtflowError, FlowRunFailed, plugin_frames_hidden
from .results import FlowRun, UnknownStepError
from .results.read import datastore_of
from .runner import ArtflowRunner


class ArtflowResume:
    """The ``artflow_resume`` fixture: resumes runs of the test's own sandbox."""

    def __init__(self, runner: ArtflowRunner) -> None:
        #: The test's ``artflow_run``: its sandbox, engines, defaults and hook.
        self.runner = runner

    @plugin_frames_hidden
    def __call__(
        self,
        run: FlowRun,
        step: str | None = None,
        *,
        engine: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        tags: Iterable[str] = (),
        max_workers: int | None = None,
        env: Mapping[str, str] | None = None,
        **parameters: Any,
    ) -> FlowRun:
        self._check_origin(run, step)
        assert run.flow is not None  # _check_origin
        runner = self.runner
        # Where the origin run stored its artifacts is where Metaflow clones them from.
        datastore = datastore_of(run)[0]
        config = runner.configure(
            run.flow,
            engine=engine,
            timeout=timeout,
            tags=tags,
            max_workers=max_workers,
            env=env,
            params=parameters,
            datastore=datastore,
        )
        id_file = runner.id_file()
        args = ["resume", "--origin-run-id", run.run_id, "--run-id-file", str(id_file)]
        for tag in config.tags:
            args += ["--tag", tag]
        if config.max_workers is not None:
            args += ["--max-workers", str(config.max_workers)]
        # Metaflow's resume has no Parameter options (the new run takes the origin
        # run's values): it says so itself if the test gives any. Those a
        # ``pytest_artflow_configure_run`` hook adds to every run are left out:
        # the origin run got them already.
        given = {k: v for k, v in config.parameters.items() if k in parameters}
        args += config.flow.parameter_args(given) if given else []
        if step is not None:
            args.append(step)
        try:
            resumed = runner.execute(config, args, id_file, check=check)
        except FlowRunFailed as exc:
            if exc.run is None and given:
                raise FlowRunFailed(
                    f"{exc}\nMetaflow's resume runs with the Parameters of the origin run "
                    f"{run.pathspec}; they cannot be changed (given: {', '.join(sorted(given))})"
                ) from None
            if exc.run is not None:
                exc.run.origin_pathspec = run.pathspec
            raise
        resumed.origin_pathspec = run.pathspec
        return resumed

    def _check_origin(self, run: object, step: str | None) -> None:
        """One clear message for what Metaflow would refuse late or obscurely."""
        if not isinstance(run, FlowRun):
            raise ArtflowError(
                f"artflow_resume takes the FlowRun that artflow_run returned, not {run!r}"
            )
        sandbox = self.runner.sandbox
        if run.sandbox is None or run.flow is None:
            raise ArtflowError(
                f"{run.pathspec} is not a run of a sandbox (artflow_step's runs live in a "
                "scratch datastore); resume a FlowRun that artflow_run returned"
            )
        if run.sandbox.root != sandbox.root:
            raise ArtflowError(
                f"{run.pathspec} ran in another test's sandbox ({run.sandbox.root}); "
                f"artflow_resume resumes runs of this test's sandbox ({sandbox.root}), "
                "where Metaflow finds the origin run"
            )
        steps = run.flow.step_names
        if step is not None and step not in steps:
            raise UnknownStepError(
                f"{run.flow_name} has no step {step!r} to resume from; its steps: "
                f"{', '.join(steps)}"
            )
