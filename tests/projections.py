"""Projections the tests run (listed in EVENTLOG_PROJECTIONS by the tests)."""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from django_eventlog import FeedRecord
from django_eventlog.projections import Projection
from tests.domain import Deposited, Opened
from tests.readmodels.models import Balance, Folded, Handled


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


class Folding(Projection):
    """Folds each account log into ``Folded`` (rows of its own ``name``) and
    records every event in ``Handled``, whose ids give the handling order.

    The base of the projections the runner processes run
    (tests/test_projection_runner.py, tests/reliability/test_read_side_proof.py);
    it is never listed itself.
    """

    kinds = ("account",)

    def handle(self, record: FeedRecord) -> None:
        Handled.objects.create(
            projection=self.name,
            log_id=record.log_id,
            index=record.index,
            position=record.position,
        )
        fold, _ = Folded.objects.get_or_create(
            projection=self.name, log_id=record.log_id
        )
        # Per log, the feed gives the events in index order: a failed
        # projection (state ``failed``) is how a violation shows.
        assert record.index == fold.last_index + 1, (record, fold.last_index)
        if isinstance(record.event, Deposited):
            fold.balance += record.event.amount
        fold.last_index = record.index
        fold.events += 1
        fold.save()

    def reset(self) -> None:
        Folded.objects.filter(projection=self.name).delete()
        Handled.objects.filter(projection=self.name).delete()


class FoldA(Folding):
    name = "tests.fold.a"


class FoldB(Folding):
    name = "tests.fold.b"


class FoldC(Folding):
    name = "tests.fold.c"


class Slow(Folding):
    """Takes ``EVENTLOG_TEST_SLOW_DELAY`` seconds (0.02) per event, in
    batches of 20: a long catch-up."""

    name = "tests.slow"
    batch_size = 20

    def handle(self, record: FeedRecord) -> None:
        time.sleep(float(os.environ.get("EVENTLOG_TEST_SLOW_DELAY", "0.02")))
        super().handle(record)


#: The file whose existence poisons :class:`Gated` (its path in this
#: environment variable), so that a test can cure a runner process.
POISON_FILE = "EVENTLOG_TEST_POISON_FILE"


class Gated(Folding):
    """Fails on any deposit of ``poison`` while the file named by the
    environment variable ``EVENTLOG_TEST_POISON_FILE`` exists."""

    name = "tests.gated"
    poison: ClassVar[int] = 13
    batch_size = 5

    def handle(self, record: FeedRecord) -> None:
        path = os.environ.get(POISON_FILE)
        if (
            isinstance(record.event, Deposited)
            and record.event.amount == type(self).poison
            and path
            and os.path.exists(path)
        ):
            raise ValueError(f"poisoned deposit at index {record.index}")
        super().handle(record)


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
