"""``assert_artifact`` compares with ``pytest_artflow_compare``; a plain ``==``
that the hook would have passed says so."""

from __future__ import annotations

import pytest

# Money has no __eq__, and remembers the process that made it: the plugin's
# own equality (pickled state) sees two different values, the conftest's hook
# compares amounts only.
MONEY_FLOW = """
import os
from metaflow import FlowSpec, step


class Money:
    def __init__(self, amount):
        self.amount = amount
        self.made_in = os.getpid()

    def __repr__(self):
        return f"Money({self.amount})"


class MoneyFlow(FlowSpec):
    @step
    def start(self):
        self.price = Money(100)
        self.next(self.end)

    @step
    def end(self):
        self.price = Money(self.price.amount + 1)
"""

CONFTEST = """
import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_artflow_compare(left, right):
    from money_flow import Money

    if isinstance(left, Money) and isinstance(right, Money):
        return left.amount == right.amount
    return None
"""


@pytest.fixture
def money(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(money_flow=MONEY_FLOW)
    return pytester


def test_assert_artifact_uses_the_compare_hook(money: pytest.Pytester) -> None:
    money.makepyfile(
        test_it="""
        from money_flow import Money, MoneyFlow
        from pytest_artflow import assert_artifact

        def test_flow_run(artflow_run):
            run = artflow_run(MoneyFlow)
            assert_artifact(run, "start.price", Money(100))
            assert_artifact(run, "end.price", Money(101))

        def test_task_result(artflow_run):
            run = artflow_run(MoneyFlow)
            assert_artifact(run["end"].task, "price", Money(101))

        def test_differs(artflow_run):
            run = artflow_run(MoneyFlow)
            assert_artifact(run, "start.price", Money(200))

        def test_no_such_artifact(artflow_run):
            run = artflow_run(MoneyFlow)
            assert_artifact(run, "start.cost", Money(100))
        """
    )
    result = money.runpytest_subprocess()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_differs _*",
            "E * artifact 'price' of step 'start' of MoneyFlow/* differs from the expected value",
            "E *  expected: Money(200)",
            "E *  actual:   Money(100)",
            "E *where (left: actual, right: expected):",
            "E *  at top level: pytest_artflow_compare says they differ: left Money(100) *",
            "E *'price' at every step of MoneyFlow/*:",
            "E *  start  Money(100)   <-- asserted",
            "E *  end    Money(101)",
            "*_ test_no_such_artifact _*",
            "E * step 'start' of MoneyFlow/* has no artifact 'cost' (its artifacts: name, price)",
        ]
    )


def test_plain_eq_says_the_hook_was_not_consulted(money: pytest.Pytester) -> None:
    money.makepyfile(
        test_it="""
        from money_flow import Money, MoneyFlow

        def test_eq(artflow_run):
            run = artflow_run(MoneyFlow)
            assert run["start"].data.price == Money(100)

        def test_really_differs(artflow_run):
            run = artflow_run(MoneyFlow)
            assert run["start"].data.price == Money(300)
        """
    )
    result = money.runpytest_subprocess()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_eq _*",
            "E * artifact 'price' of step 'start': Money(100) == Money(100)",
            "E *pytest_artflow_compare hooks included) says these are equal, but == does not*",
            "E *  pytest_artflow.assert_artifact(run, 'start.price', Money(100))",
            "E *'price' at every step of MoneyFlow/*",
        ]
    )
    # Where the hook says they differ too, there is nothing to point out.
    # (Its section of the report: up to the short summary, which under CI=true
    # repeats test_eq's whole message.)
    test_really_differs = result.stdout.str().split("_ test_really_differs _")[1]
    test_really_differs = test_really_differs.split("short test summary info")[0]
    assert "Money(300)" in test_really_differs
    assert "does not consult it" not in test_really_differs
