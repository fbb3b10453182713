"""A toy training loop driven by Parameters, one of them JSON and one with a dash."""

from metaflow import FlowSpec, JSONType, Parameter, step


class TrainFlow(FlowSpec):
    epochs = Parameter("epochs", default=3, type=int)
    learning_rate = Parameter("learning-rate", default=0.1, type=float)
    model = Parameter("model", default={"depth": 2, "dropout": 0.5}, type=JSONType)
    verbose = Parameter("verbose", default=False, type=bool)

    @step
    def start(self):
        if self.epochs < 0:
            raise ValueError(f"epochs must not be negative, got {self.epochs}")
        self.loss = 1.0 + self.model["depth"] * self.model["dropout"]
        self.history = []
        self.next(self.train)

    @step
    def train(self):
        for epoch in range(self.epochs):
            self.loss *= 1.0 - min(max(self.learning_rate, 0.0), 1.0) / 2
            self.history.append(self.loss)
            if self.verbose:
                print(f"epoch {epoch}: loss {self.loss:.4f}")
        self.next(self.end)

    @step
    def end(self):
        print(f"final loss: {self.loss}")


if __name__ == "__main__":
    TrainFlow()
