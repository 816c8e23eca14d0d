"""LogManager: create_log, append, reduce, load and their errors, on either database."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from django_eventlog import (
    Aggregate,
    ConcurrentAppend,
    EventEncodingError,
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    LogNotFound,
    LogState,
    Reduction,
    UnknownEventType,
)
from django_eventlog.models import Event, Log, uuid7
from tests.domain import Account, Deposited, Opened

pytestmark = pytest.mark.django_db


def new_account(owner: str = "ada", **kwargs: object) -> LogState:
    return Log.objects.create_log(Opened(owner), kind="account", **kwargs)  # type: ignore[arg-type]


def stored(log_id: uuid.UUID) -> list[tuple[int, str, object, str | None]]:
    return list(
        Event.objects.filter(log_id=log_id)
        .order_by("index")
        .values_list("index", "type", "payload", "idempotency_key")
    )


# create_log


def test_create_log_stores_the_log_and_its_first_event() -> None:
    before = datetime.now(timezone.utc)
    state = new_account("ada", idempotency_key="k-create")
    assert state == LogState(state.log_id, 1)
    log = Log.objects.get(pk=state.log_id)
    assert log.kind == "account"
    assert before <= log.created_at <= datetime.now(timezone.utc)
    assert stored(state.log_id) == [(0, "tests.opened", {"owner": "ada"}, "k-create")]


@pytest.mark.parametrize("as_string", [False, True])
def test_create_log_accepts_the_callers_log_id(as_string: bool) -> None:
    log_id = uuid.uuid4()
    state = Log.objects.create_log(
        Opened("bob"), kind="account", log_id=str(log_id) if as_string else log_id
    )
    assert state.log_id == log_id
    assert Log.objects.filter(pk=log_id).exists()


def test_create_log_with_an_existing_id_is_a_concurrent_append() -> None:
    state = new_account()
    with pytest.raises(ConcurrentAppend) as info:
        new_account("eve", log_id=state.log_id)
    assert info.value.log_id == state.log_id
    assert stored(state.log_id) == [(0, "tests.opened", {"owner": "ada"}, None)]


def test_generated_log_ids_are_time_ordered_uuid7() -> None:
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()
    assert first.version == 7
    assert second.version == 7
    assert first.variant == uuid.RFC_4122
    assert first < second
    millis = int.from_bytes(second.bytes[:6], "big")
    assert abs(millis - time.time() * 1000) < 5_000
    assert new_account().log_id.version == 7


def test_create_log_is_all_or_nothing() -> None:
    new_account(idempotency_key="taken")
    logs = Log.objects.count()
    with pytest.raises(IdempotencyConflict):
        Log.objects.create_log(Opened("other"), kind="account", idempotency_key="taken")
    # The log row inserted before the failing event was rolled back with it.
    assert Log.objects.count() == logs


# append


def test_append_returns_the_next_state_and_stores_the_event() -> None:
    state = new_account()
    state = Log.objects.append(state, Deposited(10), idempotency_key="dep-1")
    state = Log.objects.append(state, Deposited(5))
    assert state.next_index == 3
    assert stored(state.log_id)[1:] == [
        (1, "tests.deposited", {"amount": 10}, "dep-1"),
        (2, "tests.deposited", {"amount": 5}, None),
    ]


def test_append_with_a_stale_state_is_refused() -> None:
    start = new_account()
    Log.objects.append(start, Deposited(10))
    with pytest.raises(ConcurrentAppend) as info:
        Log.objects.append(start, Deposited(99))
    assert info.value.log_id == start.log_id
    assert [row[0] for row in stored(start.log_id)] == [0, 1]


def test_a_state_ahead_of_the_log_cannot_leave_a_gap() -> None:
    state = new_account()
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(LogState(state.log_id, 5), Deposited(1))
    assert [row[0] for row in stored(state.log_id)] == [0]


@pytest.mark.parametrize("index", [0, 1, 7])
def test_append_to_a_missing_log(index: int) -> None:
    missing = uuid.uuid4()
    with pytest.raises(LogNotFound) as info:
        Log.objects.append(LogState(missing, index), Deposited(1))
    assert info.value.log_id == missing
    assert not Event.objects.filter(log_id=missing).exists()


def test_append_at_index_zero_of_an_existing_log_is_concurrent() -> None:
    state = new_account()
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(LogState(state.log_id, 0), Deposited(1))


def test_append_inside_a_transaction_is_one_insert_in_a_savepoint() -> None:
    state = new_account()
    with CaptureQueriesContext(connection) as queries:
        Log.objects.append(state, Deposited(1))
    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1
    assert not any("SELECT" in q["sql"] and "INSERT" not in q["sql"] for q in queries)
    assert any("SAVEPOINT" in q["sql"] for q in queries)


@pytest.mark.django_db(transaction=True)
def test_create_log_in_autocommit_is_one_statement_on_postgresql() -> None:
    # PostgreSQL: a data-modifying CTE writes the log and event 0 in one
    # statement; SQLite has no such CTE and uses a transaction of two.
    with CaptureQueriesContext(connection) as queries:
        state = Log.objects.create_log(Opened("ada"), kind="account")
    statements = [q["sql"].split()[0] for q in queries]
    if connection.vendor == "postgresql":
        assert statements == ["WITH"]
    else:
        assert statements == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    assert stored(state.log_id) == [(0, Opened.type_name, {"owner": "ada"}, None)]
    assert Log.objects.get(pk=state.log_id).kind == "account"


def test_a_failed_create_log_leaves_the_callers_transaction_usable() -> None:
    first = new_account()
    with transaction.atomic():
        with pytest.raises(ConcurrentAppend):
            Log.objects.create_log(Opened("bob"), kind="account", log_id=first.log_id)
        second = Log.objects.create_log(Opened("eve"), kind="account")
    assert stored(second.log_id)[0][2] == {"owner": "eve"}
    assert stored(first.log_id)[0][2] == {"owner": "ada"}


@pytest.mark.django_db(transaction=True)
def test_append_in_autocommit_is_a_single_statement() -> None:
    state = new_account()
    with CaptureQueriesContext(connection) as queries:
        Log.objects.append(state, Deposited(1))
    assert [q["sql"].split()[0] for q in queries] == ["INSERT"]
    assert len(stored(state.log_id)) == 2


# idempotency


def test_retried_append_is_an_idempotent_replay_naming_the_original() -> None:
    state = new_account()
    after = Log.objects.append(state, Deposited(10), idempotency_key="pay-1")
    with pytest.raises(IdempotentReplay) as info:
        Log.objects.append(state, Deposited(10), idempotency_key="pay-1")
    assert (info.value.idempotency_key, info.value.log_id, info.value.event_index) == (
        "pay-1",
        state.log_id,
        1,
    )
    # Also with a fresh state: the key, not the index, decides.
    with pytest.raises(IdempotentReplay):
        Log.objects.append(after, Deposited(10), idempotency_key="pay-1")
    assert len(stored(state.log_id)) == 2


def test_same_key_for_another_event_is_a_conflict() -> None:
    state = new_account()
    state = Log.objects.append(state, Deposited(10), idempotency_key="pay-2")
    with pytest.raises(IdempotencyConflict) as info:
        Log.objects.append(state, Deposited(11), idempotency_key="pay-2")
    assert (info.value.log_id, info.value.event_index) == (state.log_id, 1)
    with pytest.raises(IdempotencyConflict):
        Log.objects.append(state, Opened("x"), idempotency_key="pay-2")
    assert len(stored(state.log_id)) == 2


def test_replayed_create_with_a_fresh_log_id_names_the_original_log() -> None:
    original = new_account("ada", idempotency_key="open-1")
    logs = Log.objects.count()
    with pytest.raises(IdempotentReplay) as info:
        new_account("ada", idempotency_key="open-1")  # a new uuid7 each call
    assert info.value.log_id == original.log_id
    assert info.value.event_index == 0
    assert Log.objects.count() == logs


def test_the_same_event_on_another_log_conflicts_naming_the_original() -> None:
    first = new_account(idempotency_key=None)
    Log.objects.append(first, Deposited(3), idempotency_key="shared")
    other = new_account("bob")
    with pytest.raises(IdempotencyConflict) as info:
        Log.objects.append(other, Deposited(3), idempotency_key="shared")
    assert (info.value.log_id, info.value.event_index) == (first.log_id, 1)
    assert len(stored(other.log_id)) == 1


def test_create_with_an_existing_log_id_and_used_key_is_a_replay() -> None:
    original = new_account("ada", idempotency_key="open-2")
    with pytest.raises(IdempotentReplay) as info:
        new_account("ada", log_id=original.log_id, idempotency_key="open-2")
    assert info.value.log_id == original.log_id


# reduce


def test_reduce_folds_every_event_in_order() -> None:
    state = new_account("ada")
    for amount in (10, 20, 30):
        state = Log.objects.append(state, Deposited(amount))
    before = datetime.now(timezone.utc)
    reduction = Log.objects.reduce(state.log_id, Account)
    assert isinstance(reduction, Reduction)
    assert reduction.aggregate == Account("ada", 60, [0, 1, 2, 3])
    assert reduction.log_id == state.log_id
    assert reduction.through_index == 3
    assert reduction.next_index == 4
    assert before <= reduction.reduced_at <= datetime.now(timezone.utc)


def test_a_reduction_is_a_log_state_for_append() -> None:
    state = new_account()
    reduction = Log.objects.reduce(state.log_id, Account)
    assert isinstance(reduction, LogState)
    Log.objects.append(reduction, Deposited(5))
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(reduction, Deposited(6))
    assert Log.objects.reduce(str(state.log_id), Account).aggregate.balance == 5


@override_settings(EVENTLOG_CHUNK_SIZE=3)
def test_reduce_streams_in_chunks() -> None:
    state = new_account()
    for _ in range(10):
        state = Log.objects.append(state, Deposited(1))
    assert Log.objects.reduce(state.log_id, Account).aggregate.indices == list(
        range(11)
    )


def test_reduce_of_a_missing_log() -> None:
    missing = uuid.uuid4()
    with pytest.raises(LogNotFound) as info:
        Log.objects.reduce(missing, Account)
    assert info.value.log_id == missing


def test_an_unknown_stored_type_is_named() -> None:
    state = new_account()
    Event.objects.create(
        log_id=state.log_id, index=1, type="tests.retired", payload={"a": 1}
    )
    with pytest.raises(UnknownEventType, match=r"tests\.retired"):
        Log.objects.reduce(state.log_id, Account)
    with pytest.raises(UnknownEventType):
        Log.objects.load(state.log_id)


# load


def make_log(events: int) -> uuid.UUID:
    state = new_account()
    for amount in range(1, events):
        state = Log.objects.append(state, Deposited(amount), idempotency_key=None)
    return state.log_id


def test_load_returns_a_page_of_records() -> None:
    log_id = make_log(10)
    page = Log.objects.load(log_id, start=3, limit=4)
    assert [r.index for r in page] == [3, 4, 5, 6]
    assert [r.event for r in page] == [
        Deposited(3),
        Deposited(4),
        Deposited(5),
        Deposited(6),
    ]
    assert {r.type for r in page} == {"tests.deposited"}


def test_load_limit_plus_one_tells_whether_a_next_page_exists() -> None:
    log_id = make_log(10)
    page_size = 4
    seen: list[int] = []
    start = 0
    pages = 0
    while True:
        records = Log.objects.load(log_id, start=start, limit=page_size + 1)
        seen += [r.index for r in records[:page_size]]
        pages += 1
        if len(records) <= page_size:
            break
        start = records[page_size].index
    assert seen == list(range(10))
    assert pages == 3


def test_load_past_the_end_is_empty_but_a_missing_log_is_not_found() -> None:
    log_id = make_log(2)
    assert Log.objects.load(log_id, start=2) == []
    with pytest.raises(LogNotFound):
        Log.objects.load(uuid.uuid4())


@override_settings(EVENTLOG_PAGE_SIZE=3, EVENTLOG_MAX_PAGE_SIZE=5)
def test_load_page_size_settings() -> None:
    log_id = make_log(10)
    assert len(Log.objects.load(log_id)) == 3
    assert len(Log.objects.load(log_id, limit=5)) == 5
    with pytest.raises(InvalidArgument, match="EVENTLOG_MAX_PAGE_SIZE"):
        Log.objects.load(log_id, limit=6)


def test_record_as_dict_is_json_ready() -> None:
    state = new_account("ada", idempotency_key="json-1")
    (record,) = Log.objects.load(state.log_id, limit=1)
    data = json.loads(json.dumps(record.as_dict()))
    assert data["index"] == 0
    assert data["type"] == "tests.opened"
    assert data["idempotency_key"] == "json-1"
    assert data["event"] == {"owner": "ada"}
    assert datetime.fromisoformat(data["recorded_at"]) == record.recorded_at


# transactions


def test_append_commits_with_the_callers_transaction() -> None:
    state = new_account()
    with transaction.atomic():
        User.objects.create(username="writer")
        Log.objects.append(state, Deposited(7))
    assert User.objects.filter(username="writer").exists()
    assert len(stored(state.log_id)) == 2


def test_append_rolls_back_with_the_callers_transaction() -> None:
    state = new_account()

    class Abort(Exception):
        pass

    def write_then_fail() -> None:
        with transaction.atomic():
            User.objects.create(username="writer")
            Log.objects.append(state, Deposited(7))
            raise Abort

    with pytest.raises(Abort):
        write_then_fail()
    assert not User.objects.filter(username="writer").exists()
    assert len(stored(state.log_id)) == 1


def test_a_failed_append_leaves_the_callers_transaction_usable() -> None:
    state = new_account()
    with transaction.atomic():
        Log.objects.append(state, Deposited(1), idempotency_key="once")
        with pytest.raises(ConcurrentAppend):
            Log.objects.append(state, Deposited(2))
        with pytest.raises(IdempotentReplay):
            Log.objects.append(state, Deposited(1), idempotency_key="once")
        User.objects.create(username="still-fine")
    assert User.objects.filter(username="still-fine").exists()
    assert len(stored(state.log_id)) == 2


# bad input


class Unstorable(Aggregate):
    pass


@pytest.mark.parametrize(
    "bad_key", ["", "k" * 256, "nul\x00key", "\udcff", 42], ids=repr
)
def test_bad_idempotency_keys_are_refused_before_writing(bad_key: object) -> None:
    logs = Log.objects.count()
    with pytest.raises(InvalidArgument, match="idempotency_key"):
        Log.objects.create_log(Opened("x"), kind="account", idempotency_key=bad_key)  # type: ignore[arg-type]
    state = new_account()
    with pytest.raises(InvalidArgument, match="idempotency_key"):
        Log.objects.append(state, Deposited(1), idempotency_key=bad_key)  # type: ignore[arg-type]
    assert Log.objects.count() == logs + 1
    assert len(stored(state.log_id)) == 1


def test_the_longest_allowed_key_is_stored() -> None:
    key = "k" * 255
    state = new_account(idempotency_key=key)
    assert stored(state.log_id)[0][3] == key


@pytest.mark.parametrize(
    "bad_id",
    ["", "not-a-uuid", "12345678-1234-5678-1234-56781234567", "'; DROP TABLE x; --", 7],
)
def test_malformed_log_ids_are_refused(bad_id: object) -> None:
    with pytest.raises(InvalidArgument):
        Log.objects.reduce(bad_id, Account)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Log.objects.load(bad_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Log.objects.append(LogState(bad_id, 1), Deposited(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Log.objects.create_log(Opened("x"), kind="account", log_id=bad_id)  # type: ignore[arg-type]


def test_wrong_argument_types_are_refused() -> None:
    state = new_account()
    with pytest.raises(InvalidArgument, match="LogState"):
        Log.objects.append((state.log_id, 1), Deposited(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="next_index"):
        Log.objects.append(LogState(state.log_id, True), Deposited(1))
    with pytest.raises(InvalidArgument, match="next_index"):
        Log.objects.append(LogState(state.log_id, -1), Deposited(1))
    with pytest.raises(InvalidArgument, match="Aggregate"):
        Log.objects.reduce(state.log_id, dict)  # type: ignore[type-var]
    with pytest.raises(InvalidArgument, match="kind"):
        Log.objects.create_log(Opened("x"), kind=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="kind"):
        Log.objects.create_log(Opened("x"), kind="")
    with pytest.raises(InvalidArgument, match="start"):
        Log.objects.load(state.log_id, start=-1)
    with pytest.raises(InvalidArgument, match="limit"):
        Log.objects.load(state.log_id, limit=0)
    with pytest.raises(InvalidArgument, match="start"):
        Log.objects.load(state.log_id, start="0")  # type: ignore[arg-type]
    assert len(stored(state.log_id)) == 1


def test_a_non_encodable_event_is_refused_before_writing() -> None:
    logs = Log.objects.count()
    with pytest.raises(EventEncodingError):
        Log.objects.create_log(Deposited("ten"), kind="account")  # type: ignore[arg-type]
    state = new_account()
    with pytest.raises(EventEncodingError):
        Log.objects.append(state, Deposited(float("nan")))  # type: ignore[arg-type]
    with pytest.raises(EventEncodingError):
        Log.objects.append(state, {"amount": 1})  # type: ignore[arg-type]
    assert Log.objects.count() == logs + 1
    assert len(stored(state.log_id)) == 1


def test_errors_are_event_log_errors() -> None:
    from django_eventlog import EventLogError

    state = new_account()
    with pytest.raises(EventLogError):
        Log.objects.append(LogState(state.log_id, 0), Deposited(1))
    with pytest.raises(EventLogError):
        Log.objects.reduce(uuid.uuid4(), Account)


class NeedsArguments(Account):
    def __init__(self, owner: str) -> None:
        super().__init__(owner)


def test_aggregates_must_implement_apply_and_take_no_arguments() -> None:
    state = new_account()
    with pytest.raises(InvalidArgument, match="apply"):
        Log.objects.reduce(state.log_id, Unstorable)
    with pytest.raises(InvalidArgument, match="no arguments"):
        Log.objects.reduce(state.log_id, NeedsArguments)
