"""Two branches clean and measure the same rows; the join merges them and a
switch decides whether the result needs a review."""

from metaflow import FlowSpec, step


class MergeFlow(FlowSpec):
    @step
    def start(self):
        self.rows = [3, -1, 4, -1, 5]
        self.next(self.clean, self.measure)

    @step
    def clean(self):
        self.stage = "clean"
        self.cleaned = [r for r in self.rows if r >= 0]
        self.next(self.join)

    @step
    def measure(self):
        self.stage = "measure"
        self.dropped = sum(1 for r in self.rows if r < 0)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.stages = sorted(branch.stage for branch in inputs)
        self.merge_artifacts(inputs, exclude=["stage"])
        self.summary = f"{len(inputs.clean.cleaned)} kept, {inputs.measure.dropped} dropped"
        self.next(self.triage)

    @step
    def triage(self):
        self.verdict = "review" if self.dropped > 1 else "ok"
        self.next({"review": self.review, "ok": self.end}, condition="verdict")

    @step
    def review(self):
        print(f"please review: {self.summary}")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    MergeFlow()
