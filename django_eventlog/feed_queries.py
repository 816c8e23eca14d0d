"""Run the feed's SQL (:mod:`django_eventlog.sql.feed`) on a plain cursor;
the page, read on every poll, on the prepared one
(:mod:`~django_eventlog.prepared`).

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from .positions import Position
from .prepared import prepared_cursor
from .sql import FeedRow, feed_statements, statements

__all__ = [
    "ahead",
    "behind",
    "head",
    "held_back",
    "holder",
    "horizon",
    "kinds",
    "page",
]


def _position(connection: BaseDatabaseWrapper, after: Position) -> list[Any]:
    # SQLite orders by the id alone.
    return list(after) if connection.vendor == "postgresql" else [after[1]]


def page(
    using: str,
    after: Position,
    kinds: Sequence[str],
    types: Sequence[str],
    limit: int,
) -> list[FeedRow]:
    """Up to ``limit`` events the feed delivers now after ``after``, of one
    of ``kinds`` and ``types`` (empty: any), in feed order."""
    connection = connections[using]
    feed = feed_statements(connection)
    query = feed.page(len(kinds), len(types))
    params = [*_position(connection, after), *kinds, *types, limit]
    with prepared_cursor(connection, binary=feed.fast_loads) as cursor:
        if feed.fast_loads:
            _load_fast(cursor.cursor)
        cursor.execute(query, params)
        return cast("list[FeedRow]", cursor.fetchall())


def _load_fast(cursor: Any) -> None:
    """Set up the psycopg 3 cursor under Django's wrapper, for its own
    queries only, to load a page's rows in C: timestamptz with psycopg's own
    loader (Django's parses in Python), and, when it binds server-side
    (the prepared cursor does, and Django's own with
    ``OPTIONS["server_side_binding"]``), rows in the binary format, which
    the server also writes faster. A client-side binding cursor returns
    text only."""
    from psycopg import ClientCursor, pq
    from psycopg.types.datetime import TimestamptzLoader

    cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
    if not isinstance(cursor, ClientCursor):
        cursor.format = pq.Format.BINARY


#: SQLite: the most ids in one query (its default limit of parameters was 999).
_SQLITE_IDS = 500


def kinds(using: str, log_ids: Sequence[Any]) -> list[tuple[Any, str]]:
    """(log id, kind) of each of ``log_ids`` that exists; the ids as the
    driver returns them in a :data:`FeedRow`."""
    connection = connections[using]
    feed = feed_statements(connection)
    found: list[tuple[Any, str]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(feed.kinds, [list(log_ids)])
            found.extend(cursor.fetchall())
        else:
            for start in range(0, len(log_ids), _SQLITE_IDS):
                chunk = log_ids[start : start + _SQLITE_IDS]
                cursor.execute(feed.kinds_sqlite(len(chunk)), list(chunk))
                found.extend(cursor.fetchall())
    return found


def head(using: str) -> Position | None:
    """The last position the feed delivers now; None for none."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(feed_statements(connection).head)
        row = cursor.fetchone()
    if row is None or row[1] is None:
        return None
    return (row[0] or 0, row[1])


def behind(
    using: str,
    after: Position,
    kinds: Sequence[str],
    types: Sequence[str],
    cap: int,
) -> tuple[int, datetime | None]:
    """How many committed events after ``after`` (of ``kinds`` and
    ``types``) are yet to be read, at most ``cap``, held back by the horizon
    or not, and when the first of them was recorded."""
    connection = connections[using]
    query = feed_statements(connection).behind(len(kinds), len(types))
    params = [*_position(connection, after), *kinds, *types, cap]
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        count, first = cursor.fetchone()
    if first is not None:
        convert = statements(connection).convert_recorded_at
        first = first if convert is None else convert(first)
    return count, first


def held_back(using: str, cap: int) -> int:
    """How many committed events the horizon holds back now, at most ``cap``
    (always 0 on SQLite)."""
    connection = connections[using]
    query = feed_statements(connection).held_back
    if query is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(query, [cap])
        return int(cursor.fetchone()[0])


def holder(using: str) -> tuple[int, float, str, str] | None:
    """The oldest other transaction that holds a transaction id: pid, its
    age in seconds, state and the start of its query. None if there is none
    or on SQLite."""
    connection = connections[using]
    query = feed_statements(connection).holder
    if query is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(query)
        row = cursor.fetchone()
    if row is None:
        return None
    pid, seconds, state, text = row
    return int(pid), float(seconds or 0), str(state or ""), str(text or "")


def horizon(using: str) -> int | None:
    """The horizon now: the feed delivers events whose txid is below it
    (None on SQLite, which holds nothing back)."""
    connection = connections[using]
    value = feed_statements(connection).horizon_value
    if value is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {value}")
        return int(cursor.fetchone()[0])


def ahead(using: str) -> tuple[int, int] | None:
    """(greatest stored txid, next transaction id) when stored positions are
    ahead of the cluster's transaction ids (events copied from another
    cluster); None when they are not, and on SQLite."""
    connection = connections[using]
    query = feed_statements(connection).ahead
    if query is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(query)
        stored, current = cursor.fetchone()
    if stored is None or stored < current:
        return None
    return int(stored), int(current)
