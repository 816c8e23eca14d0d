"""django-eventlog through its public API, as a view would call it.

Import this module only after ``django.setup()``: it defines an event class
and an aggregate. The cache is the project's default cache (Redis when
``REDIS_URL`` is set, as ``benchmarks/eventstores.py`` arranges).
"""

from __future__ import annotations

import dataclasses
import uuid

from _shared import NOTE, Conflict, Folded
from django.core.cache import cache
from django.db import connection

from django_eventlog import (
    Aggregate,
    ConcurrentAppend,
    DomainEvent,
    EventRecord,
    Log,
    LogState,
)
from django_eventlog.caching import cache_key
from django_eventlog.events import encode_event
from django_eventlog.models import Event


class Credited(DomainEvent):
    type_name = "bench.credited"
    amount: int
    note: str


@dataclasses.dataclass
class Account(Aggregate):
    aggregate_name = "bench.account"
    balance: int = 0
    count: int = 0

    def apply(self, record: EventRecord) -> None:
        event = record.event
        if isinstance(event, Credited):
            self.balance += event.amount
        self.count += 1


class OursStore:
    name = "django-eventlog"

    def create(self, amount: int) -> LogState:
        return Log.objects.create_log(Credited(amount, NOTE), kind="account")

    def append(self, handle: LogState, amount: int) -> LogState:
        try:
            return Log.objects.append(handle, Credited(amount, NOTE))
        except ConcurrentAppend:
            raise Conflict(handle.log_id) from None

    def reduce_handle(self, log_id: uuid.UUID, known: LogState) -> LogState:
        """After a conflict: reduce again (the cache holds the older events)."""
        return Log.objects.reduce(log_id, Account)

    def state(self, log_id: uuid.UUID) -> LogState:
        """After a conflict: the log's next index, no aggregate."""
        return Log.objects.state(log_id)

    def reduce(self, log_id: uuid.UUID) -> Folded:
        reduction = Log.objects.reduce(log_id, Account)
        account = reduction.aggregate
        return Folded(account.balance, account.count, reduction.next_index)

    def forget(self, log_id: uuid.UUID) -> None:
        """Delete the cached reduction: the next reduce is cold."""
        cache.delete(cache_key(Account, log_id))

    def page(self, log_id: uuid.UUID, start: int, limit: int) -> list[tuple[int, int]]:
        records = Log.objects.load(log_id, start=start, limit=limit)
        return [
            (record.index, record.event.amount)
            for record in records
            if isinstance(record.event, Credited)
        ]

    def fill(self, count: int) -> uuid.UUID:
        """A log of ``count`` events, written server-side in one statement."""
        log_id = Log.objects.create_log(Credited(1, NOTE), kind="account").log_id
        table = Event._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (log_id, index, type, payload, recorded_at) "
                "SELECT %s, i, %s, %s::jsonb, now() FROM generate_series(1, %s) AS i",
                [log_id, Credited.type_name, _encoded(1), count - 1],
            )
        return log_id

    def check_log(self, log_id: uuid.UUID) -> tuple[int, int]:
        events = Event.objects.filter(log_id=log_id)
        last = events.order_by("-index").values_list("index", flat=True).first()
        return events.count(), (-1 if last is None else last) + 1

    def close(self) -> None:
        connection.close()


def _encoded(amount: int) -> str:
    return encode_event(Credited(amount, NOTE))
