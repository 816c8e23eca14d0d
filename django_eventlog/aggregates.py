"""Aggregates and the records and states that reduce() and append() pass around."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable
from uuid import UUID

import msgspec

from .event_metadata import NO_METADATA, EventMetadata
from .events import DomainEvent

__all__ = [
    "NO_METADATA",
    "Aggregate",
    "CachingPolicy",
    "Decision",
    "EventRecord",
    "FeedRecord",
    "LogState",
    "Reduction",
]


@runtime_checkable
class CachingPolicy(Protocol):
    """Decides whether a reduction is written to the cache.

    What an aggregate's ``cache_policy`` holds; the policies themselves are
    in :mod:`django_eventlog.policies`, which exports this class too.
    """

    def should_cache(self, reduction: Reduction[Any]) -> bool:
        """Return True to cache ``reduction``."""
        ...


class Aggregate:
    """Base class of the state reduced from a log's events.

    A subclass must be constructible with no arguments (a dataclass whose
    fields all have defaults is the usual shape) and implements
    :meth:`apply`, which folds one event into the state::

        @dataclass
        class Payment(Aggregate):
            amount_captured: int = 0

            def apply(self, record: EventRecord) -> None:
                match record.event:
                    case Captured(amount=amount):
                        self.amount_captured += amount

    Class attributes:

    ``version``
        The shape of the state. Bump it whenever ``apply`` or the fields
        change: cached reductions of other versions are then never read.
    ``aggregate_name``
        Stable name in cache keys; defaults to ``module.QualifiedName``.
    ``cache_policy``
        A :class:`~django_eventlog.policies.CachingPolicy`, or None for
        ``EVENTLOG_CACHE_POLICY``.
    ``cache_timeout``
        Seconds a cached reduction lives, or None for
        ``EVENTLOG_CACHE_TIMEOUT``.
    ``kinds``
        The kinds of log this class reduces, like ``("order",)``, or None
        (the default) for any. ``reduce``, ``load`` and ``transact`` then
        answer ``LogNotFound`` for a log of another kind, checked in the
        query that reads the log (no extra round trip).

    To be cached, the state must be encodable by msgspec: a dataclass whose
    fields are typed like event fields is. Other states are never cached.
    """

    version: ClassVar[int] = 1
    aggregate_name: ClassVar[str]
    cache_policy: ClassVar[CachingPolicy | None] = None
    cache_timeout: ClassVar[int | None] = None
    kinds: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "aggregate_name" not in cls.__dict__:
            cls.aggregate_name = f"{cls.__module__}.{cls.__qualname__}"

    def apply(self, record: EventRecord) -> None:
        """Fold one event into this state."""
        raise NotImplementedError(
            f"{type(self).__qualname__} must implement apply(record)."
        )


A = TypeVar("A", bound=Aggregate)


@dataclasses.dataclass(frozen=True, slots=True)
class EventRecord:
    """One stored event as ``apply()`` receives it and ``load()`` returns it."""

    index: int
    type: str
    recorded_at: datetime
    idempotency_key: str | None
    event: DomainEvent
    #: Who wrote it and why (keyword-only: ``metadata=``).
    metadata: EventMetadata = dataclasses.field(default=NO_METADATA, kw_only=True)

    def as_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready builtins (ISO 8601 times, str UUIDs)."""
        return {
            "index": self.index,
            "type": self.type,
            "recorded_at": self.recorded_at.isoformat(),
            "idempotency_key": self.idempotency_key,
            "event": msgspec.to_builtins(self.event),
            "metadata": self.metadata.as_dict(),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class FeedRecord(EventRecord):
    """One event of the global feed (``Log.objects.feed``): an
    :class:`EventRecord` with its log's id and kind, and its ``position``.

    ``position`` is an opaque token: store it as it is and pass it back as
    ``feed(after=...)``; safe in a URL. Positions sort in feed order only
    through the feed itself, not as strings.
    """

    log_id: UUID
    kind: str
    position: str

    def as_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready builtins, with log id, kind and
        position."""
        return {
            "log_id": str(self.log_id),
            "kind": self.kind,
            "position": self.position,
            **EventRecord.as_dict(self),
        }


@dataclasses.dataclass(frozen=True)
class LogState:
    """What a caller knows of a log: its id and the index the next event takes.

    ``create_log`` and ``append`` return one; pass it to the next ``append``,
    which fails with ``ConcurrentAppend`` if another writer took that index.
    """

    log_id: UUID
    next_index: int


@dataclasses.dataclass(frozen=True, init=False)
class Reduction(LogState, Generic[A]):
    """An aggregate reduced from a log through ``through_index``.

    It is also the :class:`LogState` of the log as of that reduction, so it
    can be passed straight to ``append``. ``log_created_at`` is the log's
    creation time, which ``LogAgePolicy`` reads.
    """

    aggregate: A
    reduced_at: datetime
    log_created_at: datetime | None

    def __init__(
        self,
        log_id: UUID,
        aggregate: A,
        through_index: int,
        reduced_at: datetime,
        log_created_at: datetime | None = None,
    ) -> None:
        super().__init__(log_id, through_index + 1)
        object.__setattr__(self, "aggregate", aggregate)
        object.__setattr__(self, "reduced_at", reduced_at)
        object.__setattr__(self, "log_created_at", log_created_at)

    @property
    def through_index(self) -> int:
        """Index of the last event applied (-1 when the log has none)."""
        return self.next_index - 1


@dataclasses.dataclass(frozen=True)
class Decision(Generic[A]):
    """What ``transact`` did: the reduction it decided on, the events it
    appended (none when the decision was to do nothing) and the log's state
    after them."""

    reduction: Reduction[A]
    events: tuple[DomainEvent, ...]
    state: LogState

    @property
    def first_index(self) -> int:
        """The index of the first event appended (``state.next_index`` if none)."""
        return self.state.next_index - len(self.events)
