"""A fake card gateway: approves amounts up to LIMIT."""

from __future__ import annotations

import hashlib
import secrets

from .events import Authorized, Declined, PaymentRequest

#: Largest amount (minor units) the fake gateway approves.
LIMIT = 1_000_000


def authorize(
    request: PaymentRequest, *, idempotency_key: str | None = None
) -> Authorized | Declined:
    """Return the gateway's decision on a payment request.

    A real gateway takes an idempotency key too: asked again with the same
    key, it answers its first decision and charges once. This fake does
    the same without remembering anything: the approval code of a keyed
    request is derived from the key (a fresh random one without a key).
    """
    if request.amount_requested > LIMIT:
        return Declined("amount over the gateway limit")
    if idempotency_key is None:
        return Authorized(request.amount_requested, secrets.token_hex(4))
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return Authorized(request.amount_requested, digest[:8])
