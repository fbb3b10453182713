"""``pytest --artflow``: which files become flow items, how they run, what they check."""

from __future__ import annotations

import pytest

from pytest_artflow import collect, settings

ART_FLOW = """
from metaflow import FlowSpec, Parameter, step


class ArtFlow(FlowSpec):
    alpha = Parameter("alpha", default=1, type=int)

    @step
    def start(self):
        self.some_data = [1, 2, 3]
        self.scaled = self.alpha * 10
        self.next(self.middle)

    @step
    def middle(self):
        print(f"the data artifact is: {self.some_data}")
        self.some_data[-1] = 4
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run")
"""

TWO_FLOWS = """
from metaflow import FlowSpec, step


class BaseFlow(FlowSpec):
    # No steps: a base for flows, not a flow.
    retries = 2


class FirstFlow(BaseFlow):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


class SecondFlow(FirstFlow):
    pass
"""

FAILING = """
from metaflow import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.middle)

    @step
    def middle(self):
        print("about to divide")
        self.y = self.x / 0
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_without_artflow_collection_is_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(art_flow=ART_FLOW, test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q")
    assert ids(result) == ["test_plain.py::test_plain"]


def test_every_flow_class_of_every_flow_file_is_an_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        art_flow=ART_FLOW,
        two_flows=TWO_FLOWS,
        test_plain="def test_plain():\n    pass\n",
        # A test module's flows belong to its tests; a conftest is not a flow file.
        test_inline=TWO_FLOWS + "\n\ndef test_inline():\n    pass\n",
        conftest=TWO_FLOWS.replace("FirstFlow", "ConftestFlow"),
        # Mentions FlowSpec and step, defines no flow: never imported.
        notes='TEXT = "class X(FlowSpec) with @step"\nraise RuntimeError("imported")\n',
        # Imports a flow, defines none.
        uses_flow="from art_flow import ArtFlow\n\n\nclass NotAFlow:\n    pass\n",
    )
    result = pytester.runpytest("--artflow", "--collect-only", "-q")
    assert sorted(ids(result)) == [
        "art_flow.py::ArtFlow",
        "test_inline.py::test_inline",
        "test_plain.py::test_plain",
        "two_flows.py::FirstFlow",
        "two_flows.py::SecondFlow",
    ]


def test_flow_file_named_on_the_command_line_is_one_artflow_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(art_flow=ART_FLOW)
    # pytest's Python plugin collects any file named on the command line as a
    # test module; a flow file becomes an artflow file instead, not both.
    result = pytester.runpytest("--artflow", "--collect-only", "art_flow.py")
    result.stdout.fnmatch_lines(["*<ArtflowFile art_flow.py>", "*<ArtflowItem ArtFlow>"])
    result.stdout.no_fnmatch_line("*<Module art_flow.py>")


def test_flow_file_imported_by_tests_is_loaded_and_run_once(pytester: pytest.Pytester) -> None:
    pkg = pytester.mkpydir("pkg")
    (pkg / "art_flow.py").write_text(
        "import builtins\n"
        'builtins.__dict__.setdefault("art_flow_loads", []).append(__name__)\n' + ART_FLOW
    )
    (pkg / "test_art_flow.py").write_text(
        "import builtins\n"
        "from pkg.art_flow import ArtFlow\n\n\n"
        "def test_the_file_ran_once_in_this_process():\n"
        '    assert builtins.art_flow_loads == ["pkg.art_flow"]\n\n\n'
        "def test_it(artflow_run):\n"
        '    assert artflow_run(ArtFlow)["middle"].data.some_data == [1, 2, 4]\n'
    )
    result = pytester.runpytest_subprocess("--artflow", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*pkg/art_flow.py::ArtFlow PASSED*"])


def test_ini_params_and_expected_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(art_flow=ART_FLOW)
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        artflow_params = ["art_flow.py::ArtFlow alpha=3"]
        artflow_expect = [
            "art_flow.py::ArtFlow start.some_data=[1, 2, 3]",
            "art_flow.py middle.some_data=[1, 2, 4]",
            "*::ArtFlow start.scaled=30",
        ]
        """
    )
    pytester.runpytest_subprocess("--artflow").assert_outcomes(passed=1)


def test_expected_value_that_does_not_hold_fails_with_the_trace(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(art_flow=ART_FLOW)
    pytester.makeini(
        """
        [pytest]
        artflow_expect =
            art_flow.py::ArtFlow middle.some_data=[1, 2, 5]
            art_flow.py::ArtFlow end.missing=1
            art_flow.py::ArtFlow nowhere.x=1
        """
    )
    result = pytester.runpytest_subprocess("--artflow")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*artflow_expect 'art_flow.py::ArtFlow middle.some_data=[[]1, 2, 5[]]': "
            "artifact 'some_data' of step 'middle' is [[]1, 2, 4[]], expected [[]1, 2, 5[]]",
            "*'some_data' at every step of ArtFlow/*",
            "*start   [[]1, 2, 3[]]",
            "*middle  [[]1, 2, 4[]]   <-- asserted",
            "*step 'end' has no artifact 'missing' (its artifacts: *name*some_data*)",
            "*step 'nowhere' did not run (steps: start, middle, end)",
        ]
    )


@pytest.mark.parametrize(
    ("key", "line", "problem"),
    [
        ("artflow_expect", "art_flow.py::ArtFlow middle=1", "should be <step>.<artifact>"),
        ("artflow_expect", "art_flow.py::ArtFlow a.b=[1,", "is not a Python literal"),
        ("artflow_params", "art_flow.py::ArtFlow", "expected '<file.py::FlowClass> <name>"),
    ],
)
def test_malformed_ini_line_is_a_usage_error(
    pytester: pytest.Pytester, key: str, line: str, problem: str
) -> None:
    pytester.makeini(f"[pytest]\n{key} =\n    {line}\n")
    result = pytester.runpytest("--artflow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*ini {key}: *{problem}*"])


def test_parameter_value_that_is_not_a_literal_is_text(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nartflow_params =\n    *::F name=hello world\n    *::F n=3\n")
    config = pytester.parseconfig("--artflow")
    collect.configure(config)
    assert config.stash[settings.ini_key].params_for("f.py::F") == {
        "name": "hello world",
        "n": 3,
    }


def test_failing_step_fails_the_item_with_the_step_level_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(failing_flow=FAILING, art_flow=ART_FLOW)
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ artflow: failing_flow.py::FailingFlow _*",
            "FailingFlow/* failed in step 'middle' (task FailingFlow/*/middle/*): "
            "ZeroDivisionError: division by zero",
            "*failing_flow.py*, in middle",
            "*stdout of middle:",
            "*about to divide",
        ]
    )


def test_flows_of_one_class_name_in_two_files_have_distinct_failure_headers(
    pytester: pytest.Pytester,
) -> None:
    """Metaflow's tutorials 03 and 04 both define ``PlayListFlow``."""
    for directory in ("03-playlist-redux", "04-playlist-plus"):
        folder = pytester.mkdir(directory)
        (folder / "playlist.py").write_text(FAILING.replace("FailingFlow", "PlayListFlow"))
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(failed=2)
    headers = [line for line in result.outlines if line.startswith("_") and "artflow:" in line]
    assert [h.strip("_ ") for h in headers] == [
        "artflow: 03-playlist-redux/playlist.py::PlayListFlow",
        "artflow: 04-playlist-plus/playlist.py::PlayListFlow",
    ]


def test_artifact_that_does_not_load_back_fails_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        fragile_flow="""
        from metaflow import FlowSpec, step


        def rebuild():
            raise RuntimeError("cannot be rebuilt")


        class Fragile:
            def __reduce__(self):
                return (rebuild, ())


        class FragileFlow(FlowSpec):
            @step
            def start(self):
                self.fine = 1
                self.fragile = Fragile()
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "artifact 'fragile' of step 'start' (task FragileFlow/*/start/1) was saved "
            "but does not load back: RuntimeError: cannot be rebuilt"
        ]
    )


def test_required_parameter_without_a_value_says_how_to_give_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        needs_alpha=ART_FLOW.replace("default=1", "required=True").replace("ArtFlow", "NeedFlow")
    )
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "NeedFlow (*needs_alpha.py) could not start:",
            "*Missing option '--alpha'*",
            "*ini artflow_params: 'needs_alpha.py::NeedFlow <name>=<value>'*",
        ]
    )


def test_flow_file_that_does_not_load_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        broken_flow="""
        from metaflow import FlowSpec, step

        raise ImportError("no such thing")


        class BrokenFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = pytester.runpytest("--artflow")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*broken_flow.py: loading the flow file raised ImportError: no such thing*"]
    )


def test_artflow_paths_add_flow_files_when_no_paths_are_given(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        artflow_paths = ["pipelines/*_flow.py"]
        """
    )
    pytester.mkdir("tests")
    pytester.mkdir("pipelines")
    (pytester.path / "tests" / "test_plain.py").write_text("def test_plain():\n    pass\n")
    (pytester.path / "pipelines" / "art_flow.py").write_text(ART_FLOW)
    (pytester.path / "pipelines" / "two_flows.py").write_text(TWO_FLOWS)
    result = pytester.runpytest("--artflow", "--collect-only", "-q")
    assert ids(result) == ["tests/test_plain.py::test_plain", "pipelines/art_flow.py::ArtFlow"]
    # Paths on the command line replace testpaths and artflow_paths alike.
    result = pytester.runpytest("--artflow", "--collect-only", "-q", "pipelines/two_flows.py")
    assert ids(result) == [
        "pipelines/two_flows.py::FirstFlow",
        "pipelines/two_flows.py::SecondFlow",
    ]


REMOTE = """
from metaflow import FlowSpec, batch, kubernetes, pypi, pypi_base, resources, step


@pypi_base(packages={"hypothesis": "6.100.0"})
class RemoteFlow(FlowSpec):
    @batch(cpu=2, memory=4000)
    @step
    def start(self):
        self.where = "here"
        self.next(self.train)

    @kubernetes(gpu=1)
    @resources(cpu=8, memory=64000)
    @step
    def train(self):
        import hypothesis

        self.loaded = hypothesis.__name__
        self.next(self.end)

    @pypi(packages={"numpy": "1.26.0"})
    @step
    def end(self):
        import numpy

        self.total = int(numpy.arange(4).sum())
"""


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_remote_decorators_run_locally_and_the_report_says_so(
    pytester: pytest.Pytester, engine: str
) -> None:
    pytester.makepyfile(remote_flow=REMOTE)
    pytester.makeini("[pytest]\nartflow_expect =\n    *::RemoteFlow end.total=6\n")
    result = pytester.runpytest_subprocess("--artflow", f"--artflow-engine={engine}")
    result.assert_outcomes(passed=1)
    local = [line for line in result.outlines if line.startswith("ran locally")]
    assert local == [
        "ran locally (remote-compute and environment decorators removed; ini "
        "artflow_run_locally): remote_flow.py::RemoteFlow: @pypi_base, @batch on start, "
        "@resources on train, @kubernetes on train, @pypi on end"
    ]


def test_run_locally_applies_to_artflow_run_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        remote_flow=REMOTE,
        test_remote="""
        from remote_flow import RemoteFlow

        def test_it(artflow_run):
            assert artflow_run(RemoteFlow)["end"].data.total == 6
        """,
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_opting_out_keeps_the_decorators(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(remote_flow=REMOTE.replace("@pypi_base", "# @pypi_base"))
    pytester.makeini("[pytest]\nartflow_run_locally = pypi resources\n")
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(failed=1)
    # Metaflow's own refusal: @batch stayed, and needs a datastore in S3.
    result.stdout.fnmatch_lines(["*The @batch decorator requires --datastore=s3*"])


def test_environment_packages_that_are_not_installed_fail_clearly(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        remote_flow=REMOTE.replace('"numpy": "1.26.0"', '"numpy": "1.26.0", "nonexistent-pkg": "1"')
    )
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "RemoteFlow: pytest-artflow runs @conda/@pypi steps with the packages installed "
            "here, and these are not: nonexistent-pkg (@pypi on step 'end')"
        ]
    )
