"""The replay rule: what a write whose idempotency key was already used gets.

A replay is the same request again: an append to the same log of equal
events, or a create of the same kind with an equal event 0 (and the same log
id when the caller chose one); for a batch, every event of it equal, in order,
and no more. Any other write with a used key is a conflict.
Both name the original event. The table of the rule is in
``docs/concepts.md`` ("Idempotency"); keep the two alike.

Internal to the package (the manager in :mod:`django_eventlog.store` is its
only user): :class:`Create`, :func:`key_use` and :func:`original`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import NamedTuple

from . import queries
from .event_context import decode_metadata
from .events import DomainEvent
from .exceptions import IdempotencyConflict, IdempotentReplay
from .sql import Row
from .upcasting import decode_stored

__all__ = ["Create", "key_use", "original"]


class Create(NamedTuple):
    """A ``create_log`` as the rule sees it: ``log_id`` is None if generated."""

    kind: str
    log_id: uuid.UUID | None


def original(using: str, key: str) -> tuple[uuid.UUID, int] | None:
    """The log and index of the (first) event stored under ``key``, if any."""
    found = queries.key_use(using, key)
    return None if found is None else (found[0], found[2][0][0])


def key_use(
    using: str,
    key: str,
    events: Sequence[DomainEvent],
    write: uuid.UUID | Create,
) -> IdempotentReplay | IdempotencyConflict | None:
    """The answer to ``write`` (an append's log id, or a create) of ``events``
    under ``key``: None when the key is free. One SELECT."""
    # One event more than the write's: a longer stored batch is another request.
    found = queries.key_use(using, key, len(events) + 1)
    if found is None:
        return None
    log_id, kind, rows = found
    index = rows[0][0]
    if isinstance(write, Create):
        # An append's key (index > 0) never replays a create: a create also
        # makes the log, which that request did not.
        same_request = (
            index == 0 and kind == write.kind and write.log_id in (None, log_id)
        )
    else:
        same_request = log_id == write
    if same_request and _same_batch(rows, events):
        replay = IdempotentReplay(key, log_id, index)
        replay.metadata = decode_metadata(*rows[0][5:9])
        return replay
    return IdempotencyConflict(key, log_id, index)


def _same_batch(rows: Sequence[Row], events: Sequence[DomainEvent]) -> bool:
    """Whether the batch stored in ``rows`` (from the keyed event on, one more
    than ``events`` if there is one) is ``events``, event by event.

    The key is stored on a batch's first event only; its other events have
    none and the same ``recorded_at`` (one statement wrote them with one
    time). So the stored batch is the keyed row and the rows after it with
    no key and its time: it must have as many events as ``events``, and
    equal ones.
    """
    recorded_at = rows[0][3]
    batch = [rows[0]]
    for row in rows[1:]:
        if row[4] is not None or row[3] != recorded_at:
            break
        batch.append(row)
    if len(batch) != len(events):
        return False
    # Compared as typed events: PostgreSQL's jsonb rewrites numbers
    # (1e23 as 100000000000000000000000), which the event's types undo.
    # Read as every stored event is: an event stored at an older schema
    # version, or under an alias of the class, through its upcasters.
    return all(
        _decodes_to(type_name, version, stored, event)
        for (_, type_name, stored, *_, version), event in zip(
            batch, events, strict=True
        )
    )


def _decodes_to(
    type_name: str, version: int | None, stored: str, event: DomainEvent
) -> bool:
    try:
        return decode_stored(type_name, version, stored) == event
    except Exception:  # the class changed since, and no upcaster reads it
        return False
