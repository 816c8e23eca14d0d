"""Walk through the payment example of the eventlogs crate, printing each step.

Every event it writes records the actor ``system:payment_walkthrough`` and
one correlation id per run (printed first, and in each event's JSON).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand

from django_eventlog import IdempotentReplay, Log, Reduction, event_context
from django_eventlog.signals import reduced
from testproject.payments.events import (
    Authorized,
    Captured,
    Payment,
    PaymentRefused,
    PaymentRequest,
    Refunded,
    Requested,
)

#: Who the walk-through's events say wrote them.
ACTOR = "system:payment_walkthrough"


class Command(BaseCommand):
    help = (
        "Create, authorize, capture and refund a payment by the payment's "
        "rules (those of the API), printing each step."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        correlation_id = uuid.uuid4().hex
        self.step(f"Writing as {ACTOR} under correlation id {correlation_id}")
        reduced.connect(self.on_reduced, sender=Payment)
        try:
            with event_context(actor=ACTOR, correlation_id=correlation_id):
                self.walk_through()
        finally:
            reduced.disconnect(self.on_reduced, sender=Payment)

    def on_reduced(
        self, sender: type[Payment], cache: str, events_applied: int, **kwargs: Any
    ) -> None:
        source = "the cached reduction" if cache == "hit" else "the database"
        self.stdout.write(
            f"  reduce: started from {source} (cache {cache}), "
            f"applied {events_applied} event(s)"
        )

    def walk_through(self) -> None:
        key = f"demo-{uuid.uuid4()}"

        state = Log.objects.create_log(
            Requested(PaymentRequest(amount_requested=10_000)),
            kind="payment",
            idempotency_key=key,
        )
        self.step(f"Created payment log {state.log_id} (idempotency key {key})")

        try:
            Log.objects.create_log(
                Requested(PaymentRequest(amount_requested=10_000)),
                kind="payment",
                idempotency_key=key,
            )
        except IdempotentReplay as replay:
            self.step(
                "Retried the create with the same key: IdempotentReplay: "
                f"log {replay.log_id}, index {replay.event_index}"
            )

        state = Log.objects.append(state, Authorized(10_000, "xyz123"))
        self.step(f"Authorized 10000; next index {state.next_index}")

        reduction = Log.objects.reduce(state.log_id, Payment)
        self.report(reduction.aggregate)

        self.write(reduction, Captured(4_000, "Widgets", "EUR"))
        self.step("Captured 4000 EUR, passing the reduction as the log state")

        reduction = Log.objects.reduce(state.log_id, Payment)
        self.report(reduction.aggregate)

        # The crate's example refunds 6000 here; the rules refuse a refund
        # beyond what was captured, as the API does.
        try:
            self.write(reduction, Refunded(6_000, "REF-1"))
        except PaymentRefused as refused:
            self.step(f"Refund of 6000 refused by the rules: {refused.reason}")

        self.write(reduction, Refunded(4_000, "REF-1"))
        self.step("Refunded 4000")

        reduction = Log.objects.reduce(state.log_id, Payment)
        self.report(reduction.aggregate)

        reduction = Log.objects.reduce(state.log_id, Payment)
        self.step(
            f"Reduced again with nothing new: through index {reduction.through_index}"
        )

        records = Log.objects.load(state.log_id, start=0, limit=100)
        self.step(f"Loaded {len(records)} events as JSON:")
        self.stdout.write(json.dumps([r.as_dict() for r in records], indent=2))

    def write(self, reduction: Reduction[Payment], event: Captured | Refunded) -> None:
        """Append ``event`` if the payment's rules allow it, as the API does."""
        reduction.aggregate.check(event)
        Log.objects.append(reduction, event)

    def step(self, message: str) -> None:
        self.stdout.write(self.style.SUCCESS("* ") + message)

    def report(self, payment: Payment) -> None:
        self.stdout.write(
            f"  reduced: approved {payment.amount_approved}, "
            f"captured {payment.amount_captured}, "
            f"refunded {payment.amount_refunded}; "
            f"capturable {payment.capturable()}, refundable {payment.refundable()}"
        )
