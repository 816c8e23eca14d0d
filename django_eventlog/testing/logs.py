"""``make_log``: a log holding given events, written through ``Log.objects``.

Re-exported by :mod:`django_eventlog.testing`; import it from there.
"""

from __future__ import annotations

import uuid

from django.db import router, transaction

from ..aggregates import LogState
from ..events import DomainEvent
from ..exceptions import InvalidArgument

__all__ = ["make_log"]


def make_log(
    *events: DomainEvent,
    kind: str = "test",
    log_id: uuid.UUID | str | None = None,
    idempotency_key: str | None = None,
) -> LogState:
    """Create a log holding ``events`` at indices 0, 1, ... and return its state.

    The first event goes through ``Log.objects.create_log`` (with ``kind``,
    ``log_id`` and ``idempotency_key``), the others through
    ``Log.objects.append``, all in one transaction: either the whole log is
    written or none of it. The returned :class:`~django_eventlog.LogState`
    has ``next_index == len(events)``::

        state = make_log(Opened("ada"), Deposited(10), kind="account")
        Log.objects.reduce(state.log_id, Account).aggregate.balance  # 10

    Raises :class:`~django_eventlog.InvalidArgument` when no event is given,
    and whatever ``create_log`` and ``append`` raise: ``IdempotentReplay``
    when ``idempotency_key`` was already used for an equal first event,
    ``ConcurrentAppend`` when ``log_id`` names an existing log.
    """
    if not events:
        raise InvalidArgument(
            "make_log() needs at least one event: a log starts with its first event."
        )
    from ..models import Event, Log

    first, *rest = events
    with transaction.atomic(using=router.db_for_write(Event)):
        state = Log.objects.create_log(
            first, kind=kind, log_id=log_id, idempotency_key=idempotency_key
        )
        for event in rest:
            state = Log.objects.append(state, event)
    return state
