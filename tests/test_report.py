"""What ``pytest --artflow`` reports: header, summary, per-step timings, JUnit
properties, and kept sandboxes that Metaflow's client can open."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_artflow.collect.report import FlowSummary, StepSummary

PASSING = """
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
        pass
"""

FAILING = """
from metaflow import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.x = 41
        self.next(self.middle)

    @step
    def middle(self):
        raise KeyError("lost")
        self.next(self.end)

    @step
    def end(self):
        pass
"""

# @catch: the task fails, Metaflow records it as unsuccessful, the run goes on.
CAUGHT = """
from metaflow import FlowSpec, catch, step


class CaughtFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.fragile)

    @catch(var="problem")
    @step
    def fragile(self):
        raise RuntimeError("handled")
        self.next(self.end)

    @step
    def end(self):
        pass
"""

SECONDS = r"\d+\.\d\d s"


def sandboxes(basetemp: Path) -> list[str]:
    return sorted(p.name for p in basetemp.glob("artflow-*") if p.is_dir() and not p.is_symlink())


def test_header_names_the_engine_and_where_sandboxes_are_kept(pytester: pytest.Pytester) -> None:
    basetemp = pytester.path / "bt"
    result = pytester.runpytest(
        "--artflow",
        f"--basetemp={basetemp}",
        "--artflow-keep=always",
        "--artflow-engine=subprocess",
    )
    result.stdout.fnmatch_lines(
        [
            f"artflow: engine subprocess, sandboxes under {basetemp}, kept: always",
            "artflow: run locally (decorators removed from flows): @batch @kubernetes "
            "@resources @conda @pypi @conda_base @pypi_base",
        ]
    )
    pytester.makeini("[pytest]\nartflow_run_locally =\nartflow_engine = other\n")
    pytester.makeconftest(
        "from pytest_artflow.engines.subprocess import SubprocessEngine\n"
        "def pytest_artflow_engines():\n"
        "    return {'other': SubprocessEngine}\n"
    )
    result = pytester.runpytest("--artflow")
    result.stdout.fnmatch_lines(["artflow: engine other, sandboxes under *, kept: failed"])
    result.stdout.no_fnmatch_line("artflow: run locally*")


def test_summary_has_a_line_per_flow_and_junit_has_per_step_properties(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(art_flow=PASSING, failing_flow=FAILING, caught_flow=CAUGHT)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("--artflow", "--artflow-keep=never", f"--junitxml={xml}")
    result.assert_outcomes(passed=2, failed=1)
    lines = result.outlines
    summary = lines[lines.index(next(x for x in lines if "artflow summary" in x)) + 1 :]
    assert re.fullmatch(
        rf"PASSED art_flow.py::ArtFlow: 3 steps \(start, middle, end\), 3 tasks, {SECONDS}",
        summary[0],
    )
    assert re.fullmatch(
        rf"PASSED caught_flow.py::CaughtFlow: 3 steps \(start, fragile, end\), 3 tasks, {SECONDS}",
        summary[1],
    )
    assert re.fullmatch(
        rf"FAILED failing_flow.py::FailingFlow: 2 of 3 steps \(start, middle\), 2 tasks, "
        rf"{SECONDS}, failed in step 'middle'",
        summary[2],
    )
    # Per-step timings are for -v.
    assert summary[3].startswith("=")

    cases = {case.get("name"): case for case in ET.parse(xml).iter("testcase")}
    failed = {p.get("name"): p.get("value") for p in cases["FailingFlow"].iter("property")}
    assert failed["artflow_failed_step"] == "middle"
    assert failed["artflow_steps"] == "start middle"
    assert failed["artflow_tasks"] == "2"
    assert re.fullmatch(r"passed, 1 task, \d+\.\d{3} s", failed["artflow_step:start"])
    assert re.fullmatch(r"failed, 1 task, \d+\.\d{3} s", failed["artflow_step:middle"])
    passed = {p.get("name"): p.get("value") for p in cases["ArtFlow"].iter("property")}
    assert "artflow_failed_step" not in passed
    assert passed["artflow_steps"] == "start middle end"
    caught = {p.get("name"): p.get("value") for p in cases["CaughtFlow"].iter("property")}
    assert "artflow_failed_step" not in caught
    assert caught["artflow_step:fragile"].startswith("caught, 1 task, ")
    assert cases["FailingFlow"].find("failure") is not None


# The exception of end is caught, but a later step needs what the caught one never set.
FAILS_AFTER_CATCH = """
from metaflow import FlowSpec, catch, step


class FailsAfterCatchFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.fragile)

    @catch(var="problem", print_exception=False)
    @step
    def fragile(self):
        raise ValueError("no result")
        self.result = 1
        self.next(self.end)

    @step
    def end(self):
        print(self.result)
"""


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_caught_exceptions_pass_and_the_report_says_which_task_caught_what(
    pytester: pytest.Pytester, engine: str
) -> None:
    corpus = Path(__file__).parent / "flows" / "catch_end_flow.py"
    pytester.makepyfile(catch_end_flow=corpus.read_text(), fails_after_catch=FAILS_AFTER_CATCH)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--artflow", f"--artflow-engine={engine}", "-v", f"--junitxml={xml}"
    )
    # As `python flow.py run`: caught exceptions, in end too, let the run finish.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines(
        [
            r"PASSED catch_end_flow.py::CatchEndFlow: 4 steps \(start, body, join, end\), "
            rf"6 tasks, {SECONDS}$",
            rf"    start\s+1 task \s+{SECONDS}$",
            rf"    body \s+3 tasks\s+{SECONDS}  CAUGHT$",
            r"      task \d+ caught ValueError: cannot handle b \(in artifact 'problem'\)$",
            rf"    join \s+1 task \s+{SECONDS}$",
            rf"    end  \s+1 task \s+{SECONDS}  CAUGHT$",
            r"      task \d+ caught RuntimeError: end saw \['A', None, 'C'\]$",
            r"FAILED fails_after_catch.py::FailsAfterCatchFlow: 3 steps \(start, fragile, end\), "
            rf"3 tasks, {SECONDS}, failed in step 'end'$",
            rf"    start  \s+1 task \s+{SECONDS}$",
            rf"    fragile\s+1 task \s+{SECONDS}  CAUGHT$",
            r"      task \d+ caught ValueError: no result \(in artifact 'problem'\)$",
            rf"    end    \s+1 task \s+{SECONDS}  FAILED$",
        ]
    )
    result.stdout.fnmatch_lines(["*FailsAfterCatchFlow/* failed in step 'end' *AttributeError*"])
    result.stdout.no_fnmatch_line("*without reporting an exception*")

    cases = {case.get("name"): case for case in ET.parse(xml).iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["CatchEndFlow"].iter("property")}
    assert "artflow_failed_step" not in props
    assert props["artflow_step:body"].startswith("caught, 3 tasks, ")
    assert props["artflow_step:end"].startswith("caught, 1 task, ")
    caught = {name.rsplit("/", 1)[0]: v for name, v in props.items() if "caught:" in name}
    assert caught == {
        "artflow_caught:body": "ValueError: cannot handle b (in artifact 'problem')",
        "artflow_caught:end": "RuntimeError: end saw ['A', None, 'C']",
    }
    props = {p.get("name"): p.get("value") for p in cases["FailsAfterCatchFlow"].iter("property")}
    assert props["artflow_failed_step"] == "end"
    assert props["artflow_step:fragile"].startswith("caught, 1 task, ")
    assert props["artflow_step:end"].startswith("failed, 1 task, ")


REMOTE = """
from metaflow import FlowSpec, batch, step


class RemoteFlow(FlowSpec):
    @batch(cpu=2)
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass
"""

# The property names every flow test has, then those of each case that applies.
# A new property: a flow here that writes it, its names in the case, and a line in the
# README; ``<step>`` stands for a step's name.
ALWAYS = {
    "artflow_flow",
    "artflow_run",
    "artflow_steps",
    "artflow_graph_steps",
    "artflow_tasks",
    "artflow_duration_s",
    "artflow_step:<step>",
}
PROPERTY_CASES = {
    "ArtFlow": ("art_flow", PASSING, ALWAYS),
    "FailingFlow": ("failing_flow", FAILING, ALWAYS | {"artflow_failed_step", "artflow_sandbox"}),
    "RetryFlow": (
        "retry_flow",
        (Path(__file__).parent / "flows" / "retry_flow.py").read_text(),
        ALWAYS | {"artflow_attempts:<step>"},
    ),
    "RemoteFlow": ("remote_flow", REMOTE, ALWAYS | {"artflow_run_locally"}),
    "CatchEndFlow": (
        "catch_end_flow",
        (Path(__file__).parent / "flows" / "catch_end_flow.py").read_text(),
        ALWAYS | {"artflow_caught:<step>"},
    ),
}


def property_kind(name: str) -> str:
    """``artflow_step:start`` and ``artflow_step:<step>`` are one kind: ``artflow_step:``."""
    prefix, colon, _ = name.partition(":")
    return prefix + colon


def documented_properties() -> set[str]:
    """The kinds of property the README's ``--junitxml`` paragraph lists."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    paragraph = readme[readme.index("`--junitxml` gives") :].split("\n\n")[0]
    return {
        property_kind(name) for name in re.findall(r"`(artflow_[a-z_]+(?::[^`]*)?)`", paragraph)
    }


def test_junit_properties_are_the_documented_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{module: source for module, source, _ in PROPERTY_CASES.values()})
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("--artflow", f"--junitxml={xml}")
    result.assert_outcomes(passed=4, failed=1)
    seen: set[str] = set()
    for case in ET.parse(xml).iter("testcase"):
        kinds = {property_kind(p.get("name")) for p in case.iter("property")}
        expected = {property_kind(name) for name in PROPERTY_CASES[case.get("name")][2]}
        assert kinds == expected, case.get("name")
        seen |= kinds
    assert len(seen) > len(ALWAYS)
    # Every property written is documented; the README may list more (of flows not here).
    assert seen <= documented_properties(), seen - documented_properties()


def test_verbose_summary_has_per_step_timings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(art_flow=PASSING)
    result = pytester.runpytest_subprocess("--artflow", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [
            r"PASSED art_flow.py::ArtFlow: 3 steps .*",
            rf"    start \s+1 task \s+{SECONDS}$",
            rf"    middle\s+1 task \s+{SECONDS}$",
            rf"    end   \s+1 task \s+{SECONDS}$",
        ]
    )


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_verbose_summary_says_how_many_attempts_a_retried_step_took(
    pytester: pytest.Pytester, engine: str
) -> None:
    retry_flow = Path(__file__).parent / "flows" / "retry_flow.py"
    pytester.makepyfile(retry_flow=retry_flow.read_text())
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--artflow", "-v", f"--artflow-engine={engine}", f"--junitxml={xml}"
    )
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [
            r"PASSED retry_flow.py::RetryFlow: 3 steps .*",
            rf"    start\s+1 task \s+{SECONDS}$",
            rf"    flaky\s+1 task \s+{SECONDS}  \(1 task passed after 2 attempts\)$",
            rf"    end  \s+1 task \s+{SECONDS}$",
        ]
    )
    case = next(ET.parse(xml).iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["artflow_attempts:flaky"] == "1 task, 2 attempts"
    assert "artflow_attempts:start" not in props


def test_kept_failed_sandbox_opens_with_the_printed_client_lines(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(art_flow=PASSING, failing_flow=FAILING)
    basetemp = pytester.path / "bt"
    result = pytester.runpytest_subprocess(
        "--artflow", f"--basetemp={basetemp}", "--artflow-keep=failed"
    )
    result.assert_outcomes(passed=1, failed=1)
    assert sandboxes(basetemp) == ["artflow-FailingFlow0"]
    kept = basetemp / "artflow-FailingFlow0"
    result.stdout.fnmatch_lines(
        [
            f"sandbox kept (--artflow-keep): {kept}",
            "inspect it with Metaflow's client:",
            "    from metaflow import Flow, Run, metadata, namespace",
            f"    metadata('local@{kept}')",
            "    namespace(None)",
            "    run = Run('FailingFlow/*')",
            "    run['middle'].task.data  # the failing step's artifacts",
            f"    sandbox kept: {kept}",
        ]
    )
    lines = result.outlines
    start = lines.index("inspect it with Metaflow's client:") + 1
    code = "\n".join(line.strip() for line in lines[start : start + 4])
    code += "\nprint(run['start'].task.data.x, run.successful, run['middle'].task.exception)"
    # A fresh interpreter somewhere else, with no Metaflow settings of ours.
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAFLOW_")}
    env["METAFLOW_CLIENT_CACHE_PATH"] = str(tmp_path / "client-cache")
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("41 False ")
    assert "lost" in out


@pytest.mark.parametrize(("keep", "left"), [("never", []), ("always", ["artflow-ArtFlow0"])])
def test_keep_never_and_always(pytester: pytest.Pytester, keep: str, left: list[str]) -> None:
    pytester.makepyfile(art_flow=PASSING)
    basetemp = pytester.path / "bt"
    result = pytester.runpytest_subprocess(
        "--artflow", f"--basetemp={basetemp}", f"--artflow-keep={keep}"
    )
    result.assert_outcomes(passed=1)
    assert sandboxes(basetemp) == left
    if left:
        result.stdout.fnmatch_lines([f"    sandbox kept: {basetemp / left[0]}"])


identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
milliseconds = st.integers(0, 10**7).map(lambda ms: ms / 1000)
step_summaries = st.builds(
    StepSummary,
    name=identifiers,
    tasks=st.integers(0, 10**4),
    seconds=st.none() | milliseconds,
    status=st.sampled_from(["passed", "failed", "caught"]),
    caught=st.lists(st.tuples(st.from_regex(r"[\w-]{1,12}", fullmatch=True), st.text())),
)
retried_steps = st.builds(
    lambda step, retried, attempts: dataclasses.replace(step, retried=retried, attempts=attempts),
    step_summaries,
    st.integers(1, 10**4),
    st.integers(2, 100),
)


@given(
    flow=identifiers,
    steps=st.lists(step_summaries | retried_steps, unique_by=lambda s: s.name, max_size=8),
    graph_steps=st.integers(0, 50),
    duration=milliseconds,
    failed=st.none() | identifiers,
    local=st.lists(st.builds("@{} on {}".format, st.sampled_from(["batch", "pypi"]), identifiers)),
    run=st.none() | identifiers.map(lambda s: f"Flow/{s}"),
    sandbox=st.none() | st.just("/tmp/some where/artflow-X0"),
)
def test_summary_survives_the_trip_through_user_properties(
    flow: str,
    steps: list[StepSummary],
    graph_steps: int,
    duration: float,
    failed: str | None,
    local: list[str],
    run: str | None,
    sandbox: str | None,
) -> None:
    summary = FlowSummary(flow, run, steps, graph_steps, duration, failed, local, sandbox)
    # What xdist ships and junitxml writes: names and str() of values.
    shipped = [(name, str(value)) for name, value in summary.properties()]
    assert FlowSummary.from_properties(shipped) == summary
    assert FlowSummary.from_properties([("other", "x")]) is None
