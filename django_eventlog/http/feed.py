"""The global feed over HTTP: :func:`feed_view`, JSON pages another service follows."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, JsonResponse

from ..conf import conf
from ..events import TYPE_NAME_MAX_LENGTH, DomainEvent
from ..exceptions import InvalidArgument
from ..feed import feed_filters
from ..positions import parse_position
from ..validation import KIND_MAX_LENGTH, check_int, check_text
from .decorators import json_api
from .request import BadRequest
from .response import problem

__all__ = ["feed_view"]

# Digits only: int() would also take " 5", "+5" and "5_0".
_LIMIT = re.compile(r"[0-9]{1,10}")


def feed_view(
    *,
    permission: str | None = "django_eventlog.view_event",
    kinds: Sequence[str] | None = None,
    types: Sequence[type[DomainEvent] | str] | None = None,
    page_size: int | None = None,
) -> Callable[[HttpRequest], HttpResponse]:
    """Return a view that serves ``Log.objects.feed`` as JSON pages.

    For a service that follows the feed over HTTP: ``GET
    <url>?after=<position>&limit=<n>`` answers ``{"events": [...],
    "next": "<url>"}``, each event a :meth:`FeedRecord.as_dict`, ``next``
    the relative URL of the page after this one (after the last event's
    position, with the same ``limit``, ``kind`` and ``type``). An empty page
    answers a ``next`` with the same ``after``: poll it until events come.
    No ``after`` reads from the start; ``limit`` defaults to ``page_size``
    (``EVENTLOG_PAGE_SIZE`` when None) and may be at most
    ``EVENTLOG_MAX_PAGE_SIZE``. Repeated ``kind`` and ``type`` parameters
    narrow the page to some kinds of log and some stored type names, within
    the view's own ``kinds`` and ``types`` (None: any).

    The request's user needs ``permission`` (``user.has_perm``); an
    anonymous request and a user without it answer 403, as Django REST
    framework does for session authentication. ``permission=None`` serves
    the feed, every event it holds, to anyone who can reach the URL: pass
    it only behind your own access control.

    Every failure is a problem (``application/problem+json``): 400 naming
    the parameter for a bad ``after``, ``limit``, ``kind`` or ``type`` (a
    kind or type the view does not serve included), 405 for a method other
    than GET, the rest as :func:`json_api` answers. Raises
    :class:`InvalidArgument` at once for bad ``kinds``, ``types`` or
    ``page_size``. Example, in ``urls.py``::

        path("api/feed/", http.feed_view(kinds=["payment"]))
    """
    allowed_kinds, allowed_types = feed_filters(kinds, types)
    if page_size is not None:
        check_int("page_size", page_size, 1)

    @json_api(methods=["GET"])
    def view(request: HttpRequest) -> HttpResponse:
        refused = None if permission is None else _refusal(request, permission)
        if refused is not None:
            return problem(403, "Forbidden", refused)
        after = _one_value(request, "after")
        if after is not None:
            try:
                parse_position(after)
            except InvalidArgument:
                raise BadRequest(
                    'after must be the position of a feed record, like "7125.42".'
                ) from None
        limit = _query_limit(request, page_size)
        wanted_kinds = _narrowed(request, "kind", allowed_kinds, KIND_MAX_LENGTH)
        wanted_types = _narrowed(request, "type", allowed_types, TYPE_NAME_MAX_LENGTH)
        # Here, not at the top: django_eventlog.http stays importable before
        # the app registry is ready, as its other modules are.
        from ..models import Log

        records = Log.objects.feed(
            after, limit=limit, kinds=wanted_kinds, types=wanted_types
        )
        query: list[tuple[str, str]] = []
        last = records[-1].position if records else after
        if last is not None:
            query.append(("after", last))
        query.append(("limit", str(limit)))
        query += [("kind", kind) for kind in request.GET.getlist("kind")]
        query += [("type", name) for name in request.GET.getlist("type")]
        return JsonResponse(
            {
                "events": [record.as_dict() for record in records],
                "next": f"{request.path}?{urlencode(query)}",
            }
        )

    return view


def _refusal(request: HttpRequest, permission: str) -> str | None:
    """Why the request's user may not read the feed; None if they may."""
    # No AuthenticationMiddleware, no user: refused, as an anonymous one.
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return "Authentication credentials were not provided."
    if not user.has_perm(permission):
        return "You do not have permission to read this feed."
    return None


def _one_value(request: HttpRequest, name: str) -> str | None:
    """The query parameter ``name``, None when absent; once at most."""
    values = request.GET.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name} must be given once, not {len(values)} times.")
    return values[0] if values else None


def _query_limit(request: HttpRequest, page_size: int | None) -> int:
    """The page's ``limit``: the query's, or the view's default."""
    maximum = conf.EVENTLOG_MAX_PAGE_SIZE
    raw = _one_value(request, "limit")
    if raw is None:
        return min(conf.EVENTLOG_PAGE_SIZE if page_size is None else page_size, maximum)
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise BadRequest(f"limit must be an integer from 1 to {maximum}.")
    return int(raw)


def _narrowed(
    request: HttpRequest, name: str, allowed: tuple[str, ...], max_length: int
) -> list[str] | None:
    """The values of the repeated parameter ``name``, all within ``allowed``
    (empty: any); ``allowed`` itself without any, None for any."""
    values = request.GET.getlist(name)
    for value in values:
        try:
            check_text(name, value, max_length)
        except InvalidArgument as e:
            raise BadRequest(str(e)) from None
        if allowed and value not in allowed:
            raise BadRequest(
                f"{name} {value!r} is not served here; ask for one of "
                f"{', '.join(allowed)}."
            )
    if values:
        return sorted(set(values))
    return list(allowed) or None
