"""The payments API against hostile clients: every failure a problem, rightly.

Oversized and deeply nested bodies, a database that is down, unsafe methods
on read-only endpoints with CSRF enforced, repeated Idempotency-Key headers,
paths without their slash or unknown under /api/, the order in which a write
checks its headers and its body, and a server error inside a view.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from django_eventlog import Event, Log

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response
    from pytest_django.live_server_helper import LiveServer

pytestmark = pytest.mark.django_db

API = "/api/payments/"
PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parent.parent


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = json.loads(response.content)
    assert body["status"] == status
    return body


def new_payment(client: Client) -> str:
    response = client.post(API, {"amount": 10_000}, content_type="application/json")
    assert response.status_code == 201
    payment_id: str = response.json()["id"]
    return payment_id


def events_of(payment_id: str) -> int:
    return Event.objects.filter(log_id=payment_id).count()


# The order of checks: headers before the body


@pytest.mark.parametrize("what", ["captures", "refunds"])
@pytest.mark.parametrize("data", ["{", '{"amount": "x"}'], ids=["malformed", "invalid"])
def test_a_malformed_idempotency_key_is_answered_before_the_body(
    client: Client, what: str, data: str
) -> None:
    payment_id = new_payment(client)
    response = client.post(
        f"{API}{payment_id}/{what}/",
        data,
        content_type="application/json",
        headers={"Idempotency-Key": '"open'},
    )
    body = assert_problem(response, 400)
    assert body["detail"].startswith("Idempotency-Key: ")
    assert events_of(payment_id) == 2


@pytest.mark.parametrize("what", ["captures", "refunds"])
@pytest.mark.parametrize("data", ["{", '{"amount": "x"}'], ids=["malformed", "invalid"])
def test_a_failing_if_match_is_answered_before_the_body(
    client: Client, what: str, data: str
) -> None:
    payment_id = new_payment(client)
    response = client.post(
        f"{API}{payment_id}/{what}/",
        data,
        content_type="application/json",
        headers={"If-Match": "garbage"},
    )
    assert_problem(response, 412)
    assert response["ETag"] == f'"{uuid.UUID(payment_id).hex}.2"'
    assert events_of(payment_id) == 2


# Bodies


def test_a_body_over_the_upload_limit_is_413(client: Client) -> None:
    # 3 MB, over Django's default DATA_UPLOAD_MAX_MEMORY_SIZE of 2.5 MB.
    big = json.dumps({"amount": 100, "padding": "x" * 3_000_000})
    body = assert_problem(client.post(API, big, content_type="application/json"), 413)
    assert body["title"] == "Content Too Large"
    payment_id = new_payment(client)
    response = client.post(
        f"{API}{payment_id}/captures/", big, content_type="application/json"
    )
    assert_problem(response, 413)
    assert Log.objects.count() == 1


def test_a_body_nested_100000_deep_is_400(client: Client) -> None:
    deep = '{"amount": ' + "[" * 100_000 + "]" * 100_000 + "}"
    body = assert_problem(client.post(API, deep, content_type="application/json"), 400)
    assert body["detail"] == "The body is nested too deeply."
    assert Log.objects.count() == 0


# A database that is down: the demo run as its own process, DEBUG off


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 bound but not listening: connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


DEMO_REQUEST = """
import django, json
django.setup()
from django.test import Client
response = Client(SERVER_NAME="localhost").get(
    "/api/payments/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/"
)
print(json.dumps({
    "status": response.status_code,
    "type": response["Content-Type"],
    "retry_after": response.get("Retry-After"),
    "body": json.loads(response.content),
}))
"""


def request_demo(env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """GET a payment from the demo in a new process; its answer and its stderr."""
    completed = subprocess.run(
        [sys.executable, "-c", DEMO_REQUEST],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "DJANGO_DEBUG": "0",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    answer: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return answer, completed.stderr


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_a_database_that_is_down_is_503_with_retry_after_and_a_logged_error(
    closed_port: int, tmp_path: Path, engine: str
) -> None:
    if engine == "postgresql":
        env = {
            "EVENTLOG_DB": "postgresql",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(closed_port),
            "PGCONNECT_TIMEOUT": "5",
        }
    else:
        # A database file in a directory that does not exist cannot be opened.
        env = {
            "EVENTLOG_DB": "sqlite",
            "EVENTLOG_SQLITE_PATH": str(tmp_path / "missing" / "db.sqlite3"),
        }
    answer, stderr = request_demo(env)
    assert answer["status"] == 503
    assert answer["type"] == PROBLEM
    assert answer["retry_after"] == "5"
    assert answer["body"]["title"] == "Service Unavailable"
    # The demo's logging prints the error once, with its traceback (the
    # driver's error, then Django's OperationalError raised from it).
    assert stderr.count("Service Unavailable: /api/payments/") == 1, stderr
    assert "Traceback (most recent call last)" in stderr
    assert "django.db.utils.OperationalError" in stderr
    assert str(closed_port) not in json.dumps(answer)


# CSRF: unsafe methods on read-only endpoints, and cookie-authenticated writes


@pytest.mark.parametrize("method", ["put", "patch", "delete", "post"])
@pytest.mark.parametrize("what", ["", "events/"])
def test_an_unsupported_method_is_405_with_csrf_enforced(
    client: Client, method: str, what: str
) -> None:
    payment_id = new_payment(client)
    strict = Client(enforce_csrf_checks=True)
    response = getattr(strict, method)(f"{API}{payment_id}/{what}")
    assert_problem(response, 405)
    assert response["Allow"] == "GET, HEAD"


@pytest.fixture
def logged_in() -> Client:
    """A client with a session cookie, as a browser signed in to the admin."""
    user = get_user_model().objects.create_user("staff", password=None)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_a_cookie_authenticated_write_needs_the_csrf_token(logged_in: Client) -> None:
    response = logged_in.post(API, {"amount": 100}, content_type="application/json")
    body = assert_problem(response, 403)
    assert body["detail"].startswith("CSRF Failed: ")
    assert Log.objects.count() == 0
    secret = "s" * 32
    logged_in.cookies["csrftoken"] = secret
    response = logged_in.post(
        API,
        {"amount": 100},
        content_type="application/json",
        headers={"X-CSRFToken": secret},
    )
    assert response.status_code == 201


def test_an_anonymous_write_needs_no_csrf_token() -> None:
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(API, {"amount": 100}, content_type="application/json")
    assert response.status_code == 201


# Idempotency-Key sent twice


def test_a_joined_idempotency_key_is_400(client: Client) -> None:
    response = client.post(
        API,
        {"amount": 100},
        content_type="application/json",
        headers={"Idempotency-Key": "a,b"},
    )
    body = assert_problem(response, 400)
    assert "one key" in body["detail"]
    assert Log.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_idempotency_key_headers_are_400(live_server: LiveServer) -> None:
    address = urlsplit(live_server.url)
    assert address.hostname is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        data = json.dumps({"amount": 100}).encode()
        connection.putrequest("POST", API)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(data)))
        connection.putheader("Idempotency-Key", '"a"')
        connection.putheader("Idempotency-Key", '"b"')
        connection.endheaders(data)
        response = connection.getresponse()
        status, content_type = response.status, response.getheader("Content-Type")
        body = json.loads(response.read())
    finally:
        connection.close()
    assert status == 400
    assert content_type == PROBLEM
    assert "one key" in body["detail"]
    assert Log.objects.count() == 0


# Paths under /api/


def test_a_path_without_its_slash_is_served_not_redirected(client: Client) -> None:
    response = client.post(
        API.rstrip("/"), {"amount": 100}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    payment_id = response.json()["id"]
    assert client.get(f"{API}{payment_id}").json() == (
        client.get(f"{API}{payment_id}/").json()
    )
    response = client.post(
        f"{API}{payment_id}/captures",
        {"amount": 10, "statement_descriptor": "X", "currency": "EUR"},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert events_of(payment_id) == 3


@pytest.mark.parametrize(
    "path",
    ["/api", "/api/", "/api/nope", "/api/nope/", f"{API}x/y/z/", f"{API}x/nope"],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_api_path_is_a_404_problem(
    client: Client, path: str, method: str
) -> None:
    response = getattr(client, method)(path)
    body = assert_problem(response, 404)
    assert body["title"] == "Not Found"


# A server error inside a view


def test_a_server_error_in_a_view_is_logged_with_its_traceback(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    payment_id = new_payment(client)
    # An event of a type this code does not know: reduce raises UnknownEventType.
    Event.objects.create(log_id=payment_id, index=2, type="payment.unknown", payload={})
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get(f"{API}{payment_id}/")
    body = assert_problem(response, 500)
    assert "payment.unknown" not in json.dumps(body)
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is not None
    assert type(records[0].exc_info[1]).__name__ == "UnknownEventType"
