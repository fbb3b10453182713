"""Fan out over a list, square each item in its own task, and gather the results."""

from metaflow import FlowSpec, Parameter, step


class ForeachFlow(FlowSpec):
    count = Parameter("count", default=3, help="how many numbers to square")

    @step
    def start(self):
        self.numbers = list(range(1, self.count + 1))
        self.next(self.square, foreach="numbers")

    @step
    def square(self):
        self.squared = self.input * self.input
        print(f"{self.input} squared is {self.squared}")
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.squares = [task.squared for task in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.squares)


if __name__ == "__main__":
    ForeachFlow()
