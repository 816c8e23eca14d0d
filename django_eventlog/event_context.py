"""Who did it and why: the metadata every event carries, and the context
that sets it.

``EventMetadata`` holds ``actor`` (who: ``"user:42"``, ``"system:seed"``),
``correlation_id`` (the request, job or conversation the event belongs
to), ``causation_id`` (the event or command that caused it) and ``extra``
(a small JSON object). ``event_context(...)`` sets it for every write inside
it, through a context variable: each thread and each asyncio task has its
own, ``sync_to_async`` and ``async_to_sync`` carry it across, and nested
contexts merge, the inner one winning. ``metadata=`` on a write wins over
the context. Metadata is never part of the idempotency comparison.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from .aggregates import FeedRecord
from .event_metadata import NO_METADATA, EventMetadata
from .exceptions import InvalidArgument
from .validation import METADATA_EXTRA_MAX_BYTES, METADATA_TEXT_MAX_LENGTH, check_text

__all__ = [
    "Handling",
    "current_metadata",
    "decode_metadata",
    "encode_extra",
    "event_context",
    "handling",
    "metadata_for_write",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_TEXT_FIELDS = ("actor", "correlation_id", "causation_id")


#: What the enclosing ``event_context`` blocks set: field -> value, with
#: ``extra`` merged key by key.
_context: contextvars.ContextVar[EventMetadata] = contextvars.ContextVar(
    "django_eventlog_event_context", default=NO_METADATA
)


def _merged(outer: EventMetadata, inner: EventMetadata) -> EventMetadata:
    """``inner`` over ``outer``: a field inner sets wins, ``extra`` merges
    (``InvalidArgument`` if the merged ``extra`` is too large)."""
    if not outer:
        return inner
    if not inner:
        return outer
    extra = outer.extra
    if inner.extra:
        extra = inner.extra
        if outer.extra:
            extra = {**outer.extra, **inner.extra}
            encode_extra(extra)  # two that fit may not fit together
            extra = MappingProxyType(extra)
    return EventMetadata(
        outer.actor if inner.actor is None else inner.actor,
        outer.correlation_id if inner.correlation_id is None else inner.correlation_id,
        outer.causation_id if inner.causation_id is None else inner.causation_id,
        extra,
    )


def _text(name: str, value: object) -> str | None:
    return None if value is None else check_text(name, value, METADATA_TEXT_MAX_LENGTH)


def _checked(
    actor: object, correlation_id: object, causation_id: object, extra: object
) -> EventMetadata:
    """The metadata, each field checked; ``InvalidArgument`` naming the bad
    one."""
    return EventMetadata(
        _text("actor", actor),
        _text("correlation_id", correlation_id),
        _text("causation_id", causation_id),
        _checked_extra(extra),
    )


def _checked_extra(extra: object) -> Mapping[str, Any]:
    if extra is None:
        return _EMPTY
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
        raise InvalidArgument(
            "metadata extra must be a mapping with str keys, got "
            f"{type(extra).__name__}."
        )
    encoded = encode_extra(dict(extra))
    # What is stored is what reads give back: builtins only, a copy.
    return MappingProxyType(msgspec.json.decode(encoded)) if encoded else _EMPTY


def encode_extra(extra: Mapping[str, Any]) -> bytes | None:
    """``extra`` as stored JSON, None when empty; ``InvalidArgument`` if it
    is not JSON or larger than ``METADATA_EXTRA_MAX_BYTES``."""
    if not extra:
        return None
    try:
        encoded = msgspec.json.encode(dict(extra))
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgument(f"metadata extra is not JSON: {e}") from None
    if len(encoded) > METADATA_EXTRA_MAX_BYTES:
        raise InvalidArgument(
            f"metadata extra is {len(encoded)} bytes encoded; at most "
            f"{METADATA_EXTRA_MAX_BYTES} are stored."
        )
    return encoded


class _EventContext:
    """The context manager :func:`event_context` returns (a class, not a
    generator: a request enters one, and it should cost next to nothing)."""

    __slots__ = ("inner", "token")

    def __init__(self, inner: EventMetadata) -> None:
        self.inner = inner
        self.token: contextvars.Token[EventMetadata] | None = None

    def __enter__(self) -> EventMetadata:
        merged = _merged(_context.get(), self.inner)
        self.token = _context.set(merged)
        return merged

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _context.reset(self.token)
            self.token = None


def event_context(
    *,
    actor: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    **extra: Any,
) -> contextlib.AbstractContextManager[EventMetadata]:
    """Set metadata for every event written inside the ``with`` block.

    Keyword arguments other than the three named ones go into ``extra``.
    Nested blocks merge with the outer ones, the inner value winning (for
    ``extra``, key by key). ``with event_context(...) as metadata`` gives
    the metadata in effect inside the block. ``InvalidArgument`` for a value
    that cannot be stored, before anything is set.
    """
    return _EventContext(_checked(actor, correlation_id, causation_id, extra or None))


class Handling:
    """The event a projection or subscriber is handling now, for the
    metadata of what its handler writes. The run sets :attr:`record` before
    each event: one attribute, not a context of its own per event.

    A write in the handler is caused by that event (its position is the
    causation id) and belongs to its correlation (the request that began
    it all), where it has one; the context around the run (the runner's
    actor and correlation id) fills in the rest, and a context set inside
    the handler wins over both.
    """

    __slots__ = ("outer", "record")

    def __init__(self, outer: EventMetadata) -> None:
        #: The context when the handling began (the run's).
        self.outer = outer
        self.record: FeedRecord | None = None

    def over(self, current: EventMetadata) -> EventMetadata:
        """The metadata of a write in the handler, ``current`` being the
        context in effect there."""
        record = self.record
        if record is None:
            return current
        given = {
            "correlation_id": record.metadata.correlation_id,
            "causation_id": record.position,
        }
        fields = {}
        for name in _TEXT_FIELDS:
            value = getattr(current, name)
            # A field the handler's own context set (it differs from the
            # run's) wins; else what the handled event gives, if anything.
            if value == getattr(self.outer, name) and given.get(name) is not None:
                value = given[name]
            fields[name] = value
        return EventMetadata(**fields, extra=current.extra)


_handling: contextvars.ContextVar[Handling | None] = contextvars.ContextVar(
    "django_eventlog_handling", default=None
)


@contextlib.contextmanager
def handling() -> Iterator[Handling]:
    """Inside the block, writes take their causation (and correlation) from
    the :class:`Handling`'s current record, under any ``event_context``."""
    cause = Handling(_context.get())
    token = _handling.set(cause)
    try:
        yield cause
    finally:
        _handling.reset(token)


def current_metadata() -> EventMetadata:
    """The metadata the enclosing ``event_context`` blocks set (none: an
    empty ``EventMetadata``)."""
    return _context.get()


def metadata_for_write(explicit: object) -> EventMetadata:
    """The metadata of a write: the context's, with ``explicit`` (an
    ``EventMetadata``, a mapping of its fields, or None) winning over it."""
    found = _context.get()
    cause = _handling.get()
    if cause is not None:
        found = cause.over(found)
    if explicit is None:
        return found
    if isinstance(explicit, EventMetadata):
        given = _checked(
            explicit.actor,
            explicit.correlation_id,
            explicit.causation_id,
            explicit.extra or None,
        )
    elif isinstance(explicit, Mapping):
        unknown = set(explicit) - {*_TEXT_FIELDS, "extra"}
        if unknown:
            raise InvalidArgument(
                f"metadata has no field {sorted(unknown)[0]!r}: it takes actor, "
                "correlation_id, causation_id and extra."
            )
        given = _checked(*(explicit.get(n) for n in (*_TEXT_FIELDS, "extra")))
    else:
        raise InvalidArgument(
            "metadata must be an EventMetadata, a mapping of its fields or "
            f"None, got {type(explicit).__name__}."
        )
    return _merged(found, given)


def decode_metadata(
    actor: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    extra: str | bytes | None,
) -> EventMetadata:
    """The metadata of a stored event from its columns (``extra`` as JSON
    text); the shared empty one when none is set."""
    if (actor, correlation_id, causation_id, extra) == (None, None, None, None):
        return NO_METADATA
    return EventMetadata(
        actor,
        correlation_id,
        causation_id,
        _EMPTY if extra is None else MappingProxyType(msgspec.json.decode(extra)),
    )
