"""Many events written at once, in the test's one transaction.

The no-gap trigger looks up the event before each row with a plan it keeps
for the session. After the tests before, autovacuum may have counted the
events table (nearly) empty, and the plan then reads the whole table for
each row: a fill of many events in one transaction, which autovacuum cannot
see, grows as the square of its length (30,000 events: 71 s instead of 3).
:func:`bulk_create_events` analyzes the table after its first batch, which
counts this transaction's rows and makes the trigger plan again.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from django.db import connection

from django_eventlog.models import Event

BATCH = 5000


def bulk_create_events(events: Iterable[Event]) -> None:
    """Insert ``events``, in the order given, ``BATCH`` rows a statement."""
    rows = iter(events)
    first = True
    while batch := list(islice(rows, BATCH)):
        Event.objects.bulk_create(batch)
        if first and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE django_eventlog_event")
        first = False
