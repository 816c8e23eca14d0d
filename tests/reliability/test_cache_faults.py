"""The cache only saves work: when it dies, stalls or holds garbage, reduce
still returns exact figures, logs a warning and counts an error."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol, TypeVar

import msgspec
import pytest
from asgiref.sync import async_to_sync
from django.core.cache import BaseCache, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from django_eventlog import (
    EventRecord,
    Log,
    Reduction,
    cache_stats,
)
from django_eventlog.caching import cache_key
from tests.conftest import redis_cache, stats_delta
from tests.domain import Account, Deposited, open_account
from tests.redis_server import RedisServer

if TYPE_CHECKING:
    from pytest_django.fixtures import DjangoCaptureOnCommitCallbacks

pytestmark = pytest.mark.django_db

A = TypeVar("A", bound=Account)


class Reducer(Protocol):
    def __call__(self, log_id: uuid.UUID, aggregate_class: type[A]) -> Reduction[A]: ...


# The figures of the log every test reduces: opened by ada, 10 + 20 deposited.
EXPECTED = ("ada", 30, [0, 1, 2])


def figures(aggregate: Account) -> tuple[str, int, list[int]]:
    return aggregate.owner, aggregate.balance, aggregate.indices


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "django_eventlog" and record.levelno == logging.WARNING
    ]


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="django_eventlog")
    return caplog


@pytest.fixture
def reduce(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> Reducer:
    """Log.objects.reduce, then the on-commit cache write, as a commit would."""

    def reduce_and_commit(log_id: uuid.UUID, aggregate_class: type[A]) -> Reduction[A]:
        with django_capture_on_commit_callbacks(execute=True):
            return Log.objects.reduce(log_id, aggregate_class)

    return reduce_and_commit


# a. Redis stopped in the middle of a test, then restarted on the same port


@pytest.fixture
def start_redis(settings: Any) -> Iterator[Callable[[int | None], RedisServer]]:
    """Start private redis-servers; the first becomes the eventlog cache."""
    servers: list[RedisServer] = []

    def start(port: int | None = None) -> RedisServer:
        server = RedisServer(port=port)
        servers.append(server)
        server.start()
        if len(servers) == 1:
            settings.CACHES = {**settings.CACHES, "eventlog": redis_cache(server.url)}
            settings.EVENTLOG_CACHE_ALIAS = "eventlog"
        return server

    try:
        yield start
    finally:
        try:
            if settings.EVENTLOG_CACHE_ALIAS == "eventlog":
                # django-redis keeps its pool after the test: close its sockets.
                redis: Any = caches["eventlog"]
                redis.client.get_client().connection_pool.disconnect()
        finally:
            for server in servers:
                server.stop()


def test_reduce_and_append_carry_on_while_redis_is_down_then_cache_again(
    start_redis: Callable[[int | None], RedisServer],
    reduce: Reducer,
    warnings_log: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    server = start_redis(None)
    state = open_account(10, 20)
    assert figures(reduce(state.log_id, Account).aggregate) == EXPECTED
    before = cache_stats()
    cached = reduce(state.log_id, Account)
    assert figures(cached.aggregate) == EXPECTED
    assert stats_delta(before) == {"hits": 1}
    assert warnings_of(warnings_log) == []

    server.stop()
    state = Log.objects.append(cached, Deposited(5))
    state = Log.objects.append(state, Deposited(7))
    before = cache_stats()
    down = reduce(state.log_id, Account)
    assert figures(down.aggregate) == ("ada", 42, [0, 1, 2, 3, 4])
    assert down.through_index == 4
    # The read failed, then the write at commit failed: each is logged.
    assert stats_delta(before) == {"errors": 2}
    key = cache_key(Account, state.log_id)
    logged = warnings_of(warnings_log)
    assert len(logged) == 2
    assert logged[0].startswith(f"Reading cached reduction {key} failed")
    assert logged[1].startswith(f"Writing cached reduction {key} failed")

    # The async path fails open too (in a transaction, it writes at commit).
    warnings_log.clear()
    before = cache_stats()
    state = Log.objects.append(down, Deposited(1))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        down = async_to_sync(Log.objects.areduce)(state.log_id, Account)
    assert len(callbacks) == 1
    assert figures(down.aggregate) == ("ada", 43, [0, 1, 2, 3, 4, 5])
    assert stats_delta(before) == {"errors": 2}
    assert len(warnings_of(warnings_log)) == 2

    start_redis(server.port)
    warnings_log.clear()
    before = cache_stats()
    back = reduce(state.log_id, Account)
    assert figures(back.aggregate) == ("ada", 43, [0, 1, 2, 3, 4, 5])
    assert back.through_index == 5
    # The new redis-server starts empty: a miss, then the entry is written.
    assert stats_delta(before) == {"misses": 1, "writes": 1}
    before = cache_stats()
    again = reduce(state.log_id, Account)
    assert figures(again.aggregate) == figures(back.aggregate)
    assert stats_delta(before) == {"hits": 1}
    assert warnings_of(warnings_log) == []


# b. A cache that takes its time to refuse every call


class CacheDown(Exception):
    pass


class SlowBrokenCache(BaseCache):
    """Every call waits, then fails, like a cache server that stopped answering."""

    delay: ClassVar[float] = 0.2
    calls: ClassVar[list[str]] = []

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def _refuse(self, operation: str) -> NoReturn:
        self.calls.append(operation)
        time.sleep(self.delay)
        raise CacheDown(f"{operation}: no answer within {self.delay} s")

    def get(
        self, key: Any, default: Any | None = None, version: int | None = None
    ) -> Any:
        self._refuse("get")

    def set(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        self._refuse("set")

    def add(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        self._refuse("add")

    def delete(self, key: Any, version: int | None = None) -> bool:
        self._refuse("delete")

    def clear(self) -> None:
        self._refuse("clear")


@pytest.fixture
def slow_broken_cache(settings: Any) -> list[str]:
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {"BACKEND": "tests.reliability.test_cache_faults.SlowBrokenCache"},
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    SlowBrokenCache.calls = []
    return SlowBrokenCache.calls


# In autocommit the sync write runs at once and areduce writes with aset().
@pytest.mark.django_db(transaction=True)
def test_a_cache_slow_to_refuse_costs_time_but_never_figures(
    slow_broken_cache: list[str], warnings_log: pytest.LogCaptureFixture
) -> None:
    state = open_account(10, 20)
    assert slow_broken_cache == []  # writing events never touches the cache

    before, started = cache_stats(), time.monotonic()
    reduction = Log.objects.reduce(state.log_id, Account)
    elapsed = time.monotonic() - started
    assert figures(reduction.aggregate) == EXPECTED
    assert reduction.through_index == 2
    assert slow_broken_cache == ["get", "set"]
    assert elapsed >= 2 * SlowBrokenCache.delay
    assert stats_delta(before) == {"errors": 2}
    key = cache_key(Account, state.log_id)
    logged = warnings_of(warnings_log)
    assert len(logged) == 2
    assert logged[0].startswith(f"Reading cached reduction {key} failed")
    assert "CacheDown" in logged[0]
    assert logged[1].startswith(f"Writing cached reduction {key} failed")

    warnings_log.clear()
    state = Log.objects.append(reduction, Deposited(5))
    before = cache_stats()
    areduction = async_to_sync(Log.objects.areduce)(state.log_id, Account)
    assert figures(areduction.aggregate) == ("ada", 35, [0, 1, 2, 3])
    assert areduction.through_index == 3
    # BaseCache.aget and aset call get and set in a thread.
    assert slow_broken_cache == ["get", "set", "get", "set"]
    assert stats_delta(before) == {"errors": 2}
    logged = warnings_of(warnings_log)
    assert len(logged) == 2
    assert logged[0].startswith(f"Reading cached reduction {key} failed")
    assert logged[1].startswith(f"Writing cached reduction {key} failed")


# c. Entries that do not decode into the aggregate asked for


@dataclass
class Inflated(Account):
    """Account's shape with wrong figures: what a wrongly read entry would show."""

    def apply(self, record: EventRecord) -> None:
        super().apply(record)
        self.balance *= 1000


class InflatedAccount(Inflated):
    """Writes entries under Account's name and version."""

    aggregate_name = Account.aggregate_name


class AccountV2(Account):
    aggregate_name = Account.aggregate_name
    version = 2


class Shape(Account):
    aggregate_name = "tests.test_cache_faults.Shape"


@dataclass(init=False)
class ReshapedShape(Account):
    """Shape with a field that entries written by Shape lack."""

    aggregate_name = "tests.test_cache_faults.Shape"
    currency: str = field(kw_only=True)  # required: no default

    def __init__(self) -> None:
        super().__init__()
        self.currency = "EUR"


def entry_of(
    cache: BaseCache,
    reduce: Reducer,
    aggregate_class: type[Account],
    log_id: uuid.UUID,
) -> bytes:
    """Return the valid entry reducing the log caches, and remove it."""
    reduce(log_id, aggregate_class)
    key = cache_key(aggregate_class, log_id)
    entry = cache.get(key)
    assert isinstance(entry, bytes)
    cache.delete(key)
    return entry


# Each puts a bad entry where reducing the log into a class looks, and
# returns that class.
Planter = Callable[[BaseCache, Reducer, uuid.UUID], type[Account]]


def plant(value: object) -> Planter:
    def planter(
        cache: BaseCache,
        reduce: Reducer,
        log_id: uuid.UUID,
    ) -> type[Account]:
        cache.set(cache_key(Account, log_id), value)
        return Account

    return planter


def truncated_entry(
    cache: BaseCache,
    reduce: Reducer,
    log_id: uuid.UUID,
) -> type[Account]:
    entry = entry_of(cache, reduce, Account, log_id)
    cache.set(cache_key(Account, log_id), entry[:-4])
    return Account


def other_version(
    cache: BaseCache,
    reduce: Reducer,
    log_id: uuid.UUID,
) -> type[Account]:
    # An entry of this log and aggregate name, but of version 1.
    entry = entry_of(cache, reduce, InflatedAccount, log_id)
    cache.set(cache_key(AccountV2, log_id), entry)
    return AccountV2


def other_aggregate(
    cache: BaseCache,
    reduce: Reducer,
    log_id: uuid.UUID,
) -> type[Account]:
    entry = entry_of(cache, reduce, Inflated, log_id)
    cache.set(cache_key(Account, log_id), entry)
    return Account


def other_log(
    cache: BaseCache,
    reduce: Reducer,
    log_id: uuid.UUID,
) -> type[Account]:
    other = open_account(1_000_000, 1, 2, 3, owner="mallory")
    entry = entry_of(cache, reduce, Account, other.log_id)
    cache.set(cache_key(Account, log_id), entry)
    return Account


def changed_shape(
    cache: BaseCache,
    reduce: Reducer,
    log_id: uuid.UUID,
) -> type[Account]:
    # Same name and version (someone forgot to bump it), one more field.
    assert cache_key(Shape, log_id) == cache_key(ReshapedShape, log_id)
    reduce(log_id, Shape)
    assert isinstance(cache.get(cache_key(Shape, log_id)), bytes)
    return ReshapedShape


class Overdrawn(Exception):
    pass


class Unchecked(Account):
    aggregate_name = "tests.test_cache_faults.Checked"

    def apply(self, record: EventRecord) -> None:
        super().apply(record)
        self.balance = -abs(self.balance)


@dataclass
class Checked(Account):
    """Unchecked with a check on decoded states, added without a version bump."""

    aggregate_name = "tests.test_cache_faults.Checked"

    def __post_init__(self) -> None:
        if self.balance < 0:
            raise Overdrawn(self.balance)


def rejected_state(
    cache: BaseCache,
    reduce: Reducer,
    log_id: uuid.UUID,
) -> type[Account]:
    # msgspec runs __post_init__ on decoding; what it raises is its own.
    reduce(log_id, Unchecked)
    assert cache_key(Unchecked, log_id) == cache_key(Checked, log_id)
    return Checked


BAD_ENTRIES: dict[str, Planter] = {
    "garbage bytes": plant(b"\xc1\xffnot msgpack\x00"),
    "empty bytes": plant(b""),
    "msgpack of another shape": plant(msgspec.msgpack.encode([1, "two", None])),
    "a dict": plant({"owner": "mallory", "balance": 1_000_000}),
    "a str": plant("ada 30"),
    "an int": plant(30),
    "a truncated entry": truncated_entry,
    "an entry of another version": other_version,
    "an entry of another aggregate": other_aggregate,
    "an entry of another log": other_log,
    "an entry of a changed shape": changed_shape,
    "an entry __post_init__ rejects": rejected_state,
}


@pytest.mark.parametrize(
    "bad_entry",
    [pytest.param(planter, id=name) for name, planter in BAD_ENTRIES.items()],
)
def test_an_entry_that_does_not_decode_is_a_miss_and_gets_replaced(
    eventlog_cache: BaseCache,
    reduce: Reducer,
    warnings_log: pytest.LogCaptureFixture,
    bad_entry: Planter,
) -> None:
    state = open_account(10, 20)
    aggregate_class = bad_entry(eventlog_cache, reduce, state.log_id)
    key = cache_key(aggregate_class, state.log_id)
    planted = eventlog_cache.get(key)
    assert planted is not None

    warnings_log.clear()
    before = cache_stats()
    reduction = reduce(state.log_id, aggregate_class)
    assert type(reduction.aggregate) is aggregate_class
    assert figures(reduction.aggregate) == EXPECTED
    assert reduction.through_index == 2
    assert stats_delta(before) == {"errors": 1, "writes": 1}
    logged = warnings_of(warnings_log)
    assert len(logged) == 1
    assert logged[0].startswith(f"Cached reduction {key} does not decode")

    replaced = eventlog_cache.get(key)
    assert isinstance(replaced, bytes)
    assert replaced != planted
    warnings_log.clear()
    before = cache_stats()
    again = reduce(state.log_id, aggregate_class)
    assert figures(again.aggregate) == EXPECTED
    assert again.through_index == 2
    assert stats_delta(before) == {"hits": 1}
    assert warnings_of(warnings_log) == []
