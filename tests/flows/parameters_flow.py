"""Parameters: int, float, str, bool and JSONType, with defaults and a dashed name."""

from metaflow import FlowSpec, JSONType, Parameter, step


class ParametersFlow(FlowSpec):
    count = Parameter("count", default=3, type=int)
    ratio = Parameter("ratio", default=0.5, type=float)
    label = Parameter("label", default="plain")
    verbose = Parameter("verbose", default=False, type=bool)
    settings = Parameter("my-settings", default='{"depth": 2, "tags": ["a"]}', type=JSONType)

    @step
    def start(self):
        self.product = self.count * self.ratio
        self.echo = (self.label, self.verbose, self.settings)
        self.next(self.end)

    @step
    def end(self):
        self.depth = self.settings["depth"]


if __name__ == "__main__":
    ParametersFlow()
