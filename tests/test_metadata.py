"""Event metadata (both databases): stored with every event, set by
``event_context`` (threads, tasks, ``sync_to_async``) or ``metadata=``, read
back by every read, left out of idempotency, refused whole when bad."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import call_command
from django.db import connection

from django_eventlog import (
    Event,
    EventMetadata,
    FeedRecord,
    IdempotentReplay,
    InvalidArgument,
    Log,
    LogState,
    current_metadata,
    event_context,
)
from django_eventlog.projection_runs import ProjectionRun
from django_eventlog.projections import Projection
from django_eventlog.validation import METADATA_EXTRA_MAX_BYTES
from tests.domain import Account, Deposited, Opened

pytestmark = pytest.mark.django_db


def stored(state: LogState) -> list[EventMetadata]:
    return [r.metadata for r in Log.objects.load(state.log_id)]


def test_metadata_is_stored_on_every_event_and_read_back_by_each_read() -> None:
    with event_context(actor="user:42", correlation_id="req-1", ip="10.0.0.1"):
        state = Log.objects.create_log(Opened("ada"), kind="account")
        state = Log.objects.append(state, [Deposited(1), Deposited(2)])
    expected = EventMetadata("user:42", "req-1", None, {"ip": "10.0.0.1"})
    assert stored(state) == [expected] * 3
    assert [r.metadata for r in Log.objects.feed()] == [expected] * 3
    row = Event.objects.get(log_id=state.log_id, index=2)
    assert (row.actor, row.correlation_id, row.causation_id, row.extra) == (
        "user:42",
        "req-1",
        None,
        {"ip": "10.0.0.1"},
    )
    assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 3


def test_without_metadata_the_columns_stay_null() -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    [metadata] = stored(state)
    assert not metadata
    assert metadata.as_dict() == {
        "actor": None,
        "correlation_id": None,
        "causation_id": None,
        "extra": {},
    }
    row = Event.objects.get(log_id=state.log_id)
    assert (row.actor, row.correlation_id, row.causation_id, row.extra) == (
        None,
        None,
        None,
        None,
    )


def test_nested_contexts_merge_the_inner_winning_and_explicit_wins_over_both() -> None:
    with event_context(actor="user:1", correlation_id="outer", a=1, b=1):
        with event_context(correlation_id="inner", b=2, c=3) as inner:
            assert inner == current_metadata()
            state = Log.objects.create_log(Opened("ada"), kind="account")
            state = Log.objects.append(
                state,
                Deposited(5),
                metadata={"causation_id": "cmd-9", "extra": {"c": 4}},
            )
        after = Log.objects.append(state, Deposited(6))
    outside = Log.objects.append(after, Deposited(7))
    assert stored(outside) == [
        EventMetadata("user:1", "inner", None, {"a": 1, "b": 2, "c": 3}),
        EventMetadata("user:1", "inner", "cmd-9", {"a": 1, "b": 2, "c": 4}),
        EventMetadata("user:1", "outer", None, {"a": 1, "b": 1}),
        EventMetadata(),
    ]


def test_an_explicit_event_metadata_object_is_taken_as_is() -> None:
    given = EventMetadata("system:import", "batch-7", "file:3", {"line": 12})
    state = Log.objects.create_log(Opened("ada"), kind="account", metadata=given)
    assert stored(state) == [given]


@pytest.mark.django_db(transaction=True)
def test_threads_do_not_share_a_context() -> None:
    """Each worker thread has its own context: what one sets never reaches
    another, nor what the submitting thread set (carry it with
    ``contextvars.copy_context().run``)."""
    barrier = threading.Barrier(4)
    # One write at a time (SQLite's shared test database has one writer):
    # what is under test is that four contexts are set at once.
    writing = threading.Lock()

    def write(worker: int) -> LogState:
        try:
            barrier.wait(timeout=10)  # all four inside their contexts at once
            with event_context(actor=f"worker:{worker}", correlation_id=f"c{worker}"):
                barrier.wait(timeout=10)
                with writing:
                    return Log.objects.create_log(Opened(f"{worker}"), kind="account")
        finally:
            connection.close()

    def bare() -> LogState:
        try:
            return Log.objects.create_log(Opened("bare"), kind="account")
        finally:
            connection.close()

    with event_context(actor="user:main"), ThreadPoolExecutor(4) as pool:
        states = list(pool.map(write, range(4)))
        unset = pool.submit(bare).result()
        carried = pool.submit(contextvars.copy_context().run, bare).result()
    for worker, state in enumerate(states):
        assert stored(state) == [EventMetadata(f"worker:{worker}", f"c{worker}")]
    assert stored(unset) == [EventMetadata()]
    assert stored(carried) == [EventMetadata("user:main")]


@pytest.mark.django_db(transaction=True)
def test_async_tasks_keep_their_own_context_through_sync_to_async() -> None:
    async def write(name: str) -> LogState:
        with event_context(actor=f"user:{name}", correlation_id=f"req-{name}"):
            await asyncio.sleep(0.01)  # the other task runs in between
            state = await Log.objects.acreate_log(Opened(name), kind="account")
            return await Log.objects.aappend(state, Deposited(1))

    async def both() -> list[LogState]:
        return list(await asyncio.gather(write("a"), write("b")))

    a, b = async_to_sync(both)()
    assert stored(a) == [EventMetadata("user:a", "req-a")] * 2
    assert stored(b) == [EventMetadata("user:b", "req-b")] * 2

    @sync_to_async
    def inside() -> EventMetadata:
        return current_metadata()

    async def seen() -> EventMetadata:
        with event_context(actor="user:c"):
            return await inside()

    assert async_to_sync(seen)() == EventMetadata("user:c")


def test_a_retry_with_other_metadata_is_a_replay_of_the_original() -> None:
    with event_context(actor="user:1", correlation_id="first"):
        state = Log.objects.create_log(Opened("ada"), kind="account")
        Log.objects.append(state, Deposited(5), idempotency_key="pay-1")
    with event_context(actor="user:2", correlation_id="retry"):
        with pytest.raises(IdempotentReplay) as replay:
            Log.objects.append(state, Deposited(5), idempotency_key="pay-1")
        with pytest.raises(IdempotentReplay):
            Log.objects.append(
                state,
                Deposited(5),
                idempotency_key="pay-1",
                metadata={"actor": "user:3"},
            )
    assert replay.value.metadata == EventMetadata("user:1", "first")
    assert stored(state)[1] == EventMetadata("user:1", "first")
    assert Event.objects.filter(log_id=state.log_id).count() == 2


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"extra": {"blob": "x" * METADATA_EXTRA_MAX_BYTES}}, "bytes encoded"),
        ({"extra": {"when": object()}}, "not JSON"),
        ({"extra": ["a"]}, "mapping with str keys"),
        ({"extra": {1: "a"}}, "mapping with str keys"),
        ({"actor": 42}, "actor must be a str"),
        ({"actor": ""}, "actor must have 1 to 200"),
        ({"correlation_id": "x" * 201}, "correlation_id must have 1 to 200"),
        ({"causation_id": "a\x00b"}, "NUL"),
        ({"who": "me"}, "no field 'who'"),
        ("user:1", "must be an EventMetadata"),
    ],
)
def test_bad_metadata_is_refused_and_nothing_is_stored(
    metadata: Any, message: str
) -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    with pytest.raises(InvalidArgument, match=message):
        Log.objects.append(state, Deposited(5), metadata=metadata)
    with pytest.raises(InvalidArgument, match=message):
        Log.objects.create_log(Opened("bob"), kind="account", metadata=metadata)
    assert Event.objects.count() == 1


def test_a_bad_context_is_refused_before_it_is_set() -> None:
    refused = pytest.raises(InvalidArgument, match="not JSON")
    with refused, event_context(actor="user:1", when=object()):
        pass  # pragma: no cover
    assert current_metadata() == EventMetadata()
    half = {"blob": "x" * (METADATA_EXTRA_MAX_BYTES // 2)}
    # Each half fits; merged they do not.
    too_big = pytest.raises(InvalidArgument, match="bytes")
    with event_context(a=half), too_big, event_context(b=half):
        pass  # pragma: no cover
    assert current_metadata() == EventMetadata()


class Inner(Projection):
    """Writes under a context of its own: that context wins."""

    name = "tests.inner"
    kinds: ClassVar[Sequence[str] | None] = ("account",)
    target: ClassVar[LogState | None] = None

    def handle(self, record: FeedRecord) -> None:
        assert Inner.target is not None
        with event_context(correlation_id="mine", step=1):
            Inner.target = Log.objects.append(Inner.target, Deposited(1))


def test_a_context_set_inside_a_handler_wins_over_the_handled_event() -> None:
    with event_context(correlation_id="req-7"):
        Log.objects.create_log(Opened("ada"), kind="account")
    Inner.target = Log.objects.create_log(Opened("inner"), kind="inner")
    [handled] = [r for r in Log.objects.feed() if r.kind == "account"]
    with event_context(actor="system:test", correlation_id="run-1"):
        ProjectionRun(Inner(), "default").step()
    assert stored(Inner.target)[1] == EventMetadata(
        "system:test", "mine", handled.position, {"step": 1}
    )


class Echo(Projection):
    """Appends, for each account event it handles, a deposit to one log of
    its own: what it writes is caused by the event it handles."""

    name = "tests.echo"
    kinds: ClassVar[Sequence[str] | None] = ("account",)
    target: ClassVar[LogState | None] = None

    def handle(self, record: FeedRecord) -> None:
        assert Echo.target is not None
        Echo.target = Log.objects.append(Echo.target, Deposited(1))


def test_what_a_handler_writes_is_caused_by_the_event_it_handles() -> None:
    with event_context(actor="user:7", correlation_id="req-7"):
        first = Log.objects.create_log(Opened("ada"), kind="account")
    second = Log.objects.create_log(Opened("bob"), kind="account")
    Echo.target = Log.objects.create_log(Opened("echo"), kind="echo")
    handled = [r for r in Log.objects.feed() if r.kind == "account"]
    with event_context(actor="system:test", correlation_id="run-1"):
        ProjectionRun(Echo(), "default").step()
    written = stored(Echo.target)[1:]
    # The handled event's correlation where it has one, else the run's.
    assert written == [
        EventMetadata("system:test", "req-7", handled[0].position),
        EventMetadata("system:test", "run-1", handled[1].position),
    ]
    assert [r.log_id for r in handled] == [first.log_id, second.log_id]
    # Outside a handler nothing is caused by anything.
    after = Log.objects.append(Echo.target, Deposited(1))
    assert stored(after)[-1] == EventMetadata()


def test_correlation_ids_are_indexed() -> None:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(
            cursor, "django_eventlog_event"
        )
    index = found["django_eventlog_corr_idx"]
    assert index["index"]
    assert index["columns"] == ["correlation_id"]


def test_the_runner_command_writes_as_itself_in_a_run_of_its_own(
    settings: Any,
) -> None:
    settings.EVENTLOG_PROJECTIONS = ["tests.test_metadata.Echo"]
    Log.objects.create_log(Opened("ada"), kind="account")
    Echo.target = Log.objects.create_log(Opened("echo"), kind="echo")
    for _ in range(2):
        Log.objects.create_log(Opened("bob"), kind="account")
        call_command("eventlog_projections", "run", "--once", stdout=StringIO())
    written = stored(Echo.target)[1:]  # 2 events in the first run, 1 in the second
    assert [m.actor for m in written] == ["system:eventlog_projections"] * 3
    # One correlation id per run of the command.
    first, same, second = (m.correlation_id for m in written)
    assert None not in (first, second)
    assert first == same != second
