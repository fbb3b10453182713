"""``artflow_run``: reference -> sandbox -> engine -> datastore -> ``FlowRun``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import flows, timeline
from .engines import EngineSet, RunJob
from .errors import ArtflowError, FlowReferenceError, FlowRunFailed, plugin_frames_hidden
from .results.failure import describe_failure, start_failure, timeout_failure
from .results.model import FlowRun
from .results.read import read_run
from .sandbox import Sandbox
from .settings import DATASTORES, RunDefaults


@dataclass
class RunConfig:
    """One run, as ``pytest_artflow_configure_run`` implementations see (and change) it."""

    flow: flows.FlowRef
    sandbox: Sandbox
    engine: str
    timeout: float | None
    tags: list[str]
    max_workers: int | None
    env: dict[str, str]
    parameters: dict[str, Any]
    #: Metaflow ``Config`` files (``--config NAME PATH``) and values
    #: (``--config-value NAME JSON``) by Config name.
    config: dict[str, Any] = field(default_factory=dict)
    config_value: dict[str, Any] = field(default_factory=dict)
    datastore: str = "local"


class ArtflowRunner:
    """The ``artflow_run`` fixture: runs flows in the test's sandbox."""

    _ids = itertools.count(1)

    def __init__(
        self,
        sandbox: Sandbox,
        engines: EngineSet,
        hook: Any,
        defaults: RunDefaults,
        search_dirs: Iterable[Path] = (),
        s3_area: Callable[[], Any] | None = None,
    ) -> None:
        self.sandbox = sandbox
        #: Gives the sandbox its area of the S3 test server (``artflow_s3``)
        #: when a run asks for ``datastore="s3"`` and the test has none yet.
        self.s3_area = s3_area
        self.engines = engines
        self.hook = hook
        self.defaults = defaults
        self.search_dirs = list(search_dirs)
        #: Every run this fixture made, oldest first.
        self.runs: list[FlowRun] = []

    def resolve(self, flow: object) -> flows.FlowRef:
        # A flow that ran already (``artflow_resume``) is the same flow again.
        if isinstance(flow, flows.FlowRef):
            return flow
        return flows.resolve(flow, self.search_dirs)

    def configure(
        self,
        flow: object,
        *,
        engine: str | None = None,
        timeout: float | None = None,
        tags: Iterable[str] = (),
        max_workers: int | None = None,
        env: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        config_value: Mapping[str, Any] | None = None,
        datastore: str | None = None,
        **parameters: Any,
    ) -> RunConfig:
        datastore = datastore or self.defaults.datastore
        if datastore not in DATASTORES:
            raise ArtflowError(
                f"datastore={datastore!r}: pytest-artflow runs flows with the datastore "
                f"{' or '.join(map(repr, DATASTORES))}"
            )
        if datastore == "s3":
            self.ensure_s3()
        run_config = RunConfig(
            flow=self.resolve(flow),
            sandbox=self.sandbox,
            engine=engine or self.defaults.engine,
            timeout=timeout if timeout is not None else self.defaults.timeout,
            tags=list(tags),
            max_workers=max_workers,
            env={**self.defaults.env, **(env or {})},
            parameters={**(params or {}), **parameters},
            # Pairs, as Metaflow's Runner takes them, or a mapping.
            config=dict(config or {}),
            config_value=dict(config_value or {}),
            datastore=datastore,
        )
        self.hook.pytest_artflow_configure_run(config=run_config)
        return run_config

    def ensure_s3(self) -> None:
        """Give the sandbox an S3 area (and the pytest process its client
        settings) before a run that keeps its datastore there."""
        if self.sandbox.s3 is not None:
            return
        if self.s3_area is None:
            from .s3 import require

            require()
            raise ArtflowError('datastore="s3" needs the artflow_s3 fixture in this context')
        self.s3_area()

    def job(self, config: RunConfig, args: list[str]) -> RunJob:
        """A Metaflow command for ``config``'s flow; ``args`` follow the top-level options."""
        return RunJob(
            flow_file=config.flow.file,
            class_name=self._shipped(config.flow) if config.flow.local else config.flow.name,
            # No pylint: it is not part of what a flow does, and slow.
            args=["--no-pylint", *args],
            env=self.sandbox.environ(config.env, datastore=config.datastore),
            cwd=self.sandbox.root,
            timeout=config.timeout,
        )

    def _shipped(self, flow: flows.FlowRef) -> str:
        """A class defined in a function, pickled by value into the sandbox for
        the flow's processes to load (``launch.load_flow``)."""
        import cloudpickle

        from .inflow.launch import SHIPPED

        path = self.sandbox.root / "tmp" / f"{flow.name}-{next(self._ids)}.flow.pickle"
        try:
            path.write_bytes(cloudpickle.dumps(flow.flow_class))
        except Exception as exc:
            raise FlowReferenceError(
                f"{flow.flow_class.__qualname__} is defined inside a function and is sent "
                f"to the flow's processes with cloudpickle, which fails on it: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return SHIPPED + str(path)

    @plugin_frames_hidden
    def __call__(self, flow: object, *, check: bool = True, **options: Any) -> FlowRun:
        config = self.configure(flow, **options)
        id_file = self.id_file()
        args = config.flow.config_args(config.config, config.config_value, self.search_dirs)
        args += ["run", "--run-id-file", str(id_file)]
        for tag in config.tags:
            args += ["--tag", tag]
        if config.max_workers is not None:
            args += ["--max-workers", str(config.max_workers)]
        args += config.flow.parameter_args(config.parameters)
        return self.execute(config, args, id_file, check=check)

    def id_file(self) -> Path:
        """Where Metaflow writes the id of the run it starts (``--run-id-file``)."""
        return self.sandbox.root / "tmp" / f"run-{next(self._ids)}.id"

    def execute(self, config: RunConfig, args: list[str], id_file: Path, *, check: bool) -> FlowRun:
        """Run a Metaflow command that starts a run (``run``, ``resume``) whose id
        it writes to ``id_file``, and read what the run wrote."""
        outcome = self.engines.get(config.engine).run(self.job(config, args))
        if not id_file.exists():
            raise FlowRunFailed(start_failure(config, outcome.output, outcome.timed_out))
        run = read_run(
            self.sandbox,
            config.flow,
            id_file.read_text().strip(),
            output=outcome.output,
            duration=outcome.duration,
        )
        timeline.mark("results.read")
        if outcome.timed_out:
            run.successful = run.finished = False
            run.failure = timeout_failure(run, config.timeout)
        elif outcome.returncode != 0:
            run.successful = run.finished = False
        self.runs.append(run)
        # When `python flow.py run` fails (an exception @catch caught, in the
        # end step too, lets the run go on and exit 0), and when what the run
        # saved cannot be read back here, as far as reading it has found:
        # artifact values load when first asked for, and one that does not
        # load raises ``ArtifactReadError`` then.
        if check and not (run.finished and run._read_problem_known() is None):
            raise FlowRunFailed(describe_failure(run), run=run)
        return run


#: The ``artflow_run`` fixture's type, for a test's annotations.
ArtflowRun = ArtflowRunner
