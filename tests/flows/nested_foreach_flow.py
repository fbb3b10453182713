"""Nested foreach: a foreach inside a foreach, joined at both levels."""

from metaflow import FlowSpec, step


class NestedForeachFlow(FlowSpec):
    @step
    def start(self):
        self.outer = ["x", "y"]
        self.next(self.outer_body, foreach="outer")

    @step
    def outer_body(self):
        self.letter = self.input
        self.inner = [1, 2, 3]
        self.next(self.inner_body, foreach="inner")

    @step
    def inner_body(self):
        self.cell = f"{self.letter}{self.input}"
        self.next(self.inner_join)

    @step
    def inner_join(self, inputs):
        self.row = [i.cell for i in inputs]
        self.next(self.outer_join)

    @step
    def outer_join(self, inputs):
        self.grid = [i.row for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NestedForeachFlow()
