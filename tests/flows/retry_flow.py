"""Retry: a step fails on its first attempt and succeeds on the second (@retry).

The first attempt leaves a marker file in the directory the Parameter ``marker_dir``
names (default: the run's working directory), so each run starts failing again.
"""

import os

from metaflow import FlowSpec, Parameter, current, retry, step


class RetryFlow(FlowSpec):
    marker_dir = Parameter("marker_dir", default=".", help="where attempts leave markers")

    @step
    def start(self):
        self.next(self.flaky)

    @retry(times=1, minutes_between_retries=0)
    @step
    def flaky(self):
        marker = os.path.join(self.marker_dir, f"flaky-{current.run_id}")
        self.attempt_seen = current.retry_count
        print(f"attempt {current.retry_count}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt fails on purpose")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RetryFlow()
