"""S3 in the sandbox: the ``artflow_s3`` fixture and ``datastore="s3"``."""

from __future__ import annotations

import pytest

pytest.importorskip("moto.server", reason="needs pytest-artflow[s3]")

ENGINES = ("fork", "subprocess")


def test_put_get_keys_url(artflow_s3):
    url = artflow_s3.put("raw/data.csv", b"a,b\n1,2\n")
    assert url == artflow_s3.url("raw/data.csv")
    assert url.startswith("s3://")
    assert artflow_s3.get("raw/data.csv") == b"a,b\n1,2\n"
    assert artflow_s3.keys() == ["raw/data.csv"]


FLOWS = __import__("pathlib").Path(__file__).parent / "flows"


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
