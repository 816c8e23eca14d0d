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

With ``--sizes 10000,100000,1000000`` it then grows the store to each size
in turn and times what an operator's page loads cost at that size: the log
list (the first page and its ``EstimatedCountPaginator`` count), the kind
filter's choices (``KindListFilter``, a loose index scan) next to the
``SELECT DISTINCT kind`` Django's own field filter would run, and a
type-filtered timeline page (``LogAdmin.timeline_context`` with
``?type=``) of a log of 100,000 events where one event in 1,000 is of that
type, served by the ``(type, log, index)`` index, then once more with that
index dropped inside a transaction that is rolled back.

The database is a throwaway one, created with Django's test database
machinery on the server the PG* variables name (as ``testproject.settings``
does with ``EVENTLOG_DB=postgresql``) and dropped at the end. Run from the
repository root::

    PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres python benchmarks/admin_log_list.py
    python benchmarks/admin_log_list.py --quick    # 200 logs x 5 events, for CI
    python benchmarks/admin_log_list.py --events 5 --sizes 10000,100000,1000000
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
KINDS = 5
LONG_LOG_EVENTS = 100_000
RARE_EVERY = 1_000
RARE_TYPE = "bench.flagged"
TYPE_INDEX = "django_eventlog_type_log_idx"


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
    parser.add_argument(
        "--sizes",
        default="",
        help=(
            "comma-separated numbers of logs (ascending, the first at least "
            "--logs) to grow the store to, timing the log list, the kind "
            "filter and a filtered timeline at each"
        ),
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.sizes.split(",") if size]
    except ValueError:
        parser.error("--sizes takes numbers of logs: 10000,100000")
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
    if args.sizes and (args.sizes != sorted(args.sizes) or args.sizes[0] < args.logs):
        parser.error("--sizes must ascend from --logs on")
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


def load(logs: int, events: int, *, first: int = 0) -> None:
    """Insert ``logs`` logs of ``KINDS`` kinds, created one a second back from
    ``first`` seconds before now, and ``events`` events for each, one a
    second from the log's creation on (every tenth a withdrawal)."""
    from django.db import connection
    from django.utils import timezone

    from django_eventlog.models import Event, Log, uuid7

    now = timezone.now()
    ids = [str(uuid7()) for _ in range(logs)]
    created = [now - datetime.timedelta(seconds=first + logs - n) for n in range(logs)]
    kinds = [f"bench-{(first + n) % KINDS}" for n in range(logs)]
    log_table = connection.ops.quote_name(Log._meta.db_table)
    event_table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new AS (INSERT INTO {log_table} (id, kind, created_at) "
            "SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[]) "
            "RETURNING id, created_at) "
            f'INSERT INTO {event_table} (log_id, "index", type, payload, recorded_at) '
            "SELECT l.id, i, CASE WHEN i %% 10 = 9 THEN 'bench.withdrawn' "
            "ELSE 'bench.deposited' END, jsonb_build_object('amount', i), "
            "l.created_at + i * interval '1 second' "
            "FROM new l, generate_series(0, %s - 1) AS i "
            "ORDER BY l.created_at, i",
            [ids, kinds, created, events],
        )
    analyze()


def load_long_log() -> Any:
    """A log of ``LONG_LOG_EVENTS`` events, one in ``RARE_EVERY`` of type
    ``RARE_TYPE``, created long ago (it is on no page of the log list)."""
    from django.db import connection
    from django.utils import timezone

    from django_eventlog.models import Event, Log

    log = Log.objects.create(
        kind="bench-long", created_at=timezone.now() - datetime.timedelta(days=3650)
    )
    event_table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO {event_table} (log_id, "index", type, payload, recorded_at) '
            "SELECT %s, i, CASE WHEN i %% %s = 0 THEN %s ELSE 'bench.deposited' END, "
            "jsonb_build_object('amount', i), %s + i * interval '1 second' "
            "FROM generate_series(0, %s - 1) AS i",
            [log.pk, RARE_EVERY, RARE_TYPE, log.created_at, LONG_LOG_EVENTS],
        )
    return log


def analyze() -> None:
    """Set statistics and visibility map, as a database in service would have."""
    from django.db import connection

    from django_eventlog.models import Event, Log

    with connection.cursor() as cursor:
        for model in (Log, Event):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


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
    # Only the growing part (--sizes) pages through the long log.
    long_log = load_long_log() if args.sizes else None
    long_events = LONG_LOG_EVENTS if args.sizes else 0
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
    events_loaded = total - long_events

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
                (
                    "events",
                    f"{total:,}"
                    + (f" (one log of {long_events:,})" if long_events else ""),
                ),
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
    assert events_loaded == args.logs * args.events
    if args.sizes:
        print()
        scale(args, long_log, admin_page)


def scale(
    args: argparse.Namespace, long_log: Any, admin_page: Callable[[], Any]
) -> None:
    """Grow the store to each of ``args.sizes`` logs; time the pages at each."""
    from django.contrib import admin
    from django.db import connection, transaction
    from django.test import RequestFactory

    from django_eventlog import queries
    from django_eventlog.admin import EstimatedCountPaginator, KindListFilter, LogAdmin
    from django_eventlog.models import Log

    log_admin = LogAdmin(Log, admin.site)
    filtered = RequestFactory().get("/", {"type": RARE_TYPE})
    kinds = sorted({f"bench-{n % KINDS}" for n in range(KINDS)} | {"bench-long"})

    def log_list() -> Any:
        count = EstimatedCountPaginator(Log.objects.order_by("-created_at"), 100).count
        return admin_page(), count

    def kind_filter() -> list[str]:
        return queries.log_kinds(connection.alias, KindListFilter.limit)

    def distinct_kinds() -> list[str]:
        return list(
            Log.objects.order_by("kind").values_list("kind", flat=True).distinct()
        )

    def timeline() -> list[Any]:
        entries: list[Any] = log_admin.timeline_context(filtered, long_log)["timeline"]
        return entries

    def timeline_without_index() -> float:
        # Dropped in a transaction rolled back: the index is back afterwards.
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX {TYPE_INDEX}")
            ms = median_ms([timeline], args.number, args.repeats)[0]
            transaction.set_rollback(True)
        return ms

    rows: list[tuple[str, ...]] = [
        (
            "logs",
            "events",
            "load s",
            "log list ms",
            "kind filter ms",
            "DISTINCT kind ms",
            "filtered timeline ms",
            "same, no type index ms",
        )
    ]
    loaded = args.logs
    for size in args.sizes:
        started = time.perf_counter()
        if size > loaded:
            load(size - loaded, args.events, first=loaded)
            loaded = size
        load_seconds = time.perf_counter() - started
        if kind_filter() != kinds or distinct_kinds() != kinds:
            raise SystemExit("The kind filter lists the wrong kinds: nothing timed.")
        page = timeline()
        if [entry.index for entry in page] != list(
            range(0, PAGE_SIZE * RARE_EVERY, RARE_EVERY)
        ):
            raise SystemExit("The filtered timeline shows the wrong events.")
        if log_list()[1] < size:
            raise SystemExit("The log list miscounts: nothing timed.")
        timings = median_ms(
            [log_list, kind_filter, distinct_kinds, timeline], args.number, args.repeats
        )
        timings.append(timeline_without_index())
        rows.append(
            (
                f"{size:,}",
                f"{size * args.events + LONG_LOG_EVENTS:,}",
                f"{load_seconds:.0f}",
                *(f"{ms:.2f}" for ms in timings),
            )
        )
        print(f"  {size:,} logs timed", file=sys.stderr)
    print(
        f"The admin as the store grows ({args.events} events per log, {KINDS} kinds "
        f"and the long log's; the timeline: page 1 of type {RARE_TYPE!r}, one event "
        f"in {RARE_EVERY:,} of a log of {LONG_LOG_EVENTS:,}):"
    )
    print(table(rows))


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
