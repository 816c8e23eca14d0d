"""Caching policies: which reductions are worth writing to the cache.

A policy is any object with ``should_cache(reduction) -> bool``. Set one per
aggregate class with ``cache_policy``, or for the project with
``EVENTLOG_CACHE_POLICY``. Reductions are always cached by default.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .aggregates import CachingPolicy, Reduction
from .exceptions import InvalidArgument

__all__ = [
    "AlwaysCache",
    "CachingPolicy",
    "LogAgePolicy",
    "LogLengthPolicy",
    "NeverCache",
]


@dataclasses.dataclass(frozen=True)
class AlwaysCache:
    """Cache every reduction (the default)."""

    def should_cache(self, reduction: Reduction[Any]) -> bool:
        return True


@dataclasses.dataclass(frozen=True)
class NeverCache:
    """Cache nothing: every reduce folds the whole log."""

    def should_cache(self, reduction: Reduction[Any]) -> bool:
        return False


@dataclasses.dataclass(frozen=True)
class LogLengthPolicy:
    """Cache by the number of events in the log: ``minimum <= length < maximum``.

    Short logs reduce fast enough from the database; ``at_least(n)`` caches
    only the longer ones.
    """

    minimum: int = 0
    maximum: int | None = None

    def __post_init__(self) -> None:
        if self.minimum < 0 or (
            self.maximum is not None and self.maximum <= self.minimum
        ):
            raise InvalidArgument(
                f"LogLengthPolicy needs 0 <= minimum < maximum, got {self.minimum}, "
                f"{self.maximum}."
            )

    @classmethod
    def at_least(cls, events: int) -> LogLengthPolicy:
        """Cache logs of ``events`` events or more."""
        return cls(minimum=events)

    @classmethod
    def until(cls, events: int) -> LogLengthPolicy:
        """Cache logs of fewer than ``events`` events."""
        return cls(maximum=events)

    @classmethod
    def between(cls, minimum: int, maximum: int) -> LogLengthPolicy:
        """Cache logs of at least ``minimum`` and fewer than ``maximum`` events."""
        return cls(minimum=minimum, maximum=maximum)

    def should_cache(self, reduction: Reduction[Any]) -> bool:
        length = reduction.next_index
        return self.minimum <= length and (
            self.maximum is None or length < self.maximum
        )


@dataclasses.dataclass(frozen=True)
class LogAgePolicy:
    """Cache by the time since the log was created: ``minimum <= age < maximum``.

    ``until(timedelta(days=30))`` stops caching logs that are unlikely to be
    read again, say payments past their refund window.
    """

    minimum: timedelta = timedelta(0)
    maximum: timedelta | None = None

    def __post_init__(self) -> None:
        _check_bounds(self, timedelta(0), self.minimum, self.maximum)

    @classmethod
    def starting_at(cls, age: timedelta) -> LogAgePolicy:
        """Cache logs at least ``age`` old."""
        return cls(minimum=age)

    @classmethod
    def until(cls, age: timedelta) -> LogAgePolicy:
        """Cache logs younger than ``age``."""
        return cls(maximum=age)

    @classmethod
    def between(cls, minimum: timedelta, maximum: timedelta) -> LogAgePolicy:
        """Cache logs at least ``minimum`` old and younger than ``maximum``."""
        return cls(minimum=minimum, maximum=maximum)

    def should_cache(self, reduction: Reduction[Any]) -> bool:
        created: datetime | None = reduction.log_created_at
        if created is None:
            return False
        return _within(timezone.now() - created, self.minimum, self.maximum)


def _check_bounds(policy: object, zero: Any, minimum: Any, maximum: Any) -> None:
    if minimum < zero or (maximum is not None and maximum <= minimum):
        raise InvalidArgument(
            f"{type(policy).__name__} needs 0 <= minimum < maximum, got {minimum}, "
            f"{maximum}."
        )


def _within(value: Any, minimum: Any, maximum: Any) -> bool:
    return bool(minimum <= value and (maximum is None or value < maximum))
