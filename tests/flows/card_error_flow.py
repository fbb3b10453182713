"""Cards that fail to render: Metaflow stores an error card in their place,
or, with ``save_errors=False``, only logs the failure in the task's output."""

from metaflow import FlowSpec, card, step


class CardErrorFlow(FlowSpec):
    @card(type="no_such_card")
    @step
    def start(self):
        self.next(self.quiet)

    @card(type="no_such_card", save_errors=False)
    @step
    def quiet(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CardErrorFlow()
