"""HTTP glue for JSON APIs over event logs: idempotency keys, ETags, problems.

- :func:`idempotency_key` reads the ``Idempotency-Key`` request header (IETF
  draft "The Idempotency-Key HTTP Header Field": an RFC 8941 string).
- :func:`etag` and :func:`if_match_state` turn a :class:`LogState` into an
  ``ETag`` and an ``If-Match`` header back into the state a write expects, for
  optimistic concurrency over HTTP (RFC 9110, 412 Precondition Failed).
- :func:`json_event` reads a JSON request body into an event class, which
  validates it: a value that does not fit is named by a JSON Pointer.
- :func:`problem` and :func:`problem_for` answer RFC 9457 problem details
  (``application/problem+json``), the latter for the library's errors.
- :func:`json_api` makes a view answer a problem for every failure, and
  handles CSRF the way Django REST framework's session authentication does.
- :func:`feed_view` serves the global feed (``Log.objects.feed``) as JSON
  pages with a ``next`` link, for another service to follow over HTTP.

Example, appending on ``POST /payments/<id>/captures/`` with
:meth:`~django_eventlog.store.BaseLogManager.transact`::

    @http.json_api(methods=["POST"])
    def capture(request, payment_id):
        key = http.idempotency_key(request, prefix=f"capture:{payment_id}:")
        expected = http.if_match_state(request, payment_id)
        event = Captured(...from http.json_body(request)...)

        def decide(payment: Payment) -> Captured:
            payment.check(event)  # raises the app's own rule error
            return event

        try:
            done = Log.objects.transact(
                payment_id, Payment, decide, expected=expected, idempotency_key=key
            )
        except IdempotentReplay as replay:
            ...answer the original outcome (replay.log_id, replay.event_index)...
        response = JsonResponse(..., status=201)
        response["ETag"] = http.etag(done.state)
        return response

``json_api`` answers every library error as :func:`problem_for` says: a
stale ``If-Match`` (``StaleState``) is 412 with the current ``ETag``, a
missing or foreign payment 404, a race lost on every attempt 409.
"""

from __future__ import annotations

from .decorators import json_api
from .feed import feed_view
from .request import (
    IDEMPOTENCY_KEY_HEADER,
    BadRequest,
    BadRequestHeader,
    PreconditionFailed,
    idempotency_key,
    if_match_state,
    json_body,
    json_event,
)
from .response import PROBLEM_CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from .response import (
    REPLAYED_HEADER,
    etag,
    precondition_failed,
    problem,
    problem_for,
)

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "REPLAYED_HEADER",
    "BadRequest",
    "BadRequestHeader",
    "PreconditionFailed",
    "etag",
    "feed_view",
    "idempotency_key",
    "if_match_state",
    "json_api",
    "json_body",
    "json_event",
    "precondition_failed",
    "problem",
    "problem_for",
]
