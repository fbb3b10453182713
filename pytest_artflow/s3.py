"""S3 for tests: a real S3 protocol server on this machine, and a private area
of it (a bucket, or a prefix) per test.

Flows read their inputs with ``metaflow.S3`` and teams run ``--datastore=s3``,
whose code path (``S3Storage``, the parallel ``s3op`` workers) differs from the
local datastore's. Testing them needs an S3 endpoint, and must never reach
the developer's real account through whatever ``AWS_*`` variables the shell
holds: every run of a test that uses S3 gets this module's environment (the
test server's endpoint, fake credentials, a region; every ``AWS_*`` variable
of the caller removed or replaced), and the pytest process gets the same for
the test's duration (``S3Area.scope``), since Metaflow read its configuration
once, at import.

The server is moto's (``moto.server``: the S3 API over HTTP), started once per
process (once per xdist worker) on 127.0.0.1 and a free port, in a daemon
thread of this process: nothing to leave behind if pytest dies. With
``--artflow-s3-endpoint`` the user's own S3-compatible server is used instead,
with the credentials of the environment, isolated by prefix.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import S3Unavailable

#: What to install when the S3 features are asked for without their extra.
INSTALL_HINT = 'S3 testing needs the s3 extra: pip install "pytest-artflow[s3]" (moto, boto3)'
#: The region every run talks to: moto accepts any, boto3 insists on one.
REGION = "us-east-1"
#: The fake credentials runs get with the local server.
FAKE_KEY = "artflow-testing"
#: Seconds the local server may take to answer after it started.
START_TIMEOUT = 30.0
#: Under the area of a test, where a run's datastore lives.
DATASTORE_DIR = "metaflow"

_AWS = "AWS_"


def require() -> None:
    """Fail with the one line that says what to install."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise S3Unavailable(f"{INSTALL_HINT} ({exc})") from None


def available() -> bool:
    try:
        require()
    except S3Unavailable:
        return False
    return True


class S3Server:
    """An S3 endpoint and the credentials to reach it."""

    def __init__(
        self,
        endpoint: str,
        credentials: Mapping[str, str],
        *,
        bucket: str | None = None,
        prefix: str = "",
        local: bool = False,
    ) -> None:
        self.endpoint = endpoint
        #: ``AWS_*`` variables of every run (keys, region).
        self.credentials = dict(credentials)
        #: With a user's endpoint: the bucket every test gets a prefix of.
        self.bucket = bucket
        self.prefix = prefix
        self.local = local
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self._count = itertools.count(1)
        #: Tells this process's areas apart from another xdist worker's.
        self.token = uuid.uuid4().hex[:8]

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint!r})"

    @classmethod
    def start_local(cls, host: str = "127.0.0.1", timeout: float = START_TIMEOUT) -> S3Server:
        """moto's S3 server on ``host`` and a free port, answering requests."""
        require()
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        class _QuietHandler(MotoRequestHandler):  # type: ignore[misc]
            """No log record per request: they would fill every failing test's report."""

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        # What ``ThreadedMotoServer`` does, with the port chosen by the system
        # and a bind error raised here, not lost in the server's thread.
        said = io.StringIO()
        try:
            # werkzeug prints why it cannot bind, then exits.
            with contextlib.redirect_stderr(said):
                http = make_server(
                    host,
                    0,
                    DomainDispatcherApplication(create_backend_app),
                    threaded=True,
                    request_handler=_QuietHandler,
                )
        except (OSError, SystemExit) as exc:
            why = " ".join(said.getvalue().split()) or str(exc)
            raise S3Unavailable(
                f"the S3 test server (moto) cannot listen on {host}: {why}"
            ) from None
        port = http.server_address[1]
        server = cls(
            f"http://{host}:{port}",
            {
                "AWS_ACCESS_KEY_ID": FAKE_KEY,
                "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            },
            local=True,
        )
        server._http = http
        server._thread = threading.Thread(
            target=http.serve_forever, name="artflow-s3-server", daemon=True
        )
        server._thread.start()
        try:
            wait_answering(server.endpoint, timeout)
        except S3Unavailable:
            server.close()
            raise
        return server

    @classmethod
    def external(cls, url: str, timeout: float = 10.0) -> S3Server:
        """The user's S3-compatible server: ``http://host:port/bucket[/prefix]``
        (the bucket ``pytest-artflow`` when the URL names none), reached with
        the credentials this process has (environment, profile)."""
        require()
        import boto3

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise S3Unavailable(f"--artflow-s3-endpoint {url!r} is not an http(s) URL")
        parts = [p for p in parsed.path.split("/") if p]
        bucket = parts[0] if parts else "pytest-artflow"
        prefix = "".join(p + "/" for p in parts[1:])
        endpoint = f"{parsed.scheme}://{parsed.netloc}"
        wait_answering(endpoint, timeout)
        session = boto3.session.Session()
        found = session.get_credentials()
        credentials = {"AWS_DEFAULT_REGION": session.region_name or REGION}
        credentials["AWS_REGION"] = credentials["AWS_DEFAULT_REGION"]
        if found is not None:
            frozen = found.get_frozen_credentials()
            credentials["AWS_ACCESS_KEY_ID"] = frozen.access_key
            credentials["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
            if frozen.token:
                credentials["AWS_SESSION_TOKEN"] = frozen.token
        server = cls(endpoint, credentials, bucket=bucket, prefix=prefix)
        client = server.client()
        try:
            client.head_bucket(Bucket=bucket)
        except Exception:
            try:
                client.create_bucket(Bucket=bucket)
            except Exception as exc:
                raise S3Unavailable(
                    f"the bucket {bucket!r} on {endpoint} can neither be read nor created: {exc}"
                ) from None
        return server

    def client(self) -> Any:
        """A boto3 S3 client of this server, whatever this process's environment says."""
        import boto3
        import botocore.session
        from botocore.config import Config

        # Nothing from the environment (a profile, config files) applies.
        core = botocore.session.Session(
            session_vars={
                "profile": (None, None, None, None),
                "config_file": (None, None, os.devnull, None),
                "credentials_file": (None, None, os.devnull, None),
            }
        )
        return boto3.session.Session(
            botocore_session=core,
            aws_access_key_id=self.credentials.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=self.credentials.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=self.credentials.get("AWS_SESSION_TOKEN"),
            region_name=self.credentials["AWS_DEFAULT_REGION"],
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def new_area(self, label: str) -> S3Area:
        """A place no other test has used: a new bucket on the local server, a
        new prefix of the configured bucket on a user's."""
        name = re.sub(r"[^a-z0-9-]", "-", label.lower()).strip("-")[:30] or "test"
        unique = f"{self.token}-{next(self._count)}"
        client = self.client()
        if self.local:
            bucket = f"artflow-{unique}-{name}"[:63].rstrip("-")
            client.create_bucket(Bucket=bucket)
            return S3Area(self, client, bucket, "")
        assert self.bucket is not None
        return S3Area(self, client, self.bucket, f"{self.prefix}artflow-{unique}-{name}/")

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def wait_answering(endpoint: str, timeout: float) -> None:
    """Poll ``endpoint`` until it answers HTTP (any status), or say it does not."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    # Straight to the endpoint, whatever proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(endpoint, timeout=max(0.5, min(5.0, timeout))):
                return
        except urllib.error.HTTPError:
            return  # it answered: an S3 error for an anonymous request is an answer
        except (OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise S3Unavailable(
                    f"the S3 endpoint {endpoint} does not answer after {timeout:g} s: {exc}"
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


_servers: dict[str | None, S3Server] = {}
_lock = threading.Lock()


def server(endpoint: str | None = None) -> S3Server:
    """This process's server: the local one (``endpoint=None``, started on first
    use) or the user's ``endpoint``. Shared by every test of the process."""
    with _lock:
        found = _servers.get(endpoint)
        if found is None:
            found = S3Server.external(endpoint) if endpoint else S3Server.start_local()
            _servers[endpoint] = found
        return found


@atexit.register
def _close_servers() -> None:
    for found in _servers.values():
        found.close()
    _servers.clear()


class S3Area:
    """The ``artflow_s3`` fixture: a bucket (or prefix) of the S3 test server
    that only this test uses. Keys are relative to it."""

    def __init__(self, server: S3Server, client: Any, bucket: str, prefix: str) -> None:
        self.server = server
        #: boto3's S3 client of the server, for anything the helpers do not do.
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"S3Area({self.url()!r} at {self.server.endpoint})"

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def url(self, key: str = "") -> str:
        """``s3://bucket/prefix/key``, as ``metaflow.S3`` takes it."""
        return f"s3://{self.bucket}/{self.prefix}{key}"

    @property
    def datastore_root(self) -> str:
        """Where runs with ``datastore="s3"`` keep their datastore."""
        return self.url(DATASTORE_DIR)

    def put(self, key: str, data: bytes | str | os.PathLike[str]) -> str:
        """Store ``data`` (bytes, or the content of a local file) at ``key``;
        returns its ``s3://`` URL."""
        if isinstance(data, (str, os.PathLike)):
            body = Path(data).read_bytes()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        else:
            raise TypeError(
                f"artflow_s3.put({key!r}, ...) takes bytes or a local path, "
                f"not {type(data).__name__}"
            )
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body)
        return self.url(key)

    def get(self, key: str) -> bytes:
        """The content stored at ``key``; ``KeyError`` naming it if there is none."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey:
            raise KeyError(f"{self.url(key)} does not exist") from None
        return bytes(answer["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (relative to the area), sorted."""
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        for page in pages:
            found += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return sorted(found)

    def environ(self, env: Mapping[str, str], datastore: bool = False) -> dict[str, str]:
        """``env`` with every ``AWS_*`` variable of the caller removed and the
        server's settings in their place (and the datastore's with ``datastore``)."""
        out = {k: v for k, v in env.items() if not k.startswith(_AWS)}
        out.update(self.server.credentials)
        out.update(
            {
                # No profile, role or credential process of the developer's
                # files: the files are replaced with empty ones.
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                # boto3 clients a step makes itself reach this server too.
                "AWS_ENDPOINT_URL_S3": self.endpoint,
                "METAFLOW_S3_ENDPOINT_URL": self.endpoint,
                "METAFLOW_DATASTORE_SYSROOT_S3": self.datastore_root,
            }
        )
        if self.server.local:
            # Every AWS service a step calls goes to moto, never to AWS.
            out["AWS_ENDPOINT_URL"] = self.endpoint
            # And straight to it, whatever proxy the environment names.
            for name in ("NO_PROXY", "no_proxy"):
                out[name] = ",".join(filter(None, [out.get(name), "127.0.0.1", "localhost"]))
        if datastore:
            out["METAFLOW_DEFAULT_DATASTORE"] = "s3"
        return out

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Point this process's Metaflow S3 client (``metaflow.S3``, the S3
        datastore the results are read with, its ``s3op`` workers) and boto3's
        environment at the server, and restore both on exit."""
        from .metaflow_seam import s3_client_pointed_at

        saved_env = dict(os.environ)
        try:
            with s3_client_pointed_at(self.endpoint, self.datastore_root):
                os.environ.clear()
                os.environ.update(self.environ(saved_env))
                yield
        finally:
            os.environ.clear()
            os.environ.update(saved_env)

    def describe(self) -> str:
        """For a kept sandbox: where the test's S3 data is and how to open it."""
        gone = (
            " (the local test server's data ends with the pytest process; keep it on a "
            "server of your own with --artflow-s3-endpoint)"
            if self.server.local
            else ""
        )
        return "\n".join(
            [
                f"S3: bucket {self.bucket!r}, prefix {self.prefix!r} ({self.url()}) "
                f"on {self.endpoint}{gone}",
                "open runs whose datastore is there with Metaflow's client after setting "
                f"METAFLOW_S3_ENDPOINT_URL={self.endpoint} "
                f"METAFLOW_DATASTORE_SYSROOT_S3={self.datastore_root} (and credentials of "
                "the endpoint) before importing metaflow",
            ]
        )

    def remove(self) -> None:
        """Delete what the test stored (and its bucket on the local server)."""
        keys = [self.prefix + key for key in self.keys()]
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
            )
        if self.server.local:
            self.client.delete_bucket(Bucket=self.bucket)


def open_area(
    sandbox: Any, label: str, endpoint: str | None, stack: contextlib.ExitStack
) -> S3Area:
    """Give ``sandbox`` a new area (its runs reach it; so does this process's
    Metaflow client until ``stack`` closes) and note it in the sandbox, for
    whoever opens a kept one."""
    area = server(endpoint).new_area(label)
    sandbox.s3 = area
    (sandbox.root / "S3.txt").write_text(area.describe() + "\n")
    stack.callback(setattr, sandbox, "s3", None)
    stack.enter_context(area.scope())
    return area


_roundtrip_stores: dict[tuple[int, str | None], tuple[S3Area, Any]] = {}


@contextmanager
def roundtrip_datastore(flow_name: str) -> Iterator[Any]:
    """A ``FlowDataStore`` on ``S3Storage`` in this process's round-trip area
    of the S3 test server, with Metaflow's S3 client pointed there meanwhile
    (``roundtrip(obj, datastore="s3")`` needs no fixture: it works in ``@given``)."""
    from . import session

    config = session.config()
    endpoint = config.option.artflow_s3_endpoint if config is not None else None
    key = (os.getpid(), endpoint)
    if key not in _roundtrip_stores:
        from metaflow.datastore import FlowDataStore
        from metaflow.plugins.datastores.s3_storage import S3Storage

        area = server(endpoint).new_area("roundtrip")
        store = FlowDataStore(flow_name, storage_impl=S3Storage, ds_root=area.datastore_root)
        _roundtrip_stores[key] = (area, store)
    area, store = _roundtrip_stores[key]
    with area.scope():
        yield store
