"""The manager's methods behind ``Log.objects``: create, append, reduce, load.

It checks its arguments (:mod:`~django_eventlog.validation`), runs the SQL of
:mod:`~django_eventlog.sql`, decodes rows with
:mod:`~django_eventlog.records`, reads and writes cached reductions through
:mod:`~django_eventlog.caching`, and turns the database's unique violations
into the library's errors.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import TypeVar, cast

from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import IntegrityError, connections, models, router
from django.utils import timezone

from . import caching, idempotency, queries, sql
from .aggregates import Aggregate, EventRecord, LogState, Reduction
from .conf import conf
from .events import DomainEvent, encode_event
from .exceptions import (
    ConcurrentAppend,
    EventLogError,
    InvalidArgument,
    LogNotFound,
)
from .records import decode_rows
from .validation import (
    KIND_MAX_LENGTH,
    check_aggregate_class,
    check_key,
    check_page,
    check_state,
    check_text,
    parse_log_id,
)

__all__ = ["BaseLogManager"]

A = TypeVar("A", bound=Aggregate)
M = TypeVar("M", bound=models.Model)


class BaseLogManager(models.Manager[M]):
    """Create, append to, reduce and page through logs.

    The methods of ``Log.objects`` (:class:`~django_eventlog.LogManager`, this
    class bound to the ``Log`` model). Writes go to
    ``router.db_for_write(Event)`` and reads to ``router.db_for_read(Event)``
    unless the manager is bound to a database with
    ``Log.objects.db_manager(alias)``.
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
        used by a create of the same request: same ``kind``, an equal event
        and, if this call passed ``log_id``, that log (a generated id is not
        compared); ``IdempotencyConflict`` naming the original event when the
        key was used for anything else (see "Idempotency" in the concepts
        docs for the rule); ``ConcurrentAppend`` when ``log_id`` names an
        existing log; ``EventEncodingError`` for an event that cannot be
        stored (or is larger than ``EVENTLOG_MAX_EVENT_SIZE``) and
        ``InvalidArgument`` for bad input.
        """
        payload = encode_event(event, conf.EVENTLOG_MAX_EVENT_SIZE)
        kind = check_text("kind", kind, KIND_MAX_LENGTH)
        explicit = None if log_id is None else parse_log_id(log_id)
        log_id = self._new_log_id() if explicit is None else explicit
        key = check_key(idempotency_key)
        using = self._write_db()
        try:
            queries.insert_log(
                using, log_id, kind, event.type_name, payload, timezone.now(), key
            )
        except IntegrityError as e:
            write = idempotency.Create(kind, explicit)
            raise self._explain(using, e, log_id, None, event, key, write) from e
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
        on this log for an equal event (whatever its index, event 0 of a
        create included); ``IdempotencyConflict`` naming the original event
        when it was used for another event or on another log (a used key wins
        over every other answer, even for a state ahead of the log or a
        missing log; see "Idempotency" in the concepts docs); ``LogNotFound``;
        ``EventEncodingError`` for an event that cannot be stored (or is larger
        than ``EVENTLOG_MAX_EVENT_SIZE``) and ``InvalidArgument`` for bad input.
        """
        payload = encode_event(event, conf.EVENTLOG_MAX_EVENT_SIZE)
        log_id, index = check_state(state)
        key = check_key(idempotency_key)
        using = self._write_db()
        try:
            inserted = queries.insert_event(
                using, log_id, index, event.type_name, payload, timezone.now(), key
            )
        except IntegrityError as e:
            raise self._explain(using, e, log_id, index, event, key, log_id) from e
        if not inserted:
            raise self._refused(using, log_id, event, key)
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
        log_id, aggregate_class, using = self._reduce_arguments(log_id, aggregate_class)
        lookup = caching.read(aggregate_class, log_id)
        start = lookup.reduction
        if start is None:
            start = self._from_scratch(
                log_id, aggregate_class, self._created_at(using, log_id)
            )
        aggregate, through = start.aggregate, start.through_index
        rows = queries.stream_rows(using, log_id, through + 1, conf.EVENTLOG_CHUNK_SIZE)
        # Closing the server-side cursor after the last row reaches the
        # database outside Django's error wrapping: wrap the whole loop so a
        # lost connection is a django.db error here too.
        with connections[using].wrap_database_errors:
            apply = aggregate.apply
            for record in decode_rows(using, log_id, rows):
                apply(record)
                through = record.index
        reduction = _reduced(start, through)
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
        log_id = parse_log_id(log_id)
        if limit is None:
            limit = conf.EVENTLOG_PAGE_SIZE
        start, limit = check_page(start, limit, maximum=conf.EVENTLOG_MAX_PAGE_SIZE)
        using = self._read_db()
        rows = queries.page_rows(using, log_id, start, limit)
        records = list(decode_rows(using, log_id, rows))
        if not records and not self._exists(using, log_id):
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
        log_id, aggregate_class, using = self._reduce_arguments(log_id, aggregate_class)
        lookup = await caching.aread(aggregate_class, log_id)
        start = lookup.reduction
        if start is None:
            created_at = await sync_to_async(self._created_at)(using, log_id)
            start = self._from_scratch(log_id, aggregate_class, created_at)
        aggregate, through = start.aggregate, start.through_index
        chunk_size = conf.EVENTLOG_CHUNK_SIZE
        rows = queries.stream_rows(using, log_id, through + 1, chunk_size)
        async for chunk in queries.achunks(using, rows, chunk_size):
            for record in decode_rows(using, log_id, chunk):
                aggregate.apply(record)
                through = record.index
        reduction = _reduced(start, through)
        await caching.awrite(using, lookup, reduction, through - start.through_index)
        return reduction

    async def aload(
        self, log_id: uuid.UUID | str, *, start: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Async :meth:`load`."""
        return await sync_to_async(self.load)(log_id, start=start, limit=limit)

    def check_idempotency_key(
        self,
        idempotency_key: str,
        event: DomainEvent,
        *,
        log_id: uuid.UUID | str | None = None,
        kind: str | None = None,
    ) -> None:
        """Raise if ``idempotency_key`` was already used; return if it is free.

        ``create_log`` and ``append`` detect a used key themselves. Call this
        first when business rules run before the write and a retry must be
        answered as a replay even though the rules would now refuse it (a
        retried capture that the original already made). Name the write it
        stands for: ``log_id`` alone for an append to that log, ``kind`` (and
        ``log_id`` if the create passes one) for a ``create_log``. Raises what
        that write would: ``IdempotentReplay`` naming the original event when
        it is the same request, ``IdempotencyConflict`` naming it when not,
        ``InvalidArgument`` when neither ``log_id`` nor ``kind`` is given.
        """
        key = check_key(idempotency_key)
        if key is None:
            raise InvalidArgument("idempotency_key must be a str, got None.")
        write: uuid.UUID | idempotency.Create
        if kind is not None:
            kind = check_text("kind", kind, KIND_MAX_LENGTH)
            write = idempotency.Create(
                kind, None if log_id is None else parse_log_id(log_id)
            )
        elif log_id is not None:
            write = parse_log_id(log_id)
        else:
            raise InvalidArgument(
                "check_idempotency_key needs log_id= (for an append to that log) "
                "or kind= (for a create_log)."
            )
        # An event that could not be stored is refused here as by the writes.
        encode_event(event, conf.EVENTLOG_MAX_EVENT_SIZE)
        used = idempotency.key_use(self._write_db(), key, event, write)
        if used is not None:
            raise used

    def _reduce_arguments(
        self, log_id: uuid.UUID | str, aggregate_class: type[A]
    ) -> tuple[uuid.UUID, type[A], str]:
        """The parsed log id, the checked class and the database to read."""
        parsed = parse_log_id(log_id)
        check_aggregate_class(aggregate_class)
        return parsed, aggregate_class, self._read_db()

    @staticmethod
    def _from_scratch(
        log_id: uuid.UUID, aggregate_class: type[A], created_at: datetime
    ) -> Reduction[A]:
        """The reduction of no events: where a reduce without a cached one starts."""
        try:
            aggregate = aggregate_class()
        except TypeError as e:
            name = aggregate_class.__qualname__
            raise InvalidArgument(
                f"{name} must be constructible with no arguments: {e}"
            ) from e
        return Reduction(log_id, aggregate, -1, created_at, created_at)

    def _new_log_id(self) -> uuid.UUID:
        # The primary key's default: a uuid7, time-ordered.
        return cast(uuid.UUID, self.model._meta.pk.get_default())

    def _exists(self, using: str, log_id: uuid.UUID) -> bool:
        return bool(self.using(using).filter(pk=log_id).exists())

    def _created_at(self, using: str, log_id: uuid.UUID) -> datetime:
        created_at = (
            self.using(using)
            .filter(pk=log_id)
            .values_list("created_at", flat=True)
            .first()
        )
        if created_at is None:
            raise LogNotFound(log_id)
        return created_at  # type: ignore[no-any-return]

    def _write_db(self) -> str:
        return self._db or router.db_for_write(_event_model())

    def _read_db(self) -> str:
        return self._db or router.db_for_read(_event_model())

    def _refused(
        self, using: str, log_id: uuid.UUID, event: DomainEvent, key: str | None
    ) -> EventLogError:
        """Why an append inserted no row: a used key wins over the state."""
        # The key is consulted only here, off the path of a successful append.
        if key is not None:
            used = idempotency.key_use(using, key, event, log_id)
            if used is not None:
                return used
        if not self._exists(using, log_id):
            return LogNotFound(log_id)
        return ConcurrentAppend(log_id)

    def _explain(
        self,
        using: str,
        error: IntegrityError,
        log_id: uuid.UUID,
        index: int | None,
        event: DomainEvent,
        key: str | None,
        write: uuid.UUID | idempotency.Create,
    ) -> Exception:
        """Turn a unique violation into the library error it means."""
        if key is not None:
            used = idempotency.key_use(using, key, event, write)
            if used is not None:
                return used
        if index is None:
            taken = self._exists(using, log_id)
        elif sql.violated_constraint(error) == sql.LOG_INDEX_CONSTRAINT:
            taken = True  # PostgreSQL names it: no query needed
        else:
            taken = queries.event_exists(using, log_id, index)
        if taken:
            return ConcurrentAppend(log_id)
        return error


@functools.cache
def _event_model() -> type[models.Model]:
    # The app registry, not an import: the models module imports this one.
    return apps.get_model("django_eventlog", "Event")


def _reduced(start: Reduction[A], through: int) -> Reduction[A]:
    """The reduction ``start`` became once events through ``through`` applied."""
    return Reduction(
        start.log_id, start.aggregate, through, timezone.now(), start.log_created_at
    )
