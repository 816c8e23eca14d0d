"""What the admin timeline shows of each event: its payload and the state
after it, as indented JSON of bounded size, and who wrote it and why; for an
event stored at an older schema version, the event as it is read now.

Internal to the package: the admin is :mod:`django_eventlog.admin`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from . import queries
from .aggregates import Aggregate
from .conf import conf
from .exceptions import EventDecodingError, UnknownEventType
from .models import Log
from .records import decode_rows
from .upcasting import stored_type

__all__ = [
    "Reading",
    "TimelineEntry",
    "fill_states",
    "payload_chars",
    "read_now",
    "render_json",
    "render_payload",
]


@dataclass
class TimelineEntry:
    """One event as the timeline shows it: what happened, who did it and why."""

    index: int
    type: str
    recorded_at: Any
    idempotency_key: str | None
    payload: str
    state: list[tuple[str, str, bool]] = field(default_factory=list)
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    #: the event list filtered to the correlation id, if the viewer may see it
    correlation_url: str | None = None
    #: set by :func:`read_now` for an event not stored as its class reads it
    reading: Reading | None = None


@dataclass
class Reading:
    """How an event stored at another schema version (or under an alias) is
    read now: ``note`` says so ("stored at v1, read as v2"); ``payload`` is
    the event as read, as indented JSON, or None with ``unread`` saying why."""

    note: str
    payload: str | None = None
    unread: str | None = None

    @property
    def upcast(self) -> bool:
        """Whether it is read at another version than stored (not only renamed)."""
        return self.payload is not None or self.unread is not None


def read_now(
    type_name: str,
    version: int | None,
    payload: str,
    *,
    limit: int,
    depth: int,
    log_id: uuid.UUID,
    index: int,
) -> Reading | None:
    """How the event of a timeline row is read now, when that differs from
    how it was stored; None when it is stored as its class reads it.

    ``payload`` is the stored text as the page read it (at most
    :func:`payload_chars`): a payload read in part is not decoded, and one
    that does not decode says why. The stored JSON stays on the page either
    way: it is what an auditor must see.
    """
    try:
        stored = stored_type(type_name)
    except UnknownEventType:
        return None
    # Version 1 is NULL as our writer stores it, 1 as another may.
    stored_version = 1 if version is None else version
    renamed = type_name != stored.name
    if stored_version == stored.version and not renamed:
        return None
    if stored_version == stored.version:
        return Reading(f"stored as {type_name}, read as {stored.name}")
    stored_as = (
        f"as {type_name} v{stored_version}" if renamed else f"at v{stored_version}"
    )
    read_as = f"{stored.name} v{stored.version}" if renamed else f"v{stored.version}"
    note = f"stored {stored_as}, read as {read_as}"
    if stored_version > stored.version:
        note = f"stored {stored_as}, newer than the class's v{stored.version}"
    if len(payload) >= payload_chars(limit):
        return Reading(note, unread="Too long to read here: the stored JSON is cut.")
    try:
        event = stored.upcast(type_name, version, payload, log_id, index)
    except EventDecodingError as e:
        return Reading(note, unread=f"Cannot be read now: {e}")
    return Reading(
        note,
        render_json(msgspec.to_builtins(event), limit=limit, depth=depth),
    )


def render_json(value: Any, *, limit: int, depth: int) -> str:
    """Indented JSON of ``value``, at most ``depth`` levels deep and about
    ``limit`` characters long, with a note saying what was left out."""
    notes = []
    if _deeper_than(value, depth):
        value = _clip(value, depth)
        notes.append(f"nesting deeper than {depth} levels is shown as {_CLIPPED!r}")
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        notes.append(f"{len(text):,} characters, the first {limit:,} shown")
        text = text[:limit]
    return text if not notes else f"{text}\n\u2026 truncated: {'; '.join(notes)}."


def payload_chars(limit: int) -> int:
    """How much of a payload to read from the database for :func:`render_payload`."""
    return _PARSED_MAX * limit + 1


def render_payload(payload: str, *, limit: int, depth: int) -> str:
    """A stored payload (JSON text, or its first :func:`payload_chars`
    characters) as :func:`render_json` shows it; text too long or too deep
    to parse is cut as it is."""
    # Parsed when not much longer than what is shown: the indented text of
    # a somewhat longer payload is cut too, but reads better.
    if len(payload) <= _PARSED_MAX * limit:
        try:
            return render_json(json.loads(payload), limit=limit, depth=depth)
        except (ValueError, RecursionError):
            pass
    if len(payload) <= limit:
        return payload
    size = f"{len(payload):,}"
    if len(payload) >= payload_chars(limit):  # read in part
        size = f"more than {_PARSED_MAX * limit:,}"
    return (
        f"{payload[:limit]}\n\u2026 truncated: {size} characters, "
        f"the first {limit:,} shown."
    )


_CLIPPED = "\u2026"
_PARSED_MAX = 10


def _deeper_than(value: Any, depth: int) -> bool:
    if not isinstance(value, dict | list):
        return False
    if depth == 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(child, depth - 1) for child in children)


def _clip(value: Any, depth: int) -> Any:
    if not isinstance(value, dict | list):
        return value
    if depth == 0:
        return _CLIPPED
    if isinstance(value, dict):
        return {key: _clip(child, depth - 1) for key, child in value.items()}
    return [_clip(child, depth - 1) for child in value]


def state_dict(aggregate: Aggregate) -> dict[str, Any]:
    try:
        state = msgspec.to_builtins(aggregate)
    except (msgspec.MsgspecError, TypeError):
        return {name: repr(value) for name, value in vars(aggregate).items()}
    return state if isinstance(state, dict) else {"state": state}


def fill_states(
    log: Log,
    aggregate_class: type[Aggregate],
    entries: list[TimelineEntry],
    limit: int,
    depth: int,
) -> None:
    """Set each entry's state after its event, folding the log once from 0."""
    by_index = {entry.index: entry for entry in entries}
    using = log._state.db or "default"
    aggregate = aggregate_class()
    rows = queries.stream_rows(
        using, log.pk, 0, conf.EVENTLOG_CHUNK_SIZE, through=max(by_index)
    )
    for record in decode_rows(using, log.pk, rows):
        entry = by_index.get(record.index)
        before = state_dict(aggregate) if entry is not None else None
        aggregate.apply(record)
        if entry is not None and before is not None:
            after = state_dict(aggregate)
            entry.state = [
                (
                    name,
                    render_json(value, limit=limit, depth=depth),
                    before.get(name, _MISSING) != value,
                )
                for name, value in after.items()
            ]


_MISSING = object()
