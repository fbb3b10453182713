"""Resume: a foreach whose split 1 fails while RESUME_FLOW_FAIL names its step
(``body``, or ``join``); every task records the RESUME_FLOW_LABEL it ran with,
so a resumed run shows which tasks were cloned and which ran again."""

import os

from metaflow import FlowSpec, Parameter, step


def _ran(step_name: str) -> str:
    if os.environ.get("RESUME_FLOW_FAIL") == step_name:
        raise ValueError(f"{step_name} fails while RESUME_FLOW_FAIL={step_name}")
    return os.environ.get("RESUME_FLOW_LABEL", "first")


class ResumeFlow(FlowSpec):
    width = Parameter("width", default=3, type=int, help="number of splits")

    @step
    def start(self):
        self.label = _ran("start")
        self.items = list(range(self.width))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.label = _ran("body") if self.input == 1 else _ran("")
        self.square = self.input * self.input
        print(f"body {self.input}: {self.square}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.label = _ran("join")
        self.squares = [i.square for i in inputs]
        self.body_labels = [i.label for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.label = _ran("end")
        self.total = sum(self.squares)


if __name__ == "__main__":
    ResumeFlow()
