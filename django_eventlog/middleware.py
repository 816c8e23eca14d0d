"""``EventContextMiddleware``: every event a request writes records who
made the request and which request it was.

Add it to ``MIDDLEWARE`` after ``AuthenticationMiddleware``. Around the
view it enters ``event_context(actor=..., correlation_id=...)``:

- ``actor``: what the function ``EVENTLOG_ACTOR`` names returns for the
  request; by default ``"user:<pk>"`` of a signed-in ``request.user``, None
  for an anonymous one or without ``AuthenticationMiddleware``.
- ``correlation_id``: the request's ``X-Correlation-ID`` header if it is 1
  to 200 letters, digits, ``.``, ``_``, ``:`` or ``-``; else the trace-id
  of a valid W3C ``traceparent`` header; else a new ``uuid4().hex``. A
  malformed header is ignored (logged at DEBUG), never an error response.

The response carries the correlation id in ``X-Correlation-ID``. Sync and
async capable: under ASGI an async view runs inside the context without a
thread, and concurrent requests keep their own (a context variable per
task).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from .conf import conf
from .event_context import event_context
from .exceptions import InvalidArgument
from .validation import METADATA_TEXT_MAX_LENGTH, check_text

__all__ = [
    "CORRELATION_HEADER",
    "EventContextMiddleware",
    "correlation_id_of",
    "user_actor",
]

logger = logging.getLogger("django_eventlog")

#: The header a correlation id is read from and echoed in.
CORRELATION_HEADER = "X-Correlation-ID"

_CORRELATION_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{METADATA_TEXT_MAX_LENGTH}}}")
# W3C Trace Context, version 00: version-trace_id-parent_id-flags, lowercase.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16


def correlation_id_of(request: HttpRequest) -> str:
    """The correlation id of a request: its ``X-Correlation-ID``, else the
    trace-id of its ``traceparent``, else a new one. Headers that do not
    parse are ignored."""
    given = request.headers.get(CORRELATION_HEADER)
    if given is not None:
        given = given.strip(" \t")
        if _CORRELATION_ID.fullmatch(given):
            return given
        logger.debug("Ignored a malformed %s header: %r", CORRELATION_HEADER, given)
    parent = request.headers.get("traceparent")
    if parent is not None:
        match = _TRACEPARENT.fullmatch(parent.strip(" \t"))
        if match and match[1] != _ZERO_TRACE_ID and match[2] != _ZERO_PARENT_ID:
            return match[1]
        logger.debug("Ignored a malformed traceparent header: %r", parent)
    return uuid.uuid4().hex


def user_actor(request: HttpRequest) -> str | None:
    """The default actor: ``"user:<pk>"`` of a signed-in ``request.user``;
    None for an anonymous user or a request without one. An
    ``EVENTLOG_ACTOR`` function may fall back to it."""
    return _actor_of_user(getattr(request, "user", None))


def _actor_of_user(user: Any) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    return f"user:{user.pk}"


def _checked(actor: object) -> str | None:
    if actor is None:
        return None
    try:
        return check_text("actor", actor, METADATA_TEXT_MAX_LENGTH)
    except InvalidArgument as e:
        raise ImproperlyConfigured(
            f"The EVENTLOG_ACTOR function returned {actor!r}: {e} Return a str or None."
        ) from None


def _actor(request: HttpRequest) -> str | None:
    """The actor of a request: ``EVENTLOG_ACTOR``'s answer, else
    :func:`user_actor`'s."""
    function = conf.EVENTLOG_ACTOR
    if function is not None:
        return _checked(function(request))
    return user_actor(request)


async def _aactor(request: HttpRequest) -> str | None:
    """:func:`_actor` in an async request: the user read with
    ``request.auser()`` (Django 5.0+), the rest in a worker thread (the
    function, or the lazy ``request.user`` of Django 4.2, may query the
    database)."""
    function = conf.EVENTLOG_ACTOR
    if function is not None:
        return _checked(await sync_to_async(function)(request))
    auser = getattr(request, "auser", None)
    if auser is not None:
        return _actor_of_user(await auser())
    if not hasattr(request, "user"):
        return None
    return await sync_to_async(user_actor)(request)


class EventContextMiddleware:
    """Set the actor and the correlation id of every event a request writes,
    and answer the correlation id in ``X-Correlation-ID``.

    The context covers the view and the middleware after this one; an
    event written while a streaming response is consumed, after the view
    returned, has none of it. ``ImproperlyConfigured`` when the
    ``EVENTLOG_ACTOR`` function returns something other than a str of 1 to
    200 characters or None.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(
        self, request: HttpRequest
    ) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        get_response = cast(
            "Callable[[HttpRequest], HttpResponseBase]", self.get_response
        )
        correlation_id = correlation_id_of(request)
        with event_context(actor=_actor(request), correlation_id=correlation_id):
            response = get_response(request)
        response[CORRELATION_HEADER] = correlation_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response = cast(
            "Callable[[HttpRequest], Awaitable[HttpResponseBase]]", self.get_response
        )
        correlation_id = correlation_id_of(request)
        actor = await _aactor(request)
        # Set and reset in this task: the context ends with the request.
        with event_context(actor=actor, correlation_id=correlation_id):
            response = await get_response(request)
        response[CORRELATION_HEADER] = correlation_id
        return response
