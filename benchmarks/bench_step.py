"""What one ``artflow_step`` costs, beside Metaflow's own ``spin``.

    python benchmarks/bench_step.py [--repeat 10] [--engines subprocess,fork]

For each engine: ``artflow_step(ArtFlow, "middle", inputs=...)`` (a step from
scratch: Metaflow's ``init``, the made-up parent task, the ``step`` command)
and ``artflow_step(run, "middle", ...)`` (a re-run: the run's parent task
copied, no ``init``), each from the call to the ``TaskResult``. Then
``python examples/art_flow.py spin ArtFlow/<run>/middle/<task>`` with an
artifacts module overriding ``some_data``: Metaflow 2.19's own single-step
re-run, a new interpreter that runs a runtime which starts the task in
another. Every figure is the min and median of ``--repeat`` calls after one
warm-up call (the fork engine starts its server then), in one sandbox under
``TMPDIR``; the machine's other work shows in the median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.art_flow import ArtFlow  # noqa: E402
from pytest_artflow.engines import EngineSet  # noqa: E402
from pytest_artflow.runner import ArtflowRunner, RunDefaults  # noqa: E402
from pytest_artflow.sandbox import Sandbox  # noqa: E402
from pytest_artflow.step import ArtflowStep  # noqa: E402


class Hooks:
    """The two hooks a runner calls, without a pytest session."""

    def pytest_artflow_engines(self) -> list[dict[str, Any]]:
        from pytest_artflow.engines.fork import ForkEngine
        from pytest_artflow.engines.subprocess import SubprocessEngine

        return [{"subprocess": SubprocessEngine, "fork": ForkEngine}]

    def pytest_artflow_configure_run(self, config: Any) -> list[None]:
        return []


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    call()  # warm-up: imports, the fork server
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def show(label: str, times: list[float]) -> None:
    print(
        f"{label:>44}: min {min(times) * 1000:6.0f} ms, "
        f"median {statistics.median(times) * 1000:6.0f} ms  ({len(times)} calls)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--engines", default="subprocess,fork")
    args = parser.parse_args()

    engines = EngineSet(Hooks())
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        sandbox = Sandbox(Path(tmp))
        try:
            with sandbox.client_scope():
                runner = ArtflowRunner(sandbox, engines, Hooks(), RunDefaults(), [ROOT])
                step = ArtflowStep(runner)
                run = runner(ArtFlow)
                for engine in args.engines.split(","):
                    show(
                        f"artflow_step from scratch ({engine})",
                        timed(
                            lambda e=engine: step(
                                ArtFlow, "middle", inputs={"some_data": [9, 9]}, engine=e
                            ),
                            args.repeat,
                        ),
                    )
                    show(
                        f"artflow_step re-run of a run's step ({engine})",
                        timed(
                            lambda e=engine: step(
                                run, "middle", inputs={"some_data": [9, 9]}, engine=e
                            ),
                            args.repeat,
                        ),
                    )
                show(
                    "Metaflow's spin of the run's step",
                    timed(lambda: spin(sandbox, run), args.repeat),
                )
        finally:
            engines.close()


def spin(sandbox: Sandbox, run: Any) -> None:
    """``python flow.py spin`` as a user would call it, in the sandbox."""
    module = sandbox.root / "tmp" / "spin_artifacts.py"
    module.write_text("ARTIFACTS = {'some_data': [9, 9]}\n")
    task = run["middle"].task
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "art_flow.py"),
            "--no-pylint",
            "spin",
            task.pathspec.split("/", 1)[1],
            "--artifacts-module",
            str(module),
        ],
        env=sandbox.environ(),
        cwd=sandbox.root,
        check=True,
        capture_output=True,
    )


if __name__ == "__main__":
    main()
