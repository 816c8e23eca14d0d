"""Migrations whose effect is not a model change: checked on the database."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from django_eventlog.models import Event
from tests.conftest import ON_POSTGRESQL

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

BEFORE = ("django_eventlog", "0010_event_schema_version")
AFTER = ("django_eventlog", "0011_event_log_without_foreign_key")


def foreign_keys() -> list[str]:
    """The foreign keys from the events to the logs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'django_eventlog_event'::regclass "
            "AND confrelid = 'django_eventlog_log'::regclass AND contype = 'f'"
        )
        return [name for (name,) in cursor.fetchall()]


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def test_0011_drops_the_events_foreign_key_and_puts_it_back_backwards() -> None:
    assert foreign_keys() == []
    try:
        migrate(BEFORE)
        assert foreign_keys() == [
            "django_eventlog_event_log_id_7e5cdfe3_fk_django_eventlog_log_id"
        ]
    finally:
        migrate(AFTER)
    assert foreign_keys() == []
    # What the key refused, the no-gap trigger still refuses at the insert.
    refused = pytest.raises(IntegrityError, match="django_eventlog_event_no_gap")
    with refused, transaction.atomic():
        Event.objects.create(log_id=uuid.uuid4(), index=0, type="t", payload={})
    assert ON_POSTGRESQL
