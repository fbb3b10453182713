"""numpy at import and in every step: its BLAS starts a thread pool as it is
imported, and stops it around each fork (its own fork handler), so the fork
engine forks these tasks too; each task's BLAS starts its pool again on its
first product."""

import numpy as np
from metaflow import FlowSpec, step


class NumpyFlow(FlowSpec):
    @step
    def start(self):
        rng = np.random.default_rng(7)
        # Integers: every product below is exact, threads or not.
        self.matrix = rng.integers(0, 10, size=(200, 200)).astype(np.float64)
        self.powers = [1, 2, 3]
        self.next(self.power, foreach="powers")

    @step
    def power(self):
        self.exponent = self.input
        self.result = np.linalg.matrix_power(self.matrix, self.exponent) % 1000
        self.next(self.join)

    @step
    def join(self, inputs):
        self.traces = sorted(float(np.trace(i.result)) for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print(f"traces {self.traces}")


if __name__ == "__main__":
    NumpyFlow()
