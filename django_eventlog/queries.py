"""Run the read SQL of :mod:`django_eventlog.sql`: read and stream rows.

Everything that reads events (``load``, ``reduce``, the admin timeline and
``eventlog_verify``) gets its rows from the functions below, as
:data:`~django_eventlog.sql.Row` tuples, and decodes them with
:mod:`django_eventlog.records`; everything that writes them goes through
:mod:`django_eventlog.inserts`. The hot reads (a page, a log's state) run on
the prepared cursor of :mod:`~django_eventlog.prepared`.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Generator, Iterable
from itertools import islice
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from .prepared import prepared_cursor
from .sql import Row, catalog_statements, db_uuid, statements
from .validation import INDEX_MAX

__all__ = [
    "achunks",
    "event_exists",
    "key_use",
    "kind_last_index",
    "kind_page",
    "last_index",
    "log_kinds",
    "page_rows",
    "previous_page_start",
    "scan_rows",
    "stored_types",
    "stream_rows",
    "triggers",
]


def key_use(
    using: str, key: str, count: int = 1
) -> tuple[uuid.UUID, str, list[Row]] | None:
    """The log of the event under ``key``, the log's kind, and up to ``count``
    events of that log from that event on (the first is the keyed one)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(statements(connection).select_key_use, [key, count])
        rows = cursor.fetchall()
    if not rows:
        return None
    log_id, kind = rows[0][0], rows[0][2]
    if not isinstance(log_id, uuid.UUID):
        log_id = uuid.UUID(log_id)
    return log_id, kind, [(row[1], *row[3:]) for row in rows]


def event_exists(using: str, log_id: uuid.UUID, index: int) -> bool:
    """Whether the log has an event at ``index``."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            statements(connection).select_event_exists,
            [db_uuid(log_id, connection), index],
        )
        return cursor.fetchone() is not None


def last_index(using: str, log_id: uuid.UUID) -> int | None:
    """The index of the log's last event; None when it has none, or there is
    no such log (one index probe)."""
    connection = connections[using]
    with prepared_cursor(connection) as cursor:
        cursor.execute(
            statements(connection).select_last_index, [db_uuid(log_id, connection)]
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def kind_last_index(using: str, log_id: uuid.UUID) -> tuple[str, int | None] | None:
    """The log's kind and the index of its last event (None: no event);
    None for no such log."""
    connection = connections[using]
    with prepared_cursor(connection) as cursor:
        cursor.execute(
            statements(connection).select_kind_last_index,
            [db_uuid(log_id, connection)],
        )
        row = cursor.fetchone()
    return None if row is None else (row[0], None if row[1] is None else int(row[1]))


# Reading


def page_rows(
    using: str,
    log_id: uuid.UUID,
    start: int,
    limit: int,
    *,
    descending: bool = False,
    type_name: str | None = None,
    payload_chars: int | None = None,
) -> list[Row]:
    """Up to ``limit`` events of the log from index ``start`` on (down, when
    ``descending``), of any type or of ``type_name``, with only the first
    ``payload_chars`` characters of each payload if given; one round trip."""
    connection = connections[using]
    sql = statements(connection)
    params: list[Any] = [db_uuid(log_id, connection)]
    if type_name is None and not descending and payload_chars is None:
        query = sql.select_page
    else:
        query = sql.page(
            descending=descending,
            typed=type_name is not None,
            clipped=payload_chars is not None,
        )
        if payload_chars is not None:
            params.insert(0, payload_chars)
        if type_name is not None:
            params.append(type_name)
    # No event lies past INDEX_MAX, and SQLite refuses integers past 2**63.
    params.extend([min(start, INDEX_MAX if descending else INDEX_MAX + 1), limit])
    with prepared_cursor(connection) as cursor:
        cursor.execute(query, params)
        return cast("list[Row]", cursor.fetchall())


def kind_page(
    using: str, log_id: uuid.UUID, start: int, limit: int
) -> tuple[str | None, list[Row]]:
    """The log's kind (None: no such log) and up to ``limit`` of its events from
    index ``start`` on, in one round trip."""
    connection = connections[using]
    params = [min(start, INDEX_MAX + 1), db_uuid(log_id, connection), limit]
    with prepared_cursor(connection) as cursor:
        cursor.execute(statements(connection).select_kind_page, params)
        rows = cursor.fetchall()
    if not rows:
        return None, []
    kind = rows[0][0]
    if rows[0][1] is None:  # the log, without events from ``start`` on
        return kind, []
    return kind, [cast(Row, tuple(row[1:])) for row in rows]


def previous_page_start(
    using: str,
    log_id: uuid.UUID,
    first: int,
    size: int,
    *,
    descending: bool,
    type_name: str | None = None,
) -> int | None:
    """Where the page of ``size`` events before the one starting at ``first``
    starts (the other way from ``descending``), or None at the start."""
    connection = connections[using]
    query = statements(connection).neighbours(
        before=not descending, typed=type_name is not None
    )
    params: list[Any] = [db_uuid(log_id, connection)]
    if type_name is not None:
        params.append(type_name)
    params.extend([first, size])
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    return rows[-1][0] if rows else None


def stream_rows(
    using: str,
    log_id: uuid.UUID,
    start: int,
    chunk_size: int,
    *,
    through: int | None = None,
    first: list[Row] | None = None,
) -> Generator[Row]:
    """The log's events from index ``start`` on (to ``through``, if given),
    ``chunk_size`` rows at a time.

    Without ``through``, the first chunk comes from a plain ``LIMIT`` query:
    one round trip, which is all a reduce from a cached state usually needs.
    The rest, if any, streams through a server-side cursor on PostgreSQL
    (unless ``DISABLE_SERVER_SIDE_CURSORS``, as ``QuerySet.iterator()``
    does). Events are immutable and contiguous, so the two statements cannot
    disagree: the second one only sees more events, never other ones. With
    ``through`` (a range known to be wanted whole) every row streams from
    the one cursor. ``first``: that first chunk, already read (by
    :func:`kind_page`).
    """
    if through is None:
        if first is None:
            first = page_rows(using, log_id, start, chunk_size)
        yield from first
        if len(first) < chunk_size:
            return
        start = first[-1][0] + 1
        del first  # memory stays one chunk deep while the rest streams
    connection = connections[using]
    sql = statements(connection)
    params: list[Any] = [db_uuid(log_id, connection), start]
    if through is None:
        query = sql.select_from
    else:
        query = sql.select_through
        params.append(through)
    yield from _cursor_rows(connection, query, params, chunk_size)


def scan_rows(
    using: str, log_ids: Iterable[uuid.UUID], kind: str | None, chunk_size: int
) -> Generator[tuple[uuid.UUID, Row]]:
    """Every event of ``log_ids`` (or of every log), of ``kind`` (or any), as
    (log id, row), ordered by log and index, ``chunk_size`` rows at a time."""
    connection = connections[using]
    params: list[Any] = [db_uuid(log_id, connection) for log_id in log_ids]
    query = statements(connection).scan(len(params), kind is not None)
    if kind is not None:
        params.append(kind)
    for log_id, *row in _cursor_rows(connection, query, params, chunk_size):
        if not isinstance(log_id, uuid.UUID):
            log_id = uuid.UUID(log_id)
        yield log_id, cast(Row, tuple(row))


def log_kinds(using: str, limit: int) -> list[str]:
    """Up to ``limit`` distinct kinds of logs, in order, one index probe each."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(catalog_statements(connection).select_kinds, [limit])
        return [row[0] for row in cursor.fetchall()]


def triggers(using: str) -> dict[str, bool] | None:
    """The triggers on the logs and events tables by name, each with whether it
    is enabled; None on a database where the library installs none."""
    connection = connections[using]
    sql = catalog_statements(connection)
    if sql.select_triggers is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(sql.select_triggers, list(sql.table_names))
        return {name: bool(enabled) for name, enabled in cursor.fetchall()}


def stored_types(using: str, chunk_size: int) -> Generator[str]:
    """Every distinct stored event type name, in order, one index probe each,
    ``chunk_size`` names at a time."""
    connection = connections[using]
    query = catalog_statements(connection).select_types
    for (type_name,) in _cursor_rows(connection, query, [], chunk_size):
        yield type_name


def _cursor_rows(
    connection: BaseDatabaseWrapper, query: str, params: list[Any], chunk_size: int
) -> Generator[Any]:
    chunked = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    cursor = connection.chunked_cursor() if chunked else connection.cursor()
    try:
        cursor.execute(query, params)
        while rows := cursor.fetchmany(chunk_size):
            yield from rows
            if len(rows) < chunk_size:
                break
    finally:
        cursor.close()


async def achunks(
    using: str, rows: Generator[Row], chunk_size: int
) -> AsyncIterator[list[Row]]:
    """``rows`` chunk by chunk, each fetched in sync_to_async's thread.

    Not QuerySet.aiterator(): on values_list() querysets it runs the query in
    the event loop's thread (SynchronousOnlyOperation, seen on Django 5.2).
    The same server-side cursor serves every chunk: thread-sensitive
    sync_to_async calls all run in one thread, on one connection.
    """

    def next_chunk() -> list[Row]:
        with connections[using].wrap_database_errors:
            return list(islice(rows, chunk_size))

    def close() -> None:
        with connections[using].wrap_database_errors:
            rows.close()

    try:
        while chunk := await sync_to_async(next_chunk)():
            yield chunk
            if len(chunk) < chunk_size:
                break
    finally:
        await sync_to_async(close)()
