"""The store's rules held by database triggers, and what lets tests flush.

The migrations put triggers on both tables: events and logs refuse
``UPDATE`` and ``DELETE``, an event is inserted only at index 0 of an
existing log or right after the event before it (no gap), and emptying a
table (``TRUNCATE`` on PostgreSQL) is refused.

Test databases must still be flushed between tests. What lets a flush
through is not the text of a statement but a switch that only
:func:`flushing` turns on, for one connection, for as long as Django's
``flush`` runs on it; only the test helpers
(:func:`django_eventlog.testing.allow_flush`) call it:

- SQLite: the delete triggers call ``django_eventlog_events_locked()``, an
  SQL function registered on every Django connection that answers 0 only
  while that connection flushes. Outside Django (the sqlite3 shell) the
  function does not exist and every ``DELETE`` fails.
- PostgreSQL: the ``TRUNCATE`` triggers pass only while the transaction-local
  setting ``django_eventlog.flushing`` is ``on``. Row triggers do not fire
  on ``TRUNCATE``.

:func:`trigger_problems` (run by ``eventlog_verify``) tells when a trigger is
missing or disabled, with its migration's own SQL to restore it.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from . import queries, sql

__all__ = ["LOCK_FUNCTION", "flushing", "register_sqlite_guard", "trigger_problems"]

LOCK_FUNCTION = "django_eventlog_events_locked"
_FLUSHING = "_django_eventlog_flushing"
# The migrations that create triggers: the one source of their SQL.
_TRIGGER_MIGRATIONS = (
    "django_eventlog.migrations.0002_immutable_events",
    "django_eventlog.migrations.0005_guards_for_every_writer",
    "django_eventlog.migrations.0007_feed_position",
)
_CREATE_TRIGGER = re.compile(r"CREATE TRIGGER (\w+)\s+BEFORE (.+?) ON (\w+)", re.DOTALL)
_FUNCTION_NAME = re.compile(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)")
_CREATE_FUNCTION = re.compile(r"^CREATE (?:OR REPLACE )?FUNCTION")
_EXECUTE_FUNCTION = re.compile(r"EXECUTE FUNCTION (\w+)\(")


def register_sqlite_guard(
    sender: object, connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    """Give a new SQLite connection the lock function the triggers call."""
    if connection.vendor != "sqlite":
        return
    connection.connection.create_function(
        LOCK_FUNCTION, 0, lambda: 0 if getattr(connection, _FLUSHING, False) else 1
    )


@contextmanager
def flushing(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Let ``connection`` empty the store's tables within the block.

    For Django's ``flush`` of a test database only: the test helpers wrap
    it in this. The block runs in a transaction.
    """
    with transaction.atomic(using=connection.alias):
        statement = sql.catalog_statements(connection).allow_flush
        if statement is not None:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        setattr(connection, _FLUSHING, True)
        try:
            yield
        finally:
            setattr(connection, _FLUSHING, False)


def trigger_problems(using: str) -> list[tuple[str, str]]:
    """What is wrong with the store's triggers on ``using``.

    A list of (problem, SQL that repairs it), empty when every trigger the
    migrations create is there and enabled, or on a database without
    triggers.
    """
    found = queries.triggers(using)
    if found is None:
        return []
    connection = connections[using]
    problems = []
    for name, operations, table, restore in _created_triggers(connection.vendor):
        if name not in found:
            problem = "is missing"
        elif not found[name]:
            problem = "is disabled"
            restore = (
                f"ALTER TABLE {connection.ops.quote_name(table)} ENABLE TRIGGER {name};"
            )
        else:
            continue
        problems.append(
            (
                f"table {table}: trigger {name} {problem}; the database no longer "
                f"checks {operations} on it",
                restore,
            )
        )
    return problems


def _created_triggers(vendor: str) -> Iterator[tuple[str, str, str, str]]:
    """Each trigger the migrations create: name, operations, table, and the
    SQL that creates it with the function it calls, as the latest migration
    that (re)defines that function has it."""
    statements = [
        textwrap.dedent(statement).strip()
        for module in _TRIGGER_MIGRATIONS
        for statement in importlib.import_module(module).FORWARDS.get(vendor, [])
    ]
    # PostgreSQL's trigger functions, by name; a later definition wins.
    functions = {
        match.group(1): _CREATE_FUNCTION.sub("CREATE OR REPLACE FUNCTION", statement)
        for statement in statements
        if (match := _FUNCTION_NAME.match(statement)) is not None
    }
    for statement in statements:
        match = _CREATE_TRIGGER.match(statement)
        if match is not None:
            name, operations, table = match.groups()
            called = _EXECUTE_FUNCTION.search(statement)
            helper = functions.get(called.group(1)) if called is not None else None
            created = [helper, statement] if helper is not None else [statement]
            yield name, operations, table, ";\n".join(created) + ";"
