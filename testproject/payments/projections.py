"""The demo's read side: a read model and a process manager, both fed by
the feed of payment events (listed in ``EVENTLOG_PROJECTIONS``).

- :class:`PaymentSummaries` keeps ``PaymentSummary`` (a projection: atomic,
  each event applied exactly once);
- :class:`PaymentAuthorizer` authorizes every requested payment (a
  subscriber: at least once, made exactly once by the payment's state and
  an idempotency key).

``python manage.py eventlog_projections run`` runs both (``make demo`` starts
it next to the server); tests call ``catch_up()``.
"""

from __future__ import annotations

from django_eventlog import FeedRecord, Projection

from .authorization import authorize
from .events import Payment, Requested
from .models import PaymentSummary


class PaymentSummaries(Projection):
    """One ``PaymentSummary`` row per payment, folded as ``Payment`` folds."""

    name = "payments.summaries"
    kinds = ("payment",)

    def handle(self, record: FeedRecord) -> None:
        if isinstance(record.event, Requested):
            summary = PaymentSummary(
                payment_id=record.log_id, created_at=record.recorded_at
            )
            payment = Payment()
        else:
            summary = PaymentSummary.objects.get(payment_id=record.log_id)
            payment = summary.payment()
        # The aggregate's apply is the one fold: the list and the payment's
        # own endpoint cannot disagree on what an event does.
        payment.apply(record)
        summary.hold(payment)
        summary.updated_at = record.recorded_at
        summary.last_index = record.index
        summary.save()

    def reset(self) -> None:
        PaymentSummary.objects.all().delete()


class PaymentAuthorizer(Projection):
    """Authorize each requested payment: a process manager.

    The create endpoint authorizes inline; this subscriber finishes what a
    create left undone when it died between ``create_log`` and the
    gateway's decision, whatever happened to the request. A subscriber is
    handled at least once, and a payment may be decided by the endpoint
    first: :func:`~testproject.payments.authorization.authorize` reduces
    the payment and does nothing for one already decided, and its append,
    keyed by payment and made against the reduced state, is refused to a
    second decider. So each payment is authorized (or declined) exactly
    once.

    A payment still ``requested`` after the append's attempts raises, as a
    gateway that fails does: the runner retries, then stops the subscriber
    until ``eventlog_projections retry payments.authorizer``.
    """

    name = "payments.authorizer"
    kinds = ("payment",)
    event_types = (Requested,)
    atomic = False

    def handle(self, record: FeedRecord) -> None:
        decided = authorize(record.log_id)
        if decided.aggregate.status() == "requested":
            raise RuntimeError(
                f"Payment {record.log_id} is still requested after "
                "authorize() lost every race; retry."
            )
