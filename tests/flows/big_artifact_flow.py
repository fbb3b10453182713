"""Big artifact: one step makes ``size_mb`` MB of random bytes, the next reads them."""

import hashlib
import os

from metaflow import FlowSpec, Parameter, step


class BigArtifactFlow(FlowSpec):
    size_mb = Parameter("size_mb", default=50, type=int, help="artifact size in MB")

    @step
    def start(self):
        # Random bytes do not compress: the worst case for Metaflow's gzip'd store.
        self.payload = os.urandom(self.size_mb * 1024 * 1024)
        self.digest = hashlib.sha256(self.payload).hexdigest()
        self.next(self.end)

    @step
    def end(self):
        self.intact = hashlib.sha256(self.payload).hexdigest() == self.digest


if __name__ == "__main__":
    BigArtifactFlow()
