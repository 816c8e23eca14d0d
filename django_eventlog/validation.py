"""Argument checks and the size limits they enforce, in one place.

The manager, the models, the HTTP helpers, the settings and the management
commands all check their input here, so a rule (what a log id is, how long
a kind may be) is written once. Every check raises ``InvalidArgument`` with
a message naming the argument; callers that answer in another vocabulary (a
system check, a command) re-raise it as their own error.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from .aggregates import Aggregate, LogState
from .events import DomainEvent
from .exceptions import InvalidArgument

__all__ = [
    "EVENTS_PER_WRITE_MAX",
    "IDEMPOTENCY_KEY_MAX_LENGTH",
    "INDEX_MAX",
    "KIND_MAX_LENGTH",
    "METADATA_EXTRA_MAX_BYTES",
    "METADATA_TEXT_MAX_LENGTH",
    "check_aggregate_class",
    "check_events",
    "check_int",
    "check_key",
    "check_kinds",
    "check_page",
    "check_state",
    "check_text",
    "is_positive_int",
    "parse_log_id",
]

KIND_MAX_LENGTH = 100
IDEMPOTENCY_KEY_MAX_LENGTH = 255
#: The longest actor, correlation id and causation id of event metadata.
METADATA_TEXT_MAX_LENGTH = 200
#: The most bytes the ``extra`` of event metadata takes, encoded as JSON.
METADATA_EXTRA_MAX_BYTES = 4096
#: The largest index the events table holds (a 32-bit integer column).
INDEX_MAX = 2**31 - 1
#: The most events one create_log or append writes (one statement; six
#: parameters an event stay under SQLite's historical limit of 999).
EVENTS_PER_WRITE_MAX = 100


def parse_log_id(value: object) -> uuid.UUID:
    """Return the log id ``value`` names: a UUID, or any string ``uuid.UUID`` reads."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise InvalidArgument(
                f"Malformed log id {value[:100]!r}: a log id is a UUID."
            ) from None
    raise InvalidArgument(
        f"A log id is a UUID or its string, got {type(value).__name__}."
    )


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an int above 0 (a bool is not an int here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int of at least ``minimum`` (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise InvalidArgument(f"{name} must be at least {minimum}, got {value}.")
    return value


def check_text(name: str, value: object, max_length: int) -> str:
    """Return ``value`` if it is 1 to ``max_length`` characters of storable text."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str, got {type(value).__name__}.")
    if not value or len(value) > max_length:
        raise InvalidArgument(
            f"{name} must have 1 to {max_length} characters, got {len(value)}."
        )
    if "\x00" in value:
        raise InvalidArgument(f"{name} may not contain NUL characters.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(f"{name} is not valid Unicode text.") from None
    return value


def check_key(key: object) -> str | None:
    """Return an idempotency key, or None for none."""
    if key is None:
        return None
    return check_text("idempotency_key", key, IDEMPOTENCY_KEY_MAX_LENGTH)


def check_state(state: object) -> tuple[uuid.UUID, int]:
    """Return the log id and next index of a ``LogState`` (or ``Reduction``)."""
    if not isinstance(state, LogState):
        raise InvalidArgument(
            f"Expected a LogState or Reduction, got {type(state).__name__}."
        )
    log_id = parse_log_id(state.log_id)
    index = check_int("next_index", state.next_index, 0)
    if index > INDEX_MAX:
        raise InvalidArgument(f"next_index may be at most {INDEX_MAX}, got {index}.")
    return log_id, index


def check_events(events: object) -> tuple[DomainEvent, ...]:
    """Return the events of a write: one event, or a list or tuple of 1 to
    ``EVENTS_PER_WRITE_MAX``. Each is checked when it is encoded, which
    refuses anything but a ``DomainEvent`` with ``EventEncodingError``."""
    if isinstance(events, (list, tuple)):
        if not 0 < len(events) <= EVENTS_PER_WRITE_MAX:
            raise InvalidArgument(
                f"A write holds 1 to {EVENTS_PER_WRITE_MAX} events, got {len(events)}."
            )
        return tuple(events)
    return (cast(DomainEvent, events),)


def check_kinds(
    kind: object, aggregate_class: type[Aggregate]
) -> frozenset[str] | None:
    """The kinds of log a reduce accepts: ``kind`` if given, else the class's
    ``kinds``; None for any."""
    if kind is not None:
        return frozenset([check_text("kind", kind, KIND_MAX_LENGTH)])
    kinds = aggregate_class.kinds
    if kinds is None:
        return None
    name = f"{aggregate_class.__qualname__}.kinds"
    if not isinstance(kinds, (tuple, list, frozenset, set)) or not kinds:
        raise InvalidArgument(
            f'{name} must be a non-empty tuple of kinds, like ("order",), '
            f"or None; got {kinds!r}."
        )
    return frozenset(check_text(name, k, KIND_MAX_LENGTH) for k in kinds)


def check_page(start: object, limit: object, *, maximum: int) -> tuple[int, int]:
    """Return the ``start`` and ``limit`` of a page of at most ``maximum`` events."""
    start = check_int("start", start, 0)
    limit = check_int("limit", limit, 1)
    if limit > maximum:
        raise InvalidArgument(
            f"limit may be at most EVENTLOG_MAX_PAGE_SIZE ({maximum}), got {limit}."
        )
    return start, limit


def check_aggregate_class(value: Any) -> type[Aggregate]:
    """Return ``value`` if it is an Aggregate subclass that implements apply()."""
    if value is Aggregate:
        raise InvalidArgument(
            "The class given is Aggregate itself, which cannot reduce anything "
            "(Aggregate does not implement apply()): name one of its subclasses."
        )
    if not (isinstance(value, type) and issubclass(value, Aggregate)):
        raise InvalidArgument(f"{value!r} is not an Aggregate subclass.")
    if value.apply is Aggregate.apply:
        raise InvalidArgument(f"{value.__qualname__} does not implement apply().")
    return value
