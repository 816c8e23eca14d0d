"""The payments JSON API through Django's test client, and the demo commands.

Every endpoint and status code of testproject/payments/views.py: creates
(with idempotent retries and a create cut short before the gateway's
decision), reads with ETags, captures and refunds (business rules, If-Match,
idempotent retries, retried lost races), and the paged event list.
"""

from __future__ import annotations

import re
import uuid
from io import StringIO
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import Client

from django_eventlog import Event, Log, LogState
from testproject.payments import gateway, views
from testproject.payments.events import (
    MAX_AMOUNT,
    Authorized,
    Captured,
    Declined,
    Payment,
    PaymentRequest,
    Refunded,
    Requested,
)
from tests.domain import Deposited, Opened

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

API = "/api/payments/"
PROBLEM = "application/problem+json"


# Helpers


def key_header(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": f'"{key}"'}


def create(client: Client, body: Any, key: str | None = None) -> Response:
    return client.post(
        API, body, content_type="application/json", headers=key_header(key)
    )


def new_payment(client: Client, amount: int = 10_000) -> dict[str, Any]:
    response = create(client, {"amount": amount})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def url(payment_id: str | uuid.UUID, what: str = "") -> str:
    return f"{API}{payment_id}/{what + '/' if what else ''}"


def write(
    client: Client,
    payment_id: str | uuid.UUID,
    what: str,
    body: Any,
    *,
    key: str | None = None,
    if_match: str | None = None,
) -> Response:
    headers = key_header(key)
    if if_match is not None:
        headers["If-Match"] = if_match
    return client.post(
        url(payment_id, what), body, content_type="application/json", headers=headers
    )


def capture(
    client: Client,
    payment_id: str | uuid.UUID,
    amount: int,
    descriptor: str = "WIDGETS",
    currency: str = "EUR",
    **kwargs: Any,
) -> Response:
    body = {"amount": amount, "statement_descriptor": descriptor, "currency": currency}
    return write(client, payment_id, "captures", body, **kwargs)


def refund(
    client: Client,
    payment_id: str | uuid.UUID,
    amount: int,
    reference: str = "REF-1",
    **kwargs: Any,
) -> Response:
    body = {"amount": amount, "reference_number": reference}
    return write(client, payment_id, "refunds", body, **kwargs)


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """Check a problem details response and return its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    content = response.content.decode()
    assert "Traceback" not in content
    assert 'File "' not in content
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str)
    assert body["title"]
    return body


def etag_of(payment_id: str | uuid.UUID, next_index: int) -> str:
    return f'"{uuid.UUID(str(payment_id)).hex}.{next_index}"'


def event_types(payment_id: str | uuid.UUID) -> list[str]:
    return list(
        Event.objects.filter(log_id=payment_id)
        .order_by("index")
        .values_list("type", flat=True)
    )


def payment_logs() -> int:
    return Log.objects.filter(kind="payment").count()


def long_payment(events: int) -> uuid.UUID:
    """A payment of ``events`` events: requested, authorized, many captures."""
    state = Log.objects.create_log(Requested(PaymentRequest(10**9)), kind="payment")
    state = Log.objects.append(state, Authorized(10**9, "LONG"))
    for _ in range(events - 2):
        state = Log.objects.append(state, Captured(1, "PIECE", "EUR"))
    return state.log_id


def other_kind_log() -> uuid.UUID:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    Log.objects.append(state, Deposited(5))
    return state.log_id


# POST /api/payments/


@pytest.mark.parametrize("amount", [1, 10_000, gateway.LIMIT])
def test_create_authorizes_up_to_the_gateway_limit(client: Client, amount: int) -> None:
    response = create(client, {"amount": amount})
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    body = response.json()
    payment_id = uuid.UUID(body["id"])
    assert response["Location"] == url(payment_id)
    assert response["ETag"] == etag_of(payment_id, 2)
    assert not response.has_header("Idempotent-Replayed")
    assert body == {
        "id": str(payment_id),
        "status": "authorized",
        "amount_requested": amount,
        "amount_approved": amount,
        "amount_captured": 0,
        "amount_refunded": 0,
        "currency": None,
        "capturable": amount,
        "refundable": 0,
        "events": 2,
        "links": {
            "self": url(payment_id),
            "events": url(payment_id, "events"),
            "captures": url(payment_id, "captures"),
            "refunds": url(payment_id, "refunds"),
        },
    }
    assert Log.objects.get(pk=payment_id).kind == "payment"
    assert event_types(payment_id) == ["payment.requested", "payment.authorized"]


def test_create_above_the_gateway_limit_is_declined(client: Client) -> None:
    response = create(client, {"amount": gateway.LIMIT + 1})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "declined"
    assert body["amount_approved"] == 0
    assert body["capturable"] == 0
    assert response["ETag"] == etag_of(body["id"], 2)
    assert event_types(body["id"]) == ["payment.requested", "payment.declined"]


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        pytest.param("{", {}, id="malformed JSON"),
        pytest.param("[1]", {}, id="array body"),
        pytest.param("", {}, id="empty body"),
        pytest.param('{"amount": 1}', {"Idempotency-Key": '"open'}, id="bad key"),
        pytest.param('{"amount": 1}', {"Idempotency-Key": '""'}, id="empty key"),
        pytest.param('{"amount": 1}', {"Idempotency-Key": "a b"}, id="key with space"),
        pytest.param(
            '{"amount": 1}', {"Idempotency-Key": "k" * 300}, id="overlong key"
        ),
    ],
)
def test_create_bad_request(client: Client, data: str, headers: dict[str, str]) -> None:
    response = client.post(API, data, content_type="application/json", headers=headers)
    body = assert_problem(response, 400)
    assert body["title"] == "Bad Request"
    assert body["detail"]
    assert payment_logs() == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({}, "an integer", id="missing"),
        pytest.param({"amount": "100"}, "an integer", id="string"),
        pytest.param({"amount": 1.5}, "an integer", id="float"),
        pytest.param({"amount": True}, "an integer", id="bool"),
        pytest.param({"amount": None}, "an integer", id="null"),
        pytest.param({"amount": 0}, "between 1 and", id="zero"),
        pytest.param({"amount": -5}, "between 1 and", id="negative"),
        pytest.param({"amount": MAX_AMOUNT + 1}, "between 1 and", id="huge"),
    ],
)
def test_create_invalid_amount(client: Client, data: Any, message: str) -> None:
    body = assert_problem(create(client, data), 422)
    assert body["title"] == "Unprocessable Content"
    assert body["detail"] == "Invalid amount."
    (error,) = body["errors"]
    assert error["pointer"] == "#/amount"
    assert message in error["detail"]
    assert payment_logs() == 0


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_payments_collection_allows_get_and_post(client: Client, method: str) -> None:
    # GET lists the payments (tests/test_payments_read_model.py).
    response = getattr(client, method)(API)
    assert_problem(response, 405)
    assert response["Allow"] == "GET, HEAD, POST"


@pytest.fixture
def gateway_calls(monkeypatch: pytest.MonkeyPatch) -> list[PaymentRequest]:
    """The requests the views send to the gateway, which still decides them."""
    real_authorize = gateway.authorize
    calls: list[PaymentRequest] = []

    def authorize(
        request: PaymentRequest, *, idempotency_key: str | None = None
    ) -> Authorized | Declined:
        calls.append(request)
        return real_authorize(request, idempotency_key=idempotency_key)

    monkeypatch.setattr(gateway, "authorize", authorize)
    return calls


def test_retried_create_replays_the_original(
    client: Client, gateway_calls: list[PaymentRequest]
) -> None:
    first = create(client, {"amount": 2_500}, key="order-1")
    again = create(client, {"amount": 2_500}, key="order-1")
    assert gateway_calls == [PaymentRequest(2_500)]
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["ETag"] == first["ETag"]
    assert payment_logs() == 1
    assert event_types(first.json()["id"]) == [
        "payment.requested",
        "payment.authorized",
    ]
    # The key is stored scoped to the endpoint.
    stored = Event.objects.get(log_id=first.json()["id"], index=0)
    assert stored.idempotency_key == "payments:create:order-1"


def test_create_key_reused_for_another_body_is_422(client: Client) -> None:
    assert create(client, {"amount": 2_500}, key="order-2").status_code == 201
    body = assert_problem(create(client, {"amount": 2_501}, key="order-2"), 422)
    assert "Idempotency-Key" in body["detail"]
    assert payment_logs() == 1


def test_create_keys_are_scoped_to_the_endpoint(client: Client) -> None:
    created = create(client, {"amount": 2_500}, key="shared")
    assert created.status_code == 201
    payment_id = created.json()["id"]
    # The same client key on a capture is another key: no conflict.
    response = capture(client, payment_id, 100, key="shared")
    assert response.status_code == 201
    assert not response.has_header("Idempotent-Replayed")


def test_create_cut_short_is_finished_by_the_retry(
    client: Client, gateway_calls: list[PaymentRequest]
) -> None:
    # The first attempt recorded the request, then died before the gateway.
    state = Log.objects.create_log(
        Requested(PaymentRequest(7_000)),
        kind="payment",
        idempotency_key="payments:create:cut-short",
    )
    assert event_types(state.log_id) == ["payment.requested"]
    assert client.get(url(state.log_id)).json()["status"] == "requested"

    response = create(client, {"amount": 7_000}, key="cut-short")
    assert response.status_code == 201
    assert response["Idempotent-Replayed"] == "true"
    body = response.json()
    assert body["id"] == str(state.log_id)
    assert body["status"] == "authorized"
    assert body["amount_approved"] == 7_000
    assert body["events"] == 2
    assert response["ETag"] == etag_of(state.log_id, 2)

    # Retried once more: authorized exactly once.
    again = create(client, {"amount": 7_000}, key="cut-short")
    assert again.status_code == 201
    assert again.json()["amount_approved"] == 7_000
    assert event_types(state.log_id) == ["payment.requested", "payment.authorized"]
    assert gateway_calls == [PaymentRequest(7_000)]
    assert payment_logs() == 1


def test_create_retries_racing_to_authorize_both_succeed(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A create cut short before the gateway; two retries race to finish it.
    # The first retry asks the gateway, and while it waits the second retry
    # (run here, nested) asks too and records its decision first. Asked with
    # the same key, the gateway answers alike: the first retry's append is
    # refused as a replay, and it answers the decision recorded.
    state = Log.objects.create_log(
        Requested(PaymentRequest(7_000)),
        kind="payment",
        idempotency_key="payments:create:race",
    )
    real_authorize = gateway.authorize
    calls: list[PaymentRequest] = []
    nested: list[Response] = []

    def slow_authorize(
        request: PaymentRequest, *, idempotency_key: str | None = None
    ) -> Authorized | Declined:
        calls.append(request)
        if len(calls) == 1:
            nested.append(create(client, {"amount": 7_000}, key="race"))
        return real_authorize(request, idempotency_key=idempotency_key)

    monkeypatch.setattr(gateway, "authorize", slow_authorize)
    response = create(client, {"amount": 7_000}, key="race")
    (concurrent,) = nested
    assert len(calls) == 2
    assert concurrent.status_code == 201
    assert response.status_code == 201, response.content
    assert response["Idempotent-Replayed"] == "true"
    assert response.json() == concurrent.json()
    assert response.json()["status"] == "authorized"
    assert event_types(state.log_id) == ["payment.requested", "payment.authorized"]


def test_create_key_that_looks_like_another_keys_gateway_key(client: Client) -> None:
    # Client keys are free text: "k:gateway" is a valid key of its own and
    # must not collide with anything the server derives from the key "k".
    first = create(client, {"amount": 1_000}, key="k:gateway")
    second = create(client, {"amount": 2_000}, key="k")
    assert first.status_code == 201
    assert second.status_code == 201, second.content
    assert first.json()["id"] != second.json()["id"]
    assert first.json()["status"] == second.json()["status"] == "authorized"


# GET /api/payments/<id>/


def test_get_payment_with_etag(client: Client) -> None:
    created = new_payment(client, 4_200)
    response = client.get(url(created["id"]))
    assert response.status_code == 200
    assert response["ETag"] == etag_of(created["id"], 2)
    assert not response.has_header("Location")
    assert response.json() == created


def test_head_payment(client: Client) -> None:
    created = new_payment(client)
    response = client.head(url(created["id"]))
    assert response.status_code == 200
    assert response["ETag"] == etag_of(created["id"], 2)
    assert response.content == b""


@pytest.mark.parametrize(
    "template",
    ["{tag}", "{stale}, {tag}", "{tag} , W/{stale}", "W/{tag}", "*"],
)
def test_get_if_none_match_current_is_304(client: Client, template: str) -> None:
    payment_id = new_payment(client)["id"]
    tag, stale = etag_of(payment_id, 2), etag_of(payment_id, 1)
    response = client.get(
        url(payment_id),
        headers={"If-None-Match": template.format(tag=tag, stale=stale)},
    )
    assert response.status_code == 304
    assert response["ETag"] == tag
    assert response.content == b""


def test_get_if_none_match_stale_is_200(client: Client) -> None:
    payment_id = new_payment(client)["id"]
    stale = etag_of(payment_id, 2)
    assert capture(client, payment_id, 10).status_code == 201
    response = client.get(url(payment_id), headers={"If-None-Match": stale})
    assert response.status_code == 200
    assert response["ETag"] == etag_of(payment_id, 3)
    assert response.json()["amount_captured"] == 10


@pytest.mark.parametrize("what", ["", "events", "captures", "refunds"])
def test_unknown_malformed_and_foreign_ids_are_404(client: Client, what: str) -> None:
    ids = [str(uuid.uuid4()), "not-a-uuid", "1234", str(other_kind_log())]
    for payment_id in ids:
        if what in ("captures", "refunds"):
            body = {
                "amount": 1,
                "statement_descriptor": "X",
                "currency": "EUR",
                "reference_number": "X",
            }
            response = write(client, payment_id, what, body)
        else:
            response = client.get(url(payment_id, what))
        problem = assert_problem(response, 404)
        assert problem["title"] == "Not Found"
        assert payment_id not in response.content.decode()


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_payment_allows_only_get_and_head(client: Client, method: str) -> None:
    payment_id = new_payment(client)["id"]
    response = getattr(client, method)(url(payment_id))
    assert_problem(response, 405)
    assert response["Allow"] == "GET, HEAD"


# Captures and refunds


def test_capture_then_refund(client: Client) -> None:
    payment_id = new_payment(client, 10_000)["id"]

    response = capture(client, payment_id, 4_000, "DEMO SHOP")
    assert response.status_code == 201
    assert response["Location"] == f"{url(payment_id, 'events')}?start=2&limit=1"
    assert response["ETag"] == etag_of(payment_id, 3)
    assert not response.has_header("Idempotent-Replayed")
    body = response.json()
    assert body["event"]["index"] == 2
    assert body["event"]["type"] == "payment.captured"
    assert body["event"]["event"] == {
        "amount": 4_000,
        "statement_descriptor": "DEMO SHOP",
        "currency": "EUR",
    }
    assert body["event"]["idempotency_key"] is None
    assert body["payment"]["amount_captured"] == 4_000
    assert body["payment"]["currency"] == "EUR"
    assert body["payment"]["capturable"] == 6_000
    assert body["payment"]["refundable"] == 4_000
    assert body["payment"]["events"] == 3
    # The Location is the page of just that event.
    page = client.get(response["Location"]).json()
    assert page["events"] == [body["event"]]

    response = refund(client, payment_id, 1_500, "R-77")
    assert response.status_code == 201
    assert response["Location"] == f"{url(payment_id, 'events')}?start=3&limit=1"
    assert response["ETag"] == etag_of(payment_id, 4)
    body = response.json()
    assert body["event"]["type"] == "payment.refunded"
    assert body["event"]["event"] == {"amount": 1_500, "reference_number": "R-77"}
    assert body["payment"]["amount_refunded"] == 1_500
    assert body["payment"]["refundable"] == 2_500
    assert body["payment"]["capturable"] == 6_000
    assert client.get(url(payment_id))["ETag"] == etag_of(payment_id, 4)


def test_capture_beyond_capturable_is_422(client: Client) -> None:
    payment_id = new_payment(client, 1_000)["id"]
    assert capture(client, payment_id, 600).status_code == 201
    body = assert_problem(capture(client, payment_id, 401), 422)
    assert body["detail"] == "Only 400 can be captured."
    assert capture(client, payment_id, 400).status_code == 201
    assert event_types(payment_id).count("payment.captured") == 2


def test_refund_beyond_refundable_is_422(client: Client) -> None:
    payment_id = new_payment(client, 1_000)["id"]
    body = assert_problem(refund(client, payment_id, 1), 422)
    assert body["detail"] == "Only 0 can be refunded."
    assert capture(client, payment_id, 300).status_code == 201
    body = assert_problem(refund(client, payment_id, 301), 422)
    assert body["detail"] == "Only 300 can be refunded."
    assert refund(client, payment_id, 300).status_code == 201
    assert event_types(payment_id)[-1] == "payment.refunded"
    assert len(event_types(payment_id)) == 4


@pytest.mark.parametrize("write_to", [capture, refund])
def test_writes_on_a_declined_payment_are_422(client: Client, write_to: Any) -> None:
    payment_id = new_payment(client, gateway.LIMIT + 1)["id"]
    body = assert_problem(write_to(client, payment_id, 1), 422)
    assert body["detail"] == "The payment is declined."
    assert len(event_types(payment_id)) == 2


def test_writes_on_a_payment_still_requested_are_422(client: Client) -> None:
    state = Log.objects.create_log(Requested(PaymentRequest(500)), kind="payment")
    body = assert_problem(capture(client, state.log_id, 1), 422)
    assert body["detail"] == "The payment is requested."


@pytest.mark.parametrize(
    ("what", "data", "field"),
    [
        ("captures", {"amount": 1, "currency": "EUR"}, "statement_descriptor"),
        (
            "captures",
            {"amount": 1, "statement_descriptor": "", "currency": "EUR"},
            "statement_descriptor",
        ),
        (
            "captures",
            {"amount": 1, "statement_descriptor": "x" * 23, "currency": "EUR"},
            "statement_descriptor",
        ),
        (
            "captures",
            {"amount": 1, "statement_descriptor": "a\x00b", "currency": "EUR"},
            "statement_descriptor",
        ),
        (
            "captures",
            {"amount": 1, "statement_descriptor": 5, "currency": "EUR"},
            "statement_descriptor",
        ),
        ("captures", {"statement_descriptor": "X", "currency": "EUR"}, "amount"),
        # Version 2 of payment.captured: a capture names its currency.
        ("captures", {"amount": 1, "statement_descriptor": "X"}, "currency"),
        *(
            (
                "captures",
                {"amount": 1, "statement_descriptor": "X", "currency": c},
                "currency",
            )
            for c in ("eur", "EU", "EURO", "EUR\n", "E1R", 978, None)
        ),
        ("refunds", {"amount": 1}, "reference_number"),
        ("refunds", {"amount": 1, "reference_number": "r" * 65}, "reference_number"),
        ("refunds", {"amount": "1", "reference_number": "R"}, "amount"),
    ],
)
def test_write_validation_is_422_with_errors(
    client: Client, what: str, data: dict[str, Any], field: str
) -> None:
    payment_id = new_payment(client)["id"]
    body = assert_problem(write(client, payment_id, what, data), 422)
    (error,) = body["errors"]
    assert error["pointer"] == f"#/{field}"
    assert error["detail"]
    assert len(event_types(payment_id)) == 2


def test_write_longest_texts_are_accepted(client: Client) -> None:
    payment_id = new_payment(client)["id"]
    assert capture(client, payment_id, 5, "x" * 22).status_code == 201
    assert refund(client, payment_id, 5, "r" * 64).status_code == 201


# A body that both captures and refunds accept.
VALID_WRITE = (
    '{"amount": 1, "statement_descriptor": "X", "currency": "EUR", '
    '"reference_number": "X"}'
)
VALID_WRITE_BODY = {
    "amount": 1,
    "statement_descriptor": "X",
    "currency": "EUR",
    "reference_number": "X",
}


@pytest.mark.parametrize("what", ["captures", "refunds"])
@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ("{", {}),
        ('"amount"', {}),
        (VALID_WRITE, {"Idempotency-Key": '"x'}),
    ],
)
def test_write_bad_request(
    client: Client, what: str, data: str, headers: dict[str, str]
) -> None:
    payment_id = new_payment(client)["id"]
    response = client.post(
        url(payment_id, what), data, content_type="application/json", headers=headers
    )
    assert_problem(response, 400)
    assert len(event_types(payment_id)) == 2


@pytest.mark.parametrize("what", ["captures", "refunds"])
def test_writes_allow_only_post(client: Client, what: str) -> None:
    payment_id = new_payment(client)["id"]
    for method in ("get", "put"):
        response = getattr(client, method)(url(payment_id, what))
        assert_problem(response, 405)
        assert response["Allow"] == "POST"


def test_if_match_current_etag_writes(client: Client) -> None:
    payment_id = new_payment(client)["id"]
    tag = client.get(url(payment_id))["ETag"]
    response = capture(client, payment_id, 100, if_match=tag)
    assert response.status_code == 201
    assert response["ETag"] == etag_of(payment_id, 3)
    # The ETag of a write is good for the next conditional write.
    response = refund(client, payment_id, 50, if_match=response["ETag"])
    assert response.status_code == 201
    # So is If-Match: * (any state).
    assert capture(client, payment_id, 1, if_match="*").status_code == 201


def test_stale_if_match_is_412_with_the_current_etag(client: Client) -> None:
    payment_id = new_payment(client)["id"]
    stale = client.get(url(payment_id))["ETag"]
    assert capture(client, payment_id, 100).status_code == 201
    response = capture(client, payment_id, 100, if_match=stale)
    body = assert_problem(response, 412)
    assert body["title"] == "Precondition Failed"
    assert response["ETag"] == etag_of(payment_id, 3)
    assert len(event_types(payment_id)) == 3


@pytest.mark.parametrize("what", ["captures", "refunds"])
@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{other}", id="etag of another payment"),
        pytest.param("W/{tag}", id="weak current etag"),
        pytest.param("garbage", id="malformed"),
    ],
)
def test_if_match_naming_no_strong_etag_of_the_payment_is_412(
    client: Client, what: str, template: str
) -> None:
    # RFC 9110 13.1.1: If-Match compares strongly, and a tag that is not
    # this payment's makes the condition false: 412, not 400.
    payment_id = new_payment(client)["id"]
    assert capture(client, payment_id, 500).status_code == 201  # refundable
    other_id = new_payment(client)["id"]
    header = template.format(other=etag_of(other_id, 3), tag=etag_of(payment_id, 3))
    response = write(client, payment_id, what, VALID_WRITE_BODY, if_match=header)
    body = assert_problem(response, 412)
    assert body["title"] == "Precondition Failed"
    assert response["ETag"] == etag_of(payment_id, 3)
    assert len(event_types(payment_id)) == 3


def test_retried_capture_replays_even_when_the_rules_now_refuse(
    client: Client,
) -> None:
    payment_id = new_payment(client, 5_000)["id"]
    tag = client.get(url(payment_id))["ETag"]
    first = capture(client, payment_id, 5_000, key="cap-1", if_match=tag)
    assert first.status_code == 201
    assert first.json()["payment"]["capturable"] == 0
    # The retry carries the same (now stale) If-Match; the rules would refuse
    # a new capture of 5000, but this is the same request: replay it.
    again = capture(client, payment_id, 5_000, key="cap-1", if_match=tag)
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["event"] == first.json()["event"]
    assert again["Location"] == first["Location"]
    assert again.json()["event"]["idempotency_key"] == (
        f"payments:{payment_id}:payment.captured:cap-1"
    )
    assert event_types(payment_id).count("payment.captured") == 1
    # A new capture (another key) is refused by the rules.
    assert_problem(capture(client, payment_id, 5_000, key="cap-2"), 422)


def test_retried_refund_replays(client: Client) -> None:
    payment_id = new_payment(client, 5_000)["id"]
    assert capture(client, payment_id, 5_000).status_code == 201
    first = refund(client, payment_id, 5_000, key="ref-1")
    again = refund(client, payment_id, 5_000, key="ref-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["event"]["index"] == first.json()["event"]["index"] == 3
    assert event_types(payment_id).count("payment.refunded") == 1


def test_write_key_reused_for_another_body_is_422(client: Client) -> None:
    payment_id = new_payment(client)["id"]
    assert capture(client, payment_id, 100, key="cap").status_code == 201
    body = assert_problem(capture(client, payment_id, 101, key="cap"), 422)
    assert "Idempotency-Key" in body["detail"]
    body = assert_problem(capture(client, payment_id, 100, "OTHER", key="cap"), 422)
    assert len(event_types(payment_id)) == 3


def racing_writer(monkeypatch: pytest.MonkeyPatch, races: int) -> list[LogState]:
    """Make another writer append a capture of 1 right after each of the next
    ``races`` reductions of payments (the views' and transact's), so that
    their append loses the race."""
    manager = type(Log.objects)
    real_reduce = manager.reduce
    appended: list[LogState] = []

    def racing_reduce(self: Any, log_id: Any, aggregate_class: Any, **kw: Any) -> Any:
        reduction = real_reduce(self, log_id, aggregate_class, **kw)
        if aggregate_class is Payment and len(appended) < races:
            appended.append(Log.objects.append(reduction, Captured(1, "RACER", "EUR")))
        return reduction

    monkeypatch.setattr(manager, "reduce", racing_reduce)
    return appended


def test_lost_race_without_if_match_is_retried(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = new_payment(client, 1_000)["id"]
    races = racing_writer(monkeypatch, views.MAX_ATTEMPTS - 1)
    response = capture(client, payment_id, 500, "MINE")
    assert response.status_code == 201, response.content
    assert len(races) == views.MAX_ATTEMPTS - 1
    body = response.json()
    assert body["event"]["index"] == 2 + len(races)
    assert body["event"]["event"]["statement_descriptor"] == "MINE"
    assert body["payment"]["amount_captured"] == 500 + len(races)
    assert response["ETag"] == etag_of(payment_id, 3 + len(races))
    descriptors = [
        payload["statement_descriptor"]
        for payload in Event.objects.filter(log_id=payment_id, type="payment.captured")
        .order_by("index")
        .values_list("payload", flat=True)
    ]
    assert descriptors == ["RACER"] * len(races) + ["MINE"]


def test_lost_race_rechecks_the_rules(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = new_payment(client, 1_000)["id"]
    racing_writer(monkeypatch, 1)
    # After the racer's capture of 1, only 999 are left: refused on the retry.
    body = assert_problem(capture(client, payment_id, 1_000), 422)
    assert body["detail"] == "Only 999 can be captured."


def test_persistent_lost_races_are_409(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = new_payment(client, 1_000)["id"]
    races = racing_writer(monkeypatch, 1_000)
    body = assert_problem(capture(client, payment_id, 500, "MINE"), 409)
    assert body["title"] == "Conflict"
    assert len(races) == views.MAX_ATTEMPTS
    assert len(event_types(payment_id)) == 2 + views.MAX_ATTEMPTS
    assert not Event.objects.filter(payload__statement_descriptor="MINE").exists()


def test_lost_race_with_if_match_is_412(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = new_payment(client, 1_000)["id"]
    tag = client.get(url(payment_id))["ETag"]
    races = racing_writer(monkeypatch, 1)
    response = capture(client, payment_id, 500, "MINE", if_match=tag)
    assert_problem(response, 412)
    assert len(races) == 1
    # The racer's capture is the only new event; the 412 names that state.
    assert response["ETag"] == etag_of(payment_id, 3)
    assert len(event_types(payment_id)) == 3


# GET /api/payments/<id>/events/


def test_events_first_page_has_all_of_a_short_log(client: Client) -> None:
    payment_id = new_payment(client, 300)["id"]
    response = client.get(url(payment_id, "events"))
    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert [e["index"] for e in body["events"]] == [0, 1]
    assert body["events"][0]["type"] == "payment.requested"
    assert body["events"][0]["event"] == {"request": {"amount_requested": 300}}
    assert body["events"][1]["type"] == "payment.authorized"
    assert body["events"][1]["event"]["amount"] == 300


def test_events_pages_link_to_the_next(client: Client) -> None:
    payment_id = new_payment(client)["id"]
    assert capture(client, payment_id, 1).status_code == 201
    assert capture(client, payment_id, 1).status_code == 201
    events_url = url(payment_id, "events")

    first = client.get(events_url, {"limit": 2}).json()
    assert [e["index"] for e in first["events"]] == [0, 1]
    assert first["next"] == f"{events_url}?start=2&limit=2"
    # Exactly the last two: no next page.
    last = client.get(first["next"]).json()
    assert [e["index"] for e in last["events"]] == [2, 3]
    assert last["next"] is None
    middle = client.get(events_url, {"start": 1, "limit": 2}).json()
    assert [e["index"] for e in middle["events"]] == [1, 2]
    assert middle["next"] == f"{events_url}?start=3&limit=2"
    past_the_end = client.get(events_url, {"start": 99}).json()
    assert past_the_end == {"events": [], "next": None}


@pytest.mark.parametrize(
    "query",
    [
        {"start": "x"},
        {"start": "1.5"},
        {"start": "-1"},
        {"start": str(2**31)},
        {"limit": "ten"},
        {"limit": "0"},
        {"limit": "-3"},
        {"limit": str(views.EVENTS_MAX_PAGE_SIZE + 1)},
    ],
)
def test_events_query_validation_is_400(client: Client, query: dict[str, str]) -> None:
    payment_id = new_payment(client)["id"]
    body = assert_problem(client.get(url(payment_id, "events"), query), 400)
    (name,) = query
    assert body["detail"].startswith(f"{name} must be")


def test_events_largest_limit_is_accepted(client: Client) -> None:
    payment_id = new_payment(client)["id"]
    response = client.get(
        url(payment_id, "events"), {"limit": views.EVENTS_MAX_PAGE_SIZE}
    )
    assert response.status_code == 200
    assert len(response.json()["events"]) == 2


def test_events_next_links_walk_a_long_log(client: Client) -> None:
    payment_id = long_payment(130)
    indices: list[int] = []
    pages = 0
    next_url: str | None = url(payment_id, "events")
    while next_url is not None:
        response = client.get(next_url)
        assert response.status_code == 200
        body = response.json()
        assert len(body["events"]) <= views.EVENTS_PAGE_SIZE
        indices.extend(e["index"] for e in body["events"])
        next_url = body["next"]
        pages += 1
        assert pages <= 10, "the next links do not end"
    assert indices == list(range(130))
    assert pages == 3  # 50 + 50 + 30


# Who and which request: the demo runs EventContextMiddleware


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_the_api_records_who_made_each_request_and_which_request_it_was(
    client: Client, django_user_model: Any, signed_in: bool
) -> None:
    actor = None
    if signed_in:
        user = django_user_model.objects.create_user(username="clerk")
        client.force_login(user)
        actor = f"user:{user.pk}"
    response = client.post(
        API,
        {"amount": 10_000},
        content_type="application/json",
        headers={"X-Correlation-ID": "checkout-7"},
    )
    assert response.status_code == 201
    assert response["X-Correlation-ID"] == "checkout-7"
    payment_id = response.json()["id"]
    # The request and the gateway's decision, both written by that request.
    assert [
        (r.type, r.metadata.actor, r.metadata.correlation_id)
        for r in Log.objects.load(payment_id)
    ] == [
        ("payment.requested", actor, "checkout-7"),
        ("payment.authorized", actor, "checkout-7"),
    ]

    # A capture without the header: a correlation id of its own, answered.
    response = capture(client, payment_id, 4_000)
    assert response.status_code == 201
    fresh = response["X-Correlation-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert response.json()["event"]["metadata"] == {
        "actor": actor,
        "correlation_id": fresh,
        "causation_id": None,
        "extra": {},
    }
    assert Event.objects.get(correlation_id=fresh).type == "payment.captured"


# Management commands


SUMMARY = re.compile(
    r"Seeded (\d+) payments \((\d+) events\); caught (\d+) concurrency conflict "
    r"and answered (\d+) idempotent retry\."
)


def seed(**options: Any) -> str:
    out = StringIO()
    call_command("seed_payments", stdout=out, **options)
    return out.getvalue()


def test_seed_payments_once() -> None:
    output = seed(count=20)
    match = SUMMARY.search(output)
    assert match is not None, output
    assert match.groups()[0] == "20"
    assert "caught 1 concurrency conflict" in output
    assert "answered 1 idempotent retry" in output
    assert f"[{'#' * 30}] 20/20" in output
    # 20 seeded payments and the one of the concurrency conflict demo
    # (requested, authorized, captured: 3 events the summary leaves out).
    assert payment_logs() == 21
    assert Event.objects.count() == int(match[2]) + 3
    statuses = {
        Log.objects.reduce(log_id, Payment).aggregate.status()
        for log_id in Log.objects.values_list("id", flat=True)
    }
    assert statuses <= {"authorized", "declined"}
    assert "authorized" in statuses

    events = Event.objects.count()
    output = seed(count=20)
    assert "exist already; not seeding again" in output
    assert SUMMARY.search(output) is None
    assert payment_logs() == 21
    assert Event.objects.count() == events


def test_seed_payments_another_seed_seeds_again() -> None:
    seed(count=5)
    output = seed(count=5, seed=7)
    assert SUMMARY.search(output) is not None
    assert payment_logs() == 12


def test_seed_payments_force_seeds_again() -> None:
    seed(count=5)
    output = seed(count=5, force=True)
    assert SUMMARY.search(output) is not None
    assert payment_logs() == 12


@pytest.fixture
def fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


CREDENTIALS = re.compile(
    r"(Created|Reset) the admin user: username admin, password (\S+)"
)


def demo_admin() -> tuple[str, str]:
    out = StringIO()
    call_command("demo_admin", stdout=out)
    match = CREDENTIALS.search(out.getvalue())
    assert match is not None, out.getvalue()
    return match[1], match[2]


def test_demo_admin_creates_then_resets_the_superuser(fast_passwords: None) -> None:
    action, password = demo_admin()
    assert action == "Created"
    user = authenticate(username="admin", password=password)
    assert user is not None
    assert user.is_active
    assert user.is_staff
    assert user.is_superuser

    action, new_password = demo_admin()
    assert action == "Reset"
    assert new_password != password
    assert authenticate(username="admin", password=new_password) is not None
    assert authenticate(username="admin", password=password) is None
    assert get_user_model().objects.filter(username="admin").count() == 1


def test_seed_payments_follows_the_payment_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[str] = []
    real_check = Payment.check

    def check(self: Payment, event: Captured | Refunded) -> None:
        checked.append(event.type_name)
        real_check(self, event)

    monkeypatch.setattr(Payment, "check", check)
    seed(count=30)
    writes = Event.objects.filter(type__in=["payment.captured", "payment.refunded"])
    # Every capture and refund was checked by the payment's rules first (the
    # concurrency demo checks one more capture, which the log then refuses).
    assert len(checked) == writes.count() + 1
    assert "payment.refunded" in checked
    for log_id in Log.objects.values_list("id", flat=True):
        payment = Log.objects.reduce(log_id, Payment).aggregate
        assert 0 <= payment.amount_refunded <= payment.amount_captured
        assert payment.amount_captured <= payment.amount_approved
