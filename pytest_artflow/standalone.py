"""``run_flow``: ``artflow_run`` as a plain function, with a fresh sandbox per call.

A fixture is set up once per test, so hypothesis refuses function-scoped
fixtures in a ``@given`` test (every example would share one sandbox).
``run_flow`` needs none: each call makes its own sandbox, runs the flow, reads
the run into plain objects and removes the sandbox unless the run failed. In a
pytest session it uses that session's settings (options, ini, the running
test's ``artflow`` marker), its engines (one fork server for the session) and
its base temporary directory; outside pytest it has engines of its own,
closed when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import session
from .errors import FlowRunFailed
from .settings import keeps_sandbox

if TYPE_CHECKING:
    import pytest

    from .engines import EngineSet
    from .results import FlowRun
    from .settings import RunDefaults

__all__ = ["run_flow"]


def run_flow(flow: object, *, check: bool = True, **options: Any) -> FlowRun:
    """Run ``flow`` end to end in a new sandbox; takes ``artflow_run``'s arguments.

    Metaflow's client in this process is pointed at the sandbox only while
    the run is read, so nothing global changes; the result's values stay
    readable after the sandbox is removed. A failed run's sandbox is kept (as
    ``--artflow-keep`` says; ``failed`` by default) and named in the
    ``FlowRunFailed`` message, so the failure hypothesis reports last (the
    shrunk example) points at its own datastore.
    """
    __tracebackhide__ = True
    from .runner import ArtflowRunner
    from .sandbox import Sandbox

    context = _context()
    sandbox = Sandbox(context.new_root(_label(flow)))
    stack = contextlib.ExitStack()
    areas: list[Any] = []

    def s3_area() -> Any:
        # ``datastore="s3"``: an area of the S3 test server for this call.
        from . import s3

        areas.append(s3.open_area(sandbox, _label(flow), context.s3_endpoint, stack))
        return areas[-1]

    runner = ArtflowRunner(
        sandbox=sandbox,
        engines=context.engines,
        hook=context.hook,
        defaults=context.defaults,
        search_dirs=context.search_dirs,
        s3_area=s3_area,
    )
    failed = True
    try:
        with sandbox.client_scope(), stack:
            try:
                run = runner(flow, check=check, **options)
            finally:
                if areas:
                    # Values in an S3 area load through the client settings the
                    # stack puts back: load them while they hold.
                    sandbox.finish_reading()
        failed = not run.successful
        return run
    except FlowRunFailed as exc:
        if keeps_sandbox(context.keep, failed=True):
            raise FlowRunFailed(f"{exc}\nsandbox kept: {sandbox.root}", run=exc.run).with_traceback(
                None
            ) from exc.__cause__
        raise
    except BaseException:
        failed = False  # no run to look at: a bad reference, an interrupt
        raise
    finally:
        sandbox.settle(context.keep, failed=failed)
        if not keeps_sandbox(context.keep, failed=failed):
            for area in areas:
                area.remove()


@dataclass
class _Context:
    """Where a ``run_flow`` call gets its engines, settings and sandbox from."""

    engines: EngineSet
    hook: Any
    defaults: RunDefaults
    search_dirs: list[Path]
    keep: str
    tmp_path_factory: pytest.TempPathFactory | None = None
    #: ``--artflow-s3-endpoint``: the user's S3 server instead of a local one.
    s3_endpoint: str | None = None

    def new_root(self, label: str) -> Path:
        prefix = f"artflow-run-{label}"
        if self.tmp_path_factory is not None:
            return self.tmp_path_factory.mktemp(prefix, numbered=True)
        return Path(tempfile.mkdtemp(prefix=prefix + "-"))


def _label(flow: object) -> str:
    """A directory-name-safe name for the flow; Metaflow's local metadata
    globs its paths, so only word characters."""
    if isinstance(flow, type):
        name = flow.__name__
    elif isinstance(flow, (str, os.PathLike)):
        text = os.fspath(flow)
        name = Path(text.rpartition(":")[2] or text).stem
    else:
        name = "flow"  # not a reference at all: resolving it says so
    return re.sub(r"\W", "_", name)[:40] or "flow"


def _context() -> _Context:
    config = session.config()
    return _session(config) if config is not None else _outside_pytest()


def _session(config: pytest.Config) -> _Context:
    from .settings import engines_key, run_defaults

    item = session.item()
    dirs = [config.rootpath, config.invocation_params.dir]
    if item is not None:
        dirs.insert(0, Path(item.path).parent)
    return _Context(
        engines=config.stash[engines_key],
        hook=config.hook,
        defaults=run_defaults(config, item),
        search_dirs=dirs,
        keep=config.option.artflow_keep,
        tmp_path_factory=config._tmp_path_factory,  # type: ignore[attr-defined]
        s3_endpoint=config.option.artflow_s3_endpoint,
    )


_own: tuple[EngineSet, Any] | None = None


def _outside_pytest() -> _Context:
    """Engines and hooks of this process's own, made on first use: the
    built-in engines, and no conftest.py to add hooks."""
    global _own
    from .inflow.remote import RUN_LOCALLY_DEFAULT, RUN_LOCALLY_ENV
    from .settings import RunDefaults

    if _own is None:
        import pluggy

        from . import hookspecs, plugin
        from .engines import EngineSet

        class Builtins:
            pytest_artflow_engines = staticmethod(plugin.pytest_artflow_engines)

        manager = pluggy.PluginManager("pytest")
        manager.add_hookspecs(hookspecs)
        manager.register(Builtins())
        engines = EngineSet(manager.hook)
        atexit.register(engines.close)
        _own = (engines, manager.hook)
    engines, hook = _own
    return _Context(
        engines=engines,
        hook=hook,
        defaults=RunDefaults(
            engine="fork" if hasattr(os, "fork") else "subprocess",
            env={RUN_LOCALLY_ENV: " ".join(RUN_LOCALLY_DEFAULT)},
        ),
        search_dirs=[Path.cwd()],
        keep="failed",
    )
