"""Read a CSV from S3 in start, total each row in a foreach, write the totals
back next to the input. Its input lives in S3, so its test is where it runs
(``examples/test_csv_totals_flow.py``, with the ``artflow_s3`` fixture)."""

import csv
import io

from metaflow import S3, FlowSpec, Parameter, step


class CsvTotalsFlow(FlowSpec):
    source = Parameter("source", help="s3:// directory with scores.csv; totals.csv goes there")

    @step
    def start(self):
        with S3(s3root=self.source) as s3:
            self.rows = list(csv.DictReader(io.StringIO(s3.get("scores.csv").text)))
        self.next(self.total, foreach="rows")

    @step
    def total(self):
        self.person = self.input["name"]
        self.row_total = int(self.input["a"]) + int(self.input["b"])
        self.next(self.join)

    @step
    def join(self, inputs):
        self.totals = {i.person: i.row_total for i in inputs}
        self.next(self.end)

    @step
    def end(self):
        lines = [f"{name},{total}" for name, total in sorted(self.totals.items())]
        with S3(s3root=self.source) as s3:
            self.written = s3.put("totals.csv", "\n".join(["name,total", *lines]))


if __name__ == "__main__":
    CsvTotalsFlow()
