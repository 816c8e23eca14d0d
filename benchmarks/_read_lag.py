"""Lag of ``read_side.py``: writer processes append at full speed while
``manage.py eventlog_projections run`` (a subprocess) runs
``_read_projections.LagProjection``; the time from each append's commit to
the commit of the batch that handled it. And the runner's statements per
second when nothing is written.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
EVENTS_PER_LOG = 10

Key = tuple[str, int]  # (log id, index)


def writer(dbname: str, seconds: float, barrier: Any, results: Any) -> None:
    """Create logs of EVENTS_PER_LOG events, one append per transaction,
    for ``seconds``; put ``{(log id, index): time.time() after commit}``."""
    try:
        from eventstores import setup_django

        setup_django(dbname)
        from _ours import OursStore

        store = OursStore()
        committed: dict[Key, float] = {}
        barrier.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = store.create(1)
            committed[(str(state.log_id), 0)] = time.time()
            for _ in range(EVENTS_PER_LOG - 1):
                state = store.append(state, 1)
                committed[(str(state.log_id), state.next_index - 1)] = time.time()
        store.close()
        results.put((committed, None))
    except BaseException as e:
        barrier.abort()
        results.put(({}, f"{type(e).__name__}: {e}"))


def write(dbname: str, seconds: float) -> dict[Key, float]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(target=writer, args=(dbname, seconds, barrier, results))
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=seconds + 600) for _ in processes]
    for process in processes:
        process.join()
    errors = sorted((e for _, e in outcomes if e), key=lambda e: "Barrier" in e)
    if errors:
        raise SystemExit(f"writer failed: {errors[0]}")
    committed: dict[Key, float] = {}
    for found, _ in outcomes:
        committed.update(found)
    return committed


def start_runner(dbname: str, out: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "_read_settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]),
        "EVENTLOG_DB": "postgresql",
        "DJANGO_DEBUG": "0",
        "PGDATABASE": dbname,
        "READBENCH_LAG_FILE": str(out),
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "eventlog_projections", "run"], cwd=ROOT, env=env
    )


def stop_runner(runner: subprocess.Popen[bytes]) -> None:
    runner.send_signal(signal.SIGTERM)
    try:
        code = runner.wait(timeout=60)
    except subprocess.TimeoutExpired:
        runner.kill()
        raise SystemExit("the runner did not stop within 60 s of SIGTERM") from None
    if code != 0:
        raise SystemExit(f"the runner exited with {code}")


def handled(out: Path) -> dict[Key, float]:
    found: dict[Key, float] = {}
    if not out.exists():
        return found
    for line in out.read_text().splitlines():
        log_id, index, at = line.split()
        key = (log_id, int(index))
        if key in found:
            raise SystemExit(f"lag: {key} handled twice")
        found[key] = float(at)
    return found


class Stats:
    """The database's committed and rolled back transactions, read from
    another database so that reading does not count."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.dbname = params["dbname"]
        self.conn = psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True)

    def transactions(self) -> int:
        row = self.conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = %s",
            [self.dbname],
        ).fetchone()
        return int(row[0]) if row else 0

    def per_second(self, seconds: float) -> float:
        before = self.transactions()
        time.sleep(seconds)
        return (self.transactions() - before) / seconds

    def runner_started(self, timeout: float = 60) -> None:
        """Wait until another session of the database holds an advisory
        lock (the runner has taken its projection's)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.conn.execute(
                "SELECT count(*) FROM pg_locks JOIN pg_database d "
                "ON d.oid = pg_locks.database "
                "WHERE locktype = 'advisory' AND d.datname = %s",
                [self.dbname],
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
        raise SystemExit("the runner took no lock within 60 s")

    def close(self) -> None:
        self.conn.close()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    params: dict[str, Any], seconds: float, idle: float, out: Path
) -> dict[str, float]:
    """p50, p99, max lag in ms, events, the idle runner's statements per
    second on an empty feed and after the writes."""
    out.unlink(missing_ok=True)
    stats = Stats(params)
    runner = start_runner(params["dbname"], out)
    try:
        stats.runner_started()
        time.sleep(1)
        idle_empty = stats.per_second(idle)
        committed = write(params["dbname"], seconds)
        deadline = time.monotonic() + 120
        while len(handled(out)) < len(committed) and time.monotonic() < deadline:
            time.sleep(0.5)
        done = handled(out)
        if done.keys() != committed.keys():
            raise SystemExit(
                f"lag: {len(committed)} events written, {len(done)} handled, "
                f"{len(done.keys() ^ committed.keys())} differ"
            )
        time.sleep(1)
        idle_after = stats.per_second(idle)
    finally:
        stop_runner(runner)
        stats.close()
    lags = [(done[key] - at) * 1000 for key, at in committed.items()]
    return {
        "events": len(lags),
        "events/s": len(lags) / seconds,
        "p50": quantile(lags, 0.5),
        "p99": quantile(lags, 0.99),
        "max": max(lags),
        "min": min(lags),
        "idle_empty": idle_empty,
        "idle": idle_after,
    }
