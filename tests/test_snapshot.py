"""Snapshots (syrupy): ``run.snapshot()``, the artifact serializer, and
``pytest --artflow --artflow-snapshot``."""

from __future__ import annotations

import datetime
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from syrupy.extensions.amber import AmberDataSerializer

import pytest_artflow.snapshot
from pytest_artflow.snapshot import ArrayValue, OpaqueValue, readable
from pytest_artflow.snapshot import values as snapshot

FLOWS = Path(__file__).parent / "flows"

ART_FLOW = """
from metaflow import FlowSpec, step


class ArtFlow(FlowSpec):
    @step
    def start(self):
        self.some_data = [1, 2, 3]
        self.next(self.middle)

    @step
    def middle(self):
        self.some_data[-1] = 4
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.some_data)
"""

TIMED_FLOW = """
import datetime
import random

from metaflow import FlowSpec, step


class TimedFlow(FlowSpec):
    @step
    def start(self):
        self.started_at = datetime.datetime.now()
        self.seed = random.random()
        self.rows = 3
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions these tests start are not workers of this one's xdist run:
    syrupy takes ``PYTEST_XDIST_WORKER`` to mean it is, and then reports nothing."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def amber(value: object) -> str:
    return AmberDataSerializer.serialize(value)


@dataclass
class Holder:
    weights: np.ndarray
    label: str


class NoRepr:
    def __init__(self, items: set[str]) -> None:
        self.items = items


# -- readable values, no run -------------------------------------------------


def test_plain_values_stay_themselves() -> None:
    value = {"b": [1, 0.1 + 0.2, -0.0, float("nan")], "a": ("x", b"y"), "d": {"z", "y"}}
    day = datetime.datetime(2024, 2, 29, 12, 0)
    assert readable(value) is value
    assert readable(day) is day
    text = amber(readable(value))
    assert "0.30000000000000004" in text and "-0.0" in text and "nan" in text
    # Dict keys and set members in a stable order, whatever the insertion order.
    assert amber(readable({"z": 1, "a": {"q", "b"}})) == amber(readable({"a": {"b", "q"}, "z": 1}))


def test_numpy_values_are_dtype_shape_and_values_or_a_hash() -> None:
    small = readable(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert repr(small) == "ndarray(dtype=int32, shape=(2, 3), values=[[0, 1, 2], [3, 4, 5]])"
    big = np.linspace(0, 1, 1000)
    text = repr(readable(big))
    assert text.startswith("ndarray(dtype=float64, shape=(1000,), sha256='")
    assert "preview=[0.0, 0.001001001001001001, " in text and text.endswith(", 1.0])")
    changed = big.copy()
    changed[500] += 1e-12  # not in the preview: the hash tells
    assert readable(changed) != readable(big)
    assert readable(big.copy()) == readable(big)
    assert repr(readable(np.float64(0.5))) == "numpy.float64(0.5)"


def test_pandas_values_are_shown_in_full_when_small() -> None:
    frame = readable(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert "data={'a': [1, 2], 'b': ['x', 'y']}" in repr(frame)
    big = pd.DataFrame({"n": np.arange(300)})
    text = repr(readable(big))
    assert "shape=(300, 1)" in text and "sha256=" in text and "head={'n': [0, 1, 2]}" in text
    other = big.copy()
    other.loc[150, "n"] = -1
    assert readable(other) != readable(big)
    series = repr(readable(pd.Series([1.5, 2.5], name="s")))
    assert series.startswith("Series(name='s', dtype=float64, shape=(2,)")


def test_container_with_an_array_is_rebuilt_readably() -> None:
    value = readable([Holder(np.zeros(2), "w")])
    assert isinstance(value[0].weights, ArrayValue)
    assert "Holder(" in amber(value) and "label='w'" in amber(value)


def test_long_bytes_are_a_length_and_a_hash() -> None:
    text = repr(readable(b"ab" * 5000))
    assert text.startswith("bytes(length=10000, sha256='") and text.endswith(
        "head=b'" + "ab" * 12 + "')"
    )
    assert readable(b"short") == b"short"


def test_snapshots_of_equal_values_are_equal() -> None:
    assert readable(Holder(np.zeros(200), "w")) == readable(Holder(np.zeros(200), "w"))
    assert readable(Holder(np.zeros(200), "w")) != readable(Holder(np.ones(200), "w"))


def test_object_without_a_readable_repr_is_its_type_and_pickle_hash() -> None:
    shown = readable(NoRepr({"a", "b", "c"}))
    assert isinstance(shown, OpaqueValue)
    assert re.fullmatch(r"test_snapshot\.NoRepr\(pickle_sha256='[0-9a-f]{16}'\)", repr(shown))
    assert readable(NoRepr({"c", "b", "a"})) == shown
    assert readable(NoRepr({"a"})) != shown


def test_classes_of_a_flow_file_hash_alike_whatever_their_module_is_called_here() -> None:
    # flows.load_file names a flow file's module after a per-process hash; the
    # flow's own processes call it __main__.
    made = [type("Blob", (), {"__module__": f"artflow_flow_x_{n}"}) for n in (1, 2)]
    shown = [readable(cls()) for cls in made]
    assert shown[0] == shown[1]
    assert re.fullmatch(r"Blob\(pickle_sha256='[0-9a-f]{16}'\)", repr(shown[0]))


def test_sandbox_paths_read_as_sandbox() -> None:
    assert readable(["/tmp/box/data.csv", Path("/tmp/box/x")], roots=["/tmp/box"]) == [
        "<sandbox>/data.csv",
        Path("<sandbox>/x"),
    ]


def test_changes_name_step_task_and_artifact() -> None:
    old = snapshot.RunSnapshot(
        start=snapshot.StepSnapshot([snapshot.TaskSnapshot(a=1, b=[1, 2])]),
        body=snapshot.StepSnapshot([snapshot.TaskSnapshot(x=1), snapshot.TaskSnapshot(x=2)]),
    )
    new = snapshot.RunSnapshot(
        start=snapshot.StepSnapshot([snapshot.TaskSnapshot(a=1, b=[1, 3], c=0)]),
        body=snapshot.StepSnapshot([snapshot.TaskSnapshot(x=1)]),
    )
    assert snapshot.describe_changes(amber(new), amber(old)) == [
        "step 'start', task 0: artifact 'b' changed",
        "step 'start', task 0: artifact 'c' is new",
        "step 'body', task 1 is gone",
    ]
    assert snapshot.changed_artifacts(amber(new), amber(old)) == ["start.b", "start.c", "body.x"]


# -- real runs ---------------------------------------------------------------


def test_snapshot_of_a_foreach_and_join_leaves_out_what_varies(artflow_run) -> None:
    run = artflow_run(FLOWS / "snapshot_flow.py")
    value = run.snapshot(exclude=["start.started_at"])
    assert list(value) == ["start", "body", "join", "end"]
    assert [task["part"] for task in value["body"]] == ["P", "Q", "R"]
    assert value["join"][0]["parts_done"] == ["P", "Q", "R"]
    assert "started_at" not in value["start"][0] and "started_at" in value["body"][0]
    text = amber(value)
    for varies in (run.run_id, str(run.sandbox.root), "pathspec"):
        assert varies not in text
    assert run["body"].snapshot() == value["body"]
    assert run["body"].tasks[2].snapshot() == value["body"][2]
    assert run["start"].snapshot(exclude=["started_at", "blob"])[0].keys() == (
        value["start"][0].keys() - {"blob"}
    )


def test_both_engines_and_repeated_runs_give_identical_snapshots(artflow_run) -> None:
    texts = [
        amber(
            artflow_run(FLOWS / "snapshot_flow.py", engine=engine).snapshot(
                exclude=["*.started_at"]
            )
        )
        for engine in ("fork", "subprocess", "fork")
    ]
    assert texts[0] == texts[1] == texts[2]
    assert "Blob(pickle_sha256=" in texts[0] and "sha256=" in texts[0]


def test_artflow_step_result_has_a_snapshot(artflow_step) -> None:
    task = artflow_step(FLOWS / "snapshot_flow.py", "body", input="ab", inputs={"parts": []})
    assert task.snapshot(exclude=["parts"]) == {
        "name": "SnapshotFlow",
        "part": "AB",
        "weights": readable(np.full(3, 3.0)),
    }


# -- pytest sessions ---------------------------------------------------------

SNAPSHOT_TEST = """
import datetime

from syrupy.filters import props
from syrupy.matchers import path_type


def test_art(artflow_run, snapshot):
    assert artflow_run("art_flow.py").snapshot() == snapshot


def test_timed_excluded(artflow_run, snapshot):
    run = artflow_run("timed_flow.py")
    assert run.snapshot() == snapshot(exclude=props("started_at", "seed"))


def test_timed_matched_by_type(artflow_run, snapshot):
    run = artflow_run("timed_flow.py")
    matcher = path_type(
        {r".*\\.started_at": (datetime.datetime,), r".*\\.seed": (float,)}, regex=True
    )
    assert run.snapshot() == snapshot(matcher=matcher)
"""


def test_snapshot_written_matched_changed_and_updated(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(art_flow=ART_FLOW, timed_flow=TIMED_FLOW, test_flows=SNAPSHOT_TEST)
    stored = pytester.path / "__snapshots__" / "test_flows.ambr"

    first = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    first.assert_outcomes(failed=3)
    first.stdout.fnmatch_lines(["*Snapshot 'test_art' does not exist!*"])

    pytester.runpytest_subprocess("--snapshot-update").assert_outcomes(passed=3)
    text = stored.read_text()
    excluded, matched = text.split("# name: test_timed_excluded")[1].split("# name: test_timed_m")
    assert "started_at" not in excluded and "seed" not in excluded and "'rows': 3," in excluded
    assert "'started_at': datetime," in matched and "'seed': float," in matched

    # Timestamps and seeds differ on every run; excluded or matched, they pass.
    pytester.runpytest_subprocess().assert_outcomes(passed=3)
    # The other engine writes the very same file.
    other = pytester.runpytest_subprocess("--artflow-engine=subprocess", "--snapshot-update")
    other.assert_outcomes(passed=3)
    other.stdout.fnmatch_lines(["*3 snapshots passed."])
    assert stored.read_text() == text

    pytester.makepyfile(
        art_flow=ART_FLOW.replace("self.some_data[-1] = 4", "self.some_data[-1] = 5")
    )
    changed = pytester.runpytest_subprocess("-k", "test_art", "-vv")
    changed.assert_outcomes(failed=1, deselected=2)
    changed.stdout.fnmatch_lines(
        [
            "*step 'middle', task 0: artifact 'some_data' changed",
            "*step 'end', task 0: artifact 'some_data' changed",
            "*step 'end', task 0: artifact 'total' changed",
            "*-*4,*",
            "*+*5,*",
        ]
    )
    assert stored.read_text() == text

    pytester.runpytest_subprocess("--snapshot-update", "-k", "test_art").assert_outcomes(
        passed=1, deselected=2
    )
    assert "'total': 8," in stored.read_text()
    pytester.runpytest_subprocess().assert_outcomes(passed=3)


def test_snapshot_extension_for_single_artifacts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_values="""
import numpy as np
from pytest_artflow.snapshot import ArtifactExtension


class Model:
    def __init__(self):
        self.weights = np.ones(500)


def test_values(snapshot):
    snapshot = snapshot.use_extension(ArtifactExtension)
    assert {"w": np.ones(500), "m": Model()} == snapshot
"""
    )
    pytester.runpytest_subprocess("--snapshot-update").assert_outcomes(passed=1)
    text = (pytester.path / "__snapshots__" / "test_values.ambr").read_text()
    assert "ndarray(dtype=float64, shape=(500,), sha256=" in text
    assert "Model(pickle_sha256=" in text
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


TWO_FLOWS = ART_FLOW + "\n\nclass OtherFlow(ArtFlow):\n    pass\n"


def test_artflow_mode_writes_compares_and_reports_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(art_flow=TWO_FLOWS, timed_flow=TIMED_FLOW)
    pytester.makeini(
        "[pytest]\nartflow_snapshot = true\n"
        "artflow_snapshot_exclude =\n    timed_flow.py::TimedFlow *.started_at *.seed\n"
    )
    stored = pytester.path / "__snapshots__" / "art_flow.ambr"

    missing = pytester.runpytest_subprocess("--artflow")
    missing.assert_outcomes(failed=3)
    missing.stdout.fnmatch_lines(["*no snapshot of ArtFlow yet*--snapshot-update*"])

    written = pytester.runpytest_subprocess("--artflow", "--snapshot-update")
    written.assert_outcomes(passed=3)
    written.stdout.fnmatch_lines(["*3 snapshots generated*"])
    text = stored.read_text()
    assert "# name: ArtFlow\n" in text and "# name: OtherFlow\n" in text
    timed = (pytester.path / "__snapshots__" / "timed_flow.ambr").read_text()
    assert "'rows': 3" in timed and "started_at" not in timed

    matched = pytester.runpytest_subprocess("--artflow", "-n", "2")
    matched.assert_outcomes(passed=3)
    matched.stdout.fnmatch_lines(
        ["*3 snapshots passed*", "PASSED art_flow.py::ArtFlow*snapshot matched"]
    )

    pytester.makepyfile(art_flow=TWO_FLOWS.replace("] = 4", "] = 7"))
    changed = pytester.runpytest_subprocess("--artflow", "-n", "2", "-k", "ArtFlow")
    changed.assert_outcomes(failed=1)  # OtherFlow and TimedFlow deselected
    changed.stdout.fnmatch_lines(
        [
            "*snapshot of ArtFlow changed: middle.some_data, end.some_data, end.total*",
            "*step 'middle', task 0: artifact 'some_data' changed",
            "FAILED art_flow.py::ArtFlow: *, snapshot changed: middle.some_data end.some_data "
            "end.total",
        ]
    )
    assert stored.read_text() == text

    # Accept the change for ArtFlow only: the deselected flows' snapshots stay.
    updated = pytester.runpytest_subprocess("--artflow", "--snapshot-update", "-k", "ArtFlow")
    updated.assert_outcomes(passed=1, deselected=2)
    updated.stdout.fnmatch_lines(["*1 snapshot updated.", "PASSED art_flow.py::ArtFlow*updated"])
    assert "'total': 10," in stored.read_text() and "# name: OtherFlow" in stored.read_text()

    # OtherFlow is gone: its snapshot is unused, and --snapshot-update deletes it.
    pytester.makepyfile(art_flow=ART_FLOW.replace("] = 4", "] = 7"))
    unused = pytester.runpytest_subprocess("--artflow", "-n", "2")
    assert unused.ret != 0
    unused.stdout.fnmatch_lines(["*2 snapshots passed. 1 snapshot unused."])
    pytester.runpytest_subprocess("--artflow", "--snapshot-update").assert_outcomes(passed=2)
    assert "OtherFlow" not in stored.read_text()
    pytester.runpytest_subprocess("--artflow").assert_outcomes(passed=2)


def test_without_syrupy_the_snapshot_options_say_what_to_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = pytester.mkdir("shadow") / "syrupy"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('No module named syrupy')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    pytester.makepyfile(art_flow=ART_FLOW)
    result = pytester.runpytest_subprocess("--artflow", "--artflow-snapshot", "-p", "no:syrupy")
    assert "snapshots need syrupy: pip install 'pytest-artflow[snapshot]'" in result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # Without the option, --artflow runs as before.
    pytester.runpytest_subprocess("--artflow", "-p", "no:syrupy").assert_outcomes(passed=1)

    monkeypatch.setitem(sys.modules, "syrupy", None)
    with pytest.raises(ImportError, match=r"pytest-artflow\[snapshot\]"):
        pytest_artflow.snapshot.ArtifactExtension  # noqa: B018
    # The value itself needs no syrupy.
    assert isinstance(readable(np.ones(2)), ArrayValue)


def test_malformed_exclude_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nartflow_snapshot_exclude =\n    art_flow.py::ArtFlow\n")
    result = pytester.runpytest("--artflow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*artflow_snapshot_exclude: 'art_flow.py::ArtFlow': expected *<step>.<artifact>*"]
    )


def test_flow_snapshots_are_not_unused_in_sessions_that_do_not_check_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        art_flow=ART_FLOW, test_value="def test_value(snapshot):\n    assert 1 == snapshot\n"
    )
    written = pytester.runpytest_subprocess("--artflow", "--artflow-snapshot", "--snapshot-update")
    written.assert_outcomes(passed=2)
    flow_snapshot = pytester.path / "__snapshots__" / "art_flow.ambr"
    assert flow_snapshot.is_file()
    for args, passed in (((), 1), ((".",), 1), (("--artflow",), 2)):
        result = pytester.runpytest_subprocess(*args)
        result.assert_outcomes(passed=passed)
        result.stdout.fnmatch_lines(["*1 snapshot passed."])
        assert "snapshot unused" not in result.stdout.str() and result.ret == 0
    pytester.runpytest_subprocess("--snapshot-update").assert_outcomes(passed=1)
    assert flow_snapshot.is_file()
