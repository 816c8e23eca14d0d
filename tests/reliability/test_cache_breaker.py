"""A hung Redis must not slow every request: against a server that accepts
connections and never answers, the breaker stops calling it after a few
timeouts, and caching resumes by itself once a real redis-server answers on
that port."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django_redis.cache import RedisCache  # type: ignore[import-untyped]

from django_eventlog import Log, cache_stats
from django_eventlog.cache_breaker import breaker
from django_eventlog.caching import read
from django_eventlog.signals import reduced
from tests.conftest import stats_delta
from tests.domain import Account, Deposited, open_account
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.django_db(transaction=True)  # writes run at once

SOCKET_TIMEOUT = 0.2
REDUCES = 200
OPENED = "times in a row: not calling it"
CLOSED = "answers again"


class HungListener:
    """A TCP server on 127.0.0.1 that accepts connections and never replies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = socket.create_server(("127.0.0.1", port), backlog=64)
        self.server.settimeout(0.05)
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.held.append(connection)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.server.close()
        for connection in self.held:
            connection.close()


class TimedRedisCache(RedisCache):  # type: ignore[misc]
    """django-redis, recording each call and the time it took."""

    calls: ClassVar[list[tuple[str, float]]] = []
    lock = threading.Lock()

    def _timed(self, name: str, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return call()
        finally:
            with self.lock:
                self.calls.append((name, time.monotonic() - started))

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(
            "get", lambda: super(TimedRedisCache, self).get(*args, **kwargs)
        )

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(
            "set", lambda: super(TimedRedisCache, self).set(*args, **kwargs)
        )

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(
            "delete", lambda: super(TimedRedisCache, self).delete(*args, **kwargs)
        )


def names() -> list[str]:
    return [name for name, _ in TimedRedisCache.calls]


def waited() -> float:
    """Seconds spent inside cache calls so far."""
    return sum(seconds for _, seconds in TimedRedisCache.calls)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def hung(port: int, settings: Any) -> Iterator[HungListener]:
    """The eventlog cache: django-redis on a listener that never replies."""
    listener = HungListener(port)
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {
            "BACKEND": "tests.reliability.test_cache_breaker.TimedRedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": SOCKET_TIMEOUT,
                "SOCKET_TIMEOUT": SOCKET_TIMEOUT,
            },
        },
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    TimedRedisCache.calls = []
    try:
        yield listener
    finally:
        # django-redis keeps its pool per URL: close its sockets.
        cache: Any = caches["eventlog"]
        cache.client.get_client().connection_pool.disconnect()
        listener.stop()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger="django_eventlog")
    return lambda: [
        r.getMessage() for r in caplog.records if r.name == "django_eventlog"
    ]


@pytest.fixture
def outcomes() -> Iterator[list[str]]:
    seen: list[str] = []

    def receiver(sender: Any, cache: str, **kwargs: Any) -> None:
        seen.append(cache)

    reduced.connect(receiver)
    yield seen
    reduced.disconnect(receiver)


def test_200_reduces_against_a_hung_redis_wait_less_than_2_seconds(
    hung: HungListener, logged: Callable[[], list[str]], outcomes: list[str]
) -> None:
    state = open_account(10, 20)
    before, started = cache_stats(), time.monotonic()
    for _ in range(REDUCES):
        assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 30
    elapsed = time.monotonic() - started
    # The default breaker: 5 timeouts (read, write, read, write, read), then
    # every call skipped for 30 s.
    assert names() == ["get", "set", "get", "set", "get"]
    # Each of those waited for its socket timeout; not 200 x 0.4 s in all.
    assert all(s >= SOCKET_TIMEOUT * 0.9 for _, s in TimedRedisCache.calls)
    assert waited() < 2.0
    print(f"\n{REDUCES} reduces: {waited():.2f} s in cache calls, {elapsed:.2f} s")
    assert stats_delta(before) == {"errors": 5, "skipped": 2 * REDUCES - 5}
    assert outcomes == ["error"] * 3 + ["skipped"] * (REDUCES - 3)
    assert len([m for m in logged() if OPENED in m]) == 1
    assert [m for m in logged() if CLOSED in m] == []


def test_200_areduces_against_a_hung_redis_wait_less_than_2_seconds(
    hung: HungListener, logged: Callable[[], list[str]], outcomes: list[str]
) -> None:
    state = open_account(10, 20)

    async def areduce_many() -> None:
        for _ in range(REDUCES):
            reduction = await Log.objects.areduce(state.log_id, Account)
            assert reduction.aggregate.balance == 30

    before = cache_stats()
    async_to_sync(areduce_many)()
    # BaseCache.aget and aset run django-redis's get and set in a thread.
    assert names() == ["get", "set", "get", "set", "get"]
    assert waited() < 2.0
    assert stats_delta(before) == {"errors": 5, "skipped": 2 * REDUCES - 5}
    assert outcomes == ["error"] * 3 + ["skipped"] * (REDUCES - 3)
    assert len([m for m in logged() if OPENED in m]) == 1


def test_threads_share_the_breaker_of_their_process(
    hung: HungListener, logged: Callable[[], list[str]]
) -> None:
    threads, each = 8, 50
    start = threading.Barrier(threads)
    log_ids = [uuid.uuid4() for _ in range(threads)]

    def read_many(log_id: uuid.UUID) -> None:
        start.wait()
        for _ in range(each):
            assert read(Account, log_id).reduction is None

    before = cache_stats()
    running = [threading.Thread(target=read_many, args=(i,)) for i in log_ids]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    delta = stats_delta(before)
    # Reads in flight when the 5th timeout opened it still time out; no
    # thread waits on the cache once it is open.
    assert 5 <= delta["errors"] < 5 + threads
    assert delta == {
        "errors": delta["errors"],
        "skipped": threads * each - delta["errors"],
    }
    assert len(names()) == delta["errors"]
    assert len([m for m in logged() if OPENED in m]) == 1


def test_caching_resumes_within_one_cool_off_once_redis_answers_on_that_port(
    hung: HungListener,
    port: int,
    settings: Any,
    logged: Callable[[], list[str]],
    outcomes: list[str],
) -> None:
    cooloff = 1.0
    settings.EVENTLOG_CACHE_BREAKER_COOLOFF = cooloff
    state = open_account(10, 20)
    for _ in range(3):
        Log.objects.reduce(state.log_id, Account)
    assert breaker.is_open
    assert outcomes == ["error", "error", "error"]

    hung.stop()
    server = RedisServer(port=port)
    server.start()
    try:
        up = time.monotonic()
        state = Log.objects.append(state, Deposited(5))
        before = cache_stats()
        while stats_delta(before).get("writes", 0) == 0:
            assert time.monotonic() < up + cooloff + 2, "caching did not resume"
            assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 35
            time.sleep(0.02)
        # Within the cool-off (counted from before the server started), give
        # or take the polling loop's own time on a loaded machine.
        resumed = time.monotonic() - up
        assert resumed <= cooloff + 0.5
        assert not breaker.is_open
        # Skipped until the cool-off ended; then the probe found the new,
        # empty server: the read of a reduce (a miss, then its write), or its
        # write, when the cool-off ended between the two (the reduce's
        # outcome is then "skipped"). Either way nothing came from the cache.
        assert outcomes[-1] in {"miss", "skipped"}
        assert set(outcomes[3:-1]) <= {"skipped"}

        before = cache_stats()
        again = Log.objects.reduce(state.log_id, Account)
        assert again.aggregate.balance == 35
        assert stats_delta(before) == {"hits": 1}
        assert len([m for m in logged() if OPENED in m]) == 1
        assert len([m for m in logged() if CLOSED in m]) == 1
    finally:
        cache: Any = caches["eventlog"]
        cache.client.get_client().connection_pool.disconnect()
        server.stop()
