"""The replay rule: what a write whose idempotency key was already used gets.

A replay is the same request again: an append to the same log of an equal
event, or a create of the same kind with an equal event 0 (and the same log id
when the caller chose one). Any other write with a used key is a conflict.
Both name the original event. The table of the rule is in
``docs/concepts.md`` ("Idempotency"); keep the two alike.

Internal to the package (the manager in :mod:`django_eventlog.store` is its
only user): :class:`Create` and :func:`key_use`.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from . import queries
from .events import DomainEvent, decode_event
from .exceptions import IdempotencyConflict, IdempotentReplay

__all__ = ["Create", "key_use"]


class Create(NamedTuple):
    """A ``create_log`` as the rule sees it: ``log_id`` is None if generated."""

    kind: str
    log_id: uuid.UUID | None


def key_use(
    using: str, key: str, event: DomainEvent, write: uuid.UUID | Create
) -> IdempotentReplay | IdempotencyConflict | None:
    """The answer to ``write`` (an append's log id, or a create) of ``event``
    under ``key``: None when the key is free."""
    original = queries.key_use(using, key)
    if original is None:
        return None
    log_id, index, kind, type_name, stored = original
    if isinstance(write, Create):
        # An append's key (index > 0) never replays a create: a create also
        # makes the log, which that request did not.
        same_request = (
            index == 0 and kind == write.kind and write.log_id in (None, log_id)
        )
    else:
        same_request = log_id == write
    # Compared as typed events: PostgreSQL's jsonb rewrites numbers
    # (1e23 as 100000000000000000000000), which the event's types undo.
    if (
        same_request
        and type_name == event.type_name
        and _decodes_to(type_name, stored, event)
    ):
        return IdempotentReplay(key, log_id, index)
    return IdempotencyConflict(key, log_id, index)


def _decodes_to(type_name: str, stored: str, event: DomainEvent) -> bool:
    try:
        return decode_event(type_name, stored) == event
    except Exception:  # the class changed since: not the same event
        return False
