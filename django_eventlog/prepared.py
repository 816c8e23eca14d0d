"""The cursor the library runs its own hot statements on.

On PostgreSQL with psycopg 3, an append, a create, the page and state reads
and the feed's page are bound on the server and prepared on their first use
on a connection, whatever the project's ``DATABASES`` ``OPTIONS``: the
server parses and plans each statement once per connection instead of
receiving new text, with the values quoted in, every time (Django's default,
client-side binding). ``docs/performance.md`` measures it.

Everything else Django runs keeps the project's settings: the ORM, the
user's own SQL and the library's other statements go through Django's own
cursors, which with the default settings bind client-side and never
prepare. The cursor here is psycopg's own on Django's connection, wrapped
as Django wraps its cursors: the connection opened and health-checked
first, errors raised as ``django.db`` errors, ``execute_wrapper()``
applied, the transaction Django manages joined.

- ``EVENTLOG_PREPARED_STATEMENTS = False`` (PgBouncer in transaction mode
  before 1.21, or without ``max_prepared_statements``) keeps the server-side
  binding and prepares nothing.
- With ``OPTIONS["server_side_binding"] = True`` Django's own cursors
  already bind on the server, and the project's ``prepare_threshold``
  decides for every statement, the library's included: this returns
  Django's cursor.
- While Django logs queries (``DEBUG = True``, or a test's
  ``assertNumQueries``): Django's cursor, so the log has each statement's
  text (a prepared statement leaves it none) and tools that wrap
  ``connection.cursor()`` see them.
- SQLite, and psycopg 2: Django's cursor.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from .conf import conf

__all__ = ["prepared_cursor"]


#: Where a connection keeps its cursors: {binary: (psycopg connection,
#: Django's wrapper of the cursor)}.
_CURSORS = "_django_eventlog_cursors"


def prepared_cursor(
    connection: BaseDatabaseWrapper, *, prepare: bool = True, binary: bool = False
) -> CursorWrapper:
    """A cursor of ``connection`` that binds on the server and prepares what
    it runs (unless ``prepare`` is False, for statements of many shapes such
    as batches, or ``EVENTLOG_PREPARED_STATEMENTS`` is False); Django's own
    cursor where that does not apply (see the module's docstring).

    The psycopg cursor under it, and Django's wrapper of it, are made once
    per connection and kept (the cursor's ``close()`` keeps it open):
    making them and checking the time zone took a few per cent of an
    append's CPU in a profile of appends (a new psycopg cursor copies the
    connection's adapters). ``binary``: the one kept for a caller that reads
    rows in the binary format (the feed), so the other keeps text. Not from
    async code: ``ensure_connection()`` raises ``SynchronousOnlyOperation``
    there, as Django's ``cursor()`` does.
    """
    cursor_class = _bound_cursor_class()
    if (
        connection.vendor != "postgresql"
        or cursor_class is None
        or connection.settings_dict["OPTIONS"].get("server_side_binding") is True
        # DEBUG, or a test capturing queries: Django's cursor logs the
        # statement's text, where a prepared one leaves it no text to log, and
        # tools that wrap connection.cursor() (the debug toolbar) see it.
        or connection.queries_logged
    ):
        return connection.cursor()
    # As Django's BaseDatabaseWrapper.cursor() does before creating one.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    kept: dict[bool, tuple[Any, CursorWrapper]] | None = getattr(
        connection, _CURSORS, None
    )
    if kept is None:
        kept = {}
        setattr(connection, _CURSORS, kept)
    found = kept.get(binary)
    if (
        found is not None
        and found[0] is raw
        and found[1].cursor.timezone == connection.timezone
    ):
        wrapper = found[1]
    else:
        if not isinstance(raw, cursor_class.connection_class):  # psycopg 2's
            return connection.cursor()
        with connection.wrap_database_errors:
            cursor = cursor_class(raw)
            _use_connection_timezone(connection, cursor)
        wrapper = connection.make_cursor(cursor)
        kept[binary] = (raw, wrapper)
    prepare = prepare and conf.EVENTLOG_PREPARED_STATEMENTS
    if prepare and raw.prepare_threshold is None:
        # Django turns psycopg's preparing off for the whole connection
        # (None) unless the project sets a threshold. Its own cursors bind
        # client-side and never prepare whatever the threshold: the largest
        # one lets this cursor's explicit prepare=True through and prepares
        # nothing else.
        raw.prepare_threshold = sys.maxsize
    wrapper.cursor.eventlog_prepare = prepare
    connection.validate_thread_sharing()
    return wrapper


def _use_connection_timezone(connection: BaseDatabaseWrapper, cursor: Any) -> None:
    """Load timestamptz in the connection's time zone, as Django's cursors do
    when the time zone changed after the connection was opened."""
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format

    oid = cursor.adapters.types["timestamptz"].oid
    loader = cursor.adapters.get_loader(oid, Format.TEXT)
    if getattr(loader, "timezone", None) != connection.timezone:
        register_tzloader(connection.timezone, cursor)
    cursor.timezone = connection.timezone


@functools.cache
def _bound_cursor_class() -> Any:
    """psycopg 3's server-binding cursor that prepares unless told not to;
    None without psycopg 3."""
    try:
        import psycopg
    except ImportError:
        return None

    class BoundCursor(psycopg.Cursor[Any]):
        connection_class = psycopg.Connection

        def __init__(self, connection: psycopg.Connection[Any]) -> None:
            super().__init__(connection)
            #: Whether execute() prepares (set by each prepared_cursor()).
            self.eventlog_prepare = True
            #: The time zone its timestamptz loader uses.
            self.timezone: Any = None

        def execute(
            self,
            query: Any,
            params: Any = None,
            *,
            prepare: bool | None = None,
            binary: bool | None = None,
        ) -> Any:
            if prepare is None:
                prepare = self.eventlog_prepare
            return super().execute(query, params, prepare=prepare, binary=binary)

        def close(self) -> None:
            """Kept open for the next statement (Django's wrapper closes
            its cursor at the end of each ``with``): it goes with its
            connection. The last result stays until the next execute()."""

    return BoundCursor
