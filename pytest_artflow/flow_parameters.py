"""``from_parameters``: hypothesis strategies of a flow's Parameter values.

The flow's own ``Parameter`` declarations say what to draw: the type given
(or, as Metaflow does, the type of the default), and for ``JSONType`` the
shape of the default. Each value is drawn either as the flow's default or from
its type, in that order, so hypothesis shrinks every parameter that does not
matter back to the flow's default and a failure reads "the defaults, except
``count=4``".

The strategy is built on first draw, so decorating a test imports no Metaflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from .errors import FlowReferenceError

__all__ = ["from_parameters"]

_NO_DEFAULT = object()


def from_parameters(flow: object, **overrides: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of Parameter values for ``flow``, ready for ``params=``.

    ``flow`` is anything ``artflow_run`` takes. Keys are the Parameters' names
    (``"learning-rate"``, as ``params=`` takes them). ``overrides`` replace
    what is drawn for a Parameter (by its name, or its attribute name): a
    strategy, or a fixed value. ``IncludeFile`` Parameters are left out (the
    run reads their default) unless overridden.
    """
    return st.deferred(lambda: _for_flow(flow, overrides))


def _for_flow(flow: object, overrides: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    from metaflow import IncludeFile

    from . import flows, session

    # Drawn inside the test: a flow file is looked for as ``run_flow`` does.
    config, item = session.config(), session.item()
    search = [config.rootpath, config.invocation_params.dir] if config is not None else []
    if item is not None:
        search.insert(0, Path(item.path).parent)
    ref = flows.resolve(flow, [*search, Path.cwd()])
    fixed: dict[str, Any] = {}
    for key, value in overrides.items():
        # An attribute name reads as the Parameter itself on the flow class.
        attribute = getattr(ref.flow_class, key, None) if key.isidentifier() else None
        by_attribute = (
            attribute.name
            if attribute is not None and attribute in ref.parameters.values()
            else None
        )
        name = key if key in ref.parameters else by_attribute
        if name not in ref.parameters:
            known = ", ".join(sorted(ref.parameters)) or "none"
            raise FlowReferenceError(
                f"from_parameters({ref.name}): no Parameter {key!r} to override "
                f"(its Parameters: {known})"
            )
        fixed[name] = value if isinstance(value, st.SearchStrategy) else st.just(value)

    drawn: dict[str, st.SearchStrategy[Any]] = {}
    for name, param in ref.parameters.items():
        if name in fixed:
            drawn[name] = fixed[name]
        elif not isinstance(param, IncludeFile):
            drawn[name] = _for_parameter(ref.name, name, param)
    return st.fixed_dictionaries(drawn)


def _for_parameter(flow_name: str, name: str, param: Any) -> st.SearchStrategy[Any]:
    from .flows import _declared
    from .metaflow_seam import JSONTypeClass

    default = _declared(param, "default")
    if default is None or callable(default):
        default = _NO_DEFAULT  # none, or a deploy-time function of the deployment
    kind = _declared(param, "type")
    if kind is None:
        # Metaflow's own rule (Parameter._get_type): the default's type, else str.
        kind = type(default) if default is not _NO_DEFAULT else str
    if isinstance(kind, JSONTypeClass):
        if isinstance(default, (str, bytes)):
            default = json.loads(default)
        typed = _json_parameter(default)
    elif kind in _SCALARS:
        typed = _SCALARS[kind]()
    else:
        typed = None
    if typed is None:
        if default is _NO_DEFAULT:
            raise FlowReferenceError(
                f"from_parameters({flow_name}): cannot draw Parameter {name!r} of type "
                f"{getattr(kind, '__name__', kind)!r}; give its values: "
                f"from_parameters({flow_name}, **{{{name!r}: strategy}})"
            )
        return st.just(default)
    if default is _NO_DEFAULT:
        return typed
    return st.one_of(st.just(default), typed)


def _argument_text() -> st.SearchStrategy[str]:
    """Text that a command line can carry: no NUL, no lone surrogates."""
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"))


def _finite_floats() -> st.SearchStrategy[float]:
    # NaN and infinities are valid floats for Metaflow, yet rarely what a
    # parameter space means; override to draw them.
    return st.floats(allow_nan=False, allow_infinity=False)


_SCALARS: dict[type, Any] = {
    bool: st.booleans,
    int: st.integers,
    float: _finite_floats,
    str: _argument_text,
}


def _json_parameter(default: Any) -> st.SearchStrategy[Any] | None:
    """What a ``JSONType`` Parameter can be given, shaped like its default.

    The value travels as JSON text when it is a dict or list (``params=``
    passes containers with ``json.dumps``) and as ``str()`` otherwise, so a
    top-level bool or string (whose ``str()`` is not JSON) is not drawn.
    """
    if default is _NO_DEFAULT:
        return st.dictionaries(st.text(), _any_json())
    if isinstance(default, (dict, list, tuple)):
        return _json_like(default)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return _json_like(default)
    return None


def _json_like(shape: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON shape: the same keys, members of the same types."""
    if shape is None:
        return st.none()
    if isinstance(shape, bool):
        return st.booleans()
    if isinstance(shape, int):
        return st.integers()
    if isinstance(shape, float):
        return _finite_floats()
    if isinstance(shape, str):
        return st.text()
    if isinstance(shape, dict):
        return st.fixed_dictionaries({str(k): _json_like(v) for k, v in shape.items()})
    if isinstance(shape, (list, tuple)):
        kinds: dict[str, Any] = {}
        for member in shape:
            kinds.setdefault(_shape_key(member), member)
        members = [_json_like(m) for m in kinds.values()] or [_any_json()]
        return st.lists(st.one_of(members), max_size=max(8, len(shape)))
    return st.just(shape)


def _shape_key(value: Any) -> str:
    if isinstance(value, dict):
        return "dict:" + ",".join(sorted(map(str, value)))
    return type(value).__name__


def _any_json() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | _finite_floats() | st.text()
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
        ),
        max_leaves=8,
    )
