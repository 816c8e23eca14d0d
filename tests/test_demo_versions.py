"""The demo's schema evolution (issue 18): ``payment.captured`` is at version
2, with a currency; the seed stores some captures as the release before
stored them (version 1, no currency), and reduce, the API, the read model
and the admin read them as version 2 in euros, through the upcaster."""

from __future__ import annotations

import json
import re
import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client

from django_eventlog import Log, LogState, event_context
from django_eventlog.models import Event
from django_eventlog.projections import catch_up
from testproject.payments.events import (
    CURRENCY_BEFORE_V2,
    Authorized,
    Captured,
    Payment,
    PaymentRequest,
    Requested,
)
from testproject.payments.management.commands.seed_payments import store_as_v1
from testproject.payments.models import PaymentSummary
from tests.test_admin import log_url
from tests.test_admin_versions import rows
from tests.versions import stored_versions

pytestmark = pytest.mark.django_db

API = "/api/payments/"
CAPTURED = "payment.captured"


def seed(count: int = 30) -> tuple[str, int]:
    """Run the seed; return its output and the v1 captures it says it wrote."""
    out = StringIO()
    call_command("seed_payments", count=count, stdout=out, no_color=True)
    text = out.getvalue()
    match = re.search(r"Wrote (\d+) captures as an older release would have", text)
    assert match is not None, text
    return text, int(match[1])


def captures(version: int | None) -> list[Event]:
    return list(Event.objects.filter(type=CAPTURED, schema_version=version))


def test_the_seed_stores_some_captures_at_version_1_without_a_currency() -> None:
    text, written = seed()
    v1 = captures(None)
    assert written == len(v1) > 0
    assert "payment.captured at schema version 1" in text
    for event in v1:
        assert set(event.payload) == {"amount", "statement_descriptor"}
        # Written under the seed's event_context, as its appends are.
        assert event.actor == "system:seed_payments"
        assert event.correlation_id is not None
    v2 = captures(2)
    assert v2
    assert all(re.fullmatch(r"[A-Z]{3}", e.payload["currency"]) for e in v2)
    assert (
        not Event.objects.filter(type=CAPTURED)
        .exclude(schema_version__isnull=True)
        .exclude(schema_version=2)
    )
    assert not Event.objects.filter(schema_version=1).exists()
    # Other types were never versioned: NULL throughout.
    assert not Event.objects.exclude(type=CAPTURED).filter(schema_version__isnull=False)
    # Every log still reads whole, v1 captures included.
    out = StringIO()
    call_command("eventlog_verify", stdout=out, no_color=True)
    assert out.getvalue().splitlines()[-1].endswith(": 0 problems.")
    # eventlog_verify counts them apart: version 1, read as version 2.
    (counted,) = re.findall(
        r"^payment\.captured +1 +(\d+) +0 +\S*Captured version 2$",
        out.getvalue(),
        re.MULTILINE,
    )
    assert int(counted) == written


def test_seeded_v1_captures_reduce_load_and_list_in_euros(client: Client) -> None:
    seed()
    old_logs = {e.log_id for e in captures(None)}
    for log_id in old_logs:
        payment = Log.objects.reduce(log_id, Payment).aggregate
        assert payment.currency == CURRENCY_BEFORE_V2 == "EUR"
        stored = {
            e.index: e.payload
            for e in Event.objects.filter(log_id=log_id, type=CAPTURED)
        }
        for record in Log.objects.load(log_id):
            if record.index in stored:
                assert record.event == Captured(
                    stored[record.index]["amount"],
                    stored[record.index]["statement_descriptor"],
                    "EUR",
                )
        assert payment.amount_captured == sum(p["amount"] for p in stored.values())

        # The API's payment and its events: version 2, in euros.
        body = client.get(f"{API}{log_id}/").json()
        assert body["currency"] == "EUR"
        assert body["amount_captured"] == payment.amount_captured
        events = client.get(f"{API}{log_id}/events/").json()["events"]
        shown = [e for e in events if e["type"] == CAPTURED]
        assert len(shown) == len(stored)
        for event in shown:
            assert event["event"] == {**stored[event["index"]], "currency": "EUR"}

    # The read model, from the feed, read through the same upcaster.
    catch_up()
    summaries = PaymentSummary.objects.filter(payment_id__in=old_logs)
    assert len(summaries) == len(old_logs)
    assert {s.currency for s in summaries} == {"EUR"}
    listed = client.get(f"{API}?limit=200").json()["payments"]
    assert {p["currency"] for p in listed if uuid.UUID(p["id"]) in old_logs} == {"EUR"}


def test_the_admin_shows_a_seeded_v1_capture_as_stored_and_as_read(
    admin_client: Client,
) -> None:
    seed()
    event = captures(None)[0]
    (row,) = [r for r in rows(admin_client.get(log_url(event.log_id))) if r.note]
    assert row.index == event.index
    assert row.note == "stored at v1, read as v2"
    assert json.loads(row.stored) == event.payload
    assert row.read_now is not None
    assert json.loads(row.read_now) == {**event.payload, "currency": "EUR"}


def capture(client: Client, payment_id: str, currency: str, amount: int = 100) -> Any:
    return client.post(
        f"{API}{payment_id}/captures/",
        {"amount": amount, "statement_descriptor": "SHOP", "currency": currency},
        content_type="application/json",
    )


def test_a_v2_capture_round_trips_with_its_currency(client: Client) -> None:
    payment_id = client.post(
        API, {"amount": 1_000}, content_type="application/json"
    ).json()["id"]
    response = capture(client, payment_id, "USD")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["event"]["event"] == {
        "amount": 100,
        "statement_descriptor": "SHOP",
        "currency": "USD",
    }
    assert body["payment"]["currency"] == "USD"
    row = Event.objects.get(log_id=payment_id, type=CAPTURED)
    assert row.schema_version == 2
    assert row.payload == {
        "amount": 100,
        "statement_descriptor": "SHOP",
        "currency": "USD",
    }
    (record,) = Log.objects.load(payment_id, start=2)
    assert record.event == Captured(100, "SHOP", "USD")
    assert client.get(f"{API}{payment_id}/events/?start=2").json()["events"] == [
        body["event"]
    ]
    # The payment's captures keep its currency.
    refused = capture(client, payment_id, "EUR")
    assert refused.status_code == 422
    assert refused.json()["detail"] == "The payment is captured in USD."
    assert capture(client, payment_id, "USD").status_code == 201
    assert client.get(f"{API}{payment_id}/").json()["amount_captured"] == 200


def test_after_a_v1_capture_the_payment_takes_euros_only(client: Client) -> None:
    state = Log.objects.create_log(Requested(PaymentRequest(1_000)), kind="payment")
    reduction = Log.objects.reduce(
        Log.objects.append(state, Authorized(1_000, "A")).log_id, Payment
    )
    store_as_v1(reduction, Captured(300, "OLD", "EUR"))
    payment_id = str(state.log_id)
    refused = capture(client, payment_id, "GBP")
    assert refused.status_code == 422
    assert refused.json()["detail"] == "The payment is captured in EUR."
    response = capture(client, payment_id, "EUR")
    assert response.status_code == 201
    assert response.json()["payment"]["amount_captured"] == 400
    assert stored_versions(state.log_id) == [None, None, None, 2]


def test_store_as_v1_writes_only_what_the_old_release_could() -> None:
    state = Log.objects.create_log(Requested(PaymentRequest(1_000)), kind="payment")
    state = Log.objects.append(state, Authorized(1_000, "A"))
    with pytest.raises(ValueError, match="Version 1 captures were in EUR, not USD"):
        store_as_v1(state, Captured(1, "X", "USD"))
    with event_context(actor="user:7", correlation_id="req-1", k="v"):
        store_as_v1(state, Captured(1, "X", "EUR"))
    row = Event.objects.get(log_id=state.log_id, index=2)
    assert (row.type, row.schema_version, row.payload) == (
        CAPTURED,
        None,
        {"amount": 1, "statement_descriptor": "X"},
    )
    assert (row.actor, row.correlation_id, row.extra) == ("user:7", "req-1", {"k": "v"})
    # Insert-only, at the next index: a stale state is refused, as a gap is.
    for stale in (state, LogState(state.log_id, 5)):
        with pytest.raises(IntegrityError), transaction.atomic():
            store_as_v1(stale, Captured(1, "X", "EUR"))
    assert Event.objects.filter(log_id=state.log_id).count() == 3
