"""Shared fixtures. The database is picked by EVENTLOG_DB (see testproject.settings)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import BaseCache, caches
from django.db import connection

from django_eventlog import CacheStats, cache_stats, reset_cache_stats
from django_eventlog.testing import allow_flush
from tests.redis_server import RedisServer
from tests.sessions import sessions  # noqa: F401 (a fixture)

ON_POSTGRESQL = os.environ.get("EVENTLOG_DB", "sqlite") == "postgresql"


def pytest_report_header() -> str:
    return f"django_eventlog database: {os.environ.get('EVENTLOG_DB', 'sqlite')}"


@pytest.fixture(autouse=True)
def _postgresql_only(request: pytest.FixtureRequest) -> None:
    # A PostgreSQL test run on SQLite fails rather than skips: select it out
    # with -m "not postgresql" instead (the Makefile does).
    if request.node.get_closest_marker("postgresql") and not ON_POSTGRESQL:
        pytest.fail("This test needs EVENTLOG_DB=postgresql.")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # Entries and counts of one test never leak into the next.
    caches["default"].clear()
    reset_cache_stats()
    yield
    caches["default"].clear()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis of REDIS_URL (CI starts one), else a private redis-server."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    try:
        server = RedisServer()
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server.url
    server.stop()


def stats_delta(before: CacheStats) -> dict[str, int]:
    """Return the cache counts that changed since ``before``, by how much."""
    after = cache_stats()
    return {
        name: getattr(after, name) - getattr(before, name)
        for name in CacheStats.__dataclass_fields__
        if getattr(after, name) != getattr(before, name)
    }


def redis_cache(url: str) -> dict[str, Any]:
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }


@pytest.fixture(params=["locmem", "redis"])
def eventlog_cache(
    request: pytest.FixtureRequest, settings: Any
) -> Iterator[BaseCache]:
    """The cache of cached reductions: process memory, then a real Redis."""
    if request.param == "redis":
        config = redis_cache(request.getfixturevalue("redis_url"))
    else:
        config = {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "eventlog-tests",
        }
    settings.CACHES = {**settings.CACHES, "eventlog": config}
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    cache = caches["eventlog"]
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def vendor(db: None) -> str:
    return connection.vendor


def pytest_configure(config: pytest.Config) -> None:
    # Test databases are flushed between transactional tests, which the
    # store's triggers refuse to anyone else.
    allow_flush()
