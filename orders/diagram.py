"""The order state diagram, read from the Order model's FSM transitions.

The docs embed the Mermaid text between markers; `manage.py order_state_diagram --write`
regenerates it and tests/orders/test_state_diagram.py fails when it is stale.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from django_fsm import ANY_OTHER_STATE, ANY_STATE, FSMField

from orders.models import Order
from orders.states import OrderStatus

DIAGRAM_START = "<!-- state-diagram:start -->"
DIAGRAM_END = "<!-- state-diagram:end -->"


class DiagramMarkersMissing(ValueError):
    """The document has no (or malformed) state-diagram markers."""


@dataclass(frozen=True)
class StateEdge:
    source: str
    target: str
    transition: str


def _state(value: Any) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def order_state_edges() -> list[StateEdge]:
    """Every (source, target, transition) of Order.status, in a stable order.

    Ordered by the source's position in OrderStatus, then the target's, then the name.
    """
    states = list(OrderStatus.values)
    position = {state: index for index, state in enumerate(states)}
    field = cast(FSMField, Order._meta.get_field("status"))
    edges: set[StateEdge] = set()
    for transition in field.get_all_transitions(Order):
        # Fail loudly on what this drawing does not cover rather than draw a wrong diagram.
        if not isinstance(transition.target, str):
            raise ValueError(f"Cannot draw {transition.name!r}: its target is computed")
        if transition.on_error is not None:
            raise ValueError(f"Cannot draw {transition.name!r}: it has an on_error state")
        target = _state(transition.target)
        source = _state(transition.source)
        if source == ANY_STATE:
            sources = states
        elif source == ANY_OTHER_STATE:
            sources = [state for state in states if state != target]
        else:
            sources = [source]
        for state in [*sources, target]:
            if state not in position:
                raise ValueError(f"Transition {transition.name!r} uses unknown state {state!r}")
        edges.update(StateEdge(state, target, transition.name) for state in sources)
    return sorted(
        edges, key=lambda edge: (position[edge.source], position[edge.target], edge.transition)
    )


def order_state_diagram() -> str:
    """Mermaid stateDiagram-v2 text of the order lifecycle (no code fence)."""
    edges = order_state_edges()
    initial = _state(Order._meta.get_field("status").default)
    left = {edge.source for edge in edges}
    final = [state for state in OrderStatus.values if state not in left]
    lines = ["stateDiagram-v2", f"    [*] --> {initial}"]
    lines += [f"    {edge.source} --> {edge.target}: {edge.transition}" for edge in edges]
    lines += [f"    {state} --> [*]" for state in final]
    return "\n".join(lines) + "\n"


def diagram_block() -> str:
    """The marker-delimited Markdown block holding the diagram."""
    return f"{DIAGRAM_START}\n```mermaid\n{order_state_diagram()}```\n{DIAGRAM_END}"


def _block_span(text: str) -> tuple[int, int] | None:
    start = text.find(DIAGRAM_START)
    if start == -1:
        return None
    end = text.find(DIAGRAM_END, start)
    if end == -1:
        raise DiagramMarkersMissing(f"{DIAGRAM_START} has no matching {DIAGRAM_END}")
    return start, end + len(DIAGRAM_END)


def diagram_block_find(text: str) -> str | None:
    """The marker block in `text` (markers included), or None when it has no markers."""
    span = _block_span(text)
    return None if span is None else text[span[0] : span[1]]


def diagram_block_replace(text: str) -> str:
    """Return `text` with its marker block replaced by the current diagram."""
    span = _block_span(text)
    if span is None:
        raise DiagramMarkersMissing(f"No {DIAGRAM_START} marker")
    return text[: span[0]] + diagram_block() + text[span[1] :]
