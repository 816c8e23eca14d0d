"""Authorizing a requested payment: ask the gateway once, record its decision.

Two paths lead here, and both go through :func:`authorize`, with one
idempotency key per payment:

- the create endpoint authorizes inline, right after ``create_log``, so a
  client that gets its 201 sees the gateway's decision;
- the subscriber :class:`~testproject.payments.projections.PaymentAuthorizer`
  authorizes every ``payment.requested`` event the feed delivers, so a
  payment whose create died between ``create_log`` and the decision (a
  killed worker, a database that restarted, a client that never retried) is
  authorized too, eventually.

Whoever comes first records the decision; the other finds the payment
decided and records nothing. The decision is always the event at index 1,
appended with the reduction's state as the expected state, so two deciders
can never both record one: the loser gets ``ConcurrentAppend`` (or, as the
key is the same, ``IdempotentReplay`` or ``IdempotencyConflict``) and reduces
again. Racing deciders may both ask the gateway; it is given
:func:`authorization_key` as its own idempotency key, so it answers both
alike and charges once.
"""

from __future__ import annotations

import copy
import uuid

from django_eventlog import (
    ConcurrentAppend,
    EventRecord,
    IdempotencyConflict,
    IdempotentReplay,
    Log,
    Reduction,
)

from . import gateway
from .events import Payment

#: Appends tried before an authorization that keeps losing races gives up.
MAX_ATTEMPTS = 3


def authorization_key(log_id: uuid.UUID) -> str:
    """The idempotency key of the payment's authorization (or decline).

    Keyed by payment, never by a client's key: client keys are stored as
    ``payments:create:<key>`` or ``payments:<id>:<event type>:<key>``, so no
    client key can collide with it.
    """
    return f"payments:{log_id}:authorization"


def authorize(
    log_id: uuid.UUID, reduction: Reduction[Payment] | None = None
) -> Reduction[Payment]:
    """Have the gateway decide the payment, unless it is decided; return it.

    ``reduction`` is the payment as the caller reduced it (reduced here when
    None). Returns the payment with the decision, the one this call recorded
    (folded into the reduction, without reducing again) or the one another
    caller recorded first. A payment still ``requested`` after
    :data:`MAX_ATTEMPTS` lost races is returned as it is: the caller decides
    (the create endpoint answers it, the subscriber raises to be retried).
    Errors of the gateway and the database propagate.
    """
    for attempt in range(MAX_ATTEMPTS):
        if reduction is None or attempt:
            reduction = Log.objects.reduce(log_id, Payment)
        payment = reduction.aggregate
        if payment.status() != "requested":
            return reduction
        assert payment.request is not None
        key = authorization_key(log_id)
        decision = gateway.authorize(payment.request, idempotency_key=key)
        try:
            state = Log.objects.append(reduction, decision, idempotency_key=key)
        except (ConcurrentAppend, IdempotentReplay, IdempotencyConflict):
            # Another decider recorded the decision first: the same one
            # (IdempotentReplay), or, from a gateway that answered it
            # otherwise, another (IdempotencyConflict, ConcurrentAppend).
            continue
        (record,) = Log.objects.load(log_id, start=state.next_index - 1, limit=1)
        return with_event(reduction, record)
    return Log.objects.reduce(log_id, Payment)


def with_event(
    reduction: Reduction[Payment], record: EventRecord
) -> Reduction[Payment]:
    """The payment of ``reduction`` with ``record``, the event right after it,
    folded in (as reduce would fold it), without reducing again."""
    payment = copy.deepcopy(reduction.aggregate)
    payment.apply(record)
    return Reduction(
        reduction.log_id,
        payment,
        record.index,
        reduction.reduced_at,
        reduction.log_created_at,
    )
