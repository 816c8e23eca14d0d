"""Helpers for testing code built on django_eventlog.

``make_log`` writes a log holding given events; ``fresh_cache`` points
cached reductions at an empty local-memory cache for a block of code;
``allow_flush`` lets Django's ``flush`` empty test databases, which the
store's triggers otherwise refuse. None of them needs pytest or factory-boy.
Two optional parts need them:

``django_eventlog.testing.factories``
    :class:`~django_eventlog.testing.factories.LogFactory`, a factory-boy
    factory of logs (also importable from here). Needs ``factory-boy``.
``django_eventlog.testing.pytest_plugin``
    The pytest fixtures ``eventlog_cache`` and ``eventlog_sync_cache_writes``,
    and ``allow_flush()`` for the whole run: add
    ``pytest_plugins = ["django_eventlog.testing.pytest_plugin"]`` to the
    ``conftest.py`` at the top of your tests.
``django_eventlog.testing.runner``
    :class:`~django_eventlog.testing.runner.DiscoverRunner`, Django's test
    runner with ``allow_flush()``, for ``TEST_RUNNER``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.test.utils import override_settings

from ..caching import reset_cache_stats, wait_for_cache_writes
from .logs import make_log

if TYPE_CHECKING:
    from .factories import LogFactory

__all__ = ["CACHE_ALIAS", "LogFactory", "allow_flush", "fresh_cache", "make_log"]

#: The cache alias :func:`fresh_cache` adds to ``CACHES`` while it is active.
CACHE_ALIAS = "django_eventlog_testing"


@contextmanager
def fresh_cache(*, timeout: float = 10.0) -> Iterator[BaseCache]:
    """Cache reductions in a new, empty local-memory cache within the block.

    Adds the alias :data:`CACHE_ALIAS` to ``CACHES`` and points
    ``EVENTLOG_CACHE_ALIAS`` at it (with ``override_settings``), so a test
    sees no entry another test wrote and never touches your real cache. On
    entry it waits for background writes queued earlier
    (``EVENTLOG_CACHE_WRITE_BEHIND``) and zeroes
    :func:`~django_eventlog.cache_stats`, so the counts are the block's own; on
    exit it waits for the block's background writes, then empties the cache.
    Yields the cache::

        with fresh_cache() as cache:
            Log.objects.reduce(state.log_id, Account)
            assert cache_stats().writes == 1

    Usable as a decorator, and in a ``django.test.TestCase`` with
    ``self.enterContext(fresh_cache())`` (Python 3.11+). Raises
    ``TimeoutError`` on exit if the background writes take longer than
    ``timeout`` seconds.
    """
    wait_for_cache_writes(timeout)
    location = f"{CACHE_ALIAS}-{uuid.uuid4().hex}"
    config: dict[str, Any] = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": location,
    }
    with override_settings(
        CACHES={**settings.CACHES, CACHE_ALIAS: config},
        EVENTLOG_CACHE_ALIAS=CACHE_ALIAS,
    ):
        cache = caches[CACHE_ALIAS]
        reset_cache_stats()
        try:
            yield cache
        finally:
            finished = wait_for_cache_writes(timeout)
            cache.clear()
        if not finished:
            raise TimeoutError(
                f"Background cache writes did not finish within {timeout} seconds."
            )


def allow_flush() -> None:
    """Let Django's ``flush`` empty the store's tables in this process.

    The database refuses to empty the logs and events tables (``TRUNCATE`` on
    PostgreSQL, ``DELETE`` on SQLite), for every writer. Test databases are
    emptied that way between ``TransactionTestCase`` tests (and pytest-django's
    ``transactional_db``); after this call, each ``flush`` switches the
    refusal off on its own connection while it runs, and nothing else does.
    Call it once in the test set-up: the pytest plugin and
    :class:`~django_eventlog.testing.runner.DiscoverRunner` do. Calling it
    again does nothing.
    """
    # Imported here: importing it before django.db.models is a circle.
    from django.db.backends.base.operations import BaseDatabaseOperations

    from ..log_kinds import forget as forget_kinds
    from ..triggers import flushing

    flush = BaseDatabaseOperations.execute_sql_flush
    if getattr(flush, "_django_eventlog_allows_flush", False):
        return

    @functools.wraps(flush)
    def execute_sql_flush(self: Any, sql_list: Any) -> None:
        with flushing(self.connection):
            flush(self, sql_list)
        # An emptied database may give a log id to a log of another kind.
        forget_kinds()

    execute_sql_flush._django_eventlog_allows_flush = True  # type: ignore[attr-defined]
    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]


def __getattr__(name: str) -> Any:
    # LogFactory needs factory-boy, which the rest of this module does not.
    if name == "LogFactory":
        from .factories import LogFactory

        return LogFactory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
