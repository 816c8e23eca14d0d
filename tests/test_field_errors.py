"""Errors that name the field: EventEncodingError's path, pointer and reason.

The expected pointers follow RFC 6901 (JSON Pointer), the expected reasons
msgspec's messages ("Expected `int`, got `str` - at `$.amount`") without
their location.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import pytest
from django import urls
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, RequestFactory

from django_eventlog import DomainEvent, EventEncodingError, http
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


# http.json_event: the event class validates the request body


def post(rf: RequestFactory, data: bytes) -> HttpRequest:
    return rf.post("/", data=data, content_type="application/json")


def misfit(rf: RequestFactory, body: dict[str, Any]) -> EventEncodingError:
    with pytest.raises(EventEncodingError) as info:
        http.json_event(post(rf, json.dumps(body).encode()), Order)
    return info.value


def test_json_event_returns_the_event_of_the_body(rf: RequestFactory) -> None:
    body = {
        "amount": 5,
        "color": "blue",
        "lines": [{"sku": "a", "quantity": 2}],
        "counts": {"a": 1},
    }
    event = http.json_event(post(rf, json.dumps(body).encode()), Order)
    assert event == Order(5, Color.BLUE, [Line("a", 2)], {"a": 1})


def test_json_event_ignores_members_the_class_does_not_declare(
    rf: RequestFactory,
) -> None:
    body = {"amount": 5, "amout": 6, "lines": [{"sku": "a", "quantity": 1, "x": 0}]}
    event = http.json_event(post(rf, json.dumps(body).encode()), Order)
    assert event == Order(5, lines=[Line("a", 1)])


@pytest.mark.parametrize(
    ("body", "path", "pointer", "reason"),
    [
        ({"amount": "5"}, "$.amount", "/amount", "Expected `int`, got `str`"),
        ({"amount": 5.0}, "$.amount", "/amount", "Expected `int`, got `float`"),
        ({"amount": True}, "$.amount", "/amount", "Expected `int`, got `bool`"),
        ({"amount": None}, "$.amount", "/amount", "Expected `int`, got `null`"),
        ({}, "$.amount", "/amount", "Object missing required field `amount`"),
        ({"amount": 0}, "$.amount", "/amount", "Expected `int` >= 1"),
        (
            {"amount": 5, "color": "green"},
            "$.color",
            "/color",
            "Invalid enum value 'green'",
        ),
        (
            {"amount": 5, "lines": [{"sku": "a", "quantity": 1}, {"sku": "b"}]},
            "$.lines[1].quantity",
            "/lines/1/quantity",
            "Object missing required field `quantity`",
        ),
        (
            {"amount": 5, "lines": [{"sku": 7, "quantity": 1}]},
            "$.lines[0].sku",
            "/lines/0/sku",
            "Expected `str`, got `int`",
        ),
        (
            {"amount": 5, "lines": {}},
            "$.lines",
            "/lines",
            "Expected `array`, got `object`",
        ),
    ],
    ids=[
        "str-for-int",
        "float-for-int",
        "bool-for-int",
        "null-for-int",
        "missing",
        "constraint",
        "enum",
        "nested-missing",
        "nested-type",
        "object-for-list",
    ],
)
def test_json_event_names_the_value_that_does_not_fit(
    rf: RequestFactory, body: dict[str, Any], path: str, pointer: str, reason: str
) -> None:
    error = misfit(rf, body)
    assert (error.path, error.pointer, error.reason) == (path, pointer, reason)
    assert str(error).startswith("The JSON does not fit Order: ")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b"", "must be a JSON object"),
        # Python's parser takes NaN; JSON (and msgspec) has no such number.
        (b'{"amount": NaN}', "not valid JSON"),
        (b'{"amount": 1, "x": Infinity}', "not valid JSON"),
    ],
)
def test_json_event_refuses_a_body_that_is_no_json_object_as_json_body_does(
    rf: RequestFactory, data: bytes, message: str
) -> None:
    with pytest.raises(http.BadRequest, match=message):
        http.json_event(post(rf, data), Order)


# problem_for: 422 with an RFC 9457 "errors" member


def test_problem_for_a_value_that_does_not_fit_is_422_with_errors() -> None:
    error = EventEncodingError("m", path="$.lines[1].quantity", reason="Too big")
    response = http.problem_for(error)
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content) == {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "The request has invalid values.",
        "errors": [{"pointer": "#/lines/1/quantity", "detail": "Too big"}],
    }


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        # The examples of RFC 6901 section 6 (URI fragment representation).
        ("$", "#"),
        ("$.foo", "#/foo"),
        ("$.c%d", "#/c%25d"),
        ("$.e^f", "#/e%5Ef"),
        ("$.m~n", "#/m~0n"),
        ("$. ", "#/%20"),
        ("$.a/b", "#/a~1b"),
        # Non-ASCII characters are percent-encoded UTF-8.
        ("$.é", "#/%C3%A9"),
    ],
)
def test_problem_for_writes_the_pointer_as_a_uri_fragment(
    path: str, fragment: str
) -> None:
    response = http.problem_for(EventEncodingError("m", path=path, reason="r"))
    assert json.loads(response.content)["errors"] == [
        {"pointer": fragment, "detail": "r"}
    ]


def test_problem_for_an_error_without_a_place_stays_400_without_errors() -> None:
    response = http.problem_for(EventEncodingError("NUL in a secret field"))
    assert response.status_code == 400
    body = json.loads(response.content)
    assert body["detail"] == "The request has invalid values."
    assert "errors" not in body
    assert "secret" not in response.content.decode()


# A view: json_api answers the problem, never a 500


@http.json_api(methods=["POST"])
def create_order(request: HttpRequest) -> HttpResponse:
    order = http.json_event(request, Order)
    return JsonResponse({"amount": order.amount}, status=201)


urlpatterns = [urls.path("orders/", create_order)]


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"amount": "ten"},
            [{"pointer": "#/amount", "detail": "Expected `int`, got `str`"}],
        ),
        (
            {"color": "red"},
            [
                {
                    "pointer": "#/amount",
                    "detail": "Object missing required field `amount`",
                }
            ],
        ),
        (
            {"amount": 1, "lines": [{"quantity": 1}]},
            [
                {
                    "pointer": "#/lines/0/sku",
                    "detail": "Object missing required field `sku`",
                }
            ],
        ),
    ],
    ids=["wrong-type", "missing", "nested-missing"],
)
def test_a_json_api_view_answers_422_naming_the_field(
    client: Client, body: dict[str, Any], errors: list[dict[str, str]]
) -> None:
    response = client.post("/orders/", body, content_type="application/json")
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content) == {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "The request has invalid values.",
        "errors": errors,
    }


@pytest.mark.urls(__name__)
def test_a_json_api_view_gets_the_event_of_a_valid_body(client: Client) -> None:
    response = client.post(
        "/orders/", {"amount": 7, "note": "ignored"}, content_type="application/json"
    )
    assert response.status_code == 201
    assert json.loads(response.content) == {"amount": 7}


class Tally(DomainEvent):
    type_name = "tests.field_errors.tally"
    by_day: dict[int, int]


def test_json_event_names_the_dict_of_a_key_that_does_not_fit(
    rf: RequestFactory,
) -> None:
    assert http.json_event(post(rf, b'{"by_day": {"1": 2}}'), Tally) == Tally({1: 2})
    with pytest.raises(EventEncodingError) as info:
        http.json_event(post(rf, b'{"by_day": {"monday": 2}}'), Tally)
    error = info.value
    assert (error.path, error.pointer) == ("$.by_day", "/by_day")
    assert error.reason == "Expected `int`, got `str` (a key)"
