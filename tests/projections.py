"""Projections the tests run (listed in EVENTLOG_PROJECTIONS by the tests)."""

from __future__ import annotations

from typing import Any, ClassVar

from django_eventlog import FeedRecord
from django_eventlog.projections import Projection
from tests.domain import Deposited, Opened
from tests.readmodels.models import Balance, Handled


class Balances(Projection):
    """Each account's balance; every event recorded once in ``Handled``."""

    name = "tests.balances"
    kinds = ("account",)

    def handle(self, record: FeedRecord) -> None:
        Handled.objects.create(
            projection=self.name,
            log_id=record.log_id,
            index=record.index,
            position=record.position,
        )
        balance, _ = Balance.objects.get_or_create(log_id=record.log_id)
        # Per log, the feed gives the events in index order.
        assert record.index == balance.last_index + 1, (record, balance.last_index)
        if isinstance(record.event, Deposited):
            balance.balance += record.event.amount
        balance.last_index = record.index
        balance.save()

    def reset(self) -> None:
        Balance.objects.all().delete()
        Handled.objects.filter(projection=self.name).delete()


class Fragile(Projection):
    """Fails on any deposit of ``poison`` while it is set."""

    name = "tests.fragile"
    event_types = (Deposited,)
    poison: ClassVar[int | None] = 13
    batch_size = 4

    def handle(self, record: FeedRecord) -> None:
        assert isinstance(record.event, Deposited)
        if record.event.amount == type(self).poison:
            raise ValueError(f"poisoned deposit at index {record.index}")
        Handled.objects.create(
            projection=self.name,
            log_id=record.log_id,
            index=record.index,
            position=record.position,
        )

    def reset(self) -> None:
        Handled.objects.filter(projection=self.name).delete()


class Mailer(Projection):
    """A subscriber: handled outside the transaction, at least once."""

    name = "tests.mailer"
    event_types = ("tests.opened",)
    atomic = False
    sent: ClassVar[list[tuple[str, str]]] = []
    fail_on: ClassVar[str | None] = None

    def handle(self, record: FeedRecord) -> None:
        assert isinstance(record.event, Opened)
        if record.event.owner == type(self).fail_on:
            raise ConnectionError("mail server down")
        type(self).sent.append((record.position, record.event.owner))


ALL = [
    "tests.projections.Balances",
    "tests.projections.Fragile",
    "tests.projections.Mailer",
]


def configure(settings: Any) -> None:
    """Run the projections above (pytest-django's ``settings``), retrying at
    once, from their first state."""
    settings.EVENTLOG_PROJECTIONS = ALL
    settings.EVENTLOG_PROJECTION_RETRY_DELAY = 0.001
    Mailer.sent = []
    Mailer.fail_on = None
    Fragile.poison = 13
