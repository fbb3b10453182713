"""S3 in the sandbox: the ``artflow_s3`` fixture and ``datastore="s3"``."""

from __future__ import annotations

import os
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


def test_roundtrip_through_s3_storage():
    from pytest_artflow.serialization import assert_roundtrip, roundtrip

    value = {"a": [1, 2.5, None], "b": b"\x00\xff" * 1000, "c": {"x", "y"}}
    assert roundtrip(value, datastore="s3") == value
    assert assert_roundtrip([value, value], datastore="s3")[0] == value
    # The value went through S3: the server holds its content-addressed blob.
    area, _ = next(v for k, v in s3._roundtrip_stores.items() if k[0] == os.getpid())
    assert area.keys("metaflow/ArtflowRoundtrip/data/")


MISSING_KEY_FLOW = """
from metaflow import S3, FlowSpec, Parameter, step


class MissingKeyFlow(FlowSpec):
    root = Parameter("root")

    @step
    def start(self):
        with S3(s3root=self.root) as s3:
            self.text = s3.get("absent.csv").text
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_missing_key_fails_the_step_with_metaflows_error(
    artflow_run, artflow_s3, tmp_path, engine
):
    from pytest_artflow import FlowRunFailed

    flow_file = tmp_path / "missing_key_flow.py"
    flow_file.write_text(MISSING_KEY_FLOW)
    with pytest.raises(FlowRunFailed) as failed:
        artflow_run(flow_file, engine=engine, datastore="s3", root=artflow_s3.url("raw/"))
    message = str(failed.value)
    assert "in step 'start'" in message
    assert "MetaflowS3NotFound" in message
    assert artflow_s3.url("raw/absent.csv") in message


def test_an_endpoint_that_does_not_answer_is_named(pytester):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    pytester.makepyfile("def test_it(artflow_s3):\n    pass\n")
    result = pytester.runpytest_subprocess(f"--artflow-s3-endpoint=http://127.0.0.1:{port}/b")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*S3Unavailable: the S3 endpoint http://127.0.0.1:{port} does not answer after*"]
    )


def test_a_server_that_cannot_listen_is_named():
    # 192.0.2.1 is a documentation address (RFC 5737): no interface has it.
    with pytest.raises(s3.S3Unavailable, match=r"cannot listen on 192\.0\.2\.1"):
        s3.S3Server.start_local(host="192.0.2.1")


def test_without_the_extra_one_line_says_what_to_install(pytester):
    pytester.makeconftest(
        "import sys\nsys.modules['moto'] = None\nsys.modules['moto.server'] = None\n"
    )
    pytester.makepyfile(
        """
        def test_fixture(artflow_s3):
            pass

        def test_datastore(artflow_run):
            artflow_run("flow.py", datastore="s3")

        def test_roundtrip():
            from pytest_artflow.serialization import roundtrip
            roundtrip(1, datastore="s3")

        def test_local_still_works(artflow_run):
            pass
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=2, errors=1)
    hint = 'S3Unavailable: S3 testing needs the s3 extra: pip install "pytest-artflow[s3]"'
    said = [line for line in result.stdout.lines if line.startswith("E ") and hint in line]
    assert len(said) == 3  # the fixture, datastore="s3", roundtrip(datastore="s3")


def test_every_flow_of_artflow_runs_on_s3(pytester, tmp_path):
    pytester.copy_example(str(FLOWS / "linear_flow.py"))
    basetemp = tmp_path / "basetemp"
    result = pytester.runpytest_subprocess(
        "--artflow", "--artflow-datastore=s3", "--artflow-keep=always", f"--basetemp={basetemp}"
    )
    result.assert_outcomes(passed=1)
    [note] = basetemp.glob("*0/S3.txt")
    # The kept sandbox names the bucket and prefix and says how to open it.
    assert "S3: bucket 'artflow-" in note.read_text()
    assert "METAFLOW_DATASTORE_SYSROOT_S3=s3://artflow-" in note.read_text()
    # Metadata stayed in the sandbox; the artifacts went to S3.
    sandbox = note.parent
    assert list(sandbox.glob(".metaflow/LinearFlow/*/end/*/_meta"))
    assert not (sandbox / ".metaflow" / "LinearFlow" / "data").exists()


@pytest.mark.artflow(datastore="s3")
def test_the_marker_sets_the_datastore(artflow_run, artflow_s3):
    run = artflow_run(FLOWS / "linear_flow.py")
    assert run["end"].data.summary == "héllo ✓: 10"
    # Metaflow's own client in the test reads the artifacts from the server.
    from metaflow import Flow

    latest = Flow("LinearFlow").latest_run
    assert latest.id == run.run_id
    assert latest["end"].task.data.summary == "héllo ✓: 10"
    assert latest["end"].task.metadata_dict["ds-type"] == "s3"
    assert artflow_s3.keys(f"metaflow/LinearFlow/{run.run_id}/end/")


def test_two_tests_never_see_each_others_keys(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_private(artflow_s3, n):
            assert artflow_s3.keys() == []
            artflow_s3.put(f"mine-{n}", b"x")
            assert artflow_s3.keys() == [f"mine-{n}"]
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=4)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=4)


@pytest.mark.parametrize("engine", ENGINES)
def test_one_step_on_s3_from_scratch_and_rerun(artflow_run, artflow_step, artflow_s3, engine):
    artflow_s3.put("in/input.csv", b"p\nq")
    root = artflow_s3.url("in/")
    task = artflow_step(FLOWS / "s3_flow.py", "start", engine=engine, datastore="s3", root=root)
    assert task.data.lines == ["p", "q"]
    assert task.next_steps == ["part"]
    assert artflow_s3.keys("metaflow/steps/")  # the step's datastore is in the area

    run = artflow_run(FLOWS / "s3_flow.py", engine=engine, datastore="s3", root=root)
    again = artflow_step(
        run,
        "join",
        engine=engine,
        datastore="s3",
        inputs=[{"url": u} for u in run["join"].data.urls],
    )
    assert again.data.parts == ["P", "Q"]
    assert artflow_s3.get("in/output.txt") == b"P\nQ"


class WhereFlow(FlowSpec):
    """Records where its task stores its artifacts."""

    @step
    def start(self):
        self.where = [self._datastore.TYPE, self._datastore._storage_impl.datastore_root]
        self.next(self.end)

    @step
    def end(self):
        pass


def test_run_flow_on_s3_leaves_nothing_behind():
    from pytest_artflow import run_flow

    client = s3.server().client()
    buckets = {b["Name"] for b in client.list_buckets()["Buckets"]}
    run = run_flow(WhereFlow, datastore="s3")
    kind, root = run["start"].data.where
    assert kind == "s3"
    assert root.startswith("s3://artflow-")
    # The call's bucket held the run's datastore, and is gone with its sandbox.
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == buckets


@pytest.mark.parametrize("flow", ["linear_flow.py", "card_flow.py", "failing_flow.py"])
def test_results_on_s3_are_those_of_the_local_datastore(
    artflow_run, artflow_sandbox, artflow_s3, flow
):
    from test_engines import CORPUS, assert_same, snapshot

    runs = {
        datastore: artflow_run(FLOWS / flow, check=False, params=CORPUS[flow], datastore=datastore)
        for datastore in ("local", "s3")
    }
    local, on_s3 = (snapshot(runs[d], artflow_sandbox.root) for d in ("local", "s3"))
    assert_same(local, on_s3)
    assert artflow_s3.keys(f"metaflow/{runs['s3'].flow_name}/{runs['s3'].run_id}/")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_on_s3_resumes_on_s3(artflow_run, artflow_resume, artflow_s3, engine):
    run = artflow_run(
        FLOWS / "resume_flow.py",
        engine=engine,
        datastore="s3",
        check=False,
        width=2,
        env={"RESUME_FLOW_FAIL": "body"},
    )
    assert not run.successful
    resumed = artflow_resume(run, engine=engine)
    assert resumed.successful
    assert resumed["start"].task.cloned
    assert artflow_s3.keys(f"metaflow/ResumeFlow/{resumed.run_id}/end/")


def test_a_kept_sandbox_says_where_its_s3_data_is(pytester):
    pytester.makepyfile(
        """
        def test_fails(artflow_s3):
            artflow_s3.put("raw/x", b"1")
            assert False
        """
    )
    result = pytester.runpytest_subprocess("-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*artflow s3*",
            "S3: bucket 'artflow-*', prefix '' (s3://artflow-*/) on http://127.0.0.1:*",
            "*METAFLOW_S3_ENDPOINT_URL=http://127.0.0.1:* METAFLOW_DATASTORE_SYSROOT_S3=s3://*",
        ]
    )
