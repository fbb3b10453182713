"""How fast, and how memory-hungry, ``pytest_artflow.serialization.roundtrip`` is.

    python benchmarks/bench_serialization.py [--repeat 5] [--count 2000] [--megabytes 200]

Prints round trips per second for distinct small objects (each one a new blob
for Metaflow's content-addressed store, the slow case) and for one repeated
object (already stored: what a shrinking hypothesis run often sends), then
the peak memory of a large numpy array round trip, measured in a child
process so that nothing else has touched its memory. The round trip writes to
a private directory under ``tempfile.gettempdir()`` (``TMPDIR``), whose file
creation speed dominates the small-object figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_artflow.serialization import roundtrip


def small_objects(count: int, tag: int) -> list[object]:
    return [
        {"id": n, "tag": tag, "scores": [1.5, float(n), -0.0], "label": f"item-{n}", "ok": True}
        for n in range(count)
    ]


def rate(values: list[object]) -> float:
    start = time.perf_counter()
    for value in values:
        roundtrip(value)
    return len(values) / (time.perf_counter() - start)


def bench_small(count: int, repeat: int) -> None:
    roundtrip(0)  # import metaflow and create the datastore outside the timing
    distinct = [rate(small_objects(count, tag)) for tag in range(repeat)]
    same = small_objects(1, -1) * count
    repeated = [rate(same) for _ in range(repeat)]
    print(f"temporary directory: {tempfile.gettempdir()}")
    for label, rates in (("distinct small objects", distinct), ("one repeated object", repeated)):
        print(
            f"{label:>24}: min {min(rates):,.0f}/s, median {statistics.median(rates):,.0f}/s"
            f"  ({repeat} x {count} round trips)"
        )


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure_memory(megabytes: int, kind: str) -> dict[str, float]:
    """Runs in the child: one round trip of a fresh array."""
    import numpy as np

    roundtrip(0)
    before_array = resident_bytes()
    length = megabytes * 2**20 // 8
    if kind == "random":  # incompressible: gzip saves nothing, the worst case
        array = np.random.default_rng(0).random(length)
    else:
        array = np.arange(length, dtype=np.float64)
    before = resident_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    loaded = roundtrip(array)
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(loaded, array)
    peak = peak_bytes()
    size = array.nbytes
    return {
        "seconds": seconds,
        "extra_peak": (peak - before) / size,
        "total_peak": (peak - before_array) / size,
        "traced_peak": traced_peak / size,
    }


def bench_memory(megabytes: int) -> None:
    for kind in ("random", "arange"):
        child = subprocess.run(
            [sys.executable, __file__, "--child-memory", str(megabytes), kind],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"{megabytes} MB float64 array ({kind}): {result['seconds']:.1f} s; peak memory "
            f"during the round trip {result['extra_peak']:.2f}x its size on top of it "
            f"(tracemalloc {result['traced_peak']:.2f}x), {result['total_peak']:.2f}x "
            "counting the array itself (maxrss, child process)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=200, help="0 skips the memory test")
    parser.add_argument("--child-memory", nargs=2, metavar=("MB", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        megabytes, kind = args.child_memory
        print(json.dumps(measure_memory(int(megabytes), kind)))
        return
    bench_small(args.count, args.repeat)
    if args.megabytes:
        bench_memory(args.megabytes)


if __name__ == "__main__":
    main()
