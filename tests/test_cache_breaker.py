"""The cache circuit breaker: which errors are outages, its states, its
settings and checks, and reduce's cache calls going through it. The runs
against a hung Redis are in tests/reliability/test_cache_breaker.py."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NoReturn

import pytest
import redis.exceptions
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django_redis.exceptions import ConnectionInterrupted  # type: ignore[import-untyped]

from django_eventlog import Log, cache_stats, wait_for_cache_writes
from django_eventlog.cache_breaker import CALL, PROBE, SKIP, Breaker, breaker, is_outage
from django_eventlog.cache_entries import BadEntry
from django_eventlog.checks import check_settings
from django_eventlog.signals import reduced
from tests.conftest import stats_delta
from tests.domain import Account, open_account

OPENED = "failed 3 times in a row"
CLOSED = "answers again"


def wrapped(cause: Exception) -> ConnectionInterrupted:
    """What django-redis raises: the driver's error wrapped ``from`` it."""
    try:
        raise cause
    except Exception as e:
        try:
            raise ConnectionInterrupted(connection=None) from e
        except ConnectionInterrupted as interrupted:
            return interrupted


def raised_while_handling(handled: Exception, error: Exception) -> Exception:
    try:
        raise handled
    except Exception:
        try:
            raise error
        except Exception as e:
            return e


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (wrapped(redis.exceptions.TimeoutError("Timeout reading from socket")), True),
        (wrapped(redis.exceptions.ConnectionError("Connection refused")), True),
        (wrapped(redis.exceptions.BusyLoadingError("loading")), True),
        (TimeoutError("timed out"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (OSError(113, "No route to host"), True),
        (TimeoutError(), True),
        (wrapped(redis.exceptions.ResponseError("WRONGTYPE")), False),
        (BadEntry("not msgpack"), False),
        (ValueError("unpickling failed"), False),
        # A cache call made while handling an OSError is not thereby down.
        (raised_while_handling(OSError(), ValueError("bad")), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_only_connection_errors_and_timeouts_are_outages(
    error: Exception, outage: bool
) -> None:
    assert is_outage(error) is outage


def test_a_looping_cause_chain_is_walked_once() -> None:
    first, second = ValueError("a"), KeyError("b")
    first.__cause__, second.__cause__ = second, first
    assert is_outage(first) is False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


Logged = Callable[[], list[str]]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Logged:
    """What the library logged so far."""
    caplog.set_level(logging.DEBUG, logger="django_eventlog")
    return lambda: [
        r.getMessage() for r in caplog.records if r.name == "django_eventlog"
    ]


@pytest.fixture
def small_breaker(settings: Any) -> None:
    settings.EVENTLOG_CACHE_BREAKER_FAILURES = 3
    settings.EVENTLOG_CACHE_BREAKER_COOLOFF = 10


OUTAGE = ConnectionRefusedError(111, "Connection refused")


def fail(b: Breaker, times: int) -> None:
    for _ in range(times):
        permit = b.ask()
        assert permit == CALL
        b.failed(permit, OUTAGE)


@pytest.mark.usefixtures("small_breaker")
def test_opens_after_the_failures_in_a_row_skips_then_lets_one_probe_through(
    clock: Clock, logged: Logged
) -> None:
    b = Breaker(clock)
    fail(b, 2)
    assert b.ask() == CALL
    assert logged() == []
    fail(b, 1)
    assert b.is_open
    assert len(logged()) == 1
    assert OPENED in logged()[0]
    assert "not calling it for 10 s" in logged()[0]

    assert b.ask() == SKIP
    clock.now += 9.9
    assert b.ask() == SKIP
    clock.now += 0.1
    assert b.ask() == PROBE
    assert b.ask() == SKIP  # one probe at a time

    # Still down: another cool-off, logged no more.
    b.failed(PROBE, OUTAGE)
    assert b.ask() == SKIP
    clock.now += 10
    assert b.ask() == PROBE
    assert len(logged()) == 1

    b.answered(PROBE)
    assert not b.is_open
    assert b.ask() == CALL
    assert len(logged()) == 2
    assert CLOSED in logged()[1]
    # Closed anew: it takes 3 more outages in a row to open again.
    fail(b, 2)
    assert b.ask() == CALL


@pytest.mark.usefixtures("small_breaker")
def test_an_answer_or_an_error_that_is_no_outage_restarts_the_count(
    clock: Clock, logged: Logged
) -> None:
    b = Breaker(clock)
    fail(b, 2)
    b.answered(b.ask())
    fail(b, 2)
    b.failed(b.ask(), wrapped(redis.exceptions.ResponseError("WRONGTYPE")))
    fail(b, 2)
    b.failed(b.ask(), BadEntry("garbage"))
    fail(b, 2)
    assert b.ask() == CALL
    assert logged() == []


@pytest.mark.usefixtures("small_breaker")
def test_a_probe_answered_with_an_error_that_is_no_outage_closes(
    clock: Clock, logged: Logged
) -> None:
    b = Breaker(clock)
    fail(b, 3)
    clock.now += 10
    b.failed(b.ask(), ValueError("bad entry"))
    assert b.ask() == CALL
    assert len(logged()) == 2


@pytest.mark.usefixtures("small_breaker")
def test_calls_that_started_before_it_opened_change_nothing(clock: Clock) -> None:
    b = Breaker(clock)
    fail(b, 3)
    clock.now += 5
    b.answered(CALL)  # an answer that was on its way: no probe, no close
    assert b.ask() == SKIP
    b.failed(CALL, OUTAGE)  # does not push the probe back
    clock.now += 5
    assert b.ask() == PROBE


@pytest.mark.usefixtures("small_breaker")
def test_a_probe_that_never_reports_blocks_one_cool_off_only(clock: Clock) -> None:
    b = Breaker(clock)
    fail(b, 3)
    clock.now += 10
    assert b.ask() == PROBE  # its task is cancelled: no answer, no failure
    clock.now += 9
    assert b.ask() == SKIP
    clock.now += 1
    assert b.ask() == PROBE


def test_settings_are_read_when_used(settings: Any, clock: Clock) -> None:
    b = Breaker(clock)
    settings.EVENTLOG_CACHE_BREAKER_FAILURES = 2
    settings.EVENTLOG_CACHE_BREAKER_COOLOFF = 0.5
    fail(b, 2)
    assert b.ask() == SKIP
    clock.now += 0.5
    assert b.ask() == PROBE


def test_defaults_open_after_5_outages_for_30_seconds(clock: Clock) -> None:
    b = Breaker(clock)
    fail(b, 5)
    clock.now += 29.9
    assert b.ask() == SKIP
    clock.now += 0.1
    assert b.ask() == PROBE


def test_threads_lose_no_failure_and_share_one_probe(
    settings: Any, clock: Clock, logged: Logged
) -> None:
    threads, each = 8, 2000
    settings.EVENTLOG_CACHE_BREAKER_FAILURES = threads * each
    settings.EVENTLOG_CACHE_BREAKER_COOLOFF = 10
    b = Breaker(clock)
    permits: list[int] = []

    def fail_many() -> None:
        for _ in range(each):
            b.failed(CALL, OUTAGE)

    def ask() -> None:
        permits.append(b.ask())

    def run_together(target: Callable[[], None]) -> None:
        start = threading.Barrier(threads)

        def started() -> None:
            start.wait()
            target()

        running = [threading.Thread(target=started) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()

    run_together(fail_many)
    # Every one of the 16000 failures counted: the last one opened it, once.
    assert b.is_open
    assert len(logged()) == 1
    clock.now += 10
    run_together(ask)
    assert sorted(permits) == [SKIP] * (threads - 1) + [PROBE]


@pytest.mark.usefixtures("small_breaker")
def test_a_forked_child_starts_closed() -> None:
    fail(breaker, 3)
    assert breaker.is_open
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns when other threads (a cache writer) exist.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        try:
            os.write(write, bytes([breaker.is_open, breaker.ask()]))
        finally:
            os._exit(0)
    os.close(write)
    reported = os.read(read, 2)
    os.close(read)
    os.waitpid(pid, 0)
    assert reported == bytes([False, CALL])
    assert breaker.ask() == SKIP  # the parent's stays open


# Settings and checks


@pytest.mark.parametrize(
    ("name", "value", "check_id"),
    [
        ("EVENTLOG_CACHE_BREAKER_FAILURES", 0, "django_eventlog.E014"),
        ("EVENTLOG_CACHE_BREAKER_FAILURES", "5", "django_eventlog.E014"),
        ("EVENTLOG_CACHE_BREAKER_FAILURES", True, "django_eventlog.E014"),
        ("EVENTLOG_CACHE_BREAKER_FAILURES", 2.5, "django_eventlog.E014"),
        ("EVENTLOG_CACHE_BREAKER_COOLOFF", 0, "django_eventlog.E015"),
        ("EVENTLOG_CACHE_BREAKER_COOLOFF", -1.0, "django_eventlog.E015"),
        ("EVENTLOG_CACHE_BREAKER_COOLOFF", "30", "django_eventlog.E015"),
        ("EVENTLOG_CACHE_BREAKER_COOLOFF", None, "django_eventlog.E015"),
        ("EVENTLOG_CACHE_BREAKER_COOLOFF", float("nan"), "django_eventlog.E015"),
        ("EVENTLOG_CACHE_BREAKER_COOLOFF", float("inf"), "django_eventlog.E015"),
    ],
)
def test_checks_refuse_a_bad_breaker_setting(
    settings: Any, name: str, value: object, check_id: str
) -> None:
    setattr(settings, name, value)
    assert [error.id for error in check_settings()] == [check_id]


@pytest.mark.parametrize(
    ("failures", "cooloff"), [(1, 0.25), (5, 30), (100, 600), (3, 1)]
)
def test_checks_accept_good_breaker_settings(
    settings: Any, failures: int, cooloff: float
) -> None:
    settings.EVENTLOG_CACHE_BREAKER_FAILURES = failures
    settings.EVENTLOG_CACHE_BREAKER_COOLOFF = cooloff
    assert check_settings() == []


# Reduce's cache calls through the breaker


class OutageCache(LocMemCache):
    """Process memory that refuses connections while ``down`` is set."""

    down: ClassVar[bool] = False
    calls: ClassVar[list[str]] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            self._refuse()

    def _refuse(self) -> NoReturn:
        raise ConnectionRefusedError(111, "Connection refused")

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self._call("get")
        return super().get(*args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> None:
        self._call("set")
        super().set(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        self._call("delete")
        return super().delete(*args, **kwargs)


@pytest.fixture
def outage_cache(settings: Any) -> Iterator[type[OutageCache]]:
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {
            "BACKEND": "tests.test_cache_breaker.OutageCache",
            "LOCATION": "breaker-tests",
        },
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    settings.EVENTLOG_CACHE_BREAKER_FAILURES = 3
    settings.EVENTLOG_CACHE_BREAKER_COOLOFF = 60
    OutageCache.down, OutageCache.calls = False, []
    caches["eventlog"].clear()
    yield OutageCache
    OutageCache.down = False


@pytest.fixture
def outcomes() -> Iterator[list[str]]:
    seen: list[str] = []

    def receiver(sender: Any, cache: str, **kwargs: Any) -> None:
        seen.append(cache)

    reduced.connect(receiver)
    yield seen
    reduced.disconnect(receiver)


@pytest.mark.django_db(transaction=True)
def test_reduce_skips_a_cache_that_is_down_and_says_so(
    outage_cache: type[OutageCache], outcomes: list[str], logged: Logged
) -> None:
    state = open_account(10, 20)
    outage_cache.down = True
    before = cache_stats()
    for _ in range(4):
        assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 30
    # read, write, read: open; then nothing reaches the cache.
    assert outage_cache.calls == ["get", "set", "get"]
    assert outcomes == ["error", "error", "skipped", "skipped"]
    assert stats_delta(before) == {"errors": 3, "skipped": 5}
    opened = [m for m in logged() if OPENED in m]
    assert len(opened) == 1
    assert "'eventlog'" in opened[0]


@pytest.mark.django_db(transaction=True)
def test_areduce_obeys_the_same_breaker(
    outage_cache: type[OutageCache], outcomes: list[str]
) -> None:
    state = open_account(10, 20)
    outage_cache.down = True
    before = cache_stats()
    Log.objects.reduce(state.log_id, Account)  # 2 failures, sync
    for _ in range(3):
        areduction = async_to_sync(Log.objects.areduce)(state.log_id, Account)
        assert areduction.aggregate.balance == 30
    # The async read is the third failure; its aset is already skipped.
    assert outage_cache.calls == ["get", "set", "get"]
    assert outcomes == ["error", "error", "skipped", "skipped"]
    assert stats_delta(before) == {"errors": 3, "skipped": 5}


@pytest.mark.django_db(transaction=True)
def test_write_behind_writes_go_through_the_breaker(
    outage_cache: type[OutageCache], settings: Any
) -> None:
    settings.EVENTLOG_CACHE_WRITE_BEHIND = True
    state = open_account(10, 20)
    outage_cache.down = True
    before = cache_stats()
    for _ in range(3):
        Log.objects.reduce(state.log_id, Account)
        assert wait_for_cache_writes(timeout=5)
    assert outage_cache.calls == ["get", "set", "get"]
    assert stats_delta(before) == {"errors": 3, "skipped": 3}


@pytest.mark.django_db(transaction=True)
def test_the_probe_after_the_cool_off_resumes_caching(
    outage_cache: type[OutageCache],
    settings: Any,
    outcomes: list[str],
    logged: Logged,
) -> None:
    settings.EVENTLOG_CACHE_BREAKER_COOLOFF = 0.3
    state = open_account(10, 20)
    outage_cache.down = True
    for _ in range(2):
        Log.objects.reduce(state.log_id, Account)
    assert breaker.is_open
    outage_cache.down = False
    outage_cache.calls.clear()
    Log.objects.reduce(state.log_id, Account)
    assert outage_cache.calls == []  # still cooling off
    time.sleep(0.3)
    before = cache_stats()
    Log.objects.reduce(state.log_id, Account)
    Log.objects.reduce(state.log_id, Account)
    assert outage_cache.calls == ["get", "set", "get"]
    assert outcomes[-2:] == ["miss", "hit"]
    assert stats_delta(before) == {"misses": 1, "writes": 1, "hits": 1}
    assert [m for m in logged() if CLOSED in m] == [logged()[-1]]


def test_changing_the_cache_settings_closes_the_breaker(settings: Any) -> None:
    settings.EVENTLOG_CACHE_BREAKER_FAILURES = 1
    fail(breaker, 1)
    assert breaker.is_open
    settings.CACHES = {
        **settings.CACHES,
        "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    assert not breaker.is_open


@pytest.mark.django_db(transaction=True)
def test_a_cache_that_answers_never_opens_it(
    outage_cache: type[OutageCache], outcomes: list[str]
) -> None:
    state = open_account(10)
    for _ in range(10):
        Log.objects.reduce(state.log_id, Account)
    assert not breaker.is_open
    assert outcomes == ["miss"] + ["hit"] * 9
    assert cache_stats().skipped == 0
