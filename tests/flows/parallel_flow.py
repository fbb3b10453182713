"""Unbounded foreach: a @parallel step of a control task and its workers, and the join after it.

Locally, Metaflow's runtime starts the control task (node 0), which starts the
other nodes as processes of their own and waits for them.
"""

from metaflow import FlowSpec, current, parallel, step


class ParallelFlow(FlowSpec):
    @step
    def start(self):
        self.base = 10
        self.next(self.train, num_parallel=3)

    @parallel
    @step
    def train(self):
        self.node = current.parallel.node_index
        self.nodes = current.parallel.num_nodes
        self.value = self.base + self.node
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [i.value for i in inputs]
        self.nodes_seen = [i.node for i in inputs]
        print(f"joined {self.values}")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ParallelFlow()
