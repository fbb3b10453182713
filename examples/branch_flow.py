"""Two branches change different artifacts; the join merges them."""

from metaflow import FlowSpec, step


class BranchFlow(FlowSpec):
    @step
    def start(self):
        self.base = 10
        self.next(self.double, self.shift)

    @step
    def double(self):
        self.doubled = self.base * 2
        self.next(self.join)

    @step
    def shift(self):
        self.shifted = self.base + 1
        self.next(self.join)

    @step
    def join(self, inputs):
        self.merge_artifacts(inputs)
        self.both = inputs.double.doubled + inputs.shift.shifted
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BranchFlow()
