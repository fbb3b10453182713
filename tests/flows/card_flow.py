"""Cards: a blank card with a Markdown component, the default card, a card
with an id, several cards on one step and an editable default card with
Markdown and Table components."""

from metaflow import FlowSpec, card, current, step
from metaflow.cards import Markdown, Table


class CardFlow(FlowSpec):
    @card(type="blank")
    @step
    def start(self):
        self.value = 42
        current.card.append(Markdown(f"# The value is {self.value}"))
        self.next(self.plain)

    @card
    @step
    def plain(self):
        self.rows = [[1, "one"], [2, "two"]]
        self.next(self.several)

    @card(type="blank", id="summary")
    @card(type="blank", id="details")
    @card
    @step
    def several(self):
        current.card.append(Markdown("## Appended to the default card"))
        current.card["summary"].append(Markdown(f"## {len(self.rows)} rows"))
        current.card["details"].append(Table(self.rows, headers=["n", "name"]))
        self.next(self.end)

    @card(id="final")
    @step
    def end(self):
        current.card["final"].append(Markdown("# Done"))
        current.card["final"].append(Table([["a", 1], ["b", 2]], headers=["key", "count"]))


if __name__ == "__main__":
    CardFlow()
