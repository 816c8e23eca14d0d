"""A fake card gateway: approves amounts up to LIMIT."""

from __future__ import annotations

import secrets

from .events import Authorized, Declined, PaymentRequest

#: Largest amount (minor units) the fake gateway approves.
LIMIT = 1_000_000


def authorize(request: PaymentRequest) -> Authorized | Declined:
    """Return the gateway's decision on a payment request."""
    if request.amount_requested > LIMIT:
        return Declined("amount over the gateway limit")
    return Authorized(request.amount_requested, secrets.token_hex(4))
