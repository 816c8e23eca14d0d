"""Reading what a client sent: the Idempotency-Key and If-Match headers, a JSON body.

Each reader raises an error :func:`~django_eventlog.http.problem_for` answers:
:class:`BadRequest` (400) for a malformed body or header,
:class:`PreconditionFailed` (412) for an ``If-Match`` naming no ETag of the
resource.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, TypeVar

from django.http import HttpRequest

from ..aggregates import LogState
from ..events import DECODE_ERRORS, DomainEvent, event_from_json
from ..exceptions import EventLogError
from ..validation import IDEMPOTENCY_KEY_MAX_LENGTH, parse_log_id

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "BadRequest",
    "BadRequestHeader",
    "PreconditionFailed",
    "idempotency_key",
    "if_match_state",
    "json_body",
    "json_event",
]

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"

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
