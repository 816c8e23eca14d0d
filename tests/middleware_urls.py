"""Views that write an event, for tests/test_middleware.py (selected with
``override_settings(ROOT_URLCONF=...)``).

Each answers the id of the log it created and the metadata in effect
inside the view.
"""

from __future__ import annotations

import asyncio

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from django_eventlog import Log, LogState, current_metadata
from django_eventlog.middleware import user_actor
from tests.domain import Opened


def _answer(state: LogState, status: int = 201) -> JsonResponse:
    return JsonResponse(
        {"log_id": str(state.log_id), "metadata": current_metadata().as_dict()},
        status=status,
    )


def sync_view(request: HttpRequest) -> HttpResponse:
    return _answer(Log.objects.create_log(Opened("sync"), kind="account"))


async def async_view(request: HttpRequest) -> HttpResponse:
    return _answer(await Log.objects.acreate_log(Opened("async"), kind="account"))


def refused(request: HttpRequest) -> HttpResponse:
    """An error response the view returns, after writing."""
    return _answer(Log.objects.create_log(Opened("refused"), kind="account"), 409)


def broken(request: HttpRequest) -> HttpResponse:
    Log.objects.create_log(Opened("broken"), kind="account")
    raise RuntimeError("the view failed")


class Rendezvous:
    """Holds each request that arrives until ``parties`` of them have."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_here.set()
        await asyncio.wait_for(self.all_here.wait(), timeout=10)


#: Set by a test (inside its event loop) before the requests to "together/".
rendezvous: Rendezvous | None = None


async def together(request: HttpRequest) -> HttpResponse:
    """Write only once every concurrent request has entered its view."""
    assert rendezvous is not None
    before = current_metadata().as_dict()
    await rendezvous.wait()
    state = await Log.objects.acreate_log(Opened("together"), kind="account")
    answer = _answer(state)
    answer["X-Before"] = before["correlation_id"]
    return answer


def actor_from_header(request: HttpRequest) -> str | None:
    """An ``EVENTLOG_ACTOR``: the caller named by a header, else the user."""
    client = request.headers.get("X-Client")
    return f"client:{client}" if client else user_actor(request)


class WithoutAuser(MiddlewareMixin):
    """What Django 4.2's AuthenticationMiddleware leaves: a lazy
    ``request.user`` and no ``request.auser``."""

    def process_request(self, request: HttpRequest) -> None:
        # Django 5.0+ sets auser; on 4.2 there is none to take away.
        vars(request).pop("auser", None)


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("refused/", refused),
    path("broken/", broken),
    path("together/", together),
]
