"""Events stored at older schema versions, read as events of today's classes.

Every stored event is decoded through :class:`StoredType` (``reduce``,
``load``, the feed, the admin timeline, the idempotent-replay comparison
and ``eventlog_verify``): an event stored at its class's ``schema_version``
decodes straight into the class, one msgspec call as before versions; an
older one is decoded into a JSON object, passed through the registered
upcasters one version at a time, and then decoded into the class. An event
stored under one of a class's ``aliases`` is read as that class.

:func:`upcaster` is public (from ``django_eventlog``); the rest is internal
to the package: :mod:`~django_eventlog.records` runs the fast path in its
loops and :func:`decode_stored` decodes single events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from .events import (
    DECODE_ERRORS,
    SCHEMA_VERSION_MAX,
    TYPE_NAME_MAX_LENGTH,
    DomainEvent,
    event_class,
    event_decoder,
    on_registry_change,
)
from .exceptions import (
    DuplicateUpcaster,
    EventDecodingError,
    InvalidArgument,
    MissingUpcaster,
)

__all__ = ["StoredType", "Upcaster", "decode_stored", "stored_type", "upcaster"]

#: An upcaster: the stored JSON object of one version in, the next version's out.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_U = TypeVar("_U", bound=Upcaster)

_upcasters: dict[tuple[str, int], Upcaster] = {}
_types: dict[str, StoredType] = {}


def upcaster(
    event_type: type[DomainEvent] | str, from_version: int
) -> Callable[[_U], _U]:
    """Register the decorated function as the step of ``event_type``'s stored
    JSON from ``from_version`` to ``from_version + 1``.

    Use it when a change to an event class would not decode the events
    already stored: raise the class's ``schema_version`` and register one
    upcaster per step, in the module that defines the class (so every
    process that can read the event registers it). The function takes the
    stored JSON object (a fresh ``dict`` it may change) and returns the
    next version's; steps chain, so an event three versions behind passes
    through three. ``event_type`` is the class, or its current type name::

        @upcaster(Captured, from_version=1)
        def captured_currency(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "currency": "EUR"}

    Raises ``InvalidArgument`` for a bad type or version, and
    ``DuplicateUpcaster`` when another function already holds that step.
    An upcaster that raises, or returns no dict, makes reading the event
    raise ``EventDecodingError`` naming it.
    """
    name = _type_name(event_type)
    if (
        not isinstance(from_version, int)
        or isinstance(from_version, bool)
        or not 1 <= from_version < SCHEMA_VERSION_MAX
    ):
        raise InvalidArgument(
            f"from_version must be an int from 1 to {SCHEMA_VERSION_MAX - 1}, "
            f"got {from_version!r}."
        )

    def register(function: _U) -> _U:
        if not callable(function):
            raise InvalidArgument(f"An upcaster must be callable, got {function!r}.")
        step = (name, from_version)
        existing = _upcasters.get(step)
        # Re-executing the same definition (a reloaded module) replaces it.
        if existing is not None and _where(existing) != _where(function):
            raise DuplicateUpcaster(
                f"The upcaster of {name!r} from version {from_version} is both "
                f"{_where(existing)} and {_where(function)}."
            )
        _upcasters[step] = function
        _types.clear()
        return function

    return register


def upcaster_versions(type_name: str) -> list[int]:
    """The versions that have an upcaster to the next, for ``type_name``."""
    return sorted(version for name, version in _upcasters if name == type_name)


def _type_name(event_type: object) -> str:
    if isinstance(event_type, type) and issubclass(event_type, DomainEvent):
        return event_type.type_name
    if (
        isinstance(event_type, str)
        and event_type
        and len(event_type) <= TYPE_NAME_MAX_LENGTH
        and "\x00" not in event_type
    ):
        return event_type
    raise InvalidArgument(
        f"An upcaster's event type must be a DomainEvent class or its type name, "
        f"got {event_type!r}."
    )


def _where(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", "?")
    return f"{module}.{getattr(function, '__qualname__', repr(function))}"


class StoredType:
    """What decodes the events stored under one type name.

    :attr:`current` is the schema version whose events decode straight, as
    the column holds it (NULL for version 1): a row whose version equals it
    is decoded by :attr:`decode` (raising msgspec's :data:`DECODE_ERRORS`);
    any other goes through :meth:`upcast`.
    """

    __slots__ = ("current", "decode", "event_class", "name", "version")

    def __init__(self, cls: type[DomainEvent]) -> None:
        self.event_class = cls
        #: The class's type name (the stored one may be an alias).
        self.name = cls.type_name
        #: The class's schema_version.
        self.version = cls.schema_version
        self.current = None if cls.schema_version == 1 else cls.schema_version
        self.decode: Callable[[str | bytes], DomainEvent] = event_decoder(cls)

    def read(
        self,
        stored_name: str,
        version: int | None,
        payload: str | bytes,
        log_id: uuid.UUID | None = None,
        index: int | None = None,
    ) -> DomainEvent:
        """Decode an event stored under ``stored_name`` at ``version`` (None:
        1): straight at :attr:`current`, else through :meth:`upcast`."""
        if version == self.current:
            return self.decode_exactly(stored_name, payload, log_id, index)
        return self.upcast(stored_name, version, payload, log_id, index)

    def upcast(
        self,
        stored_name: str,
        version: int | None,
        payload: str | bytes,
        log_id: uuid.UUID | None = None,
        index: int | None = None,
    ) -> DomainEvent:
        """Decode an event stored at ``version`` (None: 1) through the
        upcasters to the class's version; library errors naming it."""
        stored = 1 if version is None else version
        if stored == self.version:  # 1 stored as such, not as NULL
            return self.decode_exactly(stored_name, payload, log_id, index)
        if not 1 <= stored < self.version:
            raise MissingUpcaster(stored_name, stored, self.version, log_id, index)
        try:
            data: Any = msgspec.json.decode(payload)
        except DECODE_ERRORS as e:
            raise EventDecodingError(
                stored_name, str(e), log_id, index, version=stored
            ) from e
        if not isinstance(data, dict):
            raise EventDecodingError(
                stored_name,
                f"the stored {type(data).__name__} is not a JSON object",
                log_id,
                index,
                version=stored,
            )
        for step in range(stored, self.version):
            function = _upcasters.get((self.name, step))
            if function is None:
                raise MissingUpcaster(
                    stored_name,
                    stored,
                    self.version,
                    log_id,
                    index,
                    missing=step,
                    upcast_as=self.name,
                )
            try:
                data = function(data)
            except Exception as e:
                raise EventDecodingError(
                    stored_name,
                    f"the upcaster {_where(function)} from version {step} raised {e!r}",
                    log_id,
                    index,
                    version=stored,
                ) from e
            if not isinstance(data, dict):
                raise EventDecodingError(
                    stored_name,
                    f"the upcaster {_where(function)} from version {step} returned "
                    f"{type(data).__name__}, not a dict",
                    log_id,
                    index,
                    version=stored,
                )
        try:
            encoded = msgspec.json.encode(data)
            return self.decode(encoded)
        except (*DECODE_ERRORS, TypeError, ValueError) as e:
            raise EventDecodingError(
                stored_name,
                f"{e} (upcast from version {stored} to {self.version})",
                log_id,
                index,
                version=stored,
            ) from e

    def decode_exactly(
        self,
        stored_name: str,
        payload: str | bytes,
        log_id: uuid.UUID | None = None,
        index: int | None = None,
    ) -> DomainEvent:
        """Decode an event stored at the class's version; library errors."""
        try:
            return self.decode(payload)
        except DECODE_ERRORS as e:
            raise EventDecodingError(
                stored_name, str(e), log_id, index, version=self.version
            ) from e


def stored_type(type_name: str) -> StoredType:
    """What decodes events stored under ``type_name`` (a class's name or
    alias); ``UnknownEventType`` when no class claims it."""
    found = _types.get(type_name)
    if found is None:
        found = _types[type_name] = StoredType(event_class(type_name))
    return found


def decode_stored(
    type_name: str,
    version: int | None,
    payload: str | bytes,
    log_id: uuid.UUID | None = None,
    index: int | None = None,
) -> DomainEvent:
    """Decode one stored event, as the loops of :mod:`~django_eventlog.records`
    do: ``UnknownEventType``, ``MissingUpcaster`` or ``EventDecodingError``
    when it cannot be read."""
    return stored_type(type_name).read(type_name, version, payload, log_id, index)


on_registry_change(_types.clear)
