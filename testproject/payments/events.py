"""The payment example of the eventlogs crate: its events and aggregate."""

from __future__ import annotations

from dataclasses import dataclass

from django_eventlog import Aggregate, DomainEvent, EventRecord


@dataclass(frozen=True)
class PaymentRequest:
    """What the client asked for. Amounts are in minor units of one currency."""

    amount_requested: int


class Requested(DomainEvent):
    type_name = "payment.requested"
    request: PaymentRequest


class Authorized(DomainEvent):
    type_name = "payment.authorized"
    amount: int
    approval_code: str | None = None


class Captured(DomainEvent):
    type_name = "payment.captured"
    amount: int
    statement_descriptor: str


class Refunded(DomainEvent):
    type_name = "payment.refunded"
    amount: int
    reference_number: str


@dataclass
class Payment(Aggregate):
    """The state of a payment, reduced from its events."""

    request: PaymentRequest | None = None
    amount_approved: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0

    def apply(self, record: EventRecord) -> None:
        match record.event:
            case Requested(request=request):
                self.request = request
            case Authorized(amount=amount):
                self.amount_approved += amount
            case Captured(amount=amount):
                self.amount_captured += amount
            case Refunded(amount=amount):
                self.amount_refunded += amount

    def amount_outstanding(self) -> int:
        """Approved amount neither captured nor refunded yet."""
        return self.amount_approved - self.amount_captured - self.amount_refunded
