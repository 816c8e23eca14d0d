"""What schema versions cost a cold reduce: today's library against the one
before them, and events one version behind.

Since migration 0010 every event row carries its ``schema_version`` (NULL
for version 1), and every row read compares it with its class's before
decoding (``django_eventlog/records.py``). The target (issue 18): a cold
reduce of 100,000 events stored at their class's current version at least
0.97x as fast as before this change.

Three variants, each a cold reduce (Django's dummy cache, and the
aggregate's ``cache_policy`` is ``NeverCache``) of a log of ``--events``
events, each in a process of its own, all on one database migrated by
today's library:

* **before**: the library as of commit 058b815, the last one before schema
  versions, taken from git history (``git archive``) and put first on the
  child's PYTHONPATH; it reads the log of ``bench.credited`` events
  (version 1, stored NULL). Its SELECTs name their columns, so the new
  column does not disturb it; the run checks that it folds every event;
* **current**: today's library on the same log;
* **behind**: today's library on a second log as long, of
  ``bench.deposited`` events stored at version 1 while the class is at
  version 2 (``currency`` added, filled by an upcaster): each event goes
  through the upcaster. The old library cannot read it (checked: it
  raises).

Both logs are written in the server with one ``INSERT ... SELECT`` each and
analyzed. Each round reduces once in each variant, in turns (each round
starting with another one), so that a burst of load on a shared machine
falls on all alike, after one untimed reduce per variant. It prints the
median ms per reduce, ``+-`` (half the interquartile range over the
median), events/s, µs per event and the CPU the reducing process spent
(the server's not counted); each round's ratio and their median, in wall
time and in that CPU, of current against before (events/s; below 1,
today's library is slower) and of behind against current (reported, no
target); and the target's verdict, on the wall-time median. On a shared
machine a reduce's time varies by 10% and more from one to the next, so
the verdict on a 3% margin can change between runs: compare several.
Run ``make bench`` (PostgreSQL with default durability), or with a
server's PG* variables set::

    python benchmarks/schema_versions.py          # ~1 minute on 2 CPUs
    python benchmarks/schema_versions.py --quick  # seconds, for CI

``EVENTLOG_DB=sqlite`` runs it on a throwaway SQLite file instead.
``EVENTLOG_PG_PREPARE=1`` (as ``make bench`` sets it) turns on server-side
binding with prepared statements. It needs the repository's git history
(a clone, not an export) and exits with status 2 without it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
sys.path[:0] = [p for p in (str(ROOT), str(BENCHMARKS)) if p not in sys.path]

from _schema_worker import configure  # noqa: E402
from _shared import (  # noqa: E402
    execute,
    postgresql_line,
    progress,
    table,
    throwaway_database,
)

#: The last commit before schema versions (issue 18).
BEFORE_COMMIT = "058b815"
BEFORE, CURRENT, BEHIND = "before", "current", "behind"
VARIANTS = (BEFORE, CURRENT, BEHIND)
LABELS = {
    BEFORE: f"before ({BEFORE_COMMIT}), at the current version",
    CURRENT: "ours, at the current version",
    BEHIND: "ours, one version behind",
}
TARGET = 0.97


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "-n", "--events", type=int, default=100_000, help="events a log (100,000)"
    )
    parser.add_argument("-r", "--rounds", type=int, default=15, help="rounds (15)")
    parser.add_argument(
        "--quick", action="store_true", help="2,000 events, 3 rounds: seconds, for CI"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 2000, 3
    if args.rounds < 3 or args.events < 1:
        parser.error("--rounds must be at least 3 and --events at least 1")
    return args


def export_before(directory: Path) -> Path:
    """The package as of BEFORE_COMMIT, extracted under ``directory``;
    exits with status 2, saying why, without the git history."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BEFORE_COMMIT, "django_eventlog"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", None) or b""
        progress(
            f"schema_versions.py needs commit {BEFORE_COMMIT} (the library "
            "before schema versions) from the git history of "
            f"{ROOT}: {e} {detail.decode(errors='replace').strip()}\n"
            "Run it in a git clone with its history (git fetch --unshallow "
            "in a shallow one)."
        )
        sys.exit(2)
    return directory


def fill(type_name: str, events: int) -> str:
    """A log of ``events`` events of ``type_name``, stored at version 1
    (NULL), written in the server in one statement; its id."""
    from _schema_domain import PAYLOAD
    from django.db import connection
    from django.utils import timezone

    from django_eventlog import Event, Log

    log_id = uuid.uuid4()
    now = timezone.now()
    db_log_id = Log._meta.pk.get_db_prep_value(log_id, connection)
    db_now = connection.ops.adapt_datetimefield_value(now)
    log_table, event_table = Log._meta.db_table, Event._meta.db_table
    jsonb = "::jsonb" if connection.vendor == "postgresql" else ""
    execute(
        f"INSERT INTO {log_table} (id, kind, created_at) VALUES (%s, %s, %s)",
        [db_log_id, "account", db_now],
    )
    # In index order: the no-gap trigger sees each row's predecessor.
    execute(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
        f"WHERE i + 1 < %s) INSERT INTO {event_table} "
        '(log_id, "index", type, payload, recorded_at) '
        f"SELECT %s, i, %s, %s{jsonb}, %s FROM s ORDER BY i",
        [events, db_log_id, type_name, PAYLOAD, db_now],
    )
    stored = execute(
        f"SELECT COUNT(*), COUNT(schema_version) FROM {event_table} WHERE log_id = %s",
        [db_log_id],
    )[0]
    assert tuple(stored) == (events, 0), stored  # all there, all version 1
    return str(log_id)


class Worker:
    """One child process (``_schema_worker.py``) with one library first on
    its PYTHONPATH."""

    def __init__(self, code: str, package_root: Path, env: dict[str, str]) -> None:
        self.code = code
        self.process = subprocess.Popen(
            [sys.executable, str(BENCHMARKS / "_schema_worker.py"), code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONPATH": str(package_root)},
        )
        hello = self.answer()
        expected = package_root / "django_eventlog"
        if Path(hello.get("package", "")).resolve() != expected.resolve():
            self.close()
            sys.exit(f"the {code} worker did not load {expected}: {hello}")

    def answer(self) -> dict[str, Any]:
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        line = stdout.readline()
        if not line:
            sys.exit(f"the {self.code} worker died (exit {self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def reduce(self, log_id: str) -> dict[str, Any]:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdin.write(json.dumps({"log": log_id}) + "\n")
        stdin.flush()
        return self.answer()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.wait():
            sys.exit(f"the {self.code} worker failed (exit {self.process.returncode})")


def spread(values: Sequence[float]) -> str:
    """Half the interquartile range over the median."""
    low, _, high = statistics.quantiles(values, n=4)
    return f"{(high - low) / 2 / statistics.median(values):.0%}"


def ratio(what: str, times: Sequence[float], baseline: Sequence[float]) -> float:
    """Print the rate over the baseline's (baseline / times) round by round
    and their median; return the median."""
    each = [base / took for took, base in zip(times, baseline, strict=True)]
    median = statistics.median(each)
    print(f"{what}, each round: " + " ".join(f"{r:.3f}x" for r in each))
    print(
        f"{what}: {median:.3f}x the events/s (median of {len(each)} rounds, "
        f"{spread(each)} +-)"
    )
    return median


def database_line(vendor: str) -> str:
    if vendor == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    return postgresql_line()


def ours_commit() -> str:
    """HEAD's short hash, marked when the working tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "django_eventlog")
    return git("rev-parse", "--short", "HEAD") + (" + changes" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    vendor = os.environ.setdefault("EVENTLOG_DB", "postgresql")
    configure()
    import django
    import msgspec
    from _schema_domain import Credited, Deposited
    from django.db import connection

    from django_eventlog.conf import conf

    seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    #: The CPU seconds the reducing process spent (the server's not counted).
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="schema_versions_") as tmp:
        before_root = export_before(Path(tmp))
        sqlite_file = str(Path(tmp) / "schema_versions.sqlite3")
        with throwaway_database(sqlite_file if vendor == "sqlite" else None) as name:
            progress(f"  writing two logs of {args.events:,} events")
            logs = {
                CURRENT: fill(Credited.type_name, args.events),
                BEHIND: fill(Deposited.type_name, args.events),
            }
            execute("VACUUM ANALYZE" if vendor == "postgresql" else "ANALYZE")
            header_db = database_line(vendor)
            connection.close()
            env = dict(os.environ)
            env["PGDATABASE" if vendor == "postgresql" else "EVENTLOG_SQLITE_PATH"] = (
                name
            )
            old = Worker("old", before_root, env)
            new = Worker("new", ROOT, env)
            try:
                # The old library cannot read the events one version behind
                # (no upcaster: currency missing), which is why the variant
                # is ours only.
                refused = old.reduce(logs[BEHIND])
                assert "EventDecodingError" in refused.get("error", ""), refused
                runs = {
                    BEFORE: (old, logs[CURRENT]),
                    CURRENT: (new, logs[CURRENT]),
                    BEHIND: (new, logs[BEHIND]),
                }
                expected = {
                    "balance": args.events,
                    "count": args.events,
                    "next_index": args.events,
                }
                for n in range(-1, args.rounds):  # round -1: untimed
                    first = n % len(VARIANTS)
                    for variant in VARIANTS[first:] + VARIANTS[:first]:
                        worker, log_id = runs[variant]
                        answer = worker.reduce(log_id)
                        took = answer.pop("seconds", None)
                        spent = answer.pop("cpu", None)
                        assert answer == expected, (variant, answer)
                        if n >= 0:
                            seconds[variant].append(took)
                            cpu[variant].append(spent)
                    if n >= 0:
                        progress(f"  round {n + 1}/{args.rounds} done")
            finally:
                old.close()
                new.close()
    print(f"# benchmarks/schema_versions.py, {datetime.date.today()}")
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, Django {django.get_version()}, msgspec "
        f"{msgspec.__version__}, {header_db}"
    )
    print(
        f"# cold reduce (no cache) of one log of {args.events:,} events, "
        f"EVENTLOG_CHUNK_SIZE={conf.EVENTLOG_CHUNK_SIZE}, each variant in a "
        f"process of its own, in turns; {args.rounds} rounds; medians"
    )
    print(
        f"# before: django_eventlog at {BEFORE_COMMIT} (before schema versions); "
        f"ours: {ours_commit()}; one version behind: stored at 1, class at 2, "
        "an upcaster adds a field"
    )
    rows = [["variant", "ms/reduce", "+-", "events/s", "µs/event", "CPU ms", "+-"]]
    for variant in VARIANTS:
        median = statistics.median(seconds[variant])
        rows.append(
            [
                LABELS[variant],
                f"{median * 1e3:.1f}",
                spread(seconds[variant]),
                f"{args.events / median:,.0f}",
                f"{median * 1e6 / args.events:.2f}",
                f"{statistics.median(cpu[variant]) * 1e3:.1f}",
                spread(cpu[variant]),
            ]
        )
    print(table(rows))
    ratios: dict[str, float] = {}
    for variant, baseline, what in (
        (CURRENT, BEFORE, "ours at the current version vs before"),
        (BEHIND, CURRENT, "ours one version behind vs at the current version"),
    ):
        ratios[variant] = ratio(what, seconds[variant], seconds[baseline])
        ratio(f"{what}, CPU", cpu[variant], cpu[baseline])
    upcast = statistics.median(
        (behind - current) * 1e6 / args.events
        for behind, current in zip(seconds[BEHIND], seconds[CURRENT], strict=True)
    )
    print(f"one version behind costs {upcast:+.2f} µs per event (median of rounds)")
    print(
        f"target: cold reduce at the current version >= {TARGET}x before "
        "schema versions: " + ("met" if ratios[CURRENT] >= TARGET else "NOT met")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
