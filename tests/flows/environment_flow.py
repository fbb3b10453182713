"""Environment: @environment gives one step its own environment variables."""

import os

from metaflow import FlowSpec, environment, step


class EnvironmentFlow(FlowSpec):
    @environment(vars={"ARTFLOW_GREETING": "hello", "TZ": "Asia/Tokyo"})
    @step
    def start(self):
        import time

        self.greeting = os.environ.get("ARTFLOW_GREETING")
        self.zone = time.strftime("%Z", time.localtime(0))
        self.next(self.end)

    @step
    def end(self):
        self.greeting_later = os.environ.get("ARTFLOW_GREETING")


if __name__ == "__main__":
    EnvironmentFlow()
