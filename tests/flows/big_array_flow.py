"""A 50 MB numpy array made in one step and passed to the next."""

import numpy as np
from metaflow import FlowSpec, Parameter, step


class BigArrayFlow(FlowSpec):
    size_mb = Parameter("size_mb", default=50, type=int, help="array size in MB")

    @step
    def start(self):
        rng = np.random.default_rng(0)
        self.array = rng.random(self.size_mb * 1024 * 1024 // 8)
        self.next(self.end)

    @step
    def end(self):
        self.total = float(self.array.sum())


if __name__ == "__main__":
    BigArrayFlow()
