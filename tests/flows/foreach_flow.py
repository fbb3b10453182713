"""Foreach: one task per item (split count from a Parameter), joined in index order."""

from metaflow import FlowSpec, Parameter, step


class ForeachFlow(FlowSpec):
    width = Parameter("width", default=4, type=int, help="number of splits")

    @step
    def start(self):
        self.items = [f"item-{i}" for i in range(self.width)]
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.item = self.input
        self.square = self.index * self.index
        print(f"body {self.index}: {self.item}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.items_seen = [i.item for i in inputs]
        self.squares = [i.square for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ForeachFlow()
