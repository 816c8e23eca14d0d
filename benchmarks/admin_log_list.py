"""Benchmark the first page of the admin's log list on PostgreSQL.

The log list shows each log's number of events and the time of its last
event. Two ways to compute the first page (50 logs, newest first):

* **naive**: ``Log.objects.annotate(Count("events"), Max("events__recorded_at"))``,
  a join of logs and events grouped by log;
* **admin**: what ``LogAdmin.get_queryset`` does, two correlated subqueries on
  the log's last event by index (``ORDER BY index DESC LIMIT 1``): the count
  is that index + 1, since indices are contiguous from 0.

It also times the unfiltered ``SELECT COUNT(*)`` of the events table against
the estimate ``EstimatedCountPaginator`` reads from ``pg_class``.

The database is a throwaway one, created with Django's test database
machinery on the server the PG* variables name (as ``testproject.settings``
does with ``EVENTLOG_DB=postgresql``) and dropped at the end. Run from the
repository root::

    PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres python benchmarks/admin_log_list.py
    python benchmarks/admin_log_list.py --quick    # 200 logs x 5 events, for CI
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _shared import table, throwaway_database

DEFAULT_LOGS = 10_000
DEFAULT_EVENTS = 20
QUICK_LOGS = 200
QUICK_EVENTS = 5
DEFAULT_REPEATS = 5
DEFAULT_NUMBER = 10
PAGE_SIZE = 50


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the first page of the admin's log list on PostgreSQL."
    )
    parser.add_argument("--logs", type=int, default=DEFAULT_LOGS, help="N logs")
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help="M events per log"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_LOGS} logs x {QUICK_EVENTS} events, 3 repeats of 3 calls",
    )
    parser.add_argument(
        "-r",
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"repeats, the median is reported (at least 3; {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "-n",
        "--number",
        type=int,
        default=DEFAULT_NUMBER,
        help=f"calls per repeat ({DEFAULT_NUMBER})",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.logs, args.events, args.repeats, args.number = (
            QUICK_LOGS,
            QUICK_EVENTS,
            3,
            3,
        )
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    if args.logs < PAGE_SIZE or args.events < 1 or args.number < 1:
        parser.error(f"--logs must be at least {PAGE_SIZE}; --events, -n at least 1")
    return args


def setup_django() -> None:
    """Configure testproject.settings for the PostgreSQL of the PG* variables."""
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    os.environ["EVENTLOG_DB"] = "postgresql"
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    import django

    django.setup()


def load(logs: int, events: int) -> None:
    """Insert ``logs`` logs, created one a second up to now, and ``events``
    events for each, one a second from the log's creation on."""
    from django.db import connection
    from django.utils import timezone

    from django_eventlog.models import Event, Log, uuid7

    now = timezone.now()
    ids = [str(uuid7()) for _ in range(logs)]
    created = [now - datetime.timedelta(seconds=logs - n) for n in range(logs)]
    log_table = connection.ops.quote_name(Log._meta.db_table)
    event_table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {log_table} (id, kind, created_at) "
            "SELECT id, 'bench', created_at "
            "FROM unnest(%s::uuid[], %s::timestamptz[]) AS t(id, created_at)",
            [ids, created],
        )
        cursor.execute(
            f'INSERT INTO {event_table} (log_id, "index", type, payload, recorded_at) '
            "SELECT l.id, i, 'bench.deposited', jsonb_build_object('amount', i), "
            "l.created_at + i * interval '1 second' "
            f"FROM {log_table} l, generate_series(0, %s - 1) AS i "
            "ORDER BY l.created_at, i",
            [events],
        )
    # As a database in service would be: statistics and visibility map set.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {log_table}")
        cursor.execute(f"VACUUM ANALYZE {event_table}")


def median_ms(
    functions: Sequence[Callable[[], object]], number: int, repeats: int
) -> list[float]:
    """Median over ``repeats`` of the mean ms per call of each function;
    the functions take turns within each repeat."""
    for function in functions:
        function()  # warm up: plans, caches, connection
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            for _ in range(number):
                function()
            samples[i].append((time.perf_counter() - start) / number * 1000)
    return [statistics.median(s) for s in samples]


def run(args: argparse.Namespace) -> None:
    import django
    import psycopg
    from django.contrib import admin
    from django.db import connection
    from django.db.models import Count, Max
    from django.test import RequestFactory

    from django_eventlog.admin import EstimatedCountPaginator, LogAdmin
    from django_eventlog.models import Event, Log

    started = time.perf_counter()
    load(args.logs, args.events)
    load_seconds = time.perf_counter() - started

    request = RequestFactory().get("/admin/django_eventlog/log/")
    # The change list orders by the admin's ordering, then by pk.
    ordering = ("-created_at", "-pk")

    def naive() -> list[tuple[Any, ...]]:
        page = Log.objects.annotate(
            count=Count("events"), last=Max("events__recorded_at")
        ).order_by(*ordering)[:PAGE_SIZE]
        return [(log.pk, log.count, log.last) for log in page]

    def admin_page() -> list[tuple[Any, ...]]:
        page = LogAdmin(Log, admin.site).get_queryset(request).order_by(*ordering)
        logs: list[Any] = list(page[:PAGE_SIZE])  # annotated: last_index, ...
        return [(log.pk, log.last_index + 1, log.last_recorded_at) for log in logs]

    def count_star() -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {Event._meta.db_table}")
            row = cursor.fetchone()
        assert row is not None
        return int(row[0])

    def estimate() -> int:
        return EstimatedCountPaginator(Event.objects.order_by("pk"), 100).count

    expected = naive()
    if admin_page() != expected or len(expected) != PAGE_SIZE:
        raise SystemExit("The two log list queries disagree: nothing timed.")
    if any(count != args.events for _, count, _ in expected):
        raise SystemExit("Unexpected event counts: nothing timed.")
    naive_ms, admin_ms, count_ms, estimate_ms = median_ms(
        [naive, admin_page, count_star, estimate], args.number, args.repeats
    )
    total, estimated = count_star(), estimate()

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()
    print(
        table(
            [
                ("run", "value"),
                ("date", datetime.datetime.now(datetime.timezone.utc).isoformat(" ")),
                ("python", platform.python_version()),
                ("django", django.get_version()),
                ("psycopg", psycopg.__version__),
                ("postgresql", str(server[0]) if server else "?"),
                ("machine", f"{platform.machine()}, {os.cpu_count()} CPUs"),
                ("logs", f"{args.logs:,}"),
                ("events per log", f"{args.events:,}"),
                ("events", f"{total:,}"),
                ("load + VACUUM ANALYZE", f"{load_seconds:.1f} s"),
                ("timing", f"median of {args.repeats} x {args.number} calls"),
            ]
        )
    )
    print()
    print(f"First page of the log list ({PAGE_SIZE} logs, newest first):")
    print(
        table(
            [
                ("query", "ms per page", "relative"),
                (
                    "naive: annotate(Count, Max)",
                    f"{naive_ms:.2f}",
                    ratio(naive_ms, admin_ms),
                ),
                ("admin: subqueries on last event", f"{admin_ms:.2f}", "1.0x"),
            ]
        )
    )
    print(f"naive / admin = {naive_ms / admin_ms:.1f}")
    print()
    print("Number of events of the unfiltered event list:")
    print(
        table(
            [
                ("how", "ms", "relative", "value"),
                (
                    "SELECT COUNT(*)",
                    f"{count_ms:.2f}",
                    ratio(count_ms, estimate_ms),
                    f"{total:,}",
                ),
                (
                    "EstimatedCountPaginator",
                    f"{estimate_ms:.2f}",
                    "1.0x",
                    f"{estimated:,}",
                ),
            ]
        )
    )
    print(
        f"COUNT(*) / estimate = {count_ms / estimate_ms:.1f}; the estimate is "
        f"{estimated / total:.1%} of the real count"
        + ("" if estimated > 10_000 else " (10,000 rows or fewer: counted for real)")
    )


def ratio(value: float, base: float) -> str:
    return f"{value / base:.1f}x"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()
    with throwaway_database():
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
