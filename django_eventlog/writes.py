"""The write methods of ``Log.objects``: create_log, append and the key check.

They check their arguments (:mod:`~django_eventlog.validation`), encode the
events, write them through :mod:`~django_eventlog.queries` in one statement,
and turn the database's refusals (unique violations, the no-gap trigger)
into the library's errors, by the replay rule of
:mod:`~django_eventlog.idempotency` when a key was used.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.db import IntegrityError, models
from django.utils import timezone

from . import idempotency, inserts, queries, sql
from .aggregates import LogState
from .conf import conf
from .event_context import metadata_for_write
from .event_metadata import EventMetadata
from .events import DomainEvent, encode_event
from .exceptions import ConcurrentAppend, EventLogError, InvalidArgument, LogNotFound
from .reads import LogReads
from .validation import (
    INDEX_MAX,
    KIND_MAX_LENGTH,
    check_events,
    check_key,
    check_state,
    check_text,
    parse_log_id,
)

__all__ = ["LogWrites"]

M = TypeVar("M", bound=models.Model)


class LogWrites(LogReads[M]):
    """Create logs and append to them."""

    def create_log(
        self,
        events: DomainEvent | Sequence[DomainEvent],
        *,
        kind: str,
        log_id: uuid.UUID | str | None = None,
        idempotency_key: str | None = None,
        metadata: EventMetadata | Mapping[str, Any] | None = None,
    ) -> LogState:
        """Create a log holding ``events`` from index 0 and return its state.

        ``events`` is one event or a sequence of up to 100 (an order placed
        and its first item), written in one statement with contiguous
        indices. The log row and its events commit together or not at all;
        inside the caller's ``transaction.atomic()`` they join that
        transaction. An idempotency key names the whole batch (it is stored
        on its first event).

        Raises ``IdempotentReplay`` naming the original log when the key was
        used by a create of the same request: same ``kind``, equal events and,
        if this call passed ``log_id``, that log (a generated id is not
        compared); ``IdempotencyConflict`` naming the original event when the
        key was used for anything else (see "Idempotency" in the concepts
        docs for the rule); ``ConcurrentAppend`` when ``log_id`` names an
        existing log; ``EventEncodingError`` for an event that cannot be
        stored (or is larger than ``EVENTLOG_MAX_EVENT_SIZE``) and
        ``InvalidArgument`` for bad input.

        ``metadata`` (an ``EventMetadata`` or a mapping of its fields) is
        stored on every event, over what ``event_context`` sets; it is not
        part of the idempotency comparison.
        """
        batch = check_events(events)
        encoded = _encoded(batch)
        kind = check_text("kind", kind, KIND_MAX_LENGTH)
        explicit = None if log_id is None else parse_log_id(log_id)
        log_id = self._new_log_id() if explicit is None else explicit
        key = check_key(idempotency_key)
        meta = metadata_for_write(metadata)
        using = self._write_db()
        try:
            inserts.insert_log(using, log_id, kind, encoded, timezone.now(), key, meta)
        except IntegrityError as e:
            write = idempotency.Create(kind, explicit)
            raise self._explain(using, e, log_id, None, batch, key, write) from e
        return LogState(log_id, len(batch))

    def append(
        self,
        state: LogState,
        events: DomainEvent | Sequence[DomainEvent],
        *,
        idempotency_key: str | None = None,
        metadata: EventMetadata | Mapping[str, Any] | None = None,
    ) -> LogState:
        """Append ``events`` from ``state.next_index`` on and return the new state.

        ``events`` is one event or a sequence of up to 100, written in one
        statement with contiguous indices, all or none. ``state`` is what the
        caller knows of the log: the ``LogState`` of the last create or
        append, or a ``Reduction``. Inside the caller's
        ``transaction.atomic()`` the events commit or roll back with the
        caller's other writes; a failed append leaves that transaction usable.
        An idempotency key names the whole batch (it is stored on its first
        event).

        Raises ``ConcurrentAppend`` when another writer took that index (reduce
        again, re-check the business rules, append with the new state; or let
        :meth:`transact` do that loop); ``IdempotentReplay`` naming the
        original (first) event when the key was used on this log for equal
        events (whatever their index, event 0 of a create included);
        ``IdempotencyConflict`` naming the original event when it was used for
        other events or on another log (a used key wins over every other
        answer, even for a state ahead of the log or a missing log; see
        "Idempotency" in the concepts docs); ``LogNotFound``;
        ``EventEncodingError`` for an event that cannot be stored (or is larger
        than ``EVENTLOG_MAX_EVENT_SIZE``) and ``InvalidArgument`` for bad input.
        ``metadata``: as for :meth:`create_log`.
        """
        batch = check_events(events)
        encoded = _encoded(batch)
        log_id, index = check_state(state)
        if index + len(batch) - 1 > INDEX_MAX:
            raise InvalidArgument(
                f"The events would pass the last index a log holds ({INDEX_MAX})."
            )
        key = check_key(idempotency_key)
        meta = metadata_for_write(metadata)
        using = self._write_db()
        try:
            inserted = inserts.insert_events(
                using, log_id, index, encoded, timezone.now(), key, meta
            )
        except IntegrityError as e:
            raise self._explain(using, e, log_id, index, batch, key, log_id) from e
        if not inserted:
            raise self._refused(using, log_id, batch, key)
        return LogState(log_id, index + len(batch))

    async def acreate_log(
        self,
        events: DomainEvent | Sequence[DomainEvent],
        *,
        kind: str,
        log_id: uuid.UUID | str | None = None,
        idempotency_key: str | None = None,
        metadata: EventMetadata | Mapping[str, Any] | None = None,
    ) -> LogState:
        """Async :meth:`create_log` (Django transactions are sync: runs in a
        thread, which sees the caller's ``event_context``)."""
        return await sync_to_async(self.create_log)(
            events,
            kind=kind,
            log_id=log_id,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )

    async def aappend(
        self,
        state: LogState,
        events: DomainEvent | Sequence[DomainEvent],
        *,
        idempotency_key: str | None = None,
        metadata: EventMetadata | Mapping[str, Any] | None = None,
    ) -> LogState:
        """Async :meth:`append` (Django transactions are sync: runs in a
        thread, which sees the caller's ``event_context``)."""
        return await sync_to_async(self.append)(
            state, events, idempotency_key=idempotency_key, metadata=metadata
        )

    def check_idempotency_key(
        self,
        idempotency_key: str,
        events: DomainEvent | Sequence[DomainEvent],
        *,
        log_id: uuid.UUID | str | None = None,
        kind: str | None = None,
    ) -> None:
        """Raise if ``idempotency_key`` was already used; return if it is free.

        ``create_log`` and ``append`` detect a used key themselves, and
        :meth:`transact` checks it before its rules. Call this first when
        business rules run before a plain write and a retry must be answered
        as a replay even though the rules would now refuse it (a retried
        capture that the original already made). Name the write it stands
        for: ``log_id`` alone for an append to that log, ``kind`` (and
        ``log_id`` if the create passes one) for a ``create_log``, with the
        event or events it writes. Raises what that write would:
        ``IdempotentReplay`` naming the original event when it is the same
        request, ``IdempotencyConflict`` naming it when not,
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
        batch = check_events(events)
        # Events that could not be stored are refused here as by the writes.
        _encoded(batch)
        used = idempotency.key_use(self._write_db(), key, batch, write)
        if used is not None:
            raise used

    def _new_log_id(self) -> uuid.UUID:
        # The primary key's default: a uuid7, time-ordered.
        return cast(uuid.UUID, self.model._meta.pk.get_default())

    def _refused(
        self,
        using: str,
        log_id: uuid.UUID,
        events: Sequence[DomainEvent],
        key: str | None,
    ) -> EventLogError:
        """Why an append inserted no row: a used key wins over the state."""
        # The key is consulted only here, off the path of a successful append.
        if key is not None:
            used = idempotency.key_use(using, key, events, log_id)
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
        events: Sequence[DomainEvent],
        key: str | None,
        write: uuid.UUID | idempotency.Create,
    ) -> Exception:
        """Turn a unique violation into the library error it means."""
        if key is not None:
            used = idempotency.key_use(using, key, events, write)
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


def _encoded(events: Sequence[DomainEvent]) -> list[sql.EncodedEvent]:
    """Each event's type name, JSON text and schema version (None for 1, as
    stored), or ``EventEncodingError``."""
    max_size = conf.EVENTLOG_MAX_EVENT_SIZE
    encoded: list[sql.EncodedEvent] = []
    for event in events:
        payload = encode_event(event, max_size)  # refuses what is no DomainEvent
        version = event.schema_version
        encoded.append((event.type_name, payload, None if version == 1 else version))
    return encoded
