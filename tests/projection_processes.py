"""Real processes for the projection tests: runners (``manage.py
eventlog_projections run``), the other commands, and Django worker processes.

Every process runs ``tests.projection_settings`` (``tests.settings`` plus the
projections named in ``EVENTLOG_TEST_PROJECTIONS``) against the database the
test gives: pytest-django's PostgreSQL test database (:func:`postgres_env`)
or an SQLite file of the test's own (:func:`sqlite_env`, migrated by
:func:`migrate`). The read models are checked with the functions at the end,
which run in the test's process or, on an SQLite file, in a
:class:`DjangoPool` worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from multiprocessing.pool import Pool
from pathlib import Path
from typing import IO, Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "tests.projection_settings"
PROJECTIONS = "tests.projections"
T = TypeVar("T")
Fold = dict[str, tuple[int, int, int]]  # log id -> (balance, last index, events)


def postgres_env(settings_dict: dict[str, Any]) -> dict[str, str]:
    """The environment under which a process uses this PostgreSQL database."""
    return {
        "EVENTLOG_DB": "postgresql",
        "PGHOST": str(settings_dict["HOST"] or "127.0.0.1"),
        "PGPORT": str(settings_dict["PORT"] or "5432"),
        "PGUSER": str(settings_dict["USER"] or "postgres"),
        "PGPASSWORD": str(settings_dict["PASSWORD"] or ""),
        "PGDATABASE": str(settings_dict["NAME"]),
        "PGCONNECT_TIMEOUT": "5",
    }


def sqlite_env(path: Path) -> dict[str, str]:
    return {"EVENTLOG_DB": "sqlite", "EVENTLOG_SQLITE_PATH": str(path)}


def child_env(database: dict[str, str], projections: Iterable[str]) -> dict[str, str]:
    """The whole environment of a child process: ours, with the database's
    variables, the settings module and the projections (class names of
    :mod:`tests.projections`)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PG") and name != "EVENTLOG_SQLITE_PATH"
    }
    env.update(database)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        DJANGO_DEBUG="0",  # no query log in long runs
        EVENTLOG_TEST_PROJECTIONS=",".join(f"{PROJECTIONS}.{p}" for p in projections),
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(
    env: dict[str, str], *args: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` in a process of its own, to its end."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def migrate(env: dict[str, str]) -> None:
    done = manage(env, "migrate", "-v", "0", timeout=300)
    assert done.returncode == 0, done.stderr


class RunnerProcess:
    """``manage.py eventlog_projections run``; its PostgreSQL sessions are
    named ``label`` (``application_name``, through ``PGAPPNAME``)."""

    def __init__(
        self, env: dict[str, str], label: str, directory: Path, *args: str
    ) -> None:
        self.label = label
        self._out_path = directory / f"{label}.out"
        self._err_path = directory / f"{label}.err"
        self._out: IO[str] = self._out_path.open("w")
        self._err: IO[str] = self._err_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "eventlog_projections", "run", *args],
            cwd=ROOT,
            env={**env, "PGAPPNAME": label},
            stdout=self._out,
            stderr=self._err,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def handles_sigterm(self) -> bool:
        """Whether the process has installed its SIGTERM handler yet (Linux:
        the ``SigCgt`` mask of ``/proc/PID/status``). Before that, during
        Django's start-up, a SIGTERM kills it with the default action."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        [caught] = [line for line in status.splitlines() if line.startswith("SigCgt:")]
        return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM it once it handles SIGTERM; its exit code."""
        wait_until(self.handles_sigterm, 60, f"{self.label} to handle SIGTERM")
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._out.close()
            self._err.close()

    def stdout(self) -> str:
        return self._out_path.read_text()

    def stderr(self) -> str:
        return self._err_path.read_text()

    def stop(self) -> None:
        """SIGKILL it if it still runs (cleanup)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait(30)


def wait_until(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """The first true value of ``predicate()``; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class DjangoPool:
    """Processes (spawned: nothing inherited) with Django set up under
    ``env``, to run this module's functions in."""

    def __init__(self, env: dict[str, str], processes: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        ready = context.Semaphore(0)
        self.pool: Pool = context.Pool(processes, _set_up, (env, ready))
        # Every process is up before the first task, so that tasks given
        # together start together.
        for _ in range(processes):
            assert ready.acquire(timeout=120), "a pool process did not start"

    def __enter__(self) -> DjangoPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.terminate()
        self.pool.join()


def _set_up(env: dict[str, str], ready: Any) -> None:
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    ready.release()


# What the database holds (run where Django is set up on that database)


def fold_from_events() -> Fold:
    """(balance, last index, events) of each account log, folded straight from
    the events table, not through the feed."""
    from django_eventlog import Event

    found: Fold = {}
    rows = (
        Event.objects.filter(log__kind="account")
        .order_by("log_id", "index")
        .values_list("log_id", "index", "type", "payload")
    )
    for log_id, index, type_name, payload in rows:
        balance, last, events = found.get(str(log_id), (0, -1, 0))
        assert index == last + 1, (log_id, index, last)
        amount = payload["amount"] if type_name == "tests.deposited" else 0
        found[str(log_id)] = (balance + amount, index, events + 1)
    return found


def projection_fold(name: str) -> Fold:
    """The read model of the projection ``name`` (a ``Folding``)."""
    from tests.readmodels.models import Folded

    return {
        str(f.log_id): (f.balance, f.last_index, f.events)
        for f in Folded.objects.filter(projection=name)
    }


def feed_positions(kinds: tuple[str, ...] = ("account",)) -> list[str]:
    """Every position the feed delivers now, read from the start."""
    from django_eventlog import Log

    positions: list[str] = []
    after: str | None = None
    while page := Log.objects.feed(after, limit=500, kinds=kinds):
        positions.extend(record.position for record in page)
        after = page[-1].position
    return positions


def handled(name: str) -> list[tuple[str, int, str]]:
    """(log id, index, position) of each event ``name`` handled, in the
    order it handled them (``Handled``'s ids grow in the order of inserts,
    and batches of one projection never overlap)."""
    from tests.readmodels.models import Handled

    return [
        (str(log_id), index, position)
        for log_id, index, position in Handled.objects.filter(projection=name)
        .order_by("id")
        .values_list("log_id", "index", "position")
    ]


def checkpoint(name: str) -> dict[str, Any]:
    from django_eventlog.models import ProjectionCheckpoint

    found = ProjectionCheckpoint.objects.filter(name=name).values().first()
    return dict(found) if found else {}


def out_of_order(rows: list[tuple[str, int, str]]) -> list[tuple[str, int, int]]:
    """(log, index expected, index handled) wherever a log's indices were
    not handled as 0, 1, 2, ..."""
    expected: dict[str, int] = {}
    wrong = []
    for log_id, index, _ in rows:
        if index != expected.get(log_id, 0):
            wrong.append((log_id, expected.get(log_id, 0), index))
        expected[log_id] = index + 1
    return wrong


def new_accounts(count: int, deposits: int, amount: int = 1) -> list[uuid.UUID]:
    """``count`` account logs of ``deposits`` deposits of ``amount`` each."""
    from django_eventlog import Log
    from tests.domain import Deposited, Opened

    ids = []
    for i in range(count):
        state = Log.objects.create_log(Opened(f"owner {i}"), kind="account")
        for _ in range(deposits):
            state = Log.objects.append(state, Deposited(amount))
        ids.append(state.log_id)
    return ids


def lock_holders(names: Iterable[str]) -> dict[str, list[str]]:
    """For each projection, the ``application_name`` of every session that
    holds its advisory lock now, read from ``pg_locks`` (PostgreSQL)."""
    from django.db import connection

    from django_eventlog.projection_locks import lock_key
    from django_eventlog.sql import LOCK_NAMESPACE

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.objid::bigint, a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = %s::bigint::oid "
            "AND l.objsubid = 2 AND l.granted",
            [LOCK_NAMESPACE],
        )
        rows = cursor.fetchall()
    return {
        name: sorted(app for key, app in rows if key == lock_key(name))
        for name in names
    }


def backend_pids(label: str) -> list[int]:
    """The pids of the sessions named ``label`` (PostgreSQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [label]
        )
        return [pid for (pid,) in cursor.fetchall()]
