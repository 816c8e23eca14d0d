"""The payments JSON API: ordinary Django views over the LogManager methods.

Every write reduces the payment once and answers from that reduction:

1. Reduce the payment the URL names (the library parses the id: a
   malformed, unknown or foreign one is 404; ``Payment.kinds`` makes a log
   of another kind "not found" in the same query).
2. Read the headers before the body: a malformed Idempotency-Key is 400, an
   If-Match naming no strong ETag of the payment 412. Then read the body into
   the event class (``http.json_event``), whose constraints validate it: a
   value that does not fit is 422 with an RFC 9457 ``errors`` member.
3. ``Log.objects.transact`` does the rest, starting from that reduction: a
   used Idempotency-Key is answered first (a retry gets the original event
   and the payment, whatever the rules now say); an If-Match state that is
   not the payment's is 412 with the current ETag (``StaleState``, answered
   by ``json_api``); the payment's rules (``Payment.check``) decide; the
   event is appended, and a write that loses the race reduces again and
   decides again, a few times, before 409.
4. Answer with the appended event (one row loaded, for its stored time) and
   the payment: that event folded into the reduction decided on, not
   reduced again.

A create is the same after ``create_log``: reduce, ask the gateway, append
its decision, answer with the decision folded in (``authorization.authorize``,
which the subscriber ``PaymentAuthorizer`` also runs for a create that died
before the decision). ``GET /api/payments/`` lists payments from the read
model ``PaymentSummary`` (``listing``).

Every answer under ``/api/`` is JSON: ``api_fallback`` serves a path
without its trailing slash as the path with it, and answers a 404 problem
for the rest.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.views.decorators.csrf import csrf_exempt

from django_eventlog import (
    ConcurrentAppend,
    EventRecord,
    IdempotentReplay,
    InvalidArgument,
    Log,
    Reduction,
    http,
)

from . import listing
from .authorization import authorize, with_event
from .events import (
    MAX_AMOUNT,
    Captured,
    Payment,
    PaymentRefused,
    PaymentRequest,
    Refunded,
    Requested,
)

#: Appends tried before a write that keeps losing races answers 409.
MAX_ATTEMPTS = 3
EVENTS_PAGE_SIZE = 50
EVENTS_MAX_PAGE_SIZE = 200


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
    # RFC 9457's errors member, as http.problem_for answers a request body
    # that does not fit an event class (the captures and refunds).
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise Invalid(
            "Invalid amount.", [{"pointer": "#/amount", "detail": "an integer"}]
        )
    if not 0 < amount <= MAX_AMOUNT:
        raise Invalid(
            "Invalid amount.",
            [{"pointer": "#/amount", "detail": f"between 1 and {MAX_AMOUNT}"}],
        )
    return amount


@contextlib.contextmanager
def _malformed_id_is_404() -> Iterator[None]:
    """Answer 404 for a malformed log id, as for an unknown one.

    The library parses the raw id of the URL (the one place that does), and
    says so with an ``InvalidArgument`` whose message starts "Malformed log
    id". The message is checked, not only where the call is: any other
    ``InvalidArgument`` (a bad page bound, an invalid aggregate class) is a
    bug or a bad request, never "no such payment", and answers as it does.
    """
    try:
        yield
    except InvalidArgument as e:
        if not str(e).startswith("Malformed log id"):
            raise
        raise Http404("No such payment.") from None


def _reduce(payment_id: uuid.UUID | str) -> Reduction[Payment]:
    """Reduce the payment ``payment_id`` names, the raw id of a URL or a UUID.

    A malformed id, an unknown log and a log of another kind are all 404.
    """
    with _malformed_id_is_404():
        return Log.objects.reduce(payment_id, Payment)  # Payment.kinds: payments


def _event_and_payment(
    reduction: Reduction[Payment], index: int
) -> tuple[EventRecord, Reduction[Payment]]:
    """Return the event at ``index`` and the payment through it, at least.

    An event the reduction holds is answered with the payment as held. The
    event just appended (at ``reduction.next_index``) is folded into a copy
    of the held payment, as reduce would fold it, instead of reducing again.
    Either way the event is loaded, one row: the response shows its stored
    ``recorded_at``, which the events endpoint must later agree with.
    """
    if index > reduction.next_index:
        # The event lies beyond the reduction and the index after it: a
        # concurrent retry of this request appended it, after other events.
        # This request lost a race; reduce again.
        reduction = _reduce(reduction.log_id)
    (record,) = Log.objects.load(reduction.log_id, start=index, limit=1)
    if index < reduction.next_index:
        return record, reduction
    return record, with_event(reduction, record)


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
        "currency": payment.currency,
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


@http.json_api(methods=["GET", "HEAD", "POST"])
def payments(request: HttpRequest) -> HttpResponse:
    """POST /api/payments/ {"amount": 10000}: request and authorize a payment.

    The gateway is asked inline (see :mod:`.authorization`), so the 201
    shows its decision. A create that dies after ``create_log`` leaves the
    payment ``requested`` for a moment only: the subscriber
    ``PaymentAuthorizer`` authorizes it, through the same idempotency key.
    GET lists the payments from the read model (:mod:`.listing`).
    """
    if request.method != "POST":
        return listing.payment_list(request)
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
        return _payment_response(authorize(replay.log_id), 201, replayed=True)
    return _payment_response(authorize(state.log_id), 201)


@http.json_api(methods=["GET", "HEAD"])
def payment(request: HttpRequest, payment_id: str) -> HttpResponse:
    """GET /api/payments/<id>/: the payment's state, with an ETag."""
    reduction = _reduce(payment_id)
    tag = http.etag(reduction)
    # If-None-Match compares weakly (RFC 9110 13.1.2); "*" matches any state.
    candidates = request.headers.get("If-None-Match", "").split(",")
    if any(c.strip() == "*" or c.strip().removeprefix("W/") == tag for c in candidates):
        response = HttpResponse(status=304)
        response["ETag"] = tag
        return response
    return _payment_response(reduction)


def _write(
    request: HttpRequest, payment_id: str, event_type: type[Captured | Refunded]
) -> HttpResponse:
    """Append the event the body describes to the payment; see the module doc."""
    reduction = _reduce(payment_id)
    log_id = reduction.log_id
    key = http.idempotency_key(
        request, prefix=f"payments:{log_id}:{event_type.type_name}:"
    )
    try:
        expected = http.if_match_state(request, log_id)
    except http.PreconditionFailed:
        return http.precondition_failed(reduction)
    # The event class validates the body: a value that does not fit it is
    # EventEncodingError, which json_api answers 422 naming the field.
    event = http.json_event(request, event_type)

    def decide(payment: Payment) -> Captured | Refunded:
        payment.check(event)
        return event

    try:
        done = Log.objects.transact(
            log_id,
            Payment,
            decide,
            expected=expected,
            idempotency_key=key,
            attempts=MAX_ATTEMPTS,
            reduction=reduction,
        )
    except IdempotentReplay as replay:
        # A retry, answered even when the rules would now refuse it.
        return _event_response(reduction, replay.event_index, replayed=True)
    except PaymentRefused as refused:
        return _invalid(Invalid(refused.reason))
    except ConcurrentAppend:
        return http.problem(
            409, "Conflict", "The payment kept changing concurrently; try again."
        )
    return _event_response(done.reduction, done.first_index)


def _event_response(
    reduction: Reduction[Payment], index: int, *, replayed: bool = False
) -> JsonResponse:
    """Answer the event at ``index`` with the payment through it (201)."""
    record, reduction = _event_and_payment(reduction, index)
    response = JsonResponse(
        {"event": record.as_dict(), "payment": _representation(reduction)}, status=201
    )
    response["Location"] = _events_url(reduction.log_id, index, 1)
    response["ETag"] = http.etag(reduction)
    if replayed:
        response[http.REPLAYED_HEADER] = "true"
    return response


@http.json_api(methods=["POST"])
def captures(request: HttpRequest, payment_id: str) -> HttpResponse:
    """POST /api/payments/<id>/captures/ {"amount", "statement_descriptor",
    "currency"}: the first capture sets the payment's currency, later ones
    keep it (422 otherwise)."""
    return _write(request, payment_id, Captured)


@http.json_api(methods=["POST"])
def refunds(request: HttpRequest, payment_id: str) -> HttpResponse:
    """POST /api/payments/<id>/refunds/ {"amount", "reference_number"}."""
    return _write(request, payment_id, Refunded)


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
    start = _query_int(request, "start", 0, 0, 2**31 - 1)
    limit = _query_int(request, "limit", EVENTS_PAGE_SIZE, 1, EVENTS_MAX_PAGE_SIZE)
    # load parses the id (the library is its one home) and answers
    # LogNotFound for a log of another kind, in the query that reads the page.
    # One more than the page tells whether a next page exists.
    with _malformed_id_is_404():
        records: list[EventRecord] = Log.objects.load(
            payment_id, start=start, limit=limit + 1, kind="payment"
        )
    next_url = (
        f"{request.path}?start={records[limit].index}&limit={limit}"
        if len(records) > limit
        else None
    )
    return JsonResponse(
        {"events": [r.as_dict() for r in records[:limit]], "next": next_url}
    )


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@csrf_exempt  # it writes nothing; the view it serves checks CSRF (json_api)
def api_fallback(request: HttpRequest) -> HttpResponse:
    """Any other path under /api/: the endpoint it names without its slash, or 404.

    Django's ``APPEND_SLASH`` would redirect ``POST /api/payments`` with a
    301, which clients follow with a GET and no body; the API serves it as
    ``POST /api/payments/`` instead, and answers JSON for unknown paths.
    """
    if not request.path_info.endswith("/"):
        try:
            match = resolve(f"{request.path_info}/")
        except Resolver404:
            pass
        else:
            if match.func is not api_fallback:
                response: HttpResponse = match.func(
                    request, *match.args, **match.kwargs
                )
                return response
    return _not_found(request)


@http.json_api(methods=_ALL_METHODS)
def _not_found(request: HttpRequest) -> HttpResponse:
    raise Http404("No such resource.")
