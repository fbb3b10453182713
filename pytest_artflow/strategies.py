"""Hypothesis strategies for artifact values and artifact names.

``picklable()`` is meant to find what breaks in a Metaflow round trip, so it
reaches for the awkward corners on purpose: NaN and ``-0.0``, lone
surrogates, huge integers, ``sNaN`` decimals, time zones with ``fold``,
shared references, numpy arrays of every dtype, pandas frames. The types it
builds for containers with attributes (``Record``, ``Pair``...) live at module
level so they unpickle anywhere.

Strategies are built on first draw (``st.deferred``), so neither importing
this module nor decorating a test imports numpy, pandas or metaflow.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import importlib
import keyword
import math
import pathlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from hypothesis import strategies as st

from . import session
from .flow_parameters import from_parameters

__all__ = ["artifact_names", "artifacts", "from_parameters", "picklable"]


# Types for picklable() to build: defined at module level so that pickle
# finds them again when it loads a value.


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Permission(enum.Flag):
    READ = 1
    WRITE = 2
    EXECUTE = 4


@dataclass
class Record:
    name: Any
    value: Any


@dataclass(frozen=True)
class Frozen:
    value: Any


@dataclass
class Slotted:
    __slots__ = ("value",)
    value: Any


class Pair(NamedTuple):
    first: Any
    second: Any


def picklable() -> st.SearchStrategy[Any]:
    """Arbitrary picklable values, nested up to a dozen leaves.

    Also draws from every strategy that a ``pytest_artflow_strategies`` hook
    implementation contributes, read at each draw, so conftest.py files
    loaded after this strategy was made still count.
    """
    return st.deferred(lambda: _picklable())


def artifact_names() -> st.SearchStrategy[str]:
    """Names a step can assign as ``self.<name>`` and get back as an artifact.

    ASCII only: Python normalises non-ASCII identifiers in source code (NFKC)
    but not in ``setattr``, so such a name may not read back as written.
    """
    return st.deferred(lambda: _artifact_names())


def artifacts() -> st.SearchStrategy[dict[str, Any]]:
    """What a step may leave behind: artifact names mapped to values."""
    return st.dictionaries(artifact_names(), picklable(), max_size=4)


@functools.cache
def _artifact_names() -> st.SearchStrategy[str]:
    reserved = _reserved_names()
    return st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
        lambda name: name not in reserved
    )


def _reserved_names() -> frozenset[str]:
    """Names taken by Metaflow on a flow instance, or by Python itself."""
    from metaflow import FlowSpec

    taken = {name for name in dir(FlowSpec) if not name.startswith("_")}
    taken |= set(FlowSpec._NON_PARAMETERS) | set(FlowSpec._EPHEMERAL)
    taken.add("name")  # set by FlowSpec.__init__ and saved as an artifact
    return frozenset(taken | set(keyword.kwlist))


@functools.cache
def _picklable() -> st.SearchStrategy[Any]:
    leaves = st.one_of(_scalars(), *_array_strategies())
    hashable = _hashable()
    leaves = leaves | _contributed(leaves)

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        sized: dict[str, Any] = {"max_size": 4}
        return st.one_of(
            st.lists(children, **sized),
            st.lists(children, **sized).map(tuple),
            st.dictionaries(hashable, children, **sized),
            st.sets(hashable, **sized),
            st.frozensets(hashable, **sized),
            st.builds(Record, children, children),
            st.builds(Frozen, children),
            st.builds(Slotted, children),
            st.builds(Pair, children, children),
            # One object in two places: the round trip must keep it shared.
            children.map(lambda child: [child, child]),
            *_object_arrays(children),
        )

    return st.recursive(leaves, extend, max_leaves=12)


def _contributed(fallback: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    @st.composite
    def draw_contributed(draw: st.DrawFn) -> Any:
        relay = session.hook()
        caller = getattr(relay, "pytest_artflow_strategies", None) if relay else None
        strategies = [
            strategy
            for contribution in (caller() if caller is not None else [])
            for strategy in (contribution or {}).values()
        ]
        return draw(st.one_of(strategies) if strategies else fallback)

    return draw_contributed()


def _text() -> st.SearchStrategy[str]:
    # Lone surrogates too (pickle writes str with "surrogatepass"); drawn on
    # purpose, as hypothesis's own alphabets leave them out or make them rare.
    with_surrogate = st.builds(
        lambda head, surrogate, tail: head + surrogate + tail,
        st.text(max_size=4),
        st.characters(categories=["Cs"]),
        st.text(max_size=4),
    )
    return st.text(max_size=12) | with_surrogate


def _time_zones() -> st.SearchStrategy[datetime.tzinfo | None]:
    day = datetime.timedelta(hours=24)
    offsets = st.timedeltas(min_value=-day, max_value=day).filter(lambda delta: abs(delta) < day)
    fixed = st.builds(datetime.timezone, offsets) | st.builds(datetime.timezone, offsets, _text())
    zones: st.SearchStrategy[Any] = st.none() | fixed
    if _has_zoneinfo_data():
        zones = zones | st.timezones()
    return zones


def _has_zoneinfo_data() -> bool:
    try:
        import zoneinfo

        return bool(zoneinfo.available_timezones())
    except ImportError:
        return False


def _hashable_scalars() -> st.SearchStrategy[Any]:
    zones = _time_zones()
    step = st.integers(min_value=1, max_value=5) | st.integers(min_value=-5, max_value=-1)
    path_types = st.sampled_from([pathlib.Path, pathlib.PurePosixPath, pathlib.PureWindowsPath])
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        # Wider than one machine word, and past 256 bytes (pickle's LONG4).
        st.integers(min_value=64, max_value=4200).flatmap(
            lambda bits: st.integers(-(2**bits), 2**bits)
        ),
        st.floats(),
        st.sampled_from([math.nan, -0.0, math.inf, -math.inf]),  # more often than floats()
        st.complex_numbers(),
        _text(),
        st.binary(max_size=12),
        st.decimals().filter(lambda value: not value.is_snan()),  # sNaN cannot be hashed
        st.fractions(),
        st.dates(),
        st.datetimes(timezones=zones),
        st.times(timezones=zones),
        st.timedeltas(),
        st.uuids(),
        st.builds(lambda cls, text: cls(text), path_types, _text()),
        st.builds(range, st.integers(-5, 5), st.integers(-5, 5), step),
        st.from_type(Colour),
        st.from_type(Level),
        st.from_type(Permission),
    )


def _scalars() -> st.SearchStrategy[Any]:
    signalling = st.sampled_from(["sNaN", "-sNaN", "sNaN7"]).map(decimal.Decimal)
    return st.one_of(
        _hashable_scalars(),
        st.decimals(),
        signalling,  # rare in decimals(), and the hardest to compare
        st.builds(bytearray, st.binary(max_size=12)),
    )


def _hashable() -> st.SearchStrategy[Any]:
    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=3).map(tuple),
            st.frozensets(children, max_size=3),
            st.builds(Frozen, children),
            st.builds(Pair, children, children),
        )

    return st.recursive(_hashable_scalars(), extend, max_leaves=4)


def _importable(module: str) -> bool:
    """Whether ``module`` imports; imported now, since its strategies need it."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _array_strategies() -> list[st.SearchStrategy[Any]]:
    """numpy arrays and scalars, pandas objects: each only when installed."""
    strategies: list[st.SearchStrategy[Any]] = []
    if _importable("numpy"):
        import hypothesis.extra.numpy as npst

        shapes = npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
        strategies.append(npst.arrays(_native_dtypes(), shapes))
        strategies.append(npst.arrays(npst.nested_dtypes(_native_dtypes()), shapes))
        strategies.append(npst.arrays(_native_dtypes(), ()).map(lambda array: array[()]))
    if _importable("pandas"):
        strategies.extend(_pandas_strategies())
    return strategies


def _native_dtypes() -> st.SearchStrategy[Any]:
    """Every scalar dtype, in native byte order only.

    numpy pickles a non-native array (``>i2`` here) with pickle protocol 4,
    which Metaflow uses, and loads it back as native (``<i2``): same values,
    another dtype. ``assert_roundtrip`` reports that; drawing such arrays
    here would only rediscover it in every test.
    """
    import hypothesis.extra.numpy as npst
    import numpy as np

    native: dict[str, Any] = {"endianness": "="}
    # long double (float96/float128) where the platform has one
    long_bits = np.dtype(np.longdouble).itemsize * 8
    extended: tuple[Any, ...] = (long_bits,) if long_bits in (96, 128) else ()
    return st.one_of(
        npst.boolean_dtypes(),
        npst.integer_dtypes(**native),
        npst.unsigned_integer_dtypes(**native),
        npst.floating_dtypes(sizes=(16, 32, 64, *extended), **native),
        npst.complex_number_dtypes(sizes=(64, 128, *(2 * bits for bits in extended)), **native),
        npst.datetime64_dtypes(**native),
        npst.timedelta64_dtypes(**native),
        npst.byte_string_dtypes(**native),
        npst.unicode_string_dtypes(**native),
    )


def _object_arrays(children: st.SearchStrategy[Any]) -> list[st.SearchStrategy[Any]]:
    if not _importable("numpy"):
        return []
    import hypothesis.extra.numpy as npst

    shapes = npst.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=3)
    return [npst.arrays(object, shapes, elements=children, fill=st.nothing())]


def _pandas_strategies() -> list[st.SearchStrategy[Any]]:
    try:
        import hypothesis.extra.pandas as pdst
    except ImportError:  # a pandas too old or too new for this hypothesis
        return []
    dtypes = ["int64", "float64", "bool", "complex128", "datetime64[ns]", "timedelta64[ns]"]
    index = pdst.range_indexes(max_size=4)
    column_names = st.lists(_text(), min_size=1, max_size=3, unique=True)
    return [
        st.sampled_from(dtypes).flatmap(lambda dtype: pdst.series(dtype=dtype, index=index)),
        pdst.series(elements=_text(), dtype=object, index=index),
        st.sampled_from(dtypes).flatmap(
            lambda dtype: pdst.indexes(dtype=dtype, max_size=4, unique=False)
        ),
        st.tuples(column_names, st.lists(st.sampled_from(dtypes), min_size=3, max_size=3)).flatmap(
            lambda spec: pdst.data_frames(
                [
                    pdst.column(name, dtype=dtype)
                    for name, dtype in zip(spec[0], spec[1], strict=False)
                ],
                index=index,
            )
        ),
    ]
