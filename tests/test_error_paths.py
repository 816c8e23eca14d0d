"""Errors that used to escape as the wrong kind (found while writing the docs)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse
from django.test import RequestFactory

from django_eventlog import (
    EventDecodingError,
    EventLogError,
    InvalidArgument,
    Log,
    http,
)
from django_eventlog.models import Event
from django_eventlog.signals import reduced
from django_eventlog.upcasting import decode_stored
from tests.domain import Account, Deposited, Opened


def plant_undecodable(log_id: uuid.UUID, index: int) -> None:
    # An event a changed class can no longer read: "amount" is not an int.
    table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (log_id, {connection.ops.quote_name('index')}, "
            "type, payload, recorded_at) VALUES (%s, %s, %s, %s, %s)",
            [
                log_id.hex if connection.vendor == "sqlite" else log_id,
                index,
                Deposited.type_name,
                json.dumps({"amount": "ten"}),
                connection.ops.adapt_datetimefield_value(django.utils.timezone.now()),
            ],
        )


# Payloads that no longer decode


@pytest.mark.django_db
@pytest.mark.parametrize("call", ["reduce", "areduce", "load", "aload"])
def test_an_undecodable_payload_is_an_event_decoding_error_naming_it(
    call: str,
) -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    plant_undecodable(state.log_id, 1)
    method = getattr(Log.objects, call)
    run = async_to_sync(method) if call.startswith("a") else method
    args = (state.log_id, Account) if "reduce" in call else (state.log_id,)
    with pytest.raises(EventDecodingError) as info:
        run(*args)
    error = info.value
    assert (error.type_name, error.log_id, error.index) == (
        Deposited.type_name,
        state.log_id,
        1,
    )
    assert isinstance(error, EventLogError)
    assert isinstance(error, ValueError)  # what msgspec raised before
    assert "amount" in error.reason
    assert "index 1" in str(error)


def test_decode_stored_raises_the_library_error() -> None:
    with pytest.raises(EventDecodingError) as info:
        decode_stored(Deposited.type_name, None, '{"amount": "ten"}')
    assert info.value.log_id is None
    with pytest.raises(EventDecodingError):
        decode_stored(Deposited.type_name, None, "not json")
    assert decode_stored(Deposited.type_name, None, '{"amount": 10}') == Deposited(10)


# The reduced signal


@pytest.fixture
def receivers() -> Iterator[list[Any]]:
    connected: list[Any] = []
    yield connected
    for receiver in connected:
        reduced.disconnect(receiver)


@pytest.mark.django_db
def test_a_failing_receiver_is_logged_and_does_not_break_reduce(
    receivers: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("metrics backend down")

    reduced.connect(broken)
    receivers.append(broken)
    state = Log.objects.create_log(Opened("ada"), kind="account")
    with caplog.at_level(logging.ERROR, logger="django_eventlog"):
        assert Log.objects.reduce(state.log_id, Account).aggregate.owner == "ada"
        reduction = async_to_sync(Log.objects.areduce)(state.log_id, Account)
    assert reduction.aggregate.owner == "ada"
    failures = [r for r in caplog.records if "reduced failed" in r.getMessage()]
    assert len(failures) == 2
    assert all("metrics backend down" in str(r.exc_info) for r in failures)


@pytest.mark.django_db(transaction=True)
def test_areduce_runs_a_receiver_that_queries_the_database(
    receivers: list[Any],
) -> None:
    seen: list[int] = []

    def counting(log_id: uuid.UUID, **kwargs: Any) -> None:
        seen.append(Event.objects.filter(log_id=log_id).count())  # sync ORM

    reduced.connect(counting)
    receivers.append(counting)
    state = Log.objects.create_log(Opened("ada"), kind="account")
    async_to_sync(Log.objects.areduce)(state.log_id, Account)
    assert seen == [1]


# json_api and if_match_state


def test_json_api_answers_django_404_and_403_as_problems(rf: RequestFactory) -> None:
    @http.json_api(methods=["get"])
    def missing(request: HttpRequest) -> HttpResponse:
        raise Http404("no payment 42")

    @http.json_api(methods=["get"])
    def forbidden(request: HttpRequest) -> HttpResponse:
        raise PermissionDenied

    for view, status in ((missing, 404), (forbidden, 403)):
        response = view(rf.get("/"))
        assert response.status_code == status
        assert response["Content-Type"] == "application/problem+json"
        assert json.loads(response.content)["status"] == status
    assert b"42" not in missing(rf.get("/")).content  # no internal detail


def test_if_match_state_refuses_a_malformed_log_id(rf: RequestFactory) -> None:
    request = rf.post("/", HTTP_IF_MATCH='"abc.1"')
    with pytest.raises(InvalidArgument, match="Malformed log id"):
        http.if_match_state(request, "not-a-uuid")

    @http.json_api(methods=["post"])
    def view(request: HttpRequest) -> HttpResponse:
        http.if_match_state(request, "not-a-uuid")
        return HttpResponse()

    assert view(request).status_code == 400
