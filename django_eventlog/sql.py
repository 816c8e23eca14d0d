"""All SQL text of the library, and the functions that run it.

Every statement that writes or reads the events table is built here once per
database alias, from the models' table and column names, and run on a plain
cursor: the hot paths skip the ORM's query building and per-row conversion
(``docs/performance.md`` says why). Everything that reads events (``load``,
``reduce``, the admin timeline and ``eventlog_verify``) gets its rows from
the functions below, as :data:`Row` tuples, and decodes them with
:mod:`django_eventlog.records`.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import nullcontext
from datetime import datetime
from itertools import islice
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import IntegrityError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .validation import INDEX_MAX

__all__ = [
    "LOG_INDEX_CONSTRAINT",
    "Row",
    "Statements",
    "achunks",
    "event_exists",
    "insert_event",
    "insert_log",
    "key_use",
    "page_rows",
    "previous_page_start",
    "scan_rows",
    "statements",
    "stream_rows",
    "violated_constraint",
]

#: The name of the ``UNIQUE (log, index)`` constraint.
LOG_INDEX_CONSTRAINT = "django_eventlog_event_log_index_uniq"

#: One stored event: index, type, payload as JSON text, recorded_at as the
#: driver returns it (see :attr:`Statements.convert_recorded_at`), key.
Row = tuple[int, str, str, datetime, "str | None"]

_EVENT_FIELDS = ("log", "index", "type", "payload", "recorded_at", "idempotency_key")


def _models() -> tuple[type[models.Model], type[models.Model]]:
    # Through the app registry: the models module imports the manager, which
    # imports this module.
    return (
        apps.get_model("django_eventlog", "Log"),
        apps.get_model("django_eventlog", "Event"),
    )


class Statements:
    """The SQL of one database alias, built once."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.vendor = connection.vendor
        log_model, event_model = _models()
        qn = connection.ops.quote_name
        self.log_table = log_table = qn(log_model._meta.db_table)
        self.log_id_col, self.log_kind_col = qn("id"), qn("kind")
        self.event_table = event_table = qn(event_model._meta.db_table)

        def bare(name: str) -> str:
            field = cast("models.Field[Any, Any]", event_model._meta.get_field(name))
            return qn(cast(str, field.column))

        def column(name: str) -> str:
            return f"{event_table}.{bare(name)}"

        self._recorded_at_field = cast(
            "models.Field[Any, Any]", event_model._meta.get_field("recorded_at")
        )
        postgresql = connection.vendor == "postgresql"
        log, index, type_, payload, recorded_at, key = map(column, _EVENT_FIELDS)
        self.log_col, self.index_col, self.type_col = log, index, type_

        # The write path.
        columns = ", ".join(map(bare, _EVENT_FIELDS))
        values = f"%s, %s, %s, {'%s::jsonb' if postgresql else '%s'}, %s, %s"
        self.insert_log = (
            f"INSERT INTO {log_table} ({qn('id')}, {qn('kind')}, {qn('created_at')}) "
            "VALUES (%s, %s, %s)"
        )
        self.insert_first_event = (
            f"INSERT INTO {event_table} ({columns}) VALUES ({values})"
        )
        #: PostgreSQL: the log and its first event in one statement (a
        #: data-modifying CTE, which SQLite lacks).
        self.create_log: str | None = None
        if postgresql:
            self.create_log = (
                f"WITH new_log AS ({self.insert_log} RETURNING {qn('id')}) "
                f"INSERT INTO {event_table} ({columns}) SELECT {values} FROM new_log"
            )
        # The INSERT only happens when the event before it exists, so a state
        # ahead of the log (say, from a rolled-back transaction) cannot leave
        # a gap; at index 0 it checks that the log exists.
        insert_select = f"INSERT INTO {event_table} ({columns}) SELECT {values} WHERE "
        self.insert_event_if_log = (
            f"{insert_select}EXISTS (SELECT 1 FROM {log_table} WHERE {qn('id')} = %s)"
        )
        self.insert_event_if_previous = (
            f"{insert_select}EXISTS (SELECT 1 FROM {event_table} "
            f"WHERE {log} = %s AND {index} = %s)"
        )

        # The read path: the payload as JSON text, which msgspec decodes into
        # the event class in one pass (no json.loads, then a conversion).
        self.convert_recorded_at: Callable[[Any], Any] | None
        if postgresql:
            payload = f"{payload}::text"
            # As timestamp in the session's time zone, which Django sets to the
            # connection's: psycopg parses that in C, where the timestamptz
            # loader Django installs parses in Python (4 us a row).
            recorded_at = f"{recorded_at}::timestamp"
            tz = connection.timezone
            self.convert_recorded_at = (
                None if tz is None else functools.partial(datetime.replace, tzinfo=tz)
            )
        else:
            self.convert_recorded_at = self._orm_converter(connection)
        self.selected = f"{index}, {type_}, {payload}, {recorded_at}, {key}"
        self.select_from = (
            f"SELECT {self.selected} FROM {event_table} "
            f"WHERE {log} = %s AND {index} >= %s ORDER BY {index}"
        )
        self.select_through = (
            f"SELECT {self.selected} FROM {event_table} WHERE {log} = %s "
            f"AND {index} >= %s AND {index} <= %s ORDER BY {index}"
        )
        self.select_page = self.page(descending=False, typed=False)
        self.select_key_use = (
            f"SELECT {log}, {index}, {type_}, {payload} FROM {event_table} "
            f"WHERE {key} = %s"
        )
        self.select_event_exists = (
            f"SELECT 1 FROM {event_table} WHERE {log} = %s AND {index} = %s"
        )

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def page(self, *, descending: bool, typed: bool) -> str:
        """A page of one log from an index on, either way, optionally of one type.

        Parameters: log id, [type,] first index, limit.
        """
        where = f"{self.log_col} = %s"
        if typed:
            where += f" AND {self.type_col} = %s"
        bound = "<=" if descending else ">="
        order = f"{self.index_col} DESC" if descending else self.index_col
        return (
            f"SELECT {self.selected} FROM {self.event_table} "
            f"WHERE {where} AND {self.index_col} {bound} %s ORDER BY {order} LIMIT %s"
        )

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def neighbours(self, *, before: bool, typed: bool) -> str:
        """The indices of up to ``limit`` events next to one, nearest first.

        Parameters: log id, [type,] index, limit.
        """
        where = f"{self.log_col} = %s"
        if typed:
            where += f" AND {self.type_col} = %s"
        bound, order = (
            ("<", f"{self.index_col} DESC") if before else (">", self.index_col)
        )
        return (
            f"SELECT {self.index_col} FROM {self.event_table} "
            f"WHERE {where} AND {self.index_col} {bound} %s ORDER BY {order} LIMIT %s"
        )

    def scan(self, log_count: int, by_kind: bool) -> str:
        """Every event of the given logs (or all), of one kind or any, by log
        and index. Parameters: the log ids, [kind]."""
        conditions = []
        if log_count:
            placeholders = ", ".join(["%s"] * log_count)
            conditions.append(f"{self.log_col} IN ({placeholders})")
        if by_kind:
            conditions.append(
                f"{self.log_col} IN (SELECT {self.log_id_col} FROM {self.log_table} "
                f"WHERE {self.log_kind_col} = %s)"
            )
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return (
            f"SELECT {self.log_col}, {self.selected} FROM {self.event_table}{where} "
            f"ORDER BY {self.log_col}, {self.index_col}"
        )

    def _orm_converter(
        self, connection: BaseDatabaseWrapper
    ) -> Callable[[Any], Any] | None:
        """What the ORM applies to a selected recorded_at (SQLite: text to datetime)."""
        field = self._recorded_at_field
        column = field.get_col(field.model._meta.db_table)
        converters = [
            *connection.ops.get_db_converters(column),
            *column.get_db_converters(connection),
        ]
        if not converters:
            return None

        def convert(value: Any) -> Any:
            for converter in converters:
                value = converter(value, column, connection)
            return value

        return convert


_statements: dict[str, Statements] = {}


def statements(connection: BaseDatabaseWrapper) -> Statements:
    """The statements of ``connection``'s alias."""
    # Per alias: the converters are bound to the alias's settings (TIME_ZONE).
    found = _statements.get(connection.alias)
    if found is None or found.vendor != connection.vendor:
        found = _statements[connection.alias] = Statements(connection)
    return found


def db_uuid(value: uuid.UUID, connection: BaseDatabaseWrapper) -> Any:
    """A log id as the database stores it (without a uuid type: 32 hex digits)."""
    return value if connection.features.has_native_uuid_field else value.hex


def violated_constraint(error: IntegrityError) -> str | None:
    """The constraint a database error names (psycopg's diagnostics), if any."""
    diag = getattr(error.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


# Writing


def _event_params(
    connection: BaseDatabaseWrapper,
    log_id: uuid.UUID,
    index: int,
    type_name: str,
    payload: str,
    recorded_at: datetime,
    key: str | None,
) -> list[Any]:
    return [
        db_uuid(log_id, connection),
        index,
        type_name,
        payload,
        connection.ops.adapt_datetimefield_value(recorded_at),
        key,
    ]


def _savepoint(using: str) -> Any:
    # Inside the caller's transaction a savepoint keeps it usable if the
    # statement fails; in autocommit a single statement is atomic by itself.
    if connections[using].in_atomic_block:
        return transaction.atomic(using=using)
    return nullcontext()


def insert_log(
    using: str,
    log_id: uuid.UUID,
    kind: str,
    type_name: str,
    payload: str,
    now: datetime,
    key: str | None,
) -> None:
    """Insert a log and its event 0, together or not at all."""
    connection = connections[using]
    sql = statements(connection)
    log_params = [
        db_uuid(log_id, connection),
        kind,
        connection.ops.adapt_datetimefield_value(now),
    ]
    event_params = _event_params(connection, log_id, 0, type_name, payload, now, key)
    if sql.create_log is None:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(sql.insert_log, log_params)
            cursor.execute(sql.insert_first_event, event_params)
        return
    # One statement, atomic by itself: no BEGIN and COMMIT round trips.
    with _savepoint(using), connection.cursor() as cursor:
        cursor.execute(sql.create_log, log_params + event_params)


def insert_event(
    using: str,
    log_id: uuid.UUID,
    index: int,
    type_name: str,
    payload: str,
    now: datetime,
    key: str | None,
) -> bool:
    """Insert an event at ``index`` if the one before it (or the log) exists."""
    connection = connections[using]
    sql = statements(connection)
    params = _event_params(connection, log_id, index, type_name, payload, now, key)
    if index == 0:
        query = sql.insert_event_if_log
        params.append(params[0])
    else:
        query = sql.insert_event_if_previous
        params.extend([params[0], index - 1])
    with _savepoint(using), connection.cursor() as cursor:
        cursor.execute(query, params)
        return bool(cursor.rowcount == 1)


def key_use(using: str, key: str) -> tuple[uuid.UUID, int, str, str] | None:
    """The log, index, type and payload of the event stored under ``key``."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(statements(connection).select_key_use, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    log_id, index, type_name, payload = row
    if not isinstance(log_id, uuid.UUID):
        log_id = uuid.UUID(log_id)
    return log_id, index, type_name, payload


def event_exists(using: str, log_id: uuid.UUID, index: int) -> bool:
    """Whether the log has an event at ``index``."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            statements(connection).select_event_exists,
            [db_uuid(log_id, connection), index],
        )
        return cursor.fetchone() is not None


# Reading


def page_rows(
    using: str,
    log_id: uuid.UUID,
    start: int,
    limit: int,
    *,
    descending: bool = False,
    type_name: str | None = None,
) -> list[Row]:
    """Up to ``limit`` events of the log from index ``start`` on (down, when
    ``descending``), of any type or of ``type_name``; one round trip."""
    connection = connections[using]
    sql = statements(connection)
    params: list[Any] = [db_uuid(log_id, connection)]
    if type_name is None and not descending:
        query = sql.select_page
    else:
        query = sql.page(descending=descending, typed=type_name is not None)
        if type_name is not None:
            params.append(type_name)
    # No event lies past INDEX_MAX, and SQLite refuses integers past 2**63.
    params.extend([min(start, INDEX_MAX if descending else INDEX_MAX + 1), limit])
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cast("list[Row]", cursor.fetchall())


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
    the one cursor.
    """
    connection = connections[using]
    sql = statements(connection)
    params: list[Any] = [db_uuid(log_id, connection)]
    if through is None:
        rows = page_rows(using, log_id, start, chunk_size)
        yield from rows
        if len(rows) < chunk_size:
            return
        query = sql.select_from
        params.append(rows[-1][0] + 1)
    else:
        query = sql.select_through
        params.extend([start, through])
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
