"""Database-level refusal of UPDATE and DELETE on the events table.

PostgreSQL: a row trigger raises on UPDATE and DELETE. ``TRUNCATE`` (what
Django's ``flush`` and test teardown use there) does not fire row triggers.

SQLite: triggers raise on UPDATE, and on DELETE while
``django_eventlog_events_locked()`` is true. That SQL function is registered
on every Django connection and is false only while Django runs the
unfiltered ``DELETE FROM <events table>`` of a ``flush``, so test database
flushes keep working. Outside Django (the sqlite3 shell), the function does
not exist and every UPDATE or DELETE fails.

The triggers are created by migration 0002; :func:`trigger_problems` (run by
``eventlog_verify``) tells when a table rebuilt since has lost them, with the
migration's own SQL to restore them.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

LOCK_FUNCTION = "django_eventlog_events_locked"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FLUSHING = "_django_eventlog_flushing"
# The migration that creates the triggers: the one source of their SQL.
_TRIGGERS_MIGRATION = "django_eventlog.migrations.0002_immutable_events"
_CREATE_TRIGGER = re.compile(r"CREATE TRIGGER (\w+)")


def register_sqlite_guard(
    sender: object, connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    """Give a new SQLite connection the lock function the triggers call."""
    if connection.vendor != "sqlite":
        return
    connection.connection.create_function(
        LOCK_FUNCTION, 0, lambda: 0 if getattr(connection, _FLUSHING, False) else 1
    )
    if _allow_flush not in connection.execute_wrappers:
        connection.execute_wrappers.append(_allow_flush)


def _allow_flush(
    execute: Callable[..., Any],
    sql: str,
    params: Any,
    many: bool,
    context: dict[str, Any],
) -> Any:
    connection: BaseDatabaseWrapper = context["connection"]
    if not _is_flush(sql, connection):
        return execute(sql, params, many, context)
    setattr(connection, _FLUSHING, True)
    try:
        return execute(sql, params, many, context)
    finally:
        setattr(connection, _FLUSHING, False)


def _is_flush(sql: str, connection: BaseDatabaseWrapper) -> bool:
    if sql.lstrip()[:6].upper() != "DELETE":
        return False
    from .models import Event

    statement = " ".join(_ANSI.sub("", sql).replace(";", " ").split())
    table = connection.ops.quote_name(Event._meta.db_table)
    return statement.upper() == f"DELETE FROM {table}".upper()


def trigger_problems(using: str) -> list[tuple[str, str]]:
    """What is wrong with the events table's immutability triggers on ``using``.

    A list of (problem, SQL that repairs it), empty when every trigger of
    migration 0002 is there and enabled, or on a database without triggers.
    """
    from . import queries
    from .models import Event

    table = Event._meta.db_table
    found = queries.triggers(using, table)
    if found is None:
        return []
    connection = connections[using]
    migration = importlib.import_module(_TRIGGERS_MIGRATION)
    created = [
        textwrap.dedent(sql).strip()
        for sql in migration.FORWARDS.get(connection.vendor, [])
    ]
    # What the triggers call (PostgreSQL's function), restorable twice over.
    helpers = [
        sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        for sql in created
        if not _CREATE_TRIGGER.match(sql)
    ]
    problems = []
    for sql in created:
        match = _CREATE_TRIGGER.match(sql)
        if match is None:
            continue
        name = match.group(1)
        if name not in found:
            restore = ";\n".join([*helpers, sql]) + ";"
            problems.append((f"immutability trigger {name} is missing", restore))
        elif not found[name]:
            restore = (
                f"ALTER TABLE {connection.ops.quote_name(table)} ENABLE TRIGGER {name};"
            )
            problems.append((f"immutability trigger {name} is disabled", restore))
    return problems
