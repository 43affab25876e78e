"""The order state diagram is generated from the model, and the docs must agree with it."""

from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from orders.diagram import (
    DIAGRAM_END,
    DIAGRAM_START,
    diagram_block,
    diagram_block_find,
    order_state_diagram,
    order_state_edges,
)
from orders.models import Order
from orders.states import TERMINAL_STATUSES, TRANSITIONS, OrderStatus

REGENERATE = "run `python manage.py order_state_diagram --write`"


def read_document(name: str) -> str:
    return (Path(settings.BASE_DIR) / name).read_text(encoding="utf-8")


def test_docs_diagram_matches_the_model():
    block = diagram_block_find(read_document("docs/order-states.md"))

    assert block is not None, f"docs/order-states.md lost its {DIAGRAM_START} markers"
    assert block == diagram_block(), f"docs/order-states.md is stale; {REGENERATE}"


def test_readme_diagram_matches_the_model():
    readme = Path(settings.BASE_DIR) / "README.md"
    block = diagram_block_find(readme.read_text(encoding="utf-8")) if readme.exists() else None
    if block is None:
        pytest.skip("README.md has no state-diagram markers yet")

    assert block == diagram_block(), f"README.md is stale; {REGENERATE}"


def test_docs_describe_every_state():
    document = read_document("docs/order-states.md")

    missing = [state for state in OrderStatus.values if f"| `{state}` |" not in document]
    assert missing == []


def test_diagram_draws_every_declared_transition_and_nothing_else():
    # Given the transitions declared on the model's methods
    declared = {
        (str(transition.source), str(transition.target), name)
        for name in TRANSITIONS
        for transition in getattr(Order, name)._django_fsm.transitions.values()
    }

    # Then the diagram draws exactly those
    drawn = {(edge.source, edge.target, edge.transition) for edge in order_state_edges()}
    assert drawn == declared
    assert {edge.transition for edge in order_state_edges()} == set(TRANSITIONS)


def test_diagram_starts_at_pending_payment_and_ends_at_the_terminal_states():
    lines = order_state_diagram().splitlines()

    assert lines[0] == "stateDiagram-v2"
    assert lines[1] == "    [*] --> pending_payment"
    ends = {line.split()[0] for line in lines if line.endswith("--> [*]")}
    assert ends == set(TERMINAL_STATUSES)
    assert "    pending_payment --> confirmed: confirm" in lines
    assert "    delivered --> refunded: refund" in lines


def test_diagram_is_deterministic():
    assert order_state_diagram() == order_state_diagram()
    assert order_state_edges() == sorted(
        order_state_edges(),
        key=lambda edge: (
            OrderStatus.values.index(edge.source),
            OrderStatus.values.index(edge.target),
            edge.transition,
        ),
    )


def test_command_prints_the_diagram():
    out = StringIO()

    call_command("order_state_diagram", stdout=out)

    assert out.getvalue() == order_state_diagram()


def test_command_write_rewrites_only_the_marker_block(tmp_path):
    # Given a document with a stale diagram and one without markers
    stale = tmp_path / "stale.md"
    stale.write_text(
        f"# Title\n\nBefore.\n\n{DIAGRAM_START}\n```mermaid\nold\n```\n{DIAGRAM_END}\n\nAfter.\n",
        encoding="utf-8",
    )
    plain = tmp_path / "plain.md"
    plain.write_text("# No markers here\n", encoding="utf-8")
    out, err = StringIO(), StringIO()

    # When the command writes them
    call_command("order_state_diagram", str(stale), str(plain), write=True, stdout=out, stderr=err)

    # Then the block is current, the text around it kept, and the other file untouched
    assert stale.read_text(encoding="utf-8") == (
        f"# Title\n\nBefore.\n\n{diagram_block()}\n\nAfter.\n"
    )
    assert plain.read_text(encoding="utf-8") == "# No markers here\n"
    assert "diagram updated" in out.getvalue()
    assert "skipped" in err.getvalue()
