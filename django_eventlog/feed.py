"""The global feed: every log's events in one order that never skips.

``Log.objects.feed(after)`` returns the next page of events after a
position, across logs, optionally of some kinds of log and some event
types; :class:`LogFeed` is the manager's part that serves it. Why the order
never lets an event appear before a position already delivered, and why a
log's events come in index order: ``docs/read-side.md``.

``FeedHorizon`` and ``HorizonHolder`` are public (``django_eventlog``
exports them); ``feed_filters`` and ``read_feed`` are internal to the
package, for the projections.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import connections, models

from . import feed_queries
from .aggregates import FeedRecord
from .conf import conf
from .events import TYPE_NAME_MAX_LENGTH, DomainEvent, event_class
from .exceptions import InvalidArgument, UnknownEventType
from .log_kinds import kinds_of
from .positions import Position, parse_position
from .reads import LogReads
from .records import decode_feed_rows
from .validation import KIND_MAX_LENGTH, check_int, check_text

__all__ = ["FeedHorizon", "HorizonHolder", "LogFeed", "feed_filters", "read_feed"]

M = TypeVar("M", bound=models.Model)

#: The most held-back events ``feed_horizon`` counts.
HELD_BACK_CAP = 10_000


@dataclasses.dataclass(frozen=True)
class HorizonHolder:
    """The oldest running transaction that holds the feed's horizon back."""

    pid: int
    #: Seconds since the transaction began.
    seconds: float
    #: ``pg_stat_activity.state``: "active", "idle in transaction", ...
    state: str
    #: The start of its current (or last) statement.
    query: str


@dataclasses.dataclass(frozen=True)
class FeedHorizon:
    """What the feed holds back now, and which transaction holds it.

    ``held_back`` counts committed events (up to 10,000) that the feed does
    not deliver yet because a transaction older than theirs is still
    running; ``holder`` is the oldest running transaction (None if there is
    none, and always on SQLite, whose feed holds nothing back).
    """

    held_back: int
    holder: HorizonHolder | None


def feed_filters(
    kinds: object, types: object
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The kinds and stored type names of a feed's filters, checked; empty
    for none."""
    return (
        _names("kinds", kinds, KIND_MAX_LENGTH),
        _names("types", types, TYPE_NAME_MAX_LENGTH),
    )


def _names(name: str, values: object, max_length: int) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, bytes)) or not isinstance(
        values, (Sequence, set, frozenset)
    ):
        raise InvalidArgument(
            f"{name} must be a list or tuple (or None for any), got {values!r}."
        )
    if not values:
        raise InvalidArgument(f"{name} must not be empty (None for any).")
    names: list[str] = []
    for value in values:
        if (
            isinstance(value, type)
            and issubclass(value, DomainEvent)
            and name == "types"
        ):
            names.extend(_stored_names(value))
        else:
            names.append(check_text(f"each of {name}", value, max_length))
            if name == "types":
                # A class's name or alias stands for every name it was
                # stored under.
                with contextlib.suppress(UnknownEventType):
                    names.extend(_stored_names(event_class(names[-1])))
    return tuple(sorted(set(names)))


def _stored_names(cls: type[DomainEvent]) -> tuple[str, ...]:
    return (cls.type_name, *cls.aliases)


def read_feed(
    using: str,
    after: Position,
    kinds: tuple[str, ...],
    types: tuple[str, ...],
    limit: int,
) -> list[FeedRecord]:
    """Up to ``limit`` records the feed delivers now after ``after``,
    decoded. Arguments as checked by :func:`feed_filters`."""
    rows = feed_queries.page(using, after, kinds, types, limit)
    # Outside a transaction every row seen is committed.
    keep = not connections[using].in_atomic_block
    return decode_feed_rows(using, rows, kinds_of(using, rows, keep=keep))


class LogFeed(LogReads[M]):
    """The global feed: ``feed``, ``afeed`` and ``feed_horizon``."""

    def feed(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        kinds: Sequence[str] | None = None,
        types: Sequence[type[DomainEvent] | str] | None = None,
    ) -> list[FeedRecord]:
        """Return the next events of every log after position ``after``.

        ``after`` is a record's ``position`` (None: from the start). Records
        come in feed order, at most ``limit`` (``EVENTLOG_PAGE_SIZE`` by
        default, at most ``EVENTLOG_MAX_PAGE_SIZE``), each with its log's id
        and kind and its own position: pass the last one's as ``after`` for
        the next page. ``kinds`` keeps logs of those kinds, ``types`` events
        of those classes or type names (a class, or the name of one, stands
        for its ``aliases`` too); both are applied in the database.

        The feed never skips: an event is delivered only once no event can
        be committed before it any more, so a reader that stores the last
        position and continues from it sees every event exactly once, and
        each log's events in index order. A transaction that stays open
        holds newer events back until it ends (see :meth:`feed_horizon`).
        Reads the database for writing (the primary).
        """
        position = parse_position(after)
        kind_names, type_names = feed_filters(kinds, types)
        maximum = conf.EVENTLOG_MAX_PAGE_SIZE
        limit = check_int(
            "limit", conf.EVENTLOG_PAGE_SIZE if limit is None else limit, 1
        )
        if limit > maximum:
            raise InvalidArgument(
                f"limit may be at most EVENTLOG_MAX_PAGE_SIZE ({maximum}), got {limit}."
            )
        return read_feed(self._write_db(), position, kind_names, type_names, limit)

    async def afeed(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        kinds: Sequence[str] | None = None,
        types: Sequence[type[DomainEvent] | str] | None = None,
    ) -> list[FeedRecord]:
        """The async twin of :meth:`feed`."""
        return await sync_to_async(self.feed)(
            after, limit=limit, kinds=kinds, types=types
        )

    def feed_horizon(self) -> FeedHorizon:
        """What holds the feed back now: how many committed events wait for
        an older transaction to end, and the oldest running transaction
        (its pid, age, state and query), as ``pg_stat_activity`` shows it.
        Nothing on SQLite."""
        using = self._write_db()
        held = feed_queries.held_back(using, HELD_BACK_CAP)
        found = feed_queries.holder(using)
        return FeedHorizon(held, None if found is None else HorizonHolder(*found))
