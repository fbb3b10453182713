"""S3 in the sandbox: the ``artflow_s3`` fixture and ``datastore="s3"``."""

from __future__ import annotations

from pathlib import Path

import pytest
from metaflow import S3, FlowSpec, Parameter, step

from pytest_artflow import s3

pytest.importorskip("moto.server", reason="needs pytest-artflow[s3]")

FLOWS = Path(__file__).parent / "flows"
ENGINES = ("fork", "subprocess")


def test_put_get_keys_url(artflow_s3):
    url = artflow_s3.put("raw/data.csv", b"a,b\n1,2\n")
    assert url == artflow_s3.url("raw/data.csv")
    assert url.startswith("s3://")
    assert artflow_s3.get("raw/data.csv") == b"a,b\n1,2\n"
    assert artflow_s3.keys() == ["raw/data.csv"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("datastore", ["local", "s3"])
def test_flow_reads_and_writes_s3(artflow_run, artflow_s3, engine, datastore):
    artflow_s3.put("in/input.csv", b"a\nb\nc")
    run = artflow_run(
        FLOWS / "s3_flow.py", engine=engine, datastore=datastore, root=artflow_s3.url("in/")
    )
    assert run["end"].data.count == 3
    assert run["join"].data.parts == ["A", "B", "C"]
    assert run.trace("lines")["start"] == ["a", "b", "c"]
    assert "read 3 lines" in run["start"].stdout
    assert artflow_s3.get("in/output.txt") == b"A\nB\nC"
    stored = artflow_s3.keys("metaflow/")
    # The run's datastore is in the test's area exactly when it is asked for.
    assert any(k.startswith(f"metaflow/S3Flow/{run.run_id}/start/") for k in stored) is (
        datastore == "s3"
    )
    assert any(k.startswith("metaflow/data/S3Flow/") for k in stored)  # S3(run=self)


class AwsEnvFlow(FlowSpec):
    """Writes with ``metaflow.S3`` and records what AWS settings its task sees."""

    root = Parameter("root")

    @step
    def start(self):
        import os

        import boto3

        with S3(s3root=self.root) as s3:
            s3.put("written-by-step", "hello")
        self.aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        self.key_used = boto3.session.Session().get_credentials().access_key
        self.next(self.end)

    @step
    def end(self):
        pass


#: What a developer's shell may hold: each would send a run to the real account.
REAL_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAREALREALREALREAL",
    "AWS_SECRET_ACCESS_KEY": "real-secret",
    "AWS_SESSION_TOKEN": "real-token",
    "AWS_PROFILE": "production",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/prod",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/real/token",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
    "AWS_CONFIG_FILE": "/real/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/real/credentials",
}


@pytest.fixture
def real_aws(monkeypatch):
    for name, value in REAL_AWS.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("engine", ENGINES)
def test_runs_never_see_the_callers_aws_settings(real_aws, artflow_run, artflow_s3, engine):
    run = artflow_run(AwsEnvFlow, engine=engine, datastore="s3", root=artflow_s3.url())
    # The step's put reached the test server (the caller's endpoint does not answer).
    assert artflow_s3.get("written-by-step") == b"hello"
    aws = run["start"].data.aws
    assert run["start"].data.key_used == s3.FAKE_KEY
    assert not set(aws.values()) & set(REAL_AWS.values())
    assert aws["AWS_ENDPOINT_URL_S3"] == artflow_s3.endpoint
    assert "AWS_PROFILE" not in aws and "AWS_SESSION_TOKEN" not in aws


def test_the_pytest_process_sees_the_server_only_during_the_test(pytester):
    pytester.makepyfile(
        """
        import os

        import boto3
        from metaflow import S3
        from metaflow import metaflow_config

        def test_inside(artflow_s3):
            assert os.environ["AWS_ACCESS_KEY_ID"] == "artflow-testing"
            assert "AWS_PROFILE" not in os.environ
            assert boto3.session.Session().get_credentials().access_key == "artflow-testing"
            with S3(s3root=artflow_s3.url("x/")) as s3:
                s3.put("k", "v")
            assert artflow_s3.keys() == ["x/k"]

        def test_after():
            assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIAREALREALREALREAL"
            assert os.environ["AWS_PROFILE"] == "production"
            assert metaflow_config.S3_ENDPOINT_URL is None
            assert "endpoint_url" not in metaflow_config.DATATOOLS_CLIENT_PARAMS
        """
    )
    for name, value in REAL_AWS.items():
        pytester._monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
