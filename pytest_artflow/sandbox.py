"""A test's private Metaflow world: one directory that holds the datastore, the
metadata, Metaflow's home and every scratch file of the runs in the test.

Metaflow reads its configuration once, at import, so runs get theirs through
the environment of their processes (``environ``), and the client inside the
pytest process is pointed at the sandbox for the duration of the test
(``client_scope``) and put back afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .s3 import S3Area

#: Metaflow refuses to run as root; every sandbox runs as this user.
SANDBOX_USER = "artflow"

# Variables of the caller's environment that would point runs elsewhere.
_DROPPED_PREFIXES = ("METAFLOW_", "USERNAME")


class _Readable(Protocol):
    def _load_all(self) -> None: ...


class Sandbox:
    """A temporary Metaflow datastore and metadata root shared by the runs of one test."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        for sub in ("home", "tmp", "client_cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        #: The test's area of the S3 test server (``artflow_s3``), if it has one:
        #: every run of the test then reaches that server, and only it.
        self.s3: S3Area | None = None
        #: Results whose values load on first access, from this sandbox's
        #: datastore (``keep_readable``); weakly, so that one nobody holds
        #: any more loads nothing.
        self._readers: weakref.WeakSet[_Readable] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"Sandbox({str(self.root)!r})"

    def __getstate__(self) -> dict[str, object]:
        # The results reading from it are this process's own.
        return {k: v for k, v in self.__dict__.items() if k != "_readers"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._readers = weakref.WeakSet()

    def settle(self, keep: str, *, failed: bool) -> bool:
        """Remove the sandbox unless ``--artflow-keep`` (``keep``) keeps it;
        whether it was kept. Every owner of a sandbox ends it here."""
        from .settings import keeps_sandbox

        kept = keeps_sandbox(keep, failed=failed)
        if not kept:
            self.finish_reading()
            shutil.rmtree(self.root, ignore_errors=True)
        return kept

    def keep_readable(self, result: _Readable) -> None:
        """``result`` loads values from this sandbox when they are first asked
        for: its ``load()`` loads the rest before the sandbox (or its S3 area)
        is removed, if it is still held by then."""
        self._readers.add(result)

    def finish_reading(self) -> None:
        """Load every value still to load of the results that are still held,
        so that they stay readable once the datastore is gone."""
        from . import timeline

        readers = list(self._readers)
        self._readers.clear()
        if readers:
            timeline.mark("read.finish", str(len(readers)))
            for reader in readers:
                reader._load_all()
            timeline.mark("read.finished")

    @property
    def datastore(self) -> Path:
        """Where Metaflow keeps flows, runs and artifacts (``<root>/.metaflow``)."""
        return self.root / ".metaflow"

    def environ(
        self, extra: Mapping[str, str] | None = None, datastore: str = "local"
    ) -> dict[str, str]:
        """The environment of a run's processes: this process's, with every
        Metaflow setting replaced by the sandbox's (and every ``AWS_*`` one by
        the S3 test server's when the test has one; ``datastore="s3"`` keeps
        the run's datastore there)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
        home = str(self.root / "home")
        env.update(
            {
                "HOME": home,
                "METAFLOW_HOME": home,
                "METAFLOW_USER": SANDBOX_USER,
                "METAFLOW_DEFAULT_METADATA": "local",
                "METAFLOW_DEFAULT_DATASTORE": "local",
                "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(self.root),
                "METAFLOW_DATASTORE_SYSROOT_SPIN": str(self.root),
                "METAFLOW_CLIENT_CACHE_PATH": str(self.root / "client_cache"),
                "TMPDIR": str(self.root / "tmp"),
                # The flow's processes import what the tests can import.
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        if self.s3 is not None:
            env = self.s3.environ(env, datastore=datastore == "s3")
        if extra:
            env.update(extra)
        return env

    @contextmanager
    def client_scope(self) -> Iterator[None]:
        """Point Metaflow's client (``Flow``, ``Run``, ``namespace``) at this
        sandbox, and restore what it pointed at before on exit."""
        from .metaflow_seam import client_pointed_at

        self.datastore.mkdir(exist_ok=True)
        with client_pointed_at(
            str(self.root), str(self.datastore), cache_dir=str(self.root / "client_cache")
        ):
            yield
