"""What it costs to refuse a gap in a log in the database, for every writer.

An event may be stored at index 0 of a log that exists, or right after the
event before it in the same log. Today only the library's own INSERT checks
that (``WHERE EXISTS`` the previous event); any other writer can store
index 5 after index 0. The candidates for enforcing it in the database, each
on its own copy of ``django_eventlog_log`` and ``django_eventlog_event``
(same columns, constraints, indexes and log foreign key as ours):

* ``guard``: today, the baseline. ``INSERT ... SELECT ... WHERE EXISTS``
  (the previous event; at index 0, the log). Nothing stops other writers.
* ``trigger``: a plain ``INSERT ... VALUES`` and a ``BEFORE INSERT FOR EACH
  ROW`` trigger that raises ``foreign_key_violation`` with the constraint
  name ``django_eventlog_event_no_gap`` unless the event may be stored.
* ``trigger+guard``: both (the library keeps its ``WHERE EXISTS``).
* ``fk``: a plain INSERT; a stored generated column ``previous_index``
  (``index - 1``, NULL at index 0) with a NOT DEFERRABLE foreign key
  ``(log_id, previous_index)`` to the same table's ``(log_id, index)``,
  named ``django_eventlog_event_no_gap``. For index 0 the log foreign key
  is made NOT DEFERRABLE too (ours is DEFERRABLE INITIALLY DEFERRED).
* ``none``: a plain INSERT and no check at all: the floor.

Scenarios, on PostgreSQL through psycopg 3 (prepared statements, autocommit,
one statement per write, as the library with ``server_side_binding`` and
``prepare_threshold``) and on SQLite through Python's ``sqlite3`` (as
Django connects: autocommit, ``foreign_keys`` ON):

A. one connection, many logs: each log created (log row and event 0), then
   appended to (default 200 logs x 10 events);
B. (PostgreSQL) 4 processes at once, each on its own logs: events/s;
C. one connection, one hot log (the foreign key locks the previous event
   FOR KEY SHARE on every append, a trigger does not);
S. (PostgreSQL) the writes of A, then of C, in a PL/pgSQL loop inside the
   server, in one transaction per repeat: what the INSERT costs the server,
   without the client, the network and the commit, whose noise on a busy
   machine is larger than the differences between the candidates.

Before timing, every candidate is checked: does it refuse a gap and an
event 0 of a missing log, and accept a contiguous multi-row INSERT? The
answers are printed next to what each candidate is meant to do.

Run from the repository root with the PG* variables naming a server and a
role that may create databases (``scripts/postgres.sh start``)::

    python benchmarks/gap_guard.py            # 1-3 minutes
    python benchmarks/gap_guard.py --quick    # seconds, for CI
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "benchmarks")) if p not in sys.path]

from _shared import table  # noqa: E402

NO_GAP = "django_eventlog_event_no_gap"
PG_CANDIDATES = ("guard", "trigger", "trigger+guard", "fk", "none")
WORKERS = 4
EVENTS_PER_LOG = 10
PAYLOAD = json.dumps({"amount": 1, "note": "benchmark credit"}, separators=(",", ":"))
TYPE = "bench.credited"


@dataclass(frozen=True)
class Sizes:
    logs: int  # A; B: per worker
    hot: int  # C: appends to one log
    repeats: int
    server: int  # S: events per call (as logs x 10, then as one log)


FULL = Sizes(logs=200, hot=2000, repeats=5, server=20_000)
QUICK = Sizes(logs=10, hot=50, repeats=3, server=200)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to keep it working (CI)"
    )
    parser.add_argument(
        "-r", "--repeats", type=int, help="repeats (at least 3; 5, --quick 3)"
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="commits wait for the disk (server's synchronous_commit, SQLite "
        "synchronous=FULL); default: they do not, so the check's cost is not "
        "lost in the fsync's",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeats is None:
        args.repeats = sizes.repeats
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    args.sizes = sizes
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Writer:
    """One connection writing one candidate's tables the library's way:
    ``create`` a log with its event 0, ``append`` the event at an index."""

    conn: Any

    def create(self) -> Any:
        raise NotImplementedError

    def append(self, log_id: Any, index: int) -> None:
        raise NotImplementedError

    def logs(self, count: int) -> int:
        """Write ``count`` logs of EVENTS_PER_LOG events; return the events."""
        for _ in range(count):
            log_id = self.create()
            for index in range(1, EVENTS_PER_LOG):
                self.append(log_id, index)
        return count * EVENTS_PER_LOG

    def close(self) -> None:
        self.conn.close()


# PostgreSQL: one schema per candidate, each with a ``log`` and an ``event``.

PG_OURS = """
CREATE TABLE log (
    id uuid PRIMARY KEY,
    kind varchar(100) NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX log_kind ON log (kind);
CREATE INDEX log_created_at ON log (created_at);
CREATE TABLE event (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    "index" integer NOT NULL,
    type varchar(200) NOT NULL,
    payload jsonb NOT NULL,
    recorded_at timestamptz NOT NULL,
    idempotency_key varchar(255) NULL,
    log_id uuid NOT NULL,
    CONSTRAINT django_eventlog_event_log_index_uniq UNIQUE (log_id, "index"),
    CONSTRAINT django_eventlog_event_idempotency_key_uniq UNIQUE (idempotency_key),
    CONSTRAINT django_eventlog_event_index_gte_0 CHECK ("index" >= 0)
);
CREATE INDEX event_recorded_at_brin ON event USING brin (recorded_at);
CREATE INDEX event_type_log_idx ON event (type, log_id, "index");
"""
PG_LOG_FK = """
ALTER TABLE event ADD CONSTRAINT event_log_id_fk FOREIGN KEY (log_id)
    REFERENCES log (id) {};
"""
PG_TRIGGER = f"""
CREATE FUNCTION event_no_gap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW."index" = 0 THEN
        IF EXISTS (SELECT 1 FROM {{schema}}.log WHERE id = NEW.log_id) THEN
            RETURN NEW;
        END IF;
    ELSIF EXISTS (
        SELECT 1 FROM {{schema}}.event
        WHERE log_id = NEW.log_id AND "index" = NEW."index" - 1
    ) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'event % of log % has no event before it',
        NEW."index", NEW.log_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{NO_GAP}';
END
$$;
CREATE TRIGGER {NO_GAP} BEFORE INSERT ON event
    FOR EACH ROW EXECUTE FUNCTION event_no_gap();
"""
PG_FK = f"""
ALTER TABLE event ADD COLUMN previous_index integer
    GENERATED ALWAYS AS (CASE WHEN "index" > 0 THEN "index" - 1 END) STORED;
ALTER TABLE event ADD CONSTRAINT {NO_GAP} FOREIGN KEY (log_id, previous_index)
    REFERENCES event (log_id, "index") NOT DEFERRABLE;
"""
COLUMNS = '(log_id, "index", type, payload, recorded_at, idempotency_key)'
# S: the same writes in a loop inside the server, in one transaction: no
# client, network or commit in the figure, only what the INSERT costs the
# server, which is where the candidates differ.
PG_LOOP = """
CREATE FUNCTION {s}.appends(logs integer, events integer) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    v_log uuid;
    v_at timestamptz := now();
BEGIN
    FOR l IN 1..logs LOOP
        v_log := gen_random_uuid();
        WITH new_log AS (
            INSERT INTO {s}.log (id, kind, created_at)
            VALUES (v_log, 'account', v_at) RETURNING id
        )
        INSERT INTO {s}.event {columns}
        SELECT v_log, 0, '{type}', '{payload}'::jsonb, v_at, NULL FROM new_log;
        FOR v_i IN 1..events - 1 LOOP
            {append};
            IF NOT FOUND THEN
                RAISE EXCEPTION 'append % refused', v_i;
            END IF;
        END LOOP;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / (logs * events);
END
$$
"""
PG_LOOP_GUARDED = (
    "INSERT INTO {s}.event {columns} "
    "SELECT v_log, v_i, '{type}', '{payload}'::jsonb, v_at, NULL WHERE EXISTS "
    '(SELECT 1 FROM {s}.event WHERE log_id = v_log AND "index" = v_i - 1)'
)
PG_LOOP_PLAIN = (
    "INSERT INTO {s}.event {columns} "
    "VALUES (v_log, v_i, '{type}', '{payload}'::jsonb, v_at, NULL)"
)


def pg_schema(candidate: str) -> str:
    return "gap_" + candidate.replace("+", "_")


def pg_setup(conn: psycopg.Connection[Any], candidate: str) -> None:
    schema = sql.Identifier(pg_schema(candidate))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    conn.execute(sql.SQL("SET search_path = {}").format(schema))
    conn.execute(PG_OURS)
    deferral = (
        "NOT DEFERRABLE" if candidate == "fk" else "DEFERRABLE INITIALLY DEFERRED"
    )
    conn.execute(PG_LOG_FK.format(deferral))
    if candidate.startswith("trigger"):
        conn.execute(PG_TRIGGER.format(schema=pg_schema(candidate)))
    if candidate == "fk":
        conn.execute(PG_FK)
    conn.execute("RESET search_path")
    names = {
        "s": pg_schema(candidate),
        "columns": COLUMNS,
        "type": TYPE,
        "payload": PAYLOAD,
    }
    guarded = candidate in ("guard", "trigger+guard")
    append = (PG_LOOP_GUARDED if guarded else PG_LOOP_PLAIN).format(**names)
    conn.execute(PG_LOOP.format(append=append, **names))


@dataclass(frozen=True)
class PgStatements:
    create: str  # the log and event 0 in one statement, as the library
    append: str
    guarded: bool  # append takes the previous index as two more parameters


def pg_statements(candidate: str) -> PgStatements:
    s = pg_schema(candidate)
    values = "%s, %s, %s, %s::jsonb, %s, NULL"
    create = (
        f"WITH new_log AS (INSERT INTO {s}.log (id, kind, created_at) "
        f"VALUES (%s, 'account', %s) RETURNING id) "
        f"INSERT INTO {s}.event {COLUMNS} SELECT {values} FROM new_log"
    )
    if candidate in ("guard", "trigger+guard"):
        append = (
            f"INSERT INTO {s}.event {COLUMNS} SELECT {values} WHERE EXISTS "
            f'(SELECT 1 FROM {s}.event WHERE log_id = %s AND "index" = %s)'
        )
        return PgStatements(create, append, True)
    return PgStatements(
        create, f"INSERT INTO {s}.event {COLUMNS} VALUES ({values})", False
    )


class PgWriter(Writer):
    """A :class:`Writer` through psycopg, prepared statements, autocommit."""

    def __init__(self, conninfo: str, candidate: str, durable: bool = True) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        if not durable:
            self.conn.execute("SET synchronous_commit = off")
        self.st = pg_statements(candidate)

    def create(self) -> uuid.UUID:
        log_id, at = uuid.uuid4(), now()
        self.conn.execute(
            self.st.create, [log_id, at, log_id, 0, TYPE, PAYLOAD, at], prepare=True
        )
        return log_id

    def append(self, log_id: uuid.UUID, index: int) -> None:
        params: list[Any] = [log_id, index, TYPE, PAYLOAD, now()]
        if self.st.guarded:
            params += [log_id, index - 1]
        cursor = self.conn.execute(self.st.append, params, prepare=True)
        if cursor.rowcount != 1:
            raise SystemExit(f"append of {index} to {log_id} refused")


# The refusal checks, PostgreSQL and SQLite alike: (label, what each
# candidate is meant to answer).

ENFORCING = ("trigger", "trigger+guard", "fk")
CHECKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (label, the candidates meant to answer yes)
    ("its own append of 5 after 0 stores nothing", ("guard", *ENFORCING)),
    ("plain INSERT of 7 after 0 refused", ENFORCING),
    ("plain INSERT of event 0, missing log, refused at once", ENFORCING),
    ("... refused by COMMIT", PG_CANDIDATES),  # the log foreign key
    ("INSERT of 0,1,2 in one statement accepted", PG_CANDIDATES),
    ("create (log + event 0) accepted", PG_CANDIDATES),
)


def expected(check: str, candidate: str) -> bool:
    return candidate in dict(CHECKS)[check]


def pg_check(conninfo: str, candidate: str) -> dict[str, str]:
    """The answers of one candidate to CHECKS, and the error a gap raises."""
    s = pg_schema(candidate)
    writer = PgWriter(conninfo, candidate)
    plain = f"INSERT INTO {s}.event {COLUMNS} VALUES (%s, %s, %s, %s::jsonb, %s, NULL)"
    answers: dict[str, str] = {}
    conn = writer.conn
    try:
        log_id = writer.create()
        params: list[Any] = [log_id, 5, TYPE, PAYLOAD, now()]
        if writer.st.guarded:
            stored = conn.execute(writer.st.append, [*params, log_id, 4]).rowcount == 1
        else:
            stored = _pg_inserts(conn, writer.st.append, params)
        answers[CHECKS[0][0]] = yes(not stored)
        error = ""
        try:
            conn.execute(plain, [log_id, 7, TYPE, PAYLOAD, now()])
            refused = False
        except psycopg.errors.IntegrityError as e:
            refused = True
            error = f"{e.sqlstate} {e.diag.constraint_name}"
        answers[CHECKS[1][0]] = yes(refused)
        missing = uuid.uuid4()
        at_once = False
        try:
            with conn.transaction():
                try:
                    conn.execute(plain, [missing, 0, TYPE, PAYLOAD, now()])
                except psycopg.errors.IntegrityError:
                    at_once = True
                    raise
        except psycopg.errors.IntegrityError:
            pass
        answers[CHECKS[2][0]] = yes(at_once)
        answers[CHECKS[3][0]] = yes(
            not _pg_inserts(conn, plain, [missing, 0, TYPE, PAYLOAD, now()])
        )
        other, at = uuid.uuid4(), now()
        conn.execute(f"INSERT INTO {s}.log VALUES (%s, 'account', %s)", [other, at])
        rows = [v for i in range(3) for v in (other, i, TYPE, PAYLOAD, at)]
        multi = f"INSERT INTO {s}.event {COLUMNS} VALUES " + ", ".join(
            ["(%s, %s, %s, %s::jsonb, %s, NULL)"] * 3
        )
        answers[CHECKS[4][0]] = yes(_pg_inserts(conn, multi, rows))
        try:
            writer.create()
            answers[CHECKS[5][0]] = yes(True)
        except psycopg.errors.IntegrityError:
            answers[CHECKS[5][0]] = yes(False)
        answers["error on a gap"] = error or "-"
    finally:
        writer.close()
    return answers


def _pg_inserts(
    conn: psycopg.Connection[Any], statement: str, params: list[Any]
) -> bool:
    try:
        return conn.execute(statement, params).rowcount > 0
    except psycopg.errors.IntegrityError:
        return False


def yes(value: bool) -> str:
    return "yes" if value else "no"


# Timing.


@dataclass
class Figure:
    samples: list[float]  # us per append
    wal: list[float]  # WAL bytes per append (PostgreSQL)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the range of the samples, relative to the median."""
        return (max(self.samples) - min(self.samples)) / 2 / self.median


def interleaved(
    candidates: Sequence[str],
    repeats: int,
    before: Callable[[], None],
    measure: Callable[[str], tuple[float, float]],
) -> dict[str, Figure]:
    """``repeats`` measurements per candidate, the candidates taking turns,
    each repeat starting with another; ``before`` (a CHECKPOINT) runs before
    each measurement, so no candidate pays for the writes of another."""
    figures = {c: Figure([], []) for c in candidates}
    for n in range(repeats):
        shift = n % len(candidates)
        for candidate in [*candidates[shift:], *candidates[:shift]]:
            before()
            us, wal = measure(candidate)
            figures[candidate].samples.append(us)
            figures[candidate].wal.append(wal)
        progress(f"  repeat {n + 1}/{repeats} done")
    return figures


class PgBench:
    def __init__(self, conninfo: str, args: argparse.Namespace) -> None:
        self.conninfo = conninfo
        self.args = args
        self.sizes: Sizes = args.sizes
        self.admin = psycopg.connect(conninfo, autocommit=True)
        self.writers = {c: PgWriter(conninfo, c, args.durable) for c in PG_CANDIDATES}

    def lsn(self) -> int:
        row: Any = self.admin.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"
        ).fetchone()
        return int(row[0])

    def checkpoint(self) -> None:
        self.admin.execute("CHECKPOINT")

    def timed(self, work: Callable[[], int]) -> tuple[float, float]:
        lsn = self.lsn()
        start = time.perf_counter()
        appends = work()
        seconds = time.perf_counter() - start
        return seconds / appends * 1e6, (self.lsn() - lsn) / appends

    def scenario_a(self) -> dict[str, Figure]:
        progress(
            f"PostgreSQL A: {self.sizes.logs} logs x {EVENTS_PER_LOG}, 1 connection"
        )
        for writer in self.writers.values():  # warm up: prepare, caches
            writer.logs(2)
        return interleaved(
            PG_CANDIDATES,
            self.args.repeats,
            self.checkpoint,
            lambda c: self.timed(lambda: self.writers[c].logs(self.sizes.logs)),
        )

    def scenario_b(self) -> dict[str, Figure]:
        progress(f"PostgreSQL B: {WORKERS} processes x {self.sizes.logs} logs")

        def measure(candidate: str) -> tuple[float, float]:
            lsn = self.lsn()
            wall, events = in_workers(
                self.conninfo, candidate, self.sizes.logs, self.args.durable
            )
            # us per append of the whole group (1e6 / events per second)
            return wall / events * 1e6, (self.lsn() - lsn) / events

        return interleaved(PG_CANDIDATES, self.args.repeats, self.checkpoint, measure)

    def scenario_c(self) -> dict[str, Figure]:
        progress(f"PostgreSQL C: {self.sizes.hot} appends to one log, 1 connection")
        hot: dict[str, list[Any]] = {
            c: [self.writers[c].create(), 1] for c in PG_CANDIDATES
        }

        def work(candidate: str) -> int:
            writer, state = self.writers[candidate], hot[candidate]
            log_id, start = state
            for index in range(start, start + self.sizes.hot):
                writer.append(log_id, index)
            state[1] = start + self.sizes.hot
            return self.sizes.hot

        figures = interleaved(
            PG_CANDIDATES,
            self.args.repeats,
            self.checkpoint,
            lambda c: self.timed(lambda: work(c)),
        )
        for candidate, (log_id, next_index) in hot.items():
            s = pg_schema(candidate)
            row: Any = self.admin.execute(
                f'SELECT count(*), max("index") FROM {s}.event WHERE log_id = %s',
                [log_id],
            ).fetchone()
            if tuple(row) != (next_index, next_index - 1):
                raise SystemExit(f"C: {candidate}'s hot log is {row}")
        return figures

    def scenario_s(self, logs: int, events: int) -> dict[str, Figure]:
        progress(f"PostgreSQL S: {logs} logs x {events} in the server")

        def measure(candidate: str) -> tuple[float, float]:
            lsn = self.lsn()
            row: Any = self.admin.execute(
                f"SELECT {pg_schema(candidate)}.appends(%s, %s)", [logs, events]
            ).fetchone()
            return float(row[0]), (self.lsn() - lsn) / (logs * events)

        for candidate in PG_CANDIDATES:  # warm up: plans, caches
            measure(candidate)
        return interleaved(PG_CANDIDATES, self.args.repeats, self.checkpoint, measure)

    def describe(self) -> dict[str, str]:
        row: Any = self.admin.execute(
            "SELECT version(), current_setting('fsync'), "
            "current_setting('synchronous_commit'), "
            "current_setting('full_page_writes'), current_setting('wal_level')"
        ).fetchone()
        version, fsync, sync, fpw, wal_level = row
        return {
            "postgresql": str(version).split(" on ")[0],
            "psycopg": f"{psycopg.__version__} (libpq {psycopg.pq.version()}, "
            f"{psycopg.pq.__impl__})",
            "server durability": f"fsync={fsync}, synchronous_commit={sync}, "
            f"full_page_writes={fpw}, wal_level={wal_level}",
        }

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.admin.close()


def worker(
    conninfo: str,
    candidate: str,
    logs: int,
    durable: bool,
    barrier: Any,
    results: Any,
) -> None:
    """One of the WORKERS processes of B."""
    try:
        writer = PgWriter(conninfo, candidate, durable)
        writer.logs(1)  # prepare
        barrier.wait()
        start = time.monotonic()  # system-wide: comparable between processes
        events = writer.logs(logs)
        results.put((start, time.monotonic(), events, None))
        writer.close()
    except BaseException as e:
        barrier.abort()
        results.put((0.0, 0.0, 0, f"{type(e).__name__}: {e}"))


def in_workers(
    conninfo: str, candidate: str, logs: int, durable: bool
) -> tuple[float, int]:
    """Run WORKERS processes; return (seconds from first start to last end, events)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=worker, args=(conninfo, candidate, logs, durable, barrier, results)
        )
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    errors = sorted((e for *_, e in outcomes if e), key=lambda e: "Barrier" in e)
    if errors:
        raise SystemExit(f"B: {candidate} worker failed: {errors[0]}")
    wall = max(o[1] for o in outcomes) - min(o[0] for o in outcomes)
    return wall, sum(o[2] for o in outcomes)


@contextmanager
def pg_database() -> Iterator[str]:
    """A throwaway database on the PG* server, dropped at the end; its conninfo."""
    name = f"eventlog_gap_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(dbname=name)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )


# SQLite: one database file per candidate, connected as Django connects
# (autocommit, PRAGMA foreign_keys = ON; Django 5.2 leaves the journal mode
# at SQLite's default, DELETE, unless OPTIONS["init_command"] sets one).

SQLITE_LOG = """
CREATE TABLE log (
    id char(32) NOT NULL PRIMARY KEY,
    kind varchar(100) NOT NULL,
    created_at datetime NOT NULL
);
CREATE INDEX log_kind ON log (kind);
CREATE INDEX log_created_at ON log (created_at);
"""
SQLITE_EVENT = """
CREATE TABLE event (
    id integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "index" integer NOT NULL,
    type varchar(200) NOT NULL,
    payload text NOT NULL CHECK ((JSON_VALID(payload) OR payload IS NULL)),
    recorded_at datetime NOT NULL,
    idempotency_key varchar(255) NULL,
    log_id char(32) NOT NULL REFERENCES log (id) {deferral},{extra}
    CONSTRAINT django_eventlog_event_log_index_uniq UNIQUE (log_id, "index"),
    CONSTRAINT django_eventlog_event_idempotency_key_uniq UNIQUE (idempotency_key),
    CONSTRAINT django_eventlog_event_index_gte_0 CHECK ("index" >= 0)
);
CREATE INDEX event_type_log_idx ON event (type, log_id, "index");
"""
SQLITE_FK = f"""
    previous_index integer
        GENERATED ALWAYS AS (CASE WHEN "index" > 0 THEN "index" - 1 END) STORED,
    CONSTRAINT {NO_GAP} FOREIGN KEY (log_id, previous_index)
        REFERENCES event (log_id, "index"),"""
SQLITE_TRIGGER = f"""
CREATE TRIGGER {NO_GAP} BEFORE INSERT ON event
WHEN NOT (
    (NEW."index" = 0 AND EXISTS (SELECT 1 FROM log WHERE id = NEW.log_id))
    OR EXISTS (
        SELECT 1 FROM event WHERE log_id = NEW.log_id AND "index" = NEW."index" - 1
    )
)
BEGIN
    SELECT RAISE(ABORT, '{NO_GAP}: no event before this one');
END;
"""
SQLITE_COLUMNS = COLUMNS
SQLITE_INSERT = f"INSERT INTO event {SQLITE_COLUMNS} VALUES (?, ?, ?, ?, ?, NULL)"
SQLITE_GUARDED = (
    f"INSERT INTO event {SQLITE_COLUMNS} SELECT ?, ?, ?, ?, ?, NULL WHERE EXISTS "
    '(SELECT 1 FROM event WHERE log_id = ? AND "index" = ?)'
)


def sqlite_connect(
    path: Path, journal: str, durable: bool = True
) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA journal_mode = {journal}")
    if not durable:
        conn.execute("PRAGMA synchronous = OFF")
    return conn


def sqlite_setup(path: Path, candidate: str, journal: str) -> None:
    with closing(sqlite_connect(path, journal)) as conn:
        deferral = "" if candidate == "fk" else "DEFERRABLE INITIALLY DEFERRED"
        extra = SQLITE_FK if candidate == "fk" else ""
        conn.executescript(
            SQLITE_LOG + SQLITE_EVENT.format(deferral=deferral, extra=extra)
        )
        if candidate.startswith("trigger"):
            conn.executescript(SQLITE_TRIGGER)


class SqliteWriter(Writer):
    """A :class:`Writer` through Python's sqlite3, as Django connects."""

    def __init__(
        self, path: Path, candidate: str, journal: str, durable: bool = True
    ) -> None:
        self.conn = sqlite_connect(path, journal, durable)
        self.guarded = candidate in ("guard", "trigger+guard")

    def create(self) -> str:
        log_id, at = uuid.uuid4().hex, now().isoformat(" ")
        self.conn.execute("BEGIN")
        try:
            self.conn.execute(
                "INSERT INTO log (id, kind, created_at) VALUES (?, 'account', ?)",
                [log_id, at],
            )
            self.conn.execute(SQLITE_INSERT, [log_id, 0, TYPE, PAYLOAD, at])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return log_id

    def append(self, log_id: str, index: int) -> None:
        params: list[Any] = [log_id, index, TYPE, PAYLOAD, now().isoformat(" ")]
        if self.guarded:
            cursor = self.conn.execute(SQLITE_GUARDED, [*params, log_id, index - 1])
        else:
            cursor = self.conn.execute(SQLITE_INSERT, params)
        if cursor.rowcount != 1:
            raise SystemExit(f"append of {index} to {log_id} refused")


def sqlite_inserts(conn: sqlite3.Connection, statement: str, params: list[Any]) -> bool:
    try:
        return conn.execute(statement, params).rowcount > 0
    except sqlite3.IntegrityError:
        return False


def sqlite_check(path: Path, candidate: str, journal: str) -> dict[str, str]:
    writer = SqliteWriter(path, candidate, journal)
    conn = writer.conn
    answers: dict[str, str] = {}
    try:
        log_id = writer.create()
        at = now().isoformat(" ")
        params: list[Any] = [log_id, 5, TYPE, PAYLOAD, at]
        if writer.guarded:
            stored = sqlite_inserts(conn, SQLITE_GUARDED, [*params, log_id, 4])
        else:
            stored = sqlite_inserts(conn, SQLITE_INSERT, params)
        answers[CHECKS[0][0]] = yes(not stored)
        error = ""
        try:
            conn.execute(SQLITE_INSERT, [log_id, 7, TYPE, PAYLOAD, at])
            refused = False
        except sqlite3.IntegrityError as e:
            refused, error = True, str(e).split(":")[0]
        answers[CHECKS[1][0]] = yes(refused)
        missing = uuid.uuid4().hex
        conn.execute("BEGIN")
        at_once = not sqlite_inserts(
            conn, SQLITE_INSERT, [missing, 0, TYPE, PAYLOAD, at]
        )
        conn.execute("ROLLBACK")
        answers[CHECKS[2][0]] = yes(at_once)
        answers[CHECKS[3][0]] = yes(
            not sqlite_inserts(conn, SQLITE_INSERT, [missing, 0, TYPE, PAYLOAD, at])
        )
        other = uuid.uuid4().hex
        conn.execute("INSERT INTO log VALUES (?, 'account', ?)", [other, at])
        multi = f"INSERT INTO event {SQLITE_COLUMNS} VALUES " + ", ".join(
            ["(?, ?, ?, ?, ?, NULL)"] * 3
        )
        rows = [v for i in range(3) for v in (other, i, TYPE, PAYLOAD, at)]
        answers[CHECKS[4][0]] = yes(sqlite_inserts(conn, multi, rows))
        try:
            writer.create()
            answers[CHECKS[5][0]] = yes(True)
        except sqlite3.IntegrityError:
            answers[CHECKS[5][0]] = yes(False)
        answers["error on a gap"] = error or "-"
    finally:
        writer.close()
    return answers


class SqliteBench:
    def __init__(self, folder: Path, journal: str, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes: Sizes = args.sizes
        self.journal = journal
        self.notes: list[str] = []
        self.candidates: list[str] = []
        self.paths: dict[str, Path] = {}
        for candidate in PG_CANDIDATES:
            path = folder / f"{journal}_{candidate.replace('+', '_')}.sqlite3"
            try:
                sqlite_setup(path, candidate, journal)
            except sqlite3.Error as e:
                self.notes.append(f"{candidate}: the schema is refused: {e}")
                continue
            self.candidates.append(candidate)
            self.paths[candidate] = path

    def checks(self) -> dict[str, dict[str, str]]:
        return {
            c: sqlite_check(self.paths[c], c, self.journal) for c in self.candidates
        }

    def start(self) -> None:
        self.writers = {
            c: SqliteWriter(self.paths[c], c, self.journal, self.args.durable)
            for c in self.candidates
        }
        row = (
            self.writers[self.candidates[0]]
            .conn.execute("PRAGMA synchronous")
            .fetchone()
        )
        self.synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[row[0]]

    def before(self) -> None:
        if self.journal == "wal":
            for writer in self.writers.values():
                writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def scenario_a(self) -> dict[str, Figure]:
        progress(
            f"SQLite ({self.journal}) A: {self.sizes.logs} logs x {EVENTS_PER_LOG}"
        )
        for writer in self.writers.values():
            writer.logs(2)

        def measure(candidate: str) -> tuple[float, float]:
            start = time.perf_counter()
            events = self.writers[candidate].logs(self.sizes.logs)
            return (time.perf_counter() - start) / events * 1e6, 0.0

        return interleaved(self.candidates, self.args.repeats, self.before, measure)

    def scenario_c(self) -> dict[str, Figure]:
        progress(f"SQLite ({self.journal}) C: {self.sizes.hot} appends to one log")
        hot: dict[str, list[Any]] = {
            c: [self.writers[c].create(), 1] for c in self.candidates
        }

        def measure(candidate: str) -> tuple[float, float]:
            writer, state = self.writers[candidate], hot[candidate]
            log_id, first = state
            start = time.perf_counter()
            for index in range(first, first + self.sizes.hot):
                writer.append(str(log_id), index)
            state[1] = first + self.sizes.hot
            return (time.perf_counter() - start) / self.sizes.hot * 1e6, 0.0

        return interleaved(self.candidates, self.args.repeats, self.before, measure)

    def close(self) -> None:
        for writer in getattr(self, "writers", {}).values():
            writer.close()


# The report.


def checks_table(answers: dict[str, dict[str, str]]) -> tuple[str, bool]:
    """The answers, each followed by ``!`` where it is not what the candidate
    is meant to answer; and whether any is."""
    candidates = list(answers)
    rows: list[tuple[str, ...]] = [("check", *candidates)]
    flagged = False
    for label, _ in CHECKS:
        cells = []
        for candidate in candidates:
            got = answers[candidate][label]
            wrong = (got == "yes") != expected(label, candidate)
            flagged |= wrong
            cells.append(got + ("!" if wrong else ""))
        rows.append((label, *cells))
    rows.append(
        (
            "error on a gap (plain INSERT)",
            *(a["error on a gap"] for a in answers.values()),
        )
    )
    return table(rows), flagged


def figures_table(
    figures: dict[str, Figure], *, rate: bool, wal: bool, extra: bool = False
) -> str:
    header = [
        "candidate",
        "us/append",
        "+-",
        "events/s" if rate else "",
        "WAL B/append",
    ]
    header += ["vs guard", "vs none", "us - guard's" if extra else ""]
    rows: list[tuple[str, ...]] = []
    guard, none = figures.get("guard"), figures.get("none")
    for candidate, figure in figures.items():
        rows.append(
            (
                candidate,
                f"{figure.median:.1f}",
                f"{figure.spread * 100:.1f}%",
                f"{1e6 / figure.median:,.0f}" if rate else "",
                f"{statistics.median(figure.wal):,.0f}" if wal else "",
                f"{figure.median / guard.median:.3f}x" if guard else "-",
                f"{figure.median / none.median:.3f}x" if none else "-",
                f"{figure.median - guard.median:+.2f}" if extra and guard else "",
            )
        )
    keep = [i for i, h in enumerate(header) if h and (h != "WAL B/append" or wal)]
    return table(
        [tuple(header[i] for i in keep)] + [tuple(r[i] for i in keep) for r in rows]
    )


def environment(args: argparse.Namespace, pg: dict[str, str]) -> str:
    sizes: Sizes = args.sizes
    rows = {
        "date": now().strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **pg,
        "sqlite": f"{sqlite3.sqlite_version} (Python sqlite3), foreign_keys=ON, "
        "autocommit, a file in a temporary directory",
        "sizes": f"A: {sizes.logs} logs x {EVENTS_PER_LOG} events; B: {WORKERS} "
        f"processes x {sizes.logs} logs x {EVENTS_PER_LOG}; C: {sizes.hot} "
        f"appends to one log per repeat; S: {sizes.server} events per repeat",
        "commits": "durable: the server's synchronous_commit, SQLite synchronous="
        "FULL (--durable)"
        if args.durable
        else "writers SET synchronous_commit = off (SQLite: PRAGMA synchronous = "
        "OFF): a commit does not wait for its fsync, the same for every "
        "candidate; --durable waits",
        "timing": f"median of {args.repeats} repeats; the candidates take turns, "
        "each repeat starting with another; a CHECKPOINT before each measurement",
    }
    return table([("run", "value"), *rows.items()])


LEGEND = (
    "us/append: median wall time per event, creates (log + event 0) included in "
    "A and B; +-: half the range of the repeats, relative to the median (the noise); "
    "vs guard / vs none: us/append divided by that candidate's (above 1: slower); "
    "WAL B/append: WAL bytes written per event (full page images after each "
    "CHECKPOINT included). B's us/append is wall time / all events of the 4 processes."
)


def run_postgresql(args: argparse.Namespace, out: list[str]) -> dict[str, str]:
    with pg_database() as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for candidate in PG_CANDIDATES:
                pg_setup(conn, candidate)
        answers = {c: pg_check(conninfo, c) for c in PG_CANDIDATES}
        bench = PgBench(conninfo, args)
        try:
            info = bench.describe()
            a = bench.scenario_a()
            b = bench.scenario_b()
            c = bench.scenario_c()
            server = args.sizes.server
            s_many = bench.scenario_s(server // EVENTS_PER_LOG, EVENTS_PER_LOG)
            s_hot = bench.scenario_s(1, server)
        finally:
            bench.close()
    text, flagged = checks_table(answers)
    out += ["", "== PostgreSQL: what each candidate refuses and accepts", text]
    out.append(
        "!: NOT what this candidate is meant to do"
        if flagged
        else "every answer is what the candidate is meant to give (guard and none "
        "do not refuse other writers' gaps; that is the point)"
    )
    sizes: Sizes = args.sizes
    out += [
        "",
        f"== PostgreSQL A: 1 connection, {sizes.logs} logs x {EVENTS_PER_LOG} events",
        figures_table(a, rate=True, wal=True),
        "",
        f"== PostgreSQL B: {WORKERS} processes at once, each {sizes.logs} logs x "
        f"{EVENTS_PER_LOG} events",
        figures_table(b, rate=True, wal=True),
        "",
        f"== PostgreSQL C: 1 connection, {sizes.hot} appends to one hot log",
        figures_table(c, rate=True, wal=True),
        "",
        f"== PostgreSQL S: in the server, {sizes.server // EVENTS_PER_LOG} logs x "
        f"{EVENTS_PER_LOG} events in one transaction (what the INSERT costs the "
        "server; no client, network or commit)",
        figures_table(s_many, rate=False, wal=True, extra=True),
        "",
        f"== PostgreSQL S: in the server, {sizes.server} appends to one hot log "
        "in one transaction",
        figures_table(s_hot, rate=False, wal=True, extra=True),
    ]
    return info


def run_sqlite(args: argparse.Namespace, out: list[str]) -> None:
    for journal in ("delete", "wal"):
        with tempfile.TemporaryDirectory(prefix="eventlog-gap-bench-") as folder:
            bench = SqliteBench(Path(folder), journal, args)
            try:
                answers = bench.checks()
                bench.start()
                a = bench.scenario_a()
                c = bench.scenario_c()
            finally:
                bench.close()
        default = " (Django's default)" if journal == "delete" else ""
        text, flagged = checks_table(answers)
        out += [
            "",
            f"== SQLite, journal_mode={journal}{default}, "
            f"synchronous={bench.synchronous}: what each candidate refuses and accepts",
            text,
        ]
        if flagged:
            out.append("!: NOT what this candidate is meant to do")
        out += [f"note: {note}" for note in bench.notes]
        sizes: Sizes = args.sizes
        out += [
            "",
            f"== SQLite ({journal}) A: 1 connection, {sizes.logs} logs x "
            f"{EVENTS_PER_LOG} events",
            figures_table(a, rate=True, wal=False),
            "",
            f"== SQLite ({journal}) C: 1 connection, {sizes.hot} appends "
            "to one hot log",
            figures_table(c, rate=True, wal=False),
        ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: list[str] = []
    pg = run_postgresql(args, out)
    run_sqlite(args, out)
    print("\n".join([environment(args, pg), "", LEGEND, *out]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
