"""A flow that reads S3, tested against a local S3 server: needs
``pip install "pytest-artflow[s3]"`` (skipped without it)."""

import pytest
from hypothesis import given, settings

pytest.importorskip("moto.server", reason='needs pip install "pytest-artflow[s3]"')

from examples.csv_totals_flow import CsvTotalsFlow
from pytest_artflow.serialization import assert_roundtrip
from pytest_artflow.strategies import picklable

SCORES = b"name,a,b\nann,1,2\nbob,3,4\n"


def test_totals_are_written_back_to_s3(artflow_run, artflow_s3):
    artflow_s3.put("raw/scores.csv", SCORES)
    run = artflow_run(CsvTotalsFlow, source=artflow_s3.url("raw/"))
    assert run["join"].data.totals == {"ann": 3, "bob": 7}
    assert artflow_s3.get("raw/totals.csv") == b"name,total\nann,3\nbob,7"


@pytest.mark.artflow(datastore="s3")
def test_the_same_with_the_s3_datastore(artflow_run, artflow_s3):
    artflow_s3.put("raw/scores.csv", SCORES)
    run = artflow_run(CsvTotalsFlow, source=artflow_s3.url("raw/"))
    assert run.trace("row_total") == {"total": [3, 7]}
    # The run's artifacts are in the test's bucket, beside its input.
    assert artflow_s3.keys(f"metaflow/CsvTotalsFlow/{run.run_id}/end/")


@settings(max_examples=10, deadline=None)
@given(picklable())
def test_any_picklable_value_survives_the_s3_datastore(value):
    # Saved and loaded through Metaflow's S3Storage (s3op workers) on the local server.
    assert_roundtrip(value, datastore="s3")
