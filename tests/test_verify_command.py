"""manage.py eventlog_verify: contiguous indices, decodable events, no empty logs.

Problems are planted with raw SQL under the store's triggers, switched
off inside the test's transaction (see ``triggers_off``), so nothing planted
outlives its test: the last tests check that.
"""

from __future__ import annotations

import importlib
import io
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction

from django_eventlog import DomainEvent, LogState, upcaster
from django_eventlog.management.commands import eventlog_verify
from django_eventlog.models import Event, Log
from tests.domain import Deposited, Opened
from tests.versions import stored_versions

pytestmark = pytest.mark.django_db

EVENTS = "django_eventlog.event"
#: Each trigger the migrations create, with its table and its migration.
SQLITE_TRIGGERS = {
    "django_eventlog_event_no_update": ("django_eventlog_event", "0002"),
    "django_eventlog_event_no_delete": ("django_eventlog_event", "0002"),
    "django_eventlog_event_no_gap": ("django_eventlog_event", "0005"),
    "django_eventlog_log_no_update": ("django_eventlog_log", "0005"),
    "django_eventlog_log_no_delete": ("django_eventlog_log", "0005"),
}
PG_TRIGGERS = {
    "django_eventlog_event_immutable": ("django_eventlog_event", "0002"),
    "django_eventlog_event_no_gap": ("django_eventlog_event", "0005"),
    "django_eventlog_event_no_truncate": ("django_eventlog_event", "0005"),
    "django_eventlog_log_immutable": ("django_eventlog_log", "0005"),
    "django_eventlog_log_no_truncate": ("django_eventlog_log", "0005"),
}
PG_TRIGGER = "django_eventlog_event_immutable"
MIGRATIONS = {
    "0002": "django_eventlog.migrations.0002_immutable_events",
    "0005": "django_eventlog.migrations.0005_guards_for_every_writer",
}


class Terminal(io.StringIO):
    """An output stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def account(deposits: int, kind: str = "account") -> uuid.UUID:
    """Create a log: Opened, then ``deposits`` Deposited events."""
    state = Log.objects.create_log(Opened("ada"), kind=kind)
    for amount in range(1, deposits + 1):
        state = Log.objects.append(state, Deposited(amount))
    return state.log_id


def event_pk(log_id: uuid.UUID, index: int) -> int:
    return Event.objects.get(log_id=log_id, index=index).pk


@contextmanager
def triggers_off() -> Iterator[None]:
    """Let raw UPDATE and DELETE through, within the test's transaction only.

    PostgreSQL: ``SET LOCAL session_replication_role = replica`` skips user
    triggers until it is set back (or the transaction ends). SQLite: drop the
    triggers and create them again; SQLite DDL is transactional, so the
    test's rollback would restore them even if this did not
    (``test_a_rollback_restores_dropped_sqlite_triggers``).
    """
    assert connection.in_atomic_block, "plant only inside the test's transaction"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        else:
            for name in SQLITE_TRIGGERS:
                cursor.execute(f"DROP TRIGGER {name}")
        try:
            yield
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL session_replication_role = origin")
            else:
                for module in MIGRATIONS.values():
                    migration = importlib.import_module(module)
                    for sql in migration.FORWARDS["sqlite"]:
                        cursor.execute(sql)


def plant(sql: str, *params: Any) -> None:
    """Run ``sql`` on the events table with the triggers off."""
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        assert cursor.rowcount == 1


def delete_event(log_id: uuid.UUID, index: int) -> None:
    plant("DELETE FROM django_eventlog_event WHERE id = %s", event_pk(log_id, index))


def set_type(log_id: uuid.UUID, index: int, type_name: str) -> None:
    plant(
        "UPDATE django_eventlog_event SET type = %s WHERE id = %s",
        type_name,
        event_pk(log_id, index),
    )


def set_payload(log_id: uuid.UUID, index: int, payload: str) -> None:
    value = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    plant(
        f"UPDATE django_eventlog_event SET payload = {value} WHERE id = %s",
        payload,
        event_pk(log_id, index),
    )


TABLE_TITLE = "Events by stored type and schema version:"


def outside_table(stdout: str) -> list[str]:
    """The lines of ``stdout`` without the decoding table (and its failures)."""
    lines = stdout.splitlines()
    if TABLE_TITLE not in lines:
        return lines
    start = lines.index(TABLE_TITLE)
    end = next(i for i, line in enumerate(lines) if line.startswith("Checked "))
    return lines[:start] + lines[end:]


def table(stdout: str) -> list[tuple[str, ...]]:
    """The decoding table's rows under its header, as cells."""
    lines = stdout.splitlines()
    start = lines.index(TABLE_TITLE)
    header = ["type", "version", "decoded", "failed", "read", "as"]
    assert lines[start + 1].split() == header
    rows = []
    for line in lines[start + 2 :]:
        if line.startswith(("'", "  ", "Checked ")):
            break
        rows.append(tuple(re.split(r" {2,}", line)))
    return rows


def failures(stdout: str) -> list[str]:
    """The lines under the table that tell each type and version's failures."""
    lines = stdout.splitlines()
    start = lines.index(TABLE_TITLE) + 2 + len(table(stdout))
    end = next(i for i, line in enumerate(lines) if line.startswith("Checked "))
    return lines[start:end]


def verify(*args: str, **options: Any) -> tuple[str, str]:
    """Run the command, which must pass; return its stdout and stderr."""
    stdout = options.pop("stdout", io.StringIO())
    stderr = options.pop("stderr", io.StringIO())
    call_command("eventlog_verify", *args, stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue(), stderr.getvalue()


def verify_fails(problems: int, *args: str, **options: Any) -> tuple[str, str]:
    """Run the command, which must find ``problems``; return stdout and stderr."""
    stdout = options.pop("stdout", io.StringIO())
    stderr = options.pop("stderr", io.StringIO())
    with pytest.raises(CommandError) as raised:
        call_command("eventlog_verify", *args, stdout=stdout, stderr=stderr, **options)
    assert raised.value.returncode == 1
    noun = "problem" if problems == 1 else "problems"
    assert str(raised.value) == f"{problems} {noun} found in the event store."
    return stdout.getvalue(), stderr.getvalue()


# A clean store.


def test_a_clean_store_passes_with_its_counts() -> None:
    account(0)
    account(3)
    account(1, kind="savings")
    stdout, stderr = verify()
    assert stdout.splitlines() == [
        "Events by stored type and schema version:",
        "type             version  decoded  failed  read as",
        "tests.deposited        1        4       0  tests.domain.Deposited version 1",
        "tests.opened           1        3       0  tests.domain.Opened version 1",
        "Checked 3 logs and 7 events: 0 problems.",
    ]
    assert stderr == ""


def test_an_empty_store_passes() -> None:
    assert verify() == ("Checked 0 logs and 0 events: 0 problems.\n", "")


def test_database_option_names_the_alias() -> None:
    account(2)
    assert outside_table(verify("--database", "default")[0]) == [
        "Checked 1 log and 3 events: 0 problems."
    ]


# Planted problems.


def test_a_gap_is_reported_at_the_index_after_it() -> None:
    clean, broken = account(2), account(4)
    delete_event(broken, 2)
    stdout, _ = verify_fails(1)
    assert outside_table(stdout) == [
        f"log {broken} index 3: gap: index 2 is missing",
        "Checked 2 logs and 7 events: 1 problem.",
    ]
    assert str(clean) not in stdout


def test_a_log_not_starting_at_index_0_is_reported() -> None:
    headless = account(2)
    delete_event(headless, 0)
    # Rows planted past the no-gap trigger: a log whose events start at index 2.
    planted = Log.objects.create(kind="account")
    with triggers_off():
        for index in (2, 3):
            Event.objects.create(
                log=planted,
                index=index,
                type="tests.deposited",
                payload={"amount": index},
                # Past the trigger, a writer gives the feed position itself.
                txid=0,
            )
    stdout, _ = verify_fails(2)
    assert set(outside_table(stdout)[:-1]) == {
        f"log {headless} index 1: the log starts at index 1, not 0: index 0 is missing",
        f"log {planted.pk} index 2: the log starts at index 2, not 0: "
        "indices 0 to 1 are missing",
    }
    assert outside_table(stdout)[-1] == "Checked 2 logs and 4 events: 2 problems."


def test_an_unknown_type_is_reported_with_its_name() -> None:
    log_id = account(2)
    set_type(log_id, 1, "tests.withdrawn")
    stdout, _ = verify_fails(1)
    assert outside_table(stdout) == [
        f"log {log_id} index 1: unknown event type 'tests.withdrawn': no "
        "imported DomainEvent class claims it",
        "Checked 1 log and 3 events: 1 problem.",
        "Types no imported DomainEvent class claims: 'tests.withdrawn' (1). "
        "Import the modules that define them in your AppConfig.ready(), so "
        "that every process registers them; or restore the classes (or their "
        "type_name).",
    ]
    assert table(stdout) == [
        ("tests.deposited", "1", "1", "0", "tests.domain.Deposited version 1"),
        ("tests.opened", "1", "1", "0", "tests.domain.Opened version 1"),
        (
            "tests.withdrawn",
            "1",
            "0",
            "1",
            "no imported DomainEvent class claims it",
        ),
    ]
    assert failures(stdout) == [
        "'tests.withdrawn' version 1: 1 failed. First failure: no imported "
        "DomainEvent class claims it",
        f"  log {log_id} index 1",
    ]


@pytest.mark.parametrize(
    ("index", "payload", "error"),
    [
        (1, '{"amount": "five"}', "Expected `int`, got `str` - at `$.amount`"),
        (0, '{"name": "ada"}', "Object missing required field `owner`"),
        (2, "[1, 2]", "Expected `object`, got `array`"),
    ],
)
def test_a_payload_that_no_longer_decodes_is_reported(
    index: int, payload: str, error: str
) -> None:
    log_id = account(2)
    set_payload(log_id, index, payload)
    stdout, _ = verify_fails(1)
    cls = Opened if index == 0 else Deposited
    assert outside_table(stdout) == [
        f"log {log_id} index {index}: {cls.type_name!r} payload does not decode "
        f"into tests.domain.{cls.__qualname__}: {error}",
        "Checked 1 log and 3 events: 1 problem.",
    ]
    # (decoded, failed) of each type.
    deposited, opened = ((2, 0), (0, 1)) if index == 0 else ((1, 1), (1, 0))
    assert [row[1:4] for row in table(stdout)] == [
        ("1", str(deposited[0]), str(deposited[1])),
        ("1", str(opened[0]), str(opened[1])),
    ]
    assert failures(stdout) == [
        f"{cls.type_name!r} version 1: 1 failed. First failure: {error}",
        f"  log {log_id} index {index}",
    ]


def test_a_log_without_events_is_reported() -> None:
    account(1)
    empty = Log.objects.create(kind="savings")
    stdout, _ = verify_fails(1)
    assert outside_table(stdout) == [
        f"log {empty.pk}: 'savings' log has no events",
        "Checked 2 logs and 2 events: 1 problem.",
    ]


def test_a_duplicate_index_is_reported_where_the_constraint_is_gone() -> None:
    log_id = account(2)
    duplicate = {"log_id": log_id, "index": 1, "type": "tests.deposited"}
    if connection.vendor == "sqlite":
        # The UNIQUE constraint is part of the table there: no way around it.
        with pytest.raises(IntegrityError), transaction.atomic():
            Event.objects.create(**duplicate, payload={"amount": 1})
        assert outside_table(verify()[0]) == ["Checked 1 log and 3 events: 0 problems."]
        return
    with connection.cursor() as cursor:
        # ALTER TABLE refuses to run with deferred foreign key checks pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE django_eventlog_event "
            "DROP CONSTRAINT django_eventlog_event_log_index_uniq"
        )
    Event.objects.create(**duplicate, payload={"amount": 1})
    stdout, _ = verify_fails(1)
    assert outside_table(stdout) == [
        f"log {log_id} index 1: duplicate index 1",
        "Checked 1 log and 4 events: 1 problem.",
    ]


def test_every_problem_is_reported_across_chunks(settings: Any) -> None:
    """Several problems in several logs, streamed 3 rows at a time."""
    settings.EVENTLOG_CHUNK_SIZE = 3
    logs = [account(deposits) for deposits in (4, 0, 5, 2, 3)]
    delete_event(logs[0], 1)
    delete_event(logs[0], 3)
    set_type(logs[0], 4, "tests.gone")
    set_payload(logs[2], 5, '{"amount": null}')
    delete_event(logs[4], 0)
    empty = Log.objects.create(kind="account")
    stdout, _ = verify_fails(6)
    lines = outside_table(stdout)
    assert set(lines[:6]) == {
        f"log {logs[0]} index 2: gap: index 1 is missing",
        f"log {logs[0]} index 4: gap: index 3 is missing",
        f"log {logs[0]} index 4: unknown event type 'tests.gone': no imported "
        "DomainEvent class claims it",
        f"log {logs[2]} index 5: 'tests.deposited' payload does not decode into "
        "tests.domain.Deposited: Expected `int`, got `null` - at `$.amount`",
        f"log {logs[4]} index 1: the log starts at index 1, not 0: index 0 is missing",
        f"log {empty.pk}: 'account' log has no events",
    }
    assert lines[6] == "Checked 6 logs and 16 events: 6 problems."
    # Within a log, problems come in index order.
    assert lines.index(f"log {logs[0]} index 2: gap: index 1 is missing") < (
        lines.index(f"log {logs[0]} index 4: gap: index 3 is missing")
    )


def test_verbosity_0_prints_only_the_problems() -> None:
    account(2)
    empty = Log.objects.create(kind="account")
    stdout, stderr = verify_fails(1, verbosity=0)
    assert (stdout, stderr) == (f"log {empty.pk}: 'account' log has no events\n", "")


# Decoding per type and stored schema version.

#: The fields of the test's Shipped event at each schema version: v2 renames
#: ``weight`` to ``grams``, v3 adds ``carrier`` without a default.
SHIPPED_FIELDS: dict[int, dict[str, type]] = {
    1: {"weight": int},
    2: {"grams": int},
    3: {"grams": int, "carrier": str},
}
SHIPPED = f"{__name__}.Shipped"


def shipped_class(
    name: str, version: int, aliases: tuple[str, ...] = ()
) -> type[DomainEvent]:
    """Define the Shipped event class as a release at ``version`` has it.

    Each definition has the same module and qualname, so it replaces the
    one before in the registry, as deploying a newer release does; only one
    Shipped class is registered at a time, whatever the tests ran before.
    """
    namespace = {
        "__module__": __name__,
        "__qualname__": "Shipped",
        "__annotations__": dict(SHIPPED_FIELDS[version]),
        "type_name": name,
        "schema_version": version,
        "aliases": aliases,
    }
    return type("Shipped", (DomainEvent,), namespace)


@pytest.fixture(autouse=True)
def _shipped_back_at_version_1() -> Iterator[None]:
    """Leave the registry's Shipped class at version 1, under a name of its
    own: no later test finds a class of ours that needs upcasters."""
    yield
    shipped_class("verify.shipped.idle", 1)


def ship(cls: type[DomainEvent], *values: Any, to: LogState | None = None) -> LogState:
    """Write a ``cls`` event per value, appended ``to`` a log or in a new one."""
    fields = list(SHIPPED_FIELDS[cls.schema_version])
    events = [cls(**dict(zip(fields, value, strict=True))) for value in values]
    if to is None:
        return Log.objects.create_log(events, kind="parcel")
    return Log.objects.append(to, events)


def register_upcasters(name: str, *steps: int) -> None:
    """Register the upcasters of ``name`` from each version in ``steps``
    (type names are unique per test: the upcaster registry is global)."""
    if 1 in steps:

        @upcaster(name, from_version=1)
        def weight_to_grams(data: dict[str, Any]) -> dict[str, Any]:
            return {"grams": data["weight"]}

    if 2 in steps:

        @upcaster(name, from_version=2)
        def add_carrier(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "carrier": "post"}


def test_events_stored_at_every_version_decode_through_the_upcasters() -> None:
    name = "verify.shipped.chain"
    state = ship(shipped_class(name, 1), (100,), (200,))
    state = ship(shipped_class(name, 2), (300,), to=state)
    log_id = ship(
        shipped_class(name, 3),
        (400, "van"),
        (500, "bike"),
        (600, "post"),
        to=state,
    ).log_id
    assert stored_versions(log_id) == [None, None, 2, 3, 3, 3]
    register_upcasters(name, 1, 2)
    stdout, stderr = verify()
    assert stdout.splitlines() == [
        TABLE_TITLE,
        "type                  version  decoded  failed  read as",
        f"verify.shipped.chain        1        2       0  {SHIPPED} version 3",
        f"verify.shipped.chain        2        1       0  {SHIPPED} version 3",
        f"verify.shipped.chain        3        3       0  {SHIPPED} version 3",
        "Checked 1 log and 6 events: 0 problems.",
    ]
    assert stderr == ""


def test_a_missing_upcaster_fails_the_versions_before_it() -> None:
    name = "verify.shipped.gap"
    state = ship(shipped_class(name, 1), (100,))
    state = ship(shipped_class(name, 2), (200,), (300,), to=state)
    log_id = ship(shipped_class(name, 3), (400, "van"), to=state).log_id
    register_upcasters(name, 1)  # and none from version 2
    stdout, _ = verify_fails(3)
    missing = (
        "no upcaster from version 2 to 3 is registered for "
        "'verify.shipped.gap' (the class is at version 3)"
    )
    assert outside_table(stdout) == [
        f"log {log_id} index 0: 'verify.shipped.gap' payload does not decode "
        f"into {SHIPPED}: {missing}",
        f"log {log_id} index 1: 'verify.shipped.gap' payload stored at version 2 "
        f"does not decode into {SHIPPED}: {missing}",
        f"log {log_id} index 2: 'verify.shipped.gap' payload stored at version 2 "
        f"does not decode into {SHIPPED}: {missing}",
        "Checked 1 log and 4 events: 3 problems.",
    ]
    assert [row[:4] for row in table(stdout)] == [
        ("verify.shipped.gap", "1", "0", "1"),
        ("verify.shipped.gap", "2", "0", "2"),
        ("verify.shipped.gap", "3", "1", "0"),
    ]
    assert failures(stdout) == [
        f"'verify.shipped.gap' version 1: 1 failed. First failure: {missing}",
        f"  log {log_id} index 0",
        f"'verify.shipped.gap' version 2: 2 failed. First failure: {missing}",
        f"  log {log_id} index 1",
        f"  log {log_id} index 2",
    ]


def test_an_upcaster_that_raises_is_named() -> None:
    name = "verify.shipped.raises"
    log_id = ship(shipped_class(name, 1), (100,), (-5,), (200,)).log_id
    shipped_class(name, 2)

    @upcaster(name, from_version=1)
    def grams_of_positive_weight(data: dict[str, Any]) -> dict[str, Any]:
        if data["weight"] < 0:
            raise ValueError(f"negative weight {data['weight']}")
        return {"grams": data["weight"]}

    stdout, _ = verify_fails(1)
    where = (
        f"{__name__}.test_an_upcaster_that_raises_is_named.<locals>."
        "grams_of_positive_weight"
    )
    reason = (
        f"the upcaster {where} from version 1 raised ValueError('negative weight -5')"
    )
    assert outside_table(stdout)[0] == (
        f"log {log_id} index 1: 'verify.shipped.raises' payload does not decode "
        f"into {SHIPPED}: {reason}"
    )
    assert table(stdout) == [
        ("verify.shipped.raises", "1", "2", "1", f"{SHIPPED} version 2"),
    ]
    assert failures(stdout) == [
        f"'verify.shipped.raises' version 1: 1 failed. First failure: {reason}",
        f"  log {log_id} index 1",
    ]


def test_an_upcast_payload_that_does_not_fit_its_class_fails() -> None:
    name = "verify.shipped.misfit"
    log_id = ship(shipped_class(name, 2), (100,)).log_id
    shipped_class(name, 3)

    @upcaster(name, from_version=2)
    def forgets_the_carrier(data: dict[str, Any]) -> dict[str, Any]:
        return data

    stdout, _ = verify_fails(1)
    assert failures(stdout) == [
        "'verify.shipped.misfit' version 2: 1 failed. First failure: Object "
        "missing required field `carrier` (upcast from version 2 to 3)",
        f"  log {log_id} index 0",
    ]


def test_an_event_newer_than_its_class_fails() -> None:
    """A row written by a newer release, inserted as one would be."""
    name = "verify.shipped.newer"
    log_id = ship(shipped_class(name, 3), (100, "van")).log_id
    Event.objects.create(
        log_id=log_id,
        index=1,
        type=name,
        payload={"grams": 5, "carrier": "van", "insured": True},
        schema_version=4,
    )
    assert stored_versions(log_id) == [3, 4]
    stdout, _ = verify_fails(1)
    assert table(stdout) == [
        (name, "3", "1", "0", f"{SHIPPED} version 3"),
        (name, "4", "0", "1", f"{SHIPPED} version 3"),
    ]
    assert failures(stdout) == [
        f"{name!r} version 4: 1 failed. First failure: version 4 is newer than "
        "the class's schema_version 3 (written by a newer release?)",
        f"  log {log_id} index 1",
    ]


def test_events_stored_under_an_alias_are_read_as_the_class() -> None:
    """Stored under the old name at version 1; the renamed class is at
    version 2, with its upcaster under the new name."""
    old, new = "verify.parcel_sent", "verify.shipped.renamed"
    state = ship(shipped_class(old, 1), (100,), (200,))
    ship(shipped_class(new, 2, aliases=(old,)), (300,), to=state)
    register_upcasters(new, 1)
    stdout, _ = verify()
    assert table(stdout) == [
        (old, "1", "2", "0", f"{SHIPPED} version 2 (an alias: read as {new!r})"),
        (new, "2", "1", "0", f"{SHIPPED} version 2"),
    ]
    assert outside_table(stdout) == ["Checked 1 log and 3 events: 0 problems."]


def test_an_unknown_type_is_a_row_without_a_class() -> None:
    name = "verify.shipped.forgotten"
    log_id = ship(shipped_class(name, 2), (100,), (200,)).log_id
    shipped_class("verify.shipped.other", 2)  # the class no longer claims it
    stdout, _ = verify_fails(2)
    assert table(stdout) == [
        (name, "2", "0", "2", "no imported DomainEvent class claims it"),
    ]
    assert failures(stdout)[0] == (
        f"{name!r} version 2: 2 failed. First failure: no imported "
        "DomainEvent class claims it"
    )
    assert outside_table(stdout)[-1] == (
        f"Types no imported DomainEvent class claims: {name!r} (2). Import the "
        "modules that define them in your AppConfig.ready(), so that every "
        "process registers them; or restore the classes (or their type_name)."
    )
    assert outside_table(stdout)[0] == (
        f"log {log_id} index 0: unknown event type {name!r}: no imported "
        "DomainEvent class claims it"
    )


def test_only_the_first_failures_of_a_version_are_listed_all_are_counted() -> None:
    name = "verify.shipped.many"
    log_id = ship(shipped_class(name, 1), *[(grams,) for grams in range(12)]).log_id
    other = account(1)
    delete_event(other, 0)  # an index problem is listed whatever the count
    shipped_class(name, 2)  # and no upcaster
    stdout, _ = verify_fails(13)
    missing = (
        f"no upcaster from version 1 to 2 is registered for {name!r} (the class "
        "is at version 2)"
    )
    assert set(outside_table(stdout)) == {
        *(
            f"log {log_id} index {index}: {name!r} payload does not decode into "
            f"{SHIPPED}: {missing}"
            for index in range(5)
        ),
        f"log {other} index 1: the log starts at index 1, not 0: index 0 is missing",
        "Checked 2 logs and 13 events: 13 problems, 7 of them counted in the "
        "table only.",
    }
    assert [row[:4] for row in table(stdout)] == [
        ("tests.deposited", "1", "1", "0"),
        (name, "1", "0", "12"),
    ]
    assert failures(stdout) == [
        f"{name!r} version 1: 12 failed. First failure: {missing}",
        *(f"  log {log_id} index {index}" for index in range(5)),
        "  and 7 more",
    ]
    # Without the table, the same five lines.
    stdout, _ = verify_fails(13, verbosity=0)
    assert len(stdout.splitlines()) == 6
    assert f"log {log_id} index 4: " in stdout
    assert f"log {log_id} index 5: " not in stdout


# Choosing the logs.


def test_log_ids_restrict_the_check_to_those_logs() -> None:
    clean, other, broken = account(1), account(2), account(3)
    delete_event(broken, 1)
    stdout, stderr = verify(str(clean))
    assert (outside_table(stdout), stderr) == (
        ["Checked 1 log and 2 events: 0 problems."],
        "",
    )
    assert outside_table(verify(str(clean), str(other).upper())[0]) == [
        "Checked 2 logs and 5 events: 0 problems."
    ]
    stdout, _ = verify_fails(1, str(broken), str(clean))
    assert outside_table(stdout) == [
        f"log {broken} index 2: gap: index 1 is missing",
        "Checked 2 logs and 5 events: 1 problem.",
    ]


def test_a_log_id_of_an_empty_log_is_checked() -> None:
    empty = Log.objects.create(kind="account")
    account(1)
    stdout, _ = verify_fails(1, str(empty.pk))
    assert stdout.splitlines() == [
        f"log {empty.pk}: 'account' log has no events",
        "Checked 1 log and 0 events: 1 problem.",
    ]


def test_kind_restricts_the_check_to_logs_of_that_kind() -> None:
    account(1, kind="account")
    broken = account(2, kind="account")
    set_type(broken, 2, "tests.gone")
    account(1, kind="savings")
    Log.objects.create(kind="account")  # empty: not of kind savings
    stdout, stderr = verify("--kind", "savings")
    assert (outside_table(stdout), stderr) == (
        ["Checked 1 log and 2 events: 0 problems."],
        "",
    )
    assert [row[:4] for row in table(stdout)] == [
        ("tests.deposited", "1", "1", "0"),
        ("tests.opened", "1", "1", "0"),
    ]
    stdout, _ = verify_fails(2, "--kind", "account")
    assert outside_table(stdout)[-2] == "Checked 3 logs and 5 events: 2 problems."
    # LOG_ID and --kind together: the logs that are both.
    assert verify(str(broken), "--kind", "savings") == (
        "Checked 0 logs and 0 events: 0 problems.\n",
        "None of the given logs is of kind 'savings'.\n",
    )


def test_a_kind_without_logs_says_so() -> None:
    account(1)
    assert verify("--kind", "nothing") == (
        "Checked 0 logs and 0 events: 0 problems.\n",
        "No logs of kind 'nothing' to check.\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-a-uuid"], "Malformed log id 'not-a-uuid': a log id is a UUID."),
        (["12345"], "Malformed log id '12345': a log id is a UUID."),
        (
            [str(uuid.UUID(int=7))],
            f"No log has the id {uuid.UUID(int=7)}.",
        ),
        (["--database", "elsewhere"], "No database 'elsewhere' in DATABASES."),
    ],
)
def test_wrong_arguments_are_a_command_error(args: list[str], message: str) -> None:
    account(1)
    with pytest.raises(CommandError) as raised:
        verify(*args)
    assert str(raised.value) == message
    assert raised.value.returncode == 2


# Progress.


def test_a_long_run_prints_progress_lines_without_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventlog_verify, "PROGRESS_MIN_LOGS", 20)
    for _ in range(19):
        account(0)
    Log.objects.create(kind="account")  # counted after the events pass
    stdout, stderr = verify_fails(1)
    assert stderr.splitlines() == [
        f"Checked {done}/20 logs ({done * 5}%)" for done in range(2, 20, 2)
    ] + ["Checked 20/20 logs (100%)"]
    assert outside_table(stdout)[-1] == "Checked 20 logs and 19 events: 1 problem."


def test_a_long_run_draws_a_progress_bar_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventlog_verify, "PROGRESS_MIN_LOGS", 10)
    # In the order the command streams them: uuid7s made within one
    # millisecond are not ordered by creation.
    logs = sorted(account(1) for _ in range(10))
    set_type(logs[4], 1, "tests.gone")
    stdout = Terminal()
    stderr = Terminal()
    verify_fails(1, stdout=stdout, stderr=stderr)
    bar = stderr.getvalue()
    assert bar.startswith(f"\r[{'#' * 3}{'.' * 27}] 1/10 logs (10%)")
    assert bar.endswith(f"\r[{'#' * 30}] 10/10 logs (100%)\n")
    # The bar is cleared before the problem is printed, then drawn again.
    assert bar.count("\r\x1b[K") == 1
    assert bar.count("\n") == 1
    assert f"log {logs[4]} index 1: unknown event type 'tests.gone'" in (
        stdout.getvalue()
    )


def test_a_short_run_shows_no_progress() -> None:
    for _ in range(3):
        account(0)
    assert eventlog_verify.PROGRESS_MIN_LOGS > 3
    _, stderr = verify(stderr=Terminal())
    assert stderr == ""


# The triggers.

RESTORE = re.compile(
    r"^table (\w+): trigger (\w+) is (missing|disabled); the database no longer "
    r"checks ([A-Z ]+) on it\. Restore it with:\n(.*?;)\n(?=table |Events |Checked)",
    re.MULTILINE | re.DOTALL,
)


def reported_triggers(out: str) -> list[tuple[str, str, str]]:
    """(trigger, missing or disabled, the SQL given to restore it)."""
    return [(m[2], m[3], m[5]) for m in RESTORE.finditer(out)]


def assert_refused(match: str, param: Any, *statements: str) -> None:
    """Each statement, run with ``param``, fails with an error matching ``match``."""
    for sql in statements:
        with (
            pytest.raises(DatabaseError, match=match),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [param])


def assert_guarded(log_id: uuid.UUID) -> None:
    """Every trigger's refusal holds again."""
    assert_refused(
        "events are immutable",
        event_pk(log_id, 0),
        "UPDATE django_eventlog_event SET type = 'x' WHERE id = %s",
        "DELETE FROM django_eventlog_event WHERE id = %s",
    )
    assert_refused(
        "logs are immutable",
        log_id.hex if connection.vendor == "sqlite" else log_id,
        "UPDATE django_eventlog_log SET kind = 'x' WHERE id = %s",
        "DELETE FROM django_eventlog_log WHERE id = %s",
    )
    with (
        pytest.raises(IntegrityError, match="django_eventlog_event_no_gap"),
        transaction.atomic(),
    ):
        Event.objects.create(log_id=log_id, index=5, type="t", payload={})


def test_missing_triggers_are_reported_with_the_sql_to_restore_them() -> None:
    log_id = account(1)
    expected = SQLITE_TRIGGERS if connection.vendor == "sqlite" else PG_TRIGGERS
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The functions go too: the repair must bring them back.
            for function in (
                "reject_change",
                "reject_gap",
                "reject_log_change",
                "reject_truncate",
            ):
                cursor.execute(f"DROP FUNCTION django_eventlog_{function}() CASCADE")
        else:
            for name in SQLITE_TRIGGERS:
                cursor.execute(f"DROP TRIGGER {name}")
    out, _ = verify_fails(len(expected))
    found = {m[2]: (m[1], m[3], m[4]) for m in RESTORE.finditer(out)}
    assert found == {
        name: (table, "missing", found[name][2])
        for name, (table, _) in expected.items()
    }
    assert found["django_eventlog_event_no_gap"][2] == "INSERT"
    assert found[
        "django_eventlog_event_no_update"
        if connection.vendor == "sqlite"
        else "django_eventlog_log_immutable"
    ][2] in {"UPDATE", "UPDATE OR DELETE"}
    assert "Checked 1 log and 2 events: " in out
    with connection.cursor() as cursor:
        for _, _, restore in reported_triggers(out):
            cursor.execute(restore)
    out, _ = verify()
    assert outside_table(out) == ["Checked 1 log and 2 events: 0 problems."]
    assert_guarded(log_id)
    if connection.vendor == "postgresql":
        # The no-gap function restored is migration 0007's, which gives each
        # event its feed position.
        state = Log.objects.create_log(Opened("bo"), kind="account")
        assert Event.objects.get(log_id=state.log_id).txid


@pytest.mark.postgresql
def test_a_disabled_trigger_is_reported_with_the_sql_to_enable_it() -> None:
    log_id = account(0)
    with connection.cursor() as cursor:
        # ALTER TABLE waits for no deferred foreign key check.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            f"ALTER TABLE django_eventlog_event DISABLE TRIGGER {PG_TRIGGER}"
        )
    out, _ = verify_fails(1)
    [(name, state, restore)] = reported_triggers(out)
    assert (name, state) == (PG_TRIGGER, "disabled")
    with connection.cursor() as cursor:
        cursor.execute(restore)
    assert "trigger" not in verify()[0]
    assert_guarded(log_id)


def test_the_command_reads_in_two_queries_plus_a_count(
    django_assert_num_queries: Any,
) -> None:
    """No query per log: the events in one pass, the empty logs in another
    (and one look at the triggers)."""
    for deposits in range(12):
        account(deposits)
    Log.objects.create(kind="account")
    with django_assert_num_queries(4):
        verify_fails(1)


# Nothing planted outlives its test.


class Rollback(Exception):
    pass


def switch_triggers_off_then_roll_back() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute("SHOW session_replication_role")
            assert cursor.fetchone() == ("replica",)
        else:
            cursor.execute("DROP TRIGGER django_eventlog_event_no_delete")
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = %s",
                ["django_eventlog_event_no_delete"],
            )
            assert cursor.fetchone() == (0,)
        raise Rollback


def test_a_rollback_restores_dropped_sqlite_triggers() -> None:
    """What ``triggers_off`` relies on, checked on the current vendor."""
    log_id = account(1)
    with pytest.raises(Rollback):
        switch_triggers_off_then_roll_back()
    assert_triggers_on()
    with pytest.raises(DatabaseError, match="events are immutable"):
        delete_event_unguarded(event_pk(log_id, 1))


def delete_event_unguarded(pk: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_eventlog_event WHERE id = %s", [pk])


def assert_triggers_on() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW session_replication_role")
            assert cursor.fetchone() == ("origin",)
            cursor.execute(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname = ANY(%s)",
                [list(PG_TRIGGERS)],
            )
            assert dict(cursor.fetchall()) == dict.fromkeys(PG_TRIGGERS, "O")
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name LIKE 'django_eventlog_%' ORDER BY name"
            )
            assert [name for (name,) in cursor.fetchall()] == sorted(SQLITE_TRIGGERS)


def test_zz_planted_rows_and_trigger_changes_did_not_leak() -> None:
    """Runs after the planting tests (file order): the store is empty again,
    the triggers are in place and refuse a raw DELETE and UPDATE."""
    assert not Log.objects.exists()
    assert not Event.objects.exists()
    assert_triggers_on()
    log_id = account(1)
    with pytest.raises(DatabaseError, match="events are immutable"):
        delete_event_unguarded(event_pk(log_id, 1))
    with (
        pytest.raises(DatabaseError, match="events are immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE django_eventlog_event SET type = 'x'")
    assert outside_table(verify()[0]) == ["Checked 1 log and 2 events: 0 problems."]
