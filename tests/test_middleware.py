"""EventContextMiddleware: the actor and correlation id of every event a
request writes, through Django's test clients (WSGI and ASGI) and views
that write (tests/middleware_urls.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client

from django_eventlog import EventMetadata, Log, current_metadata
from django_eventlog.checks import check_settings
from django_eventlog.middleware import EventContextMiddleware, user_actor
from django_eventlog.models import Event
from tests import middleware_urls

pytestmark = pytest.mark.django_db

SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"
EVENT_CONTEXT = "django_eventlog.middleware.EventContextMiddleware"
FRESH_ID = re.compile(r"[0-9a-f]{32}")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

#: Which client sends the request (WSGI or ASGI) and which view answers it.
ROUTES = [
    pytest.param("sync", "/sync/", id="wsgi-sync_view"),
    pytest.param("async", "/async/", id="asgi-async_view"),
    pytest.param("async", "/sync/", id="asgi-sync_view"),
    pytest.param("sync", "/async/", id="wsgi-async_view"),
]


@pytest.fixture(autouse=True)
def _views(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.middleware_urls"
    settings.MIDDLEWARE = [SESSIONS, AUTHENTICATION, EVENT_CONTEXT]


@pytest.fixture
def user() -> User:
    return User.objects.create_user(username="ada")


@dataclass
class Sent:
    """What came back from one request."""

    status: int
    #: The response's X-Correlation-ID.
    header: str | None
    #: The view's answer: the log it created and the metadata it saw.
    body: dict[str, Any]
    #: ``current_metadata()`` right after the response, where the request ran.
    after: EventMetadata

    def stored(self) -> EventMetadata:
        """The metadata stored with the event the view wrote."""
        (record,) = Log.objects.load(self.body["log_id"])
        return record.metadata


def _sent(response: Any, after: EventMetadata) -> Sent:
    is_json = response["Content-Type"] == "application/json"
    return Sent(
        response.status_code,
        response.headers.get("X-Correlation-ID"),
        response.json() if is_json else {},
        after,
    )


def send(
    via: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    user: User | None = None,
    raise_request_exception: bool = True,
) -> Sent:
    """POST ``path`` through the WSGI (``via="sync"``) or ASGI test client."""
    headers = headers or {}
    if via == "sync":
        client = Client(raise_request_exception=raise_request_exception)
        if user is not None:
            client.force_login(user)
        return _sent(client.post(path, headers=headers), current_metadata())
    aclient = AsyncClient(raise_request_exception=raise_request_exception)
    if user is not None:
        aclient.force_login(user)

    async def scenario() -> Sent:
        response = await aclient.post(path, headers=headers)
        # In the task that sent it: the request's context is gone.
        return _sent(response, current_metadata())

    return async_to_sync(scenario)()


# Who


@pytest.mark.parametrize(("via", "path"), ROUTES)
def test_the_actor_is_the_signed_in_user(via: str, path: str, user: User) -> None:
    sent = send(via, path, user=user)
    assert sent.status == 201
    assert sent.stored().actor == f"user:{user.pk}"
    assert sent.body["metadata"]["actor"] == f"user:{user.pk}"
    assert sent.after == EventMetadata()
    assert current_metadata() == EventMetadata()


@pytest.mark.parametrize(("via", "path"), ROUTES)
def test_an_anonymous_request_has_no_actor(via: str, path: str) -> None:
    sent = send(via, path)
    assert sent.status == 201
    stored = sent.stored()
    assert stored.actor is None
    assert stored.correlation_id == sent.header
    assert not sent.after


@pytest.mark.parametrize(("via", "path"), ROUTES)
def test_without_authentication_middleware_there_is_no_actor(
    via: str, path: str, settings: Any, user: User
) -> None:
    settings.MIDDLEWARE = [SESSIONS, EVENT_CONTEXT]
    sent = send(via, path, {"X-Correlation-ID": "no-auth"}, user=user)
    assert sent.stored() == EventMetadata(actor=None, correlation_id="no-auth")


@pytest.mark.parametrize(("via", "path"), ROUTES)
def test_without_request_auser_the_lazy_user_is_read(
    via: str, path: str, settings: Any, user: User
) -> None:
    # Django 4.2's AuthenticationMiddleware sets request.user, not auser.
    settings.MIDDLEWARE = [
        SESSIONS,
        AUTHENTICATION,
        "tests.middleware_urls.WithoutAuser",
        EVENT_CONTEXT,
    ]
    sent = send(via, path, user=user)
    assert sent.stored().actor == f"user:{user.pk}"


def test_the_middleware_is_async_under_an_async_handler() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    async def aview(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    assert iscoroutinefunction(EventContextMiddleware(aview))
    assert not iscoroutinefunction(EventContextMiddleware(view))


# EVENTLOG_ACTOR


@pytest.mark.parametrize(("via", "path"), ROUTES)
def test_the_eventlog_actor_function_names_the_actor(
    via: str, path: str, settings: Any, user: User
) -> None:
    settings.EVENTLOG_ACTOR = "tests.middleware_urls.actor_from_header"
    by_client = send(via, path, {"X-Client": "billing"}, user=user)
    assert by_client.stored().actor == "client:billing"
    # The function falls back to user_actor, the default.
    by_user = send(via, path, user=user)
    assert by_user.stored().actor == f"user:{user.pk}"
    assert send(via, path).stored().actor is None


@pytest.mark.parametrize("via", ["sync", "async"])
def test_the_eventlog_actor_may_be_the_function_itself(via: str, settings: Any) -> None:
    settings.EVENTLOG_ACTOR = lambda request: f"ip:{request.META['REMOTE_ADDR']}"
    assert send(via, f"/{via}/").stored().actor == "ip:127.0.0.1"


@pytest.mark.parametrize("via", ["sync", "async"])
@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (42, "must be a str, got int"),
        ("", "must have 1 to 200 characters, got 0"),
        ("x" * 201, "must have 1 to 200 characters, got 201"),
        (b"user:1", "must be a str, got bytes"),
    ],
)
def test_an_eventlog_actor_returning_no_actor_is_a_clear_error(
    via: str, returned: object, message: str, settings: Any
) -> None:
    settings.EVENTLOG_ACTOR = lambda request: returned
    with pytest.raises(ImproperlyConfigured, match="EVENTLOG_ACTOR") as raised:
        send(via, f"/{via}/")
    assert message in str(raised.value)
    assert not Event.objects.exists()
    assert not current_metadata()


@pytest.mark.parametrize(
    "value",
    [
        "tests.middleware_urls.no_such_function",
        "tests.no_such_module.actor",
        "actor",
        "tests.middleware_urls.rendezvous",  # None: not callable
        42,
        ["tests.middleware_urls.actor_from_header"],
    ],
)
def test_the_system_check_refuses_an_eventlog_actor_that_is_no_function(
    value: object, settings: Any
) -> None:
    settings.EVENTLOG_ACTOR = value
    (error,) = check_settings()
    assert error.id == "django_eventlog.E023"
    assert error.msg.startswith("EVENTLOG_ACTOR: ")


@pytest.mark.parametrize(
    "value",
    [None, "tests.middleware_urls.actor_from_header", user_actor],
)
def test_the_system_check_accepts_an_eventlog_actor_function(
    value: object, settings: Any
) -> None:
    settings.EVENTLOG_ACTOR = value
    assert check_settings() == []


# Which request


@pytest.mark.parametrize(("via", "path"), ROUTES)
def test_the_correlation_id_sent_is_stored_and_echoed(via: str, path: str) -> None:
    sent = send(via, path, {"X-Correlation-ID": "checkout-7:a.b_C"})
    assert sent.header == "checkout-7:a.b_C"
    assert sent.stored().correlation_id == "checkout-7:a.b_C"
    assert sent.body["metadata"]["correlation_id"] == "checkout-7:a.b_C"
    assert not sent.after


@pytest.mark.parametrize(("via", "path"), ROUTES)
def test_without_a_header_each_request_gets_a_fresh_id(via: str, path: str) -> None:
    first, second = send(via, path), send(via, path)
    assert first.header is not None
    assert second.header is not None
    assert FRESH_ID.fullmatch(first.header)
    assert FRESH_ID.fullmatch(second.header)
    assert first.header != second.header
    assert first.stored().correlation_id == first.header
    assert second.stored().correlation_id == second.header


#: Headers, and the correlation id they give (None: a fresh one).
HEADERS = [
    pytest.param({"X-Correlation-ID": "a" * 200}, "a" * 200, id="200-characters"),
    pytest.param({"X-Correlation-ID": " padded-id\t"}, "padded-id", id="padded"),
    pytest.param({"traceparent": TRACEPARENT}, TRACE_ID, id="traceparent"),
    pytest.param(
        {"X-Correlation-ID": "order-1", "traceparent": TRACEPARENT},
        "order-1",
        id="header-over-traceparent",
    ),
    pytest.param(
        {"X-Correlation-ID": "bad id", "traceparent": TRACEPARENT},
        TRACE_ID,
        id="bad-header-then-traceparent",
    ),
    pytest.param({"X-Correlation-ID": "a" * 201}, None, id="too-long"),
    pytest.param({"X-Correlation-ID": ""}, None, id="empty"),
    pytest.param({"X-Correlation-ID": "has space"}, None, id="space"),
    pytest.param({"X-Correlation-ID": "a/b"}, None, id="slash"),
    pytest.param({"X-Correlation-ID": "a,b"}, None, id="two-values"),
    pytest.param({"X-Correlation-ID": "café"}, None, id="not-ascii"),
    pytest.param({"X-Correlation-ID": "<script>"}, None, id="markup"),
    pytest.param(
        {"traceparent": TRACEPARENT.replace("00-", "01-", 1)}, None, id="version-01"
    ),
    pytest.param(
        {"traceparent": TRACEPARENT.replace("00-", "ff-", 1)}, None, id="version-ff"
    ),
    pytest.param({"traceparent": TRACEPARENT[1:]}, None, id="version-one-digit"),
    pytest.param(
        {"traceparent": TRACEPARENT.replace(TRACE_ID, TRACE_ID[:-1])},
        None,
        id="trace-id-31",
    ),
    pytest.param(
        {"traceparent": TRACEPARENT.replace(TRACE_ID, TRACE_ID + "0")},
        None,
        id="trace-id-33",
    ),
    pytest.param(
        {"traceparent": TRACEPARENT.replace("00f067aa0ba902b7", "00f067aa0ba902b")},
        None,
        id="parent-id-15",
    ),
    pytest.param({"traceparent": TRACEPARENT + "-00"}, None, id="extra-field"),
    pytest.param({"traceparent": TRACEPARENT[:-1]}, None, id="flags-one-digit"),
    pytest.param({"traceparent": TRACEPARENT[:-2] + "zz"}, None, id="flags-not-hex"),
    pytest.param(
        {"traceparent": TRACEPARENT.replace(TRACE_ID, TRACE_ID.upper())},
        None,
        id="uppercase",
    ),
    pytest.param(
        {"traceparent": TRACEPARENT.replace(TRACE_ID, "0" * 32)},
        None,
        id="zero-trace-id",
    ),
    pytest.param(
        {"traceparent": TRACEPARENT.replace("00f067aa0ba902b7", "0" * 16)},
        None,
        id="zero-parent-id",
    ),
    pytest.param({"traceparent": TRACE_ID}, None, id="trace-id-alone"),
    pytest.param(
        {"traceparent": TRACEPARENT.replace("-", "_")}, None, id="underscores"
    ),
]


@pytest.mark.parametrize("via", ["sync", "async"])
@pytest.mark.parametrize(("headers", "expected"), HEADERS)
def test_a_valid_header_gives_the_id_and_a_malformed_one_a_fresh_id(
    via: str, headers: dict[str, str], expected: str | None
) -> None:
    sent = send(via, f"/{via}/", headers)
    assert sent.status == 201
    stored = sent.stored().correlation_id
    assert stored == sent.header
    assert stored == sent.body["metadata"]["correlation_id"]
    if expected is not None:
        assert stored == expected
    else:
        assert stored is not None
        assert FRESH_ID.fullmatch(stored)
        assert stored not in " ".join(headers.values())


def test_a_malformed_header_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="django_eventlog"):
        send("sync", "/sync/", {"X-Correlation-ID": "bad id", "traceparent": "00-x"})
    assert [r.getMessage() for r in caplog.records if r.name == "django_eventlog"] == [
        "Ignored a malformed X-Correlation-ID header: 'bad id'",
        "Ignored a malformed traceparent header: '00-x'",
    ]


@pytest.mark.parametrize("via", ["sync", "async"])
def test_an_error_response_carries_the_id(via: str) -> None:
    sent = send(via, "/refused/", {"X-Correlation-ID": "refused-1"})
    assert sent.status == 409
    assert sent.header == "refused-1"
    assert sent.stored().correlation_id == "refused-1"
    assert not sent.after


@pytest.mark.parametrize("via", ["sync", "async"])
def test_a_view_that_raises_answers_500_with_the_id(
    via: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.CRITICAL, logger="django.request"):
        sent = send(
            via,
            "/broken/",
            {"X-Correlation-ID": "broken-1"},
            raise_request_exception=False,
        )
    assert sent.status == 500
    assert sent.header == "broken-1"
    # What the view wrote before it failed says which request it was.
    assert Event.objects.get(correlation_id="broken-1").type == "tests.opened"
    assert not sent.after


def test_concurrent_async_requests_keep_their_own_context(
    user: User,
) -> None:
    signed_in = AsyncClient()
    signed_in.force_login(user)
    anonymous = AsyncClient()

    async def scenario() -> list[Any]:
        # Each request waits in its view until the other has entered its own.
        middleware_urls.rendezvous = middleware_urls.Rendezvous(2)
        try:
            return list(
                await asyncio.gather(
                    signed_in.post("/together/", headers={"X-Correlation-ID": "one"}),
                    anonymous.post("/together/", headers={"X-Correlation-ID": "two"}),
                )
            )
        finally:
            middleware_urls.rendezvous = None

    responses = async_to_sync(scenario)()
    # What each view saw before and after the other request entered its view.
    assert [r["X-Before"] for r in responses] == ["one", "two"]
    one, two = (_sent(r, current_metadata()) for r in responses)
    assert [one.body["metadata"], two.body["metadata"]] == [
        {
            "actor": f"user:{user.pk}",
            "correlation_id": "one",
            "causation_id": None,
            "extra": {},
        },
        {"actor": None, "correlation_id": "two", "causation_id": None, "extra": {}},
    ]
    assert one.stored() == EventMetadata(actor=f"user:{user.pk}", correlation_id="one")
    assert two.stored() == EventMetadata(actor=None, correlation_id="two")
    assert (one.header, two.header) == ("one", "two")
    assert not one.after
