"""Time the same flows four ways, side by side, in one run:

    (a) ``python flow.py run``      Metaflow's CLI
    (b) ``metaflow.Runner``         Metaflow's programmatic API
    (c) artflow ``subprocess``      pytest-artflow's reference engine
    (d) artflow ``fork``            pytest-artflow's fast engine

Usage: ``python benchmarks/bench_engines.py [--repeat N] [--case NAME ...]
[--tmp DIR ...] [--profile]``

Every run gets a fresh sandbox (its own datastore, metadata, Metaflow home and
temp dir, the environment ``Sandbox.environ`` gives); the artflow variants go
through ``ArtflowRunner`` (what the ``artflow_run`` fixture calls) and so
include reading every artifact of every task back. Each variant lives in a
worker process of its own, started once and warmed up with one untimed run
(the fork engine starts its server then); the timed runs are interleaved
round-robin across the variants and the locations, so that the noise of a
shared machine falls on all of them alike, and each one starts after ``sync``,
so that none pays for writing out what the one before it wrote.

Sandboxes go in each ``--tmp`` directory in turn (by default the system's
temp dir, usually a disk, and ``/dev/shm``, a tmpfs), each location with a full
set of figures. No sandbox is deleted before the last timed run: on ext4,
creating files is many times slower for minutes after files were deleted (the
kernel checks inodes being reused), so a benchmark that deletes as it goes
measures that, not the engine. Peak memory is the largest resident set of any
process of a run, from ``getrusage(RUSAGE_CHILDREN)`` in a fresh process that
makes exactly one run (and, for the fork engine, stops its server before
reading).

``--profile`` then runs the fork engine's variant of each case again, in a
worker of its own with ``PYTEST_ARTFLOW_TIMELINE`` set (the file emptied before
each run), and prints the budget of a run phase by phase, medians of the
repeats (``pytest_artflow.timeline.budget``): when each phase first happened
in which process, and per task what came before its code started and after
it exited.

Add a case by adding a ``Case`` to ``CASES``; a case that needs other ways to
run (a single step, say) gives its own ``variants`` table.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "tests" / "flows"
MB = 1024 * 1024


@dataclass
class Case:
    """One flow (and its Parameters) to time."""

    name: str
    flow: Path
    params: dict[str, Any]
    #: Tasks one run makes (for the per-task overhead).
    tasks: int
    #: Size of the artifact whose memory cost to report, if any.
    artifact_bytes: int = 0
    #: Ways to run this case, if not the four of ``VARIANTS``.
    variants: dict[str, Variant] = field(default_factory=dict)


#: A way to run a case: ``variant(case, sandbox)`` makes one complete run.
Variant = Callable[[Case, Any], None]


def _cli_args(case: Case) -> list[str]:
    args = []
    for name, value in case.params.items():
        args += [f"--{name}", str(value)]
    return args


def _flow_command(case: Case, sandbox: Any, *args: str) -> None:
    """``python flow.py ARGS``, as a user types it, in the sandbox's environment."""
    subprocess.run(
        [sys.executable, str(case.flow), "--no-pylint", *args],
        env=sandbox.environ(),
        cwd=sandbox.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )


def run_cli(case: Case, sandbox: Any) -> None:
    """(a) Metaflow's CLI, as a user types it, in the sandbox's environment."""
    _flow_command(case, sandbox, "run", *_cli_args(case))


def run_runner(case: Case, sandbox: Any) -> None:
    """(b) ``metaflow.Runner``: it runs the CLI in a subprocess and hands back a ``Run``."""
    from metaflow import Runner

    with (
        sandbox.client_scope(),
        Runner(
            str(case.flow),
            show_output=False,
            env=sandbox.environ(),
            cwd=str(sandbox.root),
            pylint=False,
        ) as runner,
    ):
        result = runner.run(**case.params)
        if not result.run.successful:
            raise RuntimeError(f"Runner: {case.name} failed")


class _Hooks:
    """What ``ArtflowRunner`` asks of pytest's hook relay: the built-in engines."""

    def pytest_artflow_engines(self) -> list[dict[str, Any]]:
        from pytest_artflow import plugin

        return [plugin.pytest_artflow_engines()]

    def pytest_artflow_configure_run(self, config: Any) -> list[None]:
        return []


_engines: Any = None


def _runner(sandbox: Any, engine: str = "subprocess") -> Any:
    """An ``ArtflowRunner`` on ``sandbox``; the engines (the fork engine's
    server among them) are made once per worker and shared by its runs."""
    global _engines
    from pytest_artflow.engines import EngineSet
    from pytest_artflow.runner import ArtflowRunner
    from pytest_artflow.settings import RunDefaults

    if _engines is None:
        _engines = EngineSet(_Hooks())
    return ArtflowRunner(sandbox, _engines, _Hooks(), RunDefaults(engine=engine))


def run_artflow(engine: str) -> Variant:
    """(c)/(d) ``ArtflowRunner`` with ``engine``: the run and reading its results."""

    def variant(case: Case, sandbox: Any) -> None:
        runner = _runner(sandbox, engine)
        with sandbox.client_scope():
            run = runner(case.flow, **case.params)
        assert run.successful and len(run.tasks) == case.tasks, run

    variant.__doc__ = f"artflow {engine}"
    return variant


VARIANTS: dict[str, Variant] = {
    "(a) python flow.py run": run_cli,
    "(b) metaflow.Runner": run_runner,
    "(c) artflow subprocess": run_artflow("subprocess"),
    "(d) artflow fork": run_artflow("fork"),
}

#: The single step timed: ``middle`` of the seed flow, given this list.
STEP, STEP_INPUTS = "middle", {"some_data": [9, 9]}
_earlier: dict[tuple[str, str], tuple[Any, Any, Any]] = {}


def _earlier_run(case: Case, sandbox: Any) -> tuple[Any, Any, Any]:
    """A sandbox holding one run of ``case`` (made once per worker, untimed in
    the warm-up round), its ``FlowRun`` and an ``ArtflowStep`` on it."""
    from pytest_artflow.step.fixture import ArtflowStep

    base = str(sandbox.root.parent)  # the benchmark's directory in this location
    if (case.name, base) not in _earlier:
        kept = _sandbox(base)
        runner = _runner(kept)
        with kept.client_scope():
            _earlier[case.name, base] = (kept, runner(case.flow), ArtflowStep(runner))
    return _earlier[case.name, base]


def run_spin(case: Case, sandbox: Any) -> None:
    """Metaflow's own single-step re-run, as a user types it: ``python flow.py
    spin <task>`` with an artifacts module, against a run in the sandbox."""
    sandbox, run, _ = _earlier_run(case, sandbox)
    module = sandbox.root / "tmp" / "spin_artifacts.py"
    module.write_text(f"ARTIFACTS = {STEP_INPUTS!r}\n")
    pathspec = run[STEP].task.pathspec.split("/", 1)[1]
    spin = ["spin", pathspec, "--artifacts-module", str(module)]
    _flow_command(case, sandbox, *spin)


def run_step(engine: str, rerun: bool) -> Variant:
    """``ArtflowStep`` (what the ``artflow_step`` fixture calls) with ``engine``:
    the step from scratch in a fresh sandbox, or re-run from an earlier run."""

    def variant(case: Case, sandbox: Any) -> None:
        kept, run, stepper = _earlier_run(case, sandbox)
        if rerun:
            with kept.client_scope():
                task = stepper(run, STEP, inputs=STEP_INPUTS, engine=engine)
        else:
            from pytest_artflow.step.fixture import ArtflowStep

            with sandbox.client_scope():
                task = ArtflowStep(_runner(sandbox, engine))(case.flow, STEP, inputs=STEP_INPUTS)
        assert task.successful and task.changed, task

    variant.__doc__ = f"artflow_step {engine}{' re-run' if rerun else ''}"
    return variant


STEP_VARIANTS: dict[str, Variant] = {
    "(s) spin, re-run": run_spin,
    "(t) step subprocess": run_step("subprocess", rerun=False),
    "(u) step subprocess, re-run": run_step("subprocess", rerun=True),
    "(v) step fork": run_step("fork", rerun=False),
    "(w) step fork, re-run": run_step("fork", rerun=True),
}


def run_datastore(engine: str, datastore: str) -> Variant:
    """``ArtflowRunner`` with ``engine`` and the run's datastore local or on the
    S3 test server (one per worker process, started in its warm-up run; each
    run gets a bucket of its own, as each test does)."""

    def variant(case: Case, sandbox: Any) -> None:
        import contextlib

        runner = _runner(sandbox, engine)
        with sandbox.client_scope(), contextlib.ExitStack() as stack:
            if datastore == "s3":
                from pytest_artflow import s3

                s3.open_area(sandbox, "bench", None, stack)
            run = runner(case.flow, datastore=datastore, **case.params)
        assert run.successful and len(run.tasks) == case.tasks, run

    variant.__doc__ = f"artflow {engine}, {datastore} datastore"
    return variant


S3_VARIANTS: dict[str, Variant] = {
    "(c) subprocess, local": run_datastore("subprocess", "local"),
    "(e) subprocess, s3": run_datastore("subprocess", "s3"),
    "(d) fork, local": run_datastore("fork", "local"),
    "(f) fork, s3": run_datastore("fork", "s3"),
}

CASES = [
    Case("seed flow", ROOT / "examples" / "art_flow.py", {}, tasks=3),
    Case("100-way foreach", FLOWS / "foreach_flow.py", {"width": 100}, tasks=103),
    Case(
        "50 MB artifact",
        FLOWS / "big_artifact_flow.py",
        {"size_mb": 50},
        tasks=2,
        artifact_bytes=50 * MB,
    ),
    Case("seed flow, S3", ROOT / "examples" / "art_flow.py", {}, tasks=3, variants=S3_VARIANTS),
    Case(
        "10-way foreach, S3",
        FLOWS / "foreach_flow.py",
        {"width": 10},
        tasks=13,
        variants=S3_VARIANTS,
    ),
    Case(
        "single step",
        ROOT / "examples" / "art_flow.py",
        {},
        tasks=1,
        variants=STEP_VARIANTS,
    ),
]


# -- worker processes --


def _sandbox(base: str) -> Any:
    from pytest_artflow.sandbox import Sandbox

    return Sandbox(Path(tempfile.mkdtemp(prefix="sandbox-", dir=base)))


def _run_once(variant_name: str, case_name: str, base: str) -> float | str:
    """One timed run of a variant in a new sandbox under ``base``, kept there:
    sandboxes are deleted after the last timed run (see the module's doc)."""
    case = next(c for c in CASES if c.name == case_name)
    sandbox = _sandbox(base)
    # What earlier runs left for the disk to do (their files) is written out
    # before, not during, this run.
    os.sync()
    try:
        started = time.perf_counter()
        _variants(case)[variant_name](case, sandbox)
        return time.perf_counter() - started
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _timing_worker(variant_name: str, conn: Any) -> None:
    """Serve timed runs of one variant, ``(case, base directory)``, until told to stop."""
    try:
        while (request := conn.recv()) is not None:
            conn.send(_run_once(variant_name, *request))
    finally:
        if _engines is not None:
            _engines.close()


def _profile_worker(variant_name: str, path: str, conn: Any) -> None:
    """Serve runs of one variant with timeline marks written to ``path``
    (emptied before each run); answers each with the run's ``Budget``."""
    from pytest_artflow import timeline

    os.environ[timeline.ENV] = path  # the runs' processes inherit it
    timeline.start(path)
    try:
        while (request := conn.recv()) is not None:
            os.truncate(path, 0)
            answer = _run_once(variant_name, *request)
            conn.send(answer if isinstance(answer, str) else timeline.budget(timeline.read(path)))
    finally:
        if _engines is not None:
            _engines.close()


def _memory_worker(variant_name: str, case_name: str, base: str, conn: Any) -> None:
    """One run in a fresh process; the largest RSS of the processes it waited for."""
    case = next(c for c in CASES if c.name == case_name)
    sandbox = _sandbox(base)
    try:
        _variants(case)[variant_name](case, sandbox)
        if _engines is not None:
            _engines.close()  # the fork server and its runs are waited for
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        itself = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        conn.send((children, itself))
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")


def _variants(case: Case) -> dict[str, Variant]:
    return case.variants or VARIANTS


# -- the benchmark --

#: The variant ``--profile`` follows in each table of variants.
PROFILED = ("(d) artflow fork", "(v) step fork", "(d) fork, local")


@dataclass
class Target:
    """A target of the fork engine's speed: its median against a reference
    variant's (``ratio``: at least that many times faster) or a limit (``seconds``)."""

    case: str
    variant: str
    ratio: float = 0.0
    seconds: float = 0.0

    def describe(self, times: list[float], reference: list[float]) -> str:
        median = statistics.median(times)
        if self.ratio:
            measured = statistics.median(reference) / median
            return f"{measured:.1f}x ({'met' if measured >= self.ratio else 'missed'})"
        met = median <= self.seconds
        return f"{1000 * median:.0f} ms ({'met' if met else 'missed'})"

    def text(self, reference: str) -> str:
        if self.ratio:
            return f"{self.variant} at least {self.ratio:g}x faster than {reference}"
        return f"{self.variant} at most {1000 * self.seconds:g} ms"


TARGETS = [
    Target("seed flow", "(d) artflow fork", ratio=11),
    Target("100-way foreach", "(d) artflow fork", ratio=10),
    Target("single step", "(v) step fork", seconds=0.050),
]
#: Per-task overhead of the fork engine, at most (ms).
TASK_OVERHEAD_TARGET = 15.0


def default_locations() -> list[str]:
    """The system's temp dir (a disk, usually) and ``/dev/shm`` (a tmpfs) if there is one."""
    found = [tempfile.gettempdir()]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        found.append("/dev/shm")
    return list(dict.fromkeys(found))


def filesystem(path: str) -> str:
    """The type of the file system ``path`` is on (``/proc/mounts``), or ``"?"``."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                _, point, fstype, *_ = line.split()
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fstype
    except OSError:
        pass
    return kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per variant and case")
    parser.add_argument(
        "--case", action="append", choices=[c.name for c in CASES], help="only these cases"
    )
    parser.add_argument(
        "--tmp",
        action="append",
        default=None,
        help="a directory for the sandboxes; give it more than once for figures side by "
        "side (default: the system's temp dir and /dev/shm, a tmpfs, if there is one)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run the fork engine with timeline marks (PYTEST_ARTFLOW_TIMELINE) and "
        "print the per-phase budget of a run (medians of the repeats)",
    )
    options = parser.parse_args(argv)
    cases = [c for c in CASES if not options.case or c.name in options.case]
    names = list(dict.fromkeys(n for c in cases for n in _variants(c)))
    locations = options.tmp or default_locations()
    spawn = multiprocessing.get_context("spawn")

    import metaflow

    print(
        f"pytest-artflow engine benchmark: {options.repeat} timed runs per variant, "
        f"Python {platform.python_version()}, metaflow {metaflow.__version__}, "
        f"{os.cpu_count()} CPUs, load average {_load()}",
        flush=True,
    )
    if any(c.variants is S3_VARIANTS for c in cases):
        from pytest_artflow.s3 import S3Server

        started = time.perf_counter()
        S3Server.start_local().close()
        print(
            f"S3 test server start-up (once per process, not timed below): "
            f"{time.perf_counter() - started:.3f}s",
            flush=True,
        )
    with contextlib.ExitStack() as stack:
        bases = {}
        for location in locations:
            base = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="artflow-bench-", dir=location)
            )
            bases[base] = f"{location} ({filesystem(location)})"
            print(f"sandboxes under {base}, on {filesystem(location)}", flush=True)
        # Every sandbox stays until all runs are done: deleting files slows down
        # the creation of new ones on some file systems (ext4) for minutes.
        times = _time_all(spawn, list(bases), cases, names, options.repeat)
        budgets = _profile_all(spawn, list(bases), cases, options.repeat) if options.profile else {}
        print(f"\nload average after the timed runs: {_load()}")
        _report_times(cases, bases, times)
        for case in cases:
            for base, label in bases.items():
                if (case.name, base) in budgets:
                    print(
                        f"\nper-phase budget, {case.name}, {budgets[case.name, base][0]}, "
                        f"sandboxes on {label}: medians of {options.repeat} runs, "
                        "ms since run.requested"
                    )
                    print("\n".join(budgets[case.name, base][1]))
        for case in cases:
            if case.artifact_bytes:
                _report_memory(spawn, next(iter(bases)), case)
        print("\ndeleting the sandboxes ...", flush=True)
    return 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


Times = dict[tuple[str, str, str], list[float]]


def _time_all(
    spawn: Any, bases: list[str], cases: list[Case], names: list[str], repeat: int
) -> Times:
    """Every variant's runs of every case in every location, interleaved
    round-robin (round 0 warms up, untimed)."""
    workers = {}
    for name in names:
        ours, theirs = spawn.Pipe()
        proc = spawn.Process(target=_timing_worker, args=(name, theirs), daemon=True)
        proc.start()
        workers[name] = (proc, ours)
    times: Times = {}
    try:
        for case in cases:
            print(f"  timing {case.name} ...", flush=True)
            for round_ in range(repeat + 1):
                for base in bases:
                    for name in _variants(case):
                        _, conn = workers[name]
                        conn.send((case.name, base))
                        answer = conn.recv()
                        if isinstance(answer, str):
                            raise SystemExit(f"{name} on {case.name} failed: {answer}")
                        if round_:
                            times.setdefault((case.name, base, name), []).append(answer)
    finally:
        for proc, conn in workers.values():
            conn.send(None)
            proc.join(60)
    return times


def _profile_all(
    spawn: Any, bases: list[str], cases: list[Case], repeat: int
) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """The budget of the fork engine's runs of each case in each location:
    the profiled variant in a worker of its own, its marks in a file of its own."""
    from pytest_artflow import timeline

    found: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for case in cases:
        name = next((n for n in _variants(case) if n in PROFILED), None)
        if name is None:
            continue
        print(f"  profiling {case.name}, {name} ...", flush=True)
        fd, path = tempfile.mkstemp(prefix="artflow-timeline-", suffix=".txt")
        os.close(fd)
        ours, theirs = spawn.Pipe()
        proc = spawn.Process(target=_profile_worker, args=(name, path, theirs), daemon=True)
        proc.start()
        runs: dict[str, list[timeline.Budget]] = {}
        try:
            for round_ in range(repeat + 1):
                for base in bases:
                    ours.send((case.name, base))
                    answer = ours.recv()
                    if isinstance(answer, str):
                        raise SystemExit(f"{name} on {case.name} failed: {answer}")
                    if round_:
                        runs.setdefault(base, []).append(answer)
        finally:
            ours.send(None)
            proc.join(60)
            os.unlink(path)
        for base, budgets in runs.items():
            found[case.name, base] = (
                name,
                timeline.format_budget(timeline.median_budget(budgets)),
            )
    return found


def _report_times(cases: list[Case], bases: dict[str, str], times: Times) -> None:
    """One table per case, a column group per location: min, median, and the
    median's ratio to the first variant's; the targets under it."""
    width = 2 + max(len(n) for c in cases for n in _variants(c))
    for case in cases:
        variants = list(_variants(case))
        reference = variants[0]
        print(f"\n{case.name} ({case.flow.relative_to(ROOT)}, {case.tasks} tasks)")
        print(f"  {'':<{width}}" + "".join(f"{label:<29.29}" for label in bases.values()))
        columns = f"{'min':>8}{'median':>9}{'vs ' + reference.split()[0]:>9}   "
        print(f"  {'variant':<{width}}" + columns * len(bases))
        for name in variants:
            row = f"  {name:<{width}}"
            for base in bases:
                values = times[(case.name, base, name)]
                ratio = statistics.median(times[(case.name, base, reference)]) / statistics.median(
                    values
                )
                row += f"{min(values):7.3f}s{statistics.median(values):8.3f}s{ratio:8.1f}x   "
            print(row)
        for target in TARGETS:
            if target.case == case.name and target.variant in variants:
                measured = ", ".join(
                    f"{label.split()[0]}: "
                    + target.describe(
                        times[(case.name, base, target.variant)],
                        times[(case.name, base, reference)],
                    )
                    for base, label in bases.items()
                )
                print(f"  target: {target.text(reference)}; {measured}")
    small = next((c for c in cases if c.name == "seed flow"), None)
    large = next((c for c in cases if c.name == "100-way foreach"), None)
    if small and large:
        extra = large.tasks - small.tasks
        print(
            f"\nper-task overhead: (median of {large.name} - median of {small.name}) / "
            f"{extra} extra tasks; target: (d) artflow fork at most {TASK_OVERHEAD_TARGET:g} ms"
        )
        print(f"  {'':<{width}}" + "".join(f"{label:<29.29}" for label in bases.values()))
        for name in _variants(small):
            row = f"  {name:<{width}}"
            for base in bases:
                more = statistics.median(times[(large.name, base, name)]) - statistics.median(
                    times[(small.name, base, name)]
                )
                per_task = 1000 * more / extra
                verdict = ""
                if name == "(d) artflow fork":
                    verdict = "met" if per_task <= TASK_OVERHEAD_TARGET else "missed"
                row += f"{per_task:8.1f} ms/task {verdict:<13}"
            print(row)


def _report_memory(spawn: Any, base: str, case: Case) -> None:
    print(
        f"\npeak memory, {case.name}: the largest RSS of any process of one run "
        "(getrusage(RUSAGE_CHILDREN) in a fresh process); the reader's own peak apart"
    )
    for name in _variants(case):
        ours, theirs = spawn.Pipe()
        proc = spawn.Process(target=_memory_worker, args=(name, case.name, base, theirs))
        proc.start()
        answer = ours.recv()
        proc.join()
        if isinstance(answer, str):
            raise SystemExit(f"{name} on {case.name} failed: {answer}")
        children, itself = answer
        print(
            f"  {name:<26}{children / MB:7.0f} MB = {children / case.artifact_bytes:4.1f}x "
            f"the artifact   (reading process: {itself / MB:.0f} MB)"
        )


if __name__ == "__main__":
    sys.exit(main())
