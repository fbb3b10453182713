"""Catch in end: some foreach splits and the end step raise, @catch handles
each; the run finishes (exit 0) but Metaflow counts it as not successful."""

from metaflow import FlowSpec, catch, step


class CatchEndFlow(FlowSpec):
    @step
    def start(self):
        self.items = ["a", "b", "c"]
        self.next(self.body, foreach="items")

    @catch(var="problem", print_exception=False)
    @step
    def body(self):
        if self.input == "b":
            raise ValueError(f"cannot handle {self.input}")
        self.out = self.input.upper()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.outs = [getattr(i, "out", None) for i in inputs]
        self.next(self.end)

    @catch
    @step
    def end(self):
        self.before = "set before the error"
        raise RuntimeError(f"end saw {self.outs}")


if __name__ == "__main__":
    CatchEndFlow()
