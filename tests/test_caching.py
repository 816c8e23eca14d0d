"""Cached reductions: incremental reduce, keys, on-commit writes, stats, async."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import BaseCache, caches
from django.db import transaction

from django_eventlog import (
    Aggregate,
    EventRecord,
    Log,
    LogLengthPolicy,
    NeverCache,
    Reduction,
    cache_stats,
)
from django_eventlog.caching import cache_key
from django_eventlog.signals import reduced
from tests.conftest import stats_delta
from tests.domain import Account, Deposited, open_account
from tests.recording_cache import RecordingCache

transactional = pytest.mark.django_db(transaction=True)


@dataclass
class Balance(Aggregate):
    """A second view of the same account logs."""

    total: int = 0

    def apply(self, record: EventRecord) -> None:
        if isinstance(record.event, Deposited):
            self.total += record.event.amount


@transactional
def test_reduce_applies_only_events_after_the_cached_reduction(
    eventlog_cache: BaseCache,
) -> None:
    state = open_account(10, 20)
    first = Log.objects.reduce(state.log_id, Account)
    assert first.aggregate.indices == [0, 1, 2]

    Log.objects.append(first, Deposited(5))
    before = cache_stats()
    second = Log.objects.reduce(state.log_id, Account)
    # The cached state already held indices 0..2; only event 3 was applied.
    assert second.aggregate == Account("ada", 35, [0, 1, 2, 3])
    assert second.through_index == 3
    assert stats_delta(before) == {
        "hits": 1,
        "writes": 1,
        "events_applied_after_hit": 1,
    }


@transactional
def test_reducing_twice_without_new_events_keeps_the_cached_index(
    eventlog_cache: BaseCache,
) -> None:
    # The crate answers through_index 0 here, so its next reduce applies old
    # events twice and the next append fails.
    state = open_account(10, 20)
    Log.objects.reduce(state.log_id, Account)
    again = Log.objects.reduce(state.log_id, Account)
    assert again.through_index == 2
    assert again.next_index == 3
    Log.objects.append(again, Deposited(5))
    final = Log.objects.reduce(state.log_id, Account)
    assert final.aggregate == Account("ada", 35, [0, 1, 2, 3])
    assert final.through_index == 3


@transactional
def test_two_aggregates_of_one_log_never_share_an_entry(
    eventlog_cache: BaseCache,
) -> None:
    state = open_account(7)
    assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 7
    assert Log.objects.reduce(state.log_id, Balance).aggregate == Balance(7)
    assert cache_key(Account, state.log_id) != cache_key(Balance, state.log_id)
    assert eventlog_cache.get(cache_key(Account, state.log_id)) is not None
    assert eventlog_cache.get(cache_key(Balance, state.log_id)) is not None
    before = cache_stats()
    assert Log.objects.reduce(state.log_id, Balance).aggregate == Balance(7)
    assert stats_delta(before) == {"hits": 1}


@transactional
def test_bumping_the_version_makes_old_entries_unreachable(
    eventlog_cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = open_account(7)
    Log.objects.reduce(state.log_id, Balance)
    old_key = cache_key(Balance, state.log_id)
    monkeypatch.setattr(Balance, "version", 2)
    assert cache_key(Balance, state.log_id) != old_key
    before = cache_stats()
    assert Log.objects.reduce(state.log_id, Balance).aggregate == Balance(7)
    assert stats_delta(before) == {"misses": 1, "writes": 1}


def test_keys_fit_memcached_whatever_the_aggregate_name() -> None:
    log_id = uuid.uuid4()
    long_name = type("A" * 300, (Balance,), {"aggregate_name": "x" * 300 + " :*?"})
    for cls in (Balance, long_name):
        key = cache_key(cls, log_id)
        full = caches["default"].make_key(key)
        assert len(full.encode()) <= 250
        assert " " not in key
        assert "*" not in key
        assert key.endswith(f":v1:{log_id.hex}")
    # Names that only differ where they were cut still get their own keys.
    other = type("B", (Balance,), {"aggregate_name": "x" * 300 + " :*!"})
    assert cache_key(other, log_id) != cache_key(long_name, log_id)


@pytest.mark.django_db
def test_a_reduction_in_a_rolled_back_transaction_is_never_cached(
    eventlog_cache: BaseCache,
) -> None:
    state = open_account(10)

    class Abort(Exception):
        pass

    def reduce_then_roll_back() -> None:
        with transaction.atomic():
            Log.objects.append(state, Deposited(1_000_000))
            assert (
                Log.objects.reduce(state.log_id, Balance).aggregate.total == 1_000_010
            )
            raise Abort

    with pytest.raises(Abort):
        reduce_then_roll_back()
    assert eventlog_cache.get(cache_key(Balance, state.log_id)) is None
    assert Log.objects.reduce(state.log_id, Balance).aggregate.total == 10


@pytest.mark.django_db
def test_the_entry_is_written_when_the_transaction_commits(
    eventlog_cache: BaseCache,
    django_capture_on_commit_callbacks: Any,
) -> None:
    state = open_account(10)
    key = cache_key(Balance, state.log_id)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        Log.objects.reduce(state.log_id, Balance)
    assert eventlog_cache.get(key) is None
    assert len(callbacks) == 1
    callbacks[0]()
    assert eventlog_cache.get(key) is not None


@pytest.fixture
def recording(settings: Any) -> Iterator[list[tuple[str, str, Any]]]:
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {"BACKEND": "tests.recording_cache.RecordingCache"},
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    settings.EVENTLOG_CACHE_TIMEOUT = 600
    RecordingCache.calls = []
    yield RecordingCache.calls
    caches["eventlog"].clear()


@transactional
def test_exact_gets_and_puts_across_create_reduce_append_reduce(
    recording: list[tuple[str, str, Any]],
) -> None:
    state = open_account()
    assert recording == []  # writes never touch the cache
    key = cache_key(Account, state.log_id)
    Log.objects.reduce(state.log_id, Account)
    assert recording == [("get", key, None), ("set", key, 600)]
    state = Log.objects.append(Log.objects.reduce(state.log_id, Account), Deposited(3))
    # A hit with nothing new is not written again.
    assert recording[2:] == [("get", key, None)]
    reduction = Log.objects.reduce(state.log_id, Account)
    assert recording[3:] == [("get", key, None), ("set", key, 600)]
    assert reduction.aggregate == Account("ada", 3, [0, 1])


@transactional
def test_policy_never_reads_but_does_not_write(
    recording: list[tuple[str, str, Any]],
) -> None:
    class Uncached(Balance):
        cache_policy = NeverCache()

    state = open_account(4)
    assert Log.objects.reduce(state.log_id, Uncached).aggregate.total == 4
    assert Log.objects.reduce(state.log_id, Uncached).aggregate.total == 4
    key = cache_key(Uncached, state.log_id)
    assert recording == [("get", key, None), ("get", key, None)]


@transactional
def test_stats_and_signal_report_hits_misses_writes_and_events_applied(
    eventlog_cache: BaseCache,
) -> None:
    received: list[dict[str, Any]] = []

    def receiver(sender: type[Aggregate], **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    reduced.connect(receiver)
    try:
        state = open_account(1, 2)
        before = cache_stats()
        Log.objects.reduce(state.log_id, Balance)
        state = Log.objects.append(
            Log.objects.reduce(state.log_id, Balance), Deposited(3)
        )
        Log.objects.append(state, Deposited(4))
        Log.objects.reduce(state.log_id, Balance)
    finally:
        reduced.disconnect(receiver)
    assert stats_delta(before) == {
        "misses": 1,
        "hits": 2,
        "writes": 2,
        "events_applied_after_hit": 2,
    }
    assert [
        (r["cache"], r["events_applied"], r["through_index"]) for r in received
    ] == [
        ("miss", 3, 2),
        ("hit", 0, 2),
        ("hit", 2, 4),
    ]
    assert {r["sender"] for r in received} == {Balance}
    assert {r["log_id"] for r in received} == {state.log_id}


@transactional
def test_areduce_reads_and_writes_through_the_cache(eventlog_cache: BaseCache) -> None:
    state = open_account(5, 6)

    async def twice() -> tuple[Reduction[Account], Reduction[Account]]:
        first = await Log.objects.areduce(state.log_id, Account)
        await Log.objects.aappend(first, Deposited(7))
        return first, await Log.objects.areduce(state.log_id, Account)

    before = cache_stats()
    first, second = async_to_sync(twice)()
    assert first.aggregate == Account("ada", 11, [0, 1, 2])
    assert second.aggregate == Account("ada", 18, [0, 1, 2, 3])
    assert stats_delta(before) == {
        "misses": 1,
        "hits": 1,
        "writes": 2,
        "events_applied_after_hit": 1,
    }


@pytest.mark.django_db
def test_areduce_inside_a_transaction_waits_for_the_commit(
    eventlog_cache: BaseCache,
) -> None:
    state = open_account(5)

    class Abort(Exception):
        pass

    def reduce_in_transaction() -> None:
        with transaction.atomic():
            Log.objects.append(state, Deposited(1_000))
            reduction = async_to_sync(Log.objects.areduce)(state.log_id, Balance)
            assert reduction.aggregate.total == 1_005
            raise Abort

    with pytest.raises(Abort):
        reduce_in_transaction()
    assert eventlog_cache.get(cache_key(Balance, state.log_id)) is None


@transactional
def test_areduce_inside_a_transaction_writes_the_entry_at_the_commit(
    eventlog_cache: BaseCache,
) -> None:
    state = open_account(5)
    key = cache_key(Balance, state.log_id)
    with transaction.atomic():
        Log.objects.append(state, Deposited(1_000))
        reduction = async_to_sync(Log.objects.areduce)(state.log_id, Balance)
        assert eventlog_cache.get(key) is None  # not written before it returned
    assert reduction.aggregate.total == 1_005
    assert eventlog_cache.get(key) is not None
    assert Log.objects.reduce(state.log_id, Balance).aggregate.total == 1_005


@transactional
def test_an_entry_is_deleted_once_its_policy_says_no(
    recording: list[tuple[str, str, Any]],
) -> None:
    class ShortLogs(Balance):
        cache_policy = LogLengthPolicy.until(3)

    state = open_account(1)
    key = cache_key(ShortLogs, state.log_id)
    Log.objects.reduce(state.log_id, ShortLogs)
    assert caches["eventlog"].get(key) is not None
    Log.objects.append(state, Deposited(2))
    assert Log.objects.reduce(state.log_id, ShortLogs).aggregate.total == 3
    assert ("delete", key, None) in recording
    assert caches["eventlog"].get(key) is None


@transactional
def test_a_broken_policy_setting_never_fails_a_reduce(
    eventlog_cache: BaseCache, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.EVENTLOG_CACHE_POLICY = "no.such.Policy"
    state = open_account(4)
    assert Log.objects.reduce(state.log_id, Balance).aggregate.total == 4
    assert eventlog_cache.get(cache_key(Balance, state.log_id)) is None
    assert "caching policy" in caplog.text
