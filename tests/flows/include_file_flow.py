"""IncludeFile: a file included at run start, its default path relative to this file."""

from metaflow import FlowSpec, IncludeFile, step


class IncludeFileFlow(FlowSpec):
    notes = IncludeFile("notes", default="data/notes.txt", help="text to include")

    @step
    def start(self):
        self.lines = self.notes.splitlines()
        self.next(self.end)

    @step
    def end(self):
        self.first = self.lines[0]


if __name__ == "__main__":
    IncludeFileFlow()
