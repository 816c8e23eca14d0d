"""The SQL of a projection's checkpoint on the path of every batch.

An atomic batch reads its projection's checkpoint row first, locking it on
PostgreSQL (``FOR UPDATE``; SQLite has one writer at a time), and moves it
at the end by compare-and-set. Plain statements, not ORM queries: a catch-up
runs two of them per batch, and building the ORM's cost more than running
them. The checkpoint's other reads and writes (creating it, the control
commands, the status) go through the ORM.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

from typing import Any, cast

from django.apps import apps
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from .per_alias import PerAlias

__all__ = ["CheckpointStatements", "checkpoint_statements"]


class CheckpointStatements:
    """The checkpoint's statements of one database alias, built once."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        model = apps.get_model("django_eventlog", "ProjectionCheckpoint")
        qn = connection.ops.quote_name
        table = qn(model._meta.db_table)

        def column(name: str) -> str:
            field = cast("models.Field[Any, Any]", model._meta.get_field(name))
            return qn(cast(str, field.column))

        name, position, handled, state, updated_at = map(
            column, ("name", "position", "handled", "state", "updated_at")
        )
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        #: Parameter: the projection's name. A row of position and state, or
        #: none.
        self.read = f"SELECT {position}, {state} FROM {table} WHERE {name} = %s{lock}"
        #: Parameters: the new position, the events handled, a state that
        #: becomes another (None: none does) and that other, updated_at, the
        #: name, and the position the batch began at: the row moves only if
        #: it is still there. Rows changed: 1 or 0.
        self.advance = (
            f"UPDATE {table} SET {position} = %s, {handled} = {handled} + %s, "
            f"{state} = CASE WHEN {state} = %s THEN %s ELSE {state} END, "
            f"{updated_at} = %s WHERE {name} = %s AND {position} = %s"
        )


#: The checkpoint's statements of a connection's alias.
checkpoint_statements = PerAlias(CheckpointStatements)
