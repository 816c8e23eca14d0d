"""The read methods of ``Log.objects``: reduce and load, and which database.

They check their arguments (:mod:`~django_eventlog.validation`), read rows
through :mod:`~django_eventlog.queries`, decode them with
:mod:`~django_eventlog.records`, and read and write cached reductions
through :mod:`~django_eventlog.caching`. :class:`LogReads` is the first
base of the manager (:class:`~django_eventlog.store.BaseLogManager`).

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import connections, models, router
from django.utils import timezone

from . import caching, queries
from .aggregates import Aggregate, EventRecord, LogState, Reduction
from .conf import conf
from .exceptions import InvalidArgument, LogNotFound
from .records import decode_rows
from .sql import Row
from .validation import (
    KIND_MAX_LENGTH,
    check_aggregate_class,
    check_kinds,
    check_page,
    check_text,
    parse_log_id,
)

__all__ = ["LogReads"]

A = TypeVar("A", bound=Aggregate)
M = TypeVar("M", bound=models.Model)


class LogReads(models.Manager[M]):
    """Reduce and page through logs; route to the database for each."""

    def reduce(
        self,
        log_id: uuid.UUID | str,
        aggregate_class: type[A],
        *,
        kind: str | None = None,
    ) -> Reduction[A]:
        """Return the log's events folded into an ``aggregate_class`` state.

        Starts from the reduction cached for this aggregate class and log, if
        any, and applies only the events recorded after it; without one, folds
        every event into a new ``aggregate_class()``. Events are streamed in
        chunks of ``EVENTLOG_CHUNK_SIZE`` rows (a server-side cursor on
        PostgreSQL), so memory does not grow with the length of the log. The
        result is cached when the transaction that read the events commits
        (at once outside a transaction), if it adds something and the
        aggregate's caching policy agrees. Cache failures are logged, never
        raised.

        ``kind`` (or, without it, the class's ``kinds``) guards against a log
        of another kind: it answers ``LogNotFound`` as for a missing log,
        checked in the query that reads the log, so it costs no round trip.
        Raises ``LogNotFound`` and ``UnknownEventType``.
        """
        log_id, aggregate_class, kinds, using = self._reduce_arguments(
            log_id, aggregate_class, kind
        )
        lookup = caching.read(aggregate_class, log_id)
        start = lookup.reduction
        first = None
        if start is None:
            created_at = self._created_at(using, log_id, kinds)
            start = self._from_scratch(log_id, aggregate_class, created_at)
        elif kinds is not None:
            first = self._kind_page(
                using, log_id, kinds, start.next_index, conf.EVENTLOG_CHUNK_SIZE
            )
        aggregate, through = start.aggregate, start.through_index
        rows = queries.stream_rows(
            using, log_id, through + 1, conf.EVENTLOG_CHUNK_SIZE, first=first
        )
        through = _fold(using, log_id, aggregate, rows, through)
        reduction = _reduced(start, through)
        caching.write(using, lookup, reduction, through - start.through_index)
        return reduction

    def load(
        self,
        log_id: uuid.UUID | str,
        *,
        start: int = 0,
        limit: int | None = None,
        kind: str | None = None,
    ) -> list[EventRecord]:
        """Return up to ``limit`` events of the log from index ``start`` on.

        ``limit`` defaults to ``EVENTLOG_PAGE_SIZE`` and may not exceed
        ``EVENTLOG_MAX_PAGE_SIZE``. To know whether a next page exists, ask
        for one more event than you show: if ``limit + 1`` come back there is
        a next page, starting at the index of the extra one. A ``start`` past
        the end returns ``[]``; a missing log raises ``LogNotFound``, and so
        does a log of another kind than ``kind``, if given (checked in the
        same query).
        """
        log_id = parse_log_id(log_id)
        kinds = None if kind is None else {check_text("kind", kind, KIND_MAX_LENGTH)}
        if limit is None:
            limit = conf.EVENTLOG_PAGE_SIZE
        start, limit = check_page(start, limit, maximum=conf.EVENTLOG_MAX_PAGE_SIZE)
        using = self._read_db()
        if kinds is not None:
            rows = self._kind_page(using, log_id, kinds, start, limit)
            return list(decode_rows(using, log_id, rows))
        rows = queries.page_rows(using, log_id, start, limit)
        records = list(decode_rows(using, log_id, rows))
        if not records and not self._exists(using, log_id):
            raise LogNotFound(log_id)
        return records

    def state(self, log_id: uuid.UUID | str, *, kind: str | None = None) -> LogState:
        """Return the log's current ``LogState``: its id and the index the
        next event takes.

        For a writer that needs no aggregate: an ``If-Match`` check against
        the state a client last saw, or a blind append (an event no rule
        depends on, such as a note or a credit) that retries a
        ``ConcurrentAppend`` with the new state instead of reducing again.
        Reads the database writes go to, in one index probe (with ``kind``,
        two, in one statement). The state can be behind by the time it is
        used: an ``append`` with it is still checked by the database.

        Raises ``LogNotFound`` for no such log, and with ``kind`` for a log
        of another kind; ``InvalidArgument`` for a malformed id or kind.
        """
        log_id = parse_log_id(log_id)
        using = self._write_db()
        if kind is None:
            last = queries.last_index(using, log_id)
            if last is not None:
                return LogState(log_id, last + 1)
        else:
            kind = check_text("kind", kind, KIND_MAX_LENGTH)
        # No event (a log made outside create_log) or no log; or a kind to check.
        found = queries.kind_last_index(using, log_id)
        if found is None or (kind is not None and found[0] != kind):
            raise LogNotFound(log_id)
        return LogState(log_id, 0 if found[1] is None else found[1] + 1)

    async def areduce(
        self,
        log_id: uuid.UUID | str,
        aggregate_class: type[A],
        *,
        kind: str | None = None,
    ) -> Reduction[A]:
        """Async :meth:`reduce`: the cache through its async API, rows fetched
        in a worker thread chunk by chunk, folded in the event loop."""
        log_id, aggregate_class, kinds, using = self._reduce_arguments(
            log_id, aggregate_class, kind
        )
        lookup = await caching.aread(aggregate_class, log_id)
        start = lookup.reduction
        chunk_size = conf.EVENTLOG_CHUNK_SIZE
        first = None
        if start is None:
            created_at = await sync_to_async(self._created_at)(using, log_id, kinds)
            start = self._from_scratch(log_id, aggregate_class, created_at)
        elif kinds is not None:
            first = await sync_to_async(self._kind_page)(
                using, log_id, kinds, start.next_index, chunk_size
            )
        aggregate, through = start.aggregate, start.through_index
        rows = queries.stream_rows(using, log_id, through + 1, chunk_size, first=first)
        async for chunk in queries.achunks(using, rows, chunk_size):
            for record in decode_rows(using, log_id, chunk):
                aggregate.apply(record)
                through = record.index
        reduction = _reduced(start, through)
        await caching.awrite(using, lookup, reduction, through - start.through_index)
        return reduction

    async def aload(
        self,
        log_id: uuid.UUID | str,
        *,
        start: int = 0,
        limit: int | None = None,
        kind: str | None = None,
    ) -> list[EventRecord]:
        """Async :meth:`load`."""
        return await sync_to_async(self.load)(
            log_id, start=start, limit=limit, kind=kind
        )

    async def astate(
        self, log_id: uuid.UUID | str, *, kind: str | None = None
    ) -> LogState:
        """Async :meth:`state`."""
        return await sync_to_async(self.state)(log_id, kind=kind)

    def _reduce_before(
        self,
        using: str,
        log_id: uuid.UUID,
        aggregate_class: type[A],
        kind: str | None,
        index: int,
    ) -> A:
        """The log's events before ``index`` folded into a new aggregate, from
        the database (not cached): the state a write at ``index`` saw."""
        _, aggregate_class, kinds, _ = self._reduce_arguments(
            log_id, aggregate_class, kind
        )
        created_at = self._created_at(using, log_id, kinds)
        aggregate = self._from_scratch(log_id, aggregate_class, created_at).aggregate
        chunk_size = conf.EVENTLOG_CHUNK_SIZE
        rows = queries.stream_rows(using, log_id, 0, chunk_size, through=index - 1)
        _fold(using, log_id, aggregate, rows, -1)
        return aggregate

    def _reduce_arguments(
        self, log_id: uuid.UUID | str, aggregate_class: type[A], kind: str | None
    ) -> tuple[uuid.UUID, type[A], frozenset[str] | None, str]:
        """The parsed log id, the checked class, the kinds it reduces (None:
        any) and the database to read."""
        parsed = parse_log_id(log_id)
        check_aggregate_class(aggregate_class)
        kinds = check_kinds(kind, aggregate_class)
        return parsed, aggregate_class, kinds, self._read_db()

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

    def _exists(self, using: str, log_id: uuid.UUID) -> bool:
        return bool(self.using(using).filter(pk=log_id).exists())

    def _created_at(
        self, using: str, log_id: uuid.UUID, kinds: Collection[str] | None
    ) -> datetime:
        """The log's creation time; ``LogNotFound`` for no such log, or one
        of a kind not in ``kinds`` (checked in the same query)."""
        found = self.using(using).filter(pk=log_id).values_list("created_at", "kind")
        row = found.first()
        if row is None or (kinds is not None and row[1] not in kinds):
            raise LogNotFound(log_id)
        return row[0]  # type: ignore[no-any-return]

    @staticmethod
    def _kind_page(
        using: str, log_id: uuid.UUID, kinds: Collection[str], start: int, limit: int
    ) -> list[Row]:
        """Up to ``limit`` events from ``start`` on of a log of one of ``kinds``;
        ``LogNotFound`` for no such log (one round trip either way)."""
        kind, rows = queries.kind_page(using, log_id, start, limit)
        if kind is None or kind not in kinds:
            raise LogNotFound(log_id)
        return rows

    def _write_db(self) -> str:
        return self._db or router.db_for_write(_event_model())

    def _read_db(self) -> str:
        return self._db or router.db_for_read(_event_model())


@functools.cache
def _event_model() -> type[models.Model]:
    # The app registry, not an import: the models module imports this one.
    return apps.get_model("django_eventlog", "Event")


def _fold(
    using: str,
    log_id: uuid.UUID,
    aggregate: Aggregate,
    rows: Iterable[Row],
    through: int,
) -> int:
    """Apply ``rows`` to ``aggregate``; return the index of the last one applied
    (``through`` if none)."""
    # Closing the server-side cursor after the last row reaches the database
    # outside Django's error wrapping: wrap the whole loop so a lost
    # connection is a django.db error here too.
    with connections[using].wrap_database_errors:
        apply = aggregate.apply
        for record in decode_rows(using, log_id, rows):
            apply(record)
            through = record.index
    return through


def _reduced(start: Reduction[A], through: int) -> Reduction[A]:
    """The reduction ``start`` became once events through ``through`` applied."""
    return Reduction(
        start.log_id, start.aggregate, through, timezone.now(), start.log_created_at
    )
