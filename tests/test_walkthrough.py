"""The eventlogs crate's payment example, end to end, with its figures."""

from __future__ import annotations

import json
import re
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from django_eventlog import IdempotentReplay, Log
from testproject.payments.events import (
    Authorized,
    Captured,
    Payment,
    PaymentRefused,
    PaymentRequest,
    Refunded,
    Requested,
)

pytestmark = pytest.mark.django_db


def test_payment_walkthrough() -> None:
    key = str(uuid.uuid4())
    state = Log.objects.create_log(
        Requested(PaymentRequest(amount_requested=10_000)),
        kind="payment",
        idempotency_key=key,
    )
    state = Log.objects.append(state, Authorized(10_000, "xyz123"))
    reduction = Log.objects.reduce(state.log_id, Payment)
    assert reduction.aggregate.amount_approved == 10_000
    assert reduction.aggregate.capturable() == 10_000
    assert reduction.aggregate.refundable() == 0

    capture = Captured(4_000, "Widgets", "EUR")
    reduction.aggregate.check(capture)
    Log.objects.append(reduction, capture)
    reduction = Log.objects.reduce(state.log_id, Payment)
    assert reduction.aggregate.amount_captured == 4_000
    assert reduction.aggregate.capturable() == 6_000
    assert reduction.aggregate.refundable() == 4_000

    # The crate's example refunds 6000 of the 4000 captured; the rules, the
    # API's, refuse it.
    with pytest.raises(PaymentRefused, match="Only 4000 can be refunded"):
        reduction.aggregate.check(Refunded(6_000, "REF-1"))
    refund = Refunded(4_000, "REF-1")
    reduction.aggregate.check(refund)
    Log.objects.append(reduction, refund)
    payment = Log.objects.reduce(state.log_id, Payment).aggregate
    assert payment.request == PaymentRequest(10_000)
    assert payment.amount_approved == 10_000
    assert payment.amount_captured == 4_000
    assert payment.currency == "EUR"
    assert payment.amount_refunded == 4_000
    assert payment.capturable() == 6_000
    assert payment.refundable() == 0

    records = Log.objects.load(state.log_id, start=0, limit=100)
    assert len(records) == 4
    assert [r.type for r in records] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
        "payment.refunded",
    ]

    with pytest.raises(IdempotentReplay) as info:
        Log.objects.create_log(
            Requested(PaymentRequest(amount_requested=10_000)),
            kind="payment",
            idempotency_key=key,
        )
    assert info.value.log_id == state.log_id


@pytest.mark.django_db(transaction=True)  # cache entries are written on commit
def test_the_walkthrough_command_prints_each_step() -> None:
    out = StringIO()
    call_command("payment_walkthrough", stdout=out, no_color=True)
    text = out.getvalue()
    log_id = re.search(r"Created payment log ([0-9a-f-]{36})", text)
    assert log_id is not None
    assert "Refund of 6000 refused by the rules: Only 4000 can be refunded." in text
    assert (
        "approved 10000, captured 4000, refunded 4000; capturable 6000, refundable 0"
    ) in text
    assert f"IdempotentReplay: log {log_id[1]}, index 0" in text
    assert re.findall(r"\(cache (\w+)\), applied (\d+) event", text) == [
        ("miss", "2"),
        ("hit", "1"),
        ("hit", "1"),
        ("hit", "0"),
    ]
    assert "Reduced again with nothing new: through index 3" in text
    events = json.loads(text[text.index("[") :])
    assert [e["index"] for e in events] == [0, 1, 2, 3]
    assert events[2]["event"] == {
        "amount": 4000,
        "statement_descriptor": "Widgets",
        "currency": "EUR",
    }
    assert events[3]["event"] == {"amount": 4000, "reference_number": "REF-1"}
    reduced = Log.objects.reduce(log_id[1], Payment).aggregate
    # The walk-through follows the API's rules: never more refunded than
    # captured, never more captured than approved.
    assert reduced.amount_refunded <= reduced.amount_captured
    assert reduced.amount_captured <= reduced.amount_approved
    assert reduced.refundable() == 0
