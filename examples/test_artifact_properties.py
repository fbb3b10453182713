"""Property tests: any picklable value survives Metaflow's save and load."""

import pickle

from hypothesis import HealthCheck, given, settings
from metaflow import Run

from examples.echo_flow import EchoFlow
from pytest_artflow.compare import artifacts_equal
from pytest_artflow.serialization import assert_roundtrip
from pytest_artflow.strategies import artifacts, picklable


@settings(max_examples=200, deadline=None)
@given(picklable())
def test_any_picklable_value_survives_the_datastore(value):
    # Saved and loaded through Metaflow's own TaskDataStore, in a private temp dir.
    assert_roundtrip(value)


@settings(
    max_examples=10,
    deadline=None,
    # One sandbox for every example is what we want: each run is a new run in it.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=artifacts())
def test_artifacts_set_in_start_are_equal_in_end_and_in_the_client(
    artflow_run, artflow_sandbox, values
):
    payload = artflow_sandbox.root / "payload.pickle"
    payload.write_bytes(pickle.dumps(values, protocol=4))
    run = artflow_run(EchoFlow, payload=str(payload))

    assert artifacts_equal(run["end"].data.echoed, values)
    client_end = Run(run.pathspec)["end"].task
    for name, value in values.items():
        assert artifacts_equal(run["start"].data[name], value), name
        assert artifacts_equal(client_end[name].data, value), name
