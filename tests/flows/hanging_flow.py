"""Hanging: a step starts a child process and then never ends.

The step writes its pid and its child's pid to ``<pid_dir>/hang-*.pid``
(``pid_dir`` defaults to the run's working directory), so a test can check
that a timeout or an interrupt killed both.
"""

import os
import subprocess
import sys
import time

from metaflow import FlowSpec, Parameter, step


class HangingFlow(FlowSpec):
    pid_dir = Parameter("pid_dir", default=".", help="where the step writes its pids")

    @step
    def start(self):
        self.next(self.hang)

    @step
    def hang(self):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.path.join(self.pid_dir, "hang-step.pid"), "w") as f:
            f.write(str(os.getpid()))
        with open(os.path.join(self.pid_dir, "hang-child.pid"), "w") as f:
            f.write(str(child.pid))
        print("hanging now", flush=True)
        while True:
            time.sleep(1)
        self.next(self.end)  # Metaflow reads the graph from the source

    @step
    def end(self):
        pass


if __name__ == "__main__":
    HangingFlow()
