"""Running one projection: read a batch of the feed, handle it, move the
checkpoint on; what happens when a handler fails.

An **atomic** projection handles a batch inside one database transaction,
which also moves its checkpoint: the read model and the checkpoint commit
together or not at all, so each event changes the read model exactly once,
even if the process is killed mid-batch. A **subscriber** (``atomic =
False``) handles outside any transaction and saves the checkpoint after:
an event may be handled again after a crash (at least once).

Either way the checkpoint moves by compare-and-set (``UPDATE ... WHERE
position = <where the batch started>``), and an atomic batch first locks
the checkpoint's row: two processes never both move one projection past
the same event, advisory lock or not.

A handler that raises: the batch rolls back; the events before the failing
one are handled again in a batch of their own, then the failing one is
retried ``EVENTLOG_PROJECTION_RETRIES`` times, ``EVENTLOG_PROJECTION_RETRY_DELAY``
seconds apart, doubling. Then the projection stops in state ``failed`` with
the error and the event recorded, its checkpoint right before that event.
It never skips an event by itself.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

from django.db import connections, transaction
from django.utils import timezone

from . import checkpoint_queries, feed_queries
from .aggregates import FeedRecord
from .conf import conf
from .event_context import handling
from .events import DomainEvent
from .exceptions import FeedPositionsAhead
from .feed import feed_filters
from .log_kinds import kinds_of
from .models import ProjectionCheckpoint
from .positions import Position, format_position, parse_position
from .records import FeedDecoder
from .sql import FeedRow

__all__ = ["Handler", "Outcome", "ProjectionRun", "check_positions"]

logger = logging.getLogger("django_eventlog.projections")

State = ProjectionCheckpoint.State


class Handler(Protocol):
    """What a run needs of a projection (:class:`~django_eventlog.Projection`)."""

    name: ClassVar[str]
    kinds: ClassVar[Sequence[str] | None]
    event_types: ClassVar[Sequence[type[DomainEvent] | str] | None]
    atomic: ClassVar[bool]
    batch_size: ClassVar[int | None]

    def handle(self, record: FeedRecord) -> None: ...


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one step did: events handled, whether it reached the end of what
    the feed delivers now, whether the projection is failed (stopped), and
    where its checkpoint stands after it (None: not known)."""

    handled: int
    caught_up: bool
    failed: bool = False
    position: str | None = None


class _Failed(Exception):
    """A handler (or the decoding of an event) failed at ``offset`` of a
    batch, on the event of ``row``."""

    def __init__(self, offset: int, row: FeedRow, error: BaseException) -> None:
        self.offset, self.error = offset, error
        txid, event_id, log_id, index, type_name, *_ = row
        self.position = format_position(txid, event_id)
        self.log_id = log_id if isinstance(log_id, uuid.UUID) else uuid.UUID(log_id)
        self.index, self.type_name = index, type_name
        self.text = "".join(traceback.format_exception(error))
        #: The events of the batch handled before it, and how many of them
        #: a subscriber's checkpoint was moved past.
        self.done: list[FeedRecord] = []
        self.saved = 0


class _Moved(Exception):
    """The checkpoint was moved by another process during the batch."""


class ProjectionRun:
    """One projection, run on one database alias."""

    def __init__(
        self,
        projection: Handler,
        using: str,
        *,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.projection = projection
        self.name = projection.name
        self.using = using
        self.kinds, self.types = feed_filters(projection.kinds, projection.event_types)
        self.batch_size = projection.batch_size or conf.EVENTLOG_PROJECTION_BATCH_SIZE
        #: Waits between retries; returns False to give up (the runner stops).
        self.sleep = sleep or _sleep

    def checkpoint(self) -> ProjectionCheckpoint:
        """The projection's checkpoint row, created at the start if missing."""
        found, _ = ProjectionCheckpoint.objects.using(self.using).get_or_create(
            name=self.name
        )
        return found

    def catch_up(self, stop: Callable[[], bool] | None = None) -> int:
        """Handle what the feed delivers now, batch after batch, until the
        end of what it delivered when this began (or ``stop()``, or a
        failure); the number handled."""
        check_positions(self.using)
        head = feed_queries.head(self.using)
        total = 0
        while stop is None or not stop():
            outcome = self.step()
            total += outcome.handled
            if outcome.caught_up or outcome.failed:
                break
            # At the end of what the feed delivered when this began: done,
            # so that a busy feed does not keep a catch-up going for ever.
            if head is None or parse_position(outcome.position or None) >= head:
                break
        return total

    def step(self, limit: int | None = None) -> Outcome:
        """One batch of at most ``limit`` events (the batch size)."""
        limit = limit or self.batch_size
        try:
            return self._batch(limit)
        except _Failed as failed:
            if failed.offset > 0:
                # The events before the failing one, once more, on their own.
                return self.step(failed.offset)
            retried = self._retry(failed)
            # A subscriber saved the events it handled before the failure.
            return dataclasses.replace(retried, handled=retried.handled + failed.saved)
        except _Moved:
            logger.warning(
                "Projection %s: its checkpoint was moved by another process; "
                "this batch was undone.",
                self.name,
            )
            return Outcome(0, caught_up=True)

    def _retry(self, failed: _Failed) -> Outcome:
        delay = conf.EVENTLOG_PROJECTION_RETRY_DELAY
        for attempt in range(conf.EVENTLOG_PROJECTION_RETRIES):
            logger.warning(
                "Projection %s failed on the event at %s (%r); retry %d of %d.",
                self.name,
                failed.position,
                failed.error,
                attempt + 1,
                conf.EVENTLOG_PROJECTION_RETRIES,
            )
            if not self.sleep(delay * 2**attempt):
                return Outcome(0, caught_up=True)
            try:
                return self._batch(1)
            except _Failed as again:
                failed = again
        self._stop(failed)
        return Outcome(0, caught_up=True, failed=True)

    def _batch(self, limit: int) -> Outcome:
        # With filters, the last position delivered before the batch reads:
        # a batch that finds fewer events than its limit has seen every
        # event up to it, and the checkpoint moves there, so that the next
        # batch does not scan the other events again.
        filtered = bool(self.kinds or self.types)
        # Every row the batch reads is committed, unless it runs inside a
        # transaction of the caller's (which may have written).
        outermost = not connections[self.using].in_atomic_block
        if self.projection.atomic:
            with transaction.atomic(using=self.using):
                begun_at, state = self._locked_checkpoint()
                if state == State.FAILED:
                    return Outcome(0, caught_up=True, failed=True)
                head = feed_queries.head(self.using) if filtered else None
                records = self._handle(begun_at, limit, outermost)
                position = self._advance(begun_at, state, records, limit, head)
                return Outcome(len(records), len(records) < limit, position=position)
        checkpoint = self.checkpoint()
        begun_at, state = checkpoint.position, checkpoint.state
        if state == State.FAILED:
            return Outcome(0, caught_up=True, failed=True)
        head = feed_queries.head(self.using) if filtered else None
        try:
            records = self._handle(begun_at, limit, outermost)
        except _Failed as failed:
            if failed.done:
                # At least once: keep what was handled, then retry the rest.
                self._advance(begun_at, state, failed.done, len(failed.done) + 1)
                failed.offset, failed.saved = 0, len(failed.done)
            raise
        position = self._advance(begun_at, state, records, limit, head)
        return Outcome(len(records), len(records) < limit, position=position)

    def _locked_checkpoint(self) -> tuple[str, str]:
        """Position and state of the checkpoint, its row locked (and
        created first if missing)."""
        found = checkpoint_queries.read_locked(self.using, self.name)
        if found is None:
            manager = ProjectionCheckpoint.objects.using(self.using)
            created, _ = manager.select_for_update().get_or_create(name=self.name)
            found = (created.position, created.state)
        return found

    def _handle(self, position: str, limit: int, committed: bool) -> list[FeedRecord]:
        """Read up to ``limit`` events after ``position`` and handle them,
        decoding each right before; ``_Failed`` at the first that fails.
        ``committed``: every row read is committed (the logs' kinds may be
        kept)."""
        rows = feed_queries.page(
            self.using, parse_position(position or None), self.kinds, self.types, limit
        )
        decode = FeedDecoder(self.using, kinds_of(self.using, rows, keep=committed))
        handle = self.projection.handle
        records: list[FeedRecord] = []
        # What a handler writes is caused by the event it handles.
        with handling() as cause:
            for offset, row in enumerate(rows):
                try:
                    record = cause.record = decode.feed_record(row)
                    handle(record)
                except Exception as e:
                    failed = _Failed(offset, row, e)
                    failed.done = records
                    raise failed from e
                records.append(record)
        return records

    def _advance(
        self,
        begun_at: str,
        state: str,
        records: list[FeedRecord],
        limit: int,
        head: Position | None = None,
    ) -> str:
        """Move the checkpoint from ``begun_at`` past ``records`` (and, when
        the batch found fewer than ``limit``, to ``head`` if that is
        further), if it is still at ``begun_at``; ``_Moved`` if not. Where
        it stands now."""
        caught_up = len(records) < limit
        position = records[-1].position if records else begun_at
        if caught_up and head is not None and head > parse_position(position or None):
            position = format_position(*head)
        rebuilt = caught_up and state == State.REBUILDING
        if position == begun_at and not records and not rebuilt:
            return position  # nothing new: no write
        moved = checkpoint_queries.advance(
            self.using,
            self.name,
            begun_at,
            position,
            len(records),
            (State.REBUILDING, State.RUNNING) if rebuilt else None,
        )
        if not moved:
            raise _Moved
        return position

    def _stop(self, failed: _Failed) -> None:
        logger.error(
            "Projection %s stopped: the event at %s (log %s, index %s) failed "
            "%d times: %r. Fix the cause, then `eventlog_projections retry %s` "
            "(or skip that one event).",
            self.name,
            failed.position,
            failed.log_id,
            failed.index,
            conf.EVENTLOG_PROJECTION_RETRIES + 1,
            failed.error,
            self.name,
        )
        # The row may be new: created by the batch that failed, and rolled
        # back with it.
        self.checkpoint()
        ProjectionCheckpoint.objects.using(self.using).filter(name=self.name).update(
            state=State.FAILED,
            last_error=failed.text,
            error_position=failed.position,
            error_log_id=failed.log_id,
            error_index=failed.index,
            error_type=failed.type_name,
            updated_at=timezone.now(),
        )


def check_positions(using: str) -> None:
    """``FeedPositionsAhead`` if the stored positions are ahead of the
    cluster's transaction ids: the runner and ``catch_up`` check first."""
    found = feed_queries.ahead(using)
    if found is not None:
        raise FeedPositionsAhead(*found)


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True
