"""Sets the artifacts it is given in `start` and reads every one of them back in `end`."""

import pickle

from metaflow import FlowSpec, Parameter, step


class EchoFlow(FlowSpec):
    payload = Parameter("payload", default="", help="a pickle file of {name: value}")

    @step
    def start(self):
        values = {"example": [1, 2, 3]}
        if self.payload:
            with open(self.payload, "rb") as f:
                values = pickle.load(f)
        for name, value in values.items():
            setattr(self, name, value)
        self.names = sorted(values)
        self.next(self.end)

    @step
    def end(self):
        self.echoed = {name: getattr(self, name) for name in self.names}


if __name__ == "__main__":
    EchoFlow()
