"""create_log and append with several events: one statement, all or none.

The events take contiguous indices; an idempotency key names the whole batch
(stored on its first event), and a replay compares every event of it.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_eventlog import (
    ConcurrentAppend,
    Event,
    EventEncodingError,
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    Log,
    LogState,
)
from django_eventlog.validation import EVENTS_PER_WRITE_MAX
from tests.domain import Account, Deposited, Opened, open_account

pytestmark = pytest.mark.django_db


def rows(log_id: Any) -> list[tuple[int, str, Any, str | None]]:
    return list(
        Event.objects.filter(log_id=log_id)
        .order_by("index")
        .values_list("index", "type", "payload", "idempotency_key")
    )


def inserts(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if "INSERT" in q["sql"].upper()]


def test_append_writes_a_batch_in_one_statement() -> None:
    state = open_account(1)
    with CaptureQueriesContext(connection) as queries:
        after = Log.objects.append(state, [Deposited(2), Deposited(3), Deposited(4)])
    assert after == LogState(state.log_id, 5)
    assert len(inserts(queries)) == 1
    assert [(i, p) for i, _, p, _ in rows(state.log_id)][2:] == [
        (2, {"amount": 2}),
        (3, {"amount": 3}),
        (4, {"amount": 4}),
    ]
    assert Log.objects.reduce(state.log_id, Account).aggregate.indices == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_a_tuple_and_a_list_of_one_are_batches_too() -> None:
    state = open_account()
    state = Log.objects.append(state, (Deposited(1),))
    state = Log.objects.append(state, [Deposited(2)])
    assert state.next_index == 3


def test_create_log_writes_a_log_and_its_first_events_together() -> None:
    with CaptureQueriesContext(connection) as queries:
        state = Log.objects.create_log([Opened("bo"), Deposited(7)], kind="account")
    assert state.next_index == 2
    # PostgreSQL: one statement (a CTE); SQLite: the log, then the events.
    assert len(inserts(queries)) == (1 if connection.vendor == "postgresql" else 2)
    reduction = Log.objects.reduce(state.log_id, Account)
    assert (reduction.aggregate.owner, reduction.aggregate.balance) == ("bo", 7)


def test_a_batch_at_a_taken_index_writes_nothing() -> None:
    state = open_account()
    Log.objects.append(state, Deposited(1))
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(state, [Deposited(2), Deposited(3)])
    assert len(rows(state.log_id)) == 2


def test_a_batch_colliding_midway_writes_nothing() -> None:
    # Index 1 is free, index 2 is taken: the batch at 1 must not leave its
    # first event behind.
    state = open_account(10, 20)
    with transaction.atomic():
        with pytest.raises(ConcurrentAppend):
            Log.objects.append(LogState(state.log_id, 2), [Deposited(1), Deposited(2)])
        assert len(rows(state.log_id)) == 3
    assert [p for _, _, p, _ in rows(state.log_id)][1:] == [
        {"amount": 10},
        {"amount": 20},
    ]


def test_a_batch_with_an_unstorable_event_writes_nothing() -> None:
    state = open_account()
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(EventEncodingError),
    ):
        Log.objects.append(state, [Deposited(1), Deposited(float("nan"))])  # type: ignore[arg-type]
    assert queries.captured_queries == []
    assert len(rows(state.log_id)) == 1


@pytest.mark.parametrize("count", [0, EVENTS_PER_WRITE_MAX + 1])
def test_a_batch_holds_1_to_the_maximum(count: int) -> None:
    state = open_account()
    events = [Deposited(i) for i in range(count)]
    with pytest.raises(InvalidArgument, match=f"1 to {EVENTS_PER_WRITE_MAX}"):
        Log.objects.append(state, events)
    with pytest.raises(InvalidArgument, match=f"1 to {EVENTS_PER_WRITE_MAX}"):
        Log.objects.create_log(events, kind="account")
    assert len(rows(state.log_id)) == 1


def test_the_largest_batch_is_stored() -> None:
    state = open_account()
    events = [Deposited(i) for i in range(EVENTS_PER_WRITE_MAX)]
    after = Log.objects.append(state, events)
    assert after.next_index == 1 + EVENTS_PER_WRITE_MAX
    assert Log.objects.reduce(state.log_id, Account).aggregate.balance == sum(
        range(EVENTS_PER_WRITE_MAX)
    )


def test_a_batch_past_the_last_index_is_refused() -> None:
    state = open_account()
    with pytest.raises(InvalidArgument, match="last index"):
        Log.objects.append(LogState(state.log_id, 2**31 - 2), [Deposited(1)] * 3)


def test_the_key_names_the_batch_and_sits_on_its_first_event() -> None:
    state = open_account()
    Log.objects.append(state, [Deposited(1), Deposited(2)], idempotency_key="batch")
    assert [k for *_, k in rows(state.log_id)] == [None, "batch", None]


def test_a_replayed_batch_is_answered_with_its_first_event() -> None:
    state = open_account()
    batch = [Deposited(1), Deposited(2)]
    Log.objects.append(state, batch, idempotency_key="b")
    Log.objects.append(LogState(state.log_id, 3), Deposited(9))  # after it
    with pytest.raises(IdempotentReplay) as raised:
        Log.objects.append(LogState(state.log_id, 4), batch, idempotency_key="b")
    assert (raised.value.log_id, raised.value.event_index) == (state.log_id, 1)
    assert len(rows(state.log_id)) == 4


@pytest.mark.parametrize(
    "retry",
    [
        pytest.param([Deposited(1), Deposited(3)], id="another second event"),
        pytest.param([Deposited(1)], id="the first event only"),
        pytest.param([Deposited(1), Deposited(2), Deposited(9)], id="one more"),
        pytest.param([Deposited(2), Deposited(1)], id="another order"),
    ],
)
def test_a_batch_that_differs_in_any_way_conflicts(retry: list[Deposited]) -> None:
    state = open_account()
    Log.objects.append(state, [Deposited(1), Deposited(2)], idempotency_key="b")
    # Event 3 after the batch, so "one more" compares against a stored event.
    Log.objects.append(LogState(state.log_id, 3), Deposited(9))
    with pytest.raises(IdempotencyConflict) as raised:
        Log.objects.append(LogState(state.log_id, 4), retry, idempotency_key="b")
    assert raised.value.event_index == 1
    with pytest.raises(IdempotencyConflict):
        Log.objects.check_idempotency_key("b", retry, log_id=state.log_id)
    assert len(rows(state.log_id)) == 4


def test_a_single_event_keyed_append_replays_with_a_later_event_present() -> None:
    # The event after a single keyed event was written by another statement
    # (another recorded_at): the keyed one is a batch of one.
    state = open_account()
    Log.objects.append(state, Deposited(1), idempotency_key="one")
    Log.objects.append(LogState(state.log_id, 2), Deposited(1))
    with pytest.raises(IdempotentReplay):
        Log.objects.append(
            LogState(state.log_id, 3), Deposited(1), idempotency_key="one"
        )


def test_a_replayed_create_of_a_batch() -> None:
    events = [Opened("cy"), Deposited(5)]
    state = Log.objects.create_log(events, kind="account", idempotency_key="c")
    with pytest.raises(IdempotentReplay) as raised:
        Log.objects.create_log(events, kind="account", idempotency_key="c")
    assert (raised.value.log_id, raised.value.event_index) == (state.log_id, 0)
    with pytest.raises(IdempotencyConflict):
        Log.objects.create_log(events[:1], kind="account", idempotency_key="c")
    assert Log.objects.filter(kind="account").count() == 1


def test_the_async_twins_take_batches() -> None:
    from asgiref.sync import async_to_sync

    state = async_to_sync(Log.objects.acreate_log)(
        [Opened("dee"), Deposited(1)], kind="account"
    )
    state = async_to_sync(Log.objects.aappend)(state, [Deposited(2), Deposited(3)])
    assert state.next_index == 4
    assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 6
