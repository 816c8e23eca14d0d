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

import functools
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.log import log_response

from .aggregates import LogState
from .events import DECODE_ERRORS, DomainEvent, event_from_json
from .exceptions import (
    ConcurrentAppend,
    EventEncodingError,
    EventLogError,
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    LogNotFound,
    StaleState,
)
from .validation import IDEMPOTENCY_KEY_MAX_LENGTH, parse_log_id

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "REPLAYED_HEADER",
    "BadRequest",
    "BadRequestHeader",
    "PreconditionFailed",
    "etag",
    "idempotency_key",
    "if_match_state",
    "json_api",
    "json_body",
    "json_event",
    "precondition_failed",
    "problem",
    "problem_for",
]

logger = logging.getLogger("django.request")

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
#: Set to "true" on a response that replays the outcome of an earlier request.
REPLAYED_HEADER = "Idempotent-Replayed"
PROBLEM_CONTENT_TYPE = "application/problem+json"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# An RFC 8941 sf-string: printable ASCII in double quotes, with \\ and \" escapes.
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\\"])*)"')
# A bare key: printable ASCII without '"' or '\\', so that a malformed sf-string
# (an unterminated quote, a bad escape) is rejected rather than taken verbatim,
# and without ',', which separates the members of a list.
_TOKEN = re.compile(r"[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]+")
# One member of a comma-separated list: a quoted string (commas inside it are
# part of it) or anything up to the next comma.
_MEMBER = r'[ \t]*(?:"(?:[^"\\]|\\.)*"|[^",]*)[ \t]*'
_LIST = re.compile(rf"{_MEMBER}(?:,{_MEMBER})+")
# A strong ETag of etag(): a weak one (W/"...") never matches for If-Match.
_ETAG = re.compile(r'"([0-9a-f]{32})\.(\d{1,18})"')
# Kept unescaped in a URI fragment (RFC 3986), besides letters, digits, -._~
_FRAGMENT_SAFE = "/?:@!$&'()*+,;="
_E = TypeVar("_E", bound=DomainEvent)


class BadRequest(EventLogError, ValueError):
    """The request is malformed (its body or a header); answer 400."""


class PreconditionFailed(EventLogError):
    """A request's precondition (``If-Match``) cannot hold: answer 412.

    Raised by :func:`if_match_state` for an ``If-Match`` naming no strong
    ETag of the resource. Answer it with :func:`precondition_failed` and the
    state the log is in, so the client learns the current ``ETag``;
    :func:`problem_for` answers 412 without one.
    """

    def __init__(self, header: str, message: str) -> None:
        self.header = header
        super().__init__(f"{header}: {message}")


class BadRequestHeader(BadRequest):
    """A request header the API reads is malformed."""

    def __init__(self, header: str, message: str) -> None:
        self.header = header
        super().__init__(f"{header}: {message}")


def json_body(request: HttpRequest) -> dict[str, Any]:
    """Return the request's JSON object body, or raise :class:`BadRequest`."""
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.") from None
    except RecursionError:
        # Nesting deeper than Python's recursion limit, a hostile body.
        raise BadRequest("The body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def json_event(request: HttpRequest, event_class: type[_E]) -> _E:
    """Return the request's JSON object body as an event of ``event_class``.

    The class validates the body, decoded strictly as stored events are
    (``"3"`` is no ``int``; undeclared fields are ignored). Raises
    :class:`BadRequest` as :func:`json_body` does, and
    :class:`EventEncodingError` naming the first value that does not fit,
    which :func:`problem_for` answers with 422 and an ``errors`` member.
    """
    json_body(request)
    try:
        return event_from_json(event_class, request.body)
    except DECODE_ERRORS:
        # JSON that Python's parser takes and msgspec's does not (NaN).
        raise BadRequest("The body is not valid JSON.") from None


def json_api(
    methods: Sequence[str], *, retry_after: int = 5
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorate a JSON API view: problem details for every failure.

    A method not in ``methods`` answers 405 with ``Allow``. CSRF is handled
    as Django REST framework's session authentication does: the view is
    exempt from ``CsrfViewMiddleware``, and checks CSRF itself for an unsafe
    method when the request's user is authenticated (by a session cookie):
    a failure answers 403. A library error answers what :func:`problem_for`
    says; ``Http404`` and ``PermissionDenied`` answer 404 and 403; a body
    over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` 413 and another
    ``SuspiciousOperation`` 400; a database that cannot be reached
    (``OperationalError``, ``InterfaceError``) 503 with ``Retry-After:
    retry_after``. Every 5xx is logged with its traceback on the
    ``django.request`` logger, and no traceback or internal detail reaches
    the client, even with ``DEBUG = True``.
    """
    allowed = [method.upper() for method in methods]

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                response = problem(405, "Method Not Allowed")
                response["Allow"] = ", ".join(allowed)
                return response
            try:
                _enforce_csrf(request)
                return view(request, *args, **kwargs)
            except Exception as e:
                response = _problem_for_exception(e, retry_after)
                if response.status_code >= 500:
                    log_response(
                        "%s: %s (in %s)",
                        response.reason_phrase,
                        request.path,
                        view.__qualname__,
                        response=response,
                        request=request,
                        exception=e,
                    )
                return response

        # The view checks CSRF itself (_enforce_csrf), after the method.
        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        return wrapper

    return decorator


class _CsrfCheck(CsrfViewMiddleware):
    """The middleware's checks, giving the reason of a failure back."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _enforce_csrf(request: HttpRequest) -> None:
    """Check CSRF for an unsafe method of a cookie-authenticated user."""
    if request.method in _SAFE_METHODS:
        return
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return
    check = _CsrfCheck(lambda request: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, lambda request: HttpResponse(), (), {})
    if reason is not None:
        raise PermissionDenied(f"CSRF Failed: {reason}")


def _problem_for_exception(error: Exception, retry_after: int) -> JsonResponse:
    # What Django itself answers with 404, 403 and 400, as problems.
    if isinstance(error, Http404):
        return problem(404, "Not Found", "No such resource.")
    if isinstance(error, PermissionDenied):
        detail = str(error)
        return problem(403, "Forbidden", detail if detail.startswith("CSRF") else None)
    if isinstance(error, RequestDataTooBig):
        return problem(413, "Content Too Large", "The request body is too large.")
    if isinstance(error, SuspiciousOperation):
        return problem(400, "Bad Request")
    if isinstance(error, (OperationalError, InterfaceError)):
        response = problem(
            503, "Service Unavailable", "The database is unavailable; try again."
        )
        response["Retry-After"] = str(retry_after)
        return response
    # A view answers an IdempotentReplay itself; one that escapes is a bug
    # like any other (problem_for refuses it).
    if isinstance(error, EventLogError) and not isinstance(error, IdempotentReplay):
        return problem_for(error)
    return problem(500, "Internal Server Error")


def idempotency_key(request: HttpRequest, *, prefix: str = "") -> str | None:
    """Return the request's ``Idempotency-Key``, or None when it has none.

    The header is an RFC 8941 string (``Idempotency-Key: "8e03978e-..."``);
    a bare token is accepted too. ``prefix`` scopes the key, say to one
    endpoint and resource, since the library's keys are unique across all
    logs. Raises :class:`BadRequestHeader` for an empty, malformed or
    overlong key.
    """
    raw = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if raw is None:
        return None
    raw = raw.strip()
    if match := _SF_STRING.fullmatch(raw):
        key = re.sub(r"\\(.)", r"\1", match[1])
    elif _TOKEN.fullmatch(raw):
        key = raw
    elif _LIST.fullmatch(raw):
        # Several headers, which the server joins with ", " into one value.
        raise BadRequestHeader(
            IDEMPOTENCY_KEY_HEADER, "send one key, not a list of several."
        )
    else:
        raise BadRequestHeader(
            IDEMPOTENCY_KEY_HEADER, "expected a quoted string of printable ASCII."
        )
    if not key:
        raise BadRequestHeader(IDEMPOTENCY_KEY_HEADER, "the key is empty.")
    scoped = f"{prefix}{key}"
    if len(scoped) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise BadRequestHeader(
            IDEMPOTENCY_KEY_HEADER,
            f"the key is longer than {IDEMPOTENCY_KEY_MAX_LENGTH - len(prefix)} "
            "characters.",
        )
    return scoped


def etag(state: LogState) -> str:
    """Return the strong ``ETag`` of a log at a state: its id and next index."""
    return f'"{state.log_id.hex}.{state.next_index}"'


def if_match_state(request: HttpRequest, log_id: uuid.UUID | str) -> LogState | None:
    """Return the log state the request's ``If-Match`` names, or None without one.

    ``If-Match: *`` also gives None (any state will do). The comparison is
    strong (RFC 9110 13.1.1): a weak tag ``W/"..."`` never matches. Raises
    :class:`PreconditionFailed` when the header holds no strong ETag of this
    log (a weak one, another resource's, a malformed one): answer it with
    :func:`precondition_failed` and the current state. Raises
    :class:`InvalidArgument` when ``log_id`` is not a UUID.
    """
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    log_uuid = parse_log_id(log_id)
    for candidate in raw.split(","):
        match = _ETAG.fullmatch(candidate.strip())
        if match and match[1] == log_uuid.hex:
            return LogState(log_uuid, int(match[2]))
    raise PreconditionFailed("If-Match", "it holds no ETag of this resource.")


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type: str = "about:blank",
    **extensions: Any,
) -> JsonResponse:
    """Answer an RFC 9457 problem details document."""
    body: dict[str, Any] = {"type": type, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extensions)
    return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)


def precondition_failed(current: LogState) -> JsonResponse:
    """Answer 412: the ``If-Match`` state is not the log's current one."""
    response = problem(
        412,
        "Precondition Failed",
        "The resource changed since the ETag in If-Match; fetch it again.",
    )
    response["ETag"] = etag(current)
    return response


def problem_for(error: EventLogError) -> JsonResponse:
    """Answer the problem details that a library error means for a client.

    An :class:`EventEncodingError` with a ``pointer`` answers 422 and
    ``"errors": [{"pointer": "#/amount", "detail": reason}]``; one without, 400.
    ``IdempotentReplay`` is not an error for the client: answer the original
    outcome instead, and call this only for the others.
    """
    if isinstance(error, BadRequest):
        return problem(400, "Bad Request", str(error))
    if isinstance(error, StaleState):
        return precondition_failed(LogState(error.log_id, error.current_index))
    if isinstance(error, PreconditionFailed):
        return problem(
            412,
            "Precondition Failed",
            "The resource changed since the ETag in If-Match; fetch it again.",
        )
    if isinstance(error, LogNotFound):
        return problem(404, "Not Found", "No such resource.")
    if isinstance(error, IdempotencyConflict):
        return problem(
            422,
            "Unprocessable Content",
            "This Idempotency-Key was used for a different request.",
        )
    if isinstance(error, ConcurrentAppend):
        return problem(409, "Conflict", "The resource changed concurrently; try again.")
    if isinstance(error, EventEncodingError) and error.pointer is not None:
        # As RFC 9457's example: the pointer a URI fragment ("#/age").
        pointer = "#" + quote(error.pointer, safe=_FRAGMENT_SAFE)
        errors = [{"pointer": pointer, "detail": error.reason}]
        detail = "The request has invalid values."
        return problem(422, "Unprocessable Content", detail, errors=errors)
    if isinstance(error, (InvalidArgument, EventEncodingError)):
        return problem(400, "Bad Request", "The request has invalid values.")
    if isinstance(error, IdempotentReplay):
        raise TypeError("An IdempotentReplay is answered with the original outcome.")
    return problem(500, "Internal Server Error")
