"""django-eventlog against the limits (raw psycopg 3) and the peer (eventsourcing).

Four stores do the same work on one PostgreSQL server, in one run, taking
turns within each repeat (see ``README.md`` here for what each one does):

* **ours**: django-eventlog's ``Log.objects`` (``_ours.py``);
* **raw**: psycopg 3 on tables shaped like ours (``_raw.py``), the limit of
  our schema;
* **minimal**: psycopg 3 on one table of events (``_minimal.py``), the limit
  of a store that keeps the same promises per event;
* **peer**: the ``eventsourcing`` library 9.x (``peer_eventsourcing.py``).

Scenarios (figures are medians of ``--repeats`` repeats, at least 3):

A. appends, one thread: N logs x 10 events, each write its own transaction;
B. the same with 4 worker processes, each on its own logs;
C. a hot log: 4 worker processes append to one log, retrying on conflict,
   twice: after a conflict each one reduces again (ours: with the cache),
   then appends again; or it asks for the log's state (ours:
   ``Log.objects.state``; not the peer, which has no such call); the log is
   then checked for gaps;
D. cold reduce of one long log: seconds, and peak Python memory (tracemalloc,
   in a separate call: tracing slows Python down);
E. warm reduce: the cached state (ours, raw, minimal: Redis; peer: a snapshot)
   plus 1 new event, for logs of 1k, 10k and 100k events;
F. a 100-event page from the middle of the long log.

Run ``make bench`` (starts PostgreSQL, with default durability, and Redis on
127.0.0.1 unless PGHOST and REDIS_URL name servers), or with the servers'
variables set: ``python benchmarks/eventstores.py [--quick] [--huge]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "benchmarks")) if p not in sys.path]

from _shared import (  # noqa: E402
    Conflict,
    Folded,
    spawn_workers,
    table,
    throwaway_database,
)

KINDS = ("ours", "raw", "minimal", "peer")
WORKERS = 4
EVENTS_PER_LOG = 10


@dataclass(frozen=True)
class Sizes:
    logs: int  # A (B: split between the workers)
    hot_appends: int  # C: per worker
    long_log: int  # D and F
    huge_log: int  # D with --huge
    warm_logs: tuple[int, ...]  # E
    calls: int  # E and F: timed calls per repeat


FULL = Sizes(1000, 250, 100_000, 1_000_000, (1_000, 10_000, 100_000), 20)
QUICK = Sizes(20, 10, 2_000, 20_000, (100, 1_000, 2_000), 3)


class Store(Protocol):
    name: str

    def create(self, amount: int) -> Any: ...
    def append(self, handle: Any, amount: int) -> Any: ...
    def reduce_handle(self, log_id: uuid.UUID, known: Any) -> Any: ...
    def reduce(self, log_id: uuid.UUID) -> Folded: ...
    def page(
        self, log_id: uuid.UUID, start: int, limit: int
    ) -> list[tuple[int, int]]: ...
    def fill(self, count: int) -> uuid.UUID: ...
    def close(self) -> None: ...


@runtime_checkable
class HasState(Protocol):
    """A store that reads a log's next index alone (all but the peer)."""

    def state(self, log_id: uuid.UUID) -> Any: ...


# C's ways to learn the log's next index after a conflict: the row's name, and
# the stores that have that way (None: all of them).
RETRIES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "reduce": ("retry by reduce (cached)", None),
    "state": ("retry by state()", ("ours", "raw", "minimal")),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to keep it working (CI)"
    )
    parser.add_argument(
        "--huge",
        action="store_true",
        help="also reduce a log 10x longer in D (1,000,000 events)",
    )
    parser.add_argument(
        "-r", "--repeats", type=int, default=3, help="repeats (at least 3; 3)"
    )
    parser.add_argument(
        "--only",
        default="ABCDEF",
        help="scenarios to run, e.g. --only AD (default: all)",
    )
    parser.add_argument(
        "--stores",
        default=",".join(KINDS),
        help="stores to run, e.g. --stores ours,minimal (default: all four)",
    )
    args = parser.parse_args(argv)
    args.stores = tuple(args.stores.split(","))
    if set(args.stores) - set(KINDS) or "ours" not in args.stores:
        parser.error(f"--stores takes ours and any of {', '.join(KINDS[1:])}")
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    if not args.only or set(args.only) - set("ABCDEF"):
        parser.error("--only takes letters of ABCDEF")
    if not os.environ.get("REDIS_URL"):
        parser.error("set REDIS_URL (and PGHOST...), or run `make bench`")
    return args


# Stores, built the same way in this process and in the workers.


def server() -> dict[str, Any]:
    """The throwaway database's connection parameters (after django.setup)."""
    from django.db import connection

    s = connection.settings_dict
    return {
        "host": s["HOST"],
        "port": int(s["PORT"]),
        "user": s["USER"],
        "password": s["PASSWORD"],
        "dbname": s["NAME"],
    }


def conninfo(params: dict[str, Any]) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(**params)


def setup_django(dbname: str | None = None) -> None:
    os.environ["EVENTLOG_DB"] = "postgresql"
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    os.environ["DJANGO_DEBUG"] = "0"  # as in production: no query log
    if dbname is not None:
        os.environ["PGDATABASE"] = dbname
    import django

    django.setup()
    from django.conf import settings

    # The cache write leaves reduce()'s path, as the docs recommend for latency.
    settings.EVENTLOG_CACHE_WRITE_BEHIND = True


def make_store(kind: str, params: dict[str, Any], snapshots: bool = False) -> Store:
    if kind == "ours":
        from _ours import OursStore

        return OursStore()
    if kind == "raw":
        from _raw import RawStore

        return RawStore(conninfo(params), os.environ["REDIS_URL"])
    if kind == "minimal":
        from _minimal import MinimalStore

        return MinimalStore(conninfo(params), os.environ["REDIS_URL"])
    from peer_eventsourcing import PeerStore

    return PeerStore(**params, snapshots=snapshots)


# The work itself.


def write_logs(store: Store, logs: int) -> int:
    """Create ``logs`` logs of EVENTS_PER_LOG events; return the events."""
    for _ in range(logs):
        handle = store.create(1)
        for _ in range(EVENTS_PER_LOG - 1):
            handle = store.append(handle, 1)
    return logs * EVENTS_PER_LOG


def state_handle(store: HasState, log_id: uuid.UUID, _known: Any) -> Any:
    """The handle of ``log_id`` from its state alone (``known`` unused)."""
    return store.state(log_id)


def hot_appends(
    store: Store, log_id: uuid.UUID, appends: int, retry: str
) -> tuple[int, int]:
    """Append ``appends`` events to one shared log, learning its next index
    the ``retry`` way (a key of RETRIES); return (appends, conflicts)."""
    learn: Callable[[Any], Any] = partial(store.reduce_handle, log_id)
    if retry == "state":
        assert isinstance(store, HasState)
        learn = partial(state_handle, store, log_id)
    handle = learn(None)
    done = conflicts = 0
    while done < appends:
        try:
            handle = store.append(handle, 1)
            done += 1
        except Conflict:
            conflicts += 1
            handle = learn(handle)
    return done, conflicts


def worker(
    kind: str,
    params: dict[str, Any],
    task: str,
    size: int,
    log_id: uuid.UUID | None,
    barrier: Any,
    results: Any,
) -> None:
    """One of WORKERS processes of B ("own") or C (a key of RETRIES)."""
    try:
        if kind == "ours":
            setup_django(params["dbname"])
        store = make_store(kind, params)
        barrier.wait()
        start = time.monotonic()  # system-wide: comparable between processes
        if task == "own":
            done, conflicts = write_logs(store, size), 0
        else:
            assert log_id is not None
            done, conflicts = hot_appends(store, log_id, size, task)
        results.put((start, time.monotonic(), done, conflicts, None))
        store.close()
    except BaseException as e:
        barrier.abort()
        results.put((0.0, 0.0, 0, 0, f"{type(e).__name__}: {e}"))


def in_workers(
    kind: str, params: dict[str, Any], task: str, size: int, log_id: uuid.UUID | None
) -> tuple[float, int, int]:
    """Run WORKERS processes; return (wall seconds, appends, conflicts)."""
    outcomes = spawn_workers(WORKERS, worker, (kind, params, task, size, log_id), kind)
    wall = max(end for _, end, *_ in outcomes) - min(s for s, *_ in outcomes)
    return wall, sum(o[2] for o in outcomes), sum(o[3] for o in outcomes)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def peak_bytes(function: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Results and their table.


@dataclass
class Row:
    scenario: str
    unit: str  # "events/s" (higher is better) or "ms", "s", "MiB" (lower)
    values: dict[str, float]
    note: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.unit.endswith("/s")

    def speed_vs(self, other: str) -> float | None:
        """How many times faster ours is than ``other`` (>1: ours is faster)."""
        mine, theirs = self.values.get("ours"), self.values.get(other)
        if not mine or not theirs:
            return None
        return mine / theirs if self.higher_is_better else theirs / mine


@dataclass
class Target:
    text: str
    met: bool
    figures: str


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "events/s" or value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.params = server()
        self.kinds: tuple[str, ...] = args.stores
        self.stores = {kind: make_store(kind, self.params) for kind in self.kinds}
        self.rows: list[Row] = []
        self.targets: list[Target] = []
        self.notes: list[str] = []
        self.can_checkpoint = True

    def repeat(
        self, measure: Callable[[str], float], kinds: Sequence[str] | None = None
    ) -> dict[str, float]:
        """Median of ``repeats`` measurements per store (of ``kinds``, default
        all), the stores taking turns.

        Each repeat starts with another store, and each measurement starts
        after a CHECKPOINT: the writes of the store before are on disk, so
        no store pays for another's.
        """
        kinds = tuple(self.kinds if kinds is None else kinds)
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for n in range(self.args.repeats):
            shift = n % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                self.checkpoint()
                samples[kind].append(measure(kind))
            progress(f"  repeat {n + 1}/{self.args.repeats} done")
        return {kind: statistics.median(values) for kind, values in samples.items()}

    def checkpoint(self) -> None:
        from django.db import DatabaseError, connection

        if not self.can_checkpoint:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute("CHECKPOINT")
        except DatabaseError as e:  # needs superuser or pg_checkpoint
            self.can_checkpoint = False
            self.notes.append(f"No CHECKPOINT between measurements: {e}".strip())

    # A and B

    def scenario_a(self) -> None:
        logs = self.sizes.logs
        progress("A: appends, one thread")
        cpu: dict[str, list[float]] = {kind: [] for kind in self.kinds}
        wall: dict[str, list[float]] = {kind: [] for kind in self.kinds}

        def measure(kind: str) -> float:
            store = self.stores[kind]
            events = 0

            def run() -> None:
                nonlocal events
                events = write_logs(store, logs)

            started = time.process_time()
            seconds = timed(run)
            cpu[kind].append((time.process_time() - started) / events * 1e6)
            wall[kind].append(seconds / events * 1e6)
            return events / seconds

        self.rows.append(
            Row(
                f"A appends, 1 thread ({logs:,} logs x {EVENTS_PER_LOG})",
                "events/s",
                self.repeat(measure),
            )
        )
        self.notes.append(
            "A: per event, wall (CPU of this process) in us: "
            + ", ".join(
                f"{kind} {statistics.median(wall[kind]):.0f} "
                f"({statistics.median(cpu[kind]):.0f})"
                for kind in self.kinds
            )
            + "; the rest of the wall time is spent waiting for PostgreSQL."
        )
        self.target_speed(self.rows[-1], "raw", 0.8, "A >= 0.8x raw")
        self.target_speed(self.rows[-1], "minimal", 0.8, "A >= 0.8x minimal")
        self.target_speed(self.rows[-1], "peer", 2.0, "A >= 2x peer")

    def scenario_b(self) -> None:
        per_worker = max(1, self.sizes.logs // WORKERS)
        progress(f"B: appends, {WORKERS} processes")

        def measure(kind: str) -> float:
            wall, events, _ = in_workers(kind, self.params, "own", per_worker, None)
            return events / wall

        self.rows.append(
            Row(
                f"B appends, {WORKERS} processes ({WORKERS}x{per_worker:,} logs "
                f"x {EVENTS_PER_LOG})",
                "events/s",
                self.repeat(measure),
            )
        )
        self.target_speed(self.rows[-1], "raw", 0.8, "B >= 0.8x raw")
        self.target_speed(self.rows[-1], "minimal", 0.8, "B >= 0.8x minimal")
        self.target_speed(self.rows[-1], "peer", 2.0, "B >= 2x peer")

    # C

    def scenario_c(self) -> None:
        for retry in RETRIES:
            self.hot_log(retry)
        self.notes.append(
            f"C: {WORKERS} processes x {self.sizes.hot_appends:,} appends to one "
            "log; every log checked after the run: events 0..n-1 once each, "
            "count as expected."
        )

    def hot_log(self, retry: str) -> None:
        appends = self.sizes.hot_appends
        label, able = RETRIES[retry]
        kinds = [kind for kind in self.kinds if able is None or kind in able]
        progress(f"C: a hot log, {WORKERS} processes, {label}")
        conflicts: dict[str, list[int]] = {kind: [] for kind in kinds}

        def measure(kind: str) -> float:
            store = self.stores[kind]
            log_id = store.fill(1)
            wall, done, conflicted = in_workers(
                kind, self.params, retry, appends, log_id
            )
            folded = store.reduce(log_id)
            expected = 1 + WORKERS * appends
            if done != WORKERS * appends or folded.events != expected:
                raise SystemExit(
                    f"C: {kind} has {folded.events} events, expected {expected}"
                )
            check = getattr(store, "check_log", None)
            if check is not None and check(log_id) != (expected, expected):
                raise SystemExit(f"C: {kind} log has a gap: {check(log_id)}")
            conflicts[kind].append(conflicted)
            return done / wall

        row = Row(f"C hot log, {label}", "events/s", self.repeat(measure, kinds))
        row.note = "conflicts (median): " + ", ".join(
            f"{kind} {statistics.median(conflicts[kind]):.0f}" for kind in kinds
        )
        self.rows.append(row)
        if retry == "reduce":
            self.target_speed(
                row, "raw", 0.5, "C (retry by reduce, cached) >= 0.5x raw"
            )
            self.target_speed(
                row, "minimal", 0.6, "C (retry by reduce, cached) >= 0.6x minimal"
            )

    # D, E, F share the long logs.

    def long_logs(self, events: int) -> dict[str, uuid.UUID]:
        progress(f"filling a log of {events:,} events in each store")
        return {kind: self.stores[kind].fill(events) for kind in self.kinds}

    def scenario_d(self, events: int, logs: dict[str, uuid.UUID]) -> None:
        progress(f"D: cold reduce of {events:,} events")

        def forget(kind: str) -> None:
            """Drop the cached reduction, if the store keeps one."""
            drop = getattr(self.stores[kind], "forget", None)
            if drop is not None:
                drop(logs[kind])

        def cold(kind: str) -> Folded:
            forget(kind)
            return self.stores[kind].reduce(logs[kind])

        for kind in self.kinds:
            folded = cold(kind)
            if folded != Folded(events, events, events):
                raise SystemExit(f"D: {kind} reduced {folded}, expected {events}")

        def measure(kind: str) -> float:
            forget(kind)
            return timed(partial(self.stores[kind].reduce, logs[kind]))

        seconds = Row(f"D cold reduce, {events:,} events", "s", self.repeat(measure))
        memory = Row(
            f"D peak memory, {events:,} events",
            "MiB",
            {kind: peak_bytes(partial(cold, kind)) / 2**20 for kind in self.kinds},
        )
        self.rows += [seconds, memory]
        self.target_time(seconds, 1.5, f"D ({events:,}) time <= 1.5x raw")
        self.targets.append(
            Target(
                f"D ({events:,}) peak memory < 8 MiB",
                memory.values["ours"] < 8,
                f"{memory.values['ours']:.2f} MiB",
            )
        )

    def scenario_e(self) -> None:
        figures: dict[int, dict[str, float]] = {}
        for events in self.sizes.warm_logs:
            progress(f"E: warm reduce, {events:,} events")
            figures[events] = self.warm(events)
            self.rows.append(
                Row(f"E warm reduce + 1 event, {events:,}", "ms", figures[events])
            )
        small, large = min(figures), max(figures)
        growth = figures[large]["ours"] / figures[small]["ours"]
        self.targets.append(
            Target(
                f"E flat: {large:,} events within 2x of {small:,}",
                growth <= 2,
                f"{growth:.2f}x",
            )
        )
        if "peer" not in self.kinds:
            return
        faster = all(f["ours"] < f["peer"] for f in figures.values())
        self.targets.append(
            Target(
                "E faster than the peer's snapshot read",
                faster,
                ", ".join(
                    f"{n:,}: {f['peer'] / f['ours']:.1f}x" for n, f in figures.items()
                ),
            )
        )

    def warm(self, events: int) -> dict[str, float]:
        """Per store: ms of a reduce from the cached state with 1 new event."""
        from _raw import PsycopgStore

        logs = self.long_logs(events)
        writers: dict[str, Store] = dict(self.stores)
        reads: dict[str, Callable[[], Folded]] = {}
        handles: dict[str, Any] = {}
        ours = self.stores["ours"]
        reads["ours"] = lambda: ours.reduce(logs["ours"])
        handles["ours"] = ours.reduce_handle(logs["ours"], None)  # now cached
        for kind in ("raw", "minimal"):
            if kind in self.kinds:
                store = self.stores[kind]
                assert isinstance(store, PsycopgStore)
                reads[kind] = partial(store.warm_reduce, logs[kind])
                handles[kind] = (logs[kind], reads[kind]().next_index)
        peer: Any = None
        if "peer" in self.kinds:
            from peer_eventsourcing import PeerStore

            # Its own application, with snapshots (and no aggregate cache).
            peer = writers["peer"] = PeerStore(**self.params, snapshots=True)
            reads["peer"] = lambda: peer.reduce_from_snapshot(logs["peer"])
            handles["peer"] = peer.reduce_handle(logs["peer"], None)
        expected = dict.fromkeys(self.kinds, events)

        def measure(kind: str) -> float:
            samples = []
            for _ in range(self.sizes.calls):
                if kind == "peer":
                    peer.take_snapshot(logs["peer"])  # at the head
                handles[kind] = writers[kind].append(handles[kind], 1)
                expected[kind] += 1
                start = time.perf_counter()
                folded = reads[kind]()
                samples.append(time.perf_counter() - start)
                if folded.events != expected[kind]:
                    raise SystemExit(f"E: {kind} reduced {folded}")
            return statistics.median(samples) * 1000

        try:
            return self.repeat(measure)
        finally:
            if peer is not None:
                peer.close()

    def scenario_f(self, events: int, logs: dict[str, uuid.UUID]) -> None:
        start, limit = events // 2, 100
        progress(f"F: a page of {limit} of {events:,} events")
        wanted = [(index, 1) for index in range(start, start + limit)]

        def measure(kind: str) -> float:
            store = self.stores[kind]
            samples = []
            for _ in range(self.sizes.calls):
                began = time.perf_counter()
                page = store.page(logs[kind], start, limit)
                samples.append(time.perf_counter() - began)
                if page != wanted:
                    raise SystemExit(f"F: {kind} returned another page")
            return statistics.median(samples) * 1000

        row = Row(
            f"F page of {limit} from index {start:,} of {events:,}",
            "ms",
            self.repeat(measure),
        )
        self.rows.append(row)
        self.target_time(row, 2, "F < 2x raw", strict=True)

    def target_speed(self, row: Row, other: str, at_least: float, text: str) -> None:
        if other not in self.kinds:
            return
        speed = row.speed_vs(other)
        self.targets.append(
            Target(
                text,
                speed is not None and speed >= at_least,
                f"{ratio(speed)} {other}",
            )
        )

    def target_time(
        self, row: Row, at_most: float, text: str, strict: bool = False
    ) -> None:
        """Ours takes at most (``strict``: under) ``at_most`` times raw's time."""
        if "raw" not in self.kinds:
            return
        speed = row.speed_vs("raw")
        times = None if speed is None else 1 / speed
        met = times is not None and (times < at_most if strict else times <= at_most)
        self.targets.append(
            Target(text, met, "-" if times is None else f"{times:.2f}x raw")
        )

    def run(self) -> None:
        only = self.args.only
        if "A" in only:
            self.scenario_a()
        if "B" in only:
            self.scenario_b()
        if "C" in only:
            self.scenario_c()
        if set(only) & set("DF"):
            events = self.sizes.long_log
            logs = self.long_logs(events)
            if "D" in only:
                self.scenario_d(events, logs)
                if self.args.huge:
                    huge = self.sizes.huge_log
                    self.scenario_d(huge, self.long_logs(huge))
                    self.flat_memory(events, huge)
            if "E" in only:
                self.scenario_e()
            if "F" in only:
                self.scenario_f(events, logs)
        elif "E" in only:
            self.scenario_e()

    def flat_memory(self, small: int, large: int) -> None:
        peaks = {
            row.scenario: row.values["ours"] for row in self.rows if row.unit == "MiB"
        }
        a = peaks[f"D peak memory, {small:,} events"]
        b = peaks[f"D peak memory, {large:,} events"]
        self.targets.append(
            Target(
                f"D memory flat from {small:,} to {large:,}",
                b <= a * 1.5,
                f"{a:.2f} -> {b:.2f} MiB",
            )
        )

    def report(self) -> str:
        others = self.kinds[1:]
        rows: list[tuple[str, ...]] = [
            ("scenario", "unit", *self.kinds, *(f"ours/{k}" for k in others))
        ]
        for row in self.rows:
            rows.append(
                (
                    row.scenario,
                    row.unit,
                    *(fmt(row.values.get(kind), row.unit) for kind in self.kinds),
                    *(ratio(row.speed_vs(kind)) for kind in others),
                )
            )
        lines = [table([("run", "value"), *describe().items()]), "", table(rows)]
        lines.append(
            ", ".join(f"ours/{k}" for k in others)
            + ": how many times faster ours is (events/s: "
            "ours / theirs; s, ms, MiB: theirs / ours). Below 1: slower."
        )
        lines += [f"{row.scenario}: {row.note}" for row in self.rows if row.note]
        lines += self.notes
        if self.targets:
            lines.append("")
            lines.append(
                table(
                    [("target", "met", "figure")]
                    + [
                        (t.text, "yes" if t.met else "NO", t.figures)
                        for t in self.targets
                    ]
                )
            )
        return "\n".join(lines)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


def describe() -> dict[str, str]:
    import django
    import psycopg
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT version(), current_setting('fsync'), "
            "current_setting('synchronous_commit'), current_setting('full_page_writes')"
        )
        version, fsync, sync, fpw = cursor.fetchone() or ("?",) * 4
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "eventsourcing": metadata.version("eventsourcing"),
        "redis-py": redis.__version__,
        "postgresql": str(version).split(" on ")[0],
        "durability": f"fsync={fsync}, synchronous_commit={sync}, "
        f"full_page_writes={fpw}",
        "django OPTIONS": repr(connection.settings_dict["OPTIONS"]),
        "django-eventlog": "EVENTLOG_CACHE_WRITE_BEHIND = True, cache: "
        + settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        "timing": "median of repeats; the stores take turns, each repeat "
        "starting with another; a CHECKPOINT before each measurement",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()
    with throwaway_database():
        from _minimal import MinimalStore
        from _raw import RawStore

        RawStore.setup(conninfo(server()))
        MinimalStore.setup(conninfo(server()))
        bench = Bench(args)
        try:
            bench.run()
            print(bench.report())
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
