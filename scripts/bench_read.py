"""Time reading a run's results in the pytest process, apart from running it.

Usage: ``PYTHONPATH=<checkout> python scripts/bench_read.py [--repeat N]
[--case seed|foreach100] [--values] [--profile]``

Each case runs its flow once (fork engine) in a sandbox made once, then reads
that run back ``--repeat`` times with ``read_run`` (what ``artflow_run`` calls
after the run), inside the sandbox's client scope, as a test would. With
``--values`` each timed read also touches every artifact value of every task
(what the ``--artflow`` item and ``snapshot()`` do), so that reading values
on first access is not counted as free. ``--profile`` prints cProfile's top
entries of the reads instead of timing them; ``--timeline FILE`` writes the
reading phases' timeline marks (``read.start``, ``read.listed``,
``read.tasks``, ``read.end``, ``read.values``) to FILE and prints the median
time between them. Only the reading is timed: the
run, and making and removing the sandbox, are not.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "seed": ("examples/art_flow.py", {}),
    "foreach100": ("tests/flows/foreach_flow.py", {"width": 100}),
}


def _touch_values(run: Any) -> int:
    """Read every artifact value of every task; how many."""
    n = 0
    for task in run.tasks:
        for name in list(task.artifacts):
            task.artifacts[name]
            n += 1
    return n


def _phases(path: str) -> None:
    """Median time from each reading mark to the next, over the reads."""
    from pytest_artflow import timeline

    gaps: dict[str, list[float]] = {}
    marks = [m for m in timeline.read(path) if m.phase.startswith("read.")]
    for before, after in itertools.pairwise(marks):
        if before.phase == "read.end":
            continue
        gaps.setdefault(f"{before.phase} -> {after.phase}", []).append((after.ns - before.ns) / 1e6)
    for name, ms in gaps.items():
        print(f"  {name:<28} median {statistics.median(ms):7.2f} ms  (x{len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--case", action="append", choices=sorted(CASES))
    parser.add_argument("--values", action="store_true", help="also read every value")
    parser.add_argument("--profile", action="store_true", help="cProfile the reads")
    parser.add_argument("--timeline", metavar="FILE", help="write and sum up timeline marks")
    args = parser.parse_args()

    from pytest_artflow import flows, timeline
    from pytest_artflow.results.read import read_run
    from pytest_artflow.runner import ArtflowRunner
    from pytest_artflow.sandbox import Sandbox
    from pytest_artflow.standalone import _outside_pytest

    context = _outside_pytest()
    for name in args.case or sorted(CASES):
        path, params = CASES[name]
        root = Path(tempfile.mkdtemp(prefix=f"bench-read-{name}-"))
        try:
            sandbox = Sandbox(root)
            runner = ArtflowRunner(sandbox, context.engines, context.hook, context.defaults)
            with sandbox.client_scope():
                run = runner(str(ROOT / path), **params)
                ref = flows.resolve(str(ROOT / path), [])
                times = []
                profile = cProfile.Profile() if args.profile else None
                if args.timeline:
                    timeline.start(args.timeline)
                for _ in range(args.repeat):
                    begin = time.perf_counter()
                    if profile is not None:
                        profile.enable()
                    again = read_run(sandbox, ref, run.run_id)
                    if args.values:
                        _touch_values(again)
                    if profile is not None:
                        profile.disable()
                    times.append(time.perf_counter() - begin)
                assert again.successful and len(again.tasks) == len(run.tasks)
            if args.timeline:
                timeline.start(None)
            ms = [t * 1000 for t in times]
            print(
                f"{name:<11} tasks={len(run.tasks):<4} values={'yes' if args.values else 'no '} "
                f"median={statistics.median(ms):8.1f} ms  min={min(ms):8.1f} ms  "
                f"(n={len(ms)})"
            )
            if profile is not None:
                pstats.Stats(profile).sort_stats("cumulative").print_stats(35)
            if args.timeline:
                _phases(args.timeline)
                Path(args.timeline).unlink()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    context.engines.close()


if __name__ == "__main__":
    main()
