"""Reading a run costs its metadata once and no value until one is asked
for; values stay readable once the sandbox is gone."""

from __future__ import annotations

import collections
import gc
from pathlib import Path
from typing import Any

import pytest
from metaflow.datastore.task_datastore import TaskDataStore
from metaflow.plugins.metadata_providers.local import LocalMetadataProvider

from examples.art_flow import ArtFlow
from pytest_artflow import run_flow
from pytest_artflow.results import FlowRun, read_run
from pytest_artflow.sandbox import Sandbox

FLOWS = Path(__file__).parent / "flows"

LINEAR = """
from metaflow import FlowSpec, step


class LazyFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = list(range(50))
        self.label = "lazy"
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.numbers)
"""


def _reread(run: FlowRun) -> FlowRun:
    assert run.sandbox is not None and run.flow is not None
    return read_run(run.sandbox, run.flow, run.run_id)


@pytest.fixture
def files_read(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """How many times each of the local metadata's files is read."""
    seen: collections.Counter[str] = collections.Counter()
    original = LocalMetadataProvider._read_json_file.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, path: str) -> Any:
        seen[path] += 1
        return original(cls, path)

    monkeypatch.setattr(LocalMetadataProvider, "_read_json_file", classmethod(spy))
    return seen


@pytest.fixture
def values_loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The artifacts loaded from a task datastore, in order."""
    names: list[str] = []
    original = TaskDataStore.load_artifacts

    def spy(self: Any, wanted: Any) -> Any:
        names.extend(wanted)
        return original(self, wanted)

    monkeypatch.setattr(TaskDataStore, "load_artifacts", spy)
    return names


def test_each_metadata_file_is_read_once(artflow_run, files_read) -> None:
    run = artflow_run(FLOWS / "foreach_flow.py", width=3)
    files_read.clear()

    again = _reread(run)
    assert len(again.tasks) == 6
    twice = {path: n for path, n in files_read.items() if n > 1}
    assert twice == {}
    # Every task's metadata was read (its attempt, where it stored its data).
    read_dirs = {Path(path).parent for path in files_read if "/sysmeta_" in path}
    assert len(read_dirs) == 6
    assert again.trace("item") == {"body": ["item-0", "item-1", "item-2"]}


def test_a_retried_task_reads_its_metadata_once_for_every_attempt(
    artflow_run, files_read, flow_file
) -> None:
    path = flow_file(
        """
        from metaflow import FlowSpec, current, retry, step


        class RetriedFlow(FlowSpec):
            @retry(times=2, minutes_between_retries=0)
            @step
            def start(self):
                self.tried = current.retry_count
                if current.retry_count < 2:
                    raise ValueError("not yet")
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    run = artflow_run(path)
    files_read.clear()

    again = _reread(run)
    start = again["start"].task
    assert [a.attempt for a in start.attempts] == [0, 1, 2]
    assert [a.successful for a in start.attempts] == [False, False, True]
    assert start.data.tried == 2
    assert {path: n for path, n in files_read.items() if n > 1} == {}


def test_no_value_loads_until_it_is_asked_for(artflow_run, flow_file, values_loaded) -> None:
    run = artflow_run(flow_file(LINEAR))
    values_loaded.clear()

    again = _reread(run)
    # Only Metaflow's own artifacts that say each task's status and place.
    assert values_loaded and all(name.startswith("_") for name in values_loaded)
    values_loaded.clear()
    assert again["end"].data.total == sum(range(50))
    assert values_loaded == ["total"]
    # The names are known without loading; the rest loads when all are asked for.
    assert set(again["end"].data) == {"numbers", "label", "total", "name"}
    assert values_loaded == ["total"]
    assert again["end"].task.artifacts == {
        "numbers": list(range(50)),
        "label": "lazy",
        "total": sum(range(50)),
        "name": "LazyFlow",
    }
    assert sorted(values_loaded) == ["label", "name", "numbers", "total"]
    # A value read before is the same object in ``artifacts`` afterwards.
    assert again["end"].task.artifacts["total"] is again["end"].data.total


def test_a_lazily_read_run_looks_as_an_eager_one(artflow_run, flow_file) -> None:
    run = artflow_run(flow_file(LINEAR))
    lazy, eager = _reread(run), _reread(run)
    for task in eager.tasks:
        assert task.artifacts is not None  # loads every value
    assert repr(lazy) == repr(eager)
    assert lazy.trace("numbers") == eager.trace("numbers")
    assert [t.artifacts for t in lazy.tasks] == [t.artifacts for t in eager.tasks]
    assert lazy.readable and lazy.failure is None


def test_values_not_read_in_the_test_load_before_the_sandbox_goes(
    artflow_run, tmp_path: Path, flow_file, values_loaded
) -> None:
    from pytest_artflow.runner import ArtflowRunner

    sandbox = Sandbox(tmp_path / "box")
    runner = ArtflowRunner(sandbox, artflow_run.engines, artflow_run.hook, artflow_run.defaults)
    with sandbox.client_scope():
        kept = runner(flow_file(LINEAR))
        dropped = runner(flow_file(LINEAR))
        kept["start"].data.label  # noqa: B018
    values_loaded.clear()
    runner.runs.clear()
    del dropped
    gc.collect()

    assert not sandbox.settle("never", failed=False)
    assert not sandbox.root.exists()
    # Only the run still held was loaded, and only what it had not loaded yet.
    assert sorted(values_loaded) == ["label", "name", "name", "numbers", "numbers", "total"]
    assert kept["end"].data.total == sum(range(50))
    assert kept.trace("label") == {"start": "lazy", "end": "lazy"}
    assert kept["start"].task.artifacts == {
        "numbers": list(range(50)),
        "label": "lazy",
        "name": "LazyFlow",
    }


def test_run_flow_returns_values_readable_without_its_sandbox() -> None:
    run = run_flow(ArtFlow)
    assert run.sandbox is not None and not run.sandbox.root.exists()
    assert run["end"].task.artifacts == {"some_data": [1, 2, 4], "name": "ArtFlow"}
    assert run.snapshot() is not None
