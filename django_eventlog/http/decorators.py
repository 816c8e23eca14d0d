"""The :func:`json_api` decorator: a JSON view's failures as problem details."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.log import log_response

from .response import problem, problem_for_exception

__all__ = ["json_api"]


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


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
                response = problem_for_exception(e, retry_after)
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
