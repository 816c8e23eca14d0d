"""Errors that name the field: EventEncodingError's path, pointer and reason.

The expected pointers follow RFC 6901 (JSON Pointer), the expected reasons
msgspec's messages ("Expected `int`, got `str` - at `$.amount`") without
their location.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import pytest

from django_eventlog import DomainEvent, EventEncodingError
from django_eventlog.events import encode_event


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


class Order(DomainEvent):
    type_name = "tests.field_errors.order"
    amount: Annotated[int, msgspec.Meta(ge=1)]
    color: Color = Color.RED
    lines: list[Line] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)


class Untyped(DomainEvent):
    type_name = "tests.field_errors.untyped"
    value: Any


# The error's attributes


def test_an_error_without_a_place_has_no_path_and_its_message_as_reason() -> None:
    error = EventEncodingError("Cannot store it.")
    assert (error.path, error.pointer, error.reason) == (None, None, "Cannot store it.")
    assert str(error) == "Cannot store it."


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ("$", ""),  # the whole document (RFC 6901 section 5)
        ("$.amount", "/amount"),
        ("$.lines[0].quantity", "/lines/0/quantity"),
        ("$.lines[12]", "/lines/12"),
        # A value of a dict: msgspec does not give the key; the dict is named.
        ("$.counts[...]", "/counts"),
        ("$.lines[0].tags[...].x", "/lines/0/tags"),
        # "~" and "/" in a name are escaped as "~0" and "~1" (RFC 6901 section 3).
        ("$.m~n", "/m~0n"),
        ("$.a/b", "/a~1b"),
    ],
)
def test_the_pointer_is_the_json_pointer_of_the_path(path: str, pointer: str) -> None:
    error = EventEncodingError("message", path=path, reason="why")
    assert (error.path, error.pointer, error.reason) == (path, pointer, "why")
    assert str(error) == "message"


# encode_event fills them


def test_encode_event_names_a_value_of_the_wrong_type() -> None:
    with pytest.raises(EventEncodingError) as info:
        encode_event(Order("12"))  # type: ignore[arg-type]
    error = info.value
    assert (error.path, error.pointer) == ("$.amount", "/amount")
    assert error.reason == "Expected `int`, got `str`"
    # The message is what it was: the class, and msgspec's error with its path.
    assert str(error) == (
        "Order event cannot be stored as JSON: "
        "ValidationError('Expected `int`, got `str` - at `$.amount`')"
    )


def test_encode_event_names_a_nested_value() -> None:
    with pytest.raises(EventEncodingError) as info:
        encode_event(Order(5, lines=[Line("a", 1), Line("b", "2")]))  # type: ignore[arg-type]
    assert info.value.path == "$.lines[1].quantity"
    assert info.value.pointer == "/lines/1/quantity"
    assert info.value.reason == "Expected `int`, got `str`"


def test_encode_event_names_a_value_that_fails_a_constraint() -> None:
    with pytest.raises(EventEncodingError) as info:
        encode_event(Order(0))
    assert info.value.pointer == "/amount"
    assert info.value.reason == "Expected `int` >= 1"


def test_encode_event_names_the_dict_of_a_wrong_value() -> None:
    with pytest.raises(EventEncodingError) as info:
        encode_event(Order(5, counts={"a": "b"}))  # type: ignore[dict-item]
    assert info.value.path == "$.counts[...]"
    assert info.value.pointer == "/counts"


@pytest.mark.parametrize(
    "event",
    [Untyped(object()), Untyped(float("nan")), Untyped("a\x00b"), Untyped({1, 2})],
    ids=["not-json", "nan", "nul", "no-round-trip"],
)
def test_encode_event_errors_without_a_place_have_no_pointer(
    event: DomainEvent,
) -> None:
    with pytest.raises(EventEncodingError) as info:
        encode_event(event)
    assert info.value.path is None
    assert info.value.pointer is None
    assert info.value.reason == str(info.value)
