"""Event sourcing for Django: append-only logs of typed events, reduced into aggregates.

Import the public API from here. The models live in
``django_eventlog.models``; ``Log``, ``Event`` and ``Projection`` are also
available here, loaded on first use so that importing this package never
loads models before Django's app registry is ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .aggregates import (
    Aggregate,
    Decision,
    EventRecord,
    FeedRecord,
    LogState,
    Reduction,
)
from .caching import (
    CacheStats,
    cache_stats,
    reset_cache_stats,
    wait_for_cache_writes,
)
from .event_context import current_metadata, event_context
from .event_metadata import EventMetadata
from .events import DomainEvent
from .exceptions import (
    ConcurrentAppend,
    DuplicateEventType,
    DuplicateUpcaster,
    EventDecodingError,
    EventEncodingError,
    EventLogError,
    FeedPositionsAhead,
    IdempotencyConflict,
    IdempotentReplay,
    ImmutableEvent,
    ImmutableLog,
    InvalidArgument,
    LogNotFound,
    MissingUpcaster,
    StaleState,
    UnknownEventType,
)
from .feed import FeedHorizon, HorizonHolder
from .policies import (
    AlwaysCache,
    CachingPolicy,
    LogAgePolicy,
    LogLengthPolicy,
    NeverCache,
)
from .upcasting import upcaster

if TYPE_CHECKING:
    from .models import Event, Log, LogManager
    from .projections import Projection

__all__ = [
    "Aggregate",
    "AlwaysCache",
    "CacheStats",
    "CachingPolicy",
    "ConcurrentAppend",
    "Decision",
    "DomainEvent",
    "DuplicateEventType",
    "DuplicateUpcaster",
    "Event",
    "EventDecodingError",
    "EventEncodingError",
    "EventLogError",
    "EventMetadata",
    "EventRecord",
    "FeedHorizon",
    "FeedPositionsAhead",
    "FeedRecord",
    "HorizonHolder",
    "IdempotencyConflict",
    "IdempotentReplay",
    "ImmutableEvent",
    "ImmutableLog",
    "InvalidArgument",
    "Log",
    "LogAgePolicy",
    "LogLengthPolicy",
    "LogManager",
    "LogNotFound",
    "LogState",
    "MissingUpcaster",
    "NeverCache",
    "Projection",
    "Reduction",
    "StaleState",
    "UnknownEventType",
    "cache_stats",
    "current_metadata",
    "event_context",
    "reset_cache_stats",
    "upcaster",
    "wait_for_cache_writes",
]

_MODELS = {"Event", "Log", "LogManager"}


def __getattr__(name: str) -> Any:
    # Loaded on first use: these import the models.
    if name in _MODELS:
        from . import models

        return getattr(models, name)
    if name == "Projection":
        from . import projections

        return projections.Projection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
