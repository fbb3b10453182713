"""Metaflow's code package, built when something reads it.

As a run starts, ``python flow.py run`` (and ``resume``) starts a thread that
packs the flow's directory and Metaflow's own code into a gzipped tarball: for
the seed flow about 1.6 MB and a tenth of a second of CPU. A local run never
reads it. Only remote steps (``@batch``, ``@kubernetes``) and
``METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE`` do, and through the package's own
accessors. On a machine with two cores that thread competes with the run's
tasks and with the runtime itself for the CPU and the interpreter lock: about a
fifth of a short forked run.

The fork engine's run process therefore uses ``PackageOnDemand``: the thread
starts as in Metaflow and builds exactly the same package, but waits until the
package is first asked for. The ``subprocess`` engine keeps Metaflow's
behaviour as it is.
"""

from __future__ import annotations

import threading
from typing import Any

from ..metaflow_seam import MetaflowPackage, install_code_package


class PackageOnDemand(MetaflowPackage):  # type: ignore[misc]
    """``MetaflowPackage`` whose packing thread waits for the first reader.

    Every way to read the package goes through ``blob_with_timeout``,
    ``package_sha`` or ``package_url``; each one lets the thread go first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before Metaflow's __init__, which starts the thread.
        self._asked = threading.Event()
        super().__init__(*args, **kwargs)

    def _package_and_upload(self) -> None:
        self._asked.wait()
        super()._package_and_upload()

    def blob_with_timeout(self, timeout: float | None = None) -> Any:
        self._asked.set()
        return super().blob_with_timeout(timeout)

    def package_sha(self, timeout: float | None = None) -> Any:
        self._asked.set()
        return super().package_sha(timeout)

    def package_url(self, timeout: float | None = None) -> Any:
        self._asked.set()
        return super().package_url(timeout)


def install() -> None:
    """Make the CLI's ``run`` and ``resume`` build the package on demand.

    Called in the run process before Metaflow's CLI is imported, which binds
    the class by name. Not when ``FEAT_ALWAYS_UPLOAD_CODE_PACKAGE`` is on: the
    runtime then polls for the package from the start, as it should.
    """
    install_code_package(PackageOnDemand)
