"""The payments JSON API: ordinary Django views over the LogManager methods.

Every write follows the same steps: read the Idempotency-Key (a retry is
answered with the original outcome), reduce the payment, check the business
rules on the aggregate, append with the reduction as the log state. With
If-Match the client's ETag must still be current (else 412); without it, a
write that loses a race re-reduces and tries again a few times.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from django_eventlog import (
    ConcurrentAppend,
    EventRecord,
    IdempotencyConflict,
    IdempotentReplay,
    Log,
    LogNotFound,
    Reduction,
    http,
)

from . import gateway
from .events import Captured, Payment, PaymentRequest, Refunded, Requested

#: Appends tried before a write that keeps losing races answers 409.
MAX_ATTEMPTS = 3
MAX_AMOUNT = 10**12
EVENTS_PAGE_SIZE = 50
EVENTS_MAX_PAGE_SIZE = 200

Rule = Callable[[Payment, int], str | None]


class Invalid(Exception):
    """A request that is well-formed JSON but breaks a rule: 422."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


def _invalid(error: Invalid) -> JsonResponse:
    if error.errors:
        return http.problem(
            422, "Unprocessable Content", error.detail, errors=error.errors
        )
    return http.problem(422, "Unprocessable Content", error.detail)


def _amount(body: dict[str, Any]) -> int:
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise Invalid("Invalid amount.", [{"field": "amount", "message": "an integer"}])
    if not 0 < amount <= MAX_AMOUNT:
        raise Invalid(
            "Invalid amount.",
            [{"field": "amount", "message": f"between 1 and {MAX_AMOUNT}"}],
        )
    return amount


def _text(body: dict[str, Any], name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise Invalid(
            f"Invalid {name}.",
            [{"field": name, "message": f"a string of 1 to {max_length} characters"}],
        )
    if "\x00" in value:
        raise Invalid(f"Invalid {name}.", [{"field": name, "message": "no NUL"}])
    return value


def _payment_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise LogNotFound(uuid.UUID(int=0)) from None


def _reduce(payment_id: uuid.UUID) -> Reduction[Payment]:
    reduction = Log.objects.reduce(payment_id, Payment)
    if reduction.aggregate.request is None:
        # A log of another kind: not a payment.
        raise LogNotFound(payment_id)
    return reduction


def _payment_url(payment_id: uuid.UUID) -> str:
    return reverse("payment", args=[payment_id])


def _representation(reduction: Reduction[Payment]) -> dict[str, Any]:
    payment = reduction.aggregate
    assert payment.request is not None
    url = _payment_url(reduction.log_id)
    return {
        "id": str(reduction.log_id),
        "status": payment.status(),
        "amount_requested": payment.request.amount_requested,
        "amount_approved": payment.amount_approved,
        "amount_captured": payment.amount_captured,
        "amount_refunded": payment.amount_refunded,
        "capturable": payment.capturable(),
        "refundable": payment.refundable(),
        "events": reduction.next_index,
        "links": {
            "self": url,
            "events": reverse("payment-events", args=[reduction.log_id]),
            "captures": reverse("payment-captures", args=[reduction.log_id]),
            "refunds": reverse("payment-refunds", args=[reduction.log_id]),
        },
    }


def _payment_response(
    reduction: Reduction[Payment], status: int = 200, *, replayed: bool = False
) -> JsonResponse:
    response = JsonResponse(_representation(reduction), status=status)
    response["ETag"] = http.etag(reduction)
    if status == 201:
        response["Location"] = _payment_url(reduction.log_id)
    if replayed:
        response[http.REPLAYED_HEADER] = "true"
    return response


def _authorized(payment_id: uuid.UUID, key: str | None) -> Reduction[Payment]:
    """Ask the gateway once, whoever gets there first, and return the payment."""
    for _ in range(MAX_ATTEMPTS):
        reduction = _reduce(payment_id)
        payment = reduction.aggregate
        if payment.status() != "requested":
            return reduction
        assert payment.request is not None
        decision = gateway.authorize(payment.request)
        try:
            # Keyed by payment, not by the client's key: no client key can
            # collide with it ("k:gateway" could, under the key "k").
            Log.objects.append(
                reduction,
                decision,
                idempotency_key=None
                if key is None
                else f"payments:{payment_id}:authorization",
            )
        except (ConcurrentAppend, IdempotentReplay, IdempotencyConflict):
            # A concurrent retry recorded the decision (its approval code
            # differs from ours, hence a conflict rather than a replay).
            continue
        return _reduce(payment_id)
    return _reduce(payment_id)


@csrf_exempt
@http.json_api(methods=["POST"])
def payments(request: HttpRequest) -> HttpResponse:
    """POST /api/payments/ {"amount": 10000}: request and authorize a payment."""
    key = http.idempotency_key(request, prefix="payments:create:")
    try:
        amount = _amount(http.json_body(request))
    except Invalid as e:
        return _invalid(e)
    event = Requested(PaymentRequest(amount_requested=amount))
    try:
        state = Log.objects.create_log(event, kind="payment", idempotency_key=key)
    except IdempotentReplay as replay:
        # The same request again: finish it if it was cut short, answer the same.
        return _payment_response(_authorized(replay.log_id, key), 201, replayed=True)
    return _payment_response(_authorized(state.log_id, key), 201)


@http.json_api(methods=["GET", "HEAD"])
def payment(request: HttpRequest, payment_id: str) -> HttpResponse:
    """GET /api/payments/<id>/: the payment's state, with an ETag."""
    reduction = _reduce(_payment_id(payment_id))
    tag = http.etag(reduction)
    # If-None-Match compares weakly (RFC 9110 13.1.2); "*" matches any state.
    candidates = request.headers.get("If-None-Match", "").split(",")
    if any(c.strip() == "*" or c.strip().removeprefix("W/") == tag for c in candidates):
        response = HttpResponse(status=304)
        response["ETag"] = tag
        return response
    return _payment_response(reduction)


def _capture_rule(payment: Payment, amount: int) -> str | None:
    if amount > payment.capturable():
        return f"Only {payment.capturable()} can be captured."
    return None


def _refund_rule(payment: Payment, amount: int) -> str | None:
    if amount > payment.refundable():
        return f"Only {payment.refundable()} can be refunded."
    return None


def _write(
    request: HttpRequest,
    payment_id: uuid.UUID,
    event: Captured | Refunded,
    rule: Rule,
) -> HttpResponse:
    """Append ``event`` to the payment once its rule passes; see the module doc."""
    key = http.idempotency_key(
        request, prefix=f"payments:{payment_id}:{event.type_name}:"
    )
    if key is not None:
        try:
            Log.objects.check_idempotency_key(key, event)
        except IdempotentReplay as replay:
            return _event_response(payment_id, replay.event_index, replayed=True)
    expected = http.if_match_state(request, payment_id)
    for _ in range(MAX_ATTEMPTS):
        reduction = _reduce(payment_id)
        if expected is not None and expected.next_index != reduction.next_index:
            return http.precondition_failed(reduction)
        if reduction.aggregate.status() != "authorized":
            return _invalid(Invalid(f"The payment is {reduction.aggregate.status()}."))
        if (broken := rule(reduction.aggregate, event.amount)) is not None:
            return _invalid(Invalid(broken))
        try:
            state = Log.objects.append(reduction, event, idempotency_key=key)
        except ConcurrentAppend:
            if expected is not None:
                return http.precondition_failed(_reduce(payment_id))
            continue
        except IdempotentReplay as replay:  # a concurrent retry of this request
            return _event_response(payment_id, replay.event_index, replayed=True)
        return _event_response(payment_id, state.next_index - 1)
    return http.problem(
        409, "Conflict", "The payment kept changing concurrently; try again."
    )


def _event_response(
    payment_id: uuid.UUID, index: int, *, replayed: bool = False
) -> JsonResponse:
    (record,) = Log.objects.load(payment_id, start=index, limit=1)
    reduction = _reduce(payment_id)
    response = JsonResponse(
        {"event": record.as_dict(), "payment": _representation(reduction)}, status=201
    )
    response["Location"] = _events_url(payment_id, index, 1)
    response["ETag"] = http.etag(reduction)
    if replayed:
        response[http.REPLAYED_HEADER] = "true"
    return response


@csrf_exempt
@http.json_api(methods=["POST"])
def captures(request: HttpRequest, payment_id: str) -> HttpResponse:
    """POST /api/payments/<id>/captures/ {"amount", "statement_descriptor"}."""
    log_id = _payment_id(payment_id)
    try:
        body = http.json_body(request)
        event = Captured(_amount(body), _text(body, "statement_descriptor", 22))
    except Invalid as e:
        return _invalid(e)
    return _write(request, log_id, event, _capture_rule)


@csrf_exempt
@http.json_api(methods=["POST"])
def refunds(request: HttpRequest, payment_id: str) -> HttpResponse:
    """POST /api/payments/<id>/refunds/ {"amount", "reference_number"}."""
    log_id = _payment_id(payment_id)
    try:
        body = http.json_body(request)
        event = Refunded(_amount(body), _text(body, "reference_number", 64))
    except Invalid as e:
        return _invalid(e)
    return _write(request, log_id, event, _refund_rule)


def _events_url(payment_id: uuid.UUID, start: int, limit: int) -> str:
    return f"{reverse('payment-events', args=[payment_id])}?start={start}&limit={limit}"


def _query_int(
    request: HttpRequest, name: str, default: int, minimum: int, maximum: int
) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise http.BadRequest(f"{name} must be an integer.") from None
    if not minimum <= value <= maximum:
        raise http.BadRequest(f"{name} must be between {minimum} and {maximum}.")
    return value


@http.json_api(methods=["GET", "HEAD"])
def events(request: HttpRequest, payment_id: str) -> HttpResponse:
    """GET /api/payments/<id>/events/?start=&limit=: a page of events."""
    log_id = _payment_id(payment_id)
    start = _query_int(request, "start", 0, 0, 2**31 - 1)
    limit = _query_int(request, "limit", EVENTS_PAGE_SIZE, 1, EVENTS_MAX_PAGE_SIZE)
    if not Log.objects.filter(pk=log_id, kind="payment").exists():
        raise LogNotFound(log_id)
    # One more than the page tells whether a next page exists.
    records: list[EventRecord] = Log.objects.load(log_id, start=start, limit=limit + 1)
    next_url = (
        _events_url(log_id, records[limit].index, limit)
        if len(records) > limit
        else None
    )
    return JsonResponse(
        {"events": [r.as_dict() for r in records[:limit]], "next": next_url}
    )
