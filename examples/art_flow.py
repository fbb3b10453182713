"""The seed flow: an artifact set in one step, changed in the next."""

from metaflow import FlowSpec, step


class ArtFlow(FlowSpec):
    @step
    def start(self):
        self.some_data = [1, 2, 3]
        self.next(self.middle)

    @step
    def middle(self):
        print(f"the data artifact is: {self.some_data}")
        self.some_data[-1] = 4
        self.next(self.end)

    @step
    def end(self):
        print(f"the data artifact is: {self.some_data}")


if __name__ == "__main__":
    ArtFlow()
