"""Snapshot tests (syrupy): the first run with --snapshot-update records what
every step produced in __snapshots__/test_fit_flow.ambr; every later run is
compared with it."""

import datetime

from syrupy.filters import props
from syrupy.matchers import path_type

from examples.fit_flow import FitFlow


def test_what_every_step_produces(artflow_run, snapshot):
    run = artflow_run(FitFlow)
    # The timestamp differs on every run: left out here...
    assert run.snapshot() == snapshot(exclude=props("trained_at"))
    # ...and here only its type is recorded.
    matcher = path_type({r".*\.trained_at": (datetime.datetime,)}, regex=True)
    assert run["start"].snapshot() == snapshot(matcher=matcher)
