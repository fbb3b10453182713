"""S3: start reads its input with ``metaflow.S3`` from a root it is given, a
foreach writes a part each under the run's own root (``S3(run=self)``), the
join reads them back and writes the result next to the input."""

from metaflow import S3, FlowSpec, Parameter, step


class S3Flow(FlowSpec):
    root = Parameter("root", help="s3:// URL of the input's directory")

    @step
    def start(self):
        with S3(s3root=self.root) as s3:
            self.lines = s3.get("input.csv").text.splitlines()
        print("read", len(self.lines), "lines")
        self.next(self.part, foreach="lines")

    @step
    def part(self):
        with S3(run=self) as s3:
            self.url = s3.put(f"part-{self.input}", self.input.upper())
        self.next(self.join)

    @step
    def join(self, inputs):
        self.urls = [i.url for i in inputs]
        with S3() as s3:
            self.parts = [obj.text for obj in s3.get_many(self.urls)]
        with S3(s3root=self.root) as s3:
            s3.put("output.txt", "\n".join(self.parts))
        self.next(self.end)

    @step
    def end(self):
        self.count = len(self.parts)


if __name__ == "__main__":
    S3Flow()
