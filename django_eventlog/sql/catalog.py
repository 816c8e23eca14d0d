"""The SQL that reads the store as a whole, not one log: the kinds and type
names stored (for the admin and the deploy checks), the triggers installed
(for ``eventlog_verify``), and what lets the test helpers flush.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

from typing import Any, cast

from django.apps import apps
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from .per_alias import PerAlias

__all__ = ["CatalogStatements", "catalog_statements"]


class CatalogStatements:
    """The store-wide statements of one database alias, built once."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        log_model = apps.get_model("django_eventlog", "Log")
        event_model = apps.get_model("django_eventlog", "Event")
        qn = connection.ops.quote_name
        log_table = qn(log_model._meta.db_table)
        event_table = qn(event_model._meta.db_table)
        type_field = cast("models.Field[Any, Any]", event_model._meta.get_field("type"))
        type_ = f"{event_table}.{qn(cast(str, type_field.column))}"
        kind = qn("kind")
        #: The two tables' names, unquoted: events, logs.
        self.table_names = (event_model._meta.db_table, log_model._meta.db_table)

        # The admin's kind filter: a loose index scan of the kind index, one
        # probe per distinct kind, where SELECT DISTINCT reads every log.
        # Parameter: the most kinds to list.
        self.select_kinds = (
            "WITH RECURSIVE kinds(k) AS ("
            f"SELECT MIN({kind}) FROM {log_table} UNION ALL "
            f"SELECT (SELECT MIN({kind}) FROM {log_table} WHERE {kind} > kinds.k) "
            "FROM kinds WHERE kinds.k IS NOT NULL"
            ") SELECT k FROM kinds WHERE k IS NOT NULL LIMIT %s"
        )
        # The stored type names (the deploy check W002): the same loose scan,
        # of the (type, log, index) index. No parameters; read it streamed.
        self.select_types = (
            "WITH RECURSIVE types(t) AS ("
            f"SELECT MIN({type_}) FROM {event_table} UNION ALL "
            f"SELECT (SELECT MIN({type_}) FROM {event_table} WHERE {type_} > types.t) "
            "FROM types WHERE types.t IS NOT NULL"
            ") SELECT t FROM types WHERE t IS NOT NULL"
        )
        #: The triggers on the two tables, by name, and whether each fires
        #: (eventlog_verify). Parameters: the tables' names. None: no
        #: triggers are installed on this database.
        self.select_triggers: str | None = None
        #: What lets this connection empty the tables while the test helpers
        #: flush (see :mod:`django_eventlog.triggers`); None: nothing to run.
        self.allow_flush: str | None = None
        if connection.vendor == "postgresql":
            self.select_triggers = (
                "SELECT tgname, tgenabled <> 'D' FROM pg_trigger "
                "WHERE tgrelid IN (to_regclass(%s), to_regclass(%s)) "
                "AND NOT tgisinternal"
            )
            self.allow_flush = (
                "SELECT set_config('django_eventlog.flushing', 'on', true)"
            )
        elif connection.vendor == "sqlite":
            self.select_triggers = (
                "SELECT name, 1 FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name IN (%s, %s)"
            )


#: The store-wide statements of a connection's alias.
catalog_statements = PerAlias(CatalogStatements)
