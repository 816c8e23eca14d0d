"""Typed domain events and their JSON encoding.

A ``DomainEvent`` subclass is a frozen dataclass with a stable stored type
name. Events are encoded with msgspec, which decodes JSON straight into the
declared field types in one pass (see ``benchmarks/event_codec.py``).

Internal to the package (:mod:`django_eventlog.upcasting` is their user):
:func:`event_decoder`, the raw decoder of one class's current version, and
:data:`DECODE_ERRORS`, what it raises for a payload that does not fit its
class; :func:`event_from_json`, the decoder of JSON input
(:func:`django_eventlog.http.json_event` is its user). Stored events are
decoded, whatever their schema version, by
:mod:`~django_eventlog.upcasting`.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgspec

from .exceptions import (
    DuplicateEventType,
    EventEncodingError,
    InvalidArgument,
    UnknownEventType,
)

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:
    from typing_extensions import dataclass_transform

__all__ = [
    "DomainEvent",
    "encode_event",
    "event_class",
    "on_registry_change",
    "registered_event_classes",
    "registered_type_names",
]

TYPE_NAME_MAX_LENGTH = 200
#: The highest ``schema_version`` (the column is a smallint).
SCHEMA_VERSION_MAX = 32767

_E = TypeVar("_E", bound="DomainEvent")

_registry: dict[str, type[DomainEvent]] = {}
_decoders: dict[type[DomainEvent], msgspec.json.Decoder[Any]] = {}
_listeners: list[Callable[[], None]] = []
_encoder = msgspec.json.Encoder()
#: What a decoder raises for stored JSON that does not fit its class.
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
# A JSON "\u0000" escape that is not itself an escaped backslash: PostgreSQL's
# jsonb cannot store it, so it is refused on every backend alike.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


@dataclass_transform(frozen_default=True)
class DomainEvent:
    """Base class of the events a log stores.

    Subclasses are frozen dataclasses: declare fields with annotations, as
    with ``@dataclass``. Each subclass is stored under ``type_name``, which
    defaults to the class name; set it explicitly to keep stored events
    readable after renaming or moving the class::

        class Captured(DomainEvent):
            type_name = "payment.captured"
            amount: int
            statement_descriptor: str

    Two classes claiming one type name raise :class:`DuplicateEventType` when
    the second is defined.

    Stored events outlive their class. ``schema_version`` (default 1) is
    stored with each event; when a change would not decode the events
    already stored (a field added without a default, removed, renamed or
    given another type), raise it by one and register an
    :func:`~django_eventlog.upcaster` from the old version's JSON to the
    new one's. ``aliases`` lists the type's earlier names, so events stored
    under them decode into this class. ``manage.py eventlog_schemas
    --check`` catches a change made without either ("Changing events" in
    the docs)::

        class Captured(DomainEvent):
            type_name = "payment.captured"
            schema_version = 2
            aliases = ("payments.Captured",)
            amount: int
            currency: str
    """

    type_name: ClassVar[str]
    #: The version of this class's fields, stored with each event (1 to
    #: :data:`SCHEMA_VERSION_MAX`); each class declares its own.
    schema_version: ClassVar[int] = 1
    #: Earlier type names of this class, read as its own.
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)
        name = _type_name(cls, "type_name", cls.__dict__.get("type_name", cls.__name__))
        cls.type_name = name
        cls.schema_version = _schema_version(cls)
        cls.aliases = _aliases(cls, name)
        names = (name, *cls.aliases)
        for claimed in names:
            existing = _registry.get(claimed)
            # Re-executing the same class definition (a reloaded module)
            # replaces it.
            if existing is not None and not _same_definition(existing, cls):
                raise DuplicateEventType(
                    f"Event type name {claimed!r} is claimed by both "
                    f"{existing.__module__}.{existing.__qualname__} and "
                    f"{cls.__module__}.{cls.__qualname__}; set type_name on one "
                    "of them."
                )
        for claimed, existing in list(_registry.items()):
            if _same_definition(existing, cls):
                del _registry[claimed]  # names an earlier definition claimed
        for claimed in names:
            _registry[claimed] = cls
        _decoders.pop(cls, None)
        _changed()


def _same_definition(a: type[DomainEvent], b: type[DomainEvent]) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _type_name(cls: type[DomainEvent], attribute: str, name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > TYPE_NAME_MAX_LENGTH
        or "\x00" in name
    ):
        raise DuplicateEventType(
            f"{cls.__qualname__}.{attribute} must be a non-empty string of at "
            f"most {TYPE_NAME_MAX_LENGTH} characters, got {name!r}."
        )
    return name


def _schema_version(cls: type[DomainEvent]) -> int:
    # Not inherited: a subclass is another type, with versions of its own.
    version = cls.__dict__.get("schema_version", 1)
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version <= SCHEMA_VERSION_MAX
    ):
        raise InvalidArgument(
            f"{cls.__qualname__}.schema_version must be an int from 1 to "
            f"{SCHEMA_VERSION_MAX}, got {version!r}."
        )
    return version


def _aliases(cls: type[DomainEvent], name: str) -> tuple[str, ...]:
    aliases = cls.__dict__.get("aliases", ())
    if isinstance(aliases, str) or not isinstance(aliases, (tuple, list)):
        raise InvalidArgument(
            f"{cls.__qualname__}.aliases must be a tuple of type names, got "
            f"{aliases!r}."
        )
    checked = tuple(_type_name(cls, "aliases", alias) for alias in aliases)
    if name in checked or len(set(checked)) != len(checked):
        raise InvalidArgument(
            f"{cls.__qualname__}.aliases must name earlier type names, each once "
            f"and not {name!r} itself, got {aliases!r}."
        )
    return checked


def _changed() -> None:
    """Forget what was derived from the registry (the decoders by version)."""
    for listener in _listeners:
        listener()


def event_class(type_name: str) -> type[DomainEvent]:
    """Return the class registered for a stored type name."""
    try:
        return _registry[type_name]
    except KeyError:
        raise UnknownEventType(type_name) from None


def registered_type_names() -> list[str]:
    """Return the stored type names of every defined event class (aliases
    included), sorted."""
    return sorted(_registry)


def registered_event_classes() -> list[type[DomainEvent]]:
    """Return every defined event class, by type name."""
    return sorted(set(_registry.values()), key=lambda cls: cls.type_name)


def on_registry_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever an event class is defined (or redefined)."""
    _listeners.append(listener)


def encode_event(event: DomainEvent, max_size: int | None = None) -> str:
    """Encode an event to JSON text that decodes back to an equal event.

    Raise :class:`EventEncodingError` when it cannot be, before anything is
    stored: a field value of a type JSON cannot hold, a value that does not
    match its declared type, a float NaN or infinity, a NUL character, or
    JSON longer than ``max_size`` bytes (``EVENTLOG_MAX_EVENT_SIZE``).
    """
    if not isinstance(event, DomainEvent):
        raise EventEncodingError(
            f"Expected a DomainEvent instance, got {type(event).__name__}."
        )
    cls = type(event)
    if max_size is not None:
        # A huge string or bytes field is refused before it is copied into
        # JSON; anything else once encoded, before the round trip copies it
        # again.
        least = _least_size(event)
        if least > max_size:
            raise _too_large(cls, f"at least {least}", max_size)
    try:
        data = _encoder.encode(event)
    except _ENCODE_ERRORS as e:
        raise _unstorable(cls, e) from e
    if max_size is not None and len(data) > max_size:
        raise _too_large(cls, str(len(data)), max_size)
    try:
        exact = _decoder(cls).decode(data) == event
    except _ENCODE_ERRORS as e:
        raise _unstorable(cls, e) from e
    if not exact:
        raise EventEncodingError(
            f"{cls.__qualname__} event does not survive a JSON round trip "
            f"(stored {data.decode()!r}); check its field values against their "
            "declared types (NaN and infinite floats cannot be stored)."
        )
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):
        raise EventEncodingError(
            f"{cls.__qualname__} event holds a NUL character, which cannot be stored."
        )
    return data.decode()


# ArithmeticError: comparing Decimal("sNaN"); RecursionError: values nested
# too deep for msgspec.
_ENCODE_ERRORS = (
    msgspec.MsgspecError,
    TypeError,
    ValueError,
    ArithmeticError,
    RecursionError,
)


def _unstorable(cls: type[DomainEvent], error: Exception) -> EventEncodingError:
    message = f"{cls.__qualname__} event cannot be stored as JSON: {error!r}"
    if isinstance(error, msgspec.ValidationError):
        return _misfit(message, error)
    return EventEncodingError(message)


# Where msgspec says a value is: "... - at `$.a[0]`", or "... - at `key` in
# `$.a`" for a dict key; without either, the value is the whole document.
_AT = re.compile(r" - at (`key` in )?`(\$[^`]*)`\Z")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")


def _misfit(message: str, error: msgspec.ValidationError) -> EventEncodingError:
    """The error for a value that does not fit its declared type, with its
    path and msgspec's reason: a missing field's path names the field."""
    reason, path = str(error), "$"
    if at := _AT.search(reason):
        reason, path = reason[: at.start()], at[2]
        if at[1]:
            reason += " (a key)"
    if missing := _MISSING.fullmatch(reason):
        path += f".{missing[1]}"
    return EventEncodingError(message, path=path, reason=reason)


def _least_size(event: DomainEvent) -> int:
    """A lower bound of the event's JSON size: its str and bytes fields' lengths."""
    # Each character is at least one byte of JSON and base64 only grows bytes.
    least = 0
    for value in getattr(event, "__dict__", {}).values():
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            least += len(value)
    return least


def _too_large(cls: type[DomainEvent], size: str, max_size: int) -> EventEncodingError:
    return EventEncodingError(
        f"{cls.__qualname__} event is {size} bytes of JSON, more than the "
        f"{max_size} bytes EVENTLOG_MAX_EVENT_SIZE allows."
    )


def event_from_json(cls: type[_E], data: str | bytes) -> _E:
    """Decode JSON input into an event of ``cls``, as stored JSON is decoded.

    Raises :class:`EventEncodingError` naming the first value that does not
    fit the class, and ``msgspec.DecodeError`` (a ``ValueError``) for text
    that is not JSON.
    """
    try:
        return _decoder(cls).decode(data)
    except msgspec.ValidationError as e:
        raise _misfit(f"The JSON does not fit {cls.__qualname__}: {e}", e) from e


def event_decoder(cls: type[DomainEvent]) -> Callable[[str | bytes], DomainEvent]:
    """Return the function that decodes JSON of ``cls``'s current version:
    fast, and raising msgspec's own :data:`DECODE_ERRORS` (the caller wraps
    them)."""
    return _decoder(cls).decode


def _decoder(cls: type[_E]) -> msgspec.json.Decoder[_E]:
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = msgspec.json.Decoder(cls)
    return decoder
