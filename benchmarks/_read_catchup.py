"""Catch-up of ``read_side.py``: 1,000,000 events loaded in bulk, read in
feed order by a no-op projection (ours), by raw psycopg and by the
``eventsourcing`` peer from its notification log; where ours spends its time.

Import after ``django.setup()``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import psycopg
from _ours import Credited
from _read_projections import NoopProjection
from django.conf import settings
from django.db import connection, transaction
from peer_eventsourcing import PeerStore

from django_eventlog.conf import DEFAULTS
from django_eventlog.models import Event, Log, ProjectionCheckpoint
from django_eventlog.projections import catch_up

PAYLOAD = json.dumps({"amount": 1, "note": "benchmark credit"}, separators=(",", ":"))
NOOP = "_read_projections.NoopProjection"
# As the projections' batch (EVENTLOG_PROJECTION_BATCH_SIZE's default).
PAGE = int(DEFAULTS["EVENTLOG_PROJECTION_BATCH_SIZE"])


def load(events: int, logs: int) -> float:
    """``events`` events spread over ``logs`` logs, ids interleaving the logs
    as concurrent writers would, written by one INSERT ... SELECT each with
    the triggers off (``session_replication_role = replica``): ``txid`` is
    set as the no-gap trigger sets it, the loading transaction's id."""
    log_table, event_table = Log._meta.db_table, Event._meta.db_table
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            f"INSERT INTO {log_table} (id, kind, created_at) "
            "SELECT md5('readbench' || g)::uuid, 'account', now() "
            "FROM generate_series(0, %s - 1) AS g",
            [logs],
        )
        cursor.execute(
            f"INSERT INTO {event_table} "
            "(log_id, index, type, payload, recorded_at, txid) "
            "SELECT md5('readbench' || (i %% %s))::uuid, i / %s, %s, %s::jsonb, "
            "now(), pg_current_xact_id()::text::bigint "
            "FROM generate_series(0, %s - 1) AS i ORDER BY i",
            [logs, logs, Credited.type_name, PAYLOAD, events],
        )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {log_table}, {event_table}")
    return time.perf_counter() - started


def ours(events: int) -> float:
    """events/s of ``catch_up()`` of the no-op projection from the start."""
    settings.EVENTLOG_PROJECTIONS = [NOOP]
    ProjectionCheckpoint.objects.filter(name=NoopProjection.name).delete()
    NoopProjection.handled = NoopProjection.total = 0
    started = time.perf_counter()
    handled = catch_up([NoopProjection.name])[NoopProjection.name]
    seconds = time.perf_counter() - started
    if not handled == NoopProjection.handled == NoopProjection.total == events:
        raise SystemExit(f"ours handled {handled} of {events} events")
    return events / seconds


def raw(conninfo: str, events: int) -> float:
    """events/s of keyset pages of the events table in feed order, the JSON
    decoded with ``json.loads``: psycopg 3, no JOIN, no horizon."""
    query = (
        f"SELECT txid, id, log_id, index, type, payload::text, recorded_at "
        f"FROM {Event._meta.db_table} WHERE (txid, id) > (%s, %s) "
        "ORDER BY txid, id LIMIT %s"
    )
    loads = json.loads
    count = total = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        after = (0, 0)
        while True:
            rows = conn.execute(query, [*after, PAGE], prepare=True).fetchall()
            for row in rows:
                total += loads(row[5])["amount"]
            count += len(rows)
            if len(rows) < PAGE:
                break
            after = (rows[-1][0], rows[-1][1])
        seconds = time.perf_counter() - started
    if count != events or total != events:
        raise SystemExit(f"raw read {count} of {events} events")
    return events / seconds


class Peer:
    """The ``eventsourcing`` app of ``peer_eventsourcing.py``, its table
    filled in bulk with rows the library itself wrote."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.store = PeerStore(**params)
        self.app = self.store.app
        self.params = params

    def load(self, events: int, logs: int) -> float:
        """Copy the rows of one account (its Created and one Credited
        event, saved by the library) into ``logs`` accounts of ``events //
        logs`` events, interleaved in the notification log as ours are."""
        started = time.perf_counter()
        account = self.store.create(1)
        self.store.append(account, 1)
        table = "accountsapp_events"
        per_log = events // logs
        with psycopg.connect(**self.params, autocommit=True) as conn:
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
            if count != 2:
                raise SystemExit(f"peer: {count} rows before the load, expected 2")
            conn.execute(
                f"INSERT INTO {table} "
                "(originator_id, originator_version, topic, state) "
                "SELECT md5('readbench' || (i %% %s))::uuid, i / %s + 1, "
                "CASE WHEN i < %s THEN c.topic ELSE e.topic END, "
                "CASE WHEN i < %s THEN c.state ELSE e.state END "
                f"FROM generate_series(0, %s - 1) AS i, {table} AS c, {table} AS e "
                "WHERE c.originator_version = 1 AND e.originator_version = 2 "
                "ORDER BY i",
                [logs, logs, logs, logs, per_log * logs - 2],
            )
            conn.execute(f"VACUUM ANALYZE {table}")
        return time.perf_counter() - started

    def read(self, events: int) -> float:
        """events/s of the notification log read in pages of 500
        (``select_notifications``), each notification mapped to its domain
        event."""
        select = self.app.recorder.select_notifications
        to_domain_event = self.app.mapper.to_domain_event
        count = total = 0
        started = time.perf_counter()
        start = 1
        while True:
            notifications = select(start, PAGE)
            for notification in notifications:
                total += to_domain_event(notification).amount  # type: ignore[attr-defined]
            count += len(notifications)
            if len(notifications) < PAGE:
                break
            start = notifications[-1].id + 1
        seconds = time.perf_counter() - started
        if count != events or total != events:
            raise SystemExit(f"peer read {count} of {events} events")
        return events / seconds

    def close(self) -> None:
        self.store.close()


def logs_of(events: int) -> int:
    """Logs to spread the events over: 100 events each."""
    return max(1, events // 100)


def breakdown(events: int) -> dict[str, float]:
    """Where ours spends its time, in µs per event, measured within one more
    catch-up: the feed's page query and fetch (``feed_queries.page``), the
    kinds of the page's logs (``log_kinds.kinds_of``), the msgspec decoding
    of the payloads, the rest of each record's construction
    (``FeedDecoder.feed_record``), and the rest: transactions, checkpoint
    reads and writes, the handler. Then, in a pass of its own, the same
    pages as a bare scan (text rows, no horizon), alternating with the
    library's page query page by page."""
    from django_eventlog import feed_queries, log_kinds, projection_runs
    from django_eventlog.records import FeedDecoder
    from django_eventlog.upcasting import StoredType

    spent = dict.fromkeys(("page", "kinds", "payload", "record"), 0.0)

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return call

    page, feed_record, decode_exactly = (
        feed_queries.page,
        FeedDecoder.feed_record,
        StoredType.decode_exactly,
    )
    # Timers around the library's own functions, for this one run.
    timers = {
        # The module, but with its page query timed.
        (projection_runs, "feed_queries"): SimpleNamespace(
            **{
                name: getattr(feed_queries, name)
                for name in feed_queries.__all__
                if name != "page"
            },
            page=timed("page", page),
        ),
        (projection_runs, "kinds_of"): timed("kinds", log_kinds.kinds_of),
        (FeedDecoder, "feed_record"): timed("record", feed_record),
        (StoredType, "decode_exactly"): timed("payload", decode_exactly),
    }
    for (owner, name), replacement in timers.items():
        setattr(owner, name, replacement)
    try:
        total = events / ours(events)
    finally:
        setattr(projection_runs, "feed_queries", feed_queries)  # noqa: B010
        setattr(projection_runs, "kinds_of", log_kinds.kinds_of)  # noqa: B010
        FeedDecoder.feed_record = feed_record  # type: ignore[method-assign]
        StoredType.decode_exactly = decode_exactly  # type: ignore[method-assign]
    spent["record"] -= spent["payload"]
    spent["rest"] = total - sum(spent.values())
    spent["total"] = total
    spent["library page"], spent["bare"] = _pages()
    return {name: seconds / events * 1e6 for name, seconds in spent.items()}


def _pages() -> tuple[float, float]:
    """Seconds of the library's page queries over the whole feed, and of
    the same pages as a bare scan (no horizon, rows in text as Django's
    cursor returns them), page by page in turns."""
    from django_eventlog import feed_queries

    plain = (
        f"SELECT txid, id, log_id, index, type, payload::text, "
        f"recorded_at::timestamp, idempotency_key FROM {Event._meta.db_table} "
        "WHERE (txid, id) > (%s, %s) ORDER BY txid, id LIMIT %s"
    )

    def bare(after: tuple[int, int]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(plain, [*after, PAGE])
            cursor.fetchall()

    library = no_join = 0.0
    after = (0, 0)
    for n in itertools.count():
        # Each page, the other first: the first query after a pause may
        # wait for the server process to be scheduled.
        if n % 2:
            started = time.perf_counter()
            bare(after)
            no_join += time.perf_counter() - started
        started = time.perf_counter()
        rows = feed_queries.page("default", after, (), (), PAGE)
        library += time.perf_counter() - started
        if not n % 2:
            started = time.perf_counter()
            bare(after)
            no_join += time.perf_counter() - started
        if len(rows) < PAGE:
            break
        after = (rows[-1][0] or 0, rows[-1][1])
    return library, no_join


def bigger_batches(events: int, batch_size: int) -> float:
    """events/s of ``ours`` with the projection's ``batch_size`` set."""
    NoopProjection.batch_size = batch_size
    try:
        return ours(events)
    finally:
        NoopProjection.batch_size = None
