"""The payment example of the eventlogs crate: its events and aggregate.

``payment.captured`` is at schema version 2: version 1 had no currency. The
events an older release stored stay as they are, and are read as version 2
through the upcaster :func:`captured_v1_currency`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from msgspec import Meta

from django_eventlog import Aggregate, DomainEvent, EventRecord, upcaster

#: The largest amount the API takes, in minor units.
MAX_AMOUNT = 10**12

# The API's request bodies are decoded into the events below
# (http.json_event), so their constraints validate the requests: a value out
# of bounds is a 422 naming the field. No NUL: the store refuses it.
Amount = Annotated[int, Meta(ge=1, le=MAX_AMOUNT)]
#: An ISO 4217 code: three upper-case letters ("EUR"). The lengths keep out
#: a trailing newline, which the pattern's "$" would let through.
Currency = Annotated[str, Meta(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]

#: The one currency of the demo before captures named theirs (version 1).
CURRENCY_BEFORE_V2 = "EUR"


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
    """Money taken from the authorized amount, in ``currency`` (version 2)."""

    type_name = "payment.captured"
    schema_version = 2
    amount: Amount
    statement_descriptor: Annotated[
        str, Meta(min_length=1, max_length=22, pattern=r"^[^\x00]*$")
    ]
    currency: Currency


@upcaster(Captured, from_version=1)
def captured_v1_currency(data: dict[str, Any]) -> dict[str, Any]:
    """Read a version 1 capture as version 2: it was in euros.

    Before version 2 the demo took one currency, euros, so every capture
    stored without a currency was one in euros. The upcaster sees the stored
    JSON only, never the payment, so this rule is all it can go by; a
    project whose old events were in several currencies would need a field
    that tells them apart, or a new event type instead.
    """
    return {**data, "currency": CURRENCY_BEFORE_V2}


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
    # 2: the currency of the captures was added (cached reductions of
    # version 1 lack it, and are never read again).
    version = 2

    request: PaymentRequest | None = None
    amount_approved: int = 0
    amount_captured: int = 0
    #: The currency of the captures; None before the first.
    currency: str | None = None
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
            case Captured(amount=amount, currency=currency):
                self.amount_captured += amount
                self.currency = currency
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
        or refunded; a capture takes at most :meth:`capturable`, in the
        currency of the captures before it (any, for the first); a refund
        returns at most :meth:`refundable`; amounts are positive.
        """
        if not self._open():
            raise PaymentRefused(f"The payment is {self.status()}.")
        if event.amount <= 0:
            raise PaymentRefused("The amount must be positive.")
        if isinstance(event, Captured) and event.amount > self.capturable():
            raise PaymentRefused(f"Only {self.capturable()} can be captured.")
        if (
            isinstance(event, Captured)
            and self.currency is not None
            and event.currency != self.currency
        ):
            raise PaymentRefused(f"The payment is captured in {self.currency}.")
        if isinstance(event, Refunded) and event.amount > self.refundable():
            raise PaymentRefused(f"Only {self.refundable()} can be refunded.")

    def _open(self) -> bool:
        return self.status() == "authorized"
