"""The SQL of the write path and of reading one log.

Every statement that writes or reads a log's events is built here once per
database alias, from the models' table and column names;
:mod:`django_eventlog.queries` runs them on a plain cursor, so the hot paths
skip the ORM's query building and per-row conversion (``docs/performance.md``
says why).

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from django.apps import apps
from django.db import IntegrityError, models
from django.db.backends.base.base import BaseDatabaseWrapper

from .per_alias import PerAlias

__all__ = [
    "LOG_INDEX_CONSTRAINT",
    "NO_GAP",
    "EncodedEvent",
    "Row",
    "Statements",
    "db_uuid",
    "refused_as_gap",
    "statements",
    "violated_constraint",
]

#: The name of the ``UNIQUE (log, index)`` constraint.
LOG_INDEX_CONSTRAINT = "django_eventlog_event_log_index_uniq"

#: The trigger that refuses an event with no event before it (or, at index 0,
#: no log), by any writer (migration 0005); its error carries the name.
NO_GAP = "django_eventlog_event_no_gap"

#: One stored event: index, type, payload as JSON text, recorded_at as the
#: driver returns it (see :attr:`Statements.convert_recorded_at`), key, then
#: its metadata: actor, correlation id, causation id, extra as JSON text;
#: last its schema version (None for 1).
Row = tuple[
    int,
    str,
    str,
    datetime,
    "str | None",
    "str | None",
    "str | None",
    "str | None",
    "str | None",
    "int | None",
]

#: One event to write: type name, payload as JSON text, schema version
#: (None for 1).
EncodedEvent = tuple[str, str, "int | None"]

_EVENT_FIELDS = (
    "log",
    "index",
    "type",
    "payload",
    "recorded_at",
    "idempotency_key",
    "schema_version",
)
#: Who and why (migration 0009): written only when a write has metadata.
_METADATA_FIELDS = ("actor", "correlation_id", "causation_id", "extra")


def _models() -> tuple[type[models.Model], type[models.Model]]:
    # Through the app registry: the models module imports the manager, which
    # imports this module.
    return (
        apps.get_model("django_eventlog", "Log"),
        apps.get_model("django_eventlog", "Event"),
    )


class Statements:
    """The SQL of one database alias, built once."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        log_model, event_model = _models()
        qn = connection.ops.quote_name
        self.log_table = log_table = qn(log_model._meta.db_table)
        self.log_id_col, self.log_kind_col = qn("id"), qn("kind")
        self.event_table = event_table = qn(event_model._meta.db_table)

        def bare(name: str) -> str:
            field = cast("models.Field[Any, Any]", event_model._meta.get_field(name))
            return qn(cast(str, field.column))

        def column(name: str) -> str:
            return f"{event_table}.{bare(name)}"

        self._recorded_at_field = cast(
            "models.Field[Any, Any]", event_model._meta.get_field("recorded_at")
        )
        postgresql = connection.vendor == "postgresql"
        log, index, type_, payload, recorded_at, key, version = map(
            column, _EVENT_FIELDS
        )
        self.log_col, self.index_col, self.type_col = log, index, type_

        # The write path: the metadata's columns get parameters only when
        # the write has metadata, NULL otherwise (typed: a VALUES list of
        # PostgreSQL's resolves an untyped NULL as text).
        jsonb = "::jsonb" if postgresql else ""
        smallint = "::smallint" if postgresql else ""
        self._columns = ", ".join(map(bare, _EVENT_FIELDS + _METADATA_FIELDS))
        event_values = f"%s, %s, %s, %s{jsonb}, %s, %s, %s{smallint}"
        self._values = {
            True: f"{event_values}, %s, %s, %s, %s{jsonb}",
            False: f"{event_values}, NULL, NULL, NULL, NULL{jsonb}",
        }
        self._postgresql = postgresql
        self.insert_log = (
            f"INSERT INTO {log_table} ({qn('id')}, {qn('kind')}, {qn('created_at')}) "
            "VALUES (%s, %s, %s)"
        )

        # The read path: the payload as JSON text, which msgspec decodes into
        # the event class in one pass (no json.loads, then a conversion).
        self.convert_recorded_at: Callable[[Any], Any] | None
        stored_recorded_at = recorded_at
        if postgresql:
            payload = f"{payload}::text"
            # As timestamp in the session's time zone, which Django sets to the
            # connection's: psycopg parses that in C, where the timestamptz
            # loader Django installs parses in Python (4 us a row).
            recorded_at = f"{recorded_at}::timestamp"
            tz = connection.timezone
            self.convert_recorded_at = (
                None if tz is None else functools.partial(datetime.replace, tzinfo=tz)
            )
        else:
            self.convert_recorded_at = self._orm_converter(connection)
        actor, correlation, causation, extra = map(column, _METADATA_FIELDS)
        if postgresql:
            extra = f"{extra}::text"
        # The metadata, then the schema version last.
        tail = f"{actor}, {correlation}, {causation}, {extra}, {version}"
        self.selected = f"{index}, {type_}, {payload}, {recorded_at}, {key}, {tail}"
        #: As :attr:`selected`, but recorded_at as stored (timestamptz on
        #: PostgreSQL), for a cursor that loads it fast (the feed's pages).
        self.selected_stored = (
            f"{index}, {type_}, {payload}, {stored_recorded_at}, {key}, {tail}"
        )
        # The admin timeline's: the payload's first %s characters only.
        self._selected_clipped = (
            f"{index}, {type_}, substr({payload}, 1, %s), {recorded_at}, {key}, {tail}"
        )
        self.select_from = (
            f"SELECT {self.selected} FROM {event_table} "
            f"WHERE {log} = %s AND {index} >= %s ORDER BY {index}"
        )
        self.select_through = (
            f"SELECT {self.selected} FROM {event_table} WHERE {log} = %s "
            f"AND {index} >= %s AND {index} <= %s ORDER BY {index}"
        )
        self.select_page = self.page(descending=False, typed=False)
        # The event holding a key, its log's kind and the events from it on:
        # what a write that found the key used compares itself with (the
        # replay rule, in idempotency.py), a batch whole. Parameters: key,
        # the most events to return.
        b = {name: f"e.{bare(name)}" for name in _EVENT_FIELDS + _METADATA_FIELDS}
        e_payload = f"{b['payload']}::text" if postgresql else b["payload"]
        e_extra = f"{b['extra']}::text" if postgresql else b["extra"]
        self.select_key_use = (
            f"SELECT {b['log']}, {b['index']}, l.{self.log_kind_col}, "
            f"{b['type']}, {e_payload}, {b['recorded_at']}, {b['idempotency_key']}, "
            f"{b['actor']}, {b['correlation_id']}, {b['causation_id']}, {e_extra}, "
            f"{b['schema_version']} "
            f"FROM {event_table} k JOIN {log_table} l "
            f"ON l.{self.log_id_col} = k.{bare('log')} "
            f"JOIN {event_table} e ON {b['log']} = k.{bare('log')} "
            f"AND {b['index']} >= k.{bare('index')} "
            f"WHERE k.{bare('idempotency_key')} = %s ORDER BY {b['index']} LIMIT %s"
        )
        # A page of one log with the log's kind, in one statement: a row with
        # the kind and no event when the log has no event from that index on,
        # no row at all when there is no such log. Parameters: first index,
        # log id, limit.
        self.select_kind_page = (
            f"SELECT {log_table}.{self.log_kind_col}, {self.selected} "
            f"FROM {log_table} LEFT JOIN {event_table} "
            f"ON {log} = {log_table}.{self.log_id_col} AND {index} >= %s "
            f"WHERE {log_table}.{self.log_id_col} = %s ORDER BY {index} LIMIT %s"
        )
        self.select_event_exists = (
            f"SELECT 1 FROM {event_table} "
            f"WHERE {bare('log')} = %s AND {bare('index')} = %s"
        )
        # A log's state (Log.objects.state): its last index, one probe of
        # UNIQUE (log, index) read backwards. Parameter: log id. No row: no
        # event (or no log).
        self.select_last_index = (
            f"SELECT {index} FROM {event_table} WHERE {log} = %s "
            f"ORDER BY {index} DESC LIMIT 1"
        )
        # The log's kind and last index (NULL: no event); no row: no such
        # log. Parameter: log id.
        self.select_kind_last_index = (
            f"SELECT {log_table}.{self.log_kind_col}, (SELECT MAX({index}) "
            f"FROM {event_table} WHERE {log} = {log_table}.{self.log_id_col}) "
            f"FROM {log_table} WHERE {log_table}.{self.log_id_col} = %s"
        )

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def insert_events(self, count: int, metadata: bool) -> str:
        """Insert ``count`` events, in the order given, in one statement.

        Parameters, per event: log id, index, type, payload, recorded_at,
        key, schema version (None for 1), and with ``metadata`` actor,
        correlation id, causation id and extra. The no-gap trigger fires per
        row and sees the rows inserted before it by the same statement, so a
        batch's events follow one another.
        """
        rows = ", ".join([f"({self._values[metadata]})"] * count)
        return f"INSERT INTO {self.event_table} ({self._columns}) VALUES {rows}"

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def create_log_with(self, count: int, metadata: bool) -> str | None:
        """PostgreSQL: a log and its first ``count`` events in one statement
        (a data-modifying CTE, which SQLite lacks: None there). Parameters:
        as :attr:`insert_log`, then as :meth:`insert_events`.
        """
        if not self._postgresql:
            return None
        values = self._values[metadata]
        new_log = f"WITH new_log AS ({self.insert_log} RETURNING {self.log_id_col}) "
        if count == 1:
            return (
                f"{new_log}INSERT INTO {self.event_table} ({self._columns}) "
                f"SELECT {values} FROM new_log"
            )
        columns = [f"c{i}" for i in range(len(_EVENT_FIELDS + _METADATA_FIELDS))]
        rows = ", ".join([f"({values})"] * count)
        # Selected FROM new_log, so the log row is inserted before its events
        # (its RETURNING feeds them), and in index order for the trigger.
        return (
            f"{new_log}INSERT INTO {self.event_table} ({self._columns}) "
            f"SELECT {', '.join(f'v.{c}' for c in columns)} FROM new_log "
            f"CROSS JOIN (VALUES {rows}) AS v({', '.join(columns)}) ORDER BY v.c1"
        )

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def page(self, *, descending: bool, typed: bool, clipped: bool = False) -> str:
        """A page of one log from an index on, either way, optionally of one type,
        optionally with only the start of each payload.

        Parameters: [payload characters,] log id, [type,] first index, limit.
        """
        where = f"{self.log_col} = %s"
        if typed:
            where += f" AND {self.type_col} = %s"
        bound = "<=" if descending else ">="
        order = f"{self.index_col} DESC" if descending else self.index_col
        selected = self._selected_clipped if clipped else self.selected
        return (
            f"SELECT {selected} FROM {self.event_table} "
            f"WHERE {where} AND {self.index_col} {bound} %s ORDER BY {order} LIMIT %s"
        )

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def neighbours(self, *, before: bool, typed: bool) -> str:
        """The indices of up to ``limit`` events next to one, nearest first.

        Parameters: log id, [type,] index, limit.
        """
        where = f"{self.log_col} = %s"
        if typed:
            where += f" AND {self.type_col} = %s"
        bound, order = (
            ("<", f"{self.index_col} DESC") if before else (">", self.index_col)
        )
        return (
            f"SELECT {self.index_col} FROM {self.event_table} "
            f"WHERE {where} AND {self.index_col} {bound} %s ORDER BY {order} LIMIT %s"
        )

    def scan(self, log_count: int, by_kind: bool) -> str:
        """Every event of the given logs (or all), of one kind or any, by log
        and index. Parameters: the log ids, [kind]."""
        conditions = []
        if log_count:
            placeholders = ", ".join(["%s"] * log_count)
            conditions.append(f"{self.log_col} IN ({placeholders})")
        if by_kind:
            conditions.append(
                f"{self.log_col} IN (SELECT {self.log_id_col} FROM {self.log_table} "
                f"WHERE {self.log_kind_col} = %s)"
            )
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return (
            f"SELECT {self.log_col}, {self.selected} FROM {self.event_table}{where} "
            f"ORDER BY {self.log_col}, {self.index_col}"
        )

    def _orm_converter(
        self, connection: BaseDatabaseWrapper
    ) -> Callable[[Any], Any] | None:
        """What the ORM applies to a selected recorded_at (SQLite: text to datetime)."""
        field = self._recorded_at_field
        column = field.get_col(field.model._meta.db_table)
        converters = [
            *connection.ops.get_db_converters(column),
            *column.get_db_converters(connection),
        ]
        if not converters:
            return None

        def convert(value: Any) -> Any:
            for converter in converters:
                value = converter(value, column, connection)
            return value

        return convert


#: The statements of a connection's alias (per alias: the converters are
#: bound to the alias's settings, TIME_ZONE).
statements = PerAlias(Statements)


def db_uuid(value: uuid.UUID, connection: BaseDatabaseWrapper) -> Any:
    """A log id as the database stores it (without a uuid type: 32 hex digits)."""
    return value if connection.features.has_native_uuid_field else value.hex


def violated_constraint(error: IntegrityError) -> str | None:
    """The constraint a database error names (psycopg's diagnostics), if any."""
    diag = getattr(error.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


def refused_as_gap(error: IntegrityError) -> bool:
    """Whether the no-gap trigger refused the insert that raised ``error``."""
    # PostgreSQL names it as the constraint; SQLite's RAISE() gives only a
    # message, which the trigger starts with its name.
    return violated_constraint(error) == NO_GAP or str(error).startswith(NO_GAP)
