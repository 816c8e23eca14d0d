"""The read path of reduce() and load(): plain SQL, first chunk, then a cursor."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from django_eventlog import ConcurrentAppend, Log, LogState, NeverCache
from django_eventlog.models import Event
from tests.conftest import ON_POSTGRESQL
from tests.domain import Account, Deposited, Opened


class Uncached(Account):
    """Account, never cached: every reduce reads the whole log."""

    aggregate_name = "tests.read_path.uncached"
    cache_policy = NeverCache()


def account_with(deposits: int) -> LogState:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    for amount in range(1, deposits + 1):
        state = Log.objects.append(state, Deposited(amount))
    return state


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("length", [1, 2, 3, 4, 6, 7, 9])
def test_every_event_once_in_order_around_chunk_boundaries(
    length: int, asynchronous: bool
) -> None:
    # Chunks of 3: the first chunk alone, exactly one, one and a bit, several.
    state = account_with(length - 1)
    reduce: Any = (
        async_to_sync(Log.objects.areduce) if asynchronous else Log.objects.reduce
    )
    with override_settings(EVENTLOG_CHUNK_SIZE=3):
        reduction = reduce(state.log_id, Uncached)
    assert reduction.aggregate.indices == list(range(length))
    assert reduction.aggregate.balance == sum(range(length))
    assert reduction.next_index == length


@pytest.mark.django_db(transaction=True)
def test_a_warm_reduce_with_few_new_events_is_one_query() -> None:
    state = account_with(5)
    Log.objects.reduce(state.log_id, Account)  # cached through index 5
    Log.objects.append(LogState(state.log_id, 6), Deposited(6))
    with CaptureQueriesContext(connection) as queries:
        reduction = Log.objects.reduce(state.log_id, Account)
    assert reduction.aggregate.indices == list(range(7))
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert "LIMIT" in queries[0]["sql"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("disable_server_side_cursors", [False, True])
def test_a_long_reduce_streams_the_rest_after_the_first_chunk(
    disable_server_side_cursors: bool,
) -> None:
    state = account_with(9)
    settings_dict = connection.settings_dict
    before = settings_dict.get("DISABLE_SERVER_SIDE_CURSORS", False)
    settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = disable_server_side_cursors
    try:
        with (
            override_settings(EVENTLOG_CHUNK_SIZE=4),
            CaptureQueriesContext(connection) as queries,
        ):
            reduction = Log.objects.reduce(state.log_id, Uncached)
    finally:
        settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = before
    assert reduction.aggregate.indices == list(range(10))
    reads = [q["sql"] for q in queries if "SELECT" in q["sql"]]
    # The log's creation time, the first chunk (LIMIT), then the rest.
    assert len(reads) == 3, reads
    assert "LIMIT" in reads[1]
    assert "LIMIT" not in reads[2]


@pytest.mark.django_db
def test_records_carry_what_the_orm_reads() -> None:
    state = account_with(3)
    orm = list(
        Event.objects.filter(log_id=state.log_id)
        .order_by("index")
        .values_list("index", "type", "recorded_at", "idempotency_key")
    )
    records = Log.objects.load(state.log_id)
    assert [(r.index, r.type, r.recorded_at, r.idempotency_key) for r in records] == orm
    assert all(r.recorded_at.utcoffset() is not None for r in records)
    reduced = Log.objects.reduce(state.log_id, Uncached)
    assert reduced.aggregate.indices == [index for index, *_ in orm]


@pytest.mark.django_db
@override_settings(TIME_ZONE="America/New_York")
def test_recorded_at_is_the_same_instant_whatever_the_time_zone() -> None:
    state = account_with(1)
    orm = Event.objects.get(log_id=state.log_id, index=1).recorded_at
    (record,) = Log.objects.load(state.log_id, start=1)
    assert record.recorded_at == orm


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_conflicting_append_is_explained_without_another_query() -> None:
    # PostgreSQL names the violated constraint: no query to find out which.
    state = account_with(1)
    Log.objects.append(state, Deposited(5))
    with CaptureQueriesContext(connection) as queries, pytest.raises(ConcurrentAppend):
        Log.objects.append(state, Deposited(6))
    assert [q["sql"].split()[0] for q in queries] == ["INSERT"]
    assert ON_POSTGRESQL
