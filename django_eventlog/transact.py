"""``Log.objects.transact``: reduce, decide, append, and retry on a race.

The write loop of a command in one call, over the read and write methods of
:mod:`~django_eventlog.reads` and :mod:`~django_eventlog.writes`: a used
idempotency key answered first (by deciding again on the state the original
was decided on), the caller's expected state compared (``StaleState``), the
decision appended, a lost race retried.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import models

from . import idempotency
from .aggregates import Aggregate, Decision, LogState, Reduction
from .events import DomainEvent
from .exceptions import (
    ConcurrentAppend,
    IdempotencyConflict,
    InvalidArgument,
    StaleState,
)
from .validation import check_events, check_int, check_key, check_state, parse_log_id
from .writes import LogWrites

__all__ = ["LogTransactions"]

A = TypeVar("A", bound=Aggregate)
M = TypeVar("M", bound=models.Model)


class LogTransactions(LogWrites[M]):
    """Decide on a reduced log and append the decision, retrying on a race."""

    def transact(
        self,
        log_id: uuid.UUID | str,
        aggregate_class: type[A],
        decide: Callable[[A], DomainEvent | Sequence[DomainEvent]],
        *,
        expected: LogState | None = None,
        idempotency_key: str | None = None,
        attempts: int = 3,
        kind: str | None = None,
        reduction: Reduction[A] | None = None,
    ) -> Decision[A]:
        """Reduce the log, decide, append what was decided; retry on a race.

        The write loop of a command, in one call: ``decide(aggregate)`` checks
        the business rules on the reduced state and returns the event or
        events to append (an empty sequence: nothing to do), or raises the
        caller's own error, which propagates. ``decide`` must not change the
        aggregate, and must decide from the aggregate and the request alone:
        it may run more than once.

        1. With ``idempotency_key``, a key already used is answered first,
           whatever the rules now say: ``decide`` runs on the state the
           original write was decided on, and if it returns the events stored
           under the key this raises ``IdempotentReplay`` naming them (a
           retry; answer with the original outcome), else
           ``IdempotencyConflict``.
        2. ``expected`` (for example the state of an ``If-Match`` header)
           must be the log's current state, else ``StaleState`` (412).
        3. Append the events (``append``, with the key). When another writer
           took the index, reduce again and go back to 2, up to ``attempts``
           times in all; then raise the last ``ConcurrentAppend``.

        ``reduction``: a reduction of this log by ``aggregate_class`` that the
        caller already holds, used by the first attempt instead of reducing.
        ``kind``: as for :meth:`reduce`. Returns a :class:`Decision`: the
        reduction decided on, the events appended and the log's state after
        them. Also raises what ``reduce`` and ``append`` raise.
        """
        parsed = parse_log_id(log_id)
        key = check_key(idempotency_key)
        attempts = check_int("attempts", attempts, 1)
        # The expected state, parsed: (log id, next index).
        wanted = None if expected is None else check_state(expected)
        if reduction is not None:
            self._check_held(reduction, parsed, aggregate_class)
        if key is not None:
            self._answer_used_key(key, parsed, aggregate_class, decide, kind)
        race: ConcurrentAppend | None = None
        for attempt in range(attempts):
            if attempt or reduction is None:
                reduction = self.reduce(parsed, aggregate_class, kind=kind)
            if wanted is not None and wanted != (parsed, reduction.next_index):
                raise StaleState(parsed, wanted[1], reduction.next_index)
            events = _decided(decide(reduction.aggregate))
            if not events:
                return Decision(reduction, (), LogState(parsed, reduction.next_index))
            try:
                state = self.append(reduction, events, idempotency_key=key)
            except ConcurrentAppend as e:
                race = e
                continue
            return Decision(reduction, events, state)
        assert race is not None
        raise race

    async def atransact(
        self,
        log_id: uuid.UUID | str,
        aggregate_class: type[A],
        decide: Callable[[A], DomainEvent | Sequence[DomainEvent]],
        *,
        expected: LogState | None = None,
        idempotency_key: str | None = None,
        attempts: int = 3,
        kind: str | None = None,
        reduction: Reduction[A] | None = None,
    ) -> Decision[A]:
        """Async :meth:`transact` (Django transactions are sync: runs in a
        thread, ``decide`` included)."""
        return await sync_to_async(self.transact)(
            log_id,
            aggregate_class,
            decide,
            expected=expected,
            idempotency_key=idempotency_key,
            attempts=attempts,
            kind=kind,
            reduction=reduction,
        )

    def _answer_used_key(
        self,
        key: str,
        log_id: uuid.UUID,
        aggregate_class: type[A],
        decide: Callable[[A], DomainEvent | Sequence[DomainEvent]],
        kind: str | None,
    ) -> None:
        """Raise the replay or conflict that a used ``key`` means for transact."""
        using = self._write_db()
        original = idempotency.original(using, key)
        if original is None:
            return
        original_log, index = original
        if original_log != log_id:
            raise IdempotencyConflict(key, original_log, index)
        # The original was decided on the log as it was before its events.
        before = self._reduce_before(using, log_id, aggregate_class, kind, index)
        try:
            decision = decide(before)
        except Exception as e:
            # Refused on that state: the original was another request.
            raise IdempotencyConflict(key, log_id, index) from e
        events = _decided(decision)
        used = idempotency.key_use(using, key, events, log_id) if events else None
        raise used or IdempotencyConflict(key, log_id, index)

    def _check_held(
        self, reduction: object, log_id: uuid.UUID, aggregate_class: type[A]
    ) -> None:
        """Refuse a held reduction of another log or aggregate class."""
        if not isinstance(reduction, Reduction):
            raise InvalidArgument(
                f"reduction must be a Reduction, got {type(reduction).__name__}."
            )
        if reduction.log_id != log_id or type(reduction.aggregate) is not (
            aggregate_class
        ):
            raise InvalidArgument(
                "reduction must be a reduction of this log by "
                f"{aggregate_class.__qualname__}."
            )


def _decided(decision: object) -> tuple[DomainEvent, ...]:
    """The events a ``decide`` function returned (none: an empty sequence)."""
    if isinstance(decision, (list, tuple)) and not decision:
        return ()
    if decision is None:
        raise InvalidArgument(
            "decide returned None: return the event or events to append, "
            "or [] to append nothing."
        )
    return check_events(decision)
