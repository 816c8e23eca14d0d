"""The async twins behave as their sync counterparts."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from asgiref.sync import async_to_sync
from django.test.utils import override_settings

from django_eventlog import (
    ConcurrentAppend,
    IdempotentReplay,
    InvalidArgument,
    LogNotFound,
    Reduction,
)
from django_eventlog.models import Log
from django_eventlog.signals import reduced
from tests.domain import Account, Deposited, Opened

pytestmark = pytest.mark.django_db

T = TypeVar("T")


def run(coroutine: Callable[[], Awaitable[T]]) -> T:
    # Runs the coroutine in an event loop while the ORM calls it makes come
    # back to this thread, and so to the test's transaction.
    return async_to_sync(coroutine)()


@override_settings(EVENTLOG_CHUNK_SIZE=2)
def test_async_write_and_read_path() -> None:
    async def scenario() -> tuple[Reduction[Account], list[int]]:
        state = await Log.objects.acreate_log(
            Opened("ada"), kind="account", idempotency_key="a-open"
        )
        for amount in (1, 2, 3, 4):
            state = await Log.objects.aappend(state, Deposited(amount))
        reduction = await Log.objects.areduce(state.log_id, Account)
        page = await Log.objects.aload(state.log_id, start=1, limit=3)
        return reduction, [r.event.amount for r in page]  # type: ignore[attr-defined]

    reduction, amounts = run(scenario)
    assert reduction.aggregate == Account("ada", 10, [0, 1, 2, 3, 4])
    assert reduction.through_index == 4
    assert amounts == [1, 2, 3]
    assert (
        Log.objects.reduce(reduction.log_id, Account).aggregate == reduction.aggregate
    )


def test_async_errors() -> None:
    async def scenario() -> list[type[Exception]]:
        raised: list[type[Exception]] = []
        state = await Log.objects.acreate_log(
            Opened("ada"), kind="account", idempotency_key="a-2"
        )
        await Log.objects.aappend(state, Deposited(1))
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: Log.objects.aappend(state, Deposited(2)),
            lambda: Log.objects.acreate_log(
                Opened("ada"), kind="account", idempotency_key="a-2"
            ),
            lambda: Log.objects.areduce(uuid.uuid4(), Account),
            lambda: Log.objects.aload(uuid.uuid4()),
            lambda: Log.objects.aload("nope"),
        ]
        for attempt in attempts:
            try:
                await attempt()
            except Exception as e:
                raised.append(type(e))
        return raised

    assert run(scenario) == [
        ConcurrentAppend,
        IdempotentReplay,
        LogNotFound,
        LogNotFound,
        InvalidArgument,
    ]


def test_areduce_sends_reduced_in_a_worker_thread_outside_the_event_loop() -> None:
    calls: list[tuple[int, bool]] = []

    def receiver(**kwargs: object) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            calls.append((threading.get_ident(), False))
        else:
            calls.append((threading.get_ident(), True))

    async def scenario() -> int:
        state = await Log.objects.acreate_log(Opened("ada"), kind="account")
        await Log.objects.areduce(state.log_id, Account)
        return threading.get_ident()

    reduced.connect(receiver)
    try:
        loop_thread = run(scenario)
    finally:
        reduced.disconnect(receiver)
    [(receiver_thread, in_event_loop)] = calls
    assert not in_event_loop
    assert receiver_thread != loop_thread
    # Thread-sensitive sync_to_async: the thread the ORM calls of this
    # async_to_sync run use, here the test's.
    assert receiver_thread == threading.get_ident()
