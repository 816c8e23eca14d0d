"""The demo's read model: one row per payment, kept by a projection.

The logs are the truth; ``PaymentSummary`` is what the payments list filters,
sorts and pages through. The projection
:class:`~testproject.payments.projections.PaymentSummaries` keeps it, in the
transaction that moves its checkpoint: each event changes it exactly once.
It lags the logs by what the runner has not handled yet.
"""

from __future__ import annotations

from django.db import models

from .events import Payment, PaymentRequest


class PaymentSummary(models.Model):
    """A payment as its events so far make it: status and amounts."""

    class Status(models.TextChoices):
        REQUESTED = "requested"
        AUTHORIZED = "authorized"
        DECLINED = "declined"

    payment_id = models.UUIDField(primary_key=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    amount_requested = models.BigIntegerField()
    amount_approved = models.BigIntegerField(default=0)
    amount_captured = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    #: The currency of the captures (``Payment.currency``); NULL before the first.
    currency = models.CharField(max_length=3, null=True, blank=True)  # noqa: DJ001
    declined_reason = models.TextField(null=True, blank=True)  # noqa: DJ001
    #: When the payment was requested: its first event's ``recorded_at``.
    created_at = models.DateTimeField()
    #: The ``recorded_at`` of the last event applied.
    updated_at = models.DateTimeField()
    #: The index of the last event applied.
    last_index = models.IntegerField()

    class Meta:
        verbose_name = "payment summary"
        verbose_name_plural = "payment summaries"
        indexes = [
            # The list's keyset pagination: (created_at, payment_id), of all
            # payments or of one status.
            models.Index(
                fields=["created_at", "payment_id"], name="payments_summary_created"
            ),
            models.Index(
                fields=["status", "created_at", "payment_id"],
                name="payments_summary_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} ({self.status})"

    def payment(self) -> Payment:
        """The :class:`Payment` aggregate this row holds."""
        return Payment(
            request=PaymentRequest(self.amount_requested),
            amount_approved=self.amount_approved,
            amount_captured=self.amount_captured,
            amount_refunded=self.amount_refunded,
            currency=self.currency,
            declined_reason=self.declined_reason,
        )

    def hold(self, payment: Payment) -> None:
        """Copy ``payment``'s state into the row (not saved)."""
        assert payment.request is not None
        self.status = payment.status()
        self.amount_requested = payment.request.amount_requested
        self.amount_approved = payment.amount_approved
        self.amount_captured = payment.amount_captured
        self.amount_refunded = payment.amount_refunded
        self.currency = payment.currency
        self.declined_reason = payment.declined_reason
