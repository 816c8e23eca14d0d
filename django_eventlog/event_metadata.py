"""What an event records of who wrote it and why: :class:`EventMetadata`.

Set by ``event_context`` (:mod:`django_eventlog.event_context`), by
``EventContextMiddleware`` from the request, or by ``metadata=`` on a
write; read back as ``EventRecord.metadata``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["NO_METADATA", "EventMetadata"]

_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class EventMetadata:
    """Who wrote an event and why (see ``event_context``); any field may be
    None, and ``extra`` empty."""

    #: Who: ``"user:42"``, ``"system:seed_payments"``; None when unknown.
    actor: str | None = None
    #: The request, job or conversation the event belongs to.
    correlation_id: str | None = None
    #: The event or command that caused it (for an event a projection or
    #: subscriber wrote: the position of the event it was handling).
    causation_id: str | None = None
    #: Anything else: a JSON object, read-only.
    extra: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _NO_EXTRA)

    def as_dict(self) -> dict[str, Any]:
        """Return the metadata as JSON-ready builtins."""
        return {
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "extra": dict(self.extra),
        }

    def __bool__(self) -> bool:
        """Whether any field is set."""
        return (
            self.actor is not None
            or self.correlation_id is not None
            or self.causation_id is not None
            or bool(self.extra)
        )


#: The metadata of an event written without any.
NO_METADATA = EventMetadata()
