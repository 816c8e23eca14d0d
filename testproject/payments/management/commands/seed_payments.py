"""Seed the demo database with payments of varied histories.

Every event it writes records the actor ``system:seed_payments`` and one
correlation id per run, so the admin answers who wrote the seeded events
and which run they came from.

The oldest third of the payments had their first capture written by an
older release, before ``payment.captured`` had a currency (schema version
1): the seed stores those as that release stored them (see
:func:`store_as_v1`), and everything reads them as version 2 in euros,
through the upcaster in :mod:`testproject.payments.events`.
"""

from __future__ import annotations

import random
import sys
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_eventlog import (
    ConcurrentAppend,
    Event,
    IdempotentReplay,
    Log,
    LogState,
    Reduction,
    current_metadata,
    event_context,
)
from testproject.payments.authorization import authorize
from testproject.payments.events import (
    CURRENCY_BEFORE_V2,
    Captured,
    Payment,
    PaymentRequest,
    Refunded,
    Requested,
)

#: Who the seeded events say wrote them.
ACTOR = "system:seed_payments"
#: The currencies of the payments captured by the current release.
CURRENCIES = ("EUR", "EUR", "USD", "GBP")


def store_as_v1(state: LogState, event: Captured) -> None:
    """Store ``event`` at ``state`` as a release before currencies stored it.

    That release wrote ``payment.captured`` without a currency and without
    a schema version (NULL: version 1). Today's classes cannot append such
    an event, so the row is written through the ``Event`` model, as it
    stood in the database: insert-only, at the index ``state`` says comes
    next (the unique (log, index) constraint refuses a taken one, and the
    database's triggers a gap), with the metadata of the enclosing
    ``event_context``. Only a capture in euros was possible then.
    """
    if event.currency != CURRENCY_BEFORE_V2:
        raise ValueError(
            f"Version 1 captures were in {CURRENCY_BEFORE_V2}, not {event.currency}."
        )
    metadata = current_metadata()
    Event.objects.create(
        log_id=state.log_id,
        index=state.next_index,
        type=Captured.type_name,
        payload={
            "amount": event.amount,
            "statement_descriptor": event.statement_descriptor,
        },
        actor=metadata.actor,
        correlation_id=metadata.correlation_id,
        causation_id=metadata.causation_id,
        extra=dict(metadata.extra) or None,
    )


class Command(BaseCommand):
    help = (
        "Create payments with captures, partial refunds, a concurrency conflict "
        "and an idempotent retry. Does nothing if this seed ran before, unless --force."
    )

    #: Captures this run stored at version 1 (store_as_v1).
    v1_captures = 0

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=300)
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--force", action="store_true")

    def handle(
        self, *args: Any, count: int, seed: int, force: bool, **options: Any
    ) -> None:
        # Who wrote the seeded events, and which run: one correlation id each.
        correlation_id = uuid.uuid4().hex
        with event_context(actor=ACTOR, correlation_id=correlation_id):
            self.seed(count, seed, force, correlation_id)

    def seed(self, count: int, seed: int, force: bool, correlation_id: str) -> None:
        if (
            not force
            and Event.objects.filter(idempotency_key=f"seed-{seed}-1").exists()
        ):
            self.stdout.write(
                f"Payments of seed {seed} exist already; not seeding again."
            )
            return
        rng = random.Random(seed)
        events = conflicts = replays = self.v1_captures = 0
        # A forced run seeds anew under keys of its own; others use the keys
        # that tell this seed ran.
        run = f"{seed}-{uuid.uuid4().hex[:8]}" if force else str(seed)
        for number in range(1, count + 1):
            key = f"seed-{run}-{number}"
            amount = rng.choice([1_500, 4_999, 10_000, 25_000, 120_000, 2_000_000])
            # The oldest third: first captured before currencies (version 1).
            events += self.payment(rng, key, amount, old=number <= count // 3)
            if number == 1:
                conflicts += self.conflict()
                replays += self.retry(key, amount)
            self.progress(number, count)
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {count} payments ({events} events); caught {conflicts} "
                f"concurrency conflict and answered {replays} idempotent retry."
            )
        )
        self.stdout.write(
            f"Wrote {self.v1_captures} captures as an older release would have: "
            f"payment.captured at schema version 1, without a currency "
            f"(read as version 2 in {CURRENCY_BEFORE_V2})."
        )
        self.stdout.write(f"Written by {ACTOR} under correlation id {correlation_id}.")

    def payment(self, rng: random.Random, key: str, amount: int, *, old: bool) -> int:
        """Create a payment; capture and refund parts of it by the payment's
        rules. The first capture of an ``old`` one is stored at version 1."""
        state = Log.objects.create_log(
            Requested(PaymentRequest(amount)), kind="payment", idempotency_key=key
        )
        # As the API does: a runner's PaymentAuthorizer may be first.
        reduction = authorize(state.log_id)
        currency = CURRENCY_BEFORE_V2 if old else rng.choice(CURRENCIES)
        for n in range(rng.randint(0, 3)):
            if not reduction.aggregate.capturable():
                break
            part = rng.randint(1, reduction.aggregate.capturable())
            capture = Captured(part, "DEMO SHOP", currency)
            reduction = self.write(reduction, capture, as_v1=old and n == 0)
        for n in range(rng.randint(0, 2)):
            if not reduction.aggregate.refundable():
                break
            part = rng.randint(1, max(1, reduction.aggregate.refundable() // 2))
            reduction = self.write(reduction, Refunded(part, f"R-{key}-{n}"))
        return reduction.next_index

    def write(
        self,
        reduction: Reduction[Payment],
        event: Captured | Refunded,
        *,
        as_v1: bool = False,
    ) -> Reduction[Payment]:
        """Append ``event``, which the payment's rules must allow, as the API
        does; a capture ``as_v1`` as an older release stored it."""
        reduction.aggregate.check(event)
        if as_v1 and isinstance(event, Captured):
            store_as_v1(reduction, event)
            self.v1_captures += 1
        else:
            Log.objects.append(reduction, event)
        return Log.objects.reduce(reduction.log_id, Payment)

    def conflict(self) -> int:
        """Two writers with one state: the second gets ConcurrentAppend."""
        state = Log.objects.create_log(Requested(PaymentRequest(500)), kind="payment")
        reduction = authorize(state.log_id)
        self.write(reduction, Captured(300, "DEMO SHOP", "EUR"))
        try:
            # The rules allow it on this (stale) state; the log refuses it.
            self.write(reduction, Captured(300, "DEMO SHOP", "EUR"))
        except ConcurrentAppend:
            return 1
        return 0

    def retry(self, key: str, amount: int) -> int:
        """A create retried with its key gets IdempotentReplay, not a new payment."""
        try:
            Log.objects.create_log(
                Requested(PaymentRequest(amount)), kind="payment", idempotency_key=key
            )
        except IdempotentReplay:
            return 1
        return 0

    def progress(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // total
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if sys.stdout.isatty():
            self.stdout.write(f"\r{bar}", ending="" if done < total else "\n")
        elif done == total or done % max(1, total // 5) == 0:
            self.stdout.write(bar)
