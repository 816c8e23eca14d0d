"""Stored event rows decoded into ``EventRecord`` objects, in one place.

``load``, ``reduce``, the feed, the admin's state column and ``eventlog_verify`` all
turn :data:`~django_eventlog.sql.Row` tuples into records here, through
:mod:`~django_eventlog.upcasting`: a payload stored at its class's schema
version straight into the class, with a decoder looked up once per type,
an older one through its upcasters, and a payload that no longer fits its
class reported as an ``EventDecodingError`` naming its type, log and
index.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from django.db import connections

from .aggregates import EventRecord, FeedRecord
from .event_context import decode_metadata
from .event_metadata import NO_METADATA
from .events import DECODE_ERRORS
from .exceptions import EventDecodingError
from .positions import format_position
from .sql import FeedRow, Row, feed_statements, statements
from .upcasting import StoredType, stored_type

__all__ = ["FeedDecoder", "RecordDecoder", "decode_feed_rows", "decode_rows"]


class RecordDecoder:
    """Decode the rows of one database alias, one at a time.

    Raises ``UnknownEventType`` for a type no class claims,
    ``MissingUpcaster`` for a schema version with no way to its class's,
    and ``EventDecodingError`` for a payload that does not fit its class.
    """

    def __init__(self, using: str) -> None:
        self.convert = statements(connections[using]).convert_recorded_at
        self.types: dict[str, StoredType] = {}

    def stored_type(self, type_name: str) -> StoredType:
        """What decodes events stored under ``type_name``."""
        found = self.types.get(type_name)
        if found is None:
            found = self.types[type_name] = stored_type(type_name)
        return found

    def recorded_at(self, value: Any) -> Any:
        """A row's recorded_at as an aware datetime."""
        return value if self.convert is None else self.convert(value)

    def __call__(self, log_id: uuid.UUID, row: Row) -> EventRecord:
        index, type_name, payload, recorded_at, key, *metadata, version = row
        stored = self.stored_type(type_name)
        event = stored.read(type_name, version, payload, log_id, index)
        return EventRecord(
            index,
            stored.name,
            self.recorded_at(recorded_at),
            key,
            event,
            metadata=decode_metadata(*metadata),
        )


def decode_rows(
    using: str, log_id: uuid.UUID, rows: Iterable[Row]
) -> Iterator[EventRecord]:
    """Decode one log's rows into records, as :class:`RecordDecoder` does.

    The loop of every reduce, kept flat: one dict lookup per row finds the
    decoder of its type, and an event at its class's version (the row's
    version equal to ``current``) is decoded by it straight.
    """
    convert = statements(connections[using]).convert_recorded_at
    types: dict[str, tuple[Callable[[str], Any], int | None, str, StoredType]] = {}
    for (
        index,
        type_name,
        payload,
        recorded_at,
        key,
        actor,
        cor,
        cau,
        extra,
        v,
    ) in rows:
        found = types.get(type_name)
        if found is None:
            stored = stored_type(type_name)
            found = types[type_name] = (
                stored.decode,
                stored.current,
                stored.name,
                stored,
            )
        decode, current, name, stored = found
        # Identity first: None (version 1) against None, without a call.
        if v is current or v == current:
            try:
                event = decode(payload)
            except DECODE_ERRORS as e:
                raise EventDecodingError(type_name, str(e), log_id, index) from e
        else:
            event = stored.upcast(type_name, v, payload, log_id, index)
        yield EventRecord(
            index,
            name,
            recorded_at if convert is None else convert(recorded_at),
            key,
            event,
            # Most events have none: no call for them.
            metadata=NO_METADATA
            if actor is None and cor is None and cau is None and extra is None
            else decode_metadata(actor, cor, cau, extra),
        )


class FeedDecoder(RecordDecoder):
    """Decode the feed's rows of one database alias, one at a time, into
    :class:`FeedRecord` objects (errors as :class:`RecordDecoder`'s), the
    kinds of their logs given (:func:`~django_eventlog.log_kinds.kinds_of`)."""

    def __init__(self, using: str, kinds: Mapping[Any, str]) -> None:
        super().__init__(using)
        self.convert = feed_statements(connections[using]).convert_recorded_at
        self.kinds = kinds

    def feed_record(self, row: FeedRow) -> FeedRecord:
        (
            txid,
            event_id,
            db_log_id,
            index,
            type_name,
            payload,
            at,
            key,
            actor,
            cor,
            cau,
            extra,
            version,
        ) = row
        log_id = db_log_id if isinstance(db_log_id, uuid.UUID) else uuid.UUID(db_log_id)
        stored = self.stored_type(type_name)
        event = stored.read(type_name, version, payload, log_id, index)
        return FeedRecord(
            index,
            stored.name,
            at if self.convert is None else self.convert(at),
            key,
            event,
            log_id,
            self.kinds[db_log_id],
            format_position(txid, event_id),
            metadata=NO_METADATA
            if actor is None and cor is None and cau is None and extra is None
            else decode_metadata(actor, cor, cau, extra),
        )


def decode_feed_rows(
    using: str, rows: Iterable[FeedRow], kinds: Mapping[Any, str]
) -> list[FeedRecord]:
    """Decode the feed's rows into records, as :class:`FeedDecoder` does."""
    decode = FeedDecoder(using, kinds)
    return [decode.feed_record(row) for row in rows]
