"""Catch: a step raises, @catch stores the exception and the run goes on."""

from metaflow import FlowSpec, catch, step


class CatchFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.fragile)

    @catch(var="failure", print_exception=False)
    @step
    def fragile(self):
        self.before = "set before the error"
        raise ZeroDivisionError("on purpose")
        self.next(self.end)  # Metaflow reads the graph from the source

    @step
    def end(self):
        self.caught = type(self.failure.exception).__name__ if self.failure else None
        self.caught_text = str(self.failure)


if __name__ == "__main__":
    CatchFlow()
