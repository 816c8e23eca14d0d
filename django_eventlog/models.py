"""The event store: ``Log`` and ``Event`` and the manager that writes them."""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from contextlib import nullcontext
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar, cast

import django
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Cast
from django.utils import timezone

from . import caching
from .aggregates import Aggregate, EventRecord, LogState, Reduction
from .conf import conf
from .events import (
    DECODE_ERRORS,
    DomainEvent,
    decode_event,
    encode_event,
    event_decoder,
)
from .exceptions import (
    ConcurrentAppend,
    EventDecodingError,
    IdempotencyConflict,
    IdempotentReplay,
    ImmutableEvent,
    InvalidArgument,
    LogNotFound,
)

__all__ = ["Event", "EventManager", "EventQuerySet", "Log", "LogManager", "uuid7"]

KIND_MAX_LENGTH = 100
IDEMPOTENCY_KEY_MAX_LENGTH = 255
#: The largest index the events table holds (a 32-bit integer column).
INDEX_MAX = 2**31 - 1
LOG_INDEX_CONSTRAINT = "django_eventlog_event_log_index_uniq"

A = TypeVar("A", bound=Aggregate)

# (index, type, payload as JSON text, recorded_at, idempotency_key)
_Row = tuple[int, str, str, datetime, "str | None"]


def uuid7() -> uuid.UUID:
    """Return a time-ordered UUID (RFC 9562 version 7).

    Its first 48 bits are the Unix time in milliseconds, so new logs land at
    the right-hand end of the primary key index.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


class LogManager(models.Manager["Log"]):
    """Create, append to, reduce and page through logs: ``Log.objects``.

    Writes go to ``router.db_for_write(Event)`` and reads to
    ``router.db_for_read(Event)`` unless the manager is bound to a database
    with ``Log.objects.db_manager(alias)``.
    """

    def create_log(
        self,
        event: DomainEvent,
        *,
        kind: str,
        log_id: uuid.UUID | str | None = None,
        idempotency_key: str | None = None,
    ) -> LogState:
        """Create a log holding ``event`` at index 0 and return its state.

        The log row and its first event commit together or not at all; inside
        the caller's ``transaction.atomic()`` they join that transaction.

        Raises ``IdempotentReplay`` naming the original log when the key was
        used for an equal event (whatever ``log_id`` this call passed),
        ``IdempotencyConflict`` when it was used for another event,
        ``ConcurrentAppend`` when ``log_id`` names an existing log, and
        ``EventEncodingError`` or ``InvalidArgument`` for bad input.
        """
        payload = encode_event(event)
        kind = _check_text("kind", kind, KIND_MAX_LENGTH)
        log_id = uuid7() if log_id is None else _to_uuid(log_id)
        key = _check_key(idempotency_key)
        using = self._write_db()
        connection = connections[using]
        now = timezone.now()
        sql = _sql(connection)
        log_params = [_db_uuid(log_id, connection), kind, _db_datetime(now, connection)]
        event_params = _event_params(connection, log_id, 0, event, payload, now, key)
        try:
            if sql.create_log is None:
                with transaction.atomic(using=using), connection.cursor() as cursor:
                    cursor.execute(sql.insert_log, log_params)
                    cursor.execute(sql.insert_first_event, event_params)
            else:
                # One statement, atomic by itself: no BEGIN and COMMIT round
                # trips. Inside the caller's transaction a savepoint keeps it
                # usable if the statement fails, as for append.
                savepoint = (
                    transaction.atomic(using=using)
                    if connection.in_atomic_block
                    else nullcontext()
                )
                with savepoint, connection.cursor() as cursor:
                    cursor.execute(sql.create_log, log_params + event_params)
        except IntegrityError as e:
            raise self._explain(using, e, log_id, None, event, payload, key) from e
        return LogState(log_id, 1)

    def append(
        self,
        state: LogState,
        event: DomainEvent,
        *,
        idempotency_key: str | None = None,
    ) -> LogState:
        """Append ``event`` at ``state.next_index`` and return the new state.

        ``state`` is what the caller knows of the log: the ``LogState`` of the
        last create or append, or a ``Reduction``. Inside the caller's
        ``transaction.atomic()`` the event commits or rolls back with the
        caller's other writes; a failed append leaves that transaction usable.

        Raises ``ConcurrentAppend`` when another writer took that index (reduce
        again, re-check the business rules, append with the new state);
        ``IdempotentReplay`` naming the original event when the key was used
        for an equal event; ``IdempotencyConflict`` when it was used for
        another event; ``LogNotFound``; ``EventEncodingError`` or
        ``InvalidArgument`` for bad input.
        """
        payload = encode_event(event)
        log_id, index = _check_state(state)
        key = _check_key(idempotency_key)
        using = self._write_db()
        connection = connections[using]
        sql = _sql(connection)
        params = _event_params(
            connection, log_id, index, event, payload, timezone.now(), key
        )
        # The INSERT only happens when the event before it exists, so a state
        # ahead of the log (say, from a rolled-back transaction) cannot leave
        # a gap; at index 0 it checks that the log exists.
        if index == 0:
            query = sql.insert_event_if_log
            params.append(params[0])
        else:
            query = sql.insert_event_if_previous
            params.extend([params[0], index - 1])
        # Inside the caller's transaction a savepoint keeps it usable if the
        # INSERT fails; in autocommit a single INSERT is atomic by itself.
        savepoint = (
            transaction.atomic(using=using)
            if connection.in_atomic_block
            else nullcontext()
        )
        try:
            with savepoint, connection.cursor() as cursor:
                cursor.execute(query, params)
                inserted = cursor.rowcount
        except IntegrityError as e:
            raise self._explain(using, e, log_id, index, event, payload, key) from e
        if inserted != 1:
            if not Log.objects.using(using).filter(pk=log_id).exists():
                raise LogNotFound(log_id)
            raise ConcurrentAppend(log_id)
        return LogState(log_id, index + 1)

    def reduce(self, log_id: uuid.UUID | str, aggregate_class: type[A]) -> Reduction[A]:
        """Return the log's events folded into an ``aggregate_class`` state.

        Starts from the reduction cached for this aggregate class and log, if
        any, and applies only the events recorded after it; without one, folds
        every event into a new ``aggregate_class()``. Events are streamed in
        chunks of ``EVENTLOG_CHUNK_SIZE`` rows (a server-side cursor on
        PostgreSQL), so memory does not grow with the length of the log. The
        result is cached when the transaction that read the events commits
        (at once outside a transaction), if it adds something and the
        aggregate's caching policy agrees. Cache failures are logged, never
        raised. Raises ``LogNotFound`` and ``UnknownEventType``.
        """
        log_id = _to_uuid(log_id)
        _check_aggregate_class(aggregate_class)
        using = self._read_db()
        lookup = caching.read(aggregate_class, log_id)
        start = lookup.reduction
        if start is None:
            created_at = self._created_at(using, log_id)
            start = Reduction(
                log_id, _new_aggregate(aggregate_class), -1, created_at, created_at
            )
        aggregate, through = start.aggregate, start.through_index
        # Closing the server-side cursor after the last row reaches the
        # database outside Django's error wrapping: wrap the whole loop so a
        # lost connection is a django.db error here too.
        with connections[using].wrap_database_errors:
            apply = aggregate.apply
            for record in _records(
                using,
                log_id,
                _stream_rows(using, log_id, through + 1, conf.EVENTLOG_CHUNK_SIZE),
            ):
                apply(record)
                through = record.index
        reduction = Reduction(
            log_id, aggregate, through, timezone.now(), start.log_created_at
        )
        caching.write(using, lookup, reduction, through - start.through_index)
        return reduction

    def load(
        self, log_id: uuid.UUID | str, *, start: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Return up to ``limit`` events of the log from index ``start`` on.

        ``limit`` defaults to ``EVENTLOG_PAGE_SIZE`` and may not exceed
        ``EVENTLOG_MAX_PAGE_SIZE``. To know whether a next page exists, ask
        for one more event than you show: if ``limit + 1`` come back there is
        a next page, starting at the index of the extra one. A ``start`` past
        the end returns ``[]``; a missing log raises ``LogNotFound``.
        """
        log_id = _to_uuid(log_id)
        start, limit = _check_page(start, limit)
        using = self._read_db()
        # No event lies past INDEX_MAX (and SQLite refuses integers > 2**63).
        rows = _page_rows(using, log_id, start, limit) if start <= INDEX_MAX else []
        records = list(_records(using, log_id, rows))
        if not records and not Log.objects.using(using).filter(pk=log_id).exists():
            raise LogNotFound(log_id)
        return records

    async def acreate_log(
        self,
        event: DomainEvent,
        *,
        kind: str,
        log_id: uuid.UUID | str | None = None,
        idempotency_key: str | None = None,
    ) -> LogState:
        """Async :meth:`create_log` (Django transactions are sync: runs in a thread)."""
        return await sync_to_async(self.create_log)(
            event, kind=kind, log_id=log_id, idempotency_key=idempotency_key
        )

    async def aappend(
        self,
        state: LogState,
        event: DomainEvent,
        *,
        idempotency_key: str | None = None,
    ) -> LogState:
        """Async :meth:`append` (Django transactions are sync: runs in a thread)."""
        return await sync_to_async(self.append)(
            state, event, idempotency_key=idempotency_key
        )

    async def areduce(
        self, log_id: uuid.UUID | str, aggregate_class: type[A]
    ) -> Reduction[A]:
        """Async :meth:`reduce`: the cache through its async API, rows fetched
        in a worker thread chunk by chunk, folded in the event loop."""
        log_id = _to_uuid(log_id)
        _check_aggregate_class(aggregate_class)
        using = self._read_db()
        lookup = await caching.aread(aggregate_class, log_id)
        start = lookup.reduction
        if start is None:
            created_at = await sync_to_async(self._created_at)(using, log_id)
            start = Reduction(
                log_id, _new_aggregate(aggregate_class), -1, created_at, created_at
            )
        aggregate, through = start.aggregate, start.through_index
        chunk_size = conf.EVENTLOG_CHUNK_SIZE
        rows = _stream_rows(using, log_id, through + 1, chunk_size)
        async for chunk in _achunks(using, rows, chunk_size):
            for record in _records(using, log_id, chunk):
                aggregate.apply(record)
                through = record.index
        reduction = Reduction(
            log_id, aggregate, through, timezone.now(), start.log_created_at
        )
        await caching.awrite(using, lookup, reduction, through - start.through_index)
        return reduction

    async def aload(
        self, log_id: uuid.UUID | str, *, start: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Async :meth:`load`."""
        return await sync_to_async(self.load)(log_id, start=start, limit=limit)

    def _created_at(self, using: str, log_id: uuid.UUID) -> datetime:
        created_at = (
            Log.objects.using(using)
            .filter(pk=log_id)
            .values_list("created_at", flat=True)
            .first()
        )
        if created_at is None:
            raise LogNotFound(log_id)
        return created_at

    def _write_db(self) -> str:
        return self._db or router.db_for_write(Event)

    def _read_db(self) -> str:
        return self._db or router.db_for_read(Event)

    def check_idempotency_key(self, idempotency_key: str, event: DomainEvent) -> None:
        """Raise if ``idempotency_key`` was already used; return if it is free.

        ``create_log`` and ``append`` detect a used key themselves. Call this
        first when business rules run before the write and a retry must be
        answered as a replay even though the rules would now refuse it (a
        retried capture that the original already made). Raises
        ``IdempotentReplay`` naming the original event when it equals
        ``event``, ``IdempotencyConflict`` when it does not.
        """
        key = _check_key(idempotency_key)
        if key is None:
            raise InvalidArgument("idempotency_key must be a str, got None.")
        used = self._key_use(self._write_db(), key, event, encode_event(event))
        if used is not None:
            raise used

    def _key_use(
        self, using: str, key: str, event: DomainEvent, payload: str
    ) -> IdempotentReplay | IdempotencyConflict | None:
        original = (
            Event.objects.using(using)
            .filter(idempotency_key=key)
            .annotate(payload_text=Cast("payload", models.TextField()))
            .values_list("log_id", "index", "type", "payload_text")
            .first()
        )
        if original is None:
            return None
        log_id, index, type_name, stored = original
        # Compared as typed events: PostgreSQL's jsonb rewrites numbers
        # (1e23 as 100000000000000000000000), which the event's types undo.
        if type_name == event.type_name and _decodes_to(type_name, stored, event):
            return IdempotentReplay(key, log_id, index)
        return IdempotencyConflict(key, log_id, index)

    def _explain(
        self,
        using: str,
        error: IntegrityError,
        log_id: uuid.UUID,
        index: int | None,
        event: DomainEvent,
        payload: str,
        key: str | None,
    ) -> Exception:
        """Turn a unique violation into the library error it means."""
        if key is not None:
            used = self._key_use(using, key, event, payload)
            if used is not None:
                return used
        if index is None:
            taken = Log.objects.using(using).filter(pk=log_id).exists()
        elif _violated_constraint(error) == LOG_INDEX_CONSTRAINT:
            taken = True  # PostgreSQL names it: no query needed
        else:
            taken = (
                Event.objects.using(using).filter(log_id=log_id, index=index).exists()
            )
        if taken:
            return ConcurrentAppend(log_id)
        return error


class Log(models.Model):
    """One entity's event log."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    kind = models.CharField(max_length=KIND_MAX_LENGTH, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LogManager()

    class Meta:
        verbose_name = "log"
        verbose_name_plural = "logs"

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class EventQuerySet(models.QuerySet["Event"]):
    """Events cannot be updated or deleted in bulk either."""

    def update(self, **kwargs: Any) -> int:
        raise ImmutableEvent("Events are append-only: they cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ImmutableEvent("Events are append-only: they cannot be deleted.")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise ImmutableEvent("Events are append-only: they cannot be updated.")


EventManager = models.Manager.from_queryset(EventQuerySet)


def _violated_constraint(error: IntegrityError) -> str | None:
    """The constraint a database error names (psycopg's diagnostics), if any."""
    diag = getattr(error.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


def _check_constraint(condition: models.Q, name: str) -> models.CheckConstraint:
    # Django 5.1 renamed CheckConstraint(check=...) to condition=...
    keyword = "condition" if django.VERSION >= (5, 1) else "check"
    kwargs: dict[str, Any] = {keyword: condition}
    return models.CheckConstraint(name=name, **kwargs)


class Event(models.Model):
    """One immutable event, stored at ``index`` of its log.

    Write events with ``Log.objects.create_log`` and ``append``; saving a
    changed event or deleting one raises ``ImmutableEvent``, and a database
    trigger rejects ``UPDATE`` and ``DELETE`` on the table.
    """

    id = models.BigAutoField(primary_key=True)
    log = models.ForeignKey(
        Log, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    index = models.IntegerField()
    type = models.CharField(max_length=200)
    payload = models.JSONField()
    recorded_at = models.DateTimeField(default=timezone.now)
    # NULL, not "", for "no key": UNIQUE lets any number of NULLs through.
    idempotency_key = models.CharField(  # noqa: DJ001
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH, null=True, blank=True
    )

    objects = EventManager()

    class Meta:
        verbose_name = "event"
        verbose_name_plural = "events"
        constraints = [
            models.UniqueConstraint(fields=["log", "index"], name=LOG_INDEX_CONSTRAINT),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                name="django_eventlog_event_idempotency_key_uniq",
            ),
            _check_constraint(
                models.Q(index__gte=0), name="django_eventlog_event_index_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.log_id}[{self.index}] {self.type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableEvent("Events are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableEvent("Events are append-only: they cannot be deleted.")


# Helpers of the manager: validation, SQL and row decoding.


class _Statements:
    """The write path's SQL for one database vendor, built once."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.vendor = connection.vendor
        qn = connection.ops.quote_name
        log_table = qn(Log._meta.db_table)
        event_table = qn(Event._meta.db_table)
        columns = ", ".join(
            qn(_column(name))
            for name in (
                "log",
                "index",
                "type",
                "payload",
                "recorded_at",
                "idempotency_key",
            )
        )
        payload = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
        values = f"%s, %s, %s, {payload}, %s, %s"
        log_col = qn(_column("log"))
        index_col = qn(_column("index"))
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
        if connection.vendor == "postgresql":
            self.create_log = (
                f"WITH new_log AS ({self.insert_log} RETURNING {qn('id')}) "
                f"INSERT INTO {event_table} ({columns}) SELECT {values} FROM new_log"
            )
        insert_select = f"INSERT INTO {event_table} ({columns}) SELECT {values} WHERE "
        self.insert_event_if_log = (
            f"{insert_select}EXISTS (SELECT 1 FROM {log_table} WHERE {qn('id')} = %s)"
        )
        self.insert_event_if_previous = (
            f"{insert_select}EXISTS (SELECT 1 FROM {event_table} "
            f"WHERE {log_col} = %s AND {index_col} = %s)"
        )
        # The read path: the payload as JSON text, which msgspec decodes into
        # the event class in one pass (no json.loads, then a conversion).
        payload_col = qn(_column("payload"))
        recorded_at_col = qn(_column("recorded_at"))
        self.convert_recorded_at: Callable[[Any], Any] | None
        if connection.vendor == "postgresql":
            payload_col = f"{payload_col}::text"
            # As timestamp in the session's time zone, which Django sets to the
            # connection's: psycopg parses that in C, where the timestamptz
            # loader Django installs parses in Python (4 us a row).
            recorded_at_col = f"{recorded_at_col}::timestamp"
            tz = connection.timezone
            self.convert_recorded_at = (
                None if tz is None else functools.partial(datetime.replace, tzinfo=tz)
            )
        else:
            self.convert_recorded_at = _orm_converter(connection)
        type_col, key_col = qn(_column("type")), qn(_column("idempotency_key"))
        selected = (
            f"{index_col}, {type_col}, {payload_col}, {recorded_at_col}, {key_col}"
        )
        self.select_events = (
            f"SELECT {selected} FROM {event_table} "
            f"WHERE {log_col} = %s AND {index_col} >= %s ORDER BY {index_col}"
        )
        self.select_page = f"{self.select_events} LIMIT %s"


def _orm_converter(connection: BaseDatabaseWrapper) -> Callable[[Any], Any] | None:
    """What the ORM applies to a selected recorded_at (SQLite: text to datetime)."""
    field = cast("models.Field[Any, Any]", Event._meta.get_field("recorded_at"))
    column = field.get_col(Event._meta.db_table)
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


def _column(name: str) -> str:
    field = cast("models.Field[Any, Any]", Event._meta.get_field(name))
    return cast(str, field.column)


_statements: dict[str, _Statements] = {}


def _sql(connection: BaseDatabaseWrapper) -> _Statements:
    # Per alias: the converters are bound to the alias's settings (TIME_ZONE).
    statements = _statements.get(connection.alias)
    if statements is None or statements.vendor != connection.vendor:
        statements = _statements[connection.alias] = _Statements(connection)
    return statements


def _db_uuid(value: uuid.UUID, connection: BaseDatabaseWrapper) -> Any:
    return cast("models.UUIDField[Any, Any]", Log._meta.pk).get_db_prep_value(
        value, connection
    )


def _db_datetime(value: datetime, connection: BaseDatabaseWrapper) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _event_params(
    connection: BaseDatabaseWrapper,
    log_id: uuid.UUID,
    index: int,
    event: DomainEvent,
    payload: str,
    recorded_at: datetime,
    key: str | None,
) -> list[Any]:
    return [
        _db_uuid(log_id, connection),
        index,
        event.type_name,
        payload,
        _db_datetime(recorded_at, connection),
        key,
    ]


def _event_rows(
    using: str, log_id: uuid.UUID, start: int
) -> models.QuerySet[Any, _Row]:
    query = Event.objects.using(using).filter(log_id=log_id)
    if start:
        query = query.filter(index__gte=start)
    # The payload comes as JSON text so that msgspec decodes it into the event
    # class in one pass, instead of json.loads followed by a conversion.
    rows = (
        query.annotate(payload_text=Cast("payload", models.TextField()))
        .order_by("index")
        .values_list("index", "type", "payload_text", "recorded_at", "idempotency_key")
    )
    return cast("models.QuerySet[Any, _Row]", rows)


def _stream_rows(
    using: str, log_id: uuid.UUID, start: int, chunk_size: int
) -> Generator[_Row]:
    """The log's events from index ``start`` on, ``chunk_size`` rows at a time.

    The first chunk comes from a plain ``LIMIT`` query: one round trip, which
    is all a reduce from a cached state usually needs. The rest, if any,
    streams through a server-side cursor on PostgreSQL (unless
    ``DISABLE_SERVER_SIDE_CURSORS``, as ``QuerySet.iterator()`` does).
    Events are immutable and contiguous, so the two statements cannot
    disagree: the second one only sees more events, never other ones.
    """
    rows = _page_rows(using, log_id, start, chunk_size)
    yield from rows
    if len(rows) < chunk_size:
        return
    connection = connections[using]
    sql = _sql(connection)
    chunked = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    cursor = connection.chunked_cursor() if chunked else connection.cursor()
    try:
        cursor.execute(
            sql.select_events, [_db_uuid(log_id, connection), rows[-1][0] + 1]
        )
        while rows := cursor.fetchmany(chunk_size):
            yield from rows
            if len(rows) < chunk_size:
                break
    finally:
        cursor.close()


def _page_rows(using: str, log_id: uuid.UUID, start: int, limit: int) -> list[_Row]:
    connection = connections[using]
    sql = _sql(connection)
    with connection.cursor() as cursor:
        cursor.execute(sql.select_page, [_db_uuid(log_id, connection), start, limit])
        return cast("list[_Row]", cursor.fetchall())


async def _achunks(
    using: str, rows: Generator[_Row], chunk_size: int
) -> AsyncIterator[list[_Row]]:
    """``rows`` chunk by chunk, each fetched in sync_to_async's thread.

    Not QuerySet.aiterator(): on values_list() querysets it runs the query in
    the event loop's thread (SynchronousOnlyOperation, seen on Django 5.2).
    The same server-side cursor serves every chunk: thread-sensitive
    sync_to_async calls all run in one thread, on one connection.
    """

    def next_chunk() -> list[_Row]:
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


def _decodes_to(type_name: str, stored: str, event: DomainEvent) -> bool:
    try:
        return decode_event(type_name, stored) == event
    except Exception:  # the class changed since: not the same event
        return False


def _records(
    using: str, log_id: uuid.UUID, rows: Iterable[_Row]
) -> Iterator[EventRecord]:
    """Decode rows of ``select_events`` into records, each event straight
    into its class."""
    convert = _sql(connections[using]).convert_recorded_at
    decoders: dict[str, Callable[[str], DomainEvent]] = {}
    for index, type_name, payload, recorded_at, key in rows:
        decode = decoders.get(type_name)
        if decode is None:
            decode = decoders[type_name] = event_decoder(type_name)
        try:
            event = decode(payload)
        except DECODE_ERRORS as e:
            raise EventDecodingError(type_name, str(e), log_id, index) from e
        yield EventRecord(
            index,
            type_name,
            recorded_at if convert is None else convert(recorded_at),
            key,
            event,
        )


def _record(row: _Row) -> EventRecord:
    index, type_name, payload, recorded_at, key = row
    return EventRecord(
        index, type_name, recorded_at, key, decode_event(type_name, payload)
    )


def _check_aggregate_class(aggregate_class: type[Aggregate]) -> None:
    if not (
        isinstance(aggregate_class, type) and issubclass(aggregate_class, Aggregate)
    ):
        raise InvalidArgument(
            f"Expected an Aggregate subclass, got {aggregate_class!r}."
        )
    if aggregate_class.apply is Aggregate.apply:
        raise InvalidArgument(f"{aggregate_class.__qualname__} must implement apply().")


def _new_aggregate(aggregate_class: type[A]) -> A:
    try:
        return aggregate_class()
    except TypeError as e:
        name = aggregate_class.__qualname__
        raise InvalidArgument(
            f"{name} must be constructible with no arguments: {e}"
        ) from e


def _to_uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise InvalidArgument(f"Malformed log id {value[:100]!r}.") from None
    raise InvalidArgument(
        f"A log id is a UUID or its string, got {type(value).__name__}."
    )


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise InvalidArgument(f"{name} must be at least {minimum}, got {value}.")
    return value


def _check_text(name: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str, got {type(value).__name__}.")
    if not value or len(value) > max_length:
        raise InvalidArgument(
            f"{name} must have 1 to {max_length} characters, got {len(value)}."
        )
    if "\x00" in value:
        raise InvalidArgument(f"{name} may not contain NUL characters.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(f"{name} is not valid Unicode text.") from None
    return value


def _check_key(key: object) -> str | None:
    if key is None:
        return None
    return _check_text("idempotency_key", key, IDEMPOTENCY_KEY_MAX_LENGTH)


def _check_state(state: object) -> tuple[uuid.UUID, int]:
    if not isinstance(state, LogState):
        raise InvalidArgument(
            f"Expected a LogState or Reduction, got {type(state).__name__}."
        )
    log_id = _to_uuid(state.log_id)
    index = _check_int("next_index", state.next_index, 0)
    if index > INDEX_MAX:
        raise InvalidArgument(f"next_index may be at most {INDEX_MAX}, got {index}.")
    return log_id, index


def _check_page(start: object, limit: object) -> tuple[int, int]:
    start = _check_int("start", start, 0)
    maximum = conf.EVENTLOG_MAX_PAGE_SIZE
    limit = conf.EVENTLOG_PAGE_SIZE if limit is None else _check_int("limit", limit, 1)
    if limit > maximum:
        raise InvalidArgument(
            f"limit may be at most EVENTLOG_MAX_PAGE_SIZE ({maximum}), got {limit}."
        )
    return start, limit
