"""A task's ``@card`` output, as Metaflow's card client finds it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metaflow import Task
    from metaflow.plugins.cards.card_client import Card


def has_cards(flow_class: type, step: str) -> bool:
    """Whether ``step`` has a ``@card`` decorator: the graph says so for free."""
    from ..metaflow_seam import graph

    return any(deco.name == "card" for deco in graph(flow_class)[step].decorators)


def read_cards(task: Task) -> list[Card]:
    """The task's cards as ``metaflow.cards.get_cards`` finds them, each one's
    HTML read now: a ``Card`` reads it lazily, and the results outlive the
    sandbox. A task whose card was not rendered (the task failed, or
    ``@card(save_errors=False)`` and rendering failed) has none, as the client
    has none."""
    from metaflow.cards import get_cards

    from ..metaflow_seam import CardNotPresentException

    try:
        found = list(get_cards(task))
    except CardNotPresentException:
        return []
    for card in found:
        card.get()  # kept by the Card
    return found
