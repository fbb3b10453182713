"""Output: steps print to stdout and stderr (several lines, unicode, no final newline);
the file prints as it loads, so every process of a run prints that line too."""

import sys

from metaflow import FlowSpec, step

print("output_flow.py is loading")


class OutputFlow(FlowSpec):
    @step
    def start(self):
        print("out: first line")
        print("err: first line", file=sys.stderr)
        print("out: ünïcode ✓")
        sys.stdout.write("out: no newline at the end")
        self.next(self.end)

    @step
    def end(self):
        for i in range(3):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)


if __name__ == "__main__":
    OutputFlow()
