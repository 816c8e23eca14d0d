"""EVENTLOG_CACHE_WRITE_BEHIND: cached reductions written by a background thread."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction

from django_eventlog import Log, cache_stats, cache_writer, wait_for_cache_writes
from django_eventlog import caching as caching_module
from django_eventlog.caching import cache_key
from tests.conftest import stats_delta
from tests.domain import Account, Deposited, open_account

transactional = pytest.mark.django_db(transaction=True)


class GatedCache(LocMemCache):
    """A local-memory cache whose writes wait for ``gate`` and note their thread."""

    gate = threading.Event()
    writers: list[str] = []
    fail = False

    def set(
        self, key: str, value: Any, timeout: Any = None, version: Any = None
    ) -> None:
        if not self.gate.wait(10):
            raise AssertionError("the gate was never opened")
        GatedCache.writers.append(threading.current_thread().name)
        if self.fail:
            raise ConnectionError("cache down")
        super().set(key, value, timeout, version)


@pytest.fixture
def gated(settings: Any) -> Iterator[BaseCache]:
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {
            "BACKEND": "tests.test_write_behind.GatedCache",
            "LOCATION": "write-behind",
        },
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    settings.EVENTLOG_CACHE_WRITE_BEHIND = True
    GatedCache.gate.set()
    GatedCache.writers = []
    GatedCache.fail = False
    yield caches["eventlog"]
    GatedCache.gate.set()
    assert wait_for_cache_writes(10)
    caches["eventlog"].clear()


@transactional
def test_reduce_returns_before_the_write_which_a_background_thread_makes(
    gated: BaseCache,
) -> None:
    state = open_account(10, 20)
    key = cache_key(Account, state.log_id)
    GatedCache.gate.clear()  # the write cannot finish yet
    reduction = Log.objects.reduce(state.log_id, Account)
    assert reduction.aggregate.balance == 30
    assert gated.get(key) is None  # reduce did not wait for it
    GatedCache.gate.set()
    assert wait_for_cache_writes(10)
    assert gated.get(key) is not None
    assert GatedCache.writers == ["django_eventlog cache writer_0"]
    assert threading.current_thread().name not in GatedCache.writers

    # The entry is used: the next reduce applies only the newer event.
    Log.objects.append(reduction, Deposited(5))
    again = Log.objects.reduce(state.log_id, Account)
    assert again.aggregate.indices == [0, 1, 2, 3]
    assert again.aggregate.balance == 35
    assert wait_for_cache_writes(10)
    assert cache_stats().hits >= 1


@transactional
def test_nothing_is_submitted_before_the_transaction_commits(
    gated: BaseCache,
) -> None:
    state = open_account(10)
    key = cache_key(Account, state.log_id)
    with transaction.atomic():
        Log.objects.reduce(state.log_id, Account)
        assert wait_for_cache_writes(10)
        assert gated.get(key) is None
        assert GatedCache.writers == []
    assert wait_for_cache_writes(10)
    assert gated.get(key) is not None


@transactional
def test_a_rolled_back_reduction_is_never_written(gated: BaseCache) -> None:
    state = open_account(10)

    def reduce_then_fail() -> None:
        with transaction.atomic():
            Log.objects.reduce(state.log_id, Account)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        reduce_then_fail()
    assert wait_for_cache_writes(10)
    assert gated.get(cache_key(Account, state.log_id)) is None
    assert GatedCache.writers == []


@transactional
def test_writes_land_in_commit_order(gated: BaseCache) -> None:
    state = open_account()
    GatedCache.gate.clear()  # queue them all up behind the first
    for amount in range(1, 31):
        state = Log.objects.append(
            Log.objects.reduce(state.log_id, Account), Deposited(amount)
        )
    last = Log.objects.reduce(state.log_id, Account)
    GatedCache.gate.set()
    assert wait_for_cache_writes(10)
    stored = caching_module.read(Account, state.log_id).reduction
    assert stored is not None
    assert stored.through_index == last.through_index == 30
    assert stored.aggregate == last.aggregate


@transactional
def test_a_failing_write_is_logged_and_counted_not_raised(
    gated: BaseCache, caplog: pytest.LogCaptureFixture
) -> None:
    state = open_account(10)
    GatedCache.fail = True
    before = cache_stats()
    with caplog.at_level(logging.WARNING, logger="django_eventlog"):
        assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 10
        assert wait_for_cache_writes(10)
    assert stats_delta(before) == {"misses": 1, "errors": 1}
    assert any("cache down" in message for message in caplog.messages)


def test_wait_reports_a_timeout_while_a_write_hangs(gated: BaseCache) -> None:
    GatedCache.gate.clear()
    cache_writer._writer().submit(lambda: gated.set("k", 1))
    assert wait_for_cache_writes(0.05) is False
    GatedCache.gate.set()
    assert wait_for_cache_writes(10) is True


def test_a_forked_process_starts_its_own_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = cache_writer._writer()
    assert cache_writer._writer() is parent
    monkeypatch.setattr(os, "getpid", lambda: parent.pid + 1)
    child = cache_writer._writer()
    assert child is not parent
    assert child.pid == parent.pid + 1
    ran = threading.Event()
    child.submit(ran.set)
    assert ran.wait(10)
