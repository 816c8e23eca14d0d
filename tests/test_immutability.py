"""Events cannot be changed or deleted: by the model, the queryset or raw SQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.db.backends.base.operations import BaseDatabaseOperations

from django_eventlog import ImmutableEvent
from django_eventlog.models import Event, Log
from django_eventlog.testing import allow_flush
from tests.domain import Deposited, Opened


def make_log() -> Event:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    Log.objects.append(state, Deposited(5))
    return Event.objects.get(log_id=state.log_id, index=1)


@pytest.mark.django_db
def test_the_model_refuses_changes_and_deletes() -> None:
    event = make_log()
    event.payload = {"amount": 500}
    with pytest.raises(ImmutableEvent):
        event.save()
    with pytest.raises(ImmutableEvent):
        event.delete()
    with pytest.raises(ImmutableEvent):
        Event.objects.filter(pk=event.pk).update(payload={"amount": 500})
    with pytest.raises(ImmutableEvent):
        Event.objects.filter(pk=event.pk).delete()
    with pytest.raises(ImmutableEvent):
        event.log.events.all().delete()
    with pytest.raises(ImmutableEvent):
        Event.objects.bulk_update([event], ["payload"])
    assert Event.objects.get(pk=event.pk).payload == {"amount": 5}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE django_eventlog_event SET payload = '{\"amount\": 500}' WHERE id = %s",
        "UPDATE django_eventlog_event SET type = 'x'",
        "DELETE FROM django_eventlog_event WHERE id = %s",
        "DELETE FROM django_eventlog_event WHERE id > 0",
    ],
)
def test_a_database_trigger_refuses_raw_updates_and_deletes(sql: str) -> None:
    event = make_log()
    params = [event.pk] if "%s" in sql else []
    with (
        pytest.raises(DatabaseError, match="events are immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
    assert Event.objects.get(pk=event.pk).payload == {"amount": 5}


@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_the_tables() -> None:
    make_log()
    call_command("flush", interactive=False, verbosity=0)
    assert not Event.objects.exists()
    assert not Log.objects.exists()
    # And the guard is back on afterwards.
    event = make_log()
    with (
        pytest.raises(DatabaseError, match="events are immutable"),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM django_eventlog_event WHERE id = %s", [event.pk])


@pytest.mark.django_db(transaction=True)
def test_flush_is_refused_without_the_test_helpers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_log()
    # Django's own flush, as a project without allow_flush() runs it.
    allowed: Any = BaseDatabaseOperations.execute_sql_flush
    monkeypatch.setattr(
        BaseDatabaseOperations, "execute_sql_flush", allowed.__wrapped__
    )
    with pytest.raises(CommandError, match="couldn't be flushed") as caught:
        call_command("flush", interactive=False, verbosity=0)
    # What the database said.
    assert isinstance(caught.value.__cause__, DatabaseError)
    assert re.search(r"immutable|cannot be emptied", str(caught.value.__cause__))
    assert (Log.objects.count(), Event.objects.count()) == (1, 2)


def test_allow_flush_wraps_the_flush_once() -> None:
    flush = BaseDatabaseOperations.execute_sql_flush
    allow_flush()
    assert BaseDatabaseOperations.execute_sql_flush is flush
