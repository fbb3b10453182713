"""Artifacts of every kind a snapshot writes: containers, a dataclass, a
timestamp, numpy and pandas values large and small, an object without a
readable repr, a foreach and its join."""

import datetime
from dataclasses import dataclass

import numpy as np
import pandas as pd
from metaflow import FlowSpec, step


@dataclass
class Point:
    x: float
    y: float


class Blob:
    """No repr of its own: a snapshot shows its type and a hash."""

    def __init__(self, tags):
        self.tags = tags


class SnapshotFlow(FlowSpec):
    @step
    def start(self):
        self.started_at = datetime.datetime.now()
        self.tags = {"b", "a", "c", "d", "e"}
        self.config = {"z": 1, "a": [0.1, 2.5e-300, float("inf")], "m": (1, "x")}
        self.point = Point(0.1 + 0.2, -0.0)
        self.day = datetime.date(2024, 2, 29)
        self.small = np.arange(6, dtype=np.int32).reshape(2, 3)
        self.big = np.linspace(0.0, 1.0, 5000)
        self.scalar = np.float64(0.5)
        self.frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        self.big_frame = pd.DataFrame({"n": np.arange(400), "f": np.arange(400) / 7})
        self.blob = Blob({"q", "r", "s", "t"})
        self.parts = ["p", "q", "r"]
        self.next(self.body, foreach="parts")

    @step
    def body(self):
        self.part = self.input.upper()
        self.weights = np.full(3, len(self.input) * 1.5)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.parts_done = [i.part for i in inputs]
        self.merge_artifacts(inputs, include=["tags", "config"])
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SnapshotFlow()
