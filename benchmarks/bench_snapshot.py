"""What a snapshot costs: the seed flow and a flow with a 50 MB numpy array,
run with the fork engine, then ``run.snapshot()`` serialized the way syrupy's
amber extension writes it (the work ``assert run.snapshot() == snapshot``
adds to a test).

Usage: ``python benchmarks/bench_snapshot.py [--repeat N]``

Runs and snapshots alternate, so the noise of a shared machine falls on both;
medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from syrupy.extensions.amber import AmberDataSerializer

from pytest_artflow import run_flow

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "seed flow (3 tasks)": (ROOT / "examples" / "art_flow.py", {}),
    "50 MB numpy array (2 tasks)": (ROOT / "tests" / "flows" / "big_array_flow.py", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| case | run (fork, read back) | snapshot + serialize | overhead |")
    print("| --- | --- | --- | --- |")
    for name, (flow, params) in CASES.items():
        run_flow(flow, engine="fork", **params)  # warm-up: starts the fork server
        runs, snaps = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run = run_flow(flow, engine="fork", **params)
            ran = time.perf_counter()
            AmberDataSerializer.serialize(run.snapshot())
            runs.append(ran - started)
            snaps.append(time.perf_counter() - ran)
        run_s, snap_s = statistics.median(runs), statistics.median(snaps)
        print(f"| {name} | {run_s:.3f} s | {snap_s * 1000:.1f} ms | {snap_s / run_s:.1%} |")


if __name__ == "__main__":
    main()
