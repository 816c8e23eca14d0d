"""What the global feed costs appends: A and B with the feed and without it.

Migration 0007 gives every event a feed position: a ``txid`` bigint column,
set by the no-gap trigger (``pg_current_xact_id()``, or the previous event's
``txid`` when greater, read in the same lookup of the previous event the
trigger already made), and the index ``django_eventlog_event_feed_idx`` on
``(txid, id)``. The target (issue 16): scenarios A and B of
``eventstores.py`` at least 0.95x as fast with the feed as without it.

Two databases on one server, made and dropped by the run:

* ``feed``: migrated, as users have it;
* ``no feed``: a copy of it (``CREATE DATABASE ... TEMPLATE``, while both are
  empty) with migration 0007 reversed by its own ``BACKWARDS`` statements:
  the index dropped, migration 0005's trigger function back (it checks the
  previous event with ``EXISTS`` and sets nothing), the column dropped. So
  the difference is exactly what 0007 added: the column's 8 bytes a row, an
  entry in the feed index, and the trigger's reading and setting of ``txid``.
  The dropped column costs the rows nothing (a dropped column reads as NULL
  from the null bitmap, which these rows carry anyway for their NULL
  idempotency key).

The library writes the same way to both (its ``INSERT`` does not name
``txid``). Each round measures, in both databases in turns (each round
starting with the other one, a CHECKPOINT before each measurement):

* **A**: ``--logs`` logs x 10 events from this process through
  ``Log.objects.create_log`` and ``append``, each event its own transaction,
  as ``eventstores.py`` A (its ``write_logs``), in slices of 100 logs, the
  two variants taking turns slice by slice (after 5 untimed logs on each
  fresh connection), so that a burst of load falls on both alike;
* **B**: the same split between 4 spawned processes, as ``eventstores.py`` B;
* **S**: the same writes as A in a PL/pgSQL loop inside the server, one
  transaction per call: what the ``INSERT`` costs the server, with no
  client, network or commit, whose noise on a shared machine is larger than
  the difference; ``--server-logs`` logs in 10 slices, the variants taking
  turns slice by slice.

It prints each round's ratio (events/s with the feed / without: below 1,
the feed costs) and their median, the target's verdict for A and B, and for
S the µs per event each way and the difference. Run ``make bench`` (after
``eventstores.py``; PostgreSQL with default durability), or with a server's
PG* variables set::

    python benchmarks/feed_write_cost.py          # ~6 minutes on 2 CPUs
    python benchmarks/feed_write_cost.py --quick  # ~25 s, for CI

``EVENTLOG_PG_PREPARE=1`` (as ``make bench`` sets it) turns on server-side
binding with prepared statements.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "benchmarks")) if p not in sys.path]

from _shared import (  # noqa: E402
    execute,
    postgresql_line,
    progress,
    table,
    throwaway_database,
)
from eventstores import (  # noqa: E402
    EVENTS_PER_LOG,
    WORKERS,
    conninfo,
    in_workers,
    make_store,
    server,
    setup_django,
    write_logs,
)

FEED, NO_FEED = "feed", "no feed"
VARIANTS = (FEED, NO_FEED)
TARGET = 0.95
#: Untimed logs written after each switch of database: the new connection
#: prepares its statements and fills its caches before the clock starts.
WARM_UP_LOGS = 5
#: A's logs per slice: A alternates the variants every SLICE logs.
SLICE = 100
#: S alternates the variants this many times a round.
SERVER_SLICES = 10

# S: A's writes in the server, as the library makes them (the log and event
# 0 in one statement, then a plain INSERT per event), one transaction.
SERVER_LOOP = """
CREATE FUNCTION feed_bench_appends(logs integer, events integer) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    v_log uuid;
    v_at timestamptz := now();
BEGIN
    FOR l IN 1..logs LOOP
        v_log := gen_random_uuid();
        WITH new_log AS (
            INSERT INTO django_eventlog_log (id, kind, created_at)
            VALUES (v_log, 'account', v_at) RETURNING id
        )
        INSERT INTO django_eventlog_event
            (log_id, "index", type, payload, recorded_at, idempotency_key)
        SELECT v_log, 0, 'bench.credited',
            '{"amount": 1, "note": "benchmark credit"}'::jsonb, v_at, NULL
        FROM new_log;
        FOR v_i IN 1..events - 1 LOOP
            INSERT INTO django_eventlog_event
                (log_id, "index", type, payload, recorded_at, idempotency_key)
            VALUES (v_log, v_i, 'bench.credited',
                '{"amount": 1, "note": "benchmark credit"}'::jsonb, v_at, NULL);
        END LOOP;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / (logs * events);
END
$$
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--logs", type=int, default=1000, help="A's logs per measurement (1000)"
    )
    parser.add_argument(
        "--server-logs", type=int, default=2000, help="S's logs per measurement"
    )
    parser.add_argument("-r", "--rounds", type=int, default=9, help="rounds (9)")
    parser.add_argument(
        "--quick", action="store_true", help="100 logs, 3 rounds: seconds, for CI"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.logs, args.server_logs, args.rounds = SLICE, 2 * SERVER_SLICES, 3
    if args.rounds < 3 or args.logs < SLICE or args.server_logs < SERVER_SLICES:
        parser.error(
            f"--rounds must be at least 3, --logs at least {SLICE} "
            f"and --server-logs at least {SERVER_SLICES}"
        )
    return args


def use(dbname: str) -> None:
    """Point Django's connection at ``dbname`` (it reconnects on next use)."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = dbname


@contextmanager
def without_feed(params: dict[str, Any]) -> Iterator[str]:
    """A copy of the migrated (empty) database with migration 0007 reversed;
    yields its name, and drops it at the end, even on failure."""
    import psycopg
    from psycopg import sql

    source = params["dbname"]
    name = f"{source}_nofeed"
    maintenance = conninfo({**params, "dbname": "postgres"})
    use(source)  # closed: a template must have no connection
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(source)
            )
        )
    try:
        feed_migration = importlib.import_module(
            "django_eventlog.migrations.0007_feed_position"
        )
        use(name)
        for statement in feed_migration.BACKWARDS["postgresql"]:
            execute(statement)
        yield name
    finally:
        use(source)
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


def describe(dbname: str) -> tuple[bool, bool, bool]:
    """(the txid column, the feed index, a trigger that sets txid) in
    ``dbname``: what tells the two variants apart."""
    use(dbname)
    column = execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = "
        "'django_eventlog_event'::regclass AND attname = 'txid' "
        "AND NOT attisdropped"
    )[0][0]
    index = execute(
        "SELECT count(*) FROM pg_class WHERE relname = 'django_eventlog_event_feed_idx'"
    )[0][0]
    sets = execute(
        "SELECT count(*) FROM pg_proc WHERE proname = 'django_eventlog_reject_gap' "
        "AND prosrc LIKE '%%NEW.\"txid\" :=%%'"
    )[0][0]
    return bool(column), bool(index), bool(sets)


def checkpoint() -> None:
    # The writes of the measurement before are on disk: neither variant pays
    # for the other's.
    execute("CHECKPOINT")


def spread(values: Sequence[float]) -> str:
    """Half the range over the median: differences below it are noise."""
    return f"{(max(values) - min(values)) / 2 / statistics.median(values):.0%}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()
    from django.conf import settings

    databases: dict[str, str] = {}
    # events/s of A and B, µs/event of S, per variant, one value a round.
    measured: dict[str, dict[str, list[float]]] = {
        scenario: {variant: [] for variant in VARIANTS} for scenario in "ABS"
    }
    per_worker = args.logs // WORKERS
    slices = max(1, args.logs // SLICE)
    with throwaway_database() as name:
        settings.DEBUG = False  # no query log
        params = server()
        execute(SERVER_LOOP)
        with without_feed(params) as bare:
            databases = {FEED: name, NO_FEED: bare}
            shapes = {variant: describe(db) for variant, db in databases.items()}
            # Refuse to time anything but what the docstring says.
            assert shapes == {FEED: (True, True, True), NO_FEED: (False, False, False)}
            store = make_store("ours", params)

            def measure_a(turn: Sequence[str]) -> dict[str, float]:
                # Slices of SLICE logs, the variants in turns, so a burst of
                # load on a shared machine falls on both alike.
                seconds = dict.fromkeys(VARIANTS, 0.0)
                for n in range(slices):
                    for variant in turn if n % 2 == 0 else turn[::-1]:
                        use(databases[variant])
                        write_logs(store, WARM_UP_LOGS)
                        checkpoint()
                        start = time.perf_counter()
                        write_logs(store, SLICE)
                        seconds[variant] += time.perf_counter() - start
                events = slices * SLICE * EVENTS_PER_LOG
                return {variant: events / seconds[variant] for variant in VARIANTS}

            def measure_b(variant: str) -> float:
                use(databases[variant])
                checkpoint()
                wall, events, _ = in_workers(
                    "ours", {**params, "dbname": databases[variant]}, "own",
                    per_worker, None,
                )  # fmt: skip
                return events / wall

            def measure_s(turn: Sequence[str]) -> dict[str, float]:
                # In slices too, as A: the server's CPU is what load takes.
                micros = dict.fromkeys(VARIANTS, 0.0)
                for n in range(SERVER_SLICES):
                    for variant in turn if n % 2 == 0 else turn[::-1]:
                        use(databases[variant])
                        # Untimed: the session compiles the two functions.
                        execute("SELECT feed_bench_appends(1, %s)", [EVENTS_PER_LOG])
                        checkpoint()
                        rows = execute(
                            "SELECT feed_bench_appends(%s, %s)",
                            [args.server_logs // SERVER_SLICES, EVENTS_PER_LOG],
                        )
                        micros[variant] += float(rows[0][0]) / SERVER_SLICES
                return micros

            for n in range(args.rounds):
                turn = VARIANTS if n % 2 == 0 else VARIANTS[::-1]
                for variant, rate in measure_a(turn).items():
                    measured["A"][variant].append(rate)
                for variant in turn:
                    measured["B"][variant].append(measure_b(variant))
                for variant, cost in measure_s(turn).items():
                    measured["S"][variant].append(cost)
                progress(f"  round {n + 1}/{args.rounds} done")
            counts = {}
            for variant, db in databases.items():
                use(db)
                counts[variant] = execute("SELECT count(*) FROM django_eventlog_event")
            expected = (
                args.rounds
                * EVENTS_PER_LOG
                * (
                    slices * (SLICE + WARM_UP_LOGS)
                    + per_worker * WORKERS
                    + (args.server_logs // SERVER_SLICES + 1) * SERVER_SLICES
                )
            )
            assert all(c == [(expected,)] for c in counts.values()), counts
            use(name)
            database = postgresql_line()
    print(f"# benchmarks/feed_write_cost.py, {datetime.date.today()}")
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {database}"
    )
    print(
        f"# A: {slices * SLICE:,} logs x {EVENTS_PER_LOG} events, 1 process, "
        f"the variants in turns every {SLICE} logs; "
        f"B: {WORKERS} processes x {per_worker:,} logs x {EVENTS_PER_LOG}; "
        f"S: {args.server_logs:,} logs x {EVENTS_PER_LOG} in the server; "
        f"{args.rounds} rounds, the variants in turns; medians"
    )
    print(
        "# feed: as migrated; no feed: the same with migration 0007 reversed "
        "(no txid column, feed index or txid in the trigger)"
    )
    rows = [["scenario, variant", "µs/event", "+-", "events/s"]]
    for scenario in "AB":
        for variant in VARIANTS:
            rates = measured[scenario][variant]
            median = statistics.median(rates)
            name, us = f"{scenario}, {variant}", f"{1e6 / median:.1f}"
            rows.append([name, us, spread(rates), f"{median:,.0f}"])
    for variant in VARIANTS:
        micros = measured["S"][variant]
        rows.append(
            [f"S, {variant}", f"{statistics.median(micros):.1f}", spread(micros), "-"]
        )
    print(table(rows))
    for scenario in "AB":
        ratios = [
            feed / bare
            for feed, bare in zip(
                measured[scenario][FEED], measured[scenario][NO_FEED], strict=True
            )
        ]
        median = statistics.median(ratios)
        print(
            f"{scenario} feed vs no feed, each round: "
            + " ".join(f"{r:.3f}x" for r in ratios)
        )
        verdict = "met" if median >= TARGET else "NOT met"
        print(
            f"{scenario} feed vs no feed: {median:.3f}x the events/s "
            f"(median of {args.rounds} rounds; target >= {TARGET}x: {verdict})"
        )
    extra = [
        feed - bare
        for feed, bare in zip(measured["S"][FEED], measured["S"][NO_FEED], strict=True)
    ]
    print(
        f"S the feed costs the server {statistics.median(extra):+.2f} µs per event "
        f"(median of {args.rounds} rounds; each: "
        + " ".join(f"{e:+.2f}" for e in extra)
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
