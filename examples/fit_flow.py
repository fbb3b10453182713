"""A flow whose every artifact is snapshot-tested: a foreach over learning
rates, numpy weights, a pandas summary, and a timestamp that differs on
every run (left out of the snapshot, or matched by its type)."""

import datetime

import numpy as np
import pandas as pd
from metaflow import FlowSpec, step


class FitFlow(FlowSpec):
    @step
    def start(self):
        self.trained_at = datetime.datetime.now(datetime.timezone.utc)
        # Quarters of integers: every sum below is exact on any machine.
        self.features = np.arange(300, dtype=np.float64).reshape(100, 3) / 4
        self.learning_rates = [0.5, 0.25, 0.125]
        self.next(self.fit, foreach="learning_rates")

    @step
    def fit(self):
        self.rate = self.input
        self.weights = self.features.sum(axis=0) * self.rate
        self.next(self.pick)

    @step
    def pick(self, inputs):
        self.summary = pd.DataFrame(
            {"rate": [i.rate for i in inputs], "w0": [float(i.weights[0]) for i in inputs]}
        )
        best = max(inputs, key=lambda i: i.rate)
        self.best_rate = best.rate
        self.best_weights = best.weights
        self.next(self.end)

    @step
    def end(self):
        print(f"best rate {self.best_rate}: {self.best_weights}")


if __name__ == "__main__":
    FitFlow()
