"""Errors raised by django_eventlog; all subclass :class:`EventLogError`."""

from __future__ import annotations

from uuid import UUID


class EventLogError(Exception):
    """Base class of every error django_eventlog raises on purpose."""


class InvalidArgument(EventLogError, ValueError, TypeError):
    """An argument has the wrong type or an invalid value; nothing was written."""


class EventEncodingError(EventLogError, ValueError):
    """An event cannot be stored as JSON that decodes back to an equal event.

    Raised before anything is written. Fix the event's field values or its
    declared field types.
    """


class ConcurrentAppend(EventLogError):
    """The log state was stale: another writer took that index first.

    Also raised by ``create_log`` when the given log id already exists.
    Reduce the log again, decide whether the operation still applies, and
    append with the fresh state.
    """

    def __init__(self, log_id: UUID) -> None:
        self.log_id = log_id
        super().__init__(
            f"Log {log_id} changed since its state was read (or already exists); "
            "reduce it again and retry."
        )


class _IdempotencyError(EventLogError):
    def __init__(
        self, message: str, idempotency_key: str, log_id: UUID, event_index: int
    ) -> None:
        self.idempotency_key = idempotency_key
        self.log_id = log_id
        self.event_index = event_index
        super().__init__(message)


class IdempotentReplay(_IdempotencyError):
    """The idempotency key was used before, by the same request.

    An append to the same log of an equal event, or a create of the same kind
    with an equal event (see "Replay or conflict" in the concepts docs). The
    operation already happened: ``log_id`` and ``event_index`` name the
    ORIGINAL event. Treat it as success and answer with the original outcome.
    """

    def __init__(self, idempotency_key: str, log_id: UUID, event_index: int) -> None:
        super().__init__(
            f"Idempotency key {idempotency_key!r} was already used for the same "
            f"event: log {log_id}, index {event_index}.",
            idempotency_key,
            log_id,
            event_index,
        )


class IdempotencyConflict(_IdempotencyError):
    """The idempotency key was used before, by a different request.

    Another event, another log, another kind, or a create with the key of an
    append. Nothing was written; ``log_id`` and ``event_index`` name the
    original event. The client reused a key for another request: report
    the conflict to it rather than retrying.
    """

    def __init__(self, idempotency_key: str, log_id: UUID, event_index: int) -> None:
        super().__init__(
            f"Idempotency key {idempotency_key!r} was already used for a different "
            f"event: log {log_id}, index {event_index}.",
            idempotency_key,
            log_id,
            event_index,
        )


class LogNotFound(EventLogError):
    """No log has this id."""

    def __init__(self, log_id: UUID) -> None:
        self.log_id = log_id
        super().__init__(f"Log {log_id} does not exist.")


class UnknownEventType(EventLogError):
    """A stored event's type name is claimed by no ``DomainEvent`` class.

    Usually the module that defines the class was not imported in this
    process: import it in your ``AppConfig.ready()``, so that every process
    (web, worker, management command) registers it. Otherwise restore the
    deleted class, or give a renamed class the old name through
    ``type_name``.
    """

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(
            f"No DomainEvent class is registered for the stored type {type_name!r}: "
            "import the module that defines it in your AppConfig.ready() so every "
            "process (web, worker, management command) registers it, or restore "
            "the class (or its type_name)."
        )


class EventDecodingError(EventLogError, ValueError):
    """A stored event no longer decodes into the class that claims its type.

    The class changed in a way old events do not fit (a field renamed,
    removed without a default, or given another type). ``log_id`` and
    ``index`` name the event when it was read from a log. Restore a
    compatible class, or keep the old one under the old ``type_name``; run
    ``manage.py eventlog_verify`` to find every such event.
    """

    def __init__(
        self,
        type_name: str,
        reason: str,
        log_id: UUID | None = None,
        index: int | None = None,
    ) -> None:
        self.type_name = type_name
        self.reason = reason
        self.log_id = log_id
        self.index = index
        where = "" if log_id is None else f" (log {log_id}, index {index})"
        super().__init__(
            f"A stored {type_name!r} event{where} does not decode into its "
            f"class: {reason}"
        )


class DuplicateEventType(EventLogError):
    """Two ``DomainEvent`` classes claim one stored type name."""


class ImmutableEvent(EventLogError):
    """Events are append-only: they cannot be changed or deleted."""


class ImmutableLog(EventLogError):
    """Logs cannot be changed or deleted: their id, kind and creation time are
    fixed when they are created (``LogAgePolicy`` decides by the last)."""
