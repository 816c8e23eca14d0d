"""reduce() streams a log: its peak memory does not grow with the log's length.

The peak is what ``tracemalloc`` sees (memory allocated by Python code and
extension modules through Python's allocators; libpq's own buffers are not
counted) while ``Log.objects.reduce()`` folds a log into an aggregate that
keeps no per-event data, with ``EVENTLOG_CHUNK_SIZE`` pinned to its default
of 2000 rows.

Measured peaks (Python 3.11, Django 5.2, psycopg 3.3, 2000-row chunks): 1.11
MiB on SQLite and 1.13 MiB on PostgreSQL, the same for 10,000 and 100,000
events: one chunk of rows. ``PEAK_BOUND`` (8 MiB) leaves a margin of about 7x.
A reduce that fetched every row at once peaked at 40 MiB (SQLite) and 28 MiB
(PostgreSQL) for 100,000 events, 10x its figure for 10,000.
"""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from dataclasses import dataclass

import pytest
from django.test import override_settings
from django.utils import timezone

from django_eventlog import (
    Aggregate,
    Event,
    EventRecord,
    Log,
    LogState,
    NeverCache,
    Reduction,
)
from tests.bulk import bulk_create_events
from tests.domain import Deposited, Opened

MiB = 1024 * 1024
# Peak traced memory allowed for reducing a 100,000-event log.
PEAK_BOUND = 8 * MiB
# Allowed growth of the peak from 10,000 to 100,000 events: 1.5x plus this.
PEAK_SLACK = MiB // 4
CHUNK_SIZE = 2000


@dataclass
class Counting(Aggregate):
    """Counts events and sums deposits; keeps nothing per event."""

    # Every reduce here must fold the whole log, not start from a cached one.
    cache_policy = NeverCache()

    events: int = 0
    deposited: int = 0

    def apply(self, record: EventRecord) -> None:
        self.events += 1
        match record.event:
            case Deposited(amount=amount):
                self.deposited += amount


def make_log(length: int) -> uuid.UUID:
    """Create a log of ``length`` events: Opened, then deposits of 1."""
    state: LogState = Log.objects.create_log(Opened(owner="carol"), kind="account")
    recorded_at = timezone.now()
    bulk_create_events(
        Event(
            log_id=state.log_id,
            index=index,
            type=Deposited.type_name,
            payload={"amount": 1},
            recorded_at=recorded_at,
        )
        for index in range(1, length)
    )
    return state.log_id


def reduce_traced(log_id: uuid.UUID) -> tuple[Reduction[Counting], int]:
    """Reduce the log; return the reduction and the peak traced memory."""
    gc.collect()
    tracemalloc.start()
    try:
        reduction: Reduction[Counting] = Log.objects.reduce(log_id, Counting)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return reduction, peak


@pytest.mark.django_db
@pytest.mark.scale
@override_settings(EVENTLOG_CHUNK_SIZE=CHUNK_SIZE)
def test_reduce_peak_memory_does_not_grow_with_log_length() -> None:
    short_log = make_log(10_000)
    long_log = make_log(100_000)
    # Warm-up: the first reduce fills import, query and decoder caches.
    Log.objects.reduce(short_log, Counting)

    short, short_peak = reduce_traced(short_log)
    long, long_peak = reduce_traced(long_log)

    assert (short.aggregate.events, short.aggregate.deposited) == (10_000, 9_999)
    assert short.through_index == 9_999
    assert (long.aggregate.events, long.aggregate.deposited) == (100_000, 99_999)
    assert long.through_index == 99_999
    assert long_peak < PEAK_BOUND, f"peak {long_peak / MiB:.2f} MiB"
    assert long_peak < 1.5 * short_peak + PEAK_SLACK, (
        f"peak {short_peak / MiB:.2f} MiB for 10,000 events but "
        f"{long_peak / MiB:.2f} MiB for 100,000"
    )
