"""Run Metaflow's own core test suite through pytest-artflow and judge the runs
with Metaflow's own checkers.

Metaflow's source repository has a suite (``test/core``) that writes a flow
for every graph shape x feature, runs it with ``python test_flow.py run`` and
then checks what the run left with two checkers: ``MetadataCheck`` (Metaflow's
client) and ``CliCheck`` (Metaflow's ``dump``/``logs`` commands). It is not in
the package on PyPI, so this script takes the path of a checkout::

    python scripts/metaflow_core.py ~/src/metaflow/test/core --engine fork
    python scripts/metaflow_core.py CORE --engine subprocess --tests BasicArtifactTest
    python scripts/metaflow_core.py CORE --cli     # also run each flow as Metaflow's CLI

Each case runs through ``artflow_run``'s machinery in a sandbox of its own (a
``resume`` case is resumed with ``artflow_resume``), then both checkers run
against that sandbox, in the directory the flow was written to, exactly as
Metaflow's ``run_tests.py`` runs them. With ``--cli``, each case is also run as
``python test_flow.py run`` in another sandbox and judged the same way, so a
case that fails under artflow but passes under the CLI is a hole in artflow
(and one that fails both ways is not). Prints one line per case and a summary;
exits 1 if artflow fails a case the CLI (or the suite's own expectation) passes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The suite's local context, as its ``contexts.json`` names it.
CONTEXT = "python3-all-local"
CHECKS = ("CliCheck", "MetadataCheck")


@dataclass
class Case:
    test: str
    graph: str
    directory: Path
    flow_name: str
    should_fail: bool
    should_resume: bool
    resume_step: str | None

    def __str__(self) -> str:
        return f"{self.test} x {self.graph}"


def load_cases(
    core: Path, tests: set[str], skip: set[str], graphs: set[str], work: Path
) -> list[Case]:
    """Write every valid (test, graph) flow of the suite, with its checker, into ``work``."""
    sys.path[:0] = [str(core), str(core / "tests")]
    from metaflow_test import MetaflowTest  # type: ignore[import-not-found]
    from metaflow_test.formatter import FlowFormatter  # type: ignore[import-not-found]

    context = _context(core)
    disabled = set(map(str, context.get("disabled_tests", [])))
    specs = [json.loads(p.read_text()) for p in sorted((core / "graphs").glob("*.json"))]
    cases = []
    for path in sorted((core / "tests").glob("*.py")):
        module = importlib.import_module(path.stem)
        for name in dir(module):
            obj = getattr(module, name)
            if (
                not isinstance(obj, type)
                or not issubclass(obj, MetaflowTest)
                or obj is MetaflowTest
                or name in disabled
                or (tests and name.lower() not in tests)
                or name.lower() in skip
            ):
                continue
            for spec in specs:
                if graphs and spec["name"].lower() not in graphs:
                    continue
                formatter = FlowFormatter(spec, obj())
                if not formatter.valid:
                    continue
                directory = work / f"{name}-{spec['name']}"
                directory.mkdir(parents=True)
                (directory / "test_flow.py").write_text(formatter.flow_code)
                (directory / "check_flow.py").write_text(formatter.check_code)
                shutil.copytree(core / "metaflow_test", directory / "metaflow_test")
                for file in formatter.copy_files:
                    shutil.copy2(core / "tests" / file, directory / file)
                cases.append(
                    Case(
                        test=name,
                        graph=spec["name"],
                        directory=directory,
                        flow_name=formatter.flow_name,
                        should_fail=formatter.should_fail,
                        should_resume=formatter.should_resume,
                        resume_step=formatter.resume_step,
                    )
                )
    return cases


def _context(core: Path) -> dict[str, Any]:
    contexts = json.loads((core / "contexts.json").read_text())["contexts"]
    return next(c for c in contexts if c["name"] == CONTEXT)


def _run_options(context: dict[str, Any]) -> tuple[list[str], int | None]:
    tags, workers = [], None
    for option in context["run_options"]:
        key, _, value = option.partition("=")
        if key == "--tag":
            tags.append(value)
        elif key == "--max-workers":
            workers = int(value)
    return tags, workers


def check(case: Case, sandbox: Any, run_id: str, context: dict[str, Any]) -> str | None:
    """Metaflow's checkers on the run: None if both are satisfied, else what they said."""
    env = sandbox.environ(_flow_env(case, context))
    # As in Metaflow's suite, the checkers run where the datastore is (its card
    # commands look for cards from the working directory), beside the flow.
    shutil.copytree(case.directory, sandbox.root, dirs_exist_ok=True)
    for checker in CHECKS:
        proc = subprocess.run(
            [sys.executable, "check_flow.py", checker, run_id, *context["top_options"]],
            cwd=sandbox.root,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            return f"{checker}: {said[-1] if said else proc.returncode}"
    return None


def _flow_env(case: Case, context: dict[str, Any]) -> dict[str, str]:
    env = {k: v.format(nonce="artflow") for k, v in context["env"].items()}
    env.pop("METAFLOW_DEFAULT_METADATA", None)
    # The flow imports metaflow_test from its own directory, as the suite arranges.
    env["PYTHONPATH"] = os.pathsep.join([str(case.directory), *sys.path])
    return env


def run_artflow(case: Case, engine: str, context: dict[str, Any], root: Path) -> str | None:
    """The case through ``artflow_run`` (and ``artflow_resume``): None if it passed."""
    from benchmarks.bench_engines import _runner  # type: ignore[import-not-found]
    from pytest_artflow.sandbox import Sandbox

    sandbox = Sandbox(root)
    runner = _runner(sandbox, engine)
    tags, workers = _run_options(context)
    options = dict(tags=tags, max_workers=workers, env=_flow_env(case, context), check=False)
    with sandbox.client_scope():
        run = runner(case.directory / "test_flow.py", **options)
        finished = run.finished
        if not finished and case.should_resume:
            from pytest_artflow.resume import ArtflowResume

            resume_options = {k: v for k, v in options.items() if k != "env"}
            run = ArtflowResume(runner)(run, case.resume_step, env=options["env"], **resume_options)
            finished = run.finished
        if case.should_fail:
            return None if not finished else "the flow should have failed but did not"
        if not finished:
            return f"the run failed: {run.failure}"
        return check(case, sandbox, run.run_id, context)


def run_cli(case: Case, context: dict[str, Any], root: Path) -> str | None:
    """The case as Metaflow's suite runs it, in a sandbox's environment."""
    from pytest_artflow.sandbox import Sandbox

    sandbox = Sandbox(root)
    env = sandbox.environ(_flow_env(case, context))

    def command(mode: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "test_flow.py",
                *context["top_options"],
                mode,
                *args,
                "--run-id-file",
                str(root / "run-id"),
                *context["run_options"],
            ],
            cwd=case.directory,
            env=env,
            capture_output=True,
            text=True,
        )

    proc = command("run")
    if proc.returncode and case.should_resume:
        proc = command("resume", *([case.resume_step] if case.resume_step else []))
    if case.should_fail:
        return None if proc.returncode else "the flow should have failed but did not"
    if proc.returncode:
        return f"the run failed: {proc.stderr.strip().splitlines()[-1:]}"
    return check(case, sandbox, (root / "run-id").read_text().strip(), context)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("core", type=Path, help="Metaflow's test/core directory")
    parser.add_argument("--engine", default="fork")
    parser.add_argument("--tests", default="", help="comma-separated test classes")
    parser.add_argument("--skip", default="", help="comma-separated test classes to leave out")
    parser.add_argument("--graphs", default="", help="comma-separated graph names")
    parser.add_argument("--cli", action="store_true", help="also run each case as the CLI")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    def names(text: str) -> set[str]:
        return {t.strip().lower() for t in text.split(",") if t.strip()}

    core = args.core.resolve()
    context = _context(core)
    work = Path(tempfile.mkdtemp(prefix="artflow-core-"))
    holes = 0
    try:
        cases = load_cases(
            core, names(args.tests), names(args.skip), names(args.graphs), work / "flows"
        )
        print(f"{len(cases)} cases, engine {args.engine}")
        tally: dict[str, int] = {}
        for n, case in enumerate(cases):
            started = time.perf_counter()
            try:
                ours = run_artflow(case, args.engine, context, work / f"sandbox-{n}")
            except Exception:
                ours = "raised: " + traceback.format_exc().strip().splitlines()[-1]
            theirs = run_cli(case, context, work / f"cli-{n}") if args.cli else None
            if ours is None:
                verdict = "ok"
            elif args.cli and theirs is not None:
                verdict = "fails under the CLI too"
            else:
                verdict = "HOLE"
                holes += 1
            tally[verdict] = tally.get(verdict, 0) + 1
            took = time.perf_counter() - started
            print(f"{verdict:24} {case} ({took:.1f} s){'' if ours is None else ': ' + ours}")
            sys.stdout.flush()
        print(", ".join(f"{k}: {v}" for k, v in sorted(tally.items())))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if holes else 0


if __name__ == "__main__":
    sys.exit(main())
