"""Run the write path's SQL: insert a log and its first events, or append
events, in one statement each.

:mod:`~django_eventlog.writes` checks and encodes, then calls these; the
statements come from :mod:`django_eventlog.sql` and run on the prepared
cursor of :mod:`~django_eventlog.prepared` (a single event's, that is: a
batch's statement is bound on the server but not prepared).

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .event_context import encode_extra
from .event_metadata import NO_METADATA, EventMetadata
from .prepared import prepared_cursor
from .sql import EncodedEvent, db_uuid, refused_as_gap, statements

__all__ = ["insert_events", "insert_log"]


def _event_params(
    connection: BaseDatabaseWrapper,
    log_id: uuid.UUID,
    index: int,
    events: Sequence[EncodedEvent],
    recorded_at: datetime,
    key: str | None,
    metadata: EventMetadata,
) -> list[Any]:
    """The parameters of ``events`` (type, payload, schema version) from
    ``index`` on; the key goes on the first, which names the batch; the
    metadata, if any, on each."""
    db_log_id = db_uuid(log_id, connection)
    db_recorded_at = connection.ops.adapt_datetimefield_value(recorded_at)
    shared: list[Any] = []
    if metadata:
        extra = encode_extra(metadata.extra)
        shared = [
            metadata.actor,
            metadata.correlation_id,
            metadata.causation_id,
            None if extra is None else extra.decode(),
        ]
    params: list[Any] = []
    for offset, (type_name, payload, version) in enumerate(events):
        params += [
            db_log_id,
            index + offset,
            type_name,
            payload,
            db_recorded_at,
            key if offset == 0 else None,
            version,
            *shared,
        ]
    return params


def _savepoint(connection: BaseDatabaseWrapper) -> Any:
    # Inside the caller's transaction a savepoint keeps it usable if the
    # statement fails; in autocommit a single statement is atomic by itself.
    if connection.in_atomic_block:
        return transaction.atomic(using=connection.alias)
    return nullcontext()


def insert_log(
    using: str,
    log_id: uuid.UUID,
    kind: str,
    events: Sequence[EncodedEvent],
    now: datetime,
    key: str | None,
    metadata: EventMetadata = NO_METADATA,
) -> None:
    """Insert a log and its ``events`` (type, payload) from index 0, together
    or not at all."""
    connection = connections[using]
    sql = statements(connection)
    log_params = [
        db_uuid(log_id, connection),
        kind,
        connection.ops.adapt_datetimefield_value(now),
    ]
    event_params = _event_params(connection, log_id, 0, events, now, key, metadata)
    create_log = sql.create_log_with(len(events), bool(metadata))
    if create_log is None:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(sql.insert_log, log_params)
            cursor.execute(sql.insert_events(len(events), bool(metadata)), event_params)
        return
    # One statement, atomic by itself: no BEGIN and COMMIT round trips.
    prepare = len(events) == 1
    with _savepoint(connection), prepared_cursor(connection, prepare=prepare) as c:
        c.execute(create_log, log_params + event_params)


def insert_events(
    using: str,
    log_id: uuid.UUID,
    index: int,
    events: Sequence[EncodedEvent],
    now: datetime,
    key: str | None,
    metadata: EventMetadata = NO_METADATA,
) -> bool:
    """Insert ``events`` (type, payload) from ``index`` on, in one statement;
    False when the database refuses them because the event before the first
    (at index 0: the log) does not exist."""
    connection = connections[using]
    query = statements(connection).insert_events(len(events), bool(metadata))
    params = _event_params(connection, log_id, index, events, now, key, metadata)
    try:
        # A batch's statement has as many shapes as there are batch sizes:
        # prepared, they would crowd the connection's prepared statements.
        prepare = len(events) == 1
        with _savepoint(connection), prepared_cursor(connection, prepare=prepare) as c:
            c.execute(query, params)
    except IntegrityError as e:
        # The no-gap trigger: a state ahead of the log, or a missing log.
        if refused_as_gap(e):
            return False
        raise
    return True
