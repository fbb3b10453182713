"""Artifact equality: strict where ``==`` is loose, loose where it is wrong."""

from __future__ import annotations

import copy
import datetime
import pickle
import subprocess
import sys
import textwrap
import threading
import zoneinfo
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from pytest_artflow.compare import artifacts_equal, explain
from pytest_artflow.strategies import picklable

NAN = float("nan")
UTC = datetime.timezone.utc
PLUS_ONE = datetime.timezone(datetime.timedelta(hours=1))


@dataclass
class Point:
    x: Any
    y: Any


class Plain:
    """No ``__eq__``: equal when pickle would rebuild it the same way."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


class Slots:
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b


def another_nan() -> float:
    # a distinct NaN object, so identity cannot make the comparison pass
    return float("nan")


EQUAL = {
    "nan": (NAN, another_nan()),
    "nan in a list": ([1, NAN], [1, another_nan()]),
    "negative zero": (-0.0, -0.0),
    "complex nan": (complex(NAN, -0.0), complex(another_nan(), -0.0)),
    "distinct nans in sets": ({NAN, another_nan()}, {another_nan(), another_nan()}),
    "nan dict key": ({NAN: 1}, {another_nan(): 1}),
    "decimal nan": (Decimal("NaN"), Decimal("NaN")),
    "decimal snan": (Decimal("-sNaN12"), Decimal("-sNaN12")),
    "dataclass with nan": (Point(NAN, [1]), Point(another_nan(), [1])),
    "plain objects": (Plain(a=1, b=[NAN]), Plain(a=1, b=[another_nan()])),
    "slots": (Slots(1, NAN), Slots(1, another_nan())),
    "exceptions": (ValueError("x", 1), ValueError("x", 1)),
    "aware datetime": (
        datetime.datetime(2024, 1, 1, 12, tzinfo=PLUS_ONE),
        datetime.datetime(2024, 1, 1, 12, tzinfo=PLUS_ONE),
    ),
    "zoneinfo": (
        datetime.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        datetime.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    ),
    "ordered dict": (OrderedDict(a=1, b=2), OrderedDict(a=1, b=2)),
    "dict order does not matter": ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    "defaultdict": (defaultdict(list, a=[1]), defaultdict(list, a=[1])),
    "numpy nan": (np.array([1.0, np.nan]), np.array([1.0, np.nan])),
    "numpy nat": (np.array(["NaT", "2020"], "M8[D]"), np.array(["NaT", "2020"], "M8[D]")),
    "numpy record with nan": (
        np.array([(np.nan, 1)], dtype=[("f", "f8"), ("i", "i4")]),
        np.array([(np.nan, 1)], dtype=[("f", "f8"), ("i", "i4")]),
    ),
    "numpy object array": (np.array([[1], NAN], dtype=object), np.array([[1], NAN], dtype=object)),
    "numpy scalar": (np.float32(np.nan), np.float32(np.nan)),
    "pandas frame with nan": (
        pd.DataFrame({"a": [1.0, np.nan], "b": ["x", "y"]}),
        pd.DataFrame({"a": [1.0, np.nan], "b": ["x", "y"]}),
    ),
    "pandas series": (pd.Series([1, 2], name="s"), pd.Series([1, 2], name="s")),
    "pandas index": (pd.Index([1, 2]), pd.Index([1, 2])),
    "pandas NaT": (pd.NaT, pd.NaT),
}

DIFFERENT = {
    "signed zero": (0.0, -0.0),
    "int and float": (1, 1.0),
    "int and bool": (1, True),
    "float and bool": (1.0, True),
    "list and tuple": ([1], (1,)),
    "nested type": ({"a": [1]}, {"a": [1.0]}),
    "set member type": ({1}, {True}),
    "nan and number": (NAN, 1.0),
    "decimal exponent": (Decimal("1.0"), Decimal("1.00")),
    "decimal sign of zero": (Decimal("0"), Decimal("-0")),
    "same instant, other zone": (
        datetime.datetime(2024, 1, 1, 12, tzinfo=UTC),
        datetime.datetime(2024, 1, 1, 13, tzinfo=PLUS_ONE),
    ),
    "fold": (datetime.time(1, 30), datetime.time(1, 30, fold=1)),
    "zone name": (datetime.timezone(datetime.timedelta(0), "A"), datetime.timezone.utc),
    "empty ranges": (range(0), range(5, 5)),
    "dataclass field": (Point(1, 2), Point(1, 3)),
    "plain object state": (Plain(a=1), Plain(a=2)),
    "plain object attributes": (Plain(a=1), Plain(a=1, b=2)),
    "slots": (Slots(1, 2), Slots(1, 3)),
    "ordered dict order": (OrderedDict(a=1, b=2), OrderedDict(b=2, a=1)),
    "missing key": ({"a": 1}, {"b": 1}),
    "lengths": ([1, 2], [1, 2, 3]),
    "defaultdict factory": (defaultdict(list), defaultdict(set)),
    "numpy values": (np.array([1, 2]), np.array([1, 3])),
    "numpy dtype": (np.array([1, 2], "i4"), np.array([1, 2], "i8")),
    "numpy byte order": (np.array([1], ">i2"), np.array([1], "<i2")),
    "numpy shape": (np.zeros((2, 3)), np.zeros((3, 2))),
    "numpy record field": (
        np.array([(1.0, 1)], dtype=[("f", "f8"), ("i", "i4")]),
        np.array([(1.0, 2)], dtype=[("f", "f8"), ("i", "i4")]),
    ),
    "numpy object element type": (np.array([1, "a"], dtype=object), np.array([1.0, "a"], object)),
    "numpy scalar type": (np.float64(1.0), 1.0),
    "pandas frame value": (pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.5]})),
    "pandas series name": (pd.Series([1], name="a"), pd.Series([1], name="b")),
    "pandas index dtype": (pd.Index([1, 2]), pd.Index([1.0, 2.0])),
    "functions": (len, abs),
    "unpicklable objects": (threading.Lock(), threading.Lock()),
}


@pytest.mark.parametrize(("left", "right"), EQUAL.values(), ids=EQUAL.keys())
def test_equal_values(left: Any, right: Any) -> None:
    assert artifacts_equal(left, right)
    assert artifacts_equal(right, left)
    assert explain(left, right) == []


@pytest.mark.parametrize(("left", "right"), DIFFERENT.values(), ids=DIFFERENT.keys())
def test_different_values(left: Any, right: Any) -> None:
    assert not artifacts_equal(left, right)
    assert not artifacts_equal(right, left)
    assert explain(left, right)


def test_explain_names_the_path_and_both_sides() -> None:
    left = [0, 1, {"a": Plain(x=1), "b": Point(x=[5], y=None)}]
    right = [0, 1, {"a": Plain(x=2), "b": Point(x=[6], y=None)}]

    lines = explain(left, right)

    assert lines == [
        "at [2]['a'].x: left 1 (int), right 2 (int)",
        "at [2]['b'].x[0]: left 5 (int), right 6 (int)",
    ]


def test_explain_reports_type_and_key_differences() -> None:
    lines = explain({"n": 1, "only_left": 0}, {"n": 1.0, "only_right": 0})

    assert "at ['n']: type differs: left 1 (int), right 1.0 (float)" in lines
    assert "at top level: key 'only_left' (str) only on the left" in lines
    assert "at top level: key 'only_right' (str) only on the right" in lines


def test_explain_numpy_difference_keeps_numpy_detail() -> None:
    lines = explain({"w": np.array([1, 2, 3])}, {"w": np.array([1, 2, 4])})

    assert lines[0] == "at ['w']: arrays differ:"
    assert any("Mismatched elements: 1 / 3" in line for line in lines)


def test_explain_stops_at_the_limit() -> None:
    lines = explain(list(range(50)), [n + 1 for n in range(50)], limit=3)

    assert len(lines) == 4
    assert lines[-1].startswith("...")


def test_aliasing_is_checked_only_when_asked() -> None:
    shared = [1]
    together, apart = [shared, shared], [[1], [1]]

    assert explain(together, apart) == []
    assert explain(together, apart, aliasing=True) == [
        "at [1]: the same object as at [0] in the original, a different object after the round trip"
    ]
    assert explain(apart, together, aliasing=True) == [
        "at [1]: a different object from the one at [0] in the original, the same object "
        "after the round trip"
    ]
    assert explain(together, copy.deepcopy(together), aliasing=True) == []


def test_cycles_terminate() -> None:
    left: list[Any] = [1]
    left.append(left)
    right: list[Any] = [1]
    right.append(right)
    other: list[Any] = [2]
    other.append(other)

    assert artifacts_equal(left, right)
    assert not artifacts_equal(left, other)


def test_values_equal_their_pickled_copy_by_hand() -> None:
    value = {"a": [NAN, -0.0, Decimal("sNaN")], "p": Point(np.array([np.nan]), {1, 2})}

    assert artifacts_equal(value, pickle.loads(pickle.dumps(value, protocol=4)))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(picklable())
def test_every_value_equals_its_pickled_copy(value: Any) -> None:
    copied = pickle.loads(pickle.dumps(value, protocol=4))
    assert explain(value, copied, aliasing=True) == []


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(picklable(), picklable())
def test_explain_is_empty_exactly_when_equal(left: Any, right: Any) -> None:
    assert artifacts_equal(left, right) == (explain(left, right) == [])


def test_numpy_and_pandas_are_not_imported_for_other_values() -> None:
    script = textwrap.dedent(
        """
        import sys
        from pytest_artflow.compare import artifacts_equal, explain
        assert artifacts_equal([1.5, {"a": (2, None)}], [1.5, {"a": (2, None)}])
        assert explain([1], [2])
        heavy = {"numpy", "pandas", "metaflow", "hypothesis"} & set(sys.modules)
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_conftest_compare_hook_decides_first(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        class Money:
            def __init__(self, amount):
                self.amount = amount

        def pytest_artflow_compare(left, right):
            if isinstance(left, Money) and isinstance(right, Money):
                return round(left.amount, 2) == round(right.amount, 2)
            return None
        """
    )
    pytester.makepyfile(
        """
        from conftest import Money
        from pytest_artflow.compare import artifacts_equal, explain

        def test_hook():
            assert artifacts_equal(Money(1.001), Money(1.0))
            assert artifacts_equal({"price": [Money(1.001)]}, {"price": [Money(1.0)]})
            assert not artifacts_equal(Money(1.0), Money(2.0))
            assert "pytest_artflow_compare" in explain([Money(1)], [Money(2)])[0]
            # undecided (None): the built-in rules still apply
            assert artifacts_equal(float("nan"), float("nan"))
            assert not artifacts_equal(1, 1.0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
