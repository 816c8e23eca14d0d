"""pytest fixtures for testing code built on django_eventlog.

Enable them in the ``conftest.py`` at the top of your tests::

    pytest_plugins = ["django_eventlog.testing.pytest_plugin"]

They need pytest, not pytest-django (which your tests need for the database).
The plugin also calls :func:`~django_eventlog.testing.allow_flush` when pytest
starts, so that ``transactional_db`` tests can empty the store's tables.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import BaseCache
from django.test.utils import override_settings

from . import allow_flush, fresh_cache

__all__ = ["eventlog_cache", "eventlog_sync_cache_writes"]


def pytest_configure(config: pytest.Config) -> None:
    """Let test databases be flushed (:func:`~django_eventlog.testing.allow_flush`)."""
    allow_flush()


@pytest.fixture
def eventlog_cache() -> Iterator[BaseCache]:
    """Cache reductions in a new, empty local-memory cache for this test.

    :func:`~django_eventlog.testing.fresh_cache` as a fixture: counts of
    :func:`~django_eventlog.cache_stats` start at zero, and the test's
    background writes are waited for before the cache is emptied. Returns the
    cache.
    """
    with fresh_cache() as cache:
        yield cache


@pytest.fixture
def eventlog_sync_cache_writes() -> Iterator[None]:
    """Write cached reductions at commit, not in the background, in this test.

    Sets ``EVENTLOG_CACHE_WRITE_BEHIND = False`` for the test, so that a
    project whose settings turn write-behind on gets its cache entries (and
    :func:`~django_eventlog.cache_stats` counts) as soon as the transaction
    that read the events commits, with no
    :func:`~django_eventlog.wait_for_cache_writes`.
    """
    with override_settings(EVENTLOG_CACHE_WRITE_BEHIND=False):
        yield
