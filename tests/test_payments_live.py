"""The payments API end to end: pytest-django's live server and real HTTP.

The live server is threaded, so requests sent together by client threads run
together in the server. The client threads only speak HTTP (they never touch
the database); the test's own thread reads and writes the database, and every
write it makes commits (``transaction=True``) so that the server sees it.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from django.db import connection

from django_eventlog import Event, Log
from testproject.payments.events import (
    Authorized,
    Captured,
    PaymentRequest,
    Requested,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from pytest_django.live_server_helper import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)

# Seconds a request or a barrier may take before the test fails (not hangs).
TIMEOUT = 30.0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def send(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send one request on a fresh connection and return the whole reply."""
    address = urlsplit(server.url)
    assert address.hostname is not None
    connection = http.client.HTTPConnection(
        address.hostname, address.port, timeout=TIMEOUT
    )
    try:
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        try:
            content = response.read()
            reply_headers = {
                name.lower(): value for name, value in response.getheaders()
            }
            status = response.status
        finally:
            response.close()
    finally:
        connection.close()
    return Reply(status, reply_headers, json.loads(content) if content else None)


def run_together(count: int, request: Any) -> list[Reply | BaseException]:
    """Run ``request(i)`` in ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count, timeout=TIMEOUT)
    results: list[Reply | BaseException | None] = [None] * count

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = request(i)
        except BaseException as e:
            barrier.abort()
            results[i] = e

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    finished: list[Reply | BaseException] = []
    for result in results:
        assert result is not None
        finished.append(result)
    return finished


def replies(results: list[Reply | BaseException]) -> list[Reply]:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return [r for r in results if isinstance(r, Reply)]


@pytest.fixture
def server(live_server: LiveServer) -> Iterator[LiveServer]:
    """The live server; on SQLite it serves one request at a time.

    On SQLite the test database is in memory, and pytest-django hands the
    test's one connection to every server thread: two requests at once then
    fail with "database table is locked" (a write while the other thread's
    read is open on the same connection). PostgreSQL serves them concurrently.
    """
    if connection.vendor != "sqlite":
        yield live_server
        return
    httpd = live_server.thread.httpd
    app = httpd.get_app()
    assert app is not None
    lock = threading.Lock()

    def one_at_a_time(
        environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        with lock:
            return app(environ, start_response)

    httpd.set_app(one_at_a_time)
    try:
        yield live_server
    finally:
        httpd.set_app(app)


def create_payment(server: LiveServer, amount: int = 10_000) -> Reply:
    reply = send(server, "POST", "/api/payments/", {"amount": amount})
    assert reply.status == 201, reply.body
    return reply


ROUNDS = 5


def test_concurrent_captures_with_one_etag(server: LiveServer) -> None:
    created = create_payment(server, 10_000)
    payment_id = created.body["id"]
    captures = f"/api/payments/{payment_id}/captures/"
    tag = created.headers["etag"]
    for round_ in range(ROUNDS):

        def capture(i: int, tag: str = tag, round_: int = round_) -> Reply:
            body = {
                "amount": 100,
                "statement_descriptor": f"R{round_} T{i}",
                "currency": "EUR",
            }
            return send(server, "POST", captures, body, {"If-Match": tag})

        first, second = replies(run_together(2, capture))
        won, lost = (first, second) if first.status == 201 else (second, first)
        assert (won.status, lost.status) == (201, 412), (first, second)
        assert lost.headers["content-type"] == "application/problem+json"
        # The loser is told the state that the winner made.
        assert lost.headers["etag"] == won.headers["etag"]
        assert won.body["event"]["index"] == 2 + round_
        tag = won.headers["etag"]

    current = send(server, "GET", f"/api/payments/{payment_id}/")
    assert current.status == 200
    assert current.headers["etag"] == tag
    assert current.body["amount_captured"] == 100 * ROUNDS
    assert Event.objects.filter(log_id=payment_id).count() == 2 + ROUNDS


def test_retried_create_makes_one_payment(server: LiveServer) -> None:
    key = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
    first = send(server, "POST", "/api/payments/", {"amount": 1_234}, key)
    again = send(server, "POST", "/api/payments/", {"amount": 1_234}, key)
    assert first.status == again.status == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert again.headers["location"] == first.headers["location"]
    assert Log.objects.filter(kind="payment").count() == 1
    assert Event.objects.filter(log_id=first.body["id"]).count() == 2

    other = send(server, "POST", "/api/payments/", {"amount": 1_235}, key)
    assert other.status == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in other.body["detail"]
    assert Log.objects.filter(kind="payment").count() == 1


def test_concurrent_retries_of_a_create_make_one_payment(server: LiveServer) -> None:
    key = {"Idempotency-Key": f'"{uuid.uuid4()}"'}

    def create(i: int) -> Reply:
        return send(server, "POST", "/api/payments/", {"amount": 4_321}, key)

    results = replies(run_together(4, create))
    assert [r.status for r in results] == [201] * 4, results
    assert len({r.body["id"] for r in results}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == 3
    (payment_id,) = Log.objects.filter(kind="payment").values_list("id", flat=True)
    assert list(
        Event.objects.filter(log_id=payment_id)
        .order_by("index")
        .values_list("type", flat=True)
    ) == ["payment.requested", "payment.authorized"]


EVENTS = 120
PAGE = 25


def test_paging_through_a_long_event_list(server: LiveServer) -> None:
    state = Log.objects.create_log(Requested(PaymentRequest(1_000_000)), kind="payment")
    state = Log.objects.append(state, Authorized(1_000_000, "LIVE"))
    for n in range(EVENTS - 2):
        state = Log.objects.append(state, Captured(1, f"PART {n}", "EUR"))

    indices: list[int] = []
    descriptors: list[str] = []
    pages = 0
    next_url: str | None = f"/api/payments/{state.log_id}/events/?limit={PAGE}"
    while next_url is not None:
        reply = send(server, "GET", next_url)
        assert reply.status == 200
        assert reply.headers["content-type"] == "application/json"
        assert 0 < len(reply.body["events"]) <= PAGE
        indices.extend(e["index"] for e in reply.body["events"])
        descriptors.extend(
            e["event"]["statement_descriptor"]
            for e in reply.body["events"]
            if e["type"] == "payment.captured"
        )
        next_url = reply.body["next"]
        pages += 1
        assert pages <= EVENTS, "the next links do not end"
    assert indices == list(range(EVENTS))
    assert descriptors == [f"PART {n}" for n in range(EVENTS - 2)]
    assert pages == -(-EVENTS // PAGE)
