"""How ``artflow_step`` plans a step's inputs: which parent tasks the step
reads, and what they hold, from the flow's graph and the test's arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import metaflow_seam
from ..errors import ArtflowError
from .job import INPUT_ARTIFACT, ParentTask, _Frame, ship

if TYPE_CHECKING:
    from ..flows import FlowRef
    from ..results import FlowRun, TaskResult


@dataclass
class InputPlan:
    """The parents, the split index and how to explain the inputs."""

    parents: list[ParentTask]
    split_index: int | None = None
    #: The artifact names the step was given, for the hint on a missing one.
    given: set[str] = field(default_factory=set)
    #: Per parent: the artifacts known here (a re-run's) and the shipped ones,
    #: shown as the steps before the step in the result's trace.
    shown: list[tuple[dict[str, Any], dict[str, bytes]]] = field(default_factory=list)


def missing_input_hint(failure: Any, plan: InputPlan, step: str) -> str:
    """Why a real run would have had the artifact the step missed."""
    if failure.exception_type != "AttributeError":
        return ""
    match = metaflow_seam.MISSING_ATTRIBUTE.search(failure.message or "")
    if not match or match.group(1) in plan.given:
        return ""
    name = match.group(1)
    given = ", ".join(sorted(plan.given)) or "none"
    return (
        f"\n(artflow_step: step {step!r} was not given an artifact {name!r}, only: {given}; "
        f"give it with inputs={{{name!r}: ...}})"
    )


def step_node(flow: FlowRef, step: str) -> Any:
    graph = metaflow_seam.graph(flow.flow_class)
    if step not in graph:
        raise ArtflowError(
            f"{flow.name} has no step {step!r}; its steps: {', '.join(flow.step_names)}"
        )
    return graph[step]


class InputPlanner:
    """Which parent tasks a step reads, and what they hold, from the flow's graph."""

    def __init__(self, flow: FlowRef, node: Any, input: Any, index: Any) -> None:
        self.flow = flow
        self.graph = metaflow_seam.graph(flow.flow_class)
        self.node = node
        self.input = input
        self.index = index
        if node.parallel_step or any(self.graph[s].parallel_foreach for s in node.split_parents):
            raise ArtflowError(f"step {node.name!r}: @parallel steps are not supported")
        #: The foreach splits around the step (or, for a join, around its inputs).
        self.levels = [self.graph[s] for s in node.split_parents if self.graph[s].type == "foreach"]
        self.join_type = (
            self.graph[node.split_parents[-1]].type
            if node.type == "join" and node.split_parents
            else None
        )

    # -- shapes of what the test gave ---------------------------------------

    def _depth(self) -> int:
        """Foreach levels the step itself is in (what ``index=`` addresses)."""
        return len(self.levels) - (1 if self.join_type == "foreach" else 0)

    def _indices(self) -> list[int]:
        depth = self._depth()
        where = f"step {self.node.name!r}"
        if depth == 0:
            if self.index is not None or self.input is not None:
                raise ArtflowError(
                    f"{where} is not inside a foreach: index= and input= do not apply"
                )
            return []
        index = 0 if self.index is None else self.index
        if isinstance(index, int) and not isinstance(index, bool):
            indices = [0] * (depth - 1) + [index]
        elif isinstance(index, Sequence) and all(isinstance(i, int) for i in index):
            indices = list(index)
        else:
            raise ArtflowError(f"{where}: index= takes an int or a tuple of ints, not {index!r}")
        if len(indices) != depth or any(i < 0 for i in indices):
            raise ArtflowError(
                f"{where} is inside {depth} nested foreach(es) ("
                + ", ".join(self._describe(level) for level in self.levels[:depth])
                + f"): index= takes {depth} non-negative index(es), outermost first; got {index!r}"
            )
        return indices

    @staticmethod
    def _describe(level: Any) -> str:
        return f"'{level.name}' over {level.foreach_param!r}"

    def _check_names(self, values: Mapping[str, Any], where: str) -> None:
        if not isinstance(values, Mapping):
            raise ArtflowError(f"{where} must be a dict of artifact name to value, not {values!r}")
        for name in values:
            if not isinstance(name, str) or not name.isidentifier():
                raise ArtflowError(f"{where}: {name!r} is not a valid artifact name")
            if name.startswith("_") or name == "name":
                raise ArtflowError(
                    f"{where}: {name!r} is reserved by Metaflow and cannot be an input"
                )

    def _ship_input(self, shipped: dict[str, bytes], index: int) -> None:
        """``input=`` as the foreach variable Metaflow reads ``self.input`` from
        (``var[index]``), under a private name: the step sees no variable it
        was not given."""
        shipped[INPUT_ARTIFACT] = ship(
            "input", [None] * index + [self.input], self.flow.main_module
        )

    def _ship(self, values: Mapping[str, Any], where: str) -> dict[str, bytes]:
        self._check_names(values, where)
        return {k: ship(f"{where}[{k!r}]", v, self.flow.main_module) for k, v in values.items()}

    def _branches(self, inputs: Any, partial: bool = False) -> list[tuple[str, Mapping[str, Any]]]:
        """``(parent step, artifacts)`` per input of the step, in the order given
        (``partial``: a static join may name only some branches)."""
        node, where = self.node, f"step {self.node.name!r}"
        if self.join_type is None:
            if inputs is not None and not isinstance(inputs, Mapping):
                raise ArtflowError(
                    f"{where} is not a join: inputs= is a dict of artifact name to value"
                )
            parents = sorted(s for s in node.in_funcs if s != node.name) or sorted(node.in_funcs)
            return [(parents[0], inputs or {})]
        branches = sorted(node.in_funcs)
        if self.join_type == "foreach":
            if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)) or not inputs:
                raise ArtflowError(
                    f"{where} joins the foreach {self._describe(self.levels[-1])}: give "
                    "inputs= as a list with one dict of artifacts per split, "
                    "e.g. inputs=[{'x': 1}, {'x': 2}]"
                )
            return [(branches[0], split) for split in inputs]
        shape = "inputs={" + ", ".join(f"{b!r}: {{...}}" for b in branches) + "}"
        if inputs is None:
            inputs = {b: {} for b in branches}
        if (
            not isinstance(inputs, Mapping)
            or not inputs
            or any(not isinstance(v, Mapping) or k not in branches for k, v in inputs.items())
        ):
            raise ArtflowError(
                f"{where} joins the branches {', '.join(branches)}: give the artifacts of "
                f"each branch, {shape} (got {_short(inputs)})"
            )
        split = self.graph[node.split_parents[-1]]
        if not partial and len(inputs) != len(split.out_funcs):
            raise ArtflowError(
                f"{where} joins {len(split.out_funcs)} branches: give all of them, {shape}"
            )
        return list(inputs.items())

    # -- from scratch ---------------------------------------------------------

    def from_scratch(self, inputs: Any) -> InputPlan:
        node, graph = self.node, self.graph
        if node.name == metaflow_seam.start_step(graph):
            if inputs:
                raise ArtflowError(
                    f"step {node.name!r} is the first step: it reads only the flow's "
                    "Parameters; pass them as keyword arguments or params={...}"
                )
            self._indices()
            return InputPlan(parents=[])
        indices = self._indices()
        branches = self._branches(inputs)
        follows_split = self.join_type is None and graph[branches[0][0]].type == "foreach"
        plan = InputPlan(parents=[])
        for n, (parent_step, values) in enumerate(branches):
            where = self._where(parent_step, n)
            shipped = self._ship(values, where)
            plan.given |= set(values)
            frames = self._frames(indices, values, shipped, len(branches), n, follows_split)
            bookkeeping: dict[str, Any] = {
                "_current_step": parent_step,
                metaflow_seam.FOREACH_VAR: None,
                metaflow_seam.FOREACH_NUM_SPLITS: None,
                "_foreach_values": None,
                "_iteration_stack": [],
                metaflow_seam.TRANSITION: ([node.name], None),
                "_task_ok": True,
                "_success": True,
                "_exception": None,
            }
            if follows_split:
                var, splits = self._split_var(values, shipped, indices[-1])
                split_node = graph[parent_step]
                bookkeeping.update(
                    {metaflow_seam.FOREACH_VAR: var, metaflow_seam.FOREACH_NUM_SPLITS: splits}
                )
                bookkeeping[metaflow_seam.TRANSITION] = ([node.name], split_node.foreach_param)
                plan.split_index = indices[-1]
            plan.parents.append(
                ParentTask(
                    step=parent_step,
                    task_id=f"p{n + 1}",
                    values=shipped,
                    bookkeeping=bookkeeping,
                    frames=frames,
                )
            )
            plan.shown.append(({}, shipped))
        return plan

    def _where(self, parent_step: str, n: int) -> str:
        if self.join_type == "foreach":
            return f"inputs[{n}]"
        if self.join_type is not None:
            return f"inputs[{parent_step!r}]"
        return "inputs"

    def _split_var(
        self, values: Mapping[str, Any], shipped: dict[str, bytes], index: int
    ) -> tuple[str, int]:
        """The foreach variable ``self.input`` is taken from, and the split count."""
        level = self.levels[-1]
        var = level.foreach_param
        if self.input is not None:
            self._ship_input(shipped, index)
            return INPUT_ARTIFACT, index + 1
        if var in values:
            try:
                count = len(values[var])
                values[var][index]
            except (TypeError, IndexError, KeyError):
                raise ArtflowError(
                    f"step {self.node.name!r} reads self.input from inputs[{var!r}] at "
                    f"index {index}, which it does not have"
                ) from None
            return var, count
        raise ArtflowError(
            f"step {self.node.name!r} is a foreach step ({self._describe(level)}): give "
            f"input= (what self.input returns), or the list as inputs={{{var!r}: [...]}}"
        )

    def _frames(
        self,
        indices: list[int],
        values: Mapping[str, Any],
        shipped: dict[str, bytes],
        count: int,
        n: int,
        follows_split: bool,
    ) -> list[_Frame]:
        """The parent's foreach stack: the levels the step is in, less the one a
        foreach body opens itself, plus the joined one for a foreach join."""
        frames: list[_Frame] = []
        own = self.levels[: self._depth()]
        for depth, (level, index) in enumerate(zip(own, indices, strict=True)):
            innermost = depth == len(own) - 1
            if innermost and follows_split:
                break
            var, splits = level.foreach_param, index + 1
            if innermost and self.input is not None:
                self._ship_input(shipped, index)
                var = INPUT_ARTIFACT
            elif var in values and hasattr(values[var], "__len__"):
                splits = max(len(values[var]), splits)
            frames.append((level.out_funcs[0], var, splits, index, None))
        if self.join_type == "foreach":
            level = self.levels[-1]
            frames.append((level.out_funcs[0], level.foreach_param, count, n, None))
        return frames

    # -- re-run of an earlier run's step --------------------------------------

    def rerun(self, run: FlowRun, inputs: Any) -> InputPlan:

        from ..results import main_module_as

        node = self.node
        if node.name not in run:
            raise ArtflowError(
                f"step {node.name!r} did not run in {run.pathspec} (the steps that ran: "
                f"{', '.join(run.steps)}); run it from scratch with artflow_step("
                f"{run.flow_name}, {node.name!r}, inputs=...)"
            )
        if self._depth() == 0:
            self._indices()  # the error for index=/input= outside any foreach
        task = self._pick(run, run[node.name].tasks)
        plan = InputPlan(parents=[])
        if node.name == metaflow_seam.start_step(self.graph):
            params = metaflow_seam.client_step(f"{run.pathspec}/_parameters").task
            with main_module_as(self.flow.module):
                known = {a.id: a.data for a in params}
            origins = [(params.pathspec, params.current_attempt, known)]
        else:
            by_path = {t.pathspec: t for t in run.tasks}
            client = metaflow_seam.client_task(task.pathspec)
            found = sorted(
                (by_path[p] for p in client.parent_task_pathspecs), key=lambda t: t.order
            )
            origins = [(t.pathspec, t.attempt, t.artifacts) for t in found]
        parent_steps = [pathspec.split("/")[2] for pathspec, _, _ in origins]
        overrides = self._rerun_overrides(inputs, parent_steps)
        first = parent_steps[0]
        if self.join_type is None and first in self.graph and self.graph[first].type == "foreach":
            plan.split_index = task.order[0][-1]
        for n, ((pathspec, attempt, known), values) in enumerate(
            zip(origins, overrides, strict=True)
        ):
            _, run_id, parent_step, parent_id = pathspec.split("/")
            where = self._where(parent_step, n)
            shipped = self._ship(values, where)
            plan.given |= set(known) | set(values)
            bookkeeping: dict[str, Any] = {}
            if self.input is not None:
                if plan.split_index is None:
                    raise ArtflowError(
                        f"step {node.name!r}: in a re-run, input= applies to the step right "
                        "after a foreach split; override the foreach variable with inputs="
                    )
                self._ship_input(shipped, plan.split_index)
                bookkeeping[metaflow_seam.FOREACH_VAR] = INPUT_ARTIFACT
            plan.parents.append(
                ParentTask(
                    step=parent_step,
                    task_id=f"p{n + 1}",
                    origin=f"{run_id}/{parent_step}/{parent_id}/{attempt}",
                    values=shipped,
                    bookkeeping=bookkeeping,
                )
            )
            plan.shown.append((dict(known), shipped))
        return plan

    def _pick(self, run: FlowRun, tasks: list[TaskResult]) -> TaskResult:
        if self.index is None:
            return tasks[0]
        wanted = (self.index,) if isinstance(self.index, int) else tuple(self.index)
        for task in tasks:
            if task.order[0][-len(wanted) :] == wanted:
                return task
        have = ", ".join(str(t.order[0]) for t in tasks)
        raise ArtflowError(
            f"step {self.node.name!r} of {run.pathspec} has no task with index={self.index!r} "
            f"(its tasks' foreach indices: {have})"
        )

    def _rerun_overrides(self, inputs: Any, parent_steps: list[str]) -> list[Mapping[str, Any]]:
        if inputs is None:
            return [{} for _ in parent_steps]
        if self.join_type is None:
            if not isinstance(inputs, Mapping):
                raise ArtflowError(
                    f"step {self.node.name!r} is not a join: inputs= is a dict of artifact "
                    "name to value"
                )
            return [inputs for _ in parent_steps]
        if self.join_type == "foreach":
            if isinstance(inputs, Mapping) or len(inputs) != len(parent_steps):
                raise ArtflowError(
                    f"step {self.node.name!r} joined {len(parent_steps)} splits in the run: "
                    f"give inputs= as a list of {len(parent_steps)} dicts (overrides per split)"
                )
            return list(inputs)
        self._branches(inputs, partial=True)  # the same shape as from scratch
        return [inputs.get(step, {}) for step in parent_steps]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
