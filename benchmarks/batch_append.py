"""Appending a decision's events as one batch vs one append per event.

A decision often yields several events. ``Log.objects.append(state, [e1, ...,
e10])`` writes them in one ``INSERT`` with contiguous indices; the
alternative is ten ``append`` calls, each its own statement (in autocommit,
each its own commit), or ten inside one ``transaction.atomic()`` (one
commit, ten round trips plus a savepoint each). Each repeat writes the same
number of logs three ways, in turns, on fresh logs created the same way:

* ``singles``: 10 appends of one event, in autocommit (the baseline);
* ``singles in atomic``: the same 10 appends inside one ``atomic()``;
* ``batch``: one append of the 10 events.

It prints µs per event and events/s (medians over the repeats), ``+-``
(half the range of the repeats over the median) and each way's speed as a
ratio to ``singles`` from the same run (above 1: faster). Through the
library and Django, as a view would call it, on the database
``EVENTLOG_DB`` names (``postgresql``: the PG* variables' server, a
throwaway database made and dropped by Django's test machinery; ``sqlite``:
a throwaway file). Run from the repository root::

    EVENTLOG_DB=postgresql python benchmarks/batch_append.py     # ~1 minute
    EVENTLOG_DB=sqlite python benchmarks/batch_append.py --quick # seconds
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

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "benchmarks")) if p not in sys.path]

from _shared import table, throwaway_database  # noqa: E402

BATCH = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--logs", type=int, default=300, help="logs per way and repeat")
    parser.add_argument("-r", "--repeats", type=int, default=5)
    parser.add_argument(
        "--quick", action="store_true", help="20 logs, 3 repeats: seconds, for CI"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.logs, args.repeats = 20, 3
    if args.repeats < 3 or args.logs < 1:
        parser.error("--repeats must be at least 3 and --logs at least 1")
    return args


def setup_django() -> str:
    os.environ.setdefault("EVENTLOG_DB", "sqlite")
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    import django

    django.setup()
    return os.environ["EVENTLOG_DB"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    vendor = setup_django()
    from django.conf import settings
    from django.db import connection, transaction

    from django_eventlog import DomainEvent, Log, LogState

    class Credited(DomainEvent):
        type_name = "bench.batch.credited"
        amount: int
        note: str

    events = [Credited(n, "benchmark credit") for n in range(BATCH)]

    def fresh_logs() -> list[LogState]:
        return [
            Log.objects.create_log(Credited(0, "opened"), kind="bench")
            for _ in range(args.logs)
        ]

    def singles(states: list[LogState]) -> None:
        for state in states:
            for event in events:
                state = Log.objects.append(state, event)

    def singles_in_atomic(states: list[LogState]) -> None:
        for state in states:
            with transaction.atomic():
                for event in events:
                    state = Log.objects.append(state, event)

    def batch(states: list[LogState]) -> None:
        for state in states:
            Log.objects.append(state, events)

    ways: dict[str, Callable[[list[LogState]], None]] = {
        "singles": singles,
        "singles in atomic": singles_in_atomic,
        "batch": batch,
    }
    timings: dict[str, list[float]] = {name: [] for name in ways}
    with throwaway_database():
        settings.DEBUG = False  # no query log
        names = list(ways)
        for repeat in range(args.repeats):
            # Each repeat starts with another way, so none is always first.
            turn = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in turn:
                states = fresh_logs()
                start = time.perf_counter()
                ways[name](states)
                timings[name].append(time.perf_counter() - start)
        stored = Log.objects.count()
        server = connection.display_name
        version = ".".join(map(str, connection.get_database_version()))

    per_event = args.logs * BATCH
    assert stored == args.logs * len(ways) * args.repeats
    baseline = statistics.median(timings["singles"])
    rows = [["way", "µs/event", "+-", "events/s", "vs singles"]]
    for name, runs in timings.items():
        median = statistics.median(runs)
        spread = (max(runs) - min(runs)) / 2 / median
        rows.append(
            [
                name,
                f"{median / per_event * 1e6:.1f}",
                f"{spread:.0%}",
                f"{per_event / median:,.0f}",
                f"{baseline / median:.2f}x",
            ]
        )
    print(f"# benchmarks/batch_append.py, {datetime.date.today()}")
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {server} {version} ({vendor})"
    )
    print(
        f"# {args.logs} logs x {BATCH} events per way and repeat, "
        f"{args.repeats} repeats; medians"
    )
    print(table(rows))
    batch_ratio = baseline / statistics.median(timings["batch"])
    print(f"batch of {BATCH} vs {BATCH} single appends: {batch_ratio:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
