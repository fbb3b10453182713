"""``from_parameters``: a flow's parameter space as a hypothesis strategy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from pytest_artflow import FlowReferenceError, FlowRunFailed, run_flow
from pytest_artflow.strategies import from_parameters

FLOWS = Path(__file__).parent / "flows"
DEFAULTS = {
    "count": 3,
    "ratio": 0.5,
    "label": "plain",
    "verbose": False,
    "my-settings": {"depth": 2, "tags": ["a"]},
}


def parameters_flow() -> type:
    from pytest_artflow.flows import load_file

    return load_file(FLOWS / "parameters_flow.py").ParametersFlow


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=from_parameters(FLOWS / "parameters_flow.py"))
def test_draws_every_parameter_by_its_type_and_default_shape(params: dict) -> None:
    assert list(sorted(params)) == sorted(DEFAULTS)
    assert type(params["count"]) is int
    assert type(params["ratio"]) is float and math.isfinite(params["ratio"])
    assert type(params["label"]) is str and "\x00" not in params["label"]
    assert type(params["verbose"]) is bool
    # JSONType: the shape of the default '{"depth": 2, "tags": ["a"]}'.
    settings_ = params["my-settings"]
    assert sorted(settings_) == ["depth", "tags"]
    assert type(settings_["depth"]) is int
    assert all(type(tag) is str for tag in settings_["tags"])


def test_defaults_are_among_the_draws() -> None:
    drawn: list[dict] = []

    @settings(max_examples=100, database=None, phases=[Phase.generate])
    @given(params=from_parameters(parameters_flow()))
    def collect(params: dict) -> None:
        drawn.append(params)

    collect()
    for name, default in DEFAULTS.items():
        assert any(p[name] == default for p in drawn), name
        assert any(p[name] != default for p in drawn), name


@settings(max_examples=30, deadline=None)
@given(params=from_parameters(parameters_flow(), count=st.integers(5, 6), settings={"depth": 1}))
def test_overrides_by_parameter_or_attribute_name(params: dict) -> None:
    assert params["count"] in (5, 6)
    assert params["my-settings"] == {"depth": 1}


def test_unknown_override_is_named() -> None:
    with pytest.raises(FlowReferenceError, match=r"no Parameter 'cuont'.*count, label"):
        from_parameters(parameters_flow(), cuont=3).validate()


def test_required_parameter_without_default_is_drawn_from_its_type(flow_file) -> None:  # type: ignore[no-untyped-def]
    path = flow_file(
        """
        from metaflow import FlowSpec, Parameter, step

        class SeedFlow(FlowSpec):
            seed = Parameter("seed", type=int, required=True)
            name_ = Parameter("run-name", required=True)

            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )

    @settings(max_examples=20, database=None)
    @given(params=from_parameters(path))
    def check(params: dict) -> None:
        assert type(params["seed"]) is int and type(params["run-name"]) is str

    check()


def test_a_type_it_cannot_draw_asks_for_an_override(flow_file) -> None:  # type: ignore[no-untyped-def]
    path = flow_file(
        """
        from metaflow import FlowSpec, Parameter, step
        from metaflow._vendor import click

        class ChoiceFlow(FlowSpec):
            mode = Parameter("mode", type=click.Choice(["a", "b"]), required=True)

            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    with pytest.raises(FlowReferenceError, match=r"cannot draw Parameter 'mode'.*'mode': strategy"):
        from_parameters(path).validate()
    assert find(from_parameters(path, mode=st.sampled_from("ab")), lambda _: True) == {"mode": "a"}


@pytest.mark.parametrize("engine", ["fork", "subprocess"])
def test_drawn_values_reach_the_flow_unchanged(engine: str) -> None:
    @settings(max_examples=6 if engine == "fork" else 3, deadline=None, database=None)
    @given(params=from_parameters(parameters_flow()))
    def check(params: dict) -> None:
        run = run_flow(parameters_flow(), engine=engine, params=params)
        start = run["start"].data
        assert (start.count, start.ratio, start.label, start.verbose) == (
            params["count"],
            params["ratio"],
            params["label"],
            params["verbose"],
        )
        assert start.settings == params["my-settings"]

    check()


SHRINK_FLOW = """
from metaflow import FlowSpec, JSONType, Parameter, step


class ShrinkFlow(FlowSpec):
    count = Parameter("count", default=1, type=int)
    ratio = Parameter("ratio", default=0.5)
    label = Parameter("label", default="plain")
    verbose = Parameter("verbose", default=False, type=bool)
    settings = Parameter("my-settings", default={"depth": 5}, type=JSONType)

    @step
    def start(self):
        if self.count > 3:
            raise ValueError(f"count {self.count} is more than 3")
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_shrinks_to_the_minimal_failing_parameters_and_keeps_only_failed_sandboxes(
    flow_file, tmp_path_factory: pytest.TempPathFactory
) -> None:  # type: ignore[no-untyped-def]
    path = flow_file(SHRINK_FLOW, name="shrink_flow.py")
    calls: list[tuple[dict, str | None]] = []

    @settings(max_examples=25, deadline=None, database=None)
    @given(params=from_parameters(path))
    def property_(params: dict) -> None:
        try:
            run_flow(path, params=params)
        except FlowRunFailed as exc:
            calls.append((params, str(exc)))
            raise
        calls.append((params, None))

    with pytest.raises(FlowRunFailed) as final:
        property_()

    minimal, message = calls[-1]  # hypothesis replays the shrunk example last
    assert minimal == {
        "count": 4,
        "ratio": 0.5,
        "label": "plain",
        "verbose": False,
        "my-settings": {"depth": 5},
    }
    assert message == str(final.value)
    assert "count 4 is more than 3" in message
    kept = Path(message.splitlines()[-1].removeprefix("sandbox kept: "))
    assert kept.is_dir() and kept.parent == tmp_path_factory.getbasetemp()

    # Every example's sandbox is removed unless its run failed.
    left = [
        p
        for p in tmp_path_factory.getbasetemp().glob("artflow-run-shrink_flow*")
        if not p.is_symlink()
    ]
    failed = [m for _, m in calls if m is not None]
    assert len(left) == len(failed) < len(calls)


def test_a_flow_file_next_to_the_test(pytester: pytest.Pytester) -> None:
    sub = pytester.mkdir("sub")
    (sub / "shrink_flow.py").write_text(SHRINK_FLOW)
    (sub / "test_it.py").write_text(
        "from hypothesis import given, settings\n"
        "from pytest_artflow.strategies import from_parameters\n\n"
        "@settings(max_examples=5)\n"
        "@given(params=from_parameters('shrink_flow.py', count=2))\n"
        "def test_it(params):\n"
        "    assert params['count'] == 2\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
