"""The demo's read model: PaymentSummary, kept by the PaymentSummaries
projection, listed by GET /api/payments/ page by page; and /api/feed/."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from django_eventlog import Event, Log
from django_eventlog.projections import catch_up
from testproject.payments import gateway
from testproject.payments.events import Payment, PaymentRequest, Requested
from testproject.payments.models import PaymentSummary
from testproject.payments.projections import PaymentSummaries

pytestmark = pytest.mark.django_db

API = "/api/payments/"
PROBLEM = "application/problem+json"


def post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 201, response.content
    answer: dict[str, Any] = response.json()
    return answer


def some_payments(client: Client) -> list[str]:
    """Payments of every status and history; their ids, in creation order."""
    ids = []
    for n, amount in enumerate([1_000, 2_500, gateway.LIMIT + 1, 9_000, 40, 777]):
        payment = post(client, API, {"amount": amount})
        ids.append(payment["id"])
        if payment["status"] == "authorized" and n % 2:
            post(
                client,
                f"{API}{payment['id']}/captures/",
                {
                    "amount": amount // 2,
                    "statement_descriptor": "SHOP",
                    "currency": "GBP",
                },
            )
            post(
                client,
                f"{API}{payment['id']}/refunds/",
                {"amount": 1, "reference_number": f"R{n}"},
            )
    # One whose create died before the gateway's decision.
    state = Log.objects.create_log(Requested(PaymentRequest(5_000)), kind="payment")
    ids.append(str(state.log_id))
    return ids


def reduced(payment_id: str) -> dict[str, Any]:
    """What the list should say of a payment, from its log."""
    reduction = Log.objects.reduce(payment_id, Payment)
    payment = reduction.aggregate
    assert payment.request is not None
    return {
        "id": payment_id,
        "status": payment.status(),
        "amount_requested": payment.request.amount_requested,
        "amount_approved": payment.amount_approved,
        "amount_captured": payment.amount_captured,
        "amount_refunded": payment.amount_refunded,
        "currency": payment.currency,
        "events": reduction.next_index,
    }


def listed(client: Client, query: str = "") -> list[dict[str, Any]]:
    """Every payment the list shows, following its next links."""
    found: list[dict[str, Any]] = []
    url: str | None = f"{API}{query}"
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        found.extend(body["payments"])
        url = body["next"]
        assert len(found) <= 1000, "the next links do not end"
    return found


def comparable(item: dict[str, Any]) -> dict[str, Any]:
    """The members of a listed payment that ``reduced`` computes."""
    return {key: item[key] for key in REDUCED}


REDUCED = (
    "id",
    "status",
    "amount_requested",
    "amount_approved",
    "amount_captured",
    "amount_refunded",
    "currency",
    "events",
)


def test_the_list_shows_the_payments_as_their_logs_reduce(client: Client) -> None:
    ids = some_payments(client)
    assert listed(client) == []  # nothing handled yet: the list lags
    events = Event.objects.filter(log__kind="payment").count()
    # In the setting's order: the summaries first, then the authorizer.
    assert catch_up() == {
        "payments.summaries": events,
        "payments.authorizer": len(ids),
    }
    items = listed(client)
    assert [item["id"] for item in items] == ids
    # The subscriber authorized the payment left requested; the read model
    # has that decision too (caught up in the same call, or the next).
    catch_up()
    items = listed(client)
    assert [comparable(i) for i in items] == [reduced(i) for i in ids]
    assert {i["status"] for i in items} == {"authorized", "declined"}
    first = items[0]
    assert first["links"]["self"] == f"{API}{first['id']}/"
    assert datetime.datetime.fromisoformat(first["created_at"]) <= (
        datetime.datetime.fromisoformat(first["updated_at"])
    )


@pytest.mark.parametrize("status", ["authorized", "declined", "requested"])
def test_the_list_filters_by_status(client: Client, status: str) -> None:
    ids = some_payments(client)
    catch_up(["payments.summaries"])  # not the authorizer: one stays requested
    expected = [i for i in ids if reduced(i)["status"] == status]
    assert expected, status
    items = listed(client, f"?status={status}&limit=2")
    assert [i["id"] for i in items] == expected
    assert {i["status"] for i in items} == {status}


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 200])
def test_pages_visit_every_payment_once(client: Client, limit: int) -> None:
    ids = some_payments(client)
    catch_up(["payments.summaries"])
    # Ties on created_at are broken by the payment id.
    same = PaymentSummary.objects.order_by("created_at").first()
    assert same is not None
    PaymentSummary.objects.filter(payment_id__in=ids[1:4]).update(
        created_at=same.created_at
    )
    response = client.get(f"{API}?limit={limit}")
    pages = 1
    seen = [i["id"] for i in response.json()["payments"]]
    while (url := response.json()["next"]) is not None:
        assert f"limit={limit}" in url
        response = client.get(url)
        assert 1 <= len(response.json()["payments"]) <= limit
        seen += [i["id"] for i in response.json()["payments"]]
        pages += 1
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    assert pages == -(-len(ids) // limit)


@pytest.mark.parametrize(
    "query",
    [
        "?status=captured",
        "?status=authorized&status=declined",
        "?limit=0",
        "?limit=201",
        "?limit=x",
        "?limit=-1",
        "?after=nope",
        "?after=1.2",
        f"?after=1.{'g' * 32}",
    ],
)
def test_bad_list_parameters_are_400(client: Client, query: str) -> None:
    response = client.get(f"{API}{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == PROBLEM
    assert json.loads(response.content)["status"] == 400


def test_a_rebuild_makes_the_same_read_model(client: Client) -> None:
    ids = some_payments(client)
    catch_up()
    catch_up()
    before = listed(client)
    assert len(before) == len(ids)
    PaymentSummaries().reset()
    assert listed(client) == []
    call_command("eventlog_projections", "rebuild", "payments.summaries", verbosity=0)
    assert listed(client) == before


def test_the_feed_serves_payment_events_to_the_admin_user(client: Client) -> None:
    payment = post(client, API, {"amount": 1_500})
    response = client.get("/api/feed/")
    assert response.status_code == 403
    assert response["Content-Type"] == PROBLEM

    admin = get_user_model().objects.create_superuser("admin", password=None)
    client.force_login(admin)
    body = client.get("/api/feed/?limit=1").json()
    assert [(e["log_id"], e["index"]) for e in body["events"]] == [(payment["id"], 0)]
    body = client.get(body["next"]).json()
    assert [(e["log_id"], e["type"]) for e in body["events"]] == [
        (payment["id"], "payment.authorized")
    ]
    assert client.get("/api/feed/?kind=account").status_code == 400
