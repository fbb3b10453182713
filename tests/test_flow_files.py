"""Files around a flow: ``Config`` files and paths relative to the flow or the
test, and what loading a flow file may leave in the pytest process (its
module-level side effects, bytecode beside the user's files)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from pytest_artflow import FlowReferenceError, FlowRunFailed, flows
from pytest_artflow.errors import FlowLoadWarning

ENGINES = ["fork", "subprocess"]

CONFIG_FLOW = """
    from metaflow import Config, FlowSpec, step

    class ConfiguredFlow(FlowSpec):
        settings = Config("cfg", default="data/config.json")

        @step
        def start(self):
            self.alpha = self.settings.alpha
            self.model = self.settings["model"]
            self.next(self.end)

        @step
        def end(self):
            self.all_settings = dict(self.settings)
    """


def write_config(path: Path, **values: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_config_default_relative_to_the_flow_file(artflow_run, flow_file, engine):
    """``cd flows && python flow.py run`` reads ``flows/data/config.json``."""
    path = flow_file(CONFIG_FLOW)
    write_config(path.parent / "data" / "config.json", alpha=0.5, model="tree")
    assert Path.cwd() != path.parent
    run = artflow_run(path, engine=engine)
    assert run["start"].data.alpha == 0.5
    assert run["start"].data.model == "tree"
    assert run["end"].data.all_settings == {"alpha": 0.5, "model": "tree"}


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_reads_the_config_default_beside_the_flow(
    artflow_run, artflow_resume, artflow_sandbox, flow_file, engine
):
    """``cd flows && python flow.py resume`` parses the default file too (then
    takes the origin run's values); so does ``artflow_resume``."""
    path = flow_file(
        CONFIG_FLOW.replace(
            "            self.all_settings = dict(self.settings)",
            "            import os\n"
            "            if not os.path.exists('fixed'):\n"
            "                raise RuntimeError('not yet')\n"
            "            self.all_settings = dict(self.settings)",
        )
    )
    write_config(path.parent / "data" / "config.json", alpha=0.5, model="tree")
    run = artflow_run(path, engine=engine, check=False)
    assert run.failure is not None and run.failure.step == "end"
    (artflow_sandbox.root / "fixed").touch()  # the working directory of the resume
    resumed = artflow_resume(run, engine=engine)
    assert resumed["start"].task.cloned
    assert resumed["end"].data.all_settings == {"alpha": 0.5, "model": "tree"}


@pytest.mark.parametrize("engine", ENGINES)
def test_config_file_and_value_given_to_artflow_run(artflow_run, flow_file, engine):
    path = flow_file(CONFIG_FLOW)
    write_config(path.parent / "data" / "config.json", alpha=0.5, model="tree")
    # Relative to this test file, as flow files are: tests/flows/data/...
    run = artflow_run(path, engine=engine, config={"cfg": "flows/data/other_config.json"})
    assert run["start"].data.alpha == 2
    assert run["start"].data.model == "forest"
    run = artflow_run(path, engine=engine, config_value={"cfg": {"alpha": 7, "model": "x"}})
    assert run["start"].data.alpha == 7
    # By the attribute that holds the Config, as Parameters can be.
    run = artflow_run(path, engine=engine, config_value={"settings": {"alpha": 6, "model": "z"}})
    assert run["start"].data.alpha == 6
    # Pairs, as Metaflow's Runner takes them, and a JSON string.
    run = artflow_run(path, engine=engine, config_value=[("cfg", '{"alpha": 8, "model": "y"}')])
    assert run["end"].data.all_settings == {"alpha": 8, "model": "y"}


@pytest.mark.parametrize("engine", ENGINES)
def test_config_of_a_single_step(artflow_step, flow_file, engine):
    path = flow_file(CONFIG_FLOW)
    write_config(path.parent / "data" / "config.json", alpha=0.5, model="tree")
    task = artflow_step(path, "end", engine=engine, inputs={})
    assert task.data.all_settings == {"alpha": 0.5, "model": "tree"}
    task = artflow_step(
        path, "start", engine=engine, config={"cfg": "flows/data/other_config.json"}
    )
    assert task.data.alpha == 2
    task = artflow_step(
        path, "start", engine=engine, config_value={"cfg": {"alpha": 3, "model": 1}}
    )
    assert task.data.alpha == 3


def test_config_mistakes_are_named(artflow_run, flow_file):
    path = flow_file(CONFIG_FLOW)
    write_config(path.parent / "data" / "config.json", alpha=0.5, model="tree")
    with pytest.raises(FlowReferenceError, match=r"has no Config 'conf' \(its Configs: cfg\)"):
        artflow_run(path, config={"conf": "x.json"})
    with pytest.raises(FlowReferenceError, match=r"file of Config 'cfg' 'nowhere\.json' not found"):
        artflow_run(path, config={"cfg": "nowhere.json"})
    with pytest.raises(FlowReferenceError, match="both as a file"):
        artflow_run(
            path, config={"cfg": path.parent / "data" / "config.json"}, config_value={"cfg": {}}
        )
    with pytest.raises(FlowReferenceError, match=r"config= takes a file path.*config_value="):
        artflow_run(path, config={"cfg": {"alpha": 1}})
    with pytest.raises(FlowReferenceError, match=r"'cfg' of ConfiguredFlow is a Config.*config="):
        artflow_run(path, cfg={"alpha": 1})


def test_missing_default_config_file_gets_metaflows_message(artflow_run, flow_file):
    with pytest.raises(FlowRunFailed, match="could not start") as info:
        artflow_run(flow_file(CONFIG_FLOW))
    assert "default configuration file 'data/config.json' could not be read" in str(info.value)


READS_A_FILE = """
    import os

    from metaflow import FlowSpec, Parameter, step

    class ReaderFlow(FlowSpec):
        beside = Parameter("beside", type=bool, default=False)

        @step
        def start(self):
            name = "data/notes.txt"
            if self.beside:
                name = os.path.join(os.path.dirname(__file__), name)
            with open(name) as f:
                self.notes = f.read()
            self.next(self.end)

        @step
        def end(self):
            pass
    """


@pytest.mark.parametrize("engine", ENGINES)
def test_file_not_found_by_a_relative_path_says_where_steps_run(artflow_run, flow_file, engine):
    path = flow_file(READS_A_FILE)
    (path.parent / "data").mkdir()
    (path.parent / "data" / "notes.txt").write_text("beside the flow")
    with pytest.raises(FlowRunFailed) as info:
        artflow_run(path, engine=engine)
    message = str(info.value)
    first, hint = message.splitlines()[:2]
    assert "FileNotFoundError: [Errno 2] No such file or directory: 'data/notes.txt'" in first
    assert hint == (
        "hint: steps run with the sandbox as their working directory, so 'data/notes.txt' is "
        "looked for there; refer to a file beside the flow as "
        "os.path.join(os.path.dirname(__file__), 'data/notes.txt')"
    )
    # The failure itself is Metaflow's exception, unchanged.
    assert "hint" not in info.value.run.failure.message
    # The advice works under both engines.
    run = artflow_run(path, engine=engine, beside=True)
    assert run["start"].data.notes == "beside the flow"


def test_file_not_found_at_module_level_says_where_paths_are_relative_to(artflow_run, flow_file):
    path = flow_file(
        """
        from metaflow import FlowSpec, step

        NOTES = open("data/notes.txt").read()

        class ModuleLevelFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    (path.parent / "data").mkdir()
    (path.parent / "data" / "notes.txt").write_text("beside the flow")
    with pytest.raises(FlowReferenceError) as info:
        artflow_run(path)
    assert str(info.value).splitlines()[1] == (
        f"hint: 'data/notes.txt' is relative to the working directory (here {os.getcwd()}, the "
        "sandbox in the flow's processes); refer to a file beside the flow as "
        "os.path.join(os.path.dirname(__file__), 'data/notes.txt')"
    )


def test_file_not_found_by_an_absolute_path_gets_no_hint(artflow_run, flow_file, tmp_path):
    missing = tmp_path / "nowhere.txt"
    path = flow_file(READS_A_FILE.replace('"data/notes.txt"', repr(str(missing))))
    with pytest.raises(FlowRunFailed, match="FileNotFoundError") as info:
        artflow_run(path)
    assert "hint:" not in str(info.value)


POLLUTING = """
    import os
    import sys
    import threading

    from metaflow import FlowSpec, step

    os.environ["ARTFLOW_POLLUTED"] = "yes"
    sys.path.append("/polluted/by/the/flow")
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    stop = threading.Event()
    threading.Thread(target=stop.wait, name="flow-poller", daemon=True).start()

    class PollutingFlow(FlowSpec):
        @step
        def start(self):
            self.seen = os.environ.get("ARTFLOW_POLLUTED")
            self.next(self.end)

        @step
        def end(self):
            pass
    """

SEES_ENV = """
    import os

    from metaflow import FlowSpec, step

    class LaterFlow(FlowSpec):
        @step
        def start(self):
            self.seen = os.environ.get("ARTFLOW_POLLUTED")
            self.next(self.end)

        @step
        def end(self):
            pass
    """


@pytest.mark.parametrize("engine", ENGINES)
def test_loading_a_flow_file_leaves_the_pytest_process_alone(artflow_run, flow_file, engine):
    path = flow_file(POLLUTING, "polluting_flow.py")
    environ, sys_path, cwd = dict(os.environ), list(sys.path), os.getcwd()
    try:
        with pytest.warns(FlowLoadWarning) as record:
            first = artflow_run(path, engine=engine)
            again = artflow_run(path, engine=engine)
        assert (dict(os.environ), sys.path, os.getcwd()) == (environ, sys_path, cwd)
        # Once, naming the file and the thread.
        [warning] = [w for w in record if w.category is FlowLoadWarning]
        assert str(path) in str(warning.message)
        assert "'flow-poller'" in str(warning.message)
        # The flow's own processes run its module code, as `python flow.py run` does.
        assert first["start"].data.seen == again["start"].data.seen == "yes"
        later = artflow_run(flow_file(SEES_ENV, "later_flow.py"), engine=engine)
        assert later["start"].data.seen is None
    finally:
        # The loaded module (cached: not executed again) stops its thread.
        flows.load_file(path).stop.set()
        for thread in threading.enumerate():
            if thread.name == "flow-poller":
                thread.join()


VENDORING = """
    import os
    import sys

    from metaflow import FlowSpec, step

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "vendor"))

    class VendoringFlow(FlowSpec):
        @step
        def start(self):
            from vendored_box import Box  # found where the module code pointed sys.path
            from sibling_box import SiblingBox  # found beside the flow

            self.box = Box(3)
            self.sibling = SiblingBox(4)
            self.next(self.end)

        @step
        def end(self):
            pass
    """


@pytest.mark.parametrize("engine", ENGINES)
def test_artifacts_of_modules_the_flow_makes_importable_load(artflow_run, flow_file, engine):
    """sys.path is put back after the load, yet an artifact whose class comes
    from where the flow pointed it (or from beside the flow) still loads."""
    path = flow_file(VENDORING, "vendoring_flow.py")
    (path.parent / "vendor").mkdir()
    box = "class {0}:\n    def __init__(self, value):\n        self.value = value\n"
    (path.parent / "vendor" / "vendored_box.py").write_text(box.format("Box"))
    (path.parent / "sibling_box.py").write_text(box.format("SiblingBox"))
    sys_path = list(sys.path)
    run = artflow_run(path, engine=engine)
    assert sys.path == sys_path
    assert run["start"].data.box.value == 3
    assert run["start"].data.sibling.value == 4
    assert type(run["start"].data.box).__module__ == "vendored_box"


HELPER_FLOW = """
    from metaflow import FlowSpec, step

    from helper import VALUE

    class HelperFlow(FlowSpec):
        @step
        def start(self):
            self.value = VALUE
            self.next(self.end)

        @step
        def end(self):
            pass
    """


@pytest.fixture
def writes_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python as it is by default: writing bytecode of what it imports."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)


@pytest.mark.parametrize("engine", ENGINES)
def test_running_a_flow_file_writes_no_bytecode_beside_it(
    artflow_run, flow_file, engine, writes_bytecode
):
    path = flow_file(HELPER_FLOW, "helper_flow.py")
    (path.parent / "helper.py").write_text("VALUE = 3\n")
    run = artflow_run(path, engine=engine)
    assert run["start"].data.value == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["helper.py", "helper_flow.py"]
    assert sys.dont_write_bytecode is False


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "where",
    [
        "pipelines",  # loaded from its file
        ".",  # importable by its bare name: imported
    ],
)
def test_artflow_collection_writes_no_bytecode_beside_flow_files(
    pytester: pytest.Pytester, engine: str, where: str, writes_bytecode
) -> None:
    flows = pytester.path / where
    flows.mkdir(exist_ok=True)
    (flows / "helper_flow.py").write_text(textwrap.dedent(HELPER_FLOW))
    (flows / "helper.py").write_text("VALUE = 3\n")
    result = pytester.runpytest_subprocess(
        "--artflow", f"--artflow-engine={engine}", "--artflow-keep=never", where
    )
    result.assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("__pycache__"))
