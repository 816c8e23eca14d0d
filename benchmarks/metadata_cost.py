"""What metadata costs appends: writes with an event_context and without.

Migration 0009 gives every event four metadata columns (``actor``,
``correlation_id``, ``causation_id``, ``extra``) and the partial index
``django_eventlog_corr_idx`` on ``correlation_id`` (only the rows that have
one). A write with metadata fills them; a write without any stores NULLs
through statements of their own, which the index skips. The target
(issue 17): appends with a context set at least 0.95x as fast as without.

Two operations, each through the library as a view calls it, each event its
own transaction (autocommit):

* **append**: one event appended to a log with the known state; the logs
  (10 events each) are created untimed before each slice and appended to in
  turns;
* **create_log**: a new log with its first event.

Three variants, in the same database:

* **per call**: each call inside its own ``event_context(actor="user:42",
  correlation_id=<32 hex digits, one per log>, causation_id="command:<n>",
  ip="203.0.113.7")``, as a request under ``EventContextMiddleware`` that
  makes one write: entering and leaving the context (its checks) is timed
  with the write. Reported against the target too, as "also";
* **set**: one such context around a slice's 100 calls (one correlation id
  for them all), as a management command or a job: what the write itself
  costs once a context is set. The target (appends with a context set) is
  checked on this one;
* **none**: no context at all (the columns NULL, as before metadata).

Each round measures both operations, the variants taking turns slice by
slice (each slice of three starting with another one; a CHECKPOINT at the
start of each round and operation, or before each slice with
``--checkpoint-every-slice``), so that a burst of load on a shared machine
falls on all alike. Then **S**: the same rows written in a PL/pgSQL loop
inside the server, with the metadata, with it but without the correlation
index (dropped in the measuring transaction, rolled back), and without it:
what the server pays, with no client, network or commit; and **P**: what
entering and leaving the context costs in Python alone, between writes and
in a tight loop. It prints the
median µs per event, ``+-`` (half the interquartile range over the median),
events/s and the WAL bytes each event writes, the median ratio of each
slice of three (events/s with a context / without: below 1, the metadata
costs), and the target's verdict.
Run ``make bench`` (PostgreSQL with default durability), or with a
server's PG* variables set::

    python benchmarks/metadata_cost.py          # ~1 to 2 minutes on 2 CPUs
    python benchmarks/metadata_cost.py --quick  # seconds, for CI

``EVENTLOG_PG_PREPARE=1`` (as ``make bench`` sets it) turns on server-side
binding with prepared statements.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "benchmarks")) if p not in sys.path]

from _shared import (  # noqa: E402
    NOTE,
    execute,
    postgresql_line,
    progress,
    table,
    throwaway_database,
)
from eventstores import EVENTS_PER_LOG, setup_django  # noqa: E402

PER_CALL, SET, NONE = "per call", "set", "none"
VARIANTS = (PER_CALL, SET, NONE)
APPEND, CREATE = "append", "create_log"
OPERATIONS = (APPEND, CREATE)
TARGET = 0.95
ACTOR = "user:42"
IP = "203.0.113.7"
#: Calls per slice: the variants alternate every SLICE calls.
SLICE = 100
#: Untimed calls of each operation and variant before the first round: the
#: connection prepares its statements (prepare_threshold 5) and Python warms.
WARM_UP = 50
#: S alternates the variants this many times a round.
SERVER_SLICES = 5


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "-n",
        "--calls",
        type=int,
        default=1000,
        help="calls of each operation and variant per round (1000)",
    )
    parser.add_argument("-r", "--rounds", type=int, default=9, help="rounds (9)")
    parser.add_argument(
        "--server-events",
        type=int,
        default=5000,
        help="S's events per variant and round (5000)",
    )
    parser.add_argument(
        "--checkpoint-every-slice",
        action="store_true",
        help="a CHECKPOINT before each slice, not each round: every page a "
        "slice touches is written whole to the WAL once (full_page_writes)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 calls, 3 rounds: seconds, for CI"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds, args.server_events = 2 * SLICE, 3, 200
    if args.rounds < 3 or args.calls < SLICE or args.calls % SLICE:
        parser.error(
            f"--rounds must be at least 3 and --calls a multiple of {SLICE} "
            f"(at least {SLICE})"
        )
    if args.server_events < 10 * SERVER_SLICES:
        parser.error(f"--server-events must be at least {10 * SERVER_SLICES}")
    return args


def wal_position() -> int:
    """Bytes of WAL written so far by the server (all of it: this run is its
    only writer)."""
    return int(execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")[0][0])


def spread(values: Sequence[float]) -> str:
    """Half the interquartile range over the median: how far the middle
    half of the values lies from it (the slices are many, and a burst of
    load makes a few of them far off)."""
    low, _, high = statistics.quantiles(values, n=4)
    return f"{(high - low) / 2 / statistics.median(values):.0%}"


class Writer:
    """The two operations under each variant: ``run(operation, variant,
    calls)`` makes ``calls`` writes and returns the seconds they took, the
    untimed set-up left out."""

    def __init__(self) -> None:
        from _ours import Credited

        from django_eventlog import Log, event_context

        self.event = Credited(1, NOTE)
        self.objects = Log.objects
        self.event_context = event_context
        #: Contexts entered, and the events written inside one.
        self.commands = self.in_context = 0

    def context(self, correlation_id: str) -> Any:
        self.commands += 1
        return self.event_context(
            actor=ACTOR,
            correlation_id=correlation_id,
            causation_id=f"command:{self.commands}",
            ip=IP,
        )

    def run(self, operation: str, variant: str, calls: int) -> float:
        from django_eventlog import current_metadata

        # Refuse to time "none" inside a context someone forgot to leave.
        assert not current_metadata()
        timed = self.appends if operation == APPEND else self.creates
        if variant == SET:
            with self.context(uuid.uuid4().hex):
                seconds, events = timed(calls, per_call=False)
        else:
            seconds, events = timed(calls, per_call=variant == PER_CALL)
        if variant != NONE:
            self.in_context += events
        return seconds

    def appends(self, calls: int, *, per_call: bool) -> tuple[float, int]:
        """Seconds ``calls`` appends took, and the events written (the logs'
        first ones too)."""
        per_log = EVENTS_PER_LOG - 1
        logs = -(-calls // per_log)
        ids = [uuid.uuid4().hex for _ in range(logs)]
        states = []
        for correlation_id in ids:  # untimed
            if per_call:
                with self.context(correlation_id):
                    states.append(self.objects.create_log(self.event, kind="account"))
            else:
                states.append(self.objects.create_log(self.event, kind="account"))
        order = [n % logs for n in range(calls)]
        append, event = self.objects.append, self.event
        start = time.perf_counter()
        if per_call:
            for n in order:
                with self.context(ids[n]):
                    states[n] = append(states[n], event)
        else:
            for n in order:
                states[n] = append(states[n], event)
        return time.perf_counter() - start, logs + calls

    def creates(self, calls: int, *, per_call: bool) -> tuple[float, int]:
        ids = [uuid.uuid4().hex for _ in range(calls)]
        create, event = self.objects.create_log, self.event
        start = time.perf_counter()
        if per_call:
            for correlation_id in ids:
                with self.context(correlation_id):
                    create(event, kind="account")
        else:
            for _ in ids:
                create(event, kind="account")
        return time.perf_counter() - start, calls


def check_written(writer: Writer) -> None:
    """Every event written in a context has its metadata, every other one
    none: the variants did what they say."""
    from django_eventlog import Event, Log

    assert Event.objects.filter(actor=ACTOR).count() == writer.in_context
    assert Event.objects.filter(extra={"ip": IP}).count() == writer.in_context
    bare = Event.objects.filter(
        actor__isnull=True,
        correlation_id__isnull=True,
        causation_id__isnull=True,
        extra__isnull=True,
    )
    assert bare.count() == Event.objects.count() - writer.in_context
    # The last event written in a context is the last context's.
    sample = Event.objects.filter(actor=ACTOR).order_by("-id").first()
    assert sample is not None
    (record,) = Log.objects.load(sample.log_id, start=sample.index, limit=1)
    metadata = record.metadata
    assert (metadata.actor, dict(metadata.extra)) == (ACTOR, {"ip": IP}), metadata
    assert len(metadata.correlation_id or "") == 32, metadata
    assert metadata.causation_id == f"command:{writer.commands}", metadata


# S: the events of a create_log (log and event 0) or an append, written in
# the server, with a context's metadata (a new correlation id each, as
# create_log above) or NULLs; the id is made in both. One transaction.
SERVER_LOOP = """
CREATE FUNCTION metadata_bench(events integer, with_metadata boolean)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    v_log uuid;
    v_at timestamptz := now();
    v_corr text;
BEGIN
    FOR v_i IN 0..events - 1 LOOP
        IF mod(v_i, 10) = 0 THEN
            v_log := gen_random_uuid();
            INSERT INTO django_eventlog_log (id, kind, created_at)
            VALUES (v_log, 'account', v_at);
        END IF;
        v_corr := replace(gen_random_uuid()::text, '-', '');
        INSERT INTO django_eventlog_event
            (log_id, "index", type, payload, recorded_at, idempotency_key,
             actor, correlation_id, causation_id, extra)
        VALUES (v_log, mod(v_i, 10), 'bench.credited',
            '{"amount": 1, "note": "benchmark credit"}'::jsonb, v_at, NULL,
            CASE WHEN with_metadata THEN 'user:42' END,
            CASE WHEN with_metadata THEN v_corr END,
            CASE WHEN with_metadata THEN 'command:' || v_i END,
            CASE WHEN with_metadata THEN '{"ip": "203.0.113.7"}'::jsonb END);
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / events;
END
$$
"""
#: S's variants: with the metadata, without the correlation index (dropped
#: in the measuring transaction, then rolled back), and none.
SERVER_VARIANTS = ("metadata", "metadata, no index", NONE)
CORRELATION_INDEX = "django_eventlog_corr_idx"


def measure_server(events: int, variant: str) -> float:
    """µs per event S's loop takes in the server, for ``variant``."""
    from django.db import transaction

    with transaction.atomic():
        if variant == SERVER_VARIANTS[1]:
            execute(f"DROP INDEX {CORRELATION_INDEX}")
        micros = float(
            execute("SELECT metadata_bench(%s, %s)", [events, variant != NONE])[0][0]
        )
        transaction.set_rollback(True)  # nothing kept: every variant alike
    return micros


def context_micros(writer: Writer) -> tuple[float, float]:
    """µs per entering and leaving the benchmark's context in Python: timed
    around the block between writes made outside it (median of 300), and in
    a tight loop (best of 5 x 20,000)."""
    import timeit

    from django_eventlog import event_context

    def enter_and_leave() -> None:
        with event_context(
            actor=ACTOR, correlation_id="0" * 32, causation_id="command:1", ip=IP
        ):
            pass

    between = []
    for _ in range(300):
        start = time.perf_counter()
        enter_and_leave()
        between.append(time.perf_counter() - start)
        writer.run(CREATE, NONE, 1)
    number = 20_000
    tight = min(timeit.repeat(enter_and_leave, number=number, repeat=5)) / number
    return statistics.median(between) * 1e6, tight * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()
    from django.conf import settings

    # Per operation and variant, one value a slice: seconds and WAL bytes.
    seconds: dict[str, dict[str, list[float]]] = {
        op: {variant: [] for variant in VARIANTS} for op in OPERATIONS
    }
    wal: dict[str, dict[str, list[float]]] = {
        op: {variant: [] for variant in VARIANTS} for op in OPERATIONS
    }
    server: dict[str, list[float]] = {variant: [] for variant in SERVER_VARIANTS}
    slices = args.calls // SLICE
    with throwaway_database():
        settings.DEBUG = False  # no query log
        execute(SERVER_LOOP)
        writer = Writer()
        for operation in OPERATIONS:
            for variant in VARIANTS:
                writer.run(operation, variant, WARM_UP)
        measure_server(10, NONE)  # the session compiles the function
        for n in range(args.rounds):
            for operation in OPERATIONS:
                if not args.checkpoint_every_slice:
                    execute("CHECKPOINT")
                for s in range(slices):
                    # Each slice of three starts with another variant.
                    first = (n + s) % len(VARIANTS)
                    for variant in VARIANTS[first:] + VARIANTS[:first]:
                        if args.checkpoint_every_slice:
                            execute("CHECKPOINT")
                        before = wal_position()
                        seconds[operation][variant].append(
                            writer.run(operation, variant, SLICE)
                        )
                        wal[operation][variant].append(
                            (wal_position() - before) / SLICE
                        )
            # In slices too, the variants in turns: the server's CPU is what
            # load takes.
            per_event = dict.fromkeys(SERVER_VARIANTS, 0.0)
            for s in range(SERVER_SLICES):
                in_server = (
                    SERVER_VARIANTS if (n + s) % 2 == 0 else SERVER_VARIANTS[::-1]
                )
                for variant in in_server:
                    per_event[variant] += (
                        measure_server(args.server_events // SERVER_SLICES, variant)
                        / SERVER_SLICES
                    )
            for variant, value in per_event.items():
                server[variant].append(value)
            progress(f"  round {n + 1}/{args.rounds} done")
        in_python = context_micros(writer)
        check_written(writer)
        database = postgresql_line()
    print(f"# benchmarks/metadata_cost.py, {datetime.date.today()}")
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {database}"
    )
    checkpoints = "every slice" if args.checkpoint_every_slice else "every round"
    print(
        f"# {args.calls:,} calls of each operation and variant a round, each "
        f"event its own transaction, the variants in turns every {SLICE} calls "
        f"(a slice of three), a CHECKPOINT {checkpoints}; {args.rounds} rounds; "
        "medians"
    )
    print(
        f'# per call: each call in its own event_context(actor="{ACTOR}", '
        'correlation_id=<32 hex, one per log>, causation_id="command:<n>", '
        f'ip="{IP}"); set: one such context around {SLICE} calls; none: no '
        "context"
    )
    rows = [["operation, variant", "µs/event", "+-", "events/s", "WAL B/event"]]
    for operation in OPERATIONS:
        for variant in VARIANTS:
            rates = [SLICE / t for t in seconds[operation][variant]]
            median = statistics.median(rates)
            rows.append(
                [
                    f"{operation}, {variant}",
                    f"{1e6 / median:.1f}",
                    spread(rates),
                    f"{median:,.0f}",
                    f"{statistics.median(wal[operation][variant]):.0f}",
                ]
            )
    for variant in SERVER_VARIANTS:
        micros = server[variant]
        rows.append(
            [
                f"S, {variant}",
                f"{statistics.median(micros):.1f}",
                spread(micros),
                f"{1e6 / statistics.median(micros):,.0f}",
                "-",
            ]
        )
    print(table(rows))
    verdicts: dict[str, list[bool]] = {PER_CALL: [], SET: []}
    for operation in OPERATIONS:
        # A slice of three ran one variant after the other: a burst of load
        # on a shared machine falls on all, and the median of the slices
        # leaves the bursts that did not out.
        for variant in (PER_CALL, SET):
            ratios = [
                without / with_context
                for with_context, without in zip(
                    seconds[operation][variant], seconds[operation][NONE], strict=True
                )
            ]
            rounds = [
                statistics.median(ratios[r * slices : (r + 1) * slices])
                for r in range(args.rounds)
            ]
            median = statistics.median(ratios)
            verdicts[variant].append(median >= TARGET)
            print(
                f"{operation}, context {variant} vs none, each round: "
                + " ".join(f"{r:.3f}x" for r in rounds)
            )
            print(
                f"{operation}, context {variant} vs none: {median:.3f}x the "
                f"events/s (median of {len(ratios)} slices, {spread(ratios)} +-)"
            )
    with_metadata, no_index, _ = SERVER_VARIANTS
    diff = [a - b for a, b in zip(server[with_metadata], server[NONE], strict=True)]
    index = [
        a - b for a, b in zip(server[with_metadata], server[no_index], strict=True)
    ]
    print(
        f"S the metadata costs the server {statistics.median(diff):+.2f} µs per "
        f"event, the correlation index {statistics.median(index):+.2f} of it "
        f"(medians of {args.rounds} rounds)"
    )
    print(
        f"P entering and leaving the context costs {in_python[0]:.1f} µs in "
        f"Python between writes (median of 300), {in_python[1]:.1f} µs in a "
        "tight loop (best of 5)"
    )
    print(
        f"target: appends with a context set >= {TARGET}x without (append and "
        "create_log): " + ("met yes" if all(verdicts[SET]) else "met NO")
    )
    print(
        f"also: with the context entered for each call >= {TARGET}x (a request "
        "that writes once: the context's checks timed with it): "
        + ("yes" if all(verdicts[PER_CALL]) else "NO")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
