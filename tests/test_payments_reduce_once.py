"""The demo's write views reduce a payment once per request.

Counted with the public ``reduced`` signal, sent once per reduce. A write
reduces the payment, checks its Idempotency-Key, appends, and answers from
the reduction it holds with the event it appended folded in; only an append
that loses a race reduces again (tests/test_payments_api.py covers those).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_eventlog.signals import reduced
from testproject.payments.events import Payment

pytestmark = pytest.mark.django_db

API = "/api/payments/"

# What a capture may cost: reduce (the log's creation time on a cache miss,
# then its events), the INSERT of append inside a savepoint (the test runs
# in a transaction: SAVEPOINT, INSERT, RELEASE), and the one-row load of the
# event just appended for its stored recorded_at.
CAPTURE_QUERIES = 6


@pytest.fixture
def reduces() -> Iterator[list[dict[str, Any]]]:
    """The ``reduced`` signals of Payment reductions, one per reduce."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: type[Any], **kwargs: Any) -> None:
        if sender is Payment:
            sent.append(kwargs)

    reduced.connect(receiver, weak=False)
    yield sent
    reduced.disconnect(receiver)


def create(client: Client, amount: int = 10_000, key: str | None = None) -> Any:
    headers = {} if key is None else {"Idempotency-Key": f'"{key}"'}
    return client.post(
        API, {"amount": amount}, content_type="application/json", headers=headers
    )


def new_payment(client: Client) -> str:
    response = create(client)
    assert response.status_code == 201
    payment_id: str = response.json()["id"]
    return payment_id


def post(client: Client, payment_id: str, what: str, key: str | None = None) -> Any:
    body = {
        "amount": 100,
        "statement_descriptor": "X",
        "currency": "EUR",
        "reference_number": "R",
    }
    headers = {} if key is None else {"Idempotency-Key": f'"{key}"'}
    return client.post(
        f"{API}{payment_id}/{what}/",
        body,
        content_type="application/json",
        headers=headers,
    )


def test_create_reduces_once(client: Client, reduces: list[dict[str, Any]]) -> None:
    response = create(client)
    assert response.status_code == 201
    assert response.json()["status"] == "authorized"
    # Reduced after create_log to ask the gateway; the decision it appends
    # is folded into that reduction, not reduced again.
    assert len(reduces) == 1


def test_replayed_create_reduces_once(
    client: Client, reduces: list[dict[str, Any]]
) -> None:
    first = create(client, key="order-1")
    reduces.clear()
    again = create(client, key="order-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(reduces) == 1


@pytest.mark.parametrize("what", ["captures", "refunds"])
def test_a_write_reduces_once(
    client: Client, reduces: list[dict[str, Any]], what: str
) -> None:
    payment_id = new_payment(client)
    assert post(client, payment_id, "captures").status_code == 201  # refundable
    reduces.clear()
    response = post(client, payment_id, what)
    assert response.status_code == 201, response.content
    assert len(reduces) == 1
    # The answer is what a fresh read says: the event as stored, the payment
    # with it folded in.
    body = response.json()
    events = client.get(f"{API}{payment_id}/events/").json()["events"]
    assert events[-1] == body["event"]
    assert client.get(f"{API}{payment_id}/").json() == body["payment"]
    assert response["ETag"] == client.get(f"{API}{payment_id}/")["ETag"]


def test_a_replayed_capture_reduces_once(
    client: Client, reduces: list[dict[str, Any]]
) -> None:
    payment_id = new_payment(client)
    first = post(client, payment_id, "captures", key="cap-1")
    assert first.status_code == 201
    reduces.clear()
    again = post(client, payment_id, "captures", key="cap-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert len(reduces) == 1


def test_a_capture_issues_a_bounded_number_of_queries(client: Client) -> None:
    payment_id = new_payment(client)
    with CaptureQueriesContext(connection) as queries:
        response = post(client, payment_id, "captures")
    assert response.status_code == 201
    assert len(queries) <= CAPTURE_QUERIES, [q["sql"] for q in queries]
