"""Each line of "What the database guarantees", attacked from outside the library.

Every attack goes around ``Log.objects``: the ORM's ``create``,
``bulk_create``, ``update`` and ``delete`` (the base ``QuerySet`` methods,
past the models' own refusals), ``_raw_delete``, and raw SQL on a second
connection that Django did not open (psycopg on PostgreSQL; on SQLite,
Python's ``sqlite3`` with foreign keys off, as any program gets it). The
database must refuse each one, and nothing must change. The same tests run
on SQLite and PostgreSQL.

Each test's docstring is the rule it attacks, in the words of "What the
database guarantees" in README.md and docs/reliability.md
(``tests/test_docs_complete.py`` holds them to it).
"""

from __future__ import annotations

import functools
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, models, transaction

from django_eventlog import ImmutableEvent, ImmutableLog
from django_eventlog.models import Event, Log
from tests.domain import Deposited, Opened

pytestmark = pytest.mark.django_db(transaction=True)

# What each refusal says: the trigger's or constraint's own words.
UNIQUE = r"(?i)unique|duplicate key"
NO_GAP = "django_eventlog_event_no_gap"
CHECK = r"(?i)check constraint|django_eventlog_event_index_gte_0"
EVENTS_IMMUTABLE = "events are immutable"
LOGS_IMMUTABLE = "logs are immutable"
# A program outside Django lacks the SQL function SQLite's delete triggers
# call: its DELETE fails on that instead.
DELETE_OUTSIDE = r"immutable|no such function: django_eventlog_events_locked"


def account(deposits: int = 1) -> uuid.UUID:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    for amount in range(1, deposits + 1):
        state = Log.objects.append(state, Deposited(amount))
    return state.log_id


def snapshot() -> list[tuple[Any, ...]]:
    """Every log and event as stored."""
    logs = list(Log.objects.order_by("pk").values_list("pk", "kind", "created_at"))
    events = list(
        Event.objects.order_by("pk").values_list(
            "pk", "log_id", "index", "type", "payload", "recorded_at", "idempotency_key"
        )
    )
    return [*logs, *events]


def stored(log_id: uuid.UUID) -> Any:
    """A log id as the tables hold it."""
    return log_id if connection.vendor == "postgresql" else log_id.hex


class Outside:
    """A connection to the test database that Django did not open."""

    def __init__(self) -> None:
        settings = connection.settings_dict
        self.vendor = connection.vendor
        if self.vendor == "postgresql":
            import psycopg

            self.raw: Any = psycopg.connect(
                dbname=settings["NAME"],
                host=settings["HOST"] or None,
                port=settings["PORT"] or None,
                user=settings["USER"] or None,
                password=settings["PASSWORD"] or None,
                autocommit=True,
            )
        else:
            name = str(settings["NAME"])
            self.raw = sqlite3.connect(
                name, uri=name.startswith("file:"), isolation_level=None
            )
            # What any sqlite3 program gets unless it asks: no foreign keys.
            assert self.raw.execute("PRAGMA foreign_keys").fetchone() == (0,)

    def execute(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
        if self.vendor == "sqlite":
            sql = sql.replace("%s", "?")
        self.raw.execute(sql, params)

    def close(self) -> None:
        self.raw.close()


@pytest.fixture
def outside() -> Iterator[Outside]:
    second = Outside()
    yield second
    second.close()


def refused(
    attack: Callable[[], object], match: str, error: type[Exception] = DatabaseError
) -> None:
    """The attack raises ``error`` matching ``match`` and changes nothing."""
    before = snapshot()
    with pytest.raises(error, match=match):
        attack()
    assert snapshot() == before


def refused_outside(outside: Outside, sql: str, params: Any, match: str) -> None:
    before = snapshot()
    with pytest.raises(Exception, match=match) as caught:
        outside.execute(sql, params)
    # The driver's own error, not something raised on the way there.
    assert type(caught.value).__module__.split(".")[0] in {"psycopg", "sqlite3"}
    assert snapshot() == before


def event(log_id: uuid.UUID, index: int, **fields: Any) -> Event:
    return Event(
        log_id=log_id,
        index=index,
        type=fields.pop("type", "tests.deposited"),
        payload=fields.pop("payload", {"amount": 1}),
        **fields,
    )


INSERT = (
    "INSERT INTO django_eventlog_event "
    '(log_id, "index", type, payload, recorded_at, idempotency_key) '
    "VALUES (%s, %s, 'tests.deposited', '{\"amount\": 1}', "
    "'2026-01-01 00:00:00', %s)"
)


def test_one_event_per_index_orm() -> None:
    """One event per index of a log."""
    log_id = account(1)
    refused(lambda: event(log_id, 1).save(), UNIQUE, IntegrityError)
    refused(lambda: Event.objects.create(**vars_of(event(log_id, 0))), UNIQUE)
    refused(lambda: Event.objects.bulk_create([event(log_id, 1)]), UNIQUE)


def test_one_event_per_index_outside(outside: Outside) -> None:
    """One event per index of a log."""
    log_id = account(1)
    refused_outside(outside, INSERT, [stored(log_id), 1, None], UNIQUE)


def test_no_gap_orm() -> None:
    """An event is stored only at index 0 of an existing log, or right after the
    event before it in the same log.
    """
    log_id = account(0)
    refused(lambda: Event.objects.create(**vars_of(event(log_id, 5))), NO_GAP)
    refused(lambda: Event.objects.bulk_create([event(log_id, 2)]), NO_GAP)
    # A batch with a hole is refused whole.
    batch = [event(log_id, 1), event(log_id, 3)]
    refused(lambda: Event.objects.bulk_create(batch), NO_GAP)
    # Contiguous rows in one statement are not a gap.
    Event.objects.bulk_create([event(log_id, 1), event(log_id, 2)])
    indices = Event.objects.filter(log_id=log_id).order_by("index")
    assert list(indices.values_list("index", flat=True)) == [0, 1, 2]


def test_no_event_0_without_its_log_orm() -> None:
    """An event is stored only at index 0 of an existing log, or right after the
    event before it in the same log.
    """
    missing = uuid.uuid4()
    before = snapshot()
    # Refused at the INSERT, inside the transaction, not only at its commit
    # (when the deferred foreign key is checked).
    with transaction.atomic():
        with pytest.raises(IntegrityError, match=NO_GAP), transaction.atomic():
            Event.objects.create(**vars_of(event(missing, 0)))
        assert connection.in_atomic_block
    assert snapshot() == before


def test_no_gap_outside(outside: Outside) -> None:
    """An event is stored only at index 0 of an existing log, or right after the
    event before it in the same log.
    """
    log_id = account(0)
    refused_outside(outside, INSERT, [stored(log_id), 2, None], NO_GAP)
    missing = uuid.uuid4()
    refused_outside(outside, INSERT, [stored(missing), 0, None], NO_GAP)
    refused_outside(outside, INSERT, [stored(missing), 1, None], NO_GAP)


def test_a_key_once_orm() -> None:
    """An idempotency key is used once in the whole store."""
    state = Log.objects.create_log(Opened("ada"), kind="account", idempotency_key="k")
    other = account(0)
    refused(
        lambda: Event.objects.create(**vars_of(event(other, 1, idempotency_key="k"))),
        UNIQUE,
    )
    assert state.next_index == 1


def test_a_key_once_outside(outside: Outside) -> None:
    """An idempotency key is used once in the whole store."""
    Log.objects.create_log(Opened("ada"), kind="account", idempotency_key="k")
    other = account(0)
    refused_outside(outside, INSERT, [stored(other), 1, "k"], UNIQUE)


def test_no_negative_index_orm() -> None:
    """No event has a negative index."""
    log_id = account(0)
    refused(lambda: Event.objects.create(**vars_of(event(log_id, -1))), CHECK)


def test_no_negative_index_outside(outside: Outside) -> None:
    """No event has a negative index."""
    log_id = account(0)
    refused_outside(outside, INSERT, [stored(log_id), -1, None], CHECK)


def test_events_are_immutable_orm() -> None:
    """Events are never updated, deleted or emptied."""
    log_id = account(1)
    events = Event.objects.filter(log_id=log_id)
    # The model's own refusals first; then past them, to the database.
    with pytest.raises(ImmutableEvent):
        events.update(type="x")
    with pytest.raises(ImmutableEvent):
        events.delete()
    refused(lambda: models.QuerySet.update(events, type="x"), EVENTS_IMMUTABLE)
    refused(lambda: models.QuerySet.delete(events), EVENTS_IMMUTABLE)
    refused(lambda: events._raw_delete(events.db), EVENTS_IMMUTABLE)
    refused(lambda: Event.objects.all()._raw_delete("default"), EVENTS_IMMUTABLE)
    first = events.get(index=0)
    first.payload = {"name": "eve"}
    refused(lambda: models.Model.save(first), EVENTS_IMMUTABLE)
    refused(lambda: models.Model.delete(first), EVENTS_IMMUTABLE)


def test_events_are_immutable_outside(outside: Outside) -> None:
    """Events are never updated, deleted or emptied."""
    log_id = account(1)
    table = "django_eventlog_event"
    refused_outside(
        outside,
        f"UPDATE {table} SET type = 'x' WHERE log_id = %s",
        [stored(log_id)],
        EVENTS_IMMUTABLE,
    )
    refused_outside(
        outside, f'UPDATE {table} SET "index" = "index" + 10', [], EVENTS_IMMUTABLE
    )
    refused_outside(
        outside,
        f"DELETE FROM {table} WHERE log_id = %s",
        [stored(log_id)],
        DELETE_OUTSIDE,
    )
    refused_outside(outside, f"DELETE FROM {table}", [], DELETE_OUTSIDE)


def test_logs_are_immutable_orm() -> None:
    """Logs are never updated, deleted or emptied."""
    log_id = account(1)
    logs = Log.objects.filter(pk=log_id)
    with pytest.raises(ImmutableLog):
        logs.update(kind="x")
    with pytest.raises(ImmutableLog):
        logs.delete()
    log = logs.get()
    log.kind = "x"
    with pytest.raises(ImmutableLog):
        log.save()
    with pytest.raises(ImmutableLog):
        log.delete()
    changes: list[dict[str, Any]] = [
        {"kind": "x"},
        {"created_at": log.created_at.replace(year=2000)},
    ]
    for change in changes:
        refused(
            functools.partial(models.QuerySet.update, logs, **change), LOGS_IMMUTABLE
        )
    refused(lambda: models.Model.save(log), LOGS_IMMUTABLE)
    refused(lambda: logs._raw_delete(logs.db), LOGS_IMMUTABLE)
    refused(lambda: Log.objects.all()._raw_delete("default"), LOGS_IMMUTABLE)
    # A log without events is a log too.
    empty = Log.objects.create(kind="account")
    refused(lambda: models.Model.delete(empty), LOGS_IMMUTABLE)


def test_logs_are_immutable_outside(outside: Outside) -> None:
    """Logs are never updated, deleted or emptied."""
    log_id = account(1)
    table = "django_eventlog_log"
    for sql in (
        f"UPDATE {table} SET kind = 'x' WHERE id = %s",
        f"UPDATE {table} SET created_at = '2000-01-01 00:00:00' WHERE id = %s",
        f"UPDATE {table} SET id = %s",
    ):
        params = [stored(log_id)] if "WHERE" in sql else [stored(uuid.uuid4())]
        refused_outside(outside, sql, params, LOGS_IMMUTABLE)
    refused_outside(
        outside, f"DELETE FROM {table} WHERE id = %s", [stored(log_id)], DELETE_OUTSIDE
    )


def test_the_tables_cannot_be_emptied_outside(outside: Outside) -> None:
    """Events are never updated, deleted or emptied. Logs are never updated, deleted
    or emptied.
    """
    account(1)
    if connection.vendor == "postgresql":
        for table in ("django_eventlog_event", "django_eventlog_log"):
            refused_outside(
                outside, f"TRUNCATE {table} CASCADE", [], "cannot be emptied"
            )
        # Django's flush names every table in one statement.
        refused_outside(
            outside,
            "TRUNCATE django_eventlog_event, django_eventlog_log",
            [],
            "cannot be emptied",
        )
    else:
        refused_outside(
            outside, "DELETE FROM django_eventlog_event", [], DELETE_OUTSIDE
        )
        refused_outside(outside, "DELETE FROM django_eventlog_log", [], DELETE_OUTSIDE)


def vars_of(instance: Event) -> dict[str, Any]:
    """An unsaved event's fields, as ``create()`` keyword arguments."""
    return {
        field.attname: getattr(instance, field.attname)
        for field in Event._meta.concrete_fields
        if not field.primary_key
    }
