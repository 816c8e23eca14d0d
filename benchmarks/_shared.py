"""What the benchmarks share: the domain of ``benchmarks/eventstores.py``'s
stores, and the text tables every benchmark prints.

Every store keeps the same domain: an account whose events are all
``Credited(amount: int, note: str)``, the first one included (index 0).
Reducing a log gives ``Folded(balance, events, next_index)``: the sum of the
amounts, the number of events and the index the next event takes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

NOTE = "benchmark credit"


def uuid7() -> uuid.UUID:
    """A time-ordered id (RFC 9562 version 7), as django-eventlog gives its logs."""
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big") & ((1 << 74) - 1)
    # 48 bits of time, version 7, 12 random bits, variant 0b10, 62 random bits.
    high, low = random >> 62, random & ((1 << 62) - 1)
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | high << 64 | 0b10 << 62 | low)


class Conflict(Exception):
    """Another writer took the index this append asked for."""


class Folded(NamedTuple):
    balance: int
    events: int
    next_index: int


def spawn_workers(
    count: int, target: Callable[..., None], args: tuple[Any, ...], what: str
) -> list[tuple[Any, ...]]:
    """Run ``target(*args, barrier, results)`` in ``count`` spawned processes
    and return what each put on ``results``: a tuple whose last item is an
    error's text, or None. Each waits at ``barrier`` before its timed work,
    and aborts it when it fails; the first real failure exits, naming
    ``what``."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*args, barrier, results))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    outcomes: list[tuple[Any, ...]] = [results.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    # The first failure aborts the barrier: the others then report that.
    errors = sorted((o[-1] for o in outcomes if o[-1]), key=lambda e: "Barrier" in e)
    if errors:
        raise SystemExit(f"{what} worker failed: {errors[0]}")
    return outcomes


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned text columns: the first row is the header, underlined;
    the first column is left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


@contextmanager
def throwaway_database(sqlite_file: str | None = None) -> Iterator[str]:
    """Create, migrate and finally drop a database for one benchmark run.

    Django's test database machinery does it on the default alias's server
    (after ``django.setup()``), under a name of its own
    (``eventlog_bench_<pid>_<hex>``) so it never collides with a test
    database; on SQLite, in ``sqlite_file``, which a benchmark that runs
    processes of its own gives (Django's default is in memory). Yields the
    name.
    """
    from django.db import connection

    name = sqlite_file or f"eventlog_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    original = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield name
    finally:
        connection.creation.destroy_test_db(original, verbosity=0)


def progress(message: str) -> None:
    """A line of progress on stderr (stdout holds the results)."""
    print(message, file=sys.stderr, flush=True)


def execute(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` on Django's connection; return its rows (none: [])."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def postgresql_line() -> str:
    """What a benchmark's header says of the PostgreSQL it ran on: version,
    durability settings, and how the library binds (``EVENTLOG_PG_PREPARE``).
    Call it while the benchmark's database is in use."""
    from django.db import connection

    version = ".".join(map(str, connection.get_database_version()))
    durability = execute(
        "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) "
        "FROM pg_settings WHERE name IN "
        "('fsync', 'synchronous_commit', 'full_page_writes')"
    )[0][0]
    prepared = os.environ.get("EVENTLOG_PG_PREPARE") == "1"
    binding = "server-side binding, prepared" if prepared else "client-side binding"
    return f"PostgreSQL {version} ({durability}), {binding}"
