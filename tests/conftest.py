"""Shared fixtures. The database is picked by EVENTLOG_DB (see testproject.settings)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.db import connection

from django_eventlog import reset_cache_stats

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


@pytest.fixture
def vendor(db: None) -> str:
    return connection.vendor
