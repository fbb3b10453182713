"""Switch: a conditional step; only the branch the Parameter names runs."""

from metaflow import FlowSpec, Parameter, step


class SwitchFlow(FlowSpec):
    mode = Parameter("mode", default="fast", help="'fast' or 'slow'")

    @step
    def start(self):
        self.chosen_at = "start"
        self.next({"fast": self.fast, "slow": self.slow}, condition="mode")

    @step
    def fast(self):
        self.speed = "fast"
        self.next(self.end)

    @step
    def slow(self):
        self.speed = "slow"
        self.next(self.end)

    @step
    def end(self):
        self.outcome = f"{self.speed} via {self.chosen_at}"


if __name__ == "__main__":
    SwitchFlow()
