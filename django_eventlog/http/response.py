"""What a JSON API answers: ETags and RFC 9457 problem details.

Public: :data:`REPLAYED_HEADER`, :func:`etag`, :func:`problem`,
:func:`precondition_failed` and :func:`problem_for`. Internal to the package
(:func:`~django_eventlog.http.json_api` is its user):
:func:`problem_for_exception`, the problem any exception of a view answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse

from ..aggregates import LogState
from ..exceptions import (
    ConcurrentAppend,
    EventEncodingError,
    EventLogError,
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    LogNotFound,
    StaleState,
)
from .request import BadRequest, PreconditionFailed

__all__ = [
    "REPLAYED_HEADER",
    "etag",
    "precondition_failed",
    "problem",
    "problem_for",
]

#: Set to "true" on a response that replays the outcome of an earlier request.
REPLAYED_HEADER = "Idempotent-Replayed"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# Kept unescaped in a URI fragment (RFC 3986), besides letters, digits, -._~
_FRAGMENT_SAFE = "/?:@!$&'()*+,;="


def etag(state: LogState) -> str:
    """Return the strong ``ETag`` of a log at a state: its id and next index."""
    return f'"{state.log_id.hex}.{state.next_index}"'


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


def _precondition_failed() -> JsonResponse:
    return problem(
        412,
        "Precondition Failed",
        "The resource changed since the ETag in If-Match; fetch it again.",
    )


def precondition_failed(current: LogState) -> JsonResponse:
    """Answer 412: the ``If-Match`` state is not the log's current one."""
    response = _precondition_failed()
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
        return _precondition_failed()
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


def problem_for_exception(error: Exception, retry_after: int) -> JsonResponse:
    """Answer the problem details for any exception a JSON API view raised."""
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
