"""Score every model in its own foreach task, then keep the best one."""

from dataclasses import dataclass

from metaflow import FlowSpec, Parameter, step


@dataclass
class Model:
    name: str
    size: int


class ScoresFlow(FlowSpec):
    bonus = Parameter("bonus", default=0, help="added to every score")

    @step
    def start(self):
        self.models = [Model("tiny", 1), Model("base", 4), Model("large", 9)]
        self.next(self.score, foreach="models")

    @step
    def score(self):
        model = self.input
        if not isinstance(model, Model):
            raise TypeError(f"expected a Model, got {model!r}")
        self.points = model.size * 10 + self.bonus
        print(f"model #{self.index} {model.name} scores {self.points}")
        self.next(self.pick)

    @step
    def pick(self, inputs):
        best = max(inputs, key=lambda task: task.points)
        self.best = best.input.name
        self.points = [task.points for task in inputs]
        self.next(self.end)

    @step
    def end(self):
        print(f"best model: {self.best}")


if __name__ == "__main__":
    ScoresFlow()
