"""Caching policies and cache timeouts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone

from django_eventlog import (
    Aggregate,
    AlwaysCache,
    CachingPolicy,
    EventRecord,
    InvalidArgument,
    Log,
    LogAgePolicy,
    LogLengthPolicy,
    LogState,
    NeverCache,
    Reduction,
    cache_stats,
    policies,
)
from django_eventlog.caching import cache_key
from tests.domain import Account, Deposited, Opened

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=dt_timezone.utc)
DAY = timedelta(days=1)

# EVENTLOG_CACHE_POLICY may name an instance by its dotted path.
AT_LEAST_THREE = LogLengthPolicy.at_least(3)


def reduction(length: int = 1, created_at: datetime | None = NOW) -> Reduction[Account]:
    """A reduction of a log of ``length`` events (next_index == length)."""
    return Reduction(uuid.uuid4(), Account(), length - 1, NOW, created_at)


def aged(age: timedelta) -> Reduction[Account]:
    return reduction(created_at=NOW - age)


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """LogAgePolicy sees NOW as the current time, so ages are exact."""
    monkeypatch.setattr(policies, "timezone", SimpleNamespace(now=lambda: NOW))


def open_account(deposits: int = 0) -> LogState:
    """A log of 1 + ``deposits`` events."""
    state = Log.objects.create_log(Opened("ada"), kind="account")
    for amount in range(1, deposits + 1):
        state = Log.objects.append(state, Deposited(amount))
    return state


def opened_at(when: datetime, monkeypatch: pytest.MonkeyPatch) -> uuid.UUID:
    """The id of a log of two events created (and written) at ``when``."""
    with monkeypatch.context() as m:
        m.setattr(timezone, "now", lambda: when)
        log_id = open_account(1).log_id
    assert Log.objects.get(pk=log_id).created_at == when
    return log_id


def cached_after_reduce(
    capture: Callable[..., Any],
    cache: BaseCache,
    log_id: uuid.UUID,
    aggregate_class: type[Aggregate],
) -> bool:
    """Reduce, commit, and say whether the cache now holds the entry."""
    with capture(execute=True):
        Log.objects.reduce(log_id, aggregate_class)
    return cache.get(cache_key(aggregate_class, log_id)) is not None


# Aggregates with their own policies and timeouts (valid: the checks accept them).


@dataclass
class Total(Aggregate):
    total: int = 0

    def apply(self, record: EventRecord) -> None:
        if isinstance(record.event, Deposited):
            self.total += record.event.amount


class LongLogsTotal(Total):
    cache_policy = LogLengthPolicy.at_least(3)


class ShortLogsTotal(Total):
    cache_policy = LogLengthPolicy.until(3)


class YoungLogsTotal(Total):
    cache_policy = LogAgePolicy.until(7 * DAY)


class OldLogsTotal(Total):
    cache_policy = LogAgePolicy.starting_at(7 * DAY)


class MiddleAgedLogsTotal(Total):
    cache_policy = LogAgePolicy.between(DAY, 7 * DAY)


class AlwaysCachedTotal(Total):
    cache_policy = AlwaysCache()


class NeverCachedTotal(Total):
    cache_policy = NeverCache()


class ShortLivedTotal(Total):
    cache_timeout = 5


class LongLivedTotal(Total):
    cache_timeout = 3600


# LogLengthPolicy


def test_log_length_at_least_caches_from_n_events_on() -> None:
    policy = LogLengthPolicy.at_least(3)
    assert policy == LogLengthPolicy(minimum=3, maximum=None)
    assert [policy.should_cache(reduction(n)) for n in (0, 1, 2, 3, 4, 10_000)] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]


def test_log_length_until_caches_below_n_events() -> None:
    policy = LogLengthPolicy.until(3)
    assert policy == LogLengthPolicy(minimum=0, maximum=3)
    assert [policy.should_cache(reduction(n)) for n in (0, 1, 2, 3, 4)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_log_length_between_is_half_open() -> None:
    policy = LogLengthPolicy.between(2, 5)
    assert policy == LogLengthPolicy(minimum=2, maximum=5)
    assert [policy.should_cache(reduction(n)) for n in range(7)] == [
        False,
        False,
        True,
        True,
        True,
        False,
        False,
    ]


def test_log_length_default_caches_every_length() -> None:
    assert all(LogLengthPolicy().should_cache(reduction(n)) for n in (0, 1, 99))


def test_the_length_is_the_next_index() -> None:
    # An empty reduction (through_index -1) has length 0.
    empty = Reduction(uuid.uuid4(), Account(), -1, NOW)
    assert empty.next_index == 0
    assert LogLengthPolicy.until(1).should_cache(empty)
    assert not LogLengthPolicy.at_least(1).should_cache(empty)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogLengthPolicy.at_least(-1),
        lambda: LogLengthPolicy.until(0),
        lambda: LogLengthPolicy.until(-3),
        lambda: LogLengthPolicy.between(5, 5),
        lambda: LogLengthPolicy.between(5, 3),
        lambda: LogLengthPolicy.between(-1, 3),
        lambda: LogLengthPolicy(minimum=-1),
    ],
)
def test_invalid_length_bounds_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(InvalidArgument, match="LogLengthPolicy needs 0 <= minimum"):
        make()


def test_the_smallest_valid_length_bounds() -> None:
    assert LogLengthPolicy.at_least(0).should_cache(reduction(0))
    assert LogLengthPolicy.until(1).maximum == 1
    assert LogLengthPolicy.between(4, 5).should_cache(reduction(4))
    assert not LogLengthPolicy.between(4, 5).should_cache(reduction(5))


# LogAgePolicy (age = now - log_created_at)


def test_log_age_starting_at(frozen_now: None) -> None:
    policy = LogAgePolicy.starting_at(7 * DAY)
    assert policy == LogAgePolicy(minimum=7 * DAY, maximum=None)
    assert not policy.should_cache(aged(timedelta(0)))
    assert not policy.should_cache(aged(7 * DAY - timedelta(microseconds=1)))
    assert policy.should_cache(aged(7 * DAY))
    assert policy.should_cache(aged(365 * DAY))


def test_log_age_until(frozen_now: None) -> None:
    policy = LogAgePolicy.until(7 * DAY)
    assert policy == LogAgePolicy(minimum=timedelta(0), maximum=7 * DAY)
    assert policy.should_cache(aged(timedelta(0)))
    assert policy.should_cache(aged(7 * DAY - timedelta(microseconds=1)))
    assert not policy.should_cache(aged(7 * DAY))
    assert not policy.should_cache(aged(30 * DAY))


def test_log_age_between_is_half_open(frozen_now: None) -> None:
    policy = LogAgePolicy.between(DAY, 7 * DAY)
    assert policy == LogAgePolicy(minimum=DAY, maximum=7 * DAY)
    ages = [
        timedelta(0),
        DAY - timedelta(microseconds=1),
        DAY,
        3 * DAY,
        7 * DAY - timedelta(microseconds=1),
        7 * DAY,
    ]
    assert [policy.should_cache(aged(age)) for age in ages] == [
        False,
        False,
        True,
        True,
        True,
        False,
    ]


def test_a_log_created_in_the_future_has_a_negative_age(frozen_now: None) -> None:
    # Clock skew between servers: such a log is younger than any minimum.
    assert not LogAgePolicy().should_cache(reduction(created_at=NOW + DAY))
    assert not LogAgePolicy.until(DAY).should_cache(reduction(created_at=NOW + DAY))


def test_log_age_without_a_creation_time_is_never_cached() -> None:
    unknown = reduction(created_at=None)
    for policy in (
        LogAgePolicy(),
        LogAgePolicy.until(365 * DAY),
        LogAgePolicy.starting_at(timedelta(0)),
    ):
        assert not policy.should_cache(unknown)
    # Other policies do not read the creation time.
    assert LogLengthPolicy().should_cache(unknown)
    assert AlwaysCache().should_cache(unknown)


def test_log_age_uses_the_real_clock() -> None:
    # Without a frozen clock: a log created an hour ago is an hour old.
    recent = reduction(created_at=timezone.now() - timedelta(hours=1))
    assert LogAgePolicy.until(DAY).should_cache(recent)
    assert not LogAgePolicy.starting_at(DAY).should_cache(recent)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogAgePolicy.starting_at(-timedelta(seconds=1)),
        lambda: LogAgePolicy.until(timedelta(0)),
        lambda: LogAgePolicy.until(-DAY),
        lambda: LogAgePolicy.between(DAY, DAY),
        lambda: LogAgePolicy.between(2 * DAY, DAY),
        lambda: LogAgePolicy.between(-DAY, DAY),
    ],
)
def test_invalid_age_bounds_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(InvalidArgument, match="LogAgePolicy needs 0 <= minimum"):
        make()


# AlwaysCache, NeverCache


def test_always_cache_caches_everything() -> None:
    policy = AlwaysCache()
    assert policy.should_cache(reduction(0))
    assert policy.should_cache(reduction(100_000, created_at=None))


def test_never_cache_caches_nothing() -> None:
    policy = NeverCache()
    assert not policy.should_cache(reduction(0))
    assert not policy.should_cache(reduction(100_000))


def test_built_in_policies_are_caching_policies() -> None:
    for policy in (
        AlwaysCache(),
        NeverCache(),
        LogLengthPolicy.at_least(1),
        LogAgePolicy.until(DAY),
    ):
        assert isinstance(policy, CachingPolicy)
    assert not isinstance(object(), CachingPolicy)


# The policy decides whether a real reduce writes the entry.


@pytest.mark.django_db
def test_log_length_policy_decides_the_write(
    eventlog_cache: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    state = open_account(1)  # 2 events
    log_id = state.log_id
    assert not cached_after_reduce(capture, eventlog_cache, log_id, LongLogsTotal)
    assert cached_after_reduce(capture, eventlog_cache, log_id, ShortLogsTotal)

    Log.objects.append(state, Deposited(2))  # 3 events
    assert cached_after_reduce(capture, eventlog_cache, log_id, LongLogsTotal)
    # ShortLogsTotal's entry of 2 events starts the next reduce, which applies
    # the third event, and is then deleted: the policy no longer wants it.
    before = cache_stats()
    with capture(execute=True):
        result = Log.objects.reduce(log_id, ShortLogsTotal)
    after = cache_stats()
    assert result.aggregate == ShortLogsTotal(3)
    assert result.next_index == 3
    assert (after.hits - before.hits, after.writes - before.writes) == (1, 0)
    assert after.deletes - before.deletes == 1
    assert after.events_applied_after_hit - before.events_applied_after_hit == 1
    assert eventlog_cache.get(cache_key(ShortLogsTotal, log_id)) is None


@pytest.mark.django_db
def test_log_age_policy_decides_the_write(
    eventlog_cache: BaseCache,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capture = django_capture_on_commit_callbacks
    now = timezone.now()
    young = open_account(1).log_id  # created now
    # Logs are immutable: created in the past rather than moved there.
    middle = opened_at(now - 3 * DAY, monkeypatch)
    old = opened_at(now - 30 * DAY, monkeypatch)

    written = {
        (name, aggregate.__name__): cached_after_reduce(
            capture, eventlog_cache, log_id, aggregate
        )
        for name, log_id in (("young", young), ("middle", middle), ("old", old))
        for aggregate in (YoungLogsTotal, MiddleAgedLogsTotal, OldLogsTotal)
    }
    assert written == {
        ("young", "YoungLogsTotal"): True,
        ("young", "MiddleAgedLogsTotal"): False,
        ("young", "OldLogsTotal"): False,
        ("middle", "YoungLogsTotal"): True,
        ("middle", "MiddleAgedLogsTotal"): True,
        ("middle", "OldLogsTotal"): False,
        ("old", "YoungLogsTotal"): False,
        ("old", "MiddleAgedLogsTotal"): False,
        ("old", "OldLogsTotal"): True,
    }
    # The creation time travels with the cached entry.
    hit = Log.objects.reduce(old, OldLogsTotal)
    assert hit.log_created_at == now - 30 * DAY
    assert hit.aggregate == OldLogsTotal(1)


@pytest.mark.django_db
def test_always_and_never_cache_decide_the_write(
    eventlog_cache: BaseCache, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    log_id = open_account(2).log_id
    # The per-aggregate policies hold whatever the project default says.
    for project_default in ("django_eventlog.policies.NeverCache", AlwaysCache()):
        settings.EVENTLOG_CACHE_POLICY = project_default
        eventlog_cache.clear()
        assert cached_after_reduce(capture, eventlog_cache, log_id, AlwaysCachedTotal)
        assert not cached_after_reduce(
            capture, eventlog_cache, log_id, NeverCachedTotal
        )


# The project default: EVENTLOG_CACHE_POLICY


@pytest.mark.django_db
@pytest.mark.parametrize(
    "setting",
    [
        "tests.test_policies.AT_LEAST_THREE",  # the path of an instance
        "django_eventlog.policies.LogLengthPolicy",  # of a class: its defaults
        AT_LEAST_THREE,  # an instance
    ],
    ids=["instance-path", "class-path", "instance"],
)
def test_the_project_default_policy(
    eventlog_cache: BaseCache,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    setting: object,
) -> None:
    capture = django_capture_on_commit_callbacks
    settings.EVENTLOG_CACHE_POLICY = setting
    short = open_account(1).log_id  # 2 events
    long = open_account(2).log_id  # 3 events
    caches_short_logs = setting == "django_eventlog.policies.LogLengthPolicy"
    # Account sets no cache_policy: the setting decides.
    assert cached_after_reduce(capture, eventlog_cache, short, Account) is (
        caches_short_logs
    )
    assert cached_after_reduce(capture, eventlog_cache, long, Account)


@pytest.mark.django_db
def test_the_default_project_policy_caches_everything(
    eventlog_cache: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    log_id = open_account(0).log_id  # a single event
    assert cached_after_reduce(
        django_capture_on_commit_callbacks, eventlog_cache, log_id, Account
    )


@pytest.mark.django_db
def test_an_aggregate_policy_overrides_the_project_default(
    eventlog_cache: BaseCache,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    capture = django_capture_on_commit_callbacks
    settings.EVENTLOG_CACHE_POLICY = "django_eventlog.policies.NeverCache"
    short = open_account(0).log_id
    long = open_account(3).log_id
    assert not cached_after_reduce(capture, eventlog_cache, long, Account)
    assert not cached_after_reduce(capture, eventlog_cache, long, Total)
    # LongLogsTotal's own policy, not NeverCache, decides.
    assert cached_after_reduce(capture, eventlog_cache, long, LongLogsTotal)
    assert not cached_after_reduce(capture, eventlog_cache, short, LongLogsTotal)

    settings.EVENTLOG_CACHE_POLICY = AlwaysCache()
    assert cached_after_reduce(capture, eventlog_cache, short, Total)
    assert not cached_after_reduce(capture, eventlog_cache, long, NeverCachedTotal)


# Timeouts: the aggregate's cache_timeout, else EVENTLOG_CACHE_TIMEOUT


class TimeoutRecordingCache(LocMemCache):
    """A local-memory cache that records the timeout of every set()."""

    def __init__(self, name: str, params: dict[str, Any]) -> None:
        super().__init__(name, params)
        self.timeouts: list[tuple[str, Any]] = []

    def set(
        self, key: str, value: Any, timeout: Any = None, version: int | None = None
    ) -> None:
        self.timeouts.append((key, timeout))
        super().set(key, value, timeout, version)


@pytest.fixture
def recording_cache(settings: Any) -> Iterator[TimeoutRecordingCache]:
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {
            "BACKEND": "tests.test_policies.TimeoutRecordingCache",
            "LOCATION": "eventlog-policy-timeouts",
        },
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    cache = caches["eventlog"]
    assert isinstance(cache, TimeoutRecordingCache)
    cache.clear()
    yield cache
    cache.clear()


_UNSET = object()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "aggregate_class", "expected"),
    [
        (_UNSET, Account, 86400),  # the default of EVENTLOG_CACHE_TIMEOUT
        (60, Account, 60),
        (None, Account, None),
        (60, ShortLivedTotal, 5),
        (None, ShortLivedTotal, 5),
        (60, LongLivedTotal, 3600),
    ],
)
def test_the_timeout_passed_to_the_cache(
    recording_cache: TimeoutRecordingCache,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    setting: object,
    aggregate_class: type[Aggregate],
    expected: int | None,
) -> None:
    if setting is _UNSET:
        del settings.EVENTLOG_CACHE_TIMEOUT
    else:
        settings.EVENTLOG_CACHE_TIMEOUT = setting
    log_id = open_account(1).log_id
    with django_capture_on_commit_callbacks(execute=True):
        Log.objects.reduce(log_id, aggregate_class)
    assert recording_cache.timeouts == [(cache_key(aggregate_class, log_id), expected)]


@pytest.mark.django_db
def test_entries_expire_after_their_timeout(
    eventlog_cache: BaseCache, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.EVENTLOG_CACHE_TIMEOUT = 1
    log_id = open_account(1).log_id
    with django_capture_on_commit_callbacks(execute=True):
        Log.objects.reduce(log_id, Account)  # the setting: 1 s
        Log.objects.reduce(log_id, LongLivedTotal)  # its own: 3600 s
    assert eventlog_cache.get(cache_key(Account, log_id)) is not None
    assert eventlog_cache.get(cache_key(LongLivedTotal, log_id)) is not None
    time.sleep(1.1)
    assert eventlog_cache.get(cache_key(Account, log_id)) is None
    assert eventlog_cache.get(cache_key(LongLivedTotal, log_id)) is not None
