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
        # Each file appears whole (written, then renamed): a test waits for it.
        for name, pid in (("hang-step.pid", os.getpid()), ("hang-child.pid", child.pid)):
            path = os.path.join(self.pid_dir, name)
            with open(path + ".tmp", "w") as f:
                f.write(str(pid))
            os.replace(path + ".tmp", path)
        print("hanging now", flush=True)
        while True:
            time.sleep(1)
        self.next(self.end)  # Metaflow reads the graph from the source

    @step
    def end(self):
        pass


if __name__ == "__main__":
    HangingFlow()
