"""The SQL of the global feed: every log's events in one order.

PostgreSQL orders the feed by ``(txid, id)``: ``txid`` is the writing
transaction's id, or the previous event's of the log when that is greater
(the no-gap trigger sets it, migration 0007). A page holds only events whose
``txid`` lies below the horizon, the reading snapshot's ``xmin`` (leaving
out the reader's own transaction): every transaction below it has ended,
so no event can later be committed before a position once it was
delivered. SQLite has one writer at a time and orders
by the id alone. ``docs/read-side.md`` has the argument in full.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from .events import statements
from .per_alias import PerAlias

__all__ = ["FeedRow", "FeedStatements", "feed_statements"]

#: One event of the feed: txid (None on SQLite), id, log id as the driver
#: returns it, then as :data:`~django_eventlog.sql.Row`: index, type,
#: payload as JSON text, recorded_at (see
#: :attr:`FeedStatements.convert_recorded_at`), key, the metadata's four
#: columns and the schema version. The log's kind is not in it:
#: :func:`~django_eventlog.log_kinds.kinds_of` reads the kinds of a page's logs.
FeedRow = tuple[
    "int | None",
    int,
    Any,
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


class FeedStatements:
    """The feed's SQL of one database alias, built once."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        events = statements(connection)
        qn = connection.ops.quote_name
        self.postgresql = postgresql = connection.vendor == "postgresql"
        event_table, log_table = events.event_table, events.log_table
        self._id = id_ = f"{event_table}.{qn('id')}"
        self._txid = txid = f"{event_table}.{qn('txid')}"
        self._type = events.type_col
        self._log_table = log_table
        self._log_id, self._log_kind = events.log_id_col, events.log_kind_col
        # The kind as a subquery, not a JOIN: the planner then always reads
        # the (txid, id) index in order and stops at the LIMIT. With a JOIN,
        # a position past what ANALYZE last saw (events newer than the
        # statistics) is estimated at one row, and PostgreSQL hash-joins and
        # sorts every event after it, for every page.
        self._kind = (
            f"(SELECT {log_table}.{events.log_kind_col} FROM {log_table} "
            f"WHERE {log_table}.{events.log_id_col} = {events.log_col})"
        )
        # As in events.Statements: a timestamp in the session's time zone,
        # which convert_recorded_at makes aware.
        recorded_at = f"{event_table}.{qn('recorded_at')}"
        self._recorded_at = f"{recorded_at}::timestamp" if postgresql else recorded_at
        self._from = f"FROM {event_table}"
        #: Whether a page's cursor may load its rows with psycopg 3's own
        #: loaders (see ``feed_queries.page``): then a page selects
        #: timestamptz, which psycopg parses in C into the session's time
        #: zone (the connection's, set by Django), where Django's loader, or
        #: a timestamp made aware in Python as ``Statements`` does, cost 1 to
        #: 4 us an event more. And how a page's recorded_at becomes an aware
        #: datetime (None: as it comes).
        self.fast_loads = postgresql and connection.timezone is not None and _psycopg3()
        self.convert_recorded_at = events.convert_recorded_at
        selected = events.selected
        if self.fast_loads:
            self.convert_recorded_at = None
            selected = events.selected_stored
        self._selected = f"{txid}, {id_}, {events.log_col}, {selected}"
        #: The kinds of some logs (PostgreSQL: one parameter, the ids as a
        #: list; SQLite: see :meth:`kinds_sqlite`): rows of id and kind.
        self.kinds = (
            f"SELECT {events.log_id_col}, {events.log_kind_col} FROM {log_table} "
            f"WHERE {events.log_id_col} = ANY(%s)"
        )
        #: The horizon: the oldest transaction id still running (but the
        #: reader's), below which every event is final. None on SQLite (no
        #: horizon: one writer at a time).
        self.horizon_value: str | None = None
        #: The running transaction that holds the horizon back, if any: pid,
        #: seconds since it began, state, the start of its query.
        self.holder: str | None = None
        if postgresql:
            # The snapshot's xmin, but for the reader's own transaction: the
            # oldest other one still running (the snapshot's xip leaves the
            # own out); with none, past every id given out so far (xmax, or
            # the own id if later). The reader sees its own uncommitted
            # events, which commit or roll back with what it does with them.
            self.horizon_value = (
                "COALESCE((SELECT min(x::text::bigint) "
                "FROM pg_snapshot_xip(pg_current_snapshot()) AS x), "
                "GREATEST(pg_snapshot_xmax(pg_current_snapshot())::text::bigint, "
                "pg_current_xact_id_if_assigned()::text::bigint + 1))"
            )
            self.holder = (
                "SELECT pid, EXTRACT(EPOCH FROM clock_timestamp() - xact_start), "
                "state, left(query, 500) FROM pg_stat_activity "
                "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
                "ORDER BY age(backend_xid) DESC LIMIT 1"
            )
        #: The last position the feed delivers now (no parameters): a row of
        #: txid and id, or none when nothing is delivered.
        if postgresql:
            self.head = (
                f"SELECT {txid}, {id_} FROM {event_table} "
                f"WHERE {txid} < {self.horizon_value} "
                f"ORDER BY {txid} DESC, {id_} DESC LIMIT 1"
            )
        else:
            self.head = f"SELECT NULL, max({id_}) FROM {event_table}"
        #: The greatest stored txid and the next transaction id of the
        #: cluster (no parameters; PostgreSQL only): see ``ahead``.
        self.ahead: str | None = None
        if postgresql:
            # The next id: the snapshot's xmax, or past the reader's own
            # id when that is the latest given out (xmax does not count it).
            self.ahead = (
                f"SELECT (SELECT {txid} FROM {event_table} ORDER BY {txid} DESC "
                "LIMIT 1), GREATEST(pg_snapshot_xmax(pg_current_snapshot())"
                "::text::bigint, pg_current_xact_id_if_assigned()::text::bigint + 1)"
            )
        #: Committed events the horizon holds back now: at most %s of them.
        self.held_back: str | None = None
        if postgresql:
            self.held_back = (
                f"SELECT count(*) FROM (SELECT 1 FROM {event_table} "
                f"WHERE {txid} >= {self.horizon_value} LIMIT %s) AS held"
            )

    def _where(self, kinds: int, types: int, *, horizon: bool) -> str:
        """After a position, of the kinds and types given; with ``horizon``,
        only what the feed delivers now. Parameters: the position (txid and
        id on PostgreSQL, the id on SQLite), the kinds, the types."""
        if self.postgresql:
            conditions = [f"({self._txid}, {self._id}) > (%s, %s)"]
            if horizon:
                conditions.append(f"{self._txid} < {self.horizon_value}")
        else:
            conditions = [f"{self._id} > %s"]
        if kinds:
            conditions.append(f"{self._kind} IN ({', '.join(['%s'] * kinds)})")
        if types:
            conditions.append(f"{self._type} IN ({', '.join(['%s'] * types)})")
        return " AND ".join(conditions)

    def _order(self) -> str:
        return f"{self._txid}, {self._id}" if self.postgresql else self._id

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def page(self, kinds: int, types: int) -> str:
        """The next events the feed delivers after a position, in its order.

        Parameters: the position, ``kinds`` kinds, ``types`` type names, the
        most events to return. Rows: :data:`FeedRow`.
        """
        return (
            f"SELECT {self._selected} {self._from} "
            f"WHERE {self._where(kinds, types, horizon=True)} "
            f"ORDER BY {self._order()} LIMIT %s"
        )

    def kinds_sqlite(self, count: int) -> str:
        """:attr:`kinds` for SQLite, which has no arrays: ``count`` ids as
        as many parameters."""
        return (
            f"SELECT {self._log_id}, {self._log_kind} FROM {self._log_table} "
            f"WHERE {self._log_id} IN ({', '.join(['%s'] * count)})"
        )

    @functools.cache  # noqa: B019 (one instance per alias, kept for good)
    def behind(self, kinds: int, types: int) -> str:
        """How many committed events follow a position (at most a cap), and
        when the first of them was recorded; the horizon's held-back events
        count too. Parameters: the position, kinds, types, the cap."""
        return (
            f"SELECT count(*), min(recorded_at) FROM (SELECT {self._recorded_at} "
            f"AS recorded_at {self._from} "
            f"WHERE {self._where(kinds, types, horizon=False)} "
            f"ORDER BY {self._order()} LIMIT %s) AS behind"
        )


def _psycopg3() -> bool:
    """Whether Django talks to PostgreSQL through psycopg 3. Imported here:
    a project on SQLite alone may have no PostgreSQL driver at all."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


#: The feed's statements of a connection's alias.
feed_statements = PerAlias(FeedStatements)
