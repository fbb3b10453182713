"""Metaflow's code package, built when something reads it.

As a run starts, ``python flow.py run`` (and ``resume``) starts a thread that
packs the flow's directory and Metaflow's own code into a gzipped tarball: for
the seed flow about 1.6 MB and a tenth of a second of CPU. A local run never
reads it. Only remote steps (``@batch``, ``@kubernetes``) and
``METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE`` do, and through the package's own
accessors. On a machine with two cores that thread competes with the run's
tasks and with the runtime itself for the CPU and the interpreter lock: about a
fifth of a short forked run.

The fork engine's run process therefore uses ``PackageOnDemand``: its thread
builds exactly the same package, but starts only when the package is first
asked for. Its constructor also defers the most costly part
of Metaflow's (``ContentOnDemand``: the choice of which of the loaded modules
and which of Metaflow's files go in, a few milliseconds on the runtime's path)
until the content is first read. Everything else of the constructor runs as in
Metaflow: the environment's ``init_environment`` hook, the package's place in
the system context (decorators' hooks see it), the thread made (not started). The ``subprocess``
engine keeps Metaflow's behaviour as it is.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .. import timeline
from ..metaflow_seam import (
    MetaflowCodeContentV1,
    MetaflowCodeContentV1Base,
    MetaflowPackage,
    install_code_package,
    package_made_with,
)


class ContentOnDemand(MetaflowCodeContentV1):  # type: ignore[misc]
    """``MetaflowCodeContentV1`` that finds its content when first read.

    What goes in depends on the modules loaded when the package is made
    (Metaflow copies ``sys.modules`` then): they are noted at once, so a
    module the run imports later stays out, as in Metaflow's own package.
    Until then the object has only what its base class sets (its two
    directories, all ``get_excluded_tl_entries`` needs); the first attribute
    it lacks runs Metaflow's constructor on it, once, under a lock (the
    packing thread and the runtime may both read it).
    """

    def __init__(
        self,
        code_dir: str = MetaflowCodeContentV1Base._code_dir,
        other_dir: str = MetaflowCodeContentV1Base._other_dir,
        criteria: Callable[[ModuleType], bool] = lambda module: True,
    ) -> None:
        MetaflowCodeContentV1Base.__init__(self, code_dir, other_dir)
        self.__dict__["_lock"] = threading.RLock()
        self.__dict__["_deferred"] = (code_dir, other_dir, criteria, dict(sys.modules))

    def __getattr__(self, name: str) -> Any:
        # Only attributes the object lacks come here; dunders never build it.
        if name.startswith("__") or "_deferred" not in self.__dict__:
            raise AttributeError(name)
        with self.__dict__["_lock"]:
            deferred = self.__dict__.pop("_deferred", None)
            if deferred is not None:
                self._build(*deferred)
        return object.__getattribute__(self, name)

    def _build(
        self,
        code_dir: str,
        other_dir: str,
        criteria: Callable[[ModuleType], bool],
        loaded: dict[str, ModuleType],
    ) -> None:
        timeline.mark("package.content")
        then = {id(module) for module in loaded.values()}

        def loaded_then(module: ModuleType) -> bool:
            return id(module) in then and criteria(module)

        MetaflowCodeContentV1.__init__(self, code_dir, other_dir, criteria=loaded_then)
        timeline.mark("package.found")


class ThreadOnDemand(threading.Thread):
    """The packing thread: ``start`` (in Metaflow's constructor) only notes
    that it is wanted; ``go`` starts it, the first time the package is read.
    Starting a thread costs the runtime's start a switch to it (milliseconds
    on a busy machine, where it waits for a CPU) for a thread that would only
    wait."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wanted = False
        self._going = threading.Lock()

    def start(self) -> None:
        self._wanted = True

    def go(self) -> None:
        with self._going:
            if self._wanted and self.ident is None:
                super().start()


class PackageOnDemand(MetaflowPackage):  # type: ignore[misc]
    """``MetaflowPackage`` whose packing thread starts for the first reader.

    Every way to read the package goes through ``blob_with_timeout``,
    ``package_sha`` or ``package_url``; each one starts the thread first
    (then waits for it, as Metaflow's do). Its code content is a
    ``ContentOnDemand``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        timeline.mark("package.init")
        with package_made_with(ContentOnDemand, ThreadOnDemand):
            super().__init__(*args, **kwargs)
        timeline.mark("package.made")

    def _asked(self) -> None:
        self._create_thread.go()

    def blob_with_timeout(self, timeout: float | None = None) -> Any:
        self._asked()
        return super().blob_with_timeout(timeout)

    def package_sha(self, timeout: float | None = None) -> Any:
        self._asked()
        return super().package_sha(timeout)

    def package_url(self, timeout: float | None = None) -> Any:
        self._asked()
        return super().package_url(timeout)


def install() -> None:
    """Make the CLI's ``run`` and ``resume`` build the package on demand.

    Called in the run process before Metaflow's CLI is imported, which binds
    the class by name. Not when ``FEAT_ALWAYS_UPLOAD_CODE_PACKAGE`` is on: the
    runtime then polls for the package from the start, as it should.
    """
    install_code_package(PackageOnDemand)
