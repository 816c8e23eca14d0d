"""Errors raised by django_eventlog; all subclass :class:`EventLogError`."""

from __future__ import annotations

import re
from uuid import UUID

from .event_metadata import NO_METADATA, EventMetadata


class EventLogError(Exception):
    """Base class of every error django_eventlog raises on purpose."""


class InvalidArgument(EventLogError, ValueError, TypeError):
    """An argument has the wrong type or an invalid value; nothing was written."""


class EventEncodingError(EventLogError, ValueError):
    """An event cannot be stored as JSON that decodes back to an equal event,
    or JSON input does not fit an event class.

    Raised before anything is written. Fix the event's field values or its
    declared field types, or, for input, answer the client that sent it.
    When the value at fault has a known place (a value of the wrong type, a
    missing field, a failed ``msgspec.Meta`` constraint), ``path`` names it
    the way msgspec does (``$.lines[0].quantity``), ``pointer`` as an RFC
    6901 JSON Pointer (``/lines/0/quantity``), and ``reason`` says what is
    wrong there (``Expected `int`, got `str```). Otherwise ``path`` and
    ``pointer`` are None and ``reason`` is the message.
    """

    def __init__(
        self, message: str, *, path: str | None = None, reason: str | None = None
    ) -> None:
        self.path = path
        self.pointer = None if path is None else _json_pointer(path)
        self.reason = message if reason is None else reason
        super().__init__(message)


# One step of a msgspec path: a field (.name), an index ([0]), or a dict's
# value ([...], whose key msgspec does not give).
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


def _json_pointer(path: str) -> str:
    """Return the JSON Pointer of a msgspec path (``$.a[0]``: ``/a/0``).

    A value in a dict is named by the dict: msgspec does not give its key.
    """
    pointer = ""
    for step in _PATH_STEP.finditer(path, 1):
        if step[0] == "[...]":
            break
        token = step[1] if step[2] is None else step[2]
        pointer += "/" + token.replace("~", "~0").replace("/", "~1")
    return pointer


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

    #: The original event's metadata (who wrote it, in which request); the
    #: retry's own metadata is not stored.
    metadata: EventMetadata = NO_METADATA

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
        *,
        version: int = 1,
    ) -> None:
        self.type_name = type_name
        self.reason = reason
        self.log_id = log_id
        self.index = index
        #: The schema version the event was stored at.
        self.version = version
        where = "" if log_id is None else f" (log {log_id}, index {index})"
        at = "" if version == 1 else f" stored at version {version}"
        super().__init__(
            f"A stored {type_name!r} event{where}{at} does not decode into its "
            f"class: {reason}"
        )


class MissingUpcaster(EventDecodingError):
    """A stored event's schema version has no way to its class's version.

    An upcaster from one of the versions between is not registered (import
    the module that registers it, in ``AppConfig.ready()``), or the event
    was stored at a version newer than the class (a newer release wrote it:
    deploy that release's classes and upcasters here too).
    ``manage.py eventlog_schemas --check`` names a missing upcaster before
    it ships; ``eventlog_verify`` finds every event it leaves unreadable.
    """

    def __init__(
        self,
        type_name: str,
        version: int,
        current: int,
        log_id: UUID | None = None,
        index: int | None = None,
        *,
        missing: int | None = None,
        upcast_as: str | None = None,
    ) -> None:
        #: The version the class is at now.
        self.current = current
        #: The version whose upcaster (to the next) is missing; None for an
        #: event newer than its class. ``upcast_as``: the type name the
        #: upcasters are registered under, when the event was stored under
        #: an alias.
        self.missing = missing
        if missing is None:
            reason = (
                f"version {version} is newer than the class's schema_version "
                f"{current} (written by a newer release?)"
            )
        else:
            reason = (
                f"no upcaster from version {missing} to {missing + 1} is "
                f"registered for {upcast_as or type_name!r} (the class is at "
                f"version {current})"
            )
        super().__init__(type_name, reason, log_id, index, version=version)


class DuplicateUpcaster(EventLogError):
    """Two upcasters claim one event type's step from one version."""


class DuplicateEventType(EventLogError):
    """Two ``DomainEvent`` classes claim one stored type name."""


class ImmutableEvent(EventLogError):
    """Events are append-only: they cannot be changed or deleted."""


class ImmutableLog(EventLogError):
    """Logs cannot be changed or deleted: their id, kind and creation time are
    fixed when they are created (``LogAgePolicy`` decides by the last)."""


class StaleState(EventLogError):
    """The log is not at the state the caller expected: a precondition failed.

    Raised by ``transact`` when ``expected`` (say, the state an ``If-Match``
    header names) is not the log's current state, before anything is
    decided or written. ``current_index`` is the log's next index now: show
    that state to the client (``http.problem_for`` answers 412 with its
    ``ETag``), who fetches the resource again and decides anew.
    """

    def __init__(self, log_id: UUID, expected_index: int, current_index: int) -> None:
        self.log_id = log_id
        self.expected_index = expected_index
        self.current_index = current_index
        super().__init__(
            f"Log {log_id} is at index {current_index}, not at the expected "
            f"{expected_index}; read it again."
        )


class FeedPositionsAhead(EventLogError):
    """Stored feed positions are ahead of this PostgreSQL cluster's
    transaction ids: new events would sort before positions already
    delivered, and projections would skip them.

    It happens when the events were copied into another cluster by a logical
    restore (``pg_dump`` and ``pg_restore``) or logical replication, which
    keep the stored ``txid`` values but not the cluster's transaction
    counter (``pg_upgrade``, physical backups and replicas keep both). Until
    it is repaired, the runner and ``catch_up`` refuse to run. The repair:
    stop the new cluster and move its counter past ``needed`` with
    ``pg_resetwal -e <epoch> -x <xid>`` (the message gives both), then start
    it again; see docs/read-side.md.
    """

    def __init__(self, stored: int, current: int) -> None:
        self.stored = stored
        self.current = current
        needed = stored + 1
        epoch, xid = needed >> 32, max(needed & 0xFFFFFFFF, 3)
        super().__init__(
            f"Stored feed positions reach transaction id {stored}, but this "
            f"cluster's next transaction id is {current}: the events were copied "
            "from another cluster (a logical restore or logical replication), and "
            "new events would sort before positions already delivered. Stop the "
            f"cluster and run pg_resetwal -e {epoch} -x {xid} on its data directory "
            "(see docs/read-side.md), then start it again."
        )
