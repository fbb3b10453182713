"""Card: a step with @card that appends a Markdown component."""

from metaflow import FlowSpec, card, current, step
from metaflow.cards import Markdown


class CardFlow(FlowSpec):
    @card(type="blank")
    @step
    def start(self):
        self.value = 42
        current.card.append(Markdown(f"# The value is {self.value}"))
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CardFlow()
