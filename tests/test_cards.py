"""``@card`` under pytest-artflow: ``metaflow.cards.get_cards`` finds a task's
cards inside a test as after ``python flow.py run``, and ``TaskResult.cards``
holds them (Metaflow's own ``Card`` objects) with their HTML already read."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import cardhtml
import pytest
from metaflow import FlowSpec, card, current, step

FLOWS = Path(__file__).parent / "flows"
ENGINES = ("fork", "subprocess")

#: step -> the (type, id) of each card it renders, as get_cards lists them.
CARD_FLOW_CARDS = {
    "start": [("blank", None)],
    "plain": [("default", None)],
    "several": [("blank", "details"), ("blank", "summary"), ("default", None)],
    "end": [("default", "final")],
}


def kinds(cards) -> list[tuple[str, str | None]]:
    return sorted(((c.type, c.id) for c in cards), key=lambda k: (k[0], k[1] or ""))


def by_id(cards) -> dict[str | None, str]:
    return {c.id: c.get() for c in cards}


def assert_card_flow_content(cards_of) -> None:
    """What card_flow.py's steps put on their cards; ``cards_of(step)`` lists a step's cards."""
    (start,) = cards_of("start")
    assert cardhtml.markdown(start.get()) == ["# The value is 42"]
    (plain,) = cards_of("plain")
    # The default card shows the task: here, the step's code.
    assert "def plain(self):" in str(cardhtml.tables(plain.get()))
    several = by_id(cards_of("several"))
    assert cardhtml.markdown(several[None]) == ["## Appended to the default card"]
    assert cardhtml.markdown(several["summary"]) == ["## 2 rows"]
    assert cardhtml.tables(several["details"]) == [
        {"columns": ["n", "name"], "data": [[1, "one"], [2, "two"]]}
    ]
    (final,) = cards_of("end")
    assert cardhtml.markdown(final.get()) == ["# Done"]
    assert {"columns": ["key", "count"], "data": [["a", 1], ["b", 2]]} in cardhtml.tables(
        final.get()
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_get_cards_finds_every_card_inside_a_test(artflow_run, engine):
    from metaflow import Task
    from metaflow.cards import get_cards

    run = artflow_run(FLOWS / "card_flow.py", engine=engine)
    for step_name, expected in CARD_FLOW_CARDS.items():
        pathspec = run[step_name].task.pathspec
        for task in (run.client[step_name].task, Task(pathspec), pathspec):
            assert kinds(get_cards(task)) == expected, (step_name, task)
    assert_card_flow_content(lambda name: list(get_cards(run.client[name].task)))
    # Metaflow's own selection of one card among several.
    (summary,) = get_cards(run["several"].task.pathspec, id="summary")
    assert cardhtml.markdown(summary.get()) == ["## 2 rows"]


@pytest.mark.parametrize("engine", ENGINES)
def test_task_result_cards_are_metaflows_cards_read_with_the_run(
    artflow_run, artflow_sandbox, engine
):
    from metaflow.cards import get_cards
    from metaflow.plugins.cards.card_client import Card

    run = artflow_run(FLOWS / "card_flow.py", engine=engine)
    for step_name, expected in CARD_FLOW_CARDS.items():
        cards = run[step_name].task.cards
        assert all(isinstance(c, Card) for c in cards)
        assert kinds(cards) == expected
        assert sorted(c.path for c in cards) == sorted(
            c.path for c in get_cards(run.client[step_name].task)
        )
    # The HTML was read with the run: the cards outlive their files.
    store = artflow_sandbox.datastore / "mf.cards"
    store.rename(store.with_name("mf.cards.moved"))
    try:
        assert_card_flow_content(lambda name: run[name].task.cards)
    finally:
        store.with_name("mf.cards.moved").rename(store)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_card_that_fails_to_render_is_reported_as_metaflow_reports_it(artflow_run, engine):
    from metaflow.cards import get_cards
    from metaflow.plugins.cards.exception import CardNotPresentException

    run = artflow_run(FLOWS / "card_error_flow.py", engine=engine)
    # As ``python flow.py run``: the run succeeds ...
    assert run.successful
    # ... an error card takes the card's place, its type the one asked for ...
    message = "MetaflowCard named no_such_card not found. Check the `type` attribute in @card"
    (error_card,) = run["start"].task.cards
    assert (error_card.type, error_card.id) == ("no_such_card", None)
    assert cardhtml.logs(error_card.get()) == [message]
    (listed,) = get_cards(run.client["start"].task)
    assert cardhtml.logs(listed.get()) == [message]
    # ... and with save_errors=False there is no card, only the task's log says why.
    assert run["quiet"].task.cards == []
    with pytest.raises(CardNotPresentException):
        get_cards(run.client["quiet"].task)
    assert "Card render failed with error" in run["quiet"].task.stdout
    assert message in run["quiet"].task.stdout
    assert "Card render failed" in run.output


NO_MAIN_BLOCK = """
    from metaflow import FlowSpec, card, current, step
    from metaflow.cards import Markdown


    class NoMainBlockFlow(FlowSpec):
        @card(type="blank")
        @step
        def start(self):
            current.card.append(Markdown("# from a file without a main block"))
            self.next(self.end)

        @step
        def end(self):
            pass


    class OtherFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass
    """


class InTestCardFlow(FlowSpec):
    @card(type="blank")
    @step
    def start(self):
        from metaflow.cards import Markdown

        current.card.append(Markdown("# from a flow defined in a test"))
        self.next(self.end)

    @step
    def end(self):
        pass


@pytest.mark.parametrize("engine", ENGINES)
def test_cards_render_for_flows_python_could_not_run_as_a_script(artflow_run, flow_file, engine):
    """Metaflow renders a card by running the flow's script again; the
    launcher stands in for it, so flows it could not run render too."""
    from metaflow.cards import get_cards

    path = flow_file(NO_MAIN_BLOCK)
    for flow, text in (
        (f"{path}:NoMainBlockFlow", "# from a file without a main block"),
        (InTestCardFlow, "# from a flow defined in a test"),
    ):
        run = artflow_run(flow, engine=engine)
        (found,) = get_cards(run.client["start"].task)
        assert cardhtml.markdown(found.get()) == [text]
        assert [c.path for c in run["start"].task.cards] == [found.path]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_single_step_run_has_the_steps_cards(artflow_step, engine):
    task = artflow_step(
        FLOWS / "card_flow.py", "several", inputs={"rows": [[7, "seven"]]}, engine=engine
    )
    cards = by_id(task.cards)
    assert sorted(cards, key=str) == [None, "details", "summary"]
    assert cardhtml.markdown(cards["summary"]) == ["## 1 rows"]
    assert cardhtml.tables(cards["details"]) == [{"columns": ["n", "name"], "data": [[7, "seven"]]}]


def test_steps_without_card_are_not_searched_for_cards(artflow_run, monkeypatch):
    """Reading a run looks for cards only in steps with ``@card`` (the graph says which)."""
    from pytest_artflow.results import read

    looked: list[str] = []
    original = read.read_cards

    def counting(task):
        looked.append(task.parent.id)
        return original(task)

    monkeypatch.setattr(read, "read_cards", counting)
    artflow_run(FLOWS / "linear_flow.py")
    assert looked == []
    run = artflow_run(FLOWS / "card_flow.py")
    assert sorted(looked) == sorted(CARD_FLOW_CARDS)
    assert all(run[s].task.cards for s in CARD_FLOW_CARDS)


def test_cards_are_written_where_metaflow_reads_them(artflow_run, artflow_sandbox):
    """Under ``<root>/.metaflow/mf.cards``, as a run with the datastore root
    (and working directory) at the sandbox writes them, and nowhere else."""
    run = artflow_run(FLOWS / "card_flow.py")
    written = sorted(
        os.path.relpath(os.path.join(d, f), artflow_sandbox.root)
        for d, _, files in os.walk(artflow_sandbox.root)
        for f in files
        if f.endswith(".html")
    )
    assert len(written) == 6
    prefix = os.path.join(".metaflow", "mf.cards", "CardFlow", "runs", run.run_id, "steps")
    assert all(p.startswith(prefix) for p in written), written


def test_cards_stay_readable_after_the_sandbox_is_gone(pytester):
    pytester.makepyfile(
        one_card=textwrap.dedent(NO_MAIN_BLOCK),
        test_later="""
        import os

        KEPT = {}

        def test_run(artflow_run, artflow_sandbox):
            KEPT["run"] = artflow_run("one_card.py:NoMainBlockFlow")
            KEPT["root"] = artflow_sandbox.root

        def test_after():
            assert not os.path.exists(KEPT["root"])
            (card,) = KEPT["run"]["start"].task.cards
            assert "window.__MF_DATA__" in card.get()
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--artflow-keep=never")
    result.assert_outcomes(passed=2)
