"""Projections and subscribers: handlers the runner feeds with every event.

A :class:`Projection` keeps a read model (Django models you filter, sort and
join) up to date from the global feed: its ``handle(record)`` runs in the
transaction that moves its checkpoint, so each event changes the read model
exactly once. A subscriber (``atomic = False``) is handled outside any
transaction, for side effects: at least once. The projections a project
runs are named in ``EVENTLOG_PROJECTIONS``; ``python manage.py
eventlog_projections run`` runs them, :func:`catch_up` runs them once.

See ``docs/read-side.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import ClassVar

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.utils.module_loading import import_string

from . import projection_locks
from .aggregates import FeedRecord
from .conf import conf
from .events import DomainEvent
from .exceptions import InvalidArgument
from .feed import feed_filters
from .projection_runs import ProjectionRun

__all__ = ["Projection", "catch_up", "load_projections", "projections_database"]

logger = logging.getLogger("django_eventlog.projections")

#: The longest projection name (the checkpoint's primary key).
NAME_MAX_LENGTH = 200


class Projection:
    """Handle every event of the feed, once, in feed order.

    Subclass it, set ``name`` and implement :meth:`handle` (and
    :meth:`reset` to allow rebuilds), then list the class's dotted path in
    ``EVENTLOG_PROJECTIONS``::

        class CapturedTotals(Projection):
            name = "captured-totals"  # the checkpoint's key: keep it stable
            kinds = ("payment",)  # optional, applied in the database
            event_types = (Captured,)  # optional: classes or stored names

            def handle(self, record):
                Total.objects.filter(day=record.recorded_at.date()).update(...)

            def reset(self):
                Total.objects.all().delete()

    ``atomic = True`` (the default): ``handle`` runs in the database
    transaction that also moves the projection's checkpoint, in batches of
    ``batch_size`` (``EVENTLOG_PROJECTION_BATCH_SIZE``) events, so a read
    model kept in the same database changes exactly once per event. With
    ``atomic = False`` (a subscriber, for side effects: e-mail, another
    service), ``handle`` runs outside any transaction and the checkpoint is
    saved after: at least once; deduplicate on ``record.position`` (or
    ``(record.log_id, record.index)``), which never changes.

    A ``handle`` that raises stops the projection after its retries; it
    never skips the event by itself. Instances are created with no
    arguments, one per run.
    """

    #: The checkpoint's key: stable across renames of the class.
    name: ClassVar[str]
    #: Only logs of these kinds (None: every kind).
    kinds: ClassVar[Sequence[str] | None] = None
    #: Only events of these classes or stored type names (None: every type).
    event_types: ClassVar[Sequence[type[DomainEvent] | str] | None] = None
    #: Handle and move the checkpoint in one transaction (exactly once);
    #: False: a subscriber (at least once).
    atomic: ClassVar[bool] = True
    #: Events per batch; None: ``EVENTLOG_PROJECTION_BATCH_SIZE``.
    batch_size: ClassVar[int | None] = None

    def handle(self, record: FeedRecord) -> None:
        """Apply one event (a :class:`~django_eventlog.FeedRecord`)."""
        raise NotImplementedError(
            f"{type(self).__qualname__} must implement handle(record)."
        )

    def reset(self) -> None:
        """Clear the read model, before a rebuild replays every event.

        Runs in the transaction that sets the checkpoint back to the start.
        The default raises: a projection that can be rebuilt says how.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} must implement reset() to be rebuilt."
        )


def check_projection(cls: object, path: str = "") -> type[Projection]:
    """``cls`` if it is a usable Projection subclass; ``InvalidArgument``
    saying what is wrong otherwise."""
    where = f"{path}: " if path else ""
    if not (isinstance(cls, type) and issubclass(cls, Projection)) or cls is Projection:
        raise InvalidArgument(f"{where}{cls!r} is not a subclass of Projection.")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or len(name) > NAME_MAX_LENGTH:
        raise InvalidArgument(
            f"{where}{cls.__qualname__}.name must be a non-empty string of at most "
            f"{NAME_MAX_LENGTH} characters, got {name!r}."
        )
    if cls.handle is Projection.handle:
        raise InvalidArgument(f"{where}{cls.__qualname__} does not implement handle().")
    feed_filters(cls.kinds, cls.event_types)
    if cls.batch_size is not None and (
        not isinstance(cls.batch_size, int) or cls.batch_size < 1
    ):
        raise InvalidArgument(
            f"{where}{cls.__qualname__}.batch_size must be a positive int or None."
        )
    return cls


def load_projections(names: Iterable[str] | None = None) -> list[Projection]:
    """One instance of each projection of ``EVENTLOG_PROJECTIONS`` (those
    named in ``names``, if given), in the setting's order.

    ``ImproperlyConfigured`` for a path that does not import or a class that
    is not a projection; ``InvalidArgument`` for a name that no configured
    projection has.
    """
    classes: dict[str, type[Projection]] = {}
    for path in conf.EVENTLOG_PROJECTIONS:
        try:
            cls = check_projection(import_string(path), path)
        except ImportError as e:
            raise ImproperlyConfigured(
                f"EVENTLOG_PROJECTIONS: cannot import {path!r}: {e}"
            ) from e
        except InvalidArgument as e:
            raise ImproperlyConfigured(f"EVENTLOG_PROJECTIONS: {e}") from None
        if cls.name in classes:
            raise ImproperlyConfigured(
                f"EVENTLOG_PROJECTIONS: two projections are named {cls.name!r}."
            )
        classes[cls.name] = cls
    if names is not None:
        wanted = list(names)
        unknown = [name for name in wanted if name not in classes]
        if unknown:
            known = ", ".join(sorted(classes)) or "none"
            raise InvalidArgument(
                f"No projection in EVENTLOG_PROJECTIONS is named "
                f"{', '.join(map(repr, unknown))} (configured: {known})."
            )
        classes = {name: cls for name, cls in classes.items() if name in wanted}
    return [cls() for cls in classes.values()]


def projections_database() -> str:
    """The database the projections run on: the events' (for writing)."""
    return router.db_for_write(apps.get_model("django_eventlog", "Event"))


def catch_up(names: Iterable[str] | None = None) -> dict[str, int]:
    """Run each projection (of ``names``, or all configured) until it has
    handled everything the feed delivers now; the number each handled.

    For tests, cron jobs and task queues. A projection another process runs
    right now (a runner holds its lock) is left to it and counts 0; a failed
    one stays stopped and counts 0 (``eventlog_projections status`` says
    why).
    """
    using = projections_database()
    handled = {}
    for projection in load_projections(names):
        with projection_locks.locked(using, projection.name) as mine:
            if not mine:
                logger.info(
                    "Projection %s is run by another process; not caught up here.",
                    projection.name,
                )
                handled[projection.name] = 0
                continue
            handled[projection.name] = ProjectionRun(projection, using).catch_up()
    return handled
