"""The checkout body's lean validation (flows.api.checkout_input) against
OrderCreateInputSerializer, on generated bodies: valid ones (whitespace to trim, lower-case
countries, unicode, lengths at the limits, absent optional fields, unknown keys) and
near-valid mutations (wrong types, missing and extra keys, nulls, booleans and floats for
integers, out-of-range numbers, over-long strings, duplicate SKUs, too many lines).

Whenever the serializer accepts a body, the lean path returns the same validated data
(same keys in the same order, same types, same values); whenever the serializer refuses
one, the lean path returns None, so the serializer answers the error. The error bodies
themselves are pinned over HTTP in test_checkout_errors_unchanged.py."""

import copy
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from flows.api.checkout_input import checkout_input, checkout_input_lean
from flows.api.serializers import OrderCreateInputSerializer
from tests.conftest import order_payload

MAX_LINES = OrderCreateInputSerializer().fields["lines"].max_length

# What str.strip() removes, ASCII and not.
PADDING = st.sampled_from(["", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\x1c", "\u3000"])
# Text DRF refuses or treats apart: blank, NUL, lone surrogates, and what strip() keeps.
ODD_TEXT = st.sampled_from(
    ["", " ", "\u200b", "\x00", "PE\x00N", "\ud800", "a\udfffb", "Zoë", "東京", "ß", "\u0130"]
)
WORD = st.text(alphabet="ABCXYZabcxyz019-_.'éüß東", min_size=1, max_size=12)


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`common` nine times in ten, `rare` otherwise."""
    return st.integers(1, 10).flatmap(lambda n: rare if n == 1 else common)


def padded(core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The text with whitespace before and after it one time in three."""
    edges = st.integers(1, 3).flatmap(
        lambda n: st.tuples(PADDING, PADDING) if n == 1 else st.just(("", ""))
    )
    return st.tuples(core, edges).map(lambda pair: pair[1][0] + pair[0] + pair[1][1])


def around(length: int) -> st.SearchStrategy[str]:
    """Text of one character under, at or over the limit."""
    sizes = st.integers(length - 1, length + 1)
    return st.builds(lambda n, c: c * n, sizes, st.sampled_from("xé "))


def text(max_length: int) -> st.SearchStrategy[str]:
    rare = st.one_of(st.text(min_size=1, max_size=12), around(max_length), ODD_TEXT)
    return padded(mostly(WORD, rare))


SKU = mostly(st.sampled_from(["PEN", "INK", "PAD-1", "pen"]), text(64))
QUANTITY = mostly(st.integers(1, 1000), st.sampled_from([1, 2, 999, 1000]))
EMAIL = padded(
    mostly(
        st.sampled_from(
            ["buyer@example.com", "A.B+tag@Example.COM", "user@localhost", "ü@exämple.de"]
        ),
        st.one_of(
            st.emails(),
            st.sampled_from(
                [
                    "x@[127.0.0.1]",
                    "x@[::1]",
                    "x@[::g]",
                    '"quoted name"@example.com',
                    "a@b",
                    "no-at-sign",
                    "a@@example.com",
                    "a@example..com",
                    "a@-example.com",
                    "a" * 243 + "@example.com",
                    "a" * 242 + "@example.com",
                ]
            ),
        ),
    )
)
COUNTRY = padded(
    mostly(
        st.text(alphabet="abdegzABDEGZ", min_size=2, max_size=2),
        st.text(alphabet="aZdDeé1ß\u212a", min_size=0, max_size=3),
    )
)
SHIPPING_METHOD = padded(
    mostly(
        st.sampled_from(["standard", "express", "a" * 16, "_"]),
        st.sampled_from(["Express", "", "a" * 17, "next day", "nächste"]),
    )
)
PAYMENT_METHOD = padded(
    mostly(
        st.sampled_from(["pm_card_visa", "pm_card_chargeDeclined", "p" * 255]),
        st.sampled_from(["pm card", "pm-card", "", "p" * 256]),
    )
)
# Anything a JSON body may hold in place of a value.
JSON_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 1002),
    st.sampled_from([10**20, -(10**20), 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, 2.0, 1.5]),
    st.text(max_size=5),
    ODD_TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def address(draw: st.DrawFn) -> dict[str, Any]:
    value = {
        "name": draw(text(200)),
        "line1": draw(text(200)),
        "line2": draw(text(200)),
        "city": draw(text(100)),
        "postal_code": draw(text(20)),
        "country": draw(COUNTRY),
    }
    if draw(st.booleans()):
        del value["line2"]
    return value


@st.composite
def line_list(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(mostly(st.integers(1, 4), st.sampled_from([MAX_LINES - 1, MAX_LINES])))
    if count > 4:  # near the limit: distinct SKUs
        quantity = draw(QUANTITY)
        return [{"sku": f"S{index}", "quantity": quantity} for index in range(count)]
    skus = draw(st.lists(SKU, min_size=count, max_size=count, unique_by=str.strip))
    return [{"sku": sku, "quantity": draw(QUANTITY)} for sku in skus]


@st.composite
def valid_looking_body(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lines": draw(line_list()),
        "email": draw(EMAIL),
        "shipping_address": draw(address()),
    }
    if draw(st.booleans()):
        body["shipping_method"] = draw(SHIPPING_METHOD)
    if draw(st.booleans()):
        body["payment_method"] = draw(PAYMENT_METHOD)
    if draw(st.booleans()):
        body[draw(st.sampled_from(["note", "coupon", "Email", "lines "]))] = draw(JSON_VALUE)
    return body


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index path in the body."""
    found = []
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        found.append((*prefix, key))
        if isinstance(child, dict | list) and len(child) <= 10:
            found.extend(paths(child, (*prefix, key)))
    return found


def mutate(data: st.DataObject, body: dict[str, Any]) -> None:
    """One near-valid change at a drawn place in the body."""
    path = data.draw(st.sampled_from(paths(body)))
    *parents, key = path
    container: Any = body
    for step in parents:
        container = container[step]
    change = data.draw(
        st.sampled_from(["replace", "delete", "extra key", "duplicate line", "pad lines"])
    )
    if change == "replace":
        container[key] = data.draw(JSON_VALUE)
    elif change == "delete":
        del container[key]
    elif change == "extra key" and isinstance(container, dict):
        container[data.draw(st.text(max_size=8))] = data.draw(JSON_VALUE)
    elif change == "duplicate line" and isinstance(body.get("lines"), list) and body["lines"]:
        copied = copy.deepcopy(data.draw(st.sampled_from(body["lines"])))
        if isinstance(copied, dict) and isinstance(copied.get("sku"), str):
            copied["sku"] = data.draw(padded(st.just(copied["sku"].strip())))
        body["lines"].append(copied)
    elif change == "pad lines":
        body["lines"] = [{"sku": f"P{index}", "quantity": 1} for index in range(MAX_LINES + 1)]
    event(change)


def assert_lean_agrees_with_the_serializer(body: Any) -> str:
    """Return which way the serializer went ("accepts" or "refuses")."""
    before = copy.deepcopy(body)
    lean = checkout_input_lean(body)
    assert body == before, "the lean path changed the body"
    serializer = OrderCreateInputSerializer(data=body)
    if serializer.is_valid():
        expected = dict(serializer.validated_data)
        assert lean == expected
        assert repr(lean) == repr(expected)  # key order and types too
        return "accepts"
    assert lean is None, serializer.errors
    return "refuses"


@settings(max_examples=300, deadline=None, database=None)
@given(valid_looking_body())
def test_lean_validation_equals_the_serializer_on_valid_looking_bodies(body):
    event(assert_lean_agrees_with_the_serializer(body))


@settings(max_examples=500, deadline=None, database=None)
@given(valid_looking_body(), st.integers(1, 3), st.data())
def test_lean_validation_equals_the_serializer_on_near_valid_bodies(body, changes, data):
    for _ in range(changes):
        if body:
            mutate(data, body)
    event(assert_lean_agrees_with_the_serializer(body))


@settings(max_examples=100, deadline=None, database=None)
@given(st.one_of(JSON_VALUE, st.lists(JSON_VALUE, max_size=3)))
def test_lean_validation_refuses_a_body_that_is_not_an_object(body):
    assert assert_lean_agrees_with_the_serializer(body) == "refuses"


# One value in place of a field's: wrong JSON types, numbers at and past the bounds,
# blank and over-long text.
TRICKY_VALUES = [
    None, True, False, 0, 1, -1, 1000, 1001, 10**20, 1.0, 2.5,
    "", " ", "1", "PEN", "x" * 300, [], ["PEN"], {}, {"sku": "PEN"},
]  # fmt: skip


def _usual_body() -> dict[str, Any]:
    return order_payload(
        [("PEN", 2), ("INK", 1)], shipping_method="express", payment_method="pm_card_visa"
    )


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    container: Any = body
    for step in path[:-1]:
        container = container[step]
    container[path[-1]] = value
    return body


def test_each_field_of_the_usual_body_replaced_by_each_tricky_value():
    for path in paths(_usual_body()):
        for value in TRICKY_VALUES:
            body = _set(_usual_body(), path, value)
            assert_lean_agrees_with_the_serializer(body)


def _length_limits(
    serializer: Any, path: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], int]]:
    """(path, max_length) of every text field with a limit, from the declared fields."""
    limits = []
    for name, field in serializer.fields.items():
        if hasattr(field, "child"):
            limits.extend(_length_limits(field.child, (*path, name, 0)))
        elif hasattr(field, "fields"):
            limits.extend(_length_limits(field, (*path, name)))
        elif getattr(field, "max_length", None) is not None:
            limits.append(((*path, name), field.max_length))
    return limits


LENGTH_LIMITS = _length_limits(OrderCreateInputSerializer())


def test_every_length_limit_is_generated():
    assert {path: limit for path, limit in LENGTH_LIMITS} == {
        ("lines", 0, "sku"): 64,
        ("email",): 254,
        ("shipping_address", "name"): 200,
        ("shipping_address", "line1"): 200,
        ("shipping_address", "line2"): 200,
        ("shipping_address", "city"): 100,
        ("shipping_address", "postal_code"): 20,
    }


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.sampled_from(LENGTH_LIMITS), st.integers(-1, 1), st.sampled_from("xé東 "), PADDING, PADDING
)
def test_text_at_its_length_limit(limit, offset, character, before, after):
    path, max_length = limit
    core = character * (max_length + offset)
    if path == ("email",):
        core = core[: -len("@example.com")] + "@example.com"
    event(assert_lean_agrees_with_the_serializer(_set(_usual_body(), path, before + core + after)))


def test_the_usual_checkout_body_takes_the_lean_path():
    # given
    body = order_payload([("PEN", 2), ("INK", 1)], payment_method="pm_card_visa")

    # when
    validated = checkout_input_lean(body)

    # then
    assert validated == {
        "lines": [{"sku": "PEN", "quantity": 2}, {"sku": "INK", "quantity": 1}],
        "email": "buyer@example.com",
        "shipping_address": body["shipping_address"],
        "shipping_method": "standard",
        "payment_method": "pm_card_visa",
    }


def test_a_refused_body_raises_the_serializers_errors():
    # given
    body = order_payload([("PEN", 0)])
    serializer = OrderCreateInputSerializer(data=body)

    # when
    with pytest.raises(ValidationError) as raised:
        checkout_input(body)

    # then
    assert not serializer.is_valid()
    assert raised.value.detail == serializer.errors
