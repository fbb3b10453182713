"""The strategies draw the awkward values they promise, and valid artifact names."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import keyword
import math
import pickle
import subprocess
import sys
import textwrap
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from pytest_artflow.strategies import Pair, Record, artifact_names, artifacts, picklable


def parts(value: Any) -> Iterator[Any]:
    """The value and everything nested in it (containers, dataclass fields)."""
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from parts(key)
            yield from parts(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from parts(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from parts(getattr(value, field.name))


def is_float(predicate: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda value: type(value) is float and predicate(value)


def has_surrogate(value: Any) -> bool:
    return isinstance(value, str) and any(0xD800 <= ord(char) <= 0xDFFF for char in value)


def shares_a_list(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 2
        and isinstance(value[0], list)
        and value[0] is value[1]
    )


KINDS: dict[str, Callable[[Any], bool]] = {
    "NaN": is_float(math.isnan),
    "negative zero": is_float(lambda x: x == 0 and math.copysign(1, x) < 0),
    "infinity": is_float(math.isinf),
    "integer beyond 64 bits": lambda v: type(v) is int and abs(v) > 2**64,
    "integer beyond 256 bytes": lambda v: type(v) is int and abs(v) > 2**2100,
    "complex": lambda v: type(v) is complex,
    "lone surrogate": has_surrogate,
    "bytearray": lambda v: type(v) is bytearray,
    "decimal sNaN": lambda v: isinstance(v, decimal.Decimal) and v.is_snan(),
    "fraction": lambda v: type(v).__name__ == "Fraction",
    "fixed-offset datetime": lambda v: (
        isinstance(v, datetime.datetime) and isinstance(v.tzinfo, datetime.timezone)
    ),
    "zoneinfo datetime": lambda v: (
        isinstance(v, datetime.datetime) and isinstance(v.tzinfo, zoneinfo.ZoneInfo)
    ),
    "aware time": lambda v: isinstance(v, datetime.time) and v.tzinfo is not None,
    "timedelta": lambda v: type(v) is datetime.timedelta,
    "uuid": lambda v: type(v).__name__ == "UUID",
    "path": lambda v: type(v).__module__ == "pathlib",
    "range": lambda v: type(v) is range,
    "enum": lambda v: isinstance(v, enum.Enum),
    "set": lambda v: type(v) is set and len(v) > 1,
    "frozenset": lambda v: type(v) is frozenset and len(v) > 0,
    "dict": lambda v: type(v) is dict and len(v) > 1,
    "dataclass": lambda v: type(v) is Record,
    "named tuple": lambda v: type(v) is Pair,
    "shared reference": shares_a_list,
    "numpy array": lambda v: isinstance(v, np.ndarray) and v.ndim >= 2,
    "numpy record array": lambda v: isinstance(v, np.ndarray) and v.dtype.names is not None,
    "numpy object array": lambda v: isinstance(v, np.ndarray) and v.dtype == object,
    "numpy time array": lambda v: isinstance(v, np.ndarray) and v.dtype.kind in "mM",
    "numpy scalar": lambda v: isinstance(v, np.generic),
    "pandas series": lambda v: isinstance(v, pd.Series) and len(v) > 0,
    "pandas frame": lambda v: isinstance(v, pd.DataFrame) and v.shape[1] > 1,
}


def test_picklable_draws_every_promised_kind() -> None:
    seen: set[str] = set()

    # derandomize: the same examples every run, so this cannot be flaky
    @settings(
        max_examples=1000,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(picklable())
    def sweep(value: Any) -> None:
        for part in parts(value):
            seen.update(kind for kind, accepts in KINDS.items() if accepts(part))

    sweep()

    assert set(KINDS) - seen == set()


def test_reserved_names_are_never_drawn() -> None:
    from metaflow import FlowSpec

    reserved = {"name", "input", "index", "foreach_stack", "next", "merge_artifacts", "cmd"}
    reserved |= {"script_name", "class", "None", "True", "lambda"}

    @settings(max_examples=400, database=None)
    @given(artifact_names())
    def check(name: str) -> None:
        assert name.isidentifier() and name.isascii()
        assert not name.startswith("_")
        assert not keyword.iskeyword(name)
        assert name not in reserved
        assert not hasattr(FlowSpec, name)

    check()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(artifacts())
def test_artifacts_are_named_values(values: dict[str, Any]) -> None:
    assert all(name.isidentifier() and not name.startswith("_") for name in values)
    pickle.dumps(values, protocol=4)


def test_making_strategies_imports_nothing_heavy() -> None:
    script = textwrap.dedent(
        """
        import sys
        from pytest_artflow.strategies import artifacts, picklable
        strategies = (picklable(), artifacts())
        heavy = {"numpy", "pandas", "metaflow"} & set(sys.modules)
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_numpy_and_pandas_are_optional() -> None:
    script = textwrap.dedent(
        """
        import sys

        class Uninstalled:
            # numpy and pandas look uninstalled

            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in ("numpy", "pandas"):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Uninstalled())
        from hypothesis import given, settings
        from pytest_artflow.strategies import picklable

        seen = []

        @settings(max_examples=50, database=None)
        @given(picklable())
        def draw(value):
            seen.append(value)

        draw()
        assert len(seen) >= 50
        assert "numpy" not in sys.modules and "pandas" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_conftest_can_contribute_strategies(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from hypothesis import strategies as st

        class Money:
            def __init__(self, cents):
                self.cents = cents

        def pytest_artflow_strategies():
            return {Money: st.builds(Money, st.integers(0, 10**6))}
        """
    )
    pytester.makepyfile(
        """
        from hypothesis import HealthCheck, Phase, find, settings
        from conftest import Money
        from pytest_artflow.strategies import picklable

        def contains_money(value):
            if isinstance(value, Money):
                return True
            if isinstance(value, (list, tuple)):
                return any(contains_money(item) for item in value)
            return False

        def test_contributed_type_is_drawn():
            search = settings(max_examples=2000, phases=[Phase.generate], database=None,
                              suppress_health_check=list(HealthCheck))
            assert contains_money(find(picklable(), contains_money, settings=search))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
