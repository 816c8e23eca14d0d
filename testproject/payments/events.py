"""The payment example of the eventlogs crate: its events and aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from msgspec import Meta

from django_eventlog import Aggregate, DomainEvent, EventRecord

#: The largest amount the API takes, in minor units.
MAX_AMOUNT = 10**12

# The API's request bodies are decoded into the events below
# (http.json_event), so their constraints validate the requests: a value out
# of bounds is a 422 naming the field. No NUL: the store refuses it.
Amount = Annotated[int, Meta(ge=1, le=MAX_AMOUNT)]


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


class Declined(DomainEvent):
    type_name = "payment.declined"
    reason: str


class Captured(DomainEvent):
    type_name = "payment.captured"
    amount: Amount
    statement_descriptor: Annotated[
        str, Meta(min_length=1, max_length=22, pattern=r"^[^\x00]*$")
    ]


class Refunded(DomainEvent):
    type_name = "payment.refunded"
    amount: Amount
    reference_number: Annotated[
        str, Meta(min_length=1, max_length=64, pattern=r"^[^\x00]*$")
    ]


class PaymentRefused(Exception):
    """The payment's rules refuse a capture or a refund; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Payment(Aggregate):
    """The state of a payment, reduced from its events."""

    # reduce() answers LogNotFound for a log of another kind.
    kinds = ("payment",)

    request: PaymentRequest | None = None
    amount_approved: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0
    declined_reason: str | None = None

    def apply(self, record: EventRecord) -> None:
        match record.event:
            case Requested(request=request):
                self.request = request
            case Authorized(amount=amount):
                self.amount_approved += amount
            case Declined(reason=reason):
                self.declined_reason = reason
            case Captured(amount=amount):
                self.amount_captured += amount
            case Refunded(amount=amount):
                self.amount_refunded += amount

    def status(self) -> str:
        """requested, authorized or declined."""
        if self.declined_reason is not None:
            return "declined"
        return "authorized" if self.amount_approved else "requested"

    def capturable(self) -> int:
        """What a capture may take: approved and not captured yet."""
        return self.amount_approved - self.amount_captured if self._open() else 0

    def refundable(self) -> int:
        """What a refund may return: captured and not refunded yet."""
        return self.amount_captured - self.amount_refunded if self._open() else 0

    def check(self, event: Captured | Refunded) -> None:
        """Raise :class:`PaymentRefused` unless the rules allow ``event`` now.

        The one home of the payment rules, which the API, the walk-through
        and the seed command follow: only an authorized payment is captured
        or refunded; a capture takes at most :meth:`capturable`, a refund
        returns at most :meth:`refundable`; amounts are positive.
        """
        if not self._open():
            raise PaymentRefused(f"The payment is {self.status()}.")
        if event.amount <= 0:
            raise PaymentRefused("The amount must be positive.")
        if isinstance(event, Captured) and event.amount > self.capturable():
            raise PaymentRefused(f"Only {self.capturable()} can be captured.")
        if isinstance(event, Refunded) and event.amount > self.refundable():
            raise PaymentRefused(f"Only {self.refundable()} can be refunded.")

    def _open(self) -> bool:
        return self.status() == "authorized"
