"""The step's process side of an ``artflow_step`` job.

``prepare_job`` runs inside the job's process, just before Metaflow's CLI
(``inflow/launch.py`` calls it when ``ARTFLOW_STEP_JOB`` is set): it lets
Metaflow's ``init`` command write the Parameters, writes the parent tasks with
Metaflow's ``TaskDataStore`` and captures the step's stdout/stderr.

It imports only the standard library at the top.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from typing import Any

from .. import metaflow_seam
from ..step.job import PARAMS_TASK, ParentTask, StepJob


def prepare_job(job_file: str, flow_class: type, entrypoint: list[str]) -> None:
    """Write the step's input tasks, then let the caller run Metaflow's ``step``."""
    with open(job_file, "rb") as f:
        job: StepJob = pickle.load(f)
    if job.init_args is not None:
        _warm_caches()
        _run_init(flow_class, job.init_args, entrypoint)

    from metaflow.plugins import DATASTORES

    from ..metaflow_seam import FlowDataStore

    storage = {impl.TYPE: impl for impl in DATASTORES}
    # Datastores with explicit roots: nothing global (LocalStorage.datastore_root) changes.
    store = FlowDataStore(job.flow_name, storage_impl=storage[job.storage], ds_root=job.root)
    origin = (
        FlowDataStore(
            job.flow_name, storage_impl=storage[job.origin_storage], ds_root=job.origin_root
        )
        if job.origin_root
        else None
    )
    params = (
        store.get_task_datastore(job.run_id, "_parameters", PARAMS_TASK)
        if job.init_args is not None
        else None
    )
    written = [_write_parent(store, origin, params, job, parent) for parent in job.parents]
    if not job.parents and params is not None:  # the start step reads the _parameters task
        written = [dict(params.items())]
    with open(job.report, "w", encoding="utf-8") as f:
        json.dump({"parents": written}, f)
    _capture_output(job.stdout, job.stderr)


def _warm_caches() -> None:
    """Fill what Metaflow computes once per process (its version and the flow's
    git information, a few ``git`` processes) before ``init`` forks, so that
    ``init`` and the ``step`` after it share one computation."""
    metaflow_seam.warm_version()
    metaflow_seam.repository_info(os.path.dirname(os.path.abspath(sys.argv[0])))


def _run_init(flow_class: type, args: list[str], entrypoint: list[str]) -> None:
    """Metaflow's ``init`` in a forked child: it sets up Metaflow's CLI state,
    which the ``step`` command that follows in this process must set up anew."""
    cli = metaflow_seam.cli
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


def _write_parent(
    store: Any, origin: Any, params: Any, job: StepJob, parent: ParentTask
) -> dict[str, Any]:
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
        artifacts[metaflow_seam.FOREACH_STACK] = [
            metaflow_seam.foreach_frame(*frame) for frame in parent.frames
        ]
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
