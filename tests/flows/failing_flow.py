"""Failing: the second step raises ValueError after printing; the end never runs."""

from metaflow import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.before = "made it"
        self.next(self.explode)

    @step
    def explode(self):
        print("about to fail")
        raise ValueError("bad value in step explode")
        self.next(self.end)  # Metaflow reads the graph from the source

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailingFlow()
