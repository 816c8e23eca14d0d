"""The event store's tables: ``Log`` and ``Event``; the projections'
checkpoints and the record of skipped events.

The manager behind ``Log.objects`` lives in :mod:`django_eventlog.store`, the
SQL it runs in :mod:`django_eventlog.sql`.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, TypeVar

import django
from django.db import models
from django.utils import timezone

from .exceptions import EventLogError, ImmutableEvent, ImmutableLog
from .positions import POSITION_MAX_LENGTH
from .sql import LOG_INDEX_CONSTRAINT
from .store import BaseLogManager
from .validation import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    KIND_MAX_LENGTH,
    METADATA_TEXT_MAX_LENGTH,
)

__all__ = [
    "Event",
    "EventManager",
    "EventQuerySet",
    "Log",
    "LogManager",
    "LogQuerySet",
    "ProjectionCheckpoint",
    "ProjectionSkip",
    "uuid7",
]


def uuid7() -> uuid.UUID:
    """Return a time-ordered UUID (RFC 9562 version 7).

    Its first 48 bits are the Unix time in milliseconds, so new logs land at
    the right-hand end of the primary key index.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


class WrittenOnce(models.Model):
    """A row written once: saving it changed, or deleting it, raises.

    Subclasses say how with :meth:`refused`; their querysets (see
    :class:`WrittenOnceQuerySet`) refuse the same in bulk, and the database's
    triggers refuse it to every other writer.
    """

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise self.refused("changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise self.refused("deleted")

    @classmethod
    def refused(cls, what: str) -> EventLogError:
        """The error for an attempt to get a row ``what`` ("changed", ...)."""
        raise NotImplementedError


_W = TypeVar("_W", bound=WrittenOnce)


class WrittenOnceQuerySet(models.QuerySet[_W]):
    """Rows written once cannot be updated or deleted in bulk either."""

    def update(self, **kwargs: Any) -> int:
        raise self.model.refused("updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise self.model.refused("deleted")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise self.model.refused("updated")


class LogQuerySet(WrittenOnceQuerySet["Log"]):
    """The queryset of ``Log.objects``."""


class LogManager(BaseLogManager["Log"]):
    """Create, append to, reduce and page through logs: ``Log.objects``.

    Its methods are documented on :class:`~django_eventlog.store.BaseLogManager`.
    """

    def get_queryset(self) -> LogQuerySet:
        return LogQuerySet(self.model, using=self._db)


class Log(WrittenOnce):
    """One entity's event log.

    Create logs with ``Log.objects.create_log``. A log's id, kind and creation
    time never change: saving a changed log or deleting one raises
    ``ImmutableLog``, and a database trigger rejects ``UPDATE`` and ``DELETE``
    on the table.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    kind = models.CharField(max_length=KIND_MAX_LENGTH, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LogManager()

    class Meta:
        verbose_name = "log"
        verbose_name_plural = "logs"

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"

    @classmethod
    def refused(cls, what: str) -> EventLogError:
        return ImmutableLog(f"Logs cannot be {what}.")


class EventQuerySet(WrittenOnceQuerySet["Event"]):
    """Events cannot be updated or deleted in bulk either."""


EventManager = models.Manager.from_queryset(EventQuerySet)


def _check_constraint(condition: models.Q, name: str) -> models.CheckConstraint:
    # Django 5.1 renamed CheckConstraint(check=...) to condition=...
    keyword = "condition" if django.VERSION >= (5, 1) else "check"
    kwargs: dict[str, Any] = {keyword: condition}
    return models.CheckConstraint(name=name, **kwargs)


class Event(WrittenOnce):
    """One immutable event, stored at ``index`` of its log.

    Write events with ``Log.objects.create_log`` and ``append``; saving a
    changed event or deleting one raises ``ImmutableEvent``, and a database
    trigger rejects ``UPDATE`` and ``DELETE`` on the table.
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign key in the database (migration 0011): the no-gap trigger
    # refuses event 0 of a missing log and the logs' trigger any deletion.
    log = models.ForeignKey(
        Log,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    index = models.IntegerField()
    type = models.CharField(max_length=200)
    payload = models.JSONField()
    recorded_at = models.DateTimeField(default=timezone.now)
    # NULL, not "", for "no key": UNIQUE lets any number of NULLs through.
    idempotency_key = models.CharField(  # noqa: DJ001
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH, null=True, blank=True
    )
    #: PostgreSQL: the first part of the event's feed position, set by the
    #: database for every writer (migration 0007); the id is the second.
    #: NULL on SQLite, whose feed is ordered by the id alone.
    txid = models.BigIntegerField(null=True, editable=False)
    # Who and why (EventMetadata, migration 0009): NULL when not set.
    actor = models.CharField(  # noqa: DJ001
        max_length=METADATA_TEXT_MAX_LENGTH, null=True, blank=True
    )
    correlation_id = models.CharField(  # noqa: DJ001
        max_length=METADATA_TEXT_MAX_LENGTH, null=True, blank=True
    )
    causation_id = models.CharField(  # noqa: DJ001
        max_length=METADATA_TEXT_MAX_LENGTH, null=True, blank=True
    )
    extra = models.JSONField(null=True, blank=True)
    #: The event class's ``schema_version`` when the event was written
    #: (migration 0010): NULL for version 1, which is every event written
    #: before versions existed and by writers that set none.
    schema_version = models.SmallIntegerField(null=True, blank=True, editable=False)

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
        indexes = [
            # The admin timeline's type filter: one range scan per page,
            # where (log, index) alone would read every event of the log.
            # Led by the type, so that it never matches a lookup by (log,
            # index), which is UNIQUE (log, index)'s (migration 0006).
            models.Index(
                fields=["type", "log", "index"], name="django_eventlog_type_log_idx"
            ),
            # The feed's order (Log.objects.feed). Created on PostgreSQL only
            # (migration 0007): SQLite's feed reads by the primary key.
            models.Index(fields=["txid", "id"], name="django_eventlog_event_feed_idx"),
            # Everything one request did (the admin's correlation link); only
            # the events that have one are in it.
            models.Index(
                fields=["correlation_id"],
                name="django_eventlog_corr_idx",
                condition=models.Q(correlation_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.log_id}[{self.index}] {self.type}"

    @classmethod
    def refused(cls, what: str) -> EventLogError:
        return ImmutableEvent(f"Events are append-only: they cannot be {what}.")


#: The longest projection name.
PROJECTION_NAME_MAX_LENGTH = 200


class ProjectionCheckpoint(models.Model):
    """How far one projection has read the feed, and how it is doing.

    One row per projection name, written by the runner (in the same
    transaction as an atomic projection's read model) and by the
    ``eventlog_projections`` command; read by its ``status`` and the admin.
    """

    class State(models.TextChoices):
        RUNNING = "running", "running"
        FAILED = "failed", "failed"
        REBUILDING = "rebuilding", "rebuilding"

    name = models.CharField(max_length=PROJECTION_NAME_MAX_LENGTH, primary_key=True)
    #: The position of the last event handled (or skipped); "" for none.
    position = models.CharField(max_length=POSITION_MAX_LENGTH, blank=True)
    #: Events handled since the projection started or was last rebuilt.
    handled = models.BigIntegerField(default=0)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.RUNNING
    )
    updated_at = models.DateTimeField(default=timezone.now)
    #: The error of the last failure, with its traceback; kept after a retry.
    last_error = models.TextField(blank=True)
    #: The event the projection failed on, while it is failed.
    error_position = models.CharField(max_length=POSITION_MAX_LENGTH, blank=True)
    error_log_id = models.UUIDField(null=True, blank=True)
    error_index = models.IntegerField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "projection"
        verbose_name_plural = "projections"

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class ProjectionSkip(WrittenOnce):
    """An event an operator told a failed projection to skip
    (``eventlog_projections skip``): which, when, by whom and why."""

    projection = models.CharField(max_length=PROJECTION_NAME_MAX_LENGTH)
    position = models.CharField(max_length=POSITION_MAX_LENGTH)
    log_id = models.UUIDField()
    index = models.IntegerField()
    type = models.CharField(max_length=200)
    error = models.TextField(blank=True)
    skipped_by = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    skipped_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "skipped event"
        verbose_name_plural = "skipped events"

    def __str__(self) -> str:
        return f"{self.projection} skipped {self.log_id}[{self.index}]"

    @classmethod
    def refused(cls, what: str) -> EventLogError:
        return EventLogError(f"The record of a skipped event cannot be {what}.")
