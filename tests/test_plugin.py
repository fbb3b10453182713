"""The plugin as users meet it: real pytest sessions (pytester) on generated files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The seed flow, as users have it (with its `if __name__ == "__main__"` block).
SEED = (Path(__file__).parents[1] / "examples" / "art_flow.py").read_text()


@pytest.fixture
def seed(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(art_flow=SEED)
    return pytester


def test_fixtures_need_no_import_or_conftest(seed: pytest.Pytester) -> None:
    seed.makepyfile(
        test_it="""
        from art_flow import ArtFlow

        def test_it(artflow_run):
            run = artflow_run(ArtFlow)
            assert run["middle"].data.some_data == [1, 2, 4]
        """
    )
    seed.runpytest_subprocess().assert_outcomes(passed=1)


def test_failed_assertion_shows_the_artifact_at_every_step(seed: pytest.Pytester) -> None:
    seed.makepyfile(
        test_it="""
        from art_flow import ArtFlow

        def test_it(artflow_run):
            run = artflow_run(ArtFlow)
            assert run["middle"].data.some_data == [1, 2, 3]
        """
    )
    result = seed.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*artifact 'some_data' of step 'middle': [[]1, 2, 4[]] == [[]1, 2, 3[]]",
            "*'some_data' at every step of ArtFlow/*",
            "*start   [[]1, 2, 3[]]",
            "*middle  [[]1, 2, 4[]]   <-- asserted",
            "*end     [[]1, 2, 4[]]",
        ]
    )


def test_configure_run_hook_from_conftest(seed: pytest.Pytester) -> None:
    seed.makeconftest(
        """
        def pytest_artflow_configure_run(config):
            config.env["GREETING"] = "hello from conftest"
            config.tags.append("from-conftest")
        """
    )
    seed.makepyfile(
        env_flow="""
        import os
        from metaflow import FlowSpec, step

        class EnvFlow(FlowSpec):
            @step
            def start(self):
                self.greeting = os.environ.get("GREETING")
                self.next(self.end)

            @step
            def end(self):
                pass
        """,
        test_it="""
        def test_it(artflow_run):
            run = artflow_run("env_flow.py")
            assert run["start"].data.greeting == "hello from conftest"
            assert "from-conftest" in run.client.user_tags
        """,
    )
    seed.runpytest_subprocess().assert_outcomes(passed=1)


def test_engine_contributed_by_a_conftest(seed: pytest.Pytester) -> None:
    seed.makeconftest(
        """
        from pytest_artflow.engines.subprocess import SubprocessEngine

        class RecordingEngine(SubprocessEngine):
            jobs = []

            def run(self, job):
                RecordingEngine.jobs.append(job.args)
                return super().run(job)

        def pytest_artflow_engines():
            return {"recording": RecordingEngine}
        """
    )
    seed.makepyfile(
        test_it="""
        import conftest
        from art_flow import ArtFlow

        def test_it(artflow_run):
            run = artflow_run(ArtFlow)
            assert run.successful
            assert conftest.RecordingEngine.jobs[0][1] == "run"
        """
    )
    seed.runpytest_subprocess("--artflow-engine=recording").assert_outcomes(passed=1)
    result = seed.runpytest_subprocess("--artflow-engine=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--artflow-engine: unknown artflow engine 'nope' (known engines: *recording*)"]
    )


RECORDING_ENGINE = """
from pytest_artflow.engines.subprocess import SubprocessEngine


def pytest_artflow_engines():
    return {"recording": SubprocessEngine}
"""


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--artflow-engine=forky"], "", "--artflow-engine: unknown artflow engine 'forky'"),
        ([], "artflow_engine = forky", "ini artflow_engine: unknown artflow engine 'forky'"),
        (["--artflow", "--artflow-engine=forky"], "", "--artflow-engine: unknown *'forky'"),
        ([], "artflow_timeout = soon", "ini artflow_timeout: timeout must be a positive number*"),
    ],
)
def test_a_bad_engine_or_timeout_stops_the_session_at_once(
    seed: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    """Checked once when the session starts, not by every flow on its own
    (which kept every sandbox); a conftest's engines are among the known ones."""
    seed.makeconftest(RECORDING_ENGINE)
    seed.makeini(f"[pytest]\n{ini}\n")
    seed.makepyfile(test_it="def test_it(artflow_run):\n    artflow_run('art_flow.py')\n")
    basetemp = seed.path / "bt"
    result = seed.runpytest_subprocess(*args, f"--basetemp={basetemp}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}*"])
    if "engine" in message:
        result.stderr.fnmatch_lines(["*(known engines: fork, recording, subprocess)"])
    assert not list(basetemp.glob("artflow-*"))


def test_a_bad_marker_is_a_collection_error_of_its_test(seed: pytest.Pytester) -> None:
    seed.makeconftest(RECORDING_ENGINE)
    seed.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.artflow(engine="recording")
        def test_contributed(artflow_run):
            assert artflow_run("art_flow.py").successful

        @pytest.mark.artflow(engine="forky")
        def test_unknown_engine(artflow_run):
            artflow_run("art_flow.py")

        @pytest.mark.artflow(timeout="10")
        def test_timeout_as_text(artflow_run):
            artflow_run("art_flow.py")
        """
    )
    result = seed.runpytest_subprocess()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_it.py::test_unknown_engine: @pytest.mark.artflow(engine=): unknown artflow "
            "engine 'forky' (known engines: fork, recording, subprocess)",
            "*test_it.py::test_timeout_as_text: @pytest.mark.artflow(timeout=): timeout must "
            "be a positive number of seconds, not '10'",
        ]
    )
    result = seed.runpytest_subprocess("--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=2)


def test_marker_sets_the_defaults_of_a_test(seed: pytest.Pytester) -> None:
    seed.makepyfile(
        env_flow="""
        import os
        from metaflow import FlowSpec, step

        class EnvFlow(FlowSpec):
            @step
            def start(self):
                self.value = os.environ.get("FROM_MARKER")
                self.next(self.end)

            @step
            def end(self):
                pass
        """,
        test_it="""
        import pytest

        @pytest.mark.artflow(env={"FROM_MARKER": "yes"})
        def test_it(artflow_run):
            assert artflow_run("env_flow.py")["start"].data.value == "yes"
        """,
    )
    result = seed.runpytest_subprocess("--strict-markers")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("files", "reference", "message"),
    [
        ({"empty.py": "x = 1\n"}, "empty.py", "*empty.py defines no FlowSpec subclass*"),
        (
            {"two.py": SEED + SEED.replace("ArtFlow", "OtherFlow")},
            "two.py",
            "*two.py defines several flows (ArtFlow, OtherFlow); name one: 'two.py:ArtFlow'*",
        ),
        (
            {"art.py": SEED},
            "art.py:NoSuchFlow",
            "*no flow class 'NoSuchFlow' in *art.py (its flows: ArtFlow)*",
        ),
        (
            {"broken.py": "from metaflow import FlowSpec\nclass X(FlowSpec:\n    pass\n"},
            "broken.py",
            "*broken.py:2: syntax error in the flow file:*",
        ),
        ({}, "missing.py", "*flow file 'missing.py' not found*"),
        (
            {
                "noend.py": SEED.replace("def end(self)", "def finish(self)").replace(
                    "self.next(self.end)", "self.next(self.finish)"
                )
            },
            "noend.py",
            "*Metaflow cannot run ArtFlow (*noend.py*): *end*",
        ),
        ({}, "no_such_module_here:Flow", "*cannot import module 'no_such_module_here'*"),
    ],
)
def test_bad_flow_references_get_one_clear_message(
    pytester: pytest.Pytester, files: dict[str, str], reference: str, message: str
) -> None:
    for name, source in files.items():
        (pytester.path / name).write_text(source)
    pytester.makepyfile(
        test_it=f"""
        def test_it(artflow_run):
            artflow_run({reference!r})
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *FlowReferenceError: " + message])
    # One message: none of the plugin's own frames in the report.
    assert "pytest_artflow/" not in result.stdout.str()


def test_class_defined_in_a_test_function_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it="""
        from metaflow import FlowSpec, step

        def shout(text):
            return text.upper()

        def test_it(artflow_run):
            class LocalFlow(FlowSpec):
                @step
                def start(self):
                    self.word = shout("hi")
                    self.next(self.end)

                @step
                def end(self):
                    pass

            run = artflow_run(LocalFlow)
            assert run["end"].data.word == "HI"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_flows_defined_in_the_test_module_and_module_references(pytester: pytest.Pytester) -> None:
    pkg = pytester.mkpydir("mypkg")
    (pkg / "flows.py").write_text(
        SEED + SEED.replace("ArtFlow", "OtherFlow").split("if __name__")[0]
    )
    pytester.makepyfile(
        test_it="""
        from metaflow import FlowSpec, step

        class InlineFlow(FlowSpec):
            @step
            def start(self):
                self.where = __name__
                self.next(self.end)

            @step
            def end(self):
                pass

        class SecondFlow(InlineFlow):
            pass

        def test_inline(artflow_run):
            assert artflow_run(InlineFlow)["start"].data.where == "__main__"
            assert artflow_run(SecondFlow).flow_name == "SecondFlow"

        def test_module_reference(artflow_run):
            from mypkg.flows import OtherFlow
            assert artflow_run("mypkg.flows:OtherFlow")["end"].data.some_data == [1, 2, 4]
            assert artflow_run(OtherFlow).flow_name == "OtherFlow"
            assert artflow_run("mypkg/flows.py:ArtFlow").flow_name == "ArtFlow"
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


def test_isolation_home_cwd_and_client_state(seed: pytest.Pytester, tmp_path) -> None:
    """Runs as root with no USERNAME, a HOME of its own, and no Metaflow config:
    nothing may appear in HOME, the working directory or Metaflow's default cache,
    and the client is put back after each test."""
    home = tmp_path / "home"
    home.mkdir()
    seed.makepyfile(
        test_it="""
        import metaflow
        from metaflow.client import core
        from art_flow import ArtFlow

        before = {"metadata": core.current_metadata, "namespace": core.current_namespace}

        def test_first(artflow_run):
            assert artflow_run(ArtFlow).successful
            assert core.current_metadata is not before["metadata"]

        def test_after():
            assert core.current_metadata is before["metadata"]
            assert core.current_namespace is before["namespace"]
        """
    )
    listing_before = sorted(os.listdir(seed.path))
    env = {
        "HOME": str(home),
        "USER": "root",
        "METAFLOW_CLIENT_CACHE_PATH": str(tmp_path / "default_cache"),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("USERNAME", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        result = seed.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'bt'}"
        )
    result.assert_outcomes(passed=2)
    assert os.listdir(home) == []
    # pytester's own basetemp and output files aside, the working directory is unchanged.
    after = [
        n
        for n in os.listdir(seed.path)
        if not n.startswith("runpytest") and n not in ("stdout", "stderr")
    ]
    assert sorted(after) == listing_before
    assert not (tmp_path / "default_cache").exists()


def test_values_stay_readable_after_the_sandbox_is_gone(seed: pytest.Pytester) -> None:
    seed.makepyfile(
        test_it="""
        import os
        from art_flow import ArtFlow

        kept = {}

        def test_run(artflow_run, artflow_sandbox):
            kept["run"] = artflow_run(ArtFlow)
            kept["root"] = artflow_sandbox.root

        def test_read_later():
            assert not os.path.exists(kept["root"])
            assert kept["run"]["middle"].data.some_data == [1, 2, 4]
            assert "the data artifact is" in kept["run"]["middle"].stdout
        """
    )
    seed.runpytest_subprocess("--artflow-keep=never").assert_outcomes(passed=2)
