"""Property test of a whole flow: one real run per example, over its parameter space."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from examples.train_flow import TrainFlow
from pytest_artflow import run_flow
from pytest_artflow.strategies import from_parameters


# Few examples keep CI fast; each one is a run of the flow in a sandbox of its own.
@settings(max_examples=5, deadline=None)
@given(
    params=from_parameters(
        TrainFlow,
        epochs=st.integers(0, 4),
        model=st.fixed_dictionaries({"depth": st.integers(0, 8), "dropout": st.floats(0, 1)}),
    )
)
def test_training_never_increases_the_loss(params):
    run = run_flow(TrainFlow, params=params)
    history = run["train"].data.history
    assert len(history) == params["epochs"]
    assert all(later <= earlier for earlier, later in itertools.pairwise(history))
    assert run["end"].data.loss == (history[-1] if history else run["start"].data.loss)
