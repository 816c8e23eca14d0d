"""The demo's subscriber PaymentAuthorizer: every requested payment is
authorized exactly once, whatever happened to the create that requested it.

A create records the request (``create_log``), then asks the gateway and
records its decision. These tests cut it between the two steps (a gateway
that fails, a process killed with SIGKILL) and check that the subscriber
finishes it: one decision per payment, the gateway asked with one key, also
when the subscriber is delivered an event twice or races a retried create.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from django_eventlog import Event, FeedRecord, Log
from django_eventlog.models import ProjectionCheckpoint
from django_eventlog.projections import catch_up
from testproject.payments import gateway
from testproject.payments.authorization import authorization_key
from testproject.payments.events import Authorized, Declined, Payment, PaymentRequest
from testproject.payments.projections import PaymentAuthorizer

pytestmark = pytest.mark.django_db

API = "/api/payments/"
AUTHORIZER = PaymentAuthorizer.name
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0


class Gateway:
    """The demo's gateway, counting the keys it is asked with (thread-safe)."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self.fail = False
        self._lock = threading.Lock()
        self.real = gateway.authorize

    def authorize(
        self, request: PaymentRequest, *, idempotency_key: str | None = None
    ) -> Authorized | Declined:
        if self.fail:
            raise ConnectionError("the database restarted")
        with self._lock:
            self.keys.append(idempotency_key)
        return self.real(request, idempotency_key=idempotency_key)


@pytest.fixture
def fake_gateway(monkeypatch: pytest.MonkeyPatch) -> Gateway:
    counting = Gateway()
    monkeypatch.setattr(gateway, "authorize", counting.authorize)
    return counting


def create(client: Client, amount: int, key: str) -> Any:
    return client.post(
        API,
        {"amount": amount},
        content_type="application/json",
        headers={"Idempotency-Key": f'"{key}"'},
    )


def payment_of(key: str) -> uuid.UUID:
    """The payment a create with the client key ``key`` requested."""
    first = Event.objects.get(idempotency_key=f"payments:create:{key}")
    return first.log_id


def types_of(payment_id: uuid.UUID) -> list[str]:
    return list(
        Event.objects.filter(log_id=payment_id)
        .order_by("index")
        .values_list("type", flat=True)
    )


def requested_record(payment_id: uuid.UUID) -> FeedRecord:
    """The payment's ``payment.requested`` event as the feed delivers it."""
    requested = Log.objects.feed(limit=100, types=["payment.requested"])
    (record,) = [r for r in requested if r.log_id == payment_id]
    return record


def test_a_create_that_fails_after_its_request_is_authorized_by_the_subscriber(
    client: Client, fake_gateway: Gateway
) -> None:
    fake_gateway.fail = True
    failed = [create(client, amount, f"cut-{amount}") for amount in (700, 2_000_000)]
    assert [r.status_code for r in failed] == [500, 500]
    payments = [payment_of("cut-700"), payment_of("cut-2000000")]
    assert [types_of(p) for p in payments] == [["payment.requested"]] * 2
    assert [client.get(f"{API}{p}/").json()["status"] for p in payments] == [
        "requested"
    ] * 2
    assert fake_gateway.keys == []

    fake_gateway.fail = False
    assert catch_up([AUTHORIZER]) == {AUTHORIZER: 2}
    assert types_of(payments[0]) == ["payment.requested", "payment.authorized"]
    assert types_of(payments[1]) == ["payment.requested", "payment.declined"]
    assert fake_gateway.keys == [authorization_key(p) for p in payments]
    authorized = client.get(f"{API}{payments[0]}/").json()
    assert (authorized["status"], authorized["amount_approved"]) == ("authorized", 700)

    # Run again, then delivered everything again (a subscriber is at least
    # once: a crash before its checkpoint moved does this): nothing new.
    assert catch_up([AUTHORIZER]) == {AUTHORIZER: 0}
    ProjectionCheckpoint.objects.filter(name=AUTHORIZER).delete()
    assert catch_up([AUTHORIZER]) == {AUTHORIZER: 2}
    PaymentAuthorizer().handle(requested_record(payments[0]))
    assert types_of(payments[0]) == ["payment.requested", "payment.authorized"]
    assert types_of(payments[1]) == ["payment.requested", "payment.declined"]
    assert len(fake_gateway.keys) == 2

    # The client's retry answers the decision the subscriber recorded.
    retried = create(client, 700, "cut-700")
    assert retried.status_code == 201
    assert retried["Idempotent-Replayed"] == "true"
    assert retried.json() == authorized
    assert len(fake_gateway.keys) == 2


def test_a_payment_the_create_authorized_is_left_alone(
    client: Client, fake_gateway: Gateway
) -> None:
    created = create(client, 1_000, "whole")
    assert created.status_code == 201
    assert catch_up([AUTHORIZER]) == {AUTHORIZER: 1}
    assert types_of(payment_of("whole")) == ["payment.requested", "payment.authorized"]
    assert fake_gateway.keys == [authorization_key(payment_of("whole"))]
    assert client.get(f"{API}{payment_of('whole')}/").json() == created.json()


def test_the_subscriber_racing_a_retried_create_records_one_decision(
    client: Client, fake_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The subscriber asks the gateway; while it waits, the client's retry
    # (run here, nested) asks too and records the decision first. The
    # subscriber's append is refused; it finds the payment decided.
    fake_gateway.fail = True
    assert create(client, 4_200, "race").status_code == 500
    fake_gateway.fail = False
    payment_id = payment_of("race")
    retried: list[Any] = []
    calls = 0

    def retry_first(
        request: PaymentRequest, *, idempotency_key: str | None = None
    ) -> Authorized | Declined:
        nonlocal calls
        calls += 1
        if calls == 1:  # the subscriber's call; the retry's is the second
            retried.append(create(client, 4_200, "race"))
        return fake_gateway.authorize(request, idempotency_key=idempotency_key)

    monkeypatch.setattr(gateway, "authorize", retry_first)
    PaymentAuthorizer().handle(requested_record(payment_id))
    (response,) = retried
    assert response.status_code == 201
    assert response.json()["status"] == "authorized"
    assert types_of(payment_id) == ["payment.requested", "payment.authorized"]
    # Both asked, with the payment's one key: one charge at a real gateway.
    assert fake_gateway.keys == [authorization_key(payment_id)] * 2


# Real processes on PostgreSQL: a create killed with SIGKILL between its two
# steps, then the subscriber, a second delivery and the client's retry at once.

KILLED_CREATE = """
import os, signal, django
django.setup()
from django.test import Client
from testproject.payments import gateway

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # after create_log committed

gateway.authorize = die
Client(SERVER_NAME="localhost").post(
    "/api/payments/", {"amount": 3_300}, content_type="application/json",
    headers={"Idempotency-Key": '"killed"'},
)
raise SystemExit("the create was not killed")
"""


def run_killed_create() -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "EVENTLOG_DB": "postgresql",
        # The test database, which this test commits to.
        "PGDATABASE": str(connection.settings_dict["NAME"]),
    }
    return subprocess.run(
        [sys.executable, "-c", KILLED_CREATE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def together(*calls: Callable[[], object]) -> list[object]:
    """Run ``calls`` in threads released at once, each on its own connection."""
    barrier = threading.Barrier(len(calls), timeout=TIMEOUT)
    results: list[object] = [None] * len(calls)

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = calls[i]()
        except BaseException as e:
            barrier.abort()
            results[i] = e
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads), "a call hung"
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return results


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_a_create_killed_between_its_steps_converges(
    fake_gateway: Gateway, round_: int
) -> None:
    killed = run_killed_create()
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    payment_id = payment_of("killed")
    assert types_of(payment_id) == ["payment.requested"]
    record = requested_record(payment_id)

    # The runner's catch-up, a second delivery of the same event (another
    # subscriber process, as after a crash) and the client's retry, at once.
    catch_up_result, _, retried = together(
        lambda: catch_up([AUTHORIZER]),
        lambda: PaymentAuthorizer().handle(record),
        lambda: create(Client(), 3_300, "killed"),
    )
    assert catch_up_result == {AUTHORIZER: 1}
    assert getattr(retried, "status_code", None) == 201
    assert types_of(payment_id) == ["payment.requested", "payment.authorized"]
    (decision,) = Log.objects.load(payment_id, start=1, limit=1)
    assert decision.idempotency_key == authorization_key(payment_id)
    # One, two or three deciders asked the gateway, all with the one key.
    assert 1 <= len(fake_gateway.keys) <= 3
    assert set(fake_gateway.keys) == {authorization_key(payment_id)}
    assert Log.objects.reduce(payment_id, Payment).aggregate.amount_approved == 3_300

    # Later runs find nothing to do.
    assert catch_up([AUTHORIZER]) == {AUTHORIZER: 0}
    assert types_of(payment_id) == ["payment.requested", "payment.authorized"]
