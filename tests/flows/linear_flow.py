"""Linear: three steps passing artifacts of many types, one of them changed on the way."""

import datetime
import decimal
import fractions

from metaflow import FlowSpec, step


class LinearFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = [1, 2, 3]
        self.mapping = {"a": (1, 2.5), "b": {None, True}}
        self.text = "héllo ✓"
        self.blob = bytes(range(256))
        self.when = datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.timezone.utc)
        self.exact = (decimal.Decimal("1.10"), fractions.Fraction(1, 3), 1 + 2j)
        self.next(self.middle)

    @step
    def middle(self):
        self.numbers = [*self.numbers, 4]
        self.total = sum(self.numbers)
        self.next(self.end)

    @step
    def end(self):
        self.summary = f"{self.text}: {self.total}"


if __name__ == "__main__":
    LinearFlow()
