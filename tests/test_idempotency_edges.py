"""A used idempotency key always wins, even when no row is inserted (issue 13).

An append whose state is ahead of the log, or whose log is missing, inserts
no row and violates no constraint: the key must still be consulted. Runs on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_eventlog import (
    ConcurrentAppend,
    IdempotencyConflict,
    IdempotentReplay,
    LogNotFound,
    LogState,
)
from django_eventlog.models import Event, Log
from tests.domain import Deposited, Opened

pytestmark = pytest.mark.django_db


def account_with_keyed_deposit(key: str) -> LogState:
    """An account whose event 1 is ``Deposited(10)`` under ``key``."""
    state = Log.objects.create_log(Opened("ada"), kind="account")
    return Log.objects.append(state, Deposited(10), idempotency_key=key)


def indices(log_id: uuid.UUID) -> list[int]:
    return list(
        Event.objects.filter(log_id=log_id)
        .order_by("index")
        .values_list("index", flat=True)
    )


@pytest.mark.parametrize("ahead_by", [1, 5])
def test_a_state_ahead_of_the_log_with_a_used_key_is_a_replay(ahead_by: int) -> None:
    state = account_with_keyed_deposit("dep-ahead")
    ahead = LogState(state.log_id, state.next_index + ahead_by)
    with pytest.raises(IdempotentReplay) as info:
        Log.objects.append(ahead, Deposited(10), idempotency_key="dep-ahead")
    assert (info.value.idempotency_key, info.value.log_id, info.value.event_index) == (
        "dep-ahead",
        state.log_id,
        1,
    )
    assert indices(state.log_id) == [0, 1]


def test_a_state_ahead_of_the_log_with_a_used_key_for_another_event_conflicts() -> None:
    state = account_with_keyed_deposit("dep-ahead-2")
    ahead = LogState(state.log_id, state.next_index + 3)
    with pytest.raises(IdempotencyConflict) as info:
        Log.objects.append(ahead, Deposited(99), idempotency_key="dep-ahead-2")
    assert (info.value.log_id, info.value.event_index) == (state.log_id, 1)
    assert indices(state.log_id) == [0, 1]


@pytest.mark.parametrize("index", [0, 1, 7])
def test_a_missing_log_with_a_used_key_conflicts_naming_the_original(
    index: int,
) -> None:
    # The same event, but the key was used on another log: not this request.
    state = account_with_keyed_deposit("dep-missing")
    missing = uuid.uuid4()
    with pytest.raises(IdempotencyConflict) as info:
        Log.objects.append(
            LogState(missing, index), Deposited(10), idempotency_key="dep-missing"
        )
    assert (info.value.log_id, info.value.event_index) == (state.log_id, 1)
    assert not Event.objects.filter(log_id=missing).exists()


@pytest.mark.parametrize("index", [0, 3])
def test_a_missing_log_with_a_used_key_for_another_type_conflicts(index: int) -> None:
    state = account_with_keyed_deposit("dep-missing-2")
    missing = uuid.uuid4()
    with pytest.raises(IdempotencyConflict) as info:
        Log.objects.append(
            LogState(missing, index), Opened("x"), idempotency_key="dep-missing-2"
        )
    assert (info.value.log_id, info.value.event_index) == (state.log_id, 1)
    assert not Log.objects.filter(pk=missing).exists()


def test_a_fresh_key_still_gets_log_not_found_and_concurrent_append() -> None:
    state = account_with_keyed_deposit("dep-used")
    with pytest.raises(LogNotFound):
        Log.objects.append(
            LogState(uuid.uuid4(), 2), Deposited(1), idempotency_key="fresh-1"
        )
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(
            LogState(state.log_id, 9), Deposited(1), idempotency_key="fresh-2"
        )
    assert indices(state.log_id) == [0, 1]


def test_create_log_with_an_existing_log_id_and_a_key_used_by_an_append() -> None:
    # The key was used by an append in that very log, not by a create: the
    # same event, but another request. The key still wins over the log id.
    state = account_with_keyed_deposit("dep-create")
    with pytest.raises(IdempotencyConflict) as info:
        Log.objects.create_log(
            Deposited(10),
            kind="account",
            log_id=state.log_id,
            idempotency_key="dep-create",
        )
    assert (info.value.log_id, info.value.event_index) == (state.log_id, 1)
    assert indices(state.log_id) == [0, 1]


def test_create_log_with_an_existing_log_id_and_a_conflicting_key() -> None:
    original = Log.objects.create_log(
        Opened("ada"), kind="account", idempotency_key="open-x"
    )
    with pytest.raises(IdempotencyConflict) as info:
        Log.objects.create_log(
            Opened("eve"),
            kind="account",
            log_id=original.log_id,
            idempotency_key="open-x",
        )
    assert (info.value.log_id, info.value.event_index) == (original.log_id, 0)
    # Used in another log; the log id given exists too: the key still wins.
    other = Log.objects.create_log(Opened("bob"), kind="account")
    with pytest.raises(IdempotencyConflict):
        Log.objects.create_log(
            Opened("bob"), kind="account", log_id=other.log_id, idempotency_key="open-x"
        )
    assert indices(original.log_id) == [0]


def test_a_replay_without_an_insert_leaves_the_callers_transaction_usable() -> None:
    state = account_with_keyed_deposit("dep-tx")
    with transaction.atomic():
        with pytest.raises(IdempotentReplay):
            Log.objects.append(
                LogState(state.log_id, 7), Deposited(10), idempotency_key="dep-tx"
            )
        after = Log.objects.append(state, Deposited(1), idempotency_key="dep-tx-2")
    assert after.next_index == 3
    assert indices(state.log_id) == [0, 1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_keyed_append_that_inserts_is_still_one_statement() -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    with CaptureQueriesContext(connection) as queries:
        Log.objects.append(state, Deposited(1), idempotency_key="one-statement")
    assert [q["sql"].split()[0] for q in queries] == ["INSERT"]
